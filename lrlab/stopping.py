"""The early-stopping contract every stopper follows."""

from __future__ import annotations

from typing import Protocol


class Stopper(Protocol):
    """Sees each epoch's metrics, says when to stop, knows the epoch to keep.

    ``update`` is called after every epoch (counted from 1) with ``train_loss
    train_acc val_loss val_acc lr`` and returns True to stop training after it.
    ``best_epoch`` is the epoch the stopper would keep (None before the first update).
    With ``restore_best`` the engine reloads that epoch's weights before the test split
    is evaluated.
    """

    restore_best: bool
    best_epoch: int | None

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        ...
