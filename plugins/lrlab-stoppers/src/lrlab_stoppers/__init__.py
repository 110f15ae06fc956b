"""lrlab-stoppers: early stopping on a smoothed plateau or on a growing train-val gap."""

from __future__ import annotations

import math

import lrlab

__version__ = "0.1.0"


class _BestVal:
    """Shared bookkeeping: the epoch of the lowest (finite) validation loss."""

    def __init__(self, restore_best: bool) -> None:
        self.restore_best = restore_best
        self.best_epoch: int | None = None
        self._best_val = math.inf

    def _track(self, epoch: int, metrics: dict[str, float]) -> None:
        val = metrics["val_loss"]
        if math.isfinite(val) and val < self._best_val:
            self._best_val, self.best_epoch = val, epoch


class PlateauEMA(_BestVal):
    """Stop when the EMA-smoothed validation loss stops improving for `patience` epochs."""

    def __init__(self, alpha: float, patience: int, min_delta: float,
                 restore_best: bool) -> None:
        super().__init__(restore_best)
        self.alpha, self.patience, self.min_delta = alpha, patience, abs(min_delta)
        self.smoothed: float | None = None  # s_t
        self.best_smoothed = math.inf
        self.wait = 0

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        self._track(epoch, metrics)
        val = metrics["val_loss"]
        if math.isfinite(val):
            self.smoothed = val if self.smoothed is None else \
                self.alpha * val + (1 - self.alpha) * self.smoothed
        if self.smoothed is not None and self.smoothed < self.best_smoothed - self.min_delta:
            self.best_smoothed, self.wait = self.smoothed, 0
            return False
        self.wait += 1
        return self.wait >= self.patience


class GapGrowth(_BestVal):
    """Stop when `val_loss - train_loss` grew in `patience` successive epochs."""

    def __init__(self, patience: int, min_delta: float, restore_best: bool) -> None:
        super().__init__(restore_best)
        self.patience, self.min_delta = patience, abs(min_delta)
        self.gap: float | None = None
        self.streak = 0

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        self._track(epoch, metrics)
        gap = metrics["val_loss"] - metrics["train_loss"]
        if not math.isfinite(gap):
            self.streak = 0
            return False
        grew = self.gap is not None and gap > self.gap + self.min_delta
        self.streak = self.streak + 1 if grew else 0
        self.gap = gap
        return self.streak >= self.patience


def plateau_ema(*, alpha: float = 0.3, patience: int = 3, min_delta: float = 0.0,
                restore_best: bool = True) -> PlateauEMA:
    """Stop when the EMA-smoothed val loss has not improved for `patience` epochs."""
    if not 0 < alpha <= 1 or patience < 1:
        raise lrlab.UsageError(f"plateau_ema: alpha must be in (0, 1] and patience >= 1, "
                               f"got alpha={alpha}, patience={patience}")
    return PlateauEMA(alpha, patience, min_delta, restore_best)


def gap_growth(*, patience: int = 3, min_delta: float = 0.0,
               restore_best: bool = True) -> GapGrowth:
    """Stop when the val-train loss gap grew in `patience` successive epochs."""
    if patience < 1:
        raise lrlab.UsageError(f"gap_growth: patience must be >= 1, got {patience}")
    return GapGrowth(patience, min_delta, restore_best)


@lrlab.hookimpl
def lrlab_register_stoppers(register):
    register("plateau_ema", plateau_ema)
    register("gap_growth", gap_growth)
