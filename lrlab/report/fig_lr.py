"""Figures about the learning rate: sensitivity, learning curves, the schedule used."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from lrlab.report.analysis import SweepView
from lrlab.report.plotting import (
    DASHES,
    MARKERS,
    MAX_COLS,
    MAX_ROWS,
    VERDICT_COLORS,
    ReportFigure,
    absent,
    capped,
    finite,
    label_inches,
    legend_outside,
    log_x_at,
    log_y,
    lr_text,
    new_figure,
    palette,
    pick,
    place,
    shown,
    text,
)
from lrlab.results import best_configuration
from lrlab.stats import Bands, geometric_mean

SERIES = {  # series name -> (loss column, accuracy column)
    "train (final)": ("train_loss", "train_acc"),
    "val (final)": ("val_loss", "val_acc"),
    "val (best epoch)": ("best_val_loss", "best_val_acc"),
}
FACET_PREFERENCE = ("model", "epochs", "optimizer", "schedule", "stopper", "loss", "dataset",
                    "batch_size")


def facet_axis(sw: SweepView, exclude: tuple[str, ...]) -> str | None:
    """The axis to split panels by: model, else epochs, else another varying axis."""
    return next((a for a in FACET_PREFERENCE if a in sw.varying and a not in exclude), None)


def _learning(sw: SweepView) -> pd.DataFrame:
    return sw.runs[sw.runs["verdict"] != "error"]


def _shade(ax, runs: pd.DataFrame) -> None:
    """Shade the LRs where most runs diverged (red) or underfit (blue); neighbouring LRs
    of one shade are one span."""
    lrs = sorted(runs["lr"].dropna().unique())
    if len(lrs) < 2:
        return
    logs = [math.log10(v) for v in lrs]
    counts = runs.groupby("lr")["verdict"].value_counts()
    spans: list[list] = []  # [verdict, left, right]
    for i, lr in enumerate(lrs):
        verdicts = counts[lr]  # most common first
        top = verdicts.index[0]
        if top not in ("diverged", "underfit") or verdicts.iloc[0] * 2 <= verdicts.sum():
            continue
        left = (logs[i] + logs[i - 1]) / 2 if i > 0 else logs[i] - (logs[1] - logs[0]) / 2
        right = (logs[i] + logs[i + 1]) / 2 if i + 1 < len(lrs) else \
            logs[i] + (logs[i] - logs[i - 1]) / 2
        if spans and spans[-1][0] == top and spans[-1][2] == left:
            spans[-1][2] = right
        else:
            spans.append([top, left, right])
    for top, left, right in spans:
        ax.axvspan(10 ** left, 10 ** right, color=VERDICT_COLORS[top], alpha=0.10, lw=0)


def lr_sensitivity(sw: SweepView) -> ReportFigure:
    """Final and best loss/accuracy against LR (log axis), train beside val."""
    key, title = "lr-sensitivity", "Learning-rate sensitivity: loss and accuracy against LR"
    runs = _learning(sw)
    if runs["lr"].nunique() < 2:
        return absent(key, title, "the sweep has a single learning rate; give several "
                                  "(e.g. --lr 0.001,0.01,0.1) to see how the LR matters.")
    # different loss functions are never pooled on one axis or one band: facet by loss
    facet = "loss" if "loss" in sw.varying else facet_axis(sw, exclude=("lr", "augment"))
    all_vals = sw.values(facet) if facet else [None]
    facets = all_vals[:MAX_ROWS]
    parts = []
    for name, (loss, acc) in SERIES.items():
        for metric, col in (("loss", loss), ("accuracy", acc)):
            part = pd.DataFrame({"lr": runs["lr"], "value": runs[col], "metric": metric,
                                 "series": name, "facet": runs[facet] if facet else "",
                                 "augment": runs["augment"].map(text)
                                 if "augment" in runs else "none"})
            parts.append(part)
    long = pd.concat(parts, ignore_index=True)
    long = long[long["value"].map(lambda v: math.isfinite(v))]
    loss_cap = 3 * max(finite(runs.loc[runs["verdict"] != "diverged", "train_loss"]) or [10.0])
    augs = list(dict.fromkeys(long["augment"]))
    colours = dict(zip(augs, palette(len(augs)), strict=True))
    # every line's points and intervals in one pass: one sample per (facet, line, lr)
    lines: dict[tuple, list[tuple[float, np.ndarray]]] = {}  # (metric, facet, aug, series)
    for k, g in long.groupby(["metric", "facet", "augment", "series", "lr"], sort=True)["value"]:
        lines.setdefault(k[:4], []).append((k[4], g.to_numpy(dtype=float)))
    bands = {m: Bands([v for k, points in lines.items() if k[0] == m for _, v in points],
                      **({"log": True} if m == "loss" else {"bounds": (0.0, 1.0)}))
             for m in ("loss", "accuracy")}
    labels = [*augs, *SERIES, "augment", "series"]
    right = 0.45 + label_inches(labels)
    fig = new_figure(11, 0.6 + 2.9 * len(facets), constrained=False)
    place(fig, left=0.8, right=right, bottom=0.55, top=0.35, wspace=0.22, hspace=0.4)
    axes = fig.subplots(len(facets), 2, squeeze=False, sharex=True)
    lrs = runs["lr"].dropna().unique()
    for i, fv in enumerate(facets):
        in_facet = runs if fv is None else runs[runs[facet] == fv]
        cap = 3 * max(finite(in_facet.loc[in_facet["verdict"] != "diverged", "train_loss"])
                      or [loss_cap / 3])
        for j, metric in enumerate(("loss", "accuracy")):
            ax = axes[i][j]
            # a loss on a log axis: the geometric mean and the interval of its log
            estimate = geometric_mean if metric == "loss" else np.mean
            values = []
            for aug, name in ((a, n) for a in augs for n in SERIES):
                points = lines.get((metric, fv if facet else "", aug, name))
                if not points:
                    continue
                xs = [x for x, _ in points]
                ys = [float(estimate(v)) for _, v in points]
                spread = [bands[metric](v) for _, v in points]
                values += [float(x) for _, v in points for x in v]
                style = list(SERIES).index(name)
                ax.plot(xs, ys, color=colours[aug], marker=MARKERS[style],
                        dashes=DASHES[style], mec="w", mew=0.75)
                lo, hi = (np.array(b, dtype=float) for b in zip(*spread, strict=True))
                if np.isfinite(lo).any():
                    ax.fill_between(xs, lo, hi, color=colours[aug], alpha=0.2, lw=0)
            log_x_at(ax, lrs)
            _shade(ax, in_facet)
            if metric == "loss":
                log_y(ax)
                top = max(finite(values) or [1.0])
                if top > cap:
                    ax.set_ylim(top=cap)
                ax.set_ylabel("loss (log scale)")
            else:
                ax.set_ylim(-0.02, 1.02)
                ax.set_ylabel("accuracy")
            ax.set_xlabel("learning rate (log scale)")
            where = f" · {facet} {text(fv)}" if facet else ""
            ax.set_title(f"{metric}{where}")
    # seaborn's legend: a heading and an entry per colour, then per line style
    handles = [Line2D([], [], ls="", label="augment")]
    handles += [Line2D([], [], color=colours[a], label=a) for a in augs]
    handles += [Line2D([], [], ls="", label="series")]
    handles += [Line2D([], [], color="#444", marker=MARKERS[k], dashes=DASHES[k], mec="w",
                       label=name) for k, name in enumerate(SERIES)]
    legend_outside(axes[0][1], handles)
    others = [a for a in sw.varying if a not in ("lr", "augment", facet)]
    over = "seeds" + (f" and {', '.join(others)}" if others else "")
    caption = ("Each line follows one measurement across learning rates (log axis): solid = "
               "training, dashed = validation at the last epoch, dotted = validation at its best "
               "epoch; the vertical distance between train and val is the generalization gap. "
               f"Colour = augmentation; lines are means and bands their 95% intervals over "
               f"{over} (bootstrap, widened for small samples; no band where a point is one "
               f"run; losses: the geometric mean, the mean on the log axis, and its interval). "
               f"Red shading: "
               "most runs diverged at that LR; blue: most underfit."
               + capped(f"values of {facet}", len(facets), len(all_vals)))
    return shown(key, title, caption, fig, "loss and accuracy against learning rate")


def learning_curves(sw: SweepView) -> ReportFigure:
    """Train vs val loss per epoch, one panel per LR x augmentation."""
    key, title = "learning-curves", "Learning curves: training vs validation loss per epoch"
    runs = _learning(sw)
    if runs.empty or sw.history.empty:
        return absent(key, title, "no run has a training history to draw.")
    best = best_configuration(sw.runs)  # the sweep's best, as the summary names it
    best_lr = float(best["lr"].iloc[0]) if best is not None else None
    for repeat in ("split_seed", "seed"):  # one run per configuration: its first split, seed
        if repeat in runs and runs[repeat].nunique() > 1:
            runs = runs[runs[repeat] == runs.groupby("config")[repeat].transform("min")]
    all_lrs = sw.values("lr")
    lrs = pick(all_lrs, MAX_COLS, keep=best_lr)
    all_augs = sw.values("augment") if "augment" in runs else [None]
    # losses of different loss functions are never pooled: one row (own y axis) per loss
    all_loss = sw.values("loss") if "loss" in sw.varying else [None]
    all_rows = [(lo, au) for lo in all_loss for au in all_augs]
    row_keys = all_rows[:MAX_ROWS]
    augs = row_keys  # one row of panels per (loss, augmentation)
    hist = {rid: h for rid, h in sw.history.groupby("run_id", sort=False)}
    width, height = min(12.0, max(9.0, 1.2 + 1.9 * len(lrs))), 1.5 + 1.9 * len(augs)
    fig = new_figure(width, height, constrained=False)  # a plain grid: placed by hand
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.15 / width, bottom=0.65 / height,
                        top=1 - 0.85 / height, wspace=0.1, hspace=0.3)
    axes = fig.subplots(len(augs), len(lrs), squeeze=False, sharex=True,
                        sharey="row" if all_loss != [None] else True)
    losses, start = {}, {}
    stopped = False
    hidden = 0  # runs left out of full panels
    extra = [a for a in sw.varying if a not in ("lr", "augment", "loss")]
    for i, (loss_fn, aug) in enumerate(augs):
        lkey = loss_fn if all_loss != [None] else None
        for j, lr in enumerate(lrs):
            ax = axes[i][j]
            cell = runs[(runs["lr"] == lr) & ((runs["augment"] == aug) if aug is not None else True)
                        & ((runs["loss"] == loss_fn) if loss_fn is not None else True)]
            left_out = max(0, len(cell) - PANEL_RUNS)
            cell = cell.head(PANEL_RUNS)
            if left_out:  # never silently: the panel and the caption say so
                hidden += left_out
                ax.text(0.98, 0.98, f"+{left_out} run(s) not drawn", ha="right", va="top",
                        transform=ax.transAxes, fontsize=7, color="#444")
            several = len(cell) > 1
            for k, r in enumerate(cell.to_dict("records")):
                h = hist.get(r["run_id"])
                if h is None or h.empty:
                    continue
                color = VERDICT_COLORS.get(r["verdict"], "#444")
                lw = 2.2 if r["verdict"] == "overfit" else 1.2
                # several lines in a panel: each run gets its own marker and a legend entry
                marker = PANEL_MARKERS[k % len(PANEL_MARKERS)] if several else ""
                every = max(1, len(h) // 6)
                label = (", ".join(f"{a} {text(r[a])}" for a in extra) or text(r["run_id"])) \
                    if several else None
                ax.plot(h["epoch"], h["train_loss"], "-", color=color, lw=lw, marker=marker,
                        ms=4, markevery=every, label=label)
                ax.plot(h["epoch"], h["val_loss"], "--", color=color, lw=lw, marker=marker,
                        ms=4, markevery=every, mfc="none")
                losses.setdefault(lkey, []).extend(finite(h["train_loss"]) + finite(h["val_loss"]))
                start.setdefault(lkey, []).extend(finite(h.loc[h["epoch"] == 0, "train_loss"]))
                at_best = h.loc[h["epoch"] == r["best_epoch"], "val_loss"]
                if not at_best.empty:
                    ax.plot([r["best_epoch"]], [at_best.iloc[0]], "o", color=color, ms=5,
                            mec="black", mew=0.8, zorder=5)
                if r["stopped_by"] in ("stopper", "plugin"):
                    ax.axvline(r["epochs_run"], color=color, ls=":", lw=1.4)
                    stopped = True
            if cell.empty or (cell["verdict"] == "diverged").all():
                ax.text(0.5, 0.5, "no run" if cell.empty else "diverged", ha="center",
                        va="center", transform=ax.transAxes, fontsize=10, fontweight="bold",
                        color="#888" if cell.empty else VERDICT_COLORS["diverged"])
            if (cell["verdict"] == "overfit").any():
                ax.set_facecolor("#fff1e0")
            if several and ax.get_legend_handles_labels()[1]:
                ax.legend(fontsize=6, loc="lower left", frameon=False, handlelength=1.5)
            name = f"lr {lr_text(lr)}" + (f" · {text(aug)}" if len(all_augs) > 1 else "") \
                + (f" · {text(loss_fn)}" if loss_fn is not None else "")
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelsize=8)
    for i, (loss_fn, _) in enumerate(augs):  # one y range per loss function
        lkey = loss_fn if all_loss != [None] else None
        good = [v for v in losses.get(lkey, []) if v > 0]
        if good and (i == 0 or all_loss != [None]):
            ax0 = axes[i][0]
            log_y(ax0)
            top = min(max(good), 3 * max(start.get(lkey) or good))
            ax0.set_ylim(min(good) * 0.8, top * 1.2)
    fig.supxlabel("epoch (0 = before training)", fontsize=10)
    fig.supylabel("loss (log scale)", fontsize=10)
    handles = [Line2D([], [], color="#444", ls="-", label="train loss"),
               Line2D([], [], color="#444", ls="--", label="validation loss"),
               Line2D([], [], color="#444", marker="o", ls="", mec="black",
                      label="best epoch (lowest val loss)")]
    if stopped:
        handles.append(Line2D([], [], color="#444", ls=":", label="early stop"))
    present = [v for v in VERDICT_COLORS if (runs["verdict"] == v).any()]
    handles += [Patch(color=VERDICT_COLORS[v], label=v) for v in present]
    fig.legend(handles=handles, loc="upper center", ncols=min(len(handles), 5),
               frameon=False, fontsize=9)
    caption = ("Each panel is one learning rate" + (" and augmentation" if len(all_augs) > 1 else "")
               + (" and loss function (a row per loss, each with its own y axis: different "
                  "losses are not comparable)" if all_loss != [None] else "")
               + ": solid = training loss, dashed = validation loss, colour = the run's verdict. "
               "When the dashed line turns up while the solid one keeps falling, the model is "
               "overfitting (orange panels); the dot marks the lowest validation loss"
               + ("; dotted verticals mark where early stopping ended the run" if stopped else "")
               + "." + (" Lines in one panel differ in " + ", ".join(extra)
                        + " (marker; the panel's legend names each)." if extra else "")
               + (" One run per configuration (its first seed and split) is drawn." if sw.seeds > 1 else "")
               + (f" {hidden} run(s) are not drawn: a panel shows at most {PANEL_RUNS} runs and "
                  f"says how many it left out; the all-runs table has every one." if hidden
                  else "")
               + capped("learning rates", len(lrs), len(all_lrs))
               + capped("rows (loss × augmentation)" if all_loss != [None] else "augmentations",
                        len(augs), len(all_rows)))
    return shown(key, title, caption, fig, "training and validation loss curves")


# at most this many runs drawn in one learning-curve panel (more lines are unreadable)
PANEL_RUNS = 4
PANEL_MARKERS = ("^", "s", "x", "D")  # not "o": that marks the best epoch  # one per run of a panel (at most PANEL_RUNS)

# at most this many points per schedule line (a long run has tens of thousands of steps)
MAX_POINTS = 2000


def replayed_lrs(sw: SweepView, row: dict) -> tuple[list[float], list[float]] | None:
    """``(x, lr)`` of a run at every batch it trained (x in epochs: the last batch of
    epoch ``e`` at ``e``), replayed from its schedule through the plugins' registry; None
    when the registry, the split size or the schedule is not at hand."""
    sizes = (sw.manifest.get("split_sizes") or {}).get(str(row.get("dataset")))
    if sw.registry is None or not sizes or not sizes.get("train"):
        return None
    from types import SimpleNamespace

    from lrlab.engine import lr_table  # torch: imported only when a schedule is replayed
    from lrlab.registry import parse_spec

    try:
        spe = math.ceil(int(sizes["train"]) / int(row["batch_size"]))
        run = SimpleNamespace(optimizer=parse_spec(row["optimizer"], "optimizer"),
                              schedule=parse_spec(row["schedule"], "schedule"),
                              lr=float(row["lr"]), epochs=int(row["epochs"]))
        table = lr_table(sw.registry, run, spe, strict=False)
    except Exception:  # a plugin that is not installed here, say: draw the epochs instead
        return None
    table = table[:max(1, int(row.get("epochs_run") or 0)) * spe]
    every = max(1, math.ceil(len(table) / MAX_POINTS))
    steps = list(range(0, len(table), every))
    if steps[-1] != len(table) - 1:
        steps.append(len(table) - 1)
    return [(s + 1) / spe for s in steps], [table[s] for s in steps]


def lr_schedule(sw: SweepView) -> ReportFigure:
    """The LR actually used, per batch (per epoch when the schedule cannot be replayed),
    for each schedule in the sweep."""
    key, title = "lr-schedule", "Learning-rate schedules: the LR actually used"
    scheds = sw.values("schedule")
    if not scheds or all(s == "constant" for s in scheds):
        return absent(key, title, "every run used a constant learning rate (schedule "
                                  "'constant'); try --schedule constant,cosine,onecycle.")
    runs = _learning(sw).sort_values("epochs_run", ascending=False, kind="stable")
    if runs.empty or sw.history.empty:
        return absent(key, title, "no run has a training history to draw.")
    hist = {rid: h for rid, h in sw.history.groupby("run_id", sort=False)}
    colours = dict(zip(scheds, palette(len(scheds)), strict=True))
    per_batch = True

    def curve(row) -> tuple[list[float], list[float]] | None:
        nonlocal per_batch
        replayed = replayed_lrs(sw, row)
        if replayed is not None:
            return replayed
        per_batch = False
        h = hist.get(row["run_id"])
        return None if h is None else (h["epoch"].tolist(), h["lr"].tolist())

    fig = new_figure(11, 3.6, constrained=False)
    place(fig, left=0.8, right=0.2, bottom=0.55, top=0.35, wspace=0.22)
    left, right = fig.subplots(1, 2)
    for s in scheds:
        mine = runs[runs["schedule"] == s]
        if mine.empty:
            continue
        longest = mine.iloc[0]
        drawn = curve(longest.to_dict())
        if drawn is not None:
            left.plot(drawn[0], [v / longest["lr"] for v in drawn[1]], "-", color=colours[s],
                      label=text(s))
        for lr in pick(sorted(mine["lr"].unique()), MAX_COLS):
            drawn = curve(mine[mine["lr"] == lr].iloc[0].to_dict())
            if drawn is not None:
                right.plot(*drawn, "-", color=colours[s], lw=1.4)
    left.set(title="shape: LR as a multiple of the run's LR", xlabel="epoch",
             ylabel="multiple of the given LR")
    left.legend(title="schedule", frameon=False)
    log_y(right)
    right.set(title="the LR actually used, one line per given LR", xlabel="epoch",
              ylabel="learning rate (log scale)")
    when = ("at every batch (replayed from each run's schedule; the last batch of epoch e "
            "sits at e)" if per_batch else "at the last batch of each epoch (epoch 0 = the "
            "first batch)")
    caption = (f"The learning rate the optimizer used {when}: left, each schedule's shape as "
               "a multiple of the LR you gave; right, the actual values for each LR of the "
               "sweep, coloured by schedule. A decaying LR lets a large starting LR settle; "
               "a warm-up keeps it from blowing up in the first steps. A line ends where its "
               "run stopped (diverged or stopped early).")
    alt = "learning rate per batch for each schedule" if per_batch else \
        "learning rate per epoch for each schedule"
    return shown(key, title, caption, fig, alt)
