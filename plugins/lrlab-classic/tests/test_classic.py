"""lrlab-classic: discovered through its entry point, LeNet-5's shape, focal's numbers."""

import math

import lrlab_classic
import pytest
import torch
import torch.nn.functional as F

from lrlab.testing import entry_point


def test_discovered_through_the_real_entry_point(lrlab_plugins):
    assert entry_point("lrlab-classic").load() is lrlab_classic
    host = lrlab_plugins()  # no plugin object given: only what is installed
    info = host.info["lrlab-classic"]
    assert info.source == "entry point"
    assert info.version == lrlab_classic.__version__
    assert {"model:lenet5", "loss:focal"} <= set(info.registered)
    assert host.registry.get("model", "lenet5").plugin == "lrlab-classic"


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 32, 32), (1, 8, 8), (3, 32, 32)])
def test_lenet5_maps_any_small_image_to_logits(shape):
    model = lrlab_classic.lenet5(shape, 10)
    assert model(torch.zeros(4, *shape)).shape == (4, 10)


def test_lenet5_has_the_papers_parameter_count():
    # C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850 (LeCun et al. 1998, sec. II.B)
    model = lrlab_classic.lenet5((1, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == 61_706


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, targets = torch.randn(16, 5), torch.randint(0, 5, (16,))
    loss = lrlab_classic.focal(5, gamma=0.0)
    assert torch.allclose(loss(logits, targets), F.cross_entropy(logits, targets))


def test_focal_matches_a_hand_computed_value():
    logits, targets = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    p = math.exp(2) / (math.exp(2) + 1)
    expected = -0.25 * (1 - p) ** 2 * math.log(p)
    got = lrlab_classic.focal(2, gamma=2.0, alpha=0.25)(logits, targets)
    assert got.item() == pytest.approx(expected, rel=1e-5)  # float32


def test_sweep_uses_lenet5_and_focal_through_the_entry_point(lrlab_sweep):
    result = lrlab_sweep(model="lenet5", loss=["focal", "focal(gamma=1)"], lr=[0.01],
                         optimizer="adam")
    runs = result.runs
    assert list(runs["error"]) == ["", ""], runs["error"].tolist()
    assert set(runs["model"]) == {"lenet5"}
    assert set(runs["loss"]) == {"focal", "focal(gamma=1)"}
    # two epochs of Adam at lr 0.01 on digits get LeNet-5 well past chance (10%)
    assert (runs["val_acc"] > 0.6).all(), runs[["loss", "val_acc"]]
