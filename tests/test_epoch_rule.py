"""The end-of-epoch rule every executor applies (lrlab.epochs.EpochRule): divergence
first, then the stopper, a snapshot at the stopper's best epoch, the plugins, and no
restoring after divergence."""

from __future__ import annotations

import math

import pytest

import lrlab
from lrlab import hookimpl
from lrlab.epochs import Decision, EpochRule
from lrlab.verdicts import DEFAULT_THRESHOLDS

RUN = object()  # the rule only hands the run on to the plugin hook


def row(epoch: int, batch_loss: float, max_batch_loss: float | None = None) -> dict:
    return {"epoch": epoch, "lr": 0.1, "train_loss": 2.3 if epoch == 0 else batch_loss,
            "train_acc": 0.1, "val_loss": 2.3, "val_acc": 0.1, "batch_loss": batch_loss,
            "max_batch_loss": batch_loss if max_batch_loss is None else max_batch_loss}


START = row(0, math.nan)
HEALTHY = row(1, 1.0)
NONFINITE = row(1, math.nan, math.inf)
METRICS = {"lr": 0.1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5}


class Stopper:
    """Says stop at ``stop_at``; its best epoch is the last of ``best`` seen so far."""

    def __init__(self, calls: list, stop_at: int | None = None, best=(), restore_best=True):
        self.calls, self.stop_at, self.best = calls, stop_at, set(best)
        self.restore_best = restore_best
        self.best_epoch = None

    def update(self, epoch, metrics):
        self.calls.append(("stopper", epoch))
        if epoch in self.best:
            self.best_epoch = epoch
        return epoch == self.stop_at


def hook(calls: list, answer=None):
    def epoch_end(run, epoch, metrics):
        assert run is RUN and metrics is METRICS
        calls.append(("plugin", epoch))
        return answer(epoch) if callable(answer) else answer
    return epoch_end


def rule(calls, answer=None, **stopper) -> EpochRule:
    return EpochRule(RUN, Stopper(calls, **stopper), dict(DEFAULT_THRESHOLDS),
                     hook(calls, answer))


def test_divergence_stops_before_the_stopper_or_the_plugins_are_asked():
    calls: list = []
    r = rule(calls, answer=True, stop_at=1, best=[1])
    assert r.after_epoch([START, NONFINITE], 1, METRICS) == Decision("diverged", False)
    assert calls == []  # neither the stopper nor the hook saw the diverged epoch


def test_a_loss_blown_up_for_patience_epochs_is_diverged():
    calls: list = []
    r = rule(calls)
    history = [START]
    for epoch in (1, 2):
        history.append(row(epoch, 9.0))
        assert r.after_epoch(history, epoch, METRICS).stopped_by is None
    history.append(row(3, 9.0))
    assert r.after_epoch(history, 3, METRICS).stopped_by == "diverged"
    assert calls == [("stopper", 1), ("plugin", 1), ("stopper", 2), ("plugin", 2)]


def test_the_stopper_stops_the_run_with_stopped_by_stopper():
    calls: list = []
    r = rule(calls, stop_at=2)
    assert r.after_epoch([START, HEALTHY], 1, METRICS).stopped_by is None
    assert r.after_epoch([START, HEALTHY, row(2, 1.0)], 2, METRICS).stopped_by == "stopper"


def test_the_plugin_stops_the_run_after_the_stopper_has_seen_the_epoch():
    calls: list = []
    r = rule(calls, answer=lambda epoch: epoch == 1, stop_at=1)
    # both would stop: the plugin's answer names the reason, and the stopper was asked first
    assert r.after_epoch([START, HEALTHY], 1, METRICS).stopped_by == "plugin"
    assert calls == [("stopper", 1), ("plugin", 1)]


@pytest.mark.parametrize("answer", [None, False])
def test_a_plugin_answering_none_or_false_lets_the_run_go_on(answer):
    assert rule([], answer=answer).after_epoch([START, HEALTHY], 1, METRICS) == Decision()


def test_a_missing_plugin_hook_lets_the_run_go_on():
    r = EpochRule(RUN, Stopper([]), dict(DEFAULT_THRESHOLDS), None)
    assert r.after_epoch([START, HEALTHY], 1, METRICS) == Decision()


