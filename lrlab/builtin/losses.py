"""Built-in losses: cross-entropy on class indices, MSE on one-hot targets, label smoothing.

torch is imported inside each factory, when a loss is built: registering them (``lrlab
list``, ``lrlab plugins``) reads only their signatures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from lrlab.errors import UsageError
from lrlab.markers import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    import torch


def cross_entropy(num_classes: int):
    """Cross-entropy of the logits against class indices (softmax + negative log-likelihood)."""
    import torch.nn.functional as F

    return F.cross_entropy


def mse(num_classes: int, *, on: Literal["probs", "logits"] = "probs"):
    """Mean squared error against one-hot targets, on softmax probabilities (or raw logits)."""
    import torch
    import torch.nn.functional as F

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs = logits.softmax(dim=1) if on == "probs" else logits
        # one-hot by comparison: F.one_hot checks its input with .item() on CPU, which
        # costs a sync per step and cannot run under vmap (the vectorized executor)
        classes = torch.arange(num_classes, device=targets.device)
        return F.mse_loss(outputs, (targets[:, None] == classes).to(outputs.dtype))

    return loss


def label_smoothing(num_classes: int, *, eps: float = 0.1):
    """Cross-entropy against targets smoothed by `eps` (Szegedy et al. 2016)."""
    if not 0 <= eps <= 1:
        raise UsageError(f"loss label_smoothing: eps must be in [0, 1], got {eps}")
    import torch.nn.functional as F

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=eps)

    return loss


@hookimpl
def lrlab_register_losses(register):
    register("cross_entropy", cross_entropy)
    register("mse", mse)
    register("label_smoothing", label_smoothing)
