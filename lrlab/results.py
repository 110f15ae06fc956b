"""The ``runs`` and ``history`` tables, and their store under ``reports/<sweep-name>/``.

Each finished run is written at once: both tables are rewritten to a temporary file
and moved into place (``os.replace``), so a killed sweep leaves whole files that hold
every run that had finished. ``runs.parquet`` is the record of what finished: history
rows of a run missing from it are dropped on load.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lrlab.config import Run

RUNS_FILE = "runs.parquet"
HISTORY_FILE = "history.parquet"
MANIFEST_FILE = "manifest.json"

HISTORY_COLUMNS = ["run_id", "epoch", "lr", "train_loss", "train_acc", "val_loss",
                   "val_acc", "wall_s", "max_batch_loss"]
METRICS = ["train_loss", "train_acc", "val_loss", "val_acc"]


@dataclass
class RunResult:
    """One finished run: its row of ``runs`` and its rows of ``history``."""

    run: Run
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.summary["verdict"]

    @property
    def error(self) -> str:
        return self.summary.get("error") or ""


def summarize(run: Run, history: list[dict[str, Any]], *, test_loss: float = math.nan,
              test_acc: float = math.nan, restored_epoch: int | None = None,
              stopped_by: str | None = None, num_classes: int = 0, wall_s: float = 0.0,
              device: str = "", error: str = "", key: str = "") -> dict[str, Any]:
    """The run's row of the ``runs`` table, before its verdict is given."""
    from lrlab.verdicts import generalization_loss

    row: dict[str, Any] = {"run_id": run.run_id, **run.axes()}
    trained = [h for h in history if h["epoch"] >= 1]
    last = trained[-1] if trained else {m: math.nan for m in METRICS}
    finite = [h for h in trained if math.isfinite(h["val_loss"])]
    best = min(finite, key=lambda h: h["val_loss"]) if finite else None
    row.update({"verdict": "ok", "flags": "", "epochs_run": len(trained),
                "best_epoch": best["epoch"] if best else 0,
                "restored_epoch": restored_epoch if restored_epoch is not None else 0,
                "stopped_by": stopped_by or ""})
    for m in METRICS:
        row[m] = float(last[m])
    for m in METRICS:
        row[f"best_{m}"] = float(best[m]) if best else math.nan
    # the weights the test split saw: the restored epoch's, else the last epoch's
    tested = next((h for h in trained if h["epoch"] == restored_epoch), last)
    row["tested_epoch"] = int(tested.get("epoch", 0) or 0) if trained else 0
    row["tested_val_loss"], row["tested_val_acc"] = float(tested["val_loss"]), float(tested["val_acc"])
    row["test_loss"], row["test_acc"] = float(test_loss), float(test_acc)
    row["gap_loss"] = row["val_loss"] - row["train_loss"]
    row["gap_acc"] = row["train_acc"] - row["val_acc"]
    row["gl"] = generalization_loss([h["val_loss"] for h in trained]) if trained else math.nan
    row.update({"num_classes": num_classes, "wall_s": float(wall_s), "device": device,
                "error": error, "key": key})
    return row


class ResultStore:
    """The folder of one sweep: tables, manifest, report."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.runs: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []

    # -- reading --------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.folder / RUNS_FILE).is_file()

    def load(self) -> None:
        if not self.exists():
            return
        runs, history = read_tables(self.folder)
        self.runs = runs.to_dict("records")
        self.history = history.to_dict("records")

    def finished_keys(self) -> dict[str, str]:
        """key -> run_id of every stored run that finished without an error."""
        return {r["key"]: r["run_id"] for r in self.runs if r["verdict"] != "error"}

    # -- writing --------------------------------------------------------------------------

    def start(self, manifest: dict[str, Any], keep_keys: set[str]) -> None:
        """Begin a (resumed) sweep: keep the stored runs in ``keep_keys``, write the manifest."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.runs = [r for r in self.runs if r["key"] in keep_keys]
        kept = {r["run_id"] for r in self.runs}
        self.history = [h for h in self.history if h["run_id"] in kept]
        self.write_manifest(manifest)
        self._write()

    def add(self, result: RunResult) -> None:
        rid = result.summary["run_id"]
        self.runs = [r for r in self.runs if r["run_id"] != rid] + [result.summary]
        self.history = [h for h in self.history if h["run_id"] != rid] + [
            {"run_id": rid, **h} for h in result.history]
        self._write()

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.folder / MANIFEST_FILE,
                          json.dumps(manifest, indent=2, default=str))

    def _write(self) -> None:
        history = pd.DataFrame(self.history, columns=HISTORY_COLUMNS)
        atomic_write_parquet(history, self.folder / HISTORY_FILE)
        atomic_write_parquet(runs_frame(self.runs), self.folder / RUNS_FILE)

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return runs_frame(self.runs), pd.DataFrame(self.history, columns=HISTORY_COLUMNS)


def runs_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for col in ("epochs_run", "best_epoch", "restored_epoch", "tested_epoch", "epochs",
                "batch_size", "seed"):
        if col in frame:
            frame[col] = frame[col].astype("int64")
    return frame


def atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = pd.read_parquet(Path(folder) / RUNS_FILE)
    history = pd.read_parquet(Path(folder) / HISTORY_FILE)
    if not runs.empty:
        history = history[history["run_id"].isin(runs["run_id"])].reset_index(drop=True)
    return runs, history


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_results(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``runs``, ``history`` and the manifest of a stored sweep."""
    from lrlab.errors import UsageError

    folder = Path(folder)
    if not (folder / RUNS_FILE).is_file():
        raise UsageError(f"{folder} holds no sweep results ({RUNS_FILE} is missing)")
    runs, history = read_tables(folder)
    return runs, history, read_manifest(folder)


def best_configuration(runs: pd.DataFrame) -> pd.DataFrame | None:
    """The runs (one per seed) of the configuration with the highest mean validation
    accuracy of the weights that were tested, ties broken by the lower validation loss.

    Chosen on validation alone; only then may its test metric be read, so the test split
    stays an honest estimate. Runs that errored are never chosen.
    """
    from lrlab.config import AXES

    if runs.empty or "tested_val_acc" not in runs:
        return None
    ok = runs[(runs["verdict"] != "error") & runs["tested_val_acc"].notna()]
    if ok.empty:
        return None
    keys = [a for a in AXES if a != "seed" and a in ok]
    best = None
    for _, group in ok.groupby(keys, dropna=False, sort=False):
        score = (group["tested_val_acc"].mean(), -group["tested_val_loss"].mean())
        if best is None or score > best[0]:
            best = (score, group)
    return best[1] if best is not None else None
