"""The vectorized executor gives each run the local executor's history; auto picks it only
where it does; groups vmap cannot serve fall back to the local executor and say so once."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import lrlab
from lrlab import hookimpl
from lrlab.builtin.vectorized import VectorizedExecutor
from lrlab.config import build_config, expand
from lrlab.engine import lr_table
from lrlab.plugins import load_plugins
from lrlab.registry import Spec
from lrlab.vectorized import trainer
from lrlab.vectorized.optim import BatchedOptimizer, describe
from lrlab.vectorized.stacked import StackedModel

TINY = dict(dataset="digits", model="mlp(width=32)", augment="none", epochs=3,
            batch_size=64, report=False)
METRICS = ["train_loss", "train_acc", "val_loss", "val_acc"]
# auto without its size rule: the tiny groups of these tests spare too few steps for auto
# to vectorize them, and the tests are about which numbers auto gives when it does
AUTO_ANY_SIZE = "auto(min_spared_steps=0)"


def both(out, **kw):
    """The same sweep on the local and on the vectorized executor."""
    args = {**TINY, **kw}
    local = lrlab.run_sweep(out=out / "local", executor="local", **args)
    vect = lrlab.run_sweep(out=out / "vect", executor="vectorized", **args)
    assert_vectorized(vect)
    return local, vect


def assert_vectorized(result):
    """No group fell back to the local executor (which would give the same histories)."""
    fallbacks = [n for n in result.notes if "one at a time" in n and "0 one at a time" not in n]
    assert not fallbacks, fallbacks


def assert_same_histories(local, vect):
    a = local.history.sort_values(["run_id", "epoch"]).reset_index(drop=True)
    b = vect.history.sort_values(["run_id", "epoch"]).reset_index(drop=True)
    assert list(a.run_id) == list(b.run_id) and list(a.epoch) == list(b.epoch)
    assert np.array_equal(a.lr.values, b.lr.values)
    for col in ("train_loss", "val_loss", "max_batch_loss"):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-4, atol=1e-5, err_msg=col)
    for col in ("train_acc", "val_acc"):  # a near-tie may flip one sample's argmax
        np.testing.assert_allclose(b[col], a[col], atol=2.5e-3, err_msg=col)
    ra, rb = local.runs.set_index("run_id"), vect.runs.set_index("run_id").loc[local.runs.run_id]
    assert list(ra.stopped_by) == list(rb.stopped_by)
    assert list(ra.restored_epoch) == list(rb.restored_epoch)
    assert list(ra.verdict) == list(rb.verdict)
    np.testing.assert_allclose(rb.test_loss, ra.test_loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rb.test_acc, ra.test_acc, atol=2.5e-3)
    assert (rb.error == "").all()


def test_sgd_momentum_constant_matches_local(out, monkeypatch):
    monkeypatch.setattr(trainer, "TRACE_MIN_CALLS", 1)  # every batch shape through make_fx
    local, vect = both(out, optimizer="sgd(momentum=0.9)", lr=[0.01, 0.1], seeds=2)
    assert_same_histories(local, vect)
    assert len(vect.runs) == 4 and not vect.notes


def test_adam_onecycle_with_restoring_stopper_matches_local(out):
    local, vect = both(out, optimizer="adam", schedule="onecycle", lr=[1e-3, 0.1],
                       stopper="patience(patience=1,restore_best=True)", epochs=4)
    assert_same_histories(local, vect)
    runs = vect.runs.set_index("run_id")
    assert (runs.stopped_by == "stopper").any()  # lr 0.1 stops early, lr 1e-3 runs on
    assert (runs.epochs_run == 4).any()


def test_other_optimizers_schedules_and_epochs_in_one_group_match_local(out):
    local, vect = both(out, optimizer=["radam", "adamw(weight_decay=0.1)",
                                       "sgd(momentum=0.9,nesterov=True,weight_decay=0.01)"],
                       schedule=["cosine", "step(every=1,gamma=0.5)"], lr=[0.003],
                       epochs=[1, 2])
    assert_same_histories(local, vect)


def test_divergence_of_one_member_does_not_disturb_the_others(out):
    local, vect = both(out, optimizer="sgd(momentum=0.9)", lr=[0.05, 50.0], epochs=3)
    assert_same_histories(local, vect)
    runs = vect.runs.set_index("run_id")
    assert runs.loc["mlp(width=32)-lr50-ep3-none-s0", "stopped_by"] == "diverged"
    assert runs.loc["mlp(width=32)-lr0.05-ep3-none-s0", "epochs_run"] == 3


def test_initial_weights_are_the_local_executors(out):
    host = load_plugins([])
    models = []
    for seed in (3, 4):
        torch.manual_seed(seed)
        models.append(host.registry.build("model", Spec("mlp"), (1, 8, 8), 10))
    stacked = StackedModel(models, torch.nn.functional.cross_entropy)
    for i, model in enumerate(models):
        for name, value in model.state_dict().items():
            assert torch.equal(stacked.snapshot(i)[name], value)


class BatchNormModels:
    @hookimpl
    def lrlab_register_models(self, register):
        def bnmlp(input_shape, num_classes):
            """An MLP with BatchNorm."""
            return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16),
                                 nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, num_classes))

        def dropmlp(input_shape, num_classes):
            """An MLP with dropout."""
            return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16),
                                 nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, num_classes))

        def broken(input_shape, num_classes):
            """A model whose forward pass raises."""
            return Broken()

        register("bnmlp", bnmlp)
        register("dropmlp", dropmlp)
        register("broken", broken)


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        raise RuntimeError("this model cannot run")


def test_batchnorm_model_falls_back_to_local_and_says_so_once(out):
    kw = {**TINY, "model": "bnmlp", "lr": [0.01, 0.1], "seeds": 2, "epochs": 2,
          "optimizer": ["sgd", "adam"]}  # two groups, both falling back: one note
    local = lrlab.run_sweep(out=out / "l", executor="local", plugins=[BatchNormModels()], **kw)
    vect = lrlab.run_sweep(out=out / "v", executor="vectorized", plugins=[BatchNormModels()],
                           **kw)
    notes = [n for n in vect.notes if "BatchNorm" in n]
    assert len(notes) == 1 and notes[0].startswith("vectorized:")
    pd_equal = local.history.drop(columns="wall_s").equals(vect.history.drop(columns="wall_s"))
    assert pd_equal  # trained by the local executor: the very same numbers


def test_dropout_is_vectorized_only_when_asked_and_noted(out):
    kw = {**TINY, "model": "dropmlp", "lr": [0.01, 0.1], "epochs": 2}
    vect = lrlab.run_sweep(out=out / "v", executor="vectorized", plugins=[BatchNormModels()],
                           **kw)
    assert any("dropout" in n and "not identical" in n for n in vect.notes)
    assert (vect.runs.error == "").all() and (vect.runs.epochs_run == 2).all()
    auto = lrlab.run_sweep(out=out / "a", executor=AUTO_ANY_SIZE, plugins=[BatchNormModels()], **kw)
    local = lrlab.run_sweep(out=out / "l", executor="local", plugins=[BatchNormModels()], **kw)
    assert auto.history.drop(columns="wall_s").equals(local.history.drop(columns="wall_s"))


def test_a_model_that_fails_gives_each_run_its_error_as_locally(out):
    kw = {**TINY, "model": "broken", "lr": [0.01, 0.1], "epochs": 1}
    result = lrlab.run_sweep(out=out, executor="vectorized", plugins=[BatchNormModels()], **kw)
    assert list(result.runs.verdict) == ["error", "error"]
    assert result.runs.error.str.contains("this model cannot run").all()
    assert any("the broken runs were trained one at a time" in n for n in result.notes)


def test_auto_vectorizes_augmented_groups_with_the_local_random_numbers(out, monkeypatch):
    grouped = []
    real = trainer.train_group

    def spy(plan, context):
        grouped.append([r.run_id for r in plan.runs])
        return real(plan, context)

    monkeypatch.setattr(trainer, "train_group", spy)
    grid = {**TINY, "augment": ["none", "noise", "flip+crop(padding=1)"], "lr": [0.01, 0.1],
            "seeds": 2, "epochs": 2}
    result = lrlab.run_sweep(out=out / "auto", executor=AUTO_ANY_SIZE, **grid)
    assert [len(g) for g in grouped] == [4, 4, 4]  # one group per augmentation
    assert any("12 run(s) trained vectorized in 3 group(s), 0 one at a time" in n
               for n in result.notes)
    local = lrlab.run_sweep(out=out / "local", executor="local", **grid)
    assert_same_histories(local, result)


def test_auto_keeps_dropout_groups_local(out):
    grid = {**TINY, "model": "mlp(dropout=0.2)", "lr": [0.01, 0.1], "epochs": 1}
    result = lrlab.run_sweep(out=out / "auto", executor=AUTO_ANY_SIZE, **grid)
    assert any("dropout" in n and "one at a time" in n for n in result.notes)
    local = lrlab.run_sweep(out=out / "local", executor="local", **grid)
    pd.testing.assert_frame_equal(result.history.drop(columns="wall_s"),
                                  local.history.drop(columns="wall_s"))  # dropout draws too


def test_a_failing_group_is_trained_run_by_run(out, monkeypatch):
    def broken(plan, context):
        raise RuntimeError("boom")
        yield  # a generator, as train_group is

    monkeypatch.setattr(trainer, "train_group", broken)
    result = lrlab.run_sweep(out=out, executor="vectorized", **{**TINY, "lr": [0.01, 0.1],
                                                                 "epochs": 1})
    assert (result.runs.error == "").all() and len(result.runs) == 2
    assert any("boom" in n for n in result.notes)


class CountStarts:
    def __init__(self):
        self.starts = []

    @hookimpl
    def lrlab_run_start(self, run):
        self.starts.append(run.run_id)


def test_a_group_failing_midway_is_retrained_without_starting_its_runs_twice(out, monkeypatch):
    def fails(self, *args, **kwargs):
        raise RuntimeError("the group's step failed")

    monkeypatch.setattr(StackedModel, "grads", fails)
    counter = CountStarts()
    result = lrlab.run_sweep(out=out, executor="vectorized", plugins=[counter],
                             **{**TINY, "lr": [0.01, 0.1], "epochs": 1})
    assert (result.runs.error == "").all() and len(result.runs) == 2  # retrained locally
    assert any("the group's step failed" in n for n in result.notes)
    assert sorted(counter.starts) == sorted(result.runs.run_id)  # once each


class Threads:
    """Records the torch thread count of every vectorized step."""

    def __init__(self, monkeypatch):
        self.seen = set()
        real = StackedModel.grads

        def grads(stacked, *args, **kwargs):
            self.seen.add(torch.get_num_threads())
            return real(stacked, *args, **kwargs)

        monkeypatch.setattr(StackedModel, "grads", grads)


def test_the_vectorized_steps_use_the_threads_the_local_executor_would(out, monkeypatch):
    torch.set_num_threads(2)
    try:
        spy = Threads(monkeypatch)
        lrlab.run_sweep(out=out / "a", executor="vectorized", **{**TINY, "lr": [0.01, 0.1],
                                                                  "epochs": 1, "threads": 1})
        assert spy.seen == {1}
        spy.seen.clear()  # a small group: one thread, as engine.train gives a small run
        lrlab.run_sweep(out=out / "b", executor="vectorized", **{**TINY, "lr": [0.01, 0.1],
                                                                  "epochs": 1})
        assert spy.seen == {1}
        spy.seen.clear()
        lrlab.run_sweep(out=out / "c", executor="vectorized", **{**TINY, "lr": [0.01, 0.1],
                                                                  "epochs": 1, "threads": 2})
        assert spy.seen == {2}
        assert torch.get_num_threads() == 2  # restored after the sweep
    finally:
        torch.set_num_threads(1)


class ConstantAfterMatmul(nn.Module):
    """``x @ W + 1.0``: a traced add of a Python number right after a matmul."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.flat = nn.Flatten()
        self.linear = nn.Linear(math.prod(input_shape), num_classes, bias=False)

    def forward(self, x):
        return self.linear(self.flat(x)) + 1.0


