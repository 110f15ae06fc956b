"""The ``configs`` table: one row per configuration (the runs that differ only by seed).

Each seed is judged on its own; a configuration's verdict is the majority of its seeds'
(a tie goes to the more severe verdict, so "1 overfit, 1 ok" reads overfit), and the row
keeps the count of every verdict and the spread of the key numbers, so "overfit in 1 seed
of 3" is visible rather than three unrelated rows.

The best configuration is chosen on validation alone, among the configurations that
learned (the majority of their seeds neither errored, diverged, nor stayed stuck near
chance); when none did, there is no best, and lrlab says so.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import pandas as pd

from lrlab.config import AXES
from lrlab.verdicts import DEFAULT_THRESHOLDS, SEVERITY, VERDICTS, progress

CONFIG_AXES = tuple(a for a in AXES if a != "seed")
# the runs-table columns summarised per configuration, and their names in ``configs``
METRICS = {"tested_val_acc": "val_acc", "tested_val_loss": "val_loss",
           "tested_gap_acc": "gap_acc", "tested_gl": "gl", "test_acc": "test_acc"}


def config_id(run_id: str) -> str:
    """A run id less its seed: ``mlp-lr0.1-ep30-flip-s2`` -> ``mlp-lr0.1-ep30-flip``."""
    return re.sub(r"-s\d+$", "", str(run_id))


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


def config_table(runs: pd.DataFrame,
                 near_chance: float = DEFAULT_THRESHOLDS["near_chance"]) -> pd.DataFrame:
    """One row per configuration: ``config_id``, its axes (seed left out), ``n``, ``n_<v>``
    for every verdict, ``verdict`` and ``cause`` (the majority's), ``learned``,
    ``run_ids``, and ``<metric>_mean`` / ``<metric>_std`` of the kept weights' val_acc,
    val_loss, gap_acc and gl, and of test_acc (read only for the chosen configuration)."""
    if runs is None or runs.empty:
        return pd.DataFrame(columns=["config_id", "n", "verdict"])
    frame = runs.copy()
    for col, fallback in (("tested_val_acc", "val_acc"), ("tested_val_loss", "val_loss"),
                          ("tested_gap_acc", "gap_acc"), ("tested_gl", "gl")):
        if col not in frame:
            frame[col] = frame[fallback] if fallback in frame else math.nan
    if "cause" not in frame:
        frame["cause"] = ""
    axes = [a for a in CONFIG_AXES if a in frame]
    frame["run_id"] = _ids(frame)
    frame["config_id"] = frame["run_id"].map(config_id)
    rows = []
    for cid, group in frame.groupby("config_id", sort=False):
        records = group.to_dict("records")
        verdicts = [str(r["verdict"]) for r in records]
        verdict = majority(verdicts)
        causes = [str(r.get("cause") or "") for r in records if r["verdict"] == verdict]
        row = {"config_id": cid, **{a: records[0][a] for a in axes}, "n": len(records)}
        row.update({f"n_{v}": verdicts.count(v) for v in VERDICTS})
        row.update(verdict=verdict, cause=Counter(causes).most_common(1)[0][0] if causes else "",
                   learned=sum(learned(r, near_chance) for r in records) * 2 > len(records),
                   run_ids=" ".join(str(r["run_id"]) for r in records))
        for col, name in METRICS.items():
            vals = pd.to_numeric(group[col], errors="coerce") if col in group else pd.Series()
            vals = vals[vals.map(lambda v: math.isfinite(v))]
            row[f"{name}_mean"] = float(vals.mean()) if len(vals) else math.nan
            row[f"{name}_std"] = float(vals.std()) if len(vals) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


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
    table = config_table(runs)
    best = best_config(table)
    if best is None:
        return None
    return runs[[config_id(rid) == best["config_id"] for rid in _ids(runs)]]


def _ids(runs: pd.DataFrame) -> list[str]:
    """The runs' ids; a hand-made table without them names each run by its axes."""
    axes = [a for a in CONFIG_AXES if a in runs]
    if "run_id" in runs:
        return [str(r) for r in runs["run_id"]]
    return ["-".join(str(r[a]) for a in axes) + f"-s{r.get('seed', 0)}"
            for r in runs.to_dict("records")]


def no_best_reason(configs: pd.DataFrame) -> str:
    """Why no configuration is named best, in one sentence."""
    if configs is None or configs.empty:
        return "no runs finished"
    counts = Counter(configs["verdict"])
    parts = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts.get(v))
    return (f"no configuration learned ({parts}): every one errored, diverged or stayed "
            f"near chance, so none is named best")
