"""lrlab-spikes: flag training-loss spikes; report the highest stable learning rate.

Importing this module is cheap: matplotlib is imported only when a figure is drawn,
and only for a sweep in which some run spiked or diverged.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import lrlab

__version__ = "0.1.0"

THRESHOLDS = {"spike_rise": 0.1, "spike_diverged": math.inf}
MAX_CURVES = 8  # unstable runs drawn in the figure
GROUP_AXES = ("dataset", "model", "loss", "optimizer", "schedule", "augment", "stopper",
              "epochs", "batch_size")


@dataclass
class Spike:
    """One excursion of the training loss above its best so far."""

    epoch: int
    lr: float
    best: float  # the lowest training loss before it
    loss: float  # the training loss at the spike
    rise: float  # (loss - best) / untrained loss

    def __str__(self) -> str:
        return (f"train loss rose from {self.best:.3g} to {self.loss:.3g} at epoch "
                f"{self.epoch}, by {self.rise:.0%} of its start")


def find_spikes(history: Any, rise: float) -> list[Spike]:
    """Spikes in one run's history (rows with ``epoch lr train_loss``; epoch 0 untrained).

    A spike starts at an epoch whose clean training loss exceeds the lowest one of the
    epochs before it (from epoch 1) by more than ``rise`` times the untrained loss; the
    excursion's highest epoch is reported. Non-finite losses are left to the built-in
    ``diverged`` verdict.
    """
    rows = history.sort_values("epoch")
    losses = [float(v) for v in rows["train_loss"]]
    if len(losses) < 3 or not math.isfinite(losses[0]) or losses[0] <= 0:
        return []
    start, best, spikes, current = losses[0], math.inf, [], None
    for epoch, lr, loss in zip(rows["epoch"], rows["lr"], losses, strict=True):
        if epoch < 1 or not math.isfinite(loss):
            current = None
            continue
        if math.isfinite(best) and loss - best > rise * start:
            spike = Spike(int(epoch), float(lr), best, loss, (loss - best) / start)
            if current is None:
                spikes.append(spike)
            elif spike.loss > current.loss:  # the same excursion, higher
                spikes[-1] = spike
            current = spikes[-1]
        else:
            current = None
        best = min(best, loss)
    return spikes


def _thresholds(values: dict[str, Any] | None) -> dict[str, float]:
    return {k: float((values or {}).get(k, v)) for k, v in THRESHOLDS.items()}


@lrlab.hookimpl
def lrlab_diagnose(run, history, thresholds):
    """A flag for the largest spike; ``diverged`` when it exceeds ``spike_diverged``."""
    th = _thresholds(thresholds)
    spikes = find_spikes(history, th["spike_rise"])
    if not spikes:
        return None
    top = max(spikes, key=lambda s: s.rise)
    count = f"{len(spikes)} spike{'s' if len(spikes) > 1 else ''}"
    text = f"loss spike: {top} ({count}); lr {run.lr:g} may be too high"
    verdict = "diverged" if top.rise > th["spike_diverged"] else None
    return [lrlab.Flag(verdict, text)]


def stability(runs: Any, history: Any, rise: float) -> list[dict[str, Any]]:
    """Per configuration (every axis but lr and seed): the highest stable lr and the
    lowest unstable one (spiked, diverged or errored)."""
    axes = [a for a in GROUP_AXES if a in runs.columns and runs[a].nunique() > 1]
    by_run = {rid: rows for rid, rows in history.groupby("run_id")}
    out = []
    groups = runs.groupby(axes, sort=False) if axes else [((), runs)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{a}={v}" for a, v in zip(axes, key, strict=True)) or "all runs"
        stable, unstable = [], []
        for row in group.itertuples():
            rows = by_run.get(row.run_id)
            bad = row.verdict in ("diverged", "error") or rows is None or \
                bool(find_spikes(rows, rise))
            (unstable if bad else stable).append(float(row.lr))
        out.append({"config": label, "stable": max(stable, default=None),
                    "unstable": min(unstable, default=None),
                    "unstable_runs": [r.run_id for r in group.itertuples()
                                      if float(r.lr) in unstable]})
    return out


def figure_png(history: Any, run_ids: list[str], rise: float) -> str:
    """Training-loss curves of ``run_ids`` with their spikes marked, as base64 PNG."""
    import base64
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for rid in run_ids[:MAX_CURVES]:
        rows = history[history["run_id"] == rid].sort_values("epoch")
        finite = rows[rows["train_loss"].map(math.isfinite) & (rows["train_loss"] > 0)]
        (line,) = ax.plot(finite["epoch"], finite["train_loss"], marker=".", label=rid)
        for s in find_spikes(rows, rise):
            ax.plot([s.epoch], [s.loss], marker="v", markersize=9, color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("clean training loss")
    ax.legend(fontsize=7, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _lr(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@lrlab.hookimpl
def lrlab_report_sections(runs, history, manifest):
    """"Loss spikes and the learning rate": a table per configuration and a figure."""
    th = _thresholds(((manifest or {}).get("config") or {}).get("thresholds"))
    title = "Loss spikes and the learning rate"
    if runs.empty:
        return None
    table = stability(runs, history, th["spike_rise"])
    unstable = [rid for row in table for rid in row["unstable_runs"]]
    if not unstable:
        return [lrlab.Section(title, f"<p>No run's training loss rose above its best by "
                                     f"more than {th['spike_rise']:.0%} of its start: every "
                                     f"learning rate in this sweep trained stably.</p>")]
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(r['config'])}</td><td>{_lr(r['stable'])}</td>"
                   f"<td>{_lr(r['unstable'])}</td></tr>" for r in table)
    png = figure_png(history, unstable, th["spike_rise"])
    shown = min(len(unstable), MAX_CURVES)
    body = (f"<p>A spike: the clean training loss rising above its best so far by more "
            f"than {th['spike_rise']:.0%} of its untrained value &mdash; the sign of a "
            f"learning rate too high, before it diverges.</p>"
            f"<table><tr><th>configuration</th><th>highest stable lr</th>"
            f"<th>lowest lr that spiked or diverged</th></tr>{rows}</table>"
            f'<img src="data:image/png;base64,{png}" style="max-width:100%" '
            f'alt="training loss per epoch of the runs that spiked or diverged">'
            f"<p>Training loss of {shown} of {len(unstable)} unstable run(s), log "
            f"scale; triangles mark spikes.</p>")
    return [lrlab.Section(title, body)]
