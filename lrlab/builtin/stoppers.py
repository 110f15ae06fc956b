"""Built-in early stopping: none; patience (Keras/Lightning semantics); Prechelt's
GL, PQ and UP criteria from "Early Stopping — But When?" (1998).

Prechelt's definitions, with E_va and E_tr the validation and training loss:

* ``GL(t) = 100 * (E_va(t) / E_opt(t) - 1)``, ``E_opt(t) = min_{t' <= t} E_va(t')``;
  GL_alpha stops after the first epoch with GL(t) > alpha.
* Training progress over a strip of k epochs ending at t:
  ``P_k(t) = 1000 * (sum_{t'=t-k+1..t} E_tr(t') / (k * min_{t'=t-k+1..t} E_tr(t')) - 1)``;
  PQ_alpha stops after the first end-of-strip epoch with GL(t) / P_k(t) > alpha.
* UP_s stops after epoch t when the validation loss rose at the ends of s successive
  strips: E_va(t) > E_va(t-k), E_va(t-k) > E_va(t-2k), ... (s rises).

All three keep (and by default restore) the epoch of the lowest validation loss, as the
paper prescribes.

Every stopper here has ``state_dict()`` / ``load_state_dict()`` (its attributes, copied),
so a checkpointed run continues with the stopper it had (:mod:`lrlab.checkpoints`).
"""

from __future__ import annotations

import copy
import math
from typing import Literal

from lrlab.errors import UsageError
from lrlab.markers import hookimpl
from lrlab.verdicts import generalization_loss


class Stateful:
    """``state_dict()`` / ``load_state_dict()``: everything the stopper has seen so far."""

    def state_dict(self) -> dict:
        return copy.deepcopy(vars(self))

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(copy.deepcopy(state))


class NoStopper(Stateful):
    """Never stops; its best epoch is the one of the lowest validation loss."""

    restore_best = False

    def __init__(self) -> None:
        self.best_epoch: int | None = None
        self._best = math.inf

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        if metrics["val_loss"] < self._best:
            self._best, self.best_epoch = metrics["val_loss"], epoch
        return False


class Patience(Stateful):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    Keras's ``EarlyStopping`` (and Lightning's) step by step: the wait grows by one each
    epoch and resets on an improvement (``value < best - min_delta`` in min mode,
    ``value > best + min_delta`` in max mode, the first finite value always improving);
    training stops once the wait reaches `patience`, never after the first epoch. Until
    a value improves, the first epoch is the one kept (Keras keeps its weights).
    """

    def __init__(self, monitor: str, mode: str, min_delta: float, patience: int,
                 restore_best: bool) -> None:
        if patience < 0:
            raise UsageError(f"stopper 'patience': patience must be >= 0, got {patience}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor, self.mode = monitor, mode
        self.min_delta, self.patience = abs(min_delta), patience
        self.restore_best = restore_best
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait = 0

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        value = metrics[self.monitor]
        if self.best_epoch is None:
            self.best_epoch = epoch
        self.wait += 1
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return False
        return self.wait >= self.patience and epoch > 1


class Prechelt(Stateful):
    """Shared bookkeeping of Prechelt's criteria: losses per epoch, the best epoch."""

    def __init__(self, restore_best: bool) -> None:
        self.restore_best = restore_best
        self.val: list[float] = []
        self.train: list[float] = []
        self.best_epoch: int | None = None

    def record(self, epoch: int, metrics: dict[str, float]) -> None:
        self.val.append(metrics["val_loss"])
        self.train.append(metrics["train_loss"])
        if self.best_epoch is None or metrics["val_loss"] < self.val[self.best_epoch - 1]:
            self.best_epoch = epoch

    def gl(self) -> float:
        """GL(t) in percent at the latest epoch (infinite once the loss is not finite)."""
        return generalization_loss(self.val, nonfinite=math.inf)

    def progress(self, k: int) -> float:
        """P_k(t) in per mille over the last strip of k epochs."""
        strip = self.train[-k:]
        low = min(strip)
        return 1000.0 * (sum(strip) / (k * low) - 1.0) if low > 0 else math.inf


class GL(Prechelt):
    """GL_alpha: stop after the first epoch whose generalization loss exceeds alpha %."""

    def __init__(self, alpha: float, restore_best: bool) -> None:
        _check(alpha >= 0, f"gl: alpha must be >= 0, got {alpha}")
        super().__init__(restore_best)
        self.alpha = alpha

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.record(epoch, metrics)
        return self.gl() > self.alpha


class PQ(Prechelt):
    """PQ_alpha: stop after the first end of a strip where GL(t) / P_k(t) exceeds alpha."""

    def __init__(self, alpha: float, strip: int, restore_best: bool) -> None:
        _check(alpha >= 0, f"pq: alpha must be >= 0, got {alpha}")
        _check(strip >= 1, f"pq: strip must be >= 1 epoch, got {strip}")
        super().__init__(restore_best)
        self.alpha, self.strip = alpha, strip

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.record(epoch, metrics)
        if epoch % self.strip != 0:
            return False
        p = self.progress(self.strip)
        if p == 0:
            return self.gl() > 0  # training has stalled completely
        return self.gl() / p > self.alpha


class UP(Prechelt):
    """UP_s: stop after the end of a strip t when the validation loss rose at the ends of
    s successive strips: E_va(t - i*k) > E_va(t - (i+1)*k) for i = 0 .. s-1."""

    def __init__(self, s: int, strip: int, restore_best: bool) -> None:
        _check(s >= 1, f"up: s must be >= 1 strip, got {s}")
        _check(strip >= 1, f"up: strip must be >= 1 epoch, got {strip}")
        super().__init__(restore_best)
        self.s, self.strip = s, strip

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        self.record(epoch, metrics)
        k = self.strip
        if epoch % k != 0 or epoch - self.s * k < 1:
            return False  # not the end of a strip, or fewer than s strips to compare

        def e_va(t: int) -> float:
            return self.val[t - 1]  # epochs count from 1

        return all(e_va(epoch - i * k) > e_va(epoch - (i + 1) * k) for i in range(self.s))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(f"stopper {message}")


def none() -> NoStopper:
    """No early stopping: train every epoch."""
    return NoStopper()


def patience(*, monitor: Literal["val_loss", "val_acc", "train_loss", "train_acc"] = "val_loss",
             mode: Literal["auto", "min", "max"] = "auto", min_delta: float = 0.0,
             patience: int = 5, restore_best: bool = False) -> Patience:
    """Keras/Lightning EarlyStopping: stop after `patience` epochs without improvement."""
    return Patience(monitor, mode, min_delta, patience, restore_best)


def gl(*, alpha: float = 5.0, restore_best: bool = True) -> GL:
    """Prechelt's GL_alpha: stop once the generalization loss exceeds alpha percent."""
    return GL(alpha, restore_best)


def pq(*, alpha: float = 0.5, strip: int = 5, restore_best: bool = True) -> PQ:
    """Prechelt's PQ_alpha: stop once generalization loss / training progress exceeds alpha."""
    return PQ(alpha, strip, restore_best)


def up(*, s: int = 2, strip: int = 5, restore_best: bool = True) -> UP:
    """Prechelt's UP_s: stop when the validation loss rose over s successive strips."""
    return UP(s, strip, restore_best)


@hookimpl
def lrlab_register_stoppers(register):
    register("none", none)
    register("patience", patience)
    register("gl", gl)
    register("pq", pq)
    register("up", up)