def test_a_number_added_after_a_matmul_is_not_fused_into_the_traced_step():
    torch.manual_seed(0)
    models = [ConstantAfterMatmul((1, 2, 2), 3) for _ in range(2)]
    stacked = StackedModel(models, torch.nn.functional.cross_entropy)
    x, y = torch.randn(2, 5, 1, 2, 2), torch.randint(0, 3, (2, 5))
    eager, _ = stacked.grads(x, y, trace=False)
    traced, _ = stacked.grads(x, y, trace=True)
    assert all(torch.allclose(a, b) for a, b in zip(traced, eager, strict=True))


def test_mse_groups_are_vectorized_by_auto_with_the_local_numbers(out):
    local, _ = both(out, loss="mse", lr=[0.1, 1.0], epochs=2)
    auto = lrlab.run_sweep(out=out / "auto", executor=AUTO_ANY_SIZE,
                           **{**TINY, "loss": "mse", "lr": [0.1, 1.0], "epochs": 2})
    assert any("2 run(s) trained vectorized in 1 group(s)" in n for n in auto.notes), auto.notes
    assert_same_histories(local, auto)


class FailingEpochEnd:
    @hookimpl
    def lrlab_epoch_end(self, run, epoch, metrics):
        if run.lr > 0.05 and epoch == 2:
            raise ValueError("this plugin fails for one run")
        return None


