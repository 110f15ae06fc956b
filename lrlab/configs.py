"""The ``configs`` table: one row per configuration (the runs that differ only by seed).

Each seed is judged on its own; a configuration's verdict is the majority of its seeds'
(a tie goes to the more severe verdict, so "1 overfit, 1 ok" reads overfit), and the row
keeps the count of every verdict and the spread of the key numbers, so "overfit in 1 seed
of 3" is visible rather than three unrelated rows.

The best configuration is chosen on validation alone, among the configurations that
learned (the majority of their seeds neither errored, diverged, nor stayed stuck near
chance); when none did, there is no best, and lrlab says so.

Every mean over seeds carries a 95% interval (:mod:`lrlab.stats`), the best is compared
with each other configuration paired by seed (``vs_best``: "tied" when the interval of
the difference holds 0), and :func:`axis_effects` gives what each axis value does against
its baseline, paired on the other axes and the seed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from lrlab.config import CONFIG_AXES
from lrlab.stats import (
    Interval,
    bonferroni,
    bounds_of,
    clip,
    covers,
    difference_bounds,
    interval_text,
    mean_intervals,
    pair_keys,
    paired_differences,
    points_text,
    simultaneous_intervals,
)
from lrlab.verdicts import DEFAULT_THRESHOLDS, SEVERITY, VERDICTS, progress

# the runs-table columns summarised per configuration, and their names in ``configs``
METRICS = {"tested_val_acc": "val_acc", "tested_val_loss": "val_loss",
           "tested_gap_acc": "gap_acc", "tested_gl": "gl", "test_acc": "test_acc"}
# the axes whose baseline is "none" when the sweep has it (else each axis's first value)
NONE_BASELINE = ("augment", "stopper")
NUMERIC_AXES = ("lr", "epochs", "batch_size")
EFFECT_METRICS = {"val_acc": "tested_val_acc", "gap_acc": "tested_gap_acc"}


def config_id(run_id: str) -> str:
    """A run id less its seed (and split seed, when that varies):
    ``mlp-lr0.1-ep30-flip-s2`` and ``mlp-lr0.1-ep30-flip-sp1-s2`` -> ``mlp-lr0.1-ep30-flip``."""
    return re.sub(r"(-sp\d+)?-s\d+$", "", str(run_id))


def learned(row: dict, near_chance: float = DEFAULT_THRESHOLDS["near_chance"]) -> bool:
    """Whether a run learned something worth choosing: it did not error or diverge, is
    not stuck, and its kept weights are clear of chance on validation."""
    if row.get("verdict") in ("error", "diverged") or row.get("cause") == "stuck":
        return False
    acc = row.get("tested_val_acc", row.get("val_acc", math.nan))
    classes = int(row.get("num_classes") or 0) or 10
    try:
        return progress(float(acc), classes) >= near_chance
    except (TypeError, ValueError):
        return False


def majority(verdicts: list[str]) -> str:
    """The most common verdict; a tie goes to the more severe one."""
    counts = Counter(verdicts)
    return max(counts, key=lambda v: (counts[v], SEVERITY.get(v, 0))) if counts else "ok"


def _prepared(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``runs`` with the kept weights' columns (older tables: the last epoch's),
    ``cause``, ``run_id`` and ``config_id``."""
    frame = runs.copy()
    for col, fallback in (("tested_val_acc", "val_acc"), ("tested_val_loss", "val_loss"),
                          ("tested_gap_acc", "gap_acc"), ("tested_gl", "gl")):
        if col not in frame:
            frame[col] = frame[fallback] if fallback in frame else math.nan
    if "cause" not in frame:
        frame["cause"] = ""
    frame["run_id"] = _ids(frame)
    frame["config_id"] = frame["run_id"].map(config_id)
    return frame


