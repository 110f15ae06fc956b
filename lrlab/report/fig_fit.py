"""Figures about fitting: the overfit-gap heatmap, augmentation, early stopping."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.ticker import MaxNLocator

from lrlab.report.analysis import SweepView
from lrlab.report.plotting import (
    MARKERS,
    VERDICT_COLORS,
    ReportFigure,
    absent,
    bars,
    capped,
    categorical,
    forest,
    label_inches,
    legend_outside,
    lr_text,
    new_figure,
    palette,
    pick,
    place,
    shown,
    text,
    tilt_if_crowded,
)
from lrlab.stats import seaborn_interval
from lrlab.verdicts import SEVERITY

ROW_PREFERENCE = ("epochs", "augment", "model", "schedule", "stopper", "optimizer", "loss",
                  "dataset", "batch_size")
MAX_HEAT = 12  # rows and columns of the heatmap
LEARNED = ("ok", "overfit", "underfit")  # runs whose gap means something
ACC_INTERVAL = functools.partial(seaborn_interval, bounds=(0.0, 1.0))  # values -> (lo, hi)
# seaborn's "vlag": blue (validation better) through white to red (training better)
VLAG = LinearSegmentedColormap.from_list("vlag", [
    "#2369bd", "#678bbe", "#9baecb", "#cfd4e0", "#faf5f4", "#e7c8c6", "#d39794", "#bf6765",
    "#a9373b"])


def _cell_verdict(verdicts: pd.Series) -> str:
    """The most common verdict of a cell (ties go to the most severe), ``k/n`` when mixed."""
    c = verdicts.value_counts()
    top = max(c.index, key=lambda v: (c[v], SEVERITY.get(v, 0)))
    return top if c[top] == len(verdicts) else f"{top} {c[top]}/{len(verdicts)}"


def _rule(cell: pd.DataFrame) -> str:
    """Which overfit rule fired in a cell: `` (GL)`` or `` (gap)``, else nothing."""
    if "cause" not in cell:
        return ""
    causes = set(cell.loc[cell["verdict"] == "overfit", "cause"].astype(str))
    return "".join(f" ({c if c == 'gap' else 'GL'})" for c in sorted(causes & {"gap", "gl"}))


def gap_heatmap(sw: SweepView) -> ReportFigure:
    """Mean train-val accuracy gap per LR x (epochs | augmentation | ...), verdicts written in."""
    key, title = "gap-heatmap", "Overfitting map: generalization gap by learning rate"
    runs = sw.runs
    row_axis = next((a for a in ROW_PREFERENCE if a in sw.varying), None)
    all_lrs, all_rows = sw.values("lr"), (sw.values(row_axis) if row_axis else [None])
    if not all_lrs:
        return absent(key, title, "no runs.")
    lrs, rows = pick(all_lrs, MAX_HEAT), pick(all_rows, MAX_HEAT)
    gap = np.full((len(rows), len(lrs)), np.nan)
    notes = [["" for _ in lrs] for _ in rows]
    for i, rv in enumerate(rows):
        for j, lr in enumerate(lrs):
            cell = runs[(runs["lr"] == lr) & ((runs[row_axis] == rv) if row_axis else True)]
            if cell.empty:
                continue
            # the gap of the kept weights: the number the overfit verdict is judged on
            col = "tested_gap_acc" if "tested_gap_acc" in cell else "gap_acc"
            learned = pd.to_numeric(cell.loc[cell["verdict"].isin(LEARNED), col],
                                    errors="coerce").dropna()
            gap[i, j] = learned.mean() if not learned.empty else np.nan
            num = f"{gap[i, j]:+.2f}\n" if not learned.empty else ""
            notes[i][j] = num + _cell_verdict(cell["verdict"]) + _rule(cell)
    limit = max(np.nanmax(np.abs(gap)) if np.isfinite(gap).any() else 0.0,
                2 * sw.thresholds.get("overfit_gap_acc", 0.05))
    row_labels = [text(r) if row_axis else "all runs" for r in rows]
    fig = new_figure(max(6.0, 1.5 + 1.05 * len(lrs)), max(2.4, 1.3 + 0.62 * len(rows)),
                     constrained=False)
    place(fig, left=0.5 + label_inches(row_labels), right=0.8, bottom=0.55, top=0.15)
    ax = fig.subplots()
    ax.set_facecolor("#e4e4e4")  # cells without a gap (diverged, error) stay grey
    mesh = ax.pcolormesh(np.ma.masked_invalid(gap), cmap=VLAG, vmin=-limit, vmax=limit,
                         edgecolors="white", linewidth=1)
    bar = fig.colorbar(mesh, ax=ax, label="gap = train acc − val acc", pad=0.02,
                       fraction=0.08)
    bar.outline.set_linewidth(0)
    ax.set_xticks(np.arange(len(lrs)) + 0.5, labels=[lr_text(v) for v in lrs])
    ax.set_yticks(np.arange(len(rows)) + 0.5, labels=row_labels)
    ax.set(xlim=(0, len(lrs)), ylim=(len(rows), 0))  # the first row at the top
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for i in range(len(rows)):
        for j in range(len(lrs)):
            verdict = notes[i][j].split("\n")[-1].split(" ")[0]
            strong = np.isfinite(gap[i, j]) and abs(gap[i, j]) > 0.6 * limit
            ax.text(j + 0.5, i + 0.5, notes[i][j], ha="center", va="center", fontsize=8,
                    color="white" if strong else "#222",
                    fontweight="bold" if verdict in ("overfit", "diverged") else "normal")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(row_axis or "")
    ax.tick_params(axis="y", rotation=0)
    th = sw.thresholds.get("overfit_gap_acc", 0.05)
    caption = ("Each cell is one learning rate" + (f" and {row_axis}" if row_axis else "")
               + ": its colour is the mean gap between training and validation accuracy of the "
               f"weights each run kept (the restored epoch, else the last; red = training far "
               f"better than validation, i.e. overfitting; the gap threshold is {th:g}); the "
               f"text gives that gap, the cell's verdict and, for overfit, which rule fired: "
               f"(gap) the accuracy gap, or (GL) the validation loss risen past its minimum "
               f"by more than {sw.thresholds.get('overfit_gl', 25):g}%, which the colour does "
               f"not show. "
               "Grey cells had no learning run (diverged or error)."
               + capped("learning rates", len(lrs), len(all_lrs))
               + (capped(f"values of {row_axis}", len(rows), len(all_rows)) if row_axis else ""))
    return shown(key, title, caption, fig, "heatmap of the generalization gap")


def augment_effect(sw: SweepView) -> ReportFigure:
    """Gap and validation accuracy per LR, one bar per augmentation."""
    key, title = "augmentation", "Augmentation: its effect on the gap and on validation accuracy"
    augs = sw.values("augment")
    if len(augs) < 2:
        which = f" ('{augs[0]}')" if augs else ""
        return absent(key, title, f"the sweep used one augmentation{which}; compare several "
                                  "with e.g. --augment none,noise.")
    runs = sw.runs[sw.runs["verdict"] != "error"].copy()
    runs["augment"] = runs["augment"].map(text)
    lrs = pick(sw.values("lr"), 10)
    runs = runs[runs["lr"].isin(lrs)]
    runs["LR"] = runs["lr"].map(lr_text)
    order = [lr_text(v) for v in lrs]
    hue = [text(a) for a in augs]
    colours = palette(len(hue))
    fig = new_figure(11, 3.8, constrained=False)
    place(fig, left=0.75, right=0.45 + label_inches([*hue, "augmentation"]),
          bottom=0.6 + (0.35 if len(order) > 6 else 0), top=0.35, wspace=0.22)
    left, right = fig.subplots(1, 2)
    learned = runs[runs["verdict"].isin(LEARNED)]
    bars(left, learned, "LR", "gap_acc", "augment", order, hue, colours,
         functools.partial(seaborn_interval, bounds=(-1.0, 1.0)))
    left.axhline(0, color="#333", lw=0.8)
    th = sw.thresholds.get("overfit_gap_acc", 0.05)
    left.axhline(th, color=VERDICT_COLORS["overfit"], ls="--", lw=1.2)
    left.text(0.01, th, f" overfit threshold {th:g}", transform=left.get_yaxis_transform(),
              va="bottom", fontsize=8, color=VERDICT_COLORS["overfit"])
    left.set(title="generalization gap (lower is better)", xlabel="learning rate",
             ylabel="train acc − val acc")
    bars(right, runs, "LR", "tested_val_acc", "augment", order, hue, colours, ACC_INTERVAL)
    right.set(title="validation accuracy (higher is better)", xlabel="learning rate",
              ylabel="val acc", ylim=(0, 1.02))
    for ax in (left, right):
        tilt_if_crowded(ax, len(order))
    legend_outside(right, title="augmentation")
    caption = ("Bars compare the augmentations at each learning rate: left, the train−val "
               "accuracy gap (runs that diverged are left out), right, the validation "
               "accuracy; bars are means over seeds (and the axes not drawn), black ticks "
               "their 95% intervals (bootstrap, widened for small samples; none for a single "
               "run). A good augmentation lowers the gap without lowering validation accuracy.")
    return shown(key, title, caption, fig, "bar charts of gap and validation accuracy per "
                                           "augmentation")


def early_stopping(sw: SweepView) -> ReportFigure:
    """Best epoch vs stopped epoch per strategy, epochs saved, and what it cost."""
    key, title = "early-stopping", "Early stopping: where each strategy stopped, and what it saved"
    stoppers = sw.values("stopper")
    if not stoppers or all(s in ("none", "") for s in stoppers):
        return absent(key, title, "no early stopping in this sweep (stopper 'none'); compare "
                                  "with e.g. --stopper none,patience,gl.")
    runs = sw.runs[sw.runs["verdict"].isin(LEARNED)].copy()
    if runs.empty:
        return absent(key, title, "no run learned anything (all diverged or failed).")
    runs["stopper"] = runs["stopper"].map(text)
    runs["saved"] = (runs["epochs"] - runs["epochs_run"]).clip(lower=0)
    order = [text(s) for s in stoppers]
    colours = dict(zip(order, palette(len(order)), strict=True))
    totals = runs.groupby("stopper")["saved"].sum()
    names = [f"{s}\n({int(totals.get(s, 0))} in all)" for s in order]
    fig = new_figure(12, 3.9, constrained=False)
    # the middle panel's names sit between the first two panels
    place(fig, left=0.7, right=0.2, bottom=0.6 + (0.35 if runs["lr"].nunique() > 4 else 0),
          top=0.35, wspace=(0.55 + label_inches(names)) / 3.4)
    a, b, c = fig.subplots(1, 3, width_ratios=[1.3, 1, 1])
    rng = np.random.default_rng(0)  # jitter so that identical points stay visible
    jitter = pd.DataFrame({"best": runs["best_epoch"] + rng.uniform(-0.15, 0.15, len(runs)),
                           "ran": runs["epochs_run"] + rng.uniform(-0.15, 0.15, len(runs)),
                           "stopper": runs["stopper"]})
    for k, s in enumerate(order):
        mine = jitter[jitter["stopper"] == s]
        a.scatter(mine["best"], mine["ran"], s=45, alpha=0.8, color=colours[s],
                  marker=MARKERS[k % len(MARKERS)], edgecolors="w", linewidths=0.75, label=s)
    top = float(runs["epochs"].max())
    a.plot([0, top], [0, top], color="#666", ls="--", lw=1)
    a.text(top, top, " stopped at best ", ha="right", va="bottom", fontsize=8, color="#666")
    for e in runs["epochs"].unique():
        a.axhline(e, color="#999", ls=":", lw=1)
    a.set(title="best epoch vs epoch stopped", xlabel="best epoch (lowest val loss)",
          ylabel="epochs trained")
    a.xaxis.set_major_locator(MaxNLocator(integer=True))
    a.yaxis.set_major_locator(MaxNLocator(integer=True))
    a.legend(loc="lower right", frameon=True, fontsize=8, title="stopper")
    bars(b, runs, "stopper", "saved", "stopper", order, order, [colours[s] for s in order],
         functools.partial(seaborn_interval, bounds=(0, np.inf)), horizontal=True)
    b.set_yticks(range(len(order)), labels=names)
    b.set(title="epochs saved per run", xlabel="epochs not trained", ylabel="")
    b.set_xlim(left=0, right=max(1.0, float(runs["saved"].max()) * 1.15))
    runs["LR"] = runs["lr"].map(lr_text)
    points(c, runs, "LR", "tested_val_acc", "stopper",
           [lr_text(v) for v in sorted(runs["lr"].unique())], order, colours, ACC_INTERVAL,
           dodge=0.3 if len(order) > 1 else 0.0)
    c.set(title="validation accuracy of the tested weights", xlabel="learning rate",
          ylabel="val acc", ylim=(0, 1.02))
    tilt_if_crowded(c, runs["lr"].nunique(), limit=4)
    caption = ("Left: each dot is a run; dots on the dashed diagonal stopped exactly at their "
               "best epoch, dots on a dotted line ran every planned epoch. Middle: epochs each "
               "strategy saved per run (mean and 95% interval; the total under each name). Right: "
               "validation accuracy (mean and 95% interval over the seeds) of "
               "the weights that were tested, per learning rate and strategy: whether stopping "
               "cost accuracy. Runs that diverged or failed are left out.")
    return shown(key, title, caption, fig, "early stopping comparison")


def points(ax, frame: pd.DataFrame, cat: str, value: str, hue: str, order: list[str],
           hue_order: list[str], colours: dict[str, str], interval, dodge: float) -> None:
    """seaborn's ``pointplot``: per ``hue`` value, the mean of ``value`` at each ``cat``
    value joined by a line, its ``interval`` as a bar of the same colour, the hues side
    by side (``dodge``, in category widths)."""
    offsets = np.linspace(0, dodge, len(hue_order)) - dodge / 2
    at = {c: i for i, c in enumerate(order)}
    for k, h in enumerate(hue_order):
        mine = frame[frame[hue] == h]
        xs, means, spans = [], [], []
        for c, g in mine.groupby(cat, sort=False)[value]:
            vals = g.to_numpy(dtype=float)
            vals = vals[np.isfinite(vals)]
            if c in at and len(vals):
                xs.append(at[c] + offsets[k])
                means.append(float(vals.mean()))
                spans.append(interval(vals))
        if not xs:
            continue
        ranked = sorted(zip(xs, means, spans, strict=True))
        xs, means, spans = (list(v) for v in zip(*ranked, strict=True))
        ax.plot(xs, means, "-o", color=colours[h], label=h)
        known = [(x, lo, hi) for x, (lo, hi) in zip(xs, spans, strict=True)
                 if np.isfinite(lo) and np.isfinite(hi)]
        if known:
            x, lo, hi = zip(*known, strict=True)
            ax.vlines(x, lo, hi, color=colours[h], lw=2.25)
    categorical(ax, order)


MAX_EFFECTS = 16  # rows of the axis-effects figure


def axis_effects(sw: SweepView) -> ReportFigure:
    """Each axis value's paired effect against its baseline, on val acc and on the gap."""
    from lrlab.configs import value_text

    key, title = "axis-effects", "What each axis does: paired effects on validation accuracy and the gap"
    effects = sw.effects
    if effects.empty:
        return absent(key, title, "no axis has two or more values; compare some with e.g. "
                                  "--augment none,noise or --lr 0.03,0.1.")
    paired = effects[effects["n"] > 0]
    if paired.empty:
        return absent(key, title, "no pair of runs where both learned: every value was "
                                  "compared with a baseline whose runs did not learn, or the "
                                  "other way round.")
    entries = []  # (label, {metric: row})
    for (axis, value), group in paired.groupby(["axis", "value"], sort=False):
        by = {r["metric"]: r for r in group.to_dict("records")}
        base = group["baseline"].iloc[0]
        n = int(group["n"].iloc[0])
        entries.append((f"{axis} {value_text(axis, value)} vs {value_text(axis, base)} (n={n})",
                        by))
    shown_rows = entries[:MAX_EFFECTS]
    labels = [label for label, _ in shown_rows]
    fig = new_figure(11, 1.3 + 0.42 * len(shown_rows), constrained=False)
    place(fig, left=0.3 + label_inches(labels), right=0.2, bottom=0.55, top=0.35,
          wspace=0.08)
    left, right = fig.subplots(1, 2, sharey=True)

    def col(stat: str, metric: str) -> list[float]:
        return [100 * float(by[metric][stat]) if metric in by else float("nan")
                for _, by in shown_rows]

    forest(left, labels, col("mean", "val_acc"), col("lo", "val_acc"), col("hi", "val_acc"),
           higher_is_better=True, title="validation accuracy (higher is better)",
           xlabel="difference, percentage points")
    forest(right, labels, col("mean", "gap_acc"), col("lo", "gap_acc"), col("hi", "gap_acc"),
           higher_is_better=False, title="train − val gap (lower is better)",
           xlabel="difference, percentage points")
    from lrlab.configs import scope, together_text

    caption = ("Each row compares one value of an axis with its baseline (none for augment "
               "and stopper, else the axis's first value that learned), paired on every other "
               f"axis and the seed: n pairs of runs that both learned. Dots are the mean "
               f"difference, bars its interval over {scope(sw.runs)} and the grid's other "
               f"settings ({together_text(sw.effects['level'].max())} per metric; "
               "bootstrap, widened for small samples). Green: clearly better (the "
               "interval is clear of 0 on the good side), red: clearly worse, grey: no clear "
               "effect; a hollow dot has a single pair and no interval."
               + capped("comparisons", len(shown_rows), len(entries)))
    return shown(key, title, caption, fig, "forest plot of each axis value's effect")
