"""The ``runs`` and ``history`` tables, and their store under ``reports/<sweep-name>/``.

Each finished run is stored at once, at a cost that does not grow with the sweep: it is
appended, as one line of JSON (its row and its history rows), to the folder's journal
``.journal.jsonl`` and fsynced (:class:`lrlab.storage.AppendLog`). Now and then (when the
last compaction cost under a twentieth of the time since) and when the sweep ends, the
journal is compacted: both tables are rewritten whole to a temporary file and moved into
place (``os.replace``), then the journal is removed. So a killed sweep leaves whole
files that, with the journal's whole records, hold every run that had finished, and
storing 10,000 runs costs about the same per run at the last as at the first. Readers
(:func:`read_tables`) read the journal, then the tables, and keep a run's newest record;
``runs`` is the record of what finished: history rows of a run missing from it are
dropped on load.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lrlab.config import Run
from lrlab.storage import (
    AppendLog,
    atomic_write_parquet,
    atomic_write_table,
    atomic_write_text,
    read_records,
)

__all__ = ["ResultStore", "RunResult", "atomic_write_parquet", "atomic_write_table",
           "atomic_write_text", "load_results", "read_manifest", "read_tables", "summarize"]

RUNS_FILE = "runs.parquet"
HISTORY_FILE = "history.parquet"
CONFIGS_FILE = "configs.parquet"
MANIFEST_FILE = "manifest.json"
JOURNAL_FILE = ".journal.jsonl"

HISTORY_COLUMNS = ["run_id", "epoch", "lr", "train_loss", "train_acc", "val_loss",
                   "val_acc", "wall_s", "max_batch_loss", "batch_loss"]
METRICS = ["train_loss", "train_acc", "val_loss", "val_acc"]


@dataclass
class RunResult:
    """One finished run: its row of ``runs``, its rows of ``history`` and, when the sweep
    saves weights (``--save best|all``), the weights its test split was scored on
    (``weights``: a ``state_dict`` of CPU tensors; None for an error, under ``--save
    none``, or from an executor that hands none back). ``weights`` is no column of a
    table: the sweep writes it to ``weights/<run_id>.pt`` (:mod:`lrlab.weights`). It
    pickles with the rest (a Ray worker's result brings it back)."""

    run: Run
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, Any] | None = field(default=None, repr=False, compare=False)

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
    from lrlab.verdicts import generalization_loss, tested_numbers

    row: dict[str, Any] = {"run_id": run.run_id, **run.axes()}
    trained = [h for h in history if h["epoch"] >= 1]
    last = trained[-1] if trained else {m: math.nan for m in METRICS}
    finite = [h for h in trained if math.isfinite(h["val_loss"])]
    best = min(finite, key=lambda h: h["val_loss"]) if finite else None
    row.update({"verdict": "ok", "cause": "", "flags": "", "epochs_run": len(trained),
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
    row.update(tested_numbers(history, restored_epoch))
    row.update({"num_classes": num_classes, "wall_s": float(wall_s), "device": device,
                "error": error, "key": key})
    return row


class ResultStore:
    """The folder of one sweep: tables, journal, manifest, report.

    In memory: the tables as last compacted (Arrow), and the records stored since (the
    journal's, in order). Storing a run appends one journal record and costs about a
    millisecond however many runs are stored; the tables are rewritten when the last
    rewrite cost under ``1 / COMPACT_RATIO`` of the time since, so rewriting never takes
    more than about 5% of a sweep's time, and when a sweep starts and ends.
    """

    COMPACT_RATIO = 20.0

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._runs = pa.table({})  # as in runs.parquet
        self._history = history_table([])  # as in history.parquet
        self._rows: list[dict[str, Any]] = []  # the runs stored since, oldest first
        self._rows_history: list[dict[str, Any]] = []  # ... and their history rows
        self._pending: set[str] = set()  # the run ids in _rows
        self._compacted: set[str] = set()  # the run ids in _runs
        self._dropped: set[str] = set()  # ... replaced since
        self._keep: set[str] = set()  # the stored runs' keys that start() keeps
        self._journal = AppendLog(self.folder / JOURNAL_FILE)
        self._compacted_at = time.perf_counter()
        self._compact_s = 0.0
        self.previous_manifest: dict[str, Any] = {}  # the stored sweep's, on resume

    @property
    def runs(self) -> list[dict[str, Any]]:
        """The stored rows of ``runs``, oldest first."""
        return self._tables()[0].to_pylist()

    # -- reading --------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.folder / RUNS_FILE).is_file()

    def load(self) -> None:
        if self.exists():
            self._load()

    def _load(self) -> None:
        self._runs, history, records = _read(self.folder)
        self._history = conform_history(history)
        self._compacted = set(self._runs["run_id"].to_pylist()) if self._runs.num_rows \
            else set()
        self._rows, self._rows_history, self._pending, self._dropped = [], [], set(), set()
        for row, history in records:
            self._take(row, history)

    def finished_keys(self) -> dict[str, str]:
        """key -> run_id of every stored run that finished without an error."""
        return {r["key"]: r["run_id"] for r in self.runs if r["verdict"] != "error"}

    def resume(self, selected: dict[str, Run], grid_keys: set[str], *,
               fresh: bool = False, codes: dict[str, str] | None = None,
               ) -> tuple[list[Run], list[Run], list[str]]:
        """Read what is stored (unless ``fresh``) and split the ``selected`` runs (by key)
        into those to train and those finished before (skipped), with notes for the user.
        Nothing is written.

        A finished run is trained again when its code record (``codes``: lrlab's version
        and its components' code) differs from the stored one. Kept when the sweep starts:
        every finished run, and every stored run that the selection (``-k``) left out this
        time, even an error. A stored run of another grid (not in ``grid_keys``) is a
        UsageError: its folder belongs to another sweep.
        """
        if not fresh:
            self.load()
            self.previous_manifest = _readable_manifest(self.folder)
        stored = self.runs
        stray = [r["run_id"] for r in stored if r["key"] not in grid_keys]
        if stray:
            from lrlab.errors import UsageError

            raise UsageError(f"{self.folder} holds {len(stray)} run(s) of another grid "
                             f"(e.g. {stray[0]}); pass --fresh to start over or --name to "
                             f"keep both")
        done = self.finished_keys()
        changed: dict[str, int] = {}
        for row in stored:
            key, was = row["key"], row.get("code") or ""
            now = (codes or {}).get(key, "")
            if key in done and key in selected and was and now and was != now:
                del done[key]  # its code changed: trained again
                for part in _changed_parts(was, now):
                    changed[part] = changed.get(part, 0) + 1
        self._keep = set(done) | {r["key"] for r in stored if r["key"] not in selected}
        todo = [run for key, run in selected.items() if key not in done]
        skipped = [run for key, run in selected.items() if key in done]
        notes = [f"{n} stored run(s) trained again: {part} changed since"
                 for part, n in changed.items()]
        return todo, skipped, notes

    # -- writing --------------------------------------------------------------------------

    def start(self, manifest: dict[str, Any]) -> None:
        """Begin a (resumed) sweep: keep what :meth:`resume` kept, write the manifest and
        the tables (the journal a killed sweep left is compacted into them)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        runs, history = self._tables()
        if runs.num_rows:
            runs = runs.filter(pc.is_in(runs["key"], pa.array(sorted(self._keep),
                                                              pa.string())))
            history = history.filter(pc.is_in(history["run_id"], runs["run_id"]))
        self.write_manifest(manifest)
        self._compact(runs, history)

    def add(self, result: RunResult) -> None:
        """Store a finished run (a retried run replaces its old record and goes to the
        end): one journal record, and the tables rewritten when that is due."""
        rid = result.summary["run_id"]
        record = json.dumps({"run": result.summary, "history": [
            {"run_id": rid, **{c: h.get(c) for c in HISTORY_COLUMNS[1:]}}
            for h in result.history]}, default=_plain)
        self._journal.append(record.encode("utf-8"))
        stored = json.loads(record)  # in memory as a reader will read it back
        self._take(stored["run"], stored["history"])
        if time.perf_counter() - self._compacted_at >= self.COMPACT_RATIO * self._compact_s:
            self._compact(*self._tables())

    def rewrite_runs(self, rows: list[dict[str, Any]]) -> None:
        """Replace the stored ``runs`` rows (the same runs, in order, e.g. judged again)."""
        runs, history = self._tables()
        self._compact(pa.Table.from_pylist(rows, schema=runs.schema), history)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_text(self.folder / MANIFEST_FILE,
                          json.dumps(manifest, indent=2, default=str))

    def _take(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """Add a stored record to the tables in memory (replacing the run's older one)."""
        rid = row["run_id"]
        if rid in self._compacted:
            self._dropped.add(rid)
        if rid in self._pending:  # rare: a run stored twice since the last compaction
            self._rows = [r for r in self._rows if r["run_id"] != rid]
            self._rows_history = [h for h in self._rows_history if h["run_id"] != rid]
        self._pending.add(rid)
        self._rows.append(row)
        self._rows_history.extend(history)

    def _tables(self) -> tuple[pa.Table, pa.Table]:
        """``runs`` and ``history`` as stored: the compacted tables and the records
        since."""
        runs, history = self._runs, self._history
        if self._dropped:
            gone = pa.array(sorted(self._dropped), pa.string())
            runs = runs.filter(pc.invert(pc.is_in(runs["run_id"], gone)))
            history = history.filter(pc.invert(pc.is_in(history["run_id"], gone)))
        if self._rows:
            new = rows_table(self._rows)
            runs = new if not runs.num_columns else pa.concat_tables(
                [runs, new], promote_options="permissive")
            history = pa.concat_tables([history, history_table(self._rows_history)],
                                       promote_options="permissive")
        return runs, history

    def _compact(self, runs: pa.Table, history: pa.Table) -> None:
        """Write both tables whole, then remove the journal (its records are in them)."""
        began = time.perf_counter()
        runs, history = runs.combine_chunks(), history.combine_chunks()
        atomic_write_table(history, self.folder / HISTORY_FILE)
        atomic_write_table(runs, self.folder / RUNS_FILE)
        self._journal.clear()
        self._runs, self._history = runs, history
        self._compacted = set(runs["run_id"].to_pylist()) if runs.num_rows else set()
        self._rows, self._rows_history, self._pending, self._dropped = [], [], set(), set()
        self._compacted_at = time.perf_counter()
        self._compact_s = self._compacted_at - began

    def write_configs(self, configs: pd.DataFrame) -> None:
        atomic_write_parquet(configs, self.folder / CONFIGS_FILE)

    def finish(self, configs: pd.DataFrame, manifest: dict[str, Any], *, wall_s: float,
               notes: list[str]) -> None:
        """End the sweep: the tables compacted, the per-configuration table, and the
        manifest with its end."""
        from datetime import UTC, datetime

        if self._rows or self._dropped:
            self._compact(*self._tables())
        self.write_configs(configs)
        manifest.update(finished=datetime.now(UTC).isoformat(timespec="seconds"),
                        wall_s=round(wall_s, 3), notes=list(notes))
        self.write_manifest(manifest)

    def tables(self, order: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``runs`` (in the order of the run ids ``order``, when given) and ``history``."""
        stored, history = self._tables()
        runs = runs_frame(stored.to_pandas())
        if order is not None and not runs.empty:
            rank = {rid: i for i, rid in enumerate(order)}
            runs = runs.sort_values("run_id", key=lambda s: s.map(rank)).reset_index(drop=True)
        return runs, history.to_pandas()


HISTORY_SCHEMA = pa.schema([("run_id", pa.string()), ("epoch", pa.int64()),
                            *((c, pa.float64()) for c in HISTORY_COLUMNS[2:])])


def history_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of ``history`` as an Arrow table with the fixed column types."""
    return pa.Table.from_pylist([{c: r.get(c) for c in HISTORY_COLUMNS} for r in rows],
                                schema=HISTORY_SCHEMA)


def conform_history(table: pa.Table) -> pa.Table:
    """A stored ``history`` table with the fixed columns and types."""
    if table.schema.equals(HISTORY_SCHEMA):
        return table
    n = table.num_rows
    return pa.Table.from_arrays(
        [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(n, f.type)
         for f in HISTORY_SCHEMA], schema=HISTORY_SCHEMA)


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of ``runs`` as an Arrow table: every key of any row a column (first seen
    first), its type inferred from all its values."""
    columns = dict.fromkeys(k for row in rows for k in row)
    return pa.table({c: pa.array([row.get(c) for row in rows]) for c in columns})


def _plain(value: Any) -> Any:
    """A value JSON cannot write, for a journal record: a numpy scalar as its number."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def runs_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with its integer columns as integers."""
    if frame.empty:
        return frame
    for col in ("epochs_run", "best_epoch", "restored_epoch", "tested_epoch", "epochs",
                "batch_size", "seed"):
        if col in frame:
            frame[col] = frame[col].astype("int64")
    return frame


def _read(folder: Path) -> tuple[pa.Table, pa.Table, list[tuple[dict, list[dict]]]]:
    """The stored tables and the journal's records (read first: a compaction meanwhile
    leaves them in the tables); damaged or foreign files are a UsageError."""
    import pyarrow.parquet as pq

    from lrlab.errors import UsageError

    folder = Path(folder)
    try:
        records = [json.loads(line) for line in read_records(folder / JOURNAL_FILE)]
        if not all(isinstance(r, dict) and isinstance(r.get("run"), dict)
                   and "run_id" in r["run"] and isinstance(r.get("history"), list)
                   for r in records):
            raise ValueError(f"{JOURNAL_FILE} holds a record that is not a run")
        runs = pq.read_table(folder / RUNS_FILE).replace_schema_metadata()
        history = (pq.read_table(folder / HISTORY_FILE).replace_schema_metadata()
                   if (folder / HISTORY_FILE).is_file() else history_table([]))
    except (OSError, ValueError, pa.ArrowException) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"{folder} holds damaged results ({first}); re-run the sweep "
                         f"with --fresh") from None
    names = runs.column_names
    missing = [c for c in ("run_id", "key", "verdict") if runs.num_rows and c not in names]
    if missing or (history.num_rows and "run_id" not in history.column_names):
        raise UsageError(f"{folder / RUNS_FILE} is not an lrlab runs table (no "
                         f"{(missing or ['run_id'])[0]} column)")
    return runs, history, [(r["run"], r["history"]) for r in records]


def read_tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored ``runs`` and ``history`` (the tables and the journal's runs since);
    a damaged or foreign file is a UsageError."""
    store = ResultStore(folder)
    store._load()
    stored, stored_history = store._tables()
    runs, history = stored.to_pandas(), stored_history.to_pandas()
    if not runs.empty:
        history = history[history["run_id"].isin(runs["run_id"])].reset_index(drop=True)
    return runs, history


def read_manifest(folder: Path) -> dict[str, Any]:
    """The stored manifest ({} when there is none); a damaged one is a UsageError."""
    from lrlab.errors import UsageError

    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is damaged ({exc}); re-run the sweep with --fresh") \
            from None
    if not isinstance(manifest, dict):
        raise UsageError(f"{path} is damaged (not a JSON object); re-run the sweep with "
                         f"--fresh")
    return manifest


def _changed_parts(was: str, now: str) -> list[str]:
    """The parts of two code records that differ (``model 'mine'``, ``lrlab``)."""
    try:
        old, new = json.loads(was), json.loads(now)
    except ValueError:
        return ["its code record"]
    parts = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return [f"lrlab (version {old.get('lrlab')} -> {new.get('lrlab')})" if p == "lrlab"
            else p for p in parts] or ["its code record"]


def _readable_manifest(folder: Path) -> dict[str, Any]:
    """The stored manifest, or {} when it is missing or damaged (a sweep rewrites it)."""
    from lrlab.errors import UsageError

    try:
        return read_manifest(folder)
    except UsageError:
        return {}


def load_results(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``runs``, ``history`` and the manifest of a stored sweep."""
    from lrlab.errors import UsageError

    folder = Path(folder)
    if not (folder / RUNS_FILE).is_file():
        raise UsageError(f"{folder} holds no sweep results ({RUNS_FILE} is missing)")
    runs, history = read_tables(folder)
    return runs, history, read_manifest(folder)


def best_configuration(runs: pd.DataFrame) -> pd.DataFrame | None:
    """The runs (one per seed) of the best configuration: chosen on validation alone,
    among the configurations that learned (:func:`lrlab.configs.best_config`); None when
    none did. Only then may its test metric be read."""
    from lrlab.configs import best_configuration as best

    return best(runs)
