"""The built-in schedules against torch's own schedulers, stepped once per batch, and the
history's ``lr`` column against the learning rate the optimizer actually used."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler as torch_sched

import lrlab
from lrlab.builtin.datasets import digits
from lrlab.data import stratified_split
from lrlab.plugins import load_plugins
from lrlab.registry import parse_spec

LR = 0.1
SPE, EPOCHS = 34, 40  # the default sweep's digits run: 1,078 samples in batches of 32
TOTAL = SPE * EPOCHS


@pytest.fixture(scope="module")
def registry():
    return load_plugins(use_entry_points=False).registry


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)


def _lrs(make, steps: int = TOTAL) -> list[float]:
    """The LR each of ``steps`` batches trains with, stepping the scheduler after each."""
    opt = _optimizer()
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _assert_same(ours: list[float], ref: list[float], abs_tol: float = 0.0) -> None:
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=abs_tol), (i, a, b)


def _ours(registry, text: str):
    return lambda opt: registry.build("schedule", parse_spec(text), opt, SPE, EPOCHS)


def test_constant_keeps_the_lr(registry):
    assert _lrs(_ours(registry, "constant")) == [LR] * TOTAL


@pytest.mark.parametrize("every,gamma", [(10, 0.1), (3, 0.5), (1, 0.9)])
def test_step_matches_torch_steplr(registry, every, gamma):
    ours = _lrs(_ours(registry, f"step(every={every}, gamma={gamma})"))
    ref = _lrs(lambda o: torch_sched.StepLR(o, step_size=every * SPE, gamma=gamma))
    _assert_same(ours, ref)
    assert ours[every * SPE - 1] == LR and ours[every * SPE] < LR  # drops on an epoch edge


@pytest.mark.parametrize("gamma", [0.95, 0.5])
def test_exponential_matches_torch_exponentiallr_per_batch(registry, gamma):
    ours = _lrs(_ours(registry, f"exponential(gamma={gamma})"))
    ref = _lrs(lambda o: torch_sched.ExponentialLR(o, gamma=gamma ** (1 / SPE)))
    _assert_same(ours, ref)
    assert math.isclose(ours[SPE], LR * gamma, rel_tol=1e-12)  # gamma per epoch


@pytest.mark.parametrize("min_factor", [0.0, 0.01])
def test_cosine_matches_torch_cosineannealinglr(registry, min_factor):
    ours = _lrs(_ours(registry, f"cosine(min_factor={min_factor})"))
    ref = _lrs(lambda o: torch_sched.CosineAnnealingLR(o, T_max=TOTAL,
                                                       eta_min=min_factor * LR))
    _assert_same(ours, ref)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("pct_start,div,final_div", [(0.3, 25.0, 1e4), (0.1, 10.0, 100.0)])
def test_onecycle_matches_torch_onecyclelr(registry, anneal, pct_start, div, final_div):
    text = (f"onecycle(pct_start={pct_start}, div_factor={div}, "
            f"final_div_factor={final_div}, anneal={anneal})")
    ours = _lrs(_ours(registry, text))
    ref = _lrs(lambda o: torch_sched.OneCycleLR(
        o, max_lr=LR, total_steps=TOTAL, pct_start=pct_start, div_factor=div,
        final_div_factor=final_div, anneal_strategy=anneal, cycle_momentum=False))
    # torch's linear anneal computes (end - start) * pct + start, which loses digits near
    # its tiny final LR (cancellation of the order eps x peak): allow exactly that much
    _assert_same(ours, ref, abs_tol=1e-15 * LR)
    assert max(ours) == pytest.approx(LR) and ours[0] == pytest.approx(LR / div)


class RecordingSGD(torch.optim.SGD):
    """SGD that records the learning rate of every step it takes."""

    used: list[float] = []

    def step(self, closure=None):
        RecordingSGD.used.append(self.param_groups[0]["lr"])
        return super().step(closure)


class RecordingOptimizerPlugin:
    @lrlab.hookimpl
    def lrlab_register_optimizers(self, register):
        register("recording_sgd", lambda params, lr: RecordingSGD(params, lr=lr))


def test_history_lr_is_the_lr_of_each_epochs_last_step(out):
    RecordingSGD.used = []
    epochs = 3
    result = lrlab.run_sweep(out=out, plugins=[RecordingOptimizerPlugin()], lr=LR,
                             epochs=epochs, augment="none", optimizer="recording_sgd",
                             schedule="onecycle", report=False)
    n_train = len(stratified_split(digits(""), (0.6, 0.2, 0.2), 0).train[1])
    spe = math.ceil(n_train / 32)
    used = RecordingSGD.used
    assert len(used) == spe * epochs
    # the LRs used are torch's one-cycle over the run's real steps
    ref = _lrs(lambda o: torch_sched.OneCycleLR(o, max_lr=LR, total_steps=spe * epochs,
                                                cycle_momentum=False), spe * epochs)
    _assert_same(used, ref)
    hist = result.history.sort_values("epoch")
    # epoch 0 (before training) shows the LR the first step starts from
    assert hist["lr"].tolist() == [used[0]] + [used[e * spe - 1] for e in range(1, epochs + 1)]
    assert used[0] == pytest.approx(LR / 25.0)


def test_bad_schedule_parameters_are_usage_errors(registry):
    with pytest.raises(lrlab.UsageError, match="every"):
        registry.build("schedule", parse_spec("step(every=0)"), _optimizer(), SPE, EPOCHS)
    with pytest.raises(lrlab.UsageError, match="pct_start"):
        registry.build("schedule", parse_spec("onecycle(pct_start=1.5)"), _optimizer(),
                       SPE, EPOCHS)
