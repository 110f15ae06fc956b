"""The learning-rate range test (Smith 2017), as fastai's ``lr_find`` and torch-lr-finder run it.

Train on mini-batches while the learning rate grows from ``start_lr`` to ``end_lr``
(exponentially or linearly), record the loss of every step, smooth it with a
bias-corrected exponential moving average, and stop once the smoothed loss passes
``diverge`` times its best. Three rules read a learning rate off the smoothed curve.
:func:`range_test` leaves the model and the optimizer exactly as it found them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from lrlab.data import Feeder, Stream, fork_rng
from lrlab.lrfind.settings import default, one_value, read_test, smooth_or_beta

RULES = ("steepest", "minimum", "valley")
LABELS = {"steepest": "steepest", "minimum": "minimum ÷ 10", "valley": "valley"}
EXPLANATIONS = {
    "steepest": "where the smoothed loss falls fastest per decade of learning rate "
                "(torch-lr-finder's suggestion, fastai 'steep')",
    "minimum": "a tenth of the rate at the lowest smoothed loss: the minimum sits near the "
               "edge of divergence, so back off one decade (fastai 'minimum')",
    "valley": "halfway down the longest stretch over which the smoothed loss keeps falling: "
              "fast, yet well before the edge (fastai 'valley', its default)",
}
CURVE_COLUMNS = ["seed", "step", "lr", "loss", "smoothed"]


def lr_schedule(start_lr: float, end_lr: float, steps: int,
                mode: str = default("mode")) -> np.ndarray:
    """The learning rate of each step: ``start_lr`` at step 0, ``end_lr`` at the last."""
    t = np.arange(steps) / (steps - 1)
    if mode == "exp":
        return start_lr * (end_lr / start_lr) ** t
    return start_lr + (end_lr - start_lr) * t


def range_test(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               x: torch.Tensor | Stream, y: torch.Tensor | None, *,
               start_lr: float = default("start_lr"),
               end_lr: float = default("end_lr"),
               steps: int = default("steps"),
               mode: str = default("mode"),
               batch_size: int = default("batch_size"),
               diverge: float = default("diverge"),
               smooth: float = default("smooth"),
               seed: int = 0, beta: float | None = None, workers: int = 0) -> pd.DataFrame:
    """Run one range test on ``model`` with ``optimizer``; restore both afterwards.

    Each step sets every parameter group's learning rate, trains on one mini-batch of
    ``(x, y)`` (drawn like the engine does: a permutation per pass, from a generator
    seeded with ``seed``) in train mode, and records the loss. The run stops after the
    first step whose smoothed loss is not finite or exceeds ``diverge`` x the best
    smoothed loss so far. Afterwards the weights, buffers (BatchNorm statistics),
    gradients, train/eval mode, optimizer state and learning rates are put back
    bit-for-bit, and the caller's random number generators are untouched.

    ``x`` may be a streamed split's part (:class:`lrlab.data.Stream`, ``y`` None): its
    batches, the same ones, are read by ``workers`` DataLoader processes (0: the default)
    and moved to the model's device.

    The settings, their defaults and their checks are declared in
    :data:`lrlab.lrfind.settings.RANGE_TEST`; ``smooth`` is the factor of the loss's
    exponential moving average (``beta``: its old name).

    :return: one row per step taken: ``step lr loss smoothed``.
    """
    checked = read_test({"start_lr": start_lr, "end_lr": end_lr, "steps": steps,
                         "mode": mode, "diverge": diverge,
                         "smooth": smooth_or_beta(smooth, beta)})
    start_lr, end_lr, steps = checked["start_lr"], checked["end_lr"], checked["steps"]
    mode, diverge, factor = checked["mode"], checked["diverge"], checked["smooth"]
    batch_size = one_value("batch_size", batch_size)
    part = x if isinstance(x, Stream) else (x, y)
    device = next(model.parameters()).device if isinstance(x, Stream) else x.device
    feeder = Feeder(device, workers)
    lrs = lr_schedule(start_lr, end_lr, steps, mode)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_model = copy.deepcopy(model.state_dict())  # state_dict() holds live tensors
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
    was_training = model.training
    rows: list[dict[str, float]] = []
    n = len(part) if isinstance(part, Stream) else len(y)
    per_pass = math.ceil(n / batch_size)
    try:
        with fork_rng(device):
            torch.manual_seed(seed)  # dropout and other randomness inside the model
            batches = torch.Generator(device=device).manual_seed(seed)
            model.train()
            average, best = 0.0, math.inf
            todo = iter(())
            for step, lr in enumerate(lrs.tolist()):
                if step % per_pass == 0:
                    order = torch.randperm(n, generator=batches, device=device)
                    if isinstance(part, Stream):  # the workers read by index on the CPU
                        order = order.cpu()
                    todo = feeder.batches(part, order.split(batch_size))
                xb, yb = next(todo)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = loss_fn(model(xb).float(), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                value = loss.item()
                average = factor * average + (1 - factor) * value
                smoothed = average / (1 - factor ** (step + 1))  # bias correction
                rows.append({"step": step, "lr": lr, "loss": value, "smoothed": smoothed})
                if not math.isfinite(smoothed) or smoothed > diverge * best:
                    break
                best = min(best, smoothed)
    finally:
        feeder.close()
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        for p, grad in zip(params, saved_grads, strict=True):
            p.grad = grad
        model.train(was_training)
    return pd.DataFrame(rows, columns=["step", "lr", "loss", "smoothed"])


def diverged_step(curve: pd.DataFrame, diverge: float) -> int | None:
    """The step at which :func:`range_test` stopped for divergence, or None."""
    if curve.empty:
        return None
    smoothed = curve["smoothed"].to_numpy()
    last = smoothed[-1]
    if math.isfinite(last) and not (len(smoothed) > 1 and last > diverge * smoothed[:-1].min()):
        return None
    return int(curve["step"].iloc[-1])


# -- reading a learning rate off a curve -------------------------------------------------


def trimmed(lrs: np.ndarray, losses: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of a curve the rules read, as fastai does: drop the first tenth of the
    planned steps (the EMA is still warming up) and the last 5 points (the blow-up),
    less when the curve is short, and anything from the first non-finite value on."""
    finite = np.isfinite(losses)
    end = len(losses) if finite.all() else int(np.argmin(finite))
    lrs, losses = lrs[:end], losses[:end]
    head = min(steps // 10, max(0, len(losses) - 3))
    tail = min(5, max(0, len(losses) - head - 3))
    return lrs[head:len(lrs) - tail], losses[head:len(losses) - tail]


def steepest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The rate where ``d loss / d log(lr)`` is most negative."""
    grads = np.gradient(losses, np.log(lrs))
    return float(lrs[int(np.argmin(grads))])


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """A tenth of the rate at the lowest loss."""
    return float(lrs[int(np.argmin(losses))] / 10)


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's ``valley``: the longest decreasing subsequence of the loss, and the point
    ``start + int(len/3) + int(len/6)`` along it (about halfway down)."""
    n = len(losses)
    run = np.ones(n, dtype=int)  # run[i]: longest decreasing subsequence ending at i
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            run[i] = run[:i][higher].max() + 1
    end = int(np.argmax(run))  # the first longest one, as fastai keeps it
    start = end - int(run[end])
    third = (end - start) / 3
    idx = min(max(start + int(third) + int(third / 2), 0), n - 1)
    return float(lrs[idx])


RULE_FUNCTIONS = {"steepest": steepest, "minimum": minimum, "valley": valley}


def suggest(lrs: np.ndarray, smoothed: np.ndarray, steps: int) -> dict[str, float]:
    """Each rule's learning rate for one curve (NaN when fewer than 2 usable points)."""
    lrs, losses = trimmed(np.asarray(lrs, float), np.asarray(smoothed, float), steps)
    if len(lrs) < 2:
        return {rule: math.nan for rule in RULES}
    return {rule: RULE_FUNCTIONS[rule](lrs, losses) for rule in RULES}


@dataclass
class Suggestion:
    """One rule's learning rate: the median over seeds and how far the seeds disagree."""

    rule: str
    per_seed: dict[int, float] = field(default_factory=dict)  # seed -> lr (NaN: none)

    @property
    def values(self) -> list[float]:
        return [v for v in self.per_seed.values() if math.isfinite(v)]

    @property
    def lr(self) -> float:
        """The median over seeds (of log lr: an even count takes the geometric middle)."""
        values = sorted(self.values)
        if not values:
            return math.nan
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else math.sqrt(values[mid - 1] * values[mid])

    @property
    def low(self) -> float:
        return min(self.values, default=math.nan)

    @property
    def high(self) -> float:
        return max(self.values, default=math.nan)

    @property
    def spread(self) -> float:
        """``high / low``: 1 when every seed agrees, 10 when they span a decade."""
        return self.high / self.low if self.values else math.nan

    @property
    def label(self) -> str:
        return LABELS[self.rule]

    @property
    def explanation(self) -> str:
        return EXPLANATIONS[self.rule]

    def to_dict(self) -> dict:
        return {"lr": self.lr, "low": self.low, "high": self.high, "spread": self.spread,
                "per_seed": {str(k): v for k, v in self.per_seed.items()},
                "label": self.label, "explanation": self.explanation}


def suggestions_of(curve: pd.DataFrame, steps: int) -> dict[str, Suggestion]:
    """Every rule's suggestion for a curve of one or more seeds."""
    out = {rule: Suggestion(rule) for rule in RULES}
    for seed, part in curve.groupby("seed", sort=True):
        for rule, lr in suggest(part["lr"].to_numpy(), part["smoothed"].to_numpy(),
                                steps).items():
            out[rule].per_seed[int(seed)] = lr
    return out