def test_a_plugin_error_in_one_member_leaves_the_others_alone(out):
    result = lrlab.run_sweep(out=out, executor="vectorized", plugins=[FailingEpochEnd()],
                             **{**TINY, "lr": [0.01, 0.1]})
    runs = result.runs.set_index("run_id")
    assert runs.loc["mlp(width=32)-lr0.1-ep3-none-s0", "verdict"] == "error"
    assert "this plugin fails" in runs.loc["mlp(width=32)-lr0.1-ep3-none-s0", "error"]
    assert runs.loc["mlp(width=32)-lr0.01-ep3-none-s0", "epochs_run"] == 3


def test_the_step_is_traced_once_per_shape_and_agrees_with_eager_vmap():
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Flatten(), nn.Linear(4, 3)) for _ in range(2)]
    stacked = StackedModel(models, torch.nn.functional.cross_entropy)
    x, y = torch.randn(2, 5, 1, 2, 2), torch.randint(0, 3, (2, 5))
    eager, eager_losses = stacked.grads(x, y, trace=False)
    assert not stacked._traces
    traced, traced_losses = stacked.grads(x, y)
    assert all(torch.allclose(a, b) for a, b in zip(traced, eager, strict=True))
    assert torch.allclose(traced_losses, eager_losses) and eager_losses.shape == (2,)
    assert isinstance(stacked._traces[next(iter(stacked._traces))], torch.fx.GraphModule)
    stacked.grads(x, y)
    stacked.grads(x[:, :3], y[:, :3])
    assert len(stacked._traces) == 2


