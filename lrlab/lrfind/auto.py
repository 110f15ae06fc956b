"""``lrlab sweep --lr auto[:N]``: run the range test first, then sweep around its answer.

``auto`` becomes N learning rates (5 by default) log-spaced over one decade each side of
the range test's ``minimum ÷ 10`` suggestion. The test uses the grid's first dataset,
model, optimizer, loss and batch size and the sweep's seeds (each rule takes the median
over them), on the sweep's train split, without augmentation.

Why ``minimum ÷ 10`` and not fastai's default ``valley``: checked against dense sweeps,
its decade-each-side grid held the best learning rate every time (digits with mlp and
sgd(momentum=0.9): best 0.07-0.11, suggestion 0.05; with adam: best 0.018, suggestion
0.017; least squares: fastest rate 0.085, suggestion 0.035), while ``valley`` sat one
to two decades below the best and missed it on the least-squares problem.

Nothing is written while the sweep is prepared (a bad flag found later leaves no
files): the result waits on the config and the ``builtin.lrfind`` plugin writes
``lrfind.parquet``, ``lrfind.json`` and ``lrfind.png`` into the sweep's folder when the
sweep starts. A re-run of the same sweep reuses the stored test when its settings are
the same, so the grid, and with it resume, stays put.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from lrlab.errors import UsageError
from lrlab.lrfind.finder import LRFindResult, lr_find, settings_key
from lrlab.lrfind.settings import RANGE_TEST, TEST_SETTINGS

AUTO_RULE = "minimum"  # the suggestion the grid is centred on (see the module doc)
AUTO_COUNT = 5  # learning rates per "auto" without ":N"
AUTO_DECADES = 1.0  # how far the grid reaches each side of the suggestion, in decades
# the test's own settings, at their declared defaults (the seeds are the sweep's)
TEST = {name: RANGE_TEST[name].default for name in TEST_SETTINGS}
PENDING_ATTR = "lrfind_pending"  # where the result waits on the SweepConfig
_AUTO = re.compile(r"^auto(?::(\d+))?$")


def auto_count(value: str) -> int:
    """The N of ``auto:N`` (``auto`` alone: :data:`AUTO_COUNT`)."""
    match = _AUTO.match(value.strip())
    if match is None:
        raise UsageError(f"lr {value!r} is neither a number nor auto or auto:N")
    n = int(match.group(1)) if match.group(1) else AUTO_COUNT
    if n < 1:
        raise UsageError(f"lr {value!r}: auto:N needs N >= 1")
    return n


def grid_around(lr: float, n: int, decades: float = AUTO_DECADES) -> list[float]:
    """``n`` rates log-spaced from ``lr / 10**decades`` to ``lr * 10**decades``, each
    rounded to 3 significant digits (``n == 1``: ``lr`` alone)."""
    if n == 1:
        return [float(f"{lr:.3g}")]
    exps = np.linspace(-decades, decades, n)
    return [float(f"{lr * 10 ** e:.3g}") for e in exps]


def resolve_auto_lr(config: Any, context: Any) -> list[float]:
    """Replace every ``auto``/``auto:N`` in the lr axis by learning rates from the range test.

    Numbers on the axis stay; the result is sorted and free of repeats. Leaves a note
    for the user on ``context`` and the result on ``config`` (written at sweep start).
    """
    values = config.grid["lr"]
    counts = [auto_count(v) for v in values if isinstance(v, str)]
    numbers = [float(v) for v in values if not isinstance(v, str)]
    if not counts:
        return list(values)
    grid = config.grid
    dataset = grid["dataset"][0]
    settings = dict(model=grid["model"][0], dataset=dataset, optimizer=grid["optimizer"][0],
                    loss=grid["loss"][0], batch_size=grid["batch_size"][0],
                    seeds=list(grid["seed"]), **TEST)
    result = _stored(config, settings, context)
    if result is None:
        data = context.dataset(dataset)  # the sweep's cached split
        result = lr_find(**settings, device=context.device, host=context.plugins, data=data,
                         split=tuple(config.split), split_seed=config.grid["split_seed"][0])
    centre = result.suggestions[AUTO_RULE].lr
    if not math.isfinite(centre):
        raise UsageError(f"--lr auto: the LR finder found no learning rate for "
                         f"{settings['model']} with {settings['optimizer']} (the loss "
                         f"diverged at once); give the learning rates instead")
    chosen = sorted({lr for n in counts for lr in grid_around(centre, n)})
    n_seeds = len(settings["seeds"])
    sug = result.suggestions[AUTO_RULE]
    spread = f", seeds {sug.low:.3g}–{sug.high:.3g}" if n_seeds > 1 else ""
    text = (f"--lr auto: the LR finder ({settings['model']}, {settings['optimizer']}, "
            f"{n_seeds} seed{'s' if n_seeds != 1 else ''}) suggests {centre:.3g} by the "
            f"{sug.label} rule{spread}; the sweep tries {len(chosen)} learning rates "
            f"from {chosen[0]:.3g} to {chosen[-1]:.3g}, one decade each side")
    result.auto = {"rule": AUTO_RULE, "centre": centre, "lrs": chosen,
                   "decades": AUTO_DECADES, "note": text}
    context.note(text)
    setattr(config, PENDING_ATTR, result)
    return sorted(set(numbers) | set(chosen))


def _stored(config: Any, settings: dict[str, Any], context: Any) -> LRFindResult | None:
    """The result stored in the sweep's folder by an earlier run of the same test."""
    folder = config.out_dir
    try:
        stored = LRFindResult.load(folder)
    except (UsageError, OSError, ValueError, KeyError):
        return None
    wanted = {**{k: (str(v) if k in ("model", "dataset", "optimizer", "loss") else v)
                 for k, v in settings.items()},
              "split": list(config.split), "split_seed": config.grid["split_seed"][0],
              "device": context.device.type}
    ours = {k: stored.settings.get(k) for k in wanted}
    if settings_key(ours) != settings_key(wanted):
        return None
    return stored


def write_pending(config: Any) -> LRFindResult | None:
    """Write the range test a sweep's ``--lr auto`` ran into its folder (at sweep start)."""
    result = getattr(config, PENDING_ATTR, None)
    if result is None:
        return None
    result.save(config.out_dir)
    return result
