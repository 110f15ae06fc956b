"""Shared plotting helpers: a figure on matplotlib's Agg canvas, embedded as base64 PNG.

No pyplot and no seaborn: figures are built from :class:`matplotlib.figure.Figure` with
an Agg canvas, so the report neither touches the caller's backend nor keeps figures
alive, and nothing is written to disk. The look (:data:`STYLE`) is seaborn's
"whitegrid" at the "notebook" scale, written out as rcParams: importing seaborn costs
more than drawing a figure. The report's figures are placed by hand (:func:`place`,
margins in inches) rather than by the constrained layout, which costs about one more
draw of each figure.
"""

from __future__ import annotations

import base64
import colorsys
import contextlib
import io
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullLocator

VERDICT_COLORS = {"ok": "#2e9d4a", "overfit": "#e67e22", "underfit": "#5b7fa6",
                  "unstable": "#b5179e", "diverged": "#d62728", "error": "#8e44ad"}
DPI = 100
MAX_ROWS = 4  # facet rows of a small-multiples figure
MAX_COLS = 6  # facet columns
# seaborn's axes_style("whitegrid") with plotting_context("notebook", font_scale=0.85)
STYLE = {
    "figure.facecolor": "white", "axes.facecolor": "white", "axes.edgecolor": ".8",
    "axes.grid": True, "axes.axisbelow": True, "axes.linewidth": 1.25,
    "axes.labelcolor": ".15", "text.color": ".15", "xtick.color": ".15",
    "ytick.color": ".15", "xtick.direction": "out", "ytick.direction": "out",
    "xtick.bottom": False, "ytick.left": False, "xtick.top": False, "ytick.right": False,
    "grid.color": ".8", "grid.linestyle": "-", "grid.linewidth": 1,
    "lines.linewidth": 1.5, "lines.markersize": 6, "lines.solid_capstyle": "round",
    "patch.edgecolor": "w", "patch.force_edgecolor": True, "patch.linewidth": 1,
    "font.family": ["sans-serif"], "font.size": 10.2, "axes.labelsize": 10.2,
    "axes.titlesize": 10.2, "xtick.labelsize": 9.35, "ytick.labelsize": 9.35,
    "legend.fontsize": 9.35, "legend.title_fontsize": 10.2,
}
# seaborn's default markers and dashes for a style= variable, in its order
MARKERS = ("o", "X", (4, 0, 45), "P", (4, 0, 0), (4, 1, 0), "^", (4, 1, 45), "v")
DASHES = ((), (4, 1.5), (1, 1), (3, 1.25, 1.5, 1.25), (5, 1, 1, 1))
ERR_COLOR = ".26"  # error bars, as seaborn draws them


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


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The report's look for the figures drawn inside (the caller's rcParams restored)."""
    with warnings.catch_warnings(), matplotlib.rc_context(STYLE):
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def palette(n: int) -> list[str]:
    """``n`` colours of matplotlib's tab10 cycle (the hue colours of the figures)."""
    colours = matplotlib.colormaps["tab10"].colors
    return [matplotlib.colors.to_hex(colours[i % len(colours)]) for i in range(n)]


def place(fig: Figure, left: float, right: float, bottom: float, top: float,
          wspace: float = 0.25, hspace: float = 0.3) -> None:
    """Lay out a figure's grid of axes with margins in inches (labels, titles, legends)."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace, hspace=hspace)


def label_inches(labels: Sequence[Any], size: float = 9.35) -> float:
    """About how wide the longest of ``labels`` is, in inches, at font ``size``."""
    longest = max((len(line) for t in labels for line in str(t).split("\n")), default=0)
    return longest * size * 0.6 / 72


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


def bars(ax: Any, frame: Any, cat: str, value: str, hue: str, order: Sequence[str],
         hue_order: Sequence[str], colours: Sequence[Any], interval: Any,
         horizontal: bool = False) -> None:
    """seaborn's ``barplot``: one bar per ``cat`` value and ``hue`` value (side by side;
    one bar per category when ``hue`` is ``cat``), its height the mean of ``value`` and
    a dark tick its ``interval`` (a callable ``values -> (lo, hi)``; none when NaN)."""
    same = hue == cat
    groups = {(k, k) if same else k: g[value].to_numpy(dtype=float)
              for k, g in frame.groupby(cat if same else [cat, hue], sort=False)}
    n = 1 if same else len(hue_order)
    width = 0.8 / n
    for j, h in enumerate(hue_order):
        pos, means, lo, hi = [], [], [], []
        for i, c in enumerate(order):
            vals = groups.get((c, h))
            if vals is None or (same and c != h):
                continue
            vals = vals[np.isfinite(vals)]
            if not len(vals):
                continue
            pos.append(i + (0 if same else (j - (n - 1) / 2) * width))
            means.append(float(vals.mean()))
            a, b = interval(vals)
            lo.append(a)
            hi.append(b)
        if not pos:
            continue
        draw = ax.barh if horizontal else ax.bar
        draw(pos, means, width, color=muted(colours[j % len(colours)]), label=h)
        ticks = [(p, a, b) for p, a, b in zip(pos, lo, hi, strict=True)
                 if math.isfinite(a) and math.isfinite(b)]
        if ticks:
            p, a, b = zip(*ticks, strict=True)
            (ax.hlines if horizontal else ax.vlines)(p, a, b, color=ERR_COLOR, lw=2.25)
    categorical(ax, order, horizontal)


def muted(colour: Any, saturation: float = 0.75) -> tuple[float, float, float]:
    """``colour`` with its saturation scaled, as seaborn fills its bars."""
    hue, light, sat = colorsys.rgb_to_hls(*matplotlib.colors.to_rgb(colour))
    return colorsys.hls_to_rgb(hue, light, sat * saturation)


def categorical(ax: Any, order: Sequence[str], horizontal: bool = False) -> None:
    """A categorical axis as seaborn draws one: a tick per category, no grid lines along
    it, the first category at the left (at the top when horizontal)."""
    where = range(len(order))
    if horizontal:
        ax.set_yticks(where, labels=list(order))
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.yaxis.grid(False)
    else:
        ax.set_xticks(where, labels=list(order))
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.xaxis.grid(False)


def legend_outside(ax: Any, handles: Sequence[Any] | None = None, title: str | None = None,
                   loc: str = "upper left", anchor: tuple[float, float] = (1.02, 1)) -> Any:
    """A frameless legend beside the axes (seaborn's ``move_legend`` to the right)."""
    if handles is None:
        return ax.legend(loc=loc, bbox_to_anchor=anchor, frameon=False, title=title)
    return ax.legend(handles=handles, loc=loc, bbox_to_anchor=anchor, frameon=False,
                     title=title)
