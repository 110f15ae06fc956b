"""Made-up sweep results, to preview the report or test it at scale without training.

    >>> from lrlab.report.synthetic import write_synthetic
    >>> folder = write_synthetic("/tmp/demo", lrs=[1e-4, 1e-2, 1e-1, 10])  # doctest: +SKIP

The curves are shaped like real ones (an LR far too small underfits, one far too large
diverges, long training without augmentation overfits); the rows go through
:func:`lrlab.results.summarize` and the built-in diagnoses, so the tables have exactly
the columns and verdicts a real sweep stores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lrlab.results import (
    HISTORY_COLUMNS,
    HISTORY_FILE,
    MANIFEST_FILE,
    RUNS_FILE,
    atomic_write_parquet,
    atomic_write_text,
    runs_frame,
    summarize,
)
from lrlab.verdicts import DEFAULT_THRESHOLDS, builtin_diagnose, verdict_of


class _Run:
    """Just what :func:`summarize` reads of a :class:`lrlab.config.Run`."""

    def __init__(self, run_id: str, axes: dict[str, Any]) -> None:
        self.run_id, self._axes = run_id, axes

    def axes(self) -> dict[str, Any]:
        return dict(self._axes)


def _curves(lr: float, augment: str, epochs: int, schedule: str, stopper: str,
            rng: np.random.Generator) -> list[dict[str, float]]:
    speed = min(lr / 0.05, 3.0)  # how fast the training loss falls
    shrink = 0.35 if augment != "none" else 1.0  # augmentation narrows the gap
    rows, start = [], 2.30
    best, since = math.inf, 0
    for e in range(epochs + 1):
        factor = (1 + math.cos(math.pi * e / epochs)) / 2 if schedule == "cosine" else 1.0
        if lr >= 3.0 and e >= 1:
            train = start * (3.0 + lr) * e
        else:
            train = 0.03 + (start - 0.03) * math.exp(-speed * e / 2.5)
        rise = 0.9 * shrink * max(0.0, (e - 6) / 30) ** 1.5 if speed > 0.5 else 0.0
        val = train * (1.05 + 0.4 * shrink * min(1.0, e / 8)) + rise
        train_acc = max(0.1, 1.0 - 0.9 * train / start) if train <= start else 0.1
        val_acc = max(0.1, train_acc - 0.06 * shrink * min(1.0, e / 10) - rise / 4)
        noise = rng.normal(0, 0.004, 2)
        rows.append({"epoch": e, "lr": lr * factor, "train_loss": train,
                     "train_acc": float(np.clip(train_acc + noise[0], 0, 1)),
                     "val_loss": val, "val_acc": float(np.clip(val_acc + noise[1], 0, 1)),
                     "wall_s": 0.05 * e})
        if train > DEFAULT_THRESHOLDS["diverge_factor"] * start:
            break  # diverged: stopped here (the engine waits diverge_patience epochs)
        if stopper != "none" and e >= 1:
            best, since = (val, 0) if val < best else (best, since + 1)
            if since >= 3:
                break
    return rows


def synthetic_tables(lrs: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
                     augments: Sequence[str] = ("none", "noise"),
                     epochs: Sequence[int] = (30,), seeds: int = 1,
                     stoppers: Sequence[str] = ("none",),
                     schedules: Sequence[str] = ("constant",), errors: int = 0,
                     seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``runs`` and ``history`` of a made-up sweep over the given grid.

    :param errors: this many runs (the last ones) are stored as failed.
    """
    rng = np.random.default_rng(seed)
    grid = [(sc, au, st, lr, ep, s) for sc in schedules for au in augments for st in stoppers
            for lr in lrs for ep in epochs for s in range(seeds)]
    runs, history = [], []
    for i, (sc, au, st, lr, ep, s) in enumerate(grid):
        axes = {"dataset": "digits", "model": "mlp", "loss": "cross_entropy",
                "optimizer": "sgd(momentum=0.9)", "schedule": sc, "augment": au, "stopper": st,
                "lr": float(lr), "epochs": int(ep), "batch_size": 32, "seed": s}
        rid = f"mlp-{sc}-lr{lr:g}-ep{ep}-{au}-{st}-s{s}"
        failed = i >= len(grid) - errors
        rows = [] if failed else _curves(lr, au, ep, sc, st, rng)
        trained = rows[1:]
        stopped = None
        if trained and len(trained) < ep:
            factor = DEFAULT_THRESHOLDS["diverge_factor"]
            stopped = "diverged" if trained[-1]["train_loss"] > factor * rows[0]["train_loss"] \
                else "stopper"
        summary = summarize(_Run(rid, axes), rows, test_loss=rows[-1]["val_loss"] * 1.02
                            if rows else math.nan,
                            test_acc=rows[-1]["val_acc"] - 0.01 if rows else math.nan,
                            stopped_by=stopped, num_classes=10, wall_s=0.05 * len(rows),
                            device="cpu", error="Traceback ...\nRuntimeError: made-up failure"
                            if failed else "", key=f"k{i}")
        if failed:
            summary.update(verdict="error", flags="RuntimeError: made-up failure")
        else:
            flags = builtin_diagnose(pd.DataFrame(rows), summary, dict(DEFAULT_THRESHOLDS))
            summary["verdict"], summary["cause"], summary["flags"] = verdict_of(flags)
        runs.append(summary)
        history += [{"run_id": rid, **h} for h in rows]
    return runs_frame(pd.DataFrame(runs)), pd.DataFrame(history, columns=HISTORY_COLUMNS)


def write_synthetic(folder: str | Path, name: str = "synthetic", **grid: Any) -> Path:
    """Store a made-up sweep in ``folder`` (tables and manifest, no report); return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs, history = synthetic_tables(**grid)
    atomic_write_parquet(history, folder / HISTORY_FILE)
    atomic_write_parquet(runs, folder / RUNS_FILE)
    manifest = {
        "name": name, "command_line": "lrlab sweep (synthetic results)",
        "config": {"name": name, "grid": {}, "split": [0.6, 0.2, 0.2], "executor": "local",
                   "thresholds": dict(DEFAULT_THRESHOLDS)},
        "device": {"type": "cpu", "name": "synthetic"},
        "versions": {"lrlab": "synthetic"}, "notes": [],
    }
    atomic_write_text(folder / MANIFEST_FILE, json.dumps(manifest, indent=2))
    return folder
