"""What happens after each training epoch, written once for every executor.

An executor trains an epoch, appends its history row, then asks the run's
:class:`EpochRule` what to do::

    rule = EpochRule(run, stopper, settings.thresholds, epoch_end)
    for epoch in ...:
        ...  # train, evaluate, history.append(row)
        decision = rule.after_epoch(history, epoch, metrics)
        if decision.snapshot:
            best = <copy of the weights>
        if decision.stopped_by:
            break
    if (restored := rule.restore_epoch(stopped_by)) is not None:
        <load best>

The checks, in order:

1. a run that has diverged beyond recovery (:func:`lrlab.verdicts.divergence`) stops
   with ``"diverged"``; its record is final, and neither the stopper nor the plugins are
   asked about that epoch;
2. the stopper sees the epoch (``stopper.update``);
3. if the stopper restores its best epoch and this is it, the weights are to be copied
   now (the rule only says so: copying weights is the executor's business);
4. the plugins' ``lrlab_epoch_end`` hook may stop the run (``"plugin"``);
5. else the stopper may stop it (``"stopper"``).

At the end, the best epoch's weights are restored when the stopper asks for it and a copy
was taken, unless the run diverged. An exception from the stopper or the hook propagates
to the executor, which decides what it means (a failed run, or one failed group member).

A checkpoint keeps the rule's state (:meth:`EpochRule.state_dict`: the stopper's, through
:func:`lrlab.checkpoints.object_state`, and whether a snapshot was taken), so a resumed
run is judged as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lrlab.checkpoints import object_state, restore_object
from lrlab.config import Run
from lrlab.verdicts import divergence

EpochEnd = Callable[[Run, int, dict[str, float]], bool | None]


@dataclass(frozen=True)
class Decision:
    """The rule's answer after one epoch."""

    stopped_by: str | None = None  # "diverged", "plugin", "stopper", or None: go on
    snapshot: bool = False  # copy the weights now: this is the stopper's best epoch


class EpochRule:
    """The end-of-epoch rule for one run: divergence, stopper, snapshot, plugins."""

    def __init__(self, run: Run, stopper: Any, thresholds: dict[str, float],
                 epoch_end: EpochEnd | None = None) -> None:
        self.run = run
        self.stopper = stopper
        self.thresholds = thresholds
        self.epoch_end = epoch_end
        self.restore_best = bool(getattr(stopper, "restore_best", False))
        self.snapshot_taken = False  # whether a snapshot was ever asked for

    def after_epoch(self, history: Sequence[dict[str, float]], epoch: int,
                    metrics: dict[str, float]) -> Decision:
        """Judge ``epoch`` (its row already last in ``history``): stop or go on, and
        whether to snapshot the weights first."""
        if divergence(history, self.thresholds):
            return Decision("diverged")
        stop = self.stopper.update(epoch, metrics)
        snapshot = self.restore_best and self.stopper.best_epoch == epoch
        plugin = self.epoch_end is not None and bool(self.epoch_end(self.run, epoch, metrics))
        self.snapshot_taken = self.snapshot_taken or snapshot
        if plugin:
            return Decision("plugin", snapshot)
        return Decision("stopper" if stop else None, snapshot)

    def state_dict(self) -> dict[str, Any]:
        """What the rule has seen: the stopper's state and whether a snapshot was taken."""
        return {"stopper": object_state(self.stopper), "snapshot_taken": self.snapshot_taken}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the stopper built afresh for the same run)."""
        self.stopper = restore_object(self.stopper, state["stopper"])
        self.snapshot_taken = bool(state["snapshot_taken"])

    def restore_epoch(self, stopped_by: str | None) -> int | None:
        """The epoch whose snapshot to load before testing, or None to test the last
        weights (no restoring stopper, no snapshot taken, or the run diverged)."""
        if self.restore_best and self.snapshot_taken and stopped_by != "diverged":
            return self.stopper.best_epoch
        return None
