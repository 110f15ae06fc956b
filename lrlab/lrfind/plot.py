"""The range test's figure: loss against learning rate (log axis), suggestions marked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lrlab.lrfind.core import RULES

if TYPE_CHECKING:  # pragma: no cover
    from lrlab.lrfind.finder import LRFindResult

RULE_COLORS = {"steepest": "#d95f02", "minimum": "#7570b3", "valley": "#1b9e77"}


def figure(result: LRFindResult, grid: Sequence[float] | None = None):
    """A matplotlib Figure of the curve (no pyplot state, safe in threads and tests).

    One seed: the raw mini-batch loss (light) and its smoothed curve. Several seeds: the
    smoothed curve of each (light), each rule's median as a line and its range over the
    seeds as a band. ``grid``: learning rates a sweep will try, marked along the bottom.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    curve = result.curve
    settings = result.settings
    seeds = sorted(curve["seed"].unique())
    with sns.axes_style("whitegrid"):  # a local style: no global rcParams change
        fig = Figure(figsize=(8, 4.8), dpi=100)
        ax = fig.subplots()
    if len(seeds) == 1:
        sns.lineplot(curve, x="lr", y="loss", ax=ax, estimator=None, color="0.72", lw=1,
                     label="loss of each mini-batch")
        sns.lineplot(curve, x="lr", y="smoothed", ax=ax, estimator=None, color="#1f4e79",
                     lw=2.2, label="smoothed loss (moving average)")
    else:
        sns.lineplot(curve, x="lr", y="smoothed", units="seed", ax=ax, estimator=None,
                     color="#1f4e79", alpha=0.45, lw=1.4)
        ax.plot([], [], color="#1f4e79", alpha=0.45,
                label=f"smoothed loss, one line per seed ({len(seeds)} seeds)")
    ax.set_xscale("log")
    start, end = float(settings["start_lr"]), float(settings["end_lr"])
    margin = (end / start) ** 0.02
    ax.set_xlim(start / margin, end * margin)  # the whole range tested

    for rule in RULES:
        sug = result.suggestions[rule]
        if not math.isfinite(sug.lr):
            continue
        color = RULE_COLORS[rule]
        text = f"{sug.label}: {sug.lr:.2g}"
        if len(seeds) > 1:
            text += f" (seeds {sug.low:.2g}–{sug.high:.2g})"
            ax.axvspan(sug.low, sug.high, color=color, alpha=0.12, lw=0)
        ax.axvline(sug.lr, color=color, ls="--", lw=1.6, label=text)
    if grid:
        ax.plot(list(grid), [0.02] * len(grid), transform=ax.get_xaxis_transform(),
                ls="none", marker="^", ms=8, color="black",
                label="learning rates the sweep tries")

    ax.set_ylim(*_ylim(curve, raw_shown=len(seeds) == 1))
    ax.set_xlabel("learning rate (log scale; it grows with every training step)")
    ax.set_ylabel("training loss")
    ax.set_title(f"Learning-rate range test: {settings['model']} on {settings['dataset']}, "
                 f"{settings['optimizer']}", fontsize=11)
    ax.legend(loc="upper left", fontsize=8.5, framealpha=0.9)
    fig.text(0.01, 0.01, "Pick a rate where the loss still falls steeply, left of its "
                         "minimum; right of it, training diverges.", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def _ylim(curve, raw_shown: bool = True) -> tuple[float, float]:
    """From the lowest loss to a little above the start: the blow-up is cut off, so the
    part where the loss falls fills the figure."""
    raw = curve["loss"].to_numpy(float)
    smoothed = curve["smoothed"].to_numpy(float)
    raw, smoothed = raw[np.isfinite(raw)], smoothed[np.isfinite(smoothed)]
    if not len(smoothed):
        return 0.0, 1.0
    start = curve.sort_values("step").groupby("seed")["smoothed"].first().max()
    low = min(raw.min() if len(raw) and raw_shown else smoothed.min(), smoothed.min())
    top = start + 0.5 * max(start - low, 0.05 * abs(start))
    pad = 0.05 * (top - low) if top > low else 0.5
    return low - pad, top


def save_plot(result: LRFindResult, path: str | Path,
              grid: Sequence[float] | None = None) -> Path:
    """Write the figure as a PNG, atomically."""
    from lrlab.storage import atomic_write

    path = Path(path)
    fig = figure(result, grid)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
    return path
