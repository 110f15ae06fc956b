"""Shared plotting helpers: a figure on matplotlib's Agg canvas, embedded as base64 PNG.

No pyplot: figures are built from :class:`matplotlib.figure.Figure` with an Agg canvas,
so the report neither touches the caller's backend nor keeps figures alive, and
nothing is written to disk.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullLocator

VERDICT_COLORS = {"ok": "#2e9d4a", "overfit": "#e67e22", "underfit": "#5b7fa6",
                  "unstable": "#b5179e", "diverged": "#d62728", "error": "#8e44ad"}
DPI = 100
MAX_ROWS = 4  # facet rows of a small-multiples figure
MAX_COLS = 6  # facet columns


@dataclass
class ReportFigure:
    """One figure of the report: a PNG (base64), or the reason it is absent."""

    key: str
    title: str
    caption: str
    png: str = ""
    absent: str = ""
    alt: str = ""
    width: int = 0  # pixels

    @property
    def shown(self) -> bool:
        return bool(self.png)


def new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """An empty figure (inches) on an Agg canvas, laid out by matplotlib's constrained
    layout unless ``constrained`` is False (a regular grid placed by hand draws faster)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> tuple[str, int]:
    """The figure as base64 PNG, and its width in pixels."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    width = int(round(fig.get_figwidth() * DPI))
    return base64.b64encode(buf.getvalue()).decode("ascii"), width


def shown(key: str, title: str, caption: str, fig: Figure, alt: str) -> ReportFigure:
    png, width = to_png(fig)
    return ReportFigure(key, title, caption, png=png, alt=alt, width=width)


def absent(key: str, title: str, why: str) -> ReportFigure:
    return ReportFigure(key, title, "", absent=why)


def text(value: Any) -> str:
    """A data value as matplotlib text: ``$`` would start mathtext, so it is escaped."""
    return str(value).replace("$", r"\$")


def lr_text(lr: float) -> str:
    """A learning rate as a label: three significant digits (``0.0167``, ``1e-05``)."""
    return f"{lr:.3g}"


def pick(values: Sequence[Any], n: int, keep: Any = None) -> list[Any]:
    """At most ``n`` of the sorted ``values``, spread evenly, ``keep`` always among them."""
    values = list(values)
    if len(values) <= n:
        return values
    idx = sorted({round(i * (len(values) - 1) / (n - 1)) for i in range(n)})
    if keep in values and values.index(keep) not in idx:
        k = values.index(keep)
        nearest = min(idx, key=lambda i: abs(i - k))
        idx = sorted(set(idx) - {nearest} | {k})
    return [values[i] for i in idx]


def finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def capped(what: str, shown_n: int, total: int) -> str:
    """`` (showing 6 of 10 learning rates)`` when a facet was capped, else ``""``."""
    return f" Showing {shown_n} of {total} {what}, spread over the range." if shown_n < total else ""


def log_x_at(ax: Any, values: Sequence[float], n: int = 6) -> None:
    """A log x axis ticked at (up to ``n`` of) the given values, e.g. the sweep's LRs."""
    ax.set_xscale("log")
    ticks = pick(sorted(set(values)), n)
    ax.set_xticks(ticks, labels=[lr_text(v) for v in ticks])
    ax.xaxis.set_minor_locator(NullLocator())


def log_y(ax: Any) -> None:
    """A log y axis with few minor ticks (drawing many is what makes log axes slow)."""
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))


def tilt_if_crowded(ax: Any, n: int, limit: int = 6) -> None:
    """Tilt the x tick labels when there are more than ``limit`` categories."""
    if n > limit:
        ax.tick_params(axis="x", labelrotation=35)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")


def forest(ax: Any, labels: Sequence[str], mean: Sequence[float], lo: Sequence[float],
           hi: Sequence[float], higher_is_better: bool = True, title: str = "",
           xlabel: str = "") -> None:
    """A forest plot: one row per label, its mean as a dot and its interval as a bar, a
    line at 0; green when the interval is clear of 0 on the good side, red on the bad
    side, grey when it holds 0 (no clear difference); a hollow dot has no interval."""
    ys = list(range(len(labels)))[::-1]
    for y, m, a, b in zip(ys, mean, lo, hi, strict=True):
        known = math.isfinite(a) and math.isfinite(b)
        if known and (a > 0 or b < 0):
            good = (a > 0) == higher_is_better
            colour = VERDICT_COLORS["ok"] if good else VERDICT_COLORS["diverged"]
        else:
            colour = "#777"
        if known:
            ax.plot([a, b], [y, y], "-", color=colour, lw=2.2, solid_capstyle="butt")
        if math.isfinite(m):
            ax.plot([m], [y], "o", color=colour, ms=6, mfc=colour if known else "white")
    ax.axvline(0, color="#333", lw=0.9)
    printable = ["".join(ch if ch.isprintable() else "?" for ch in str(t)) for t in labels]
    ax.set_yticks(ys, labels=[text(t) for t in printable])
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set(title=title, xlabel=xlabel)
    ax.grid(axis="y", visible=False)
