"""Built-in models (shapes, architecture parameters, can overfit a tiny batch), losses
(against their definitions by hand) and optimizers (the torch classes they claim)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrlab
from lrlab.plugins import load_plugins
from lrlab.registry import parse_spec


@pytest.fixture(scope="module")
def registry():
    return load_plugins(use_entry_points=False).registry


def model(registry, text, shape=(1, 8, 8), classes=10):
    return registry.build("model", parse_spec(text), shape, classes)


# -- models ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linear", "mlp", "cnn", "resnet18"])
@pytest.mark.parametrize("shape,classes", [((1, 8, 8), 10), ((3, 32, 32), 7)])
def test_models_build_and_give_one_logit_per_class(registry, name, shape, classes):
    torch.manual_seed(0)
    m = model(registry, name, shape, classes)
    m.eval()
    with torch.no_grad():
        out = m(torch.rand(5, *shape))
    assert out.shape == (5, classes) and torch.isfinite(out).all()


def test_resnet18_stem_is_for_small_images(registry):
    m = model(registry, "resnet18", (1, 28, 28))
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert m.conv1.padding == (1, 1) and m.conv1.in_channels == 1
    assert isinstance(m.maxpool, nn.Identity)
    assert m.fc.out_features == 10
    m.eval()
    feats = {}

    def record(module, inputs, output):
        feats["layer1"] = output.shape

    m.layer1.register_forward_hook(record)
    with torch.no_grad():
        m(torch.rand(2, 1, 28, 28))
    assert feats["layer1"][-2:] == (28, 28)  # no downsampling before layer1


def test_mlp_parameters_change_the_architecture(registry):
    def linears(m):
        return [(lin.in_features, lin.out_features) for lin in m.modules()
                if isinstance(lin, nn.Linear)]

    assert linears(model(registry, "mlp")) == [(64, 128), (128, 128), (128, 10)]
    assert linears(model(registry, "mlp(width=32, depth=3)")) == \
        [(64, 32), (32, 32), (32, 32), (32, 10)]
    assert linears(model(registry, "mlp(depth=0)")) == [(64, 10)]
    drops = [d.p for d in model(registry, "mlp(dropout=0.3)").modules()
             if isinstance(d, nn.Dropout)]
    assert drops == [0.3, 0.3]
    assert not any(isinstance(d, nn.Dropout) for d in model(registry, "mlp").modules())


def test_cnn_channels_parameter(registry):
    convs = [c.out_channels for c in model(registry, "cnn(channels=8)").modules()
             if isinstance(c, nn.Conv2d)]
    assert convs == [8, 8, 16]


def test_bad_model_parameters_are_usage_errors(registry):
    with pytest.raises(lrlab.UsageError, match="width"):
        model(registry, "mlp(width=0)")
    with pytest.raises(lrlab.UsageError, match="dropout"):
        model(registry, "mlp(dropout=1.0)")


@pytest.mark.parametrize("text", ["mlp", "mlp(dropout=0.2)", "cnn(channels=8)"])
def test_can_overfit_one_tiny_batch(registry, text):
    """32 samples with random labels: a model that learns memorizes them all."""
    torch.manual_seed(0)
    x = torch.rand(32, 1, 8, 8)
    y = torch.randint(0, 10, (32,))
    m = model(registry, text)
    loss_fn = registry.build("loss", parse_spec("cross_entropy"), 10)
    opt = registry.build("optimizer", parse_spec("adam"), m.parameters(), 1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss_fn(m(x), y).backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        acc = (m(x).argmax(1) == y).float().mean().item()
    assert acc == 1.0


# -- losses ------------------------------------------------------------------------------


@pytest.fixture
def logits_targets():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(16, 5, generator=gen, dtype=torch.float64) * 3, \
        torch.randint(0, 5, (16,), generator=gen)


def test_cross_entropy_is_torchs(registry, logits_targets):
    logits, y = logits_targets
    loss = registry.build("loss", parse_spec("cross_entropy"), 5)(logits, y)
    by_hand = -(logits.log_softmax(1)[torch.arange(16), y]).mean()
    assert torch.allclose(loss, by_hand) and torch.allclose(loss, F.cross_entropy(logits, y))


def test_mse_is_on_softmax_against_one_hot(registry, logits_targets):
    logits, y = logits_targets
    loss = registry.build("loss", parse_spec("mse"), 5)(logits, y)
    p = logits.exp() / logits.exp().sum(1, keepdim=True)
    one_hot = torch.zeros(16, 5, dtype=torch.float64)
    one_hot[torch.arange(16), y] = 1.0
    by_hand = ((p - one_hot) ** 2).sum() / (16 * 5)  # mean over every element
    assert torch.allclose(loss, by_hand)
    on_logits = registry.build("loss", parse_spec("mse(on=logits)"), 5)(logits, y)
    assert torch.allclose(on_logits, ((logits - one_hot) ** 2).mean())


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothing_by_hand(registry, logits_targets, eps):
    logits, y = logits_targets
    loss = registry.build("loss", parse_spec(f"label_smoothing(eps={eps})"), 5)(logits, y)
    target = torch.full((16, 5), eps / 5, dtype=torch.float64)
    target[torch.arange(16), y] += 1.0 - eps  # (1 - eps) one-hot + eps uniform
    by_hand = -(target * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(loss, by_hand)


def test_label_smoothing_rejects_eps_outside_0_1(registry):
    with pytest.raises(lrlab.UsageError, match="eps"):
        registry.build("loss", parse_spec("label_smoothing(eps=1.5)"), 5)


# -- optimizers --------------------------------------------------------------------------


@pytest.mark.parametrize("text,cls,group", [
    ("sgd(momentum=0.9, nesterov=True, weight_decay=0.01)", torch.optim.SGD,
     {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("sgd", torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
    ("adam(beta1=0.8)", torch.optim.Adam, {"betas": (0.8, 0.999), "weight_decay": 0.0}),
    ("adamw", torch.optim.AdamW, {"weight_decay": 0.01}),
    ("radam", torch.optim.RAdam, {"betas": (0.9, 0.999)}),
])
def test_optimizers_are_the_torch_ones(registry, text, cls, group):
    opt = registry.build("optimizer", parse_spec(text), nn.Linear(2, 2).parameters(), 0.05)
    assert type(opt) is cls
    g = opt.param_groups[0]
    assert g["lr"] == 0.05
    for key, value in group.items():
        assert g[key] == value


def test_nesterov_without_momentum_is_a_usage_error(registry):
    with pytest.raises(lrlab.UsageError, match="nesterov"):
        registry.build("optimizer", parse_spec("sgd(nesterov=True)"),
                       nn.Linear(2, 2).parameters(), 0.1)


# -- every built-in arrives through the registration hooks ------------------------------


@pytest.mark.parametrize("kind,names", [
    ("dataset", ["digits", "mnist", "fashion-mnist", "cifar10"]),
    ("model", ["linear", "mlp", "cnn", "resnet18"]),
    ("loss", ["cross_entropy", "mse", "label_smoothing"]),
    ("optimizer", ["sgd", "adam", "adamw", "radam"]),
    ("schedule", ["constant", "step", "exponential", "cosine", "onecycle"]),
    ("augmentation", ["none", "flip", "crop", "rotate", "noise", "erase"]),
    ("stopper", ["none", "patience", "gl", "pq", "up"]),
])
def test_builtins_are_registered_by_their_internal_plugin(registry, kind, names):
    plural = {"loss": "losses"}.get(kind, kind + "s")
    for name in names:
        comp = registry.get(kind, name)
        assert comp.plugin == f"builtin.{plural}", (kind, name)
        assert comp.doc  # `lrlab list` shows a one-line doc


def test_builtin_parameters_are_the_ones_the_issue_names(registry):
    assert {"width", "depth", "dropout"} <= set(registry.get("model", "mlp").params)
    assert {"momentum", "nesterov", "weight_decay"} <= set(registry.get("optimizer", "sgd").params)
    assert set(registry.get("loss", "label_smoothing").params) == {"eps"}
    assert {"monitor", "mode", "min_delta", "patience", "restore_best"} == \
        set(registry.get("stopper", "patience").params)
    assert {"alpha"} <= set(registry.get("stopper", "gl").params)
    assert {"alpha", "strip"} <= set(registry.get("stopper", "pq").params)
    assert {"s", "strip"} <= set(registry.get("stopper", "up").params)
