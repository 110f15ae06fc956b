"""Built-in learning-rate schedules, each a pure function of the batch step.

Every schedule is a ``LambdaLR`` over a factor ``f(step)`` of the run's learning rate,
stepped once per batch, so a schedule is exactly reproducible from its step number (the
vectorized executor relies on that). Each matches the torch scheduler it is named after,
stepped per batch (tested against it). torch is imported when a schedule is built, not
when the plugin is loaded: registering them (``lrlab list``) reads only their signatures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from lrlab.errors import UsageError
from lrlab.markers import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from torch.optim.lr_scheduler import LambdaLR


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(f"schedule {message}")


def _lambda_lr(optimizer, factor: Callable[[int], float]) -> LambdaLR:
    """torch's ``LambdaLR`` over ``factor`` (torch imported here, when a schedule is built)."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, factor)


def constant(optimizer, steps_per_epoch: int, epochs: int) -> LambdaLR:
    """The learning rate stays as given."""
    return _lambda_lr(optimizer, lambda step: 1.0)


def step(optimizer, steps_per_epoch: int, epochs: int, *, every: int = 10,
         gamma: float = 0.1) -> LambdaLR:
    """Multiply the LR by `gamma` every `every` epochs (torch StepLR)."""
    _check(every >= 1, f"step: every must be >= 1 epoch, got {every}")
    size = max(1, every * steps_per_epoch)
    return _lambda_lr(optimizer, lambda s: gamma ** (s // size))


def exponential(optimizer, steps_per_epoch: int, epochs: int, *,
                gamma: float = 0.95) -> LambdaLR:
    """Decay the LR smoothly by a factor `gamma` per epoch (torch ExponentialLR, per batch)."""
    _check(gamma > 0, f"exponential: gamma must be > 0, got {gamma}")
    return _lambda_lr(optimizer, lambda s: gamma ** (s / steps_per_epoch))


def cosine(optimizer, steps_per_epoch: int, epochs: int, *,
           min_factor: float = 0.0) -> LambdaLR:
    """Cosine annealing from the LR down to `min_factor` x LR over the run (CosineAnnealingLR)."""
    _check(min_factor >= 0, f"cosine: min_factor must be >= 0, got {min_factor}")
    total = max(1, steps_per_epoch * epochs)

    def factor(s: int) -> float:
        s = min(s, total)
        return min_factor + (1 - min_factor) * (1 + math.cos(math.pi * s / total)) / 2

    return _lambda_lr(optimizer, factor)


def onecycle(optimizer, steps_per_epoch: int, epochs: int, *, pct_start: float = 0.3,
             div_factor: float = 25.0, final_div_factor: float = 1e4,
             anneal: Literal["cos", "linear"] = "cos") -> LambdaLR:
    """Smith's one-cycle: warm up to the LR over `pct_start` of the run, then anneal far below
    it (torch OneCycleLR without momentum cycling; the LR given is the peak)."""
    _check(0 < pct_start < 1, f"onecycle: pct_start must be in (0, 1), got {pct_start}")
    _check(div_factor > 0 and final_div_factor > 0,
           "onecycle: div_factor and final_div_factor must be > 0")
    total = steps_per_epoch * epochs
    initial = 1.0 / div_factor
    final = initial / final_div_factor
    end_up = float(pct_start * total) - 1
    end_down = float(total - 1)

    def interp(start: float, end: float, pct: float) -> float:
        if anneal == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def factor(s: int) -> float:
        s = min(s, total - 1)
        if s <= end_up:
            return interp(initial, 1.0, s / end_up) if end_up > 0 else 1.0
        return interp(1.0, final, (s - end_up) / (end_down - end_up))

    return _lambda_lr(optimizer, factor)


@hookimpl
def lrlab_register_schedules(register):
    register("constant", constant)
    register("step", step)
    register("exponential", exponential)
    register("cosine", cosine)
    register("onecycle", onecycle)
