"""The built-in augmentations: batched, on the device, fresh randomness per sample,
repeatable under a seed, each doing exactly its transform; never in the evaluation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

import lrlab
from lrlab.builtin.datasets import digits
from lrlab.config import parse_axis
from lrlab.data import stratified_split
from lrlab.engine import TrainSettings, build_augment, evaluate, train
from lrlab.plugins import load_plugins
from lrlab.registry import parse_spec

ALL = ["none", "flip", "crop", "rotate", "noise", "erase"]
RANDOM = ["flip", "crop", "rotate", "noise", "erase(p=1.0)"]


@pytest.fixture(scope="module")
def registry():
    return load_plugins(use_entry_points=False).registry


def aug(registry, text, shape=(1, 8, 8)):
    return registry.build("augmentation", parse_spec(text), shape)


def batch(n=64, shape=(1, 8, 8), dtype=torch.float32):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(5)).to(dtype)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_shape_dtype_device_kept(registry, name, shape):
    for dtype in (torch.float32, torch.float64):
        x = batch(8, shape, dtype)
        y = aug(registry, name, shape)(x)
        assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device


@pytest.mark.parametrize("name", RANDOM)
def test_each_sample_gets_its_own_transform(registry, name):
    x = torch.ones(1, 1, 8, 8).expand(64, 1, 8, 8).contiguous()
    x[:, :, 2:5, 1:4] = 0.0  # an asymmetric mark, so every transform shows
    torch.manual_seed(0)
    y = aug(registry, name)(x)
    distinct = {tuple(s.flatten().tolist()) for s in y}
    assert len(distinct) > 1  # identical inputs, different outputs


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_augmentation(registry, name):
    x = batch()
    f = aug(registry, name)
    torch.manual_seed(3)
    a = f(x)
    torch.manual_seed(3)
    b = f(x)
    torch.manual_seed(4)
    c = f(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_flip_flips_exactly_the_masked_samples(registry):
    x = batch(200)
    torch.manual_seed(1)
    mask = torch.rand(200, 1, 1, 1) < 0.5  # the draw flip makes first
    torch.manual_seed(1)
    y = aug(registry, "flip")(x)
    flipped = mask.flatten()
    assert torch.equal(y[flipped], x[flipped].flip(-1))
    assert torch.equal(y[~flipped], x[~flipped])
    assert 60 < int(flipped.sum()) < 140
    assert torch.equal(aug(registry, "flip(p=1.0)")(x), x.flip(-1))
    assert torch.equal(aug(registry, "flip(p=0.0)")(x), x)


def test_crop_shifts_the_content_and_fills_zeros(registry):
    pad = 2
    x = torch.arange(1, 65, dtype=torch.float32).view(1, 1, 8, 8).repeat(300, 1, 1, 1)
    y = aug(registry, f"crop(padding={pad})")(x)
    seen = set()
    for out in y[:, 0]:
        # find the offset (dy, dx) whose shifted copy of the padded image is this output
        padded = torch.nn.functional.pad(x[0, 0], [pad] * 4)
        match = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                 if torch.equal(padded[dy:dy + 8, dx:dx + 8], out)]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) == (2 * pad + 1) ** 2  # every offset occurs, 300 draws of 25
    assert torch.equal(aug(registry, "crop(padding=0)")(x), x)


def test_rotate_zero_degrees_is_identity_and_matches_torchvision(registry):
    x = batch(16, (3, 12, 12))
    assert torch.allclose(aug(registry, "rotate(degrees=0)", (3, 12, 12))(x), x, atol=1e-6)
    for shape in [(1, 12, 12), (3, 9, 14)]:  # square and not
        x = batch(8, shape)
        torch.manual_seed(2)
        y = aug(registry, "rotate(degrees=40)", shape)(x)
        torch.manual_seed(2)
        angles = (torch.rand(8) * 2 - 1) * 40  # the angles rotate draws, in degrees
        for i in range(8):
            ref = TF.rotate(x[i], angles[i].item(), interpolation=v2.InterpolationMode.BILINEAR)
            assert torch.allclose(y[i], ref, atol=1e-5), (shape, i)


def test_noise_adds_gaussian_noise_of_std(registry):
    x = torch.zeros(2000, 1, 8, 8)
    y = aug(registry, "noise(std=0.3)")(x)
    assert y.mean().item() == pytest.approx(0.0, abs=0.01)
    assert y.std().item() == pytest.approx(0.3, rel=0.02)


def test_erase_zeros_one_box_of_scale_area(registry):
    x = torch.ones(100, 2, 10, 10)
    y = aug(registry, "erase(p=1.0, scale=0.25)", (2, 10, 10))(x)
    side = round(10 * math.sqrt(0.25))
    for out in y:
        zero = out == 0
        assert torch.equal(zero[0], zero[1])  # the same box in every channel
        rows = zero[0].any(1).nonzero().flatten()
        cols = zero[0].any(0).nonzero().flatten()
        assert int(zero[0].sum()) == side * side
        assert len(rows) == side and len(cols) == side  # one square box
        assert rows[-1] - rows[0] == side - 1 and cols[-1] - cols[0] == side - 1
    assert torch.equal(aug(registry, "erase(p=0.0)")(x[:, :1, :8, :8]), x[:, :1, :8, :8])


def test_plus_composes_through_the_spec_parser(registry):
    (specs,) = parse_axis("augment", "flip(p=1.0)+crop(padding=0)+noise(std=0.0)")
    assert [s.name for s in specs] == ["flip", "crop", "noise"]
    assert parse_axis("augment", "flip+crop") == [(parse_spec("flip"), parse_spec("crop"))]

    class R:
        augment = specs

    pipeline = build_augment(registry, R, (1, 8, 8))
    x = batch()
    assert torch.equal(pipeline(x), x.flip(-1))
    R.augment = parse_axis("augment", "flip+crop")[0]
    pipeline = build_augment(registry, R, (1, 8, 8))
    f, c = aug(registry, "flip"), aug(registry, "crop")
    torch.manual_seed(7)
    expected = c(f(x))
    torch.manual_seed(7)
    assert torch.equal(pipeline(x), expected)


@pytest.mark.parametrize("text", ["flip(p=2)", "crop(padding=-1)", "noise(std=-0.1)",
                                  "erase(scale=0)", "rotate(degrees=-5)"])
def test_bad_parameters_are_usage_errors(registry, text):
    with pytest.raises(lrlab.UsageError):
        aug(registry, text)


class RecordingMLP(torch.nn.Module):
    """An MLP that records, per forward, whether it was training and what it saw."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(),
                                       torch.nn.Linear(math.prod(input_shape), num_classes))
        self.seen: list[tuple[bool, torch.Tensor]] = []

    def forward(self, x):
        self.seen.append((self.training, x.detach().clone()))
        return self.net(x)