def test_a_snapshot_is_asked_for_exactly_at_the_restoring_stoppers_best_epochs():
    r = rule([], best=[1, 3])
    history = [START]
    snapshots = []
    for epoch in range(1, 5):
        history.append(row(epoch, 1.0))
        snapshots.append(r.after_epoch(history, epoch, METRICS).snapshot)
    assert snapshots == [True, False, True, False]
    assert r.restore_epoch(None) == 3  # ran all its epochs: the best one is tested


def test_the_best_epoch_is_snapshotted_even_when_that_epoch_stops_the_run():
    by_plugin = rule([], answer=True, best=[1]).after_epoch([START, HEALTHY], 1, METRICS)
    by_stopper = rule([], stop_at=1, best=[1]).after_epoch([START, HEALTHY], 1, METRICS)
    assert by_plugin == Decision("plugin", True)
    assert by_stopper == Decision("stopper", True)


def test_a_stopper_that_does_not_restore_never_asks_for_a_snapshot_or_a_restore():
    r = rule([], stop_at=2, best=[1, 2], restore_best=False)
    assert not r.after_epoch([START, HEALTHY], 1, METRICS).snapshot
    assert r.after_epoch([START, HEALTHY, row(2, 1.0)], 2, METRICS) == Decision("stopper")
    assert r.restore_epoch("stopper") is None


def test_without_a_snapshot_nothing_is_restored():
    r = rule([], stop_at=1)  # restores, but never reached a best epoch
    assert r.after_epoch([START, HEALTHY], 1, METRICS) == Decision("stopper", False)
    assert r.restore_epoch("stopper") is None


def test_a_diverged_run_is_never_restored():
    r = rule([], best=[1])
    assert r.after_epoch([START, HEALTHY], 1, METRICS).snapshot
    assert r.after_epoch([START, HEALTHY, row(2, math.nan, math.inf)], 2,
                         METRICS).stopped_by == "diverged"
    assert r.restore_epoch("diverged") is None
    assert r.restore_epoch("plugin") == 1  # the snapshot itself would have been restored


def test_an_exception_from_the_stopper_or_the_hook_reaches_the_executor():
    class Broken(Stopper):
        def update(self, epoch, metrics):
            raise ValueError("stopper broke")

    r = EpochRule(RUN, Broken([]), dict(DEFAULT_THRESHOLDS), None)
    with pytest.raises(ValueError, match="stopper broke"):
        r.after_epoch([START, HEALTHY], 1, METRICS)

    def broken_hook(run, epoch, metrics):
        raise ValueError("hook broke")

    r = EpochRule(RUN, Stopper([]), dict(DEFAULT_THRESHOLDS), broken_hook)
    with pytest.raises(ValueError, match="hook broke"):
        r.after_epoch([START, HEALTHY], 1, METRICS)


# -- through the vectorized executor: a member's stopper error is that member's alone ---


class FailsAtEpoch2:
    restore_best = False
    best_epoch = None

    def update(self, epoch, metrics):
        if epoch == 2:
            raise ValueError("this stopper fails at epoch 2")
        return False


class FailingStopperPlugin:
    @hookimpl
    def lrlab_register_stoppers(self, register):
        register("fails2", lambda: FailsAtEpoch2())


def test_a_stopper_error_in_one_vectorized_member_leaves_the_others_alone(out):
    result = lrlab.run_sweep(out=out, executor="vectorized", plugins=[FailingStopperPlugin()],
                             dataset="digits", model="mlp(width=32)", augment="none",
                             epochs=3, batch_size=64, report=False, lr=0.1,
                             stopper=["none", "fails2"])
    # the group was not given up on and retrained run by run (which would also isolate it)
    fallbacks = [n for n in result.notes if "one at a time" in n and "0 one at a time" not in n]
    assert not fallbacks, fallbacks
    runs = result.runs.set_index("stopper")
    assert runs.loc["fails2", "verdict"] == "error"
    assert "Traceback" in runs.loc["fails2", "error"]
    assert "this stopper fails at epoch 2" in runs.loc["fails2", "error"]
    assert runs.loc["none", "error"] == "" and runs.loc["none", "epochs_run"] == 3