OPTIMIZERS = [
    (torch.optim.SGD, [dict(momentum=0.9), dict(momentum=0.0, weight_decay=0.1)]),
    (torch.optim.SGD, [dict(momentum=0.9, nesterov=True), dict(momentum=0.5, nesterov=True,
                                                               weight_decay=0.01)]),
    (torch.optim.Adam, [dict(), dict(betas=(0.8, 0.99), weight_decay=0.1, eps=1e-3)]),
    (torch.optim.AdamW, [dict(), dict(betas=(0.8, 0.99), weight_decay=0.1)]),
    (torch.optim.RAdam, [dict(), dict(betas=(0.8, 0.9), weight_decay=0.1)]),
    (torch.optim.RAdam, [dict(decoupled_weight_decay=True, weight_decay=0.1)] * 2),
]


@pytest.mark.parametrize(("cls", "kwargs"), OPTIMIZERS,
                         ids=["sgd", "nesterov", "adam", "adamw", "radam", "radamw"])
def test_batched_optimizers_follow_torch_optim(cls, kwargs):
    torch.manual_seed(0)
    lrs = [0.1, 0.003]
    start = torch.randn(2, 20)
    grads = [torch.randn(2, 20) for _ in range(12)]
    expected = []
    for m, kw in enumerate(kwargs):
        p = nn.Parameter(start[m].clone())
        opt = cls([p], lr=lrs[m], **kw)
        for g in grads:
            p.grad = g[m].clone()
            opt.step()
        expected.append(p.detach())
    described = [describe(cls([nn.Parameter(torch.zeros(1))], lr=lrs[m], **kw))
                 for m, kw in enumerate(kwargs)]
    batched = BatchedOptimizer(described[0][0], [d[1] for d in described], [15, 5],
                               torch.device("cpu"))
    params = start.clone()
    for g in grads:  # two chunks, as two parameter tensors would be
        batched.step(list(params.split([15, 5], dim=1)), list(g.clone().split([15, 5], dim=1)),
                     torch.tensor(lrs, dtype=torch.float64)[:, None])
    torch.testing.assert_close(params, torch.stack(expected), rtol=1e-6, atol=1e-7)


def test_unsupported_optimizers_are_named():
    p = [nn.Parameter(torch.zeros(1))]
    assert "amsgrad" in describe(torch.optim.Adam(p, amsgrad=True))
    assert "Adagrad" in describe(torch.optim.Adagrad(p))


@pytest.mark.parametrize("schedule", ["constant", "onecycle", "cosine", "step(every=1)",
                                      "exponential"])
def test_lr_tables_equal_stepping_the_schedule(schedule):
    host = load_plugins([])
    run = expand(build_config(
        overrides={"lr": 0.1, "schedule": schedule, "epochs": 3, "augment": "none"}))[0]
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=run.lr)
    sched = host.registry.build("schedule", run.schedule, opt, 5, run.epochs)
    stepped = []
    for _ in range(15):
        stepped.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lr_table(host.registry, run, 5) == stepped