def test_evaluation_is_clean_while_training_is_augmented(registry, tmp_path):
    """A run with heavy noise: every train-mode batch is noisy, every eval-mode forward
    sees exactly the clean train, val or test tensors."""
    models = []

    class Plugin:
        @lrlab.hookimpl
        def lrlab_register_models(self, register):
            def recording(input_shape, num_classes):
                models.append(RecordingMLP(input_shape, num_classes))
                return models[-1]

            register("recording", recording)

    from lrlab.config import build_config, expand

    host = load_plugins(plugins=[Plugin()], use_entry_points=False)
    cfg = build_config(overrides={"model": "recording", "augment": "noise(std=1.0)",
                                  "lr": 0.1, "epochs": 2}, cwd=tmp_path)
    (run,) = expand(cfg)
    data = stratified_split(digits(""), (0.6, 0.2, 0.2), 0)
    trained = train(run, data, host.registry, TrainSettings(torch.device("cpu")))
    seen = models[0].seen
    evals = [x for training, x in seen if not training]
    steps = [x for training, x in seen if training]
    clean = [data.train[0], data.val[0], data.test[0]]
    assert len(evals) == 3 * 2 + 1  # train + val at epochs 0, 1, 2; test once
    assert all(any(torch.equal(x, c) for c in clean) for x in evals)
    assert data.train[0].std() < 0.5 and all(x.std() > 0.9 for x in steps)  # noise std 1
    # the last history row is the final model evaluated on the clean training split
    last = trained.history[-1]
    models[0].seen.clear()
    loss, acc = evaluate(models[0], F.cross_entropy, *data.train, 4096)
    assert (loss, acc) == (last["train_loss"], last["train_acc"])