def config_table(runs: pd.DataFrame,
                 near_chance: float = DEFAULT_THRESHOLDS["near_chance"],
                 intervals: bool = True) -> pd.DataFrame:
    """One row per configuration: ``config_id``, its axes (seed left out), ``n``, ``n_<v>``
    for every verdict, ``verdict`` and ``cause`` (the majority's), ``learned``,
    ``run_ids``, and ``<metric>_mean`` / ``<metric>_std`` / ``<metric>_lo`` /
    ``<metric>_hi`` (the 95% interval of the mean, :func:`lrlab.stats.mean_interval`; NaN
    with one seed) of the kept weights' val_acc, val_loss, gap_acc and gl, and of test_acc
    (read only for the chosen configuration); non-finite values are left out.

    Then each configuration against the best, paired by seed (:func:`_versus_best`):
    ``vs_best_n`` pairs, ``vs_best_mean`` / ``_lo`` / ``_hi`` (its val acc minus the
    best's) and ``vs_best`` (best / tied / behind / ahead / no interval). Those intervals
    hold together at 95% over the comparisons with the configurations that learned
    (Bonferroni): ``vs_best_level`` is each one's own confidence.
    ``intervals=False`` leaves the intervals and the comparison out (choosing the best
    needs neither)."""
    if runs is None or runs.empty:
        return pd.DataFrame(columns=["config_id", "n", "verdict"])
    frame = _prepared(runs)
    axes = [a for a in CONFIG_AXES if a in frame]
    rows = []
    samples: dict[str, list] = {name: [] for name in METRICS.values()}
    records_all = frame.to_dict("records")
    numbers = {col: pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
               if col in frame else np.full(len(frame), np.nan) for col in METRICS}
    for cid, idx in frame.groupby("config_id", sort=False).indices.items():
        records = [records_all[i] for i in idx]
        verdicts = [str(r["verdict"]) for r in records]
        verdict = majority(verdicts)
        causes = [str(r.get("cause") or "") for r in records if r["verdict"] == verdict]
        row = {"config_id": cid, **{a: records[0][a] for a in axes}, "n": len(records)}
        row.update({f"n_{v}": verdicts.count(v) for v in VERDICTS})
        row.update(verdict=verdict, cause=Counter(causes).most_common(1)[0][0] if causes else "",
                   learned=sum(learned(r, near_chance) for r in records) * 2 > len(records),
                   run_ids=" ".join(str(r["run_id"]) for r in records))
        for col, name in METRICS.items():
            vals = numbers[col][idx]
            vals = vals[np.isfinite(vals)]
            row[f"{name}_mean"] = float(vals.mean()) if len(vals) else math.nan
            row[f"{name}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
            samples[name].append(vals)
        rows.append(row)
    table = pd.DataFrame(rows)
    if not intervals:
        return table
    # one bootstrap per sample size for the whole table; each interval clipped to the
    # range its metric can take
    found = mean_intervals([v for name in samples for v in samples[name]])
    k = len(table)
    for j, name in enumerate(samples):
        bounds = bounds_of(name)
        table[f"{name}_lo"] = [clip(iv.lo, bounds) for iv in found[j * k:(j + 1) * k]]
        table[f"{name}_hi"] = [clip(iv.hi, bounds) for iv in found[j * k:(j + 1) * k]]
    # the best against every other configuration that learned: those intervals hold
    # together at 95% (Bonferroni), so a sweep of many configurations does not call one
    # "behind" by the chance of one comparison in twenty
    comparisons = max(1, int(table["learned"].sum()) - 1)
    level = bonferroni(comparisons)
    table["vs_best_level"] = level
    return _versus_best(table, simultaneous_intervals(_best_differences(frame, table),
                                                      comparisons, difference_bounds("val_acc")))


def _best_differences(frame: pd.DataFrame, table: pd.DataFrame) -> list[np.ndarray]:
    """Per configuration, its kept val acc minus the best's, one per seed both ran (paired
    on :func:`lrlab.stats.pair_keys`); empty when there is no best or nothing to pair on."""
    best = best_config(table)
    keys = pair_keys(frame)
    if best is None or not keys:
        return [np.array([]) for _ in range(len(table))]
    values = pd.to_numeric(frame["tested_val_acc"], errors="coerce")
    frame = frame.assign(_v=values.where(np.isfinite(values)))
    wide = frame.groupby(["config_id", *keys], dropna=False)["_v"].mean().unstack("config_id")
    base = wide[best["config_id"]]
    return [(wide[c] - base).dropna().to_numpy() for c in table["config_id"]]


def _versus_best(table: pd.DataFrame, found: list[Interval]) -> pd.DataFrame:
    """``table`` with each configuration's validation accuracy against the best's (the
    intervals of :func:`_best_differences`): ``vs_best_n``, ``vs_best_mean``, ``vs_best_lo``,
    ``vs_best_hi`` and ``vs_best``: ``best``; ``tied`` (the interval of the difference holds
    0: the two cannot be told apart at this number of seeds); ``behind`` or ``ahead`` (it
    excludes 0); ``no interval`` (fewer than two shared seeds)."""
    best = best_config(table)
    table["vs_best_n"] = [iv.n for iv in found]
    table["vs_best_mean"] = [iv.mean for iv in found]
    table["vs_best_lo"] = [iv.lo for iv in found]
    table["vs_best_hi"] = [iv.hi for iv in found]
    status = []
    for cid, iv in zip(table["config_id"], found, strict=True):
        if best is None:
            status.append("")
        elif cid == best["config_id"]:
            status.append("best")
        elif not iv.known:
            status.append("no interval")
        else:
            status.append("tied" if iv.contains(0.0) else "behind" if iv.hi < 0 else "ahead")
    table["vs_best"] = status
    return table


def tied_with_best(configs: pd.DataFrame) -> pd.DataFrame:
    """The configurations that learned and cannot be told from the best (``vs_best`` is
    ``tied``), closest first."""
    if configs is None or configs.empty or "vs_best" not in configs:
        return pd.DataFrame(columns=list(configs.columns) if configs is not None else [])
    tied = configs[(configs["vs_best"] == "tied") & configs["learned"].astype(bool)]
    return tied.sort_values("vs_best_mean", ascending=False, kind="stable")


def scope(runs: pd.DataFrame) -> str:
    """``seeds`` or ``seeds and splits``: the variance the intervals hold
    (:func:`lrlab.stats.covers`)."""
    return covers(runs)


def together_text(level: Any) -> str:
    """``95% intervals`` or, for intervals held together at 95% over k comparisons
    (Bonferroni: each at ``level``), ``95% intervals held together over k comparisons``."""
    try:
        k = round((1 - 0.95) / (1 - float(level)))
    except (TypeError, ValueError, ZeroDivisionError):
        k = 1
    return f"95% intervals held together over {k} comparisons" if k > 1 else "95% intervals"


def repeats_text(runs: pd.DataFrame) -> str:
    """What a configuration's numbers are over: ``3 seeds``, or ``6 runs (3 seeds × 2
    splits)`` when it was repeated on several train/val/test splits."""
    n = len(runs)
    seeds = int(runs["seed"].nunique()) if "seed" in runs else n
    splits = int(runs["split_seed"].nunique()) if "split_seed" in runs else 1
    if splits < 2:
        return f"{n} seed{'s' if n != 1 else ''}"
    return f"{n} runs ({seeds} seed{'s' if seeds != 1 else ''} × {splits} splits)"


def mean_text(row: Any, name: str, digits: int = 3, scale: float = 1.0) -> str:
    """``0.967 [0.961, 0.972]`` of a configs row's metric (the mean alone with one seed)."""
    get = row.get if hasattr(row, "get") else lambda k, d=None: getattr(row, k, d)
    return interval_text(get(f"{name}_mean", math.nan), get(f"{name}_lo", math.nan),
                         get(f"{name}_hi", math.nan), scale, digits, sign=False)


# -- axis effects ------------------------------------------------------------------------


def axis_values(runs: pd.DataFrame, axis: str) -> list[Any]:
    """An axis's values in order: numbers ascending, the rest as the grid gave them."""
    vals = runs[axis].dropna().unique().tolist()
    return sorted(vals) if axis in NUMERIC_AXES else vals


def baseline(runs: pd.DataFrame, axis: str,
             near_chance: float = DEFAULT_THRESHOLDS["near_chance"]) -> Any:
    """The value each other is compared with: ``none`` for augment and stopper when the
    sweep has it, else the axis's first value (the smallest, for numbers) among those with
    a run that learned (an LR too small to learn anything is no baseline), else its first."""
    vals = axis_values(runs, axis)
    if axis in NONE_BASELINE and "none" in [str(v) for v in vals]:
        return next(v for v in vals if str(v) == "none")
    if "verdict" in runs:
        good = runs[[learned(r, near_chance) for r in runs.to_dict("records")]]
        ok = set(good[axis].dropna().tolist())
        return next((v for v in vals if v in ok), vals[0])
    return vals[0]


def axis_effects(runs: pd.DataFrame,
                 near_chance: float = DEFAULT_THRESHOLDS["near_chance"]) -> pd.DataFrame:
    """For every axis with two or more values (seed and dataset left out), each value
    against the axis's :func:`baseline`, on the kept weights' val accuracy and train−val gap:
    the mean paired difference (value − baseline) over the units (the runs' other axes and
    seed, and split seed) where both runs learned, and its 95% interval.

    The intervals of one metric hold together at 95% over all its effects (Bonferroni):
    ``level`` is each one's own confidence.

    Columns: ``axis``, ``value``, ``baseline``, ``metric`` (``val_acc``, ``gap_acc``), ``n``
    (pairs), ``mean``, ``sd``, ``lo``, ``hi``, ``level``; an effect without pairs has ``n``
    0 and NaN."""
    columns = ["axis", "value", "baseline", "metric", "n", "mean", "sd", "lo", "hi", "level"]
    if runs is None or runs.empty:
        return pd.DataFrame(columns=columns)
    frame = _prepared(runs)
    # every axis but the dataset (accuracy on two datasets is two numbers, not an effect)
    axes = [a for a in CONFIG_AXES if a in frame and a != "dataset"
            and frame[a].nunique(dropna=True) > 1]
    units = [a for a in CONFIG_AXES if a in frame] + pair_keys(frame)
    ok = frame[[learned(r, near_chance) for r in frame.to_dict("records")]]
    for col in EFFECT_METRICS.values():
        ok = ok.assign(**{col: pd.to_numeric(ok[col], errors="coerce")})
    keys, samples = [], []
    for axis in axes:
        base = baseline(frame, axis, near_chance)
        others = [v for v in axis_values(frame, axis) if v != base]
        for metric, col in EFFECT_METRICS.items():
            found = paired_differences(ok, axis, col, units, base, others)
            for v in others:
                keys.append((axis, v, base, metric))
                samples.append(found[v])
    # each metric's effects hold together at 95%: one level per metric, over its effects
    # that have pairs to compare
    counts = Counter(m for (_, _, _, m), sample in zip(keys, samples, strict=True)
                     if len(sample) > 1)
    found: list[Interval] = [None] * len(keys)  # type: ignore[list-item]
    for metric in EFFECT_METRICS:
        idx = [i for i, key in enumerate(keys) if key[3] == metric]
        for i, iv in zip(idx, simultaneous_intervals([samples[i] for i in idx], counts[metric],
                                                     difference_bounds(metric)), strict=True):
            found[i] = iv
    rows = [{"axis": a, "value": v, "baseline": b, "metric": m, "n": iv.n, "mean": iv.mean,
             "sd": iv.sd, "lo": iv.lo, "hi": iv.hi, "level": bonferroni(counts[m])}
            for (a, v, b, m), iv in zip(keys, found, strict=True)]
    return pd.DataFrame(rows, columns=columns)


def value_text(axis: str, value: Any) -> str:
    """An axis value as written on the command line (``0.1``, ``30``, ``noise(std=0.3)``)."""
    if axis == "lr":
        return f"{float(value):.3g}"
    if axis in ("epochs", "batch_size"):
        return str(int(value))
    return str(value)


def _reading(metric: str, lo: float, hi: float) -> str:
    what = "val acc" if metric == "val_acc" else "the gap"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    if lo > 0:
        return f"raises {what}"
    if hi < 0:
        return f"lowers {what}"
    return f"no clear change in {what}"


def effect_lines(effects: pd.DataFrame) -> list[str]:
    """Each effect in words: ``augment flip vs none: gap −2.1 points [−3.0, −1.2], val acc
    +0.4 [−0.2, +1.0] (6 pairs: lowers the gap, no clear change in val acc)``; the values
    of an axis without a pair where both runs learned share one line."""
    if effects is None or effects.empty:
        return []
    out = []
    for axis, rows in effects.groupby("axis", sort=False):
        base = value_text(axis, rows["baseline"].iloc[0])
        unpaired = []
        for value, group in rows.groupby("value", sort=False):
            by = {r["metric"]: r for r in group.to_dict("records")}
            gap, acc = by.get("gap_acc"), by.get("val_acc")
            n = int((acc or gap)["n"])
            if n == 0:
                unpaired.append(value_text(axis, value))
                continue
            parts = [f"{label} {_points(r, label == 'gap')}"
                     for label, r in (("gap", gap), ("val acc", acc)) if r is not None]
            readings = [t for t in (_reading("gap_acc", gap["lo"], gap["hi"]) if gap else "",
                                    _reading("val_acc", acc["lo"], acc["hi"]) if acc else "")
                        if t]
            pairs = f"{n} pair{'s' if n != 1 else ''}"
            if n == 1:
                pairs += ": no interval, --seeds 3 gives one"
            elif readings:
                pairs += ": " + ", ".join(readings)
            out.append(f"{axis} {value_text(axis, value)} vs {base}: {', '.join(parts)} "
                       f"({pairs})")
        if unpaired:
            out.append(f"{axis} {', '.join(unpaired)} vs {base}: no pair of runs where both "
                       f"learned")
    return out


def _points(row: dict[str, Any], unit: bool) -> str:
    """``−2.1 points [−3.0, −1.2]``: an accuracy difference in percentage points."""
    return points_text(row["mean"], row["lo"], row["hi"], " points" if unit else "")


def verdict_counts(row: dict) -> str:
    """``2 overfit, 1 ok of 3 seeds`` (or just the verdict for one seed)."""
    n = int(row["n"])
    if n == 1:
        return str(row["verdict"])
    parts = [f"{int(row[f'n_{v}'])} {v}" for v in VERDICTS if row.get(f"n_{v}")]
    return f"{', '.join(parts)} of {n} seeds"


def best_config(configs: pd.DataFrame) -> pd.Series | None:
    """The configuration that learned with the highest mean validation accuracy of its
    kept weights, ties broken by the lower validation loss; None when none learned."""
    if configs is None or configs.empty or "learned" not in configs:
        return None
    pool = configs[configs["learned"].astype(bool) & configs["val_acc_mean"].notna()]
    if pool.empty:
        return None
    order = pool.sort_values(["val_acc_mean", "val_loss_mean"], ascending=[False, True],
                             kind="stable")
    return order.iloc[0]


def best_configuration(runs: pd.DataFrame) -> pd.DataFrame | None:
    """The runs (one per seed) of the best configuration (:func:`best_config`), or None."""
    if runs is None or runs.empty:
        return None
    table = config_table(runs, intervals=False)
    best = best_config(table)
    if best is None:
        return None
    return runs[[config_id(rid) == best["config_id"] for rid in _ids(runs)]]


def _ids(runs: pd.DataFrame) -> list[str]:
    """The runs' ids; a hand-made table without them names each run by its axes."""
    axes = [a for a in CONFIG_AXES if a in runs]
    if "run_id" in runs:
        return [str(r) for r in runs["run_id"]]
    return ["-".join(str(r[a]) for a in axes)
            + (f"-sp{r['split_seed']}" if "split_seed" in r else "") + f"-s{r.get('seed', 0)}"
            for r in runs.to_dict("records")]


def no_best_reason(configs: pd.DataFrame) -> str:
    """Why no configuration is named best, in one sentence."""
    if configs is None or configs.empty:
        return "no runs finished"
    counts = Counter(configs["verdict"])
    parts = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts.get(v))
    return (f"no configuration learned ({parts}): every one errored, diverged or stayed "
            f"near chance, so none is named best")