def test_groups_split_by_structure_and_size():
    host = load_plugins([])
    cfg = build_config(overrides={
        "lr": [0.1, 0.2, 0.3], "optimizer": ["sgd", "sgd(nesterov=True,momentum=0.9)"],
        "augment": "none"})
    runs = expand(cfg)

    class Ctx:
        registry = host.registry

    groups = VectorizedExecutor(auto=False, max_group=2).groups(runs, Ctx())
    assert [len(g) for g in groups] == [2, 1, 2, 1]
    assert all(len({str(r.optimizer) for r in g}) == 1 for g in groups)


def test_a_run_that_blows_up_inside_its_first_epoch_is_diverged_as_on_local(out):
    # lr 1 with momentum spikes the batch loss to ~40x its start, then the net dies at
    # chance: the clean epoch loss alone would not show it
    local, vect = both(out, optimizer="sgd(momentum=0.9)", lr=[0.01, 1.0], epochs=2,
                       model="mlp", batch_size=32)
    assert_same_histories(local, vect)
    verdicts = vect.runs.set_index("lr")["verdict"]
    assert verdicts[1.0] == "diverged" and verdicts[0.01] != "diverged"
    assert "mini-batch loss" in vect.runs.set_index("lr").loc[1.0, "flags"]


def test_auto_trains_a_lone_run_locally_without_a_note_and_vectorized_says_why(out):
    lone = {**TINY, "lr": 0.1, "epochs": 1}
    auto = lrlab.run_sweep(out=out / "a", executor="auto", **lone)
    assert auto.notes == [] and (auto.runs.error == "").all()
    vect = lrlab.run_sweep(out=out / "v", executor="vectorized", **lone)
    assert any("a group of one run gains nothing" in n for n in vect.notes)


def test_auto_trains_a_group_too_small_to_repay_vectorizing_locally_and_vectorized_never(out):
    small = {**TINY, "lr": [0.01, 0.1], "epochs": 1}  # 2 runs x 17 steps: 17 spared
    local = lrlab.run_sweep(out=out / "l", executor="local", **small)
    auto = lrlab.run_sweep(out=out / "a", executor="auto", **small)
    assert auto.notes == []  # no group trained vectorized (auto would say how many)
    # the local executor's own numbers, not vectorized ones within rounding
    assert auto.history.drop(columns="wall_s").equals(local.history.drop(columns="wall_s"))
    vect = lrlab.run_sweep(out=out / "v", executor="vectorized", **small)
    assert_vectorized(vect)
    assert vect.notes == []
    forced = lrlab.run_sweep(out=out / "f", executor=AUTO_ANY_SIZE, **small)
    assert any("2 run(s) trained vectorized in 1 group(s)" in n for n in forced.notes)


def test_auto_vectorizes_the_group_that_spares_enough_steps_and_not_the_small_one(out):
    # max_group=3 splits 5 runs into groups of 3 and 2: 15 epochs x 17 steps each, so the
    # first spares 2 x 255 = 510 steps (>= 500), the second 255
    result = lrlab.run_sweep(out=out, executor="auto(max_group=3)",
                             **{**TINY, "lr": [0.01, 0.02, 0.03, 0.04, 0.05], "epochs": 15})
    assert "auto: 3 run(s) trained vectorized in 1 group(s), 2 one at a time" in result.notes


def test_the_steps_a_group_must_spare_grow_with_a_compute_bound_step():
    from lrlab.builtin.vectorized import COMPUTE_BOUND, MIN_SPARED_STEPS, pays, spared_steps

    runs = expand(build_config(overrides={"lr": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "epochs": 40,
                                               "augment": "none"}))
    assert spared_steps(runs, 34) == 5 * 40 * 34  # the default sweep's group: 6,800
    assert spared_steps(runs[:1], 34) == 0
    assert pays(MIN_SPARED_STEPS, COMPUTE_BOUND, "cpu")
    assert not pays(MIN_SPARED_STEPS - 1, 0, "cpu")
    assert not pays(MIN_SPARED_STEPS, 3 * COMPUTE_BOUND, "cpu")
    assert pays(3 * MIN_SPARED_STEPS, 3 * COMPUTE_BOUND, "cpu")
    assert pays(MIN_SPARED_STEPS, 3 * COMPUTE_BOUND, "cuda")  # scaled on CPU only


def test_a_steps_compute_is_counted_in_multiply_adds_convolutions_included():
    from lrlab.vectorized.stacked import forward_macs

    assert forward_macs(nn.Linear(64, 10), torch.randn(32, 64)) == 32 * 64 * 10
    conv = nn.Conv2d(1, 4, 3, padding=1)  # each weight is used at every one of 8x8 places
    assert forward_macs(conv, torch.randn(32, 1, 8, 8)) == 32 * 64 * 4 * 9
