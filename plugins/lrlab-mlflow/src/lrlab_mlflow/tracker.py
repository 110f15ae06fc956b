"""The MLflow side of lrlab-mlflow: one parent run per sweep folder, a nested run per
lrlab run, found again by tags so that a resumed sweep never logs a run twice.

Imported only from inside the plugin's hooks (it imports mlflow when a tracker opens).

The invariant every hook keeps: the *active* nested runs of a folder's parent mirror the
folder's ``runs`` table, one nested run per lrlab ``run_id``. A run trained again (its
code changed, it had failed, ``--fresh``) gets a new nested run and the old one is
deleted (MLflow's soft delete: restorable, purged by ``mlflow gc``), since MLflow cannot
rewrite a metric history in place.
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lrlab

# tags that identify lrlab's runs in the tracking store
ROLE = "lrlab.role"  # "sweep" on a parent, "run" on a nested run
FOLDER = "lrlab.folder"  # the sweep folder, absolute (for people)
FOLDER_ID = "lrlab.folder_id"  # a digest of it (for searches: no quoting trouble)
RUN_ID = "lrlab.run_id"
KEY = "lrlab.key"
PARENT = "mlflow.parentRunId"  # MLflow's own nesting tag
# the runs-table columns shown as tags of a nested run
VERDICT_TAGS = ("verdict", "cause", "flags")
# the folder's files logged as artifacts of the parent
TABLES = ("runs.parquet", "history.parquet", "configs.parquet", "manifest.json")
REPORT = "index.html"

DB_FILE = "mlflow.db"  # the default store, inside the sweep folder
ARTIFACTS_DIR = "mlartifacts"  # ... and its artifacts

# MLflow's limits (mlflow.utils.validation), kept below
MAX_TAG = 5000
MAX_PARAM = 6000
METRICS_PER_BATCH = 1000
TAGS_PER_BATCH = 100


def default_uri(folder: Path) -> str:
    """The local store of a sweep folder: ``sqlite:////abs/folder/mlflow.db``."""
    return f"sqlite:///{Path(folder).resolve() / DB_FILE}"


def tracking_uri(folder: Path) -> str:
    """Where a sweep is logged: ``MLFLOW_TRACKING_URI`` when set (MLflow's own variable: a
    server ``http://host:5000``, ``databricks``, another database), else the SQLite file
    ``mlflow.db`` inside the sweep folder."""
    return os.environ.get("MLFLOW_TRACKING_URI", "").strip() or default_uri(folder)


def experiment_name(sweep_name: str) -> str:
    """``MLFLOW_EXPERIMENT_NAME`` when set, else the sweep's name."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME", "").strip() or sweep_name


def folder_id(folder: Path) -> str:
    return hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()[:16]


def shown_uri(uri: str) -> str:
    """``uri`` without a password (``https://user:pw@host`` -> ``https://user@host``)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def scrub(text: str) -> str:
    """``text`` with the password of every URL in it left out."""
    import re

    return re.sub(r"(//[^/@:\s]+):[^/@\s]*@", r"\1@", text)


def import_mlflow() -> Any:
    """mlflow, or one line saying how to get it."""
    try:
        import mlflow
    except ImportError as exc:
        raise lrlab.UsageError(
            f"lrlab-mlflow: mlflow cannot be imported ({exc}); install it with 'pip install "
            f"mlflow', or run without this plugin: -p no:lrlab-mlflow") from None
    return mlflow


@contextmanager
def quiet_store_setup() -> Iterator[None]:
    """Without MLflow's INFO lines about creating a new SQLite store's tables."""
    loggers = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def axes_names() -> list[str]:
    """The axes of lrlab's grid (the fields of :class:`lrlab.Run` after ``run_id``)."""
    import dataclasses

    return [f.name for f in dataclasses.fields(lrlab.Run) if f.name != "run_id"]


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if type(value).__name__ == "bool_":  # numpy's bool
        return None
    return float(value)


def _text(value: Any, limit: int) -> str:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class Tracker:
    """A sweep folder's runs in one MLflow tracking store."""

    def __init__(self, folder: Path, sweep_name: str, *, create: bool = True) -> None:
        import_mlflow()
        from mlflow.tracking import MlflowClient

        self.folder = Path(folder).resolve()
        self.uri = tracking_uri(self.folder)
        self.local = self.uri == default_uri(self.folder)
        self.folder_id = folder_id(self.folder)
        self.experiment_name = experiment_name(sweep_name)
        self.parent: str | None = None
        self.experiment_id: str | None = None
        self.kids: dict[str, list[Any]] = {}  # lrlab run_id -> its active nested runs
        if not create and self.local and not (self.folder / DB_FILE).is_file():
            self.client = None  # nothing was ever logged here: do not create a store
            return
        with quiet_store_setup():
            self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self._experiment(create)

    # -- the experiment and the parent ---------------------------------------------------

    def _experiment(self, create: bool) -> str | None:
        client = self.client
        found = client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                if not create:
                    return None
                client.restore_experiment(found.experiment_id)
            return found.experiment_id
        if not create:
            return None
        location = (self.folder / ARTIFACTS_DIR).as_uri() if self.local else None
        return client.create_experiment(self.experiment_name, artifact_location=location)

    def find_parent(self) -> str | None:
        """The parent run of this folder, if one was logged (the oldest, if several)."""
        if self.experiment_id is None:
            return None
        runs = self._search(f"tags.`{FOLDER_ID}` = '{self.folder_id}' and "
                            f"tags.`{ROLE}` = 'sweep'")
        runs.sort(key=lambda r: r.info.start_time or 0)
        self.parent = runs[0].info.run_id if runs else None
        return self.parent

    def open_parent(self, config: Any) -> str:
        """Find this folder's parent run, or create it; mark it running; tag it with the
        sweep's settings (tags, not params: a resumed sweep may change a setting)."""
        from mlflow.entities import RunTag

        client = self.client
        if self.find_parent() is None:
            self.parent = client.create_run(
                self.experiment_id, run_name=config.name,
                tags={ROLE: "sweep", FOLDER: str(self.folder), FOLDER_ID: self.folder_id},
            ).info.run_id
        else:
            client.update_run(self.parent, status="RUNNING")
        settings = config.to_dict()
        grid = settings.pop("grid", {})
        tags = {"lrlab.sweep": config.name, "lrlab.version": lrlab.__version__,
                "lrlab.command_line": config.command_line,
                **{f"lrlab.grid.{k}": v for k, v in grid.items()},
                **{f"lrlab.setting.{k}": v for k, v in settings.items() if k != "name"}}
        tags = [RunTag(k, _text(v, MAX_TAG)) for k, v in tags.items()]
        for chunk in _chunks(tags, TAGS_PER_BATCH):
            client.log_batch(self.parent, tags=chunk)
        return self.parent

    # -- the nested runs -----------------------------------------------------------------

    def _search(self, filter_string: str) -> list[Any]:
        from mlflow.entities import ViewType

        out, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string,
                                           run_view_type=ViewType.ACTIVE_ONLY,
                                           max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def load_children(self) -> dict[str, list[Any]]:
        """The active nested runs of the parent, by lrlab run id (newest first). One
        still ``RUNNING`` is one whose logging broke off (:meth:`log_run` ends each run
        last): it is deleted, to be logged again."""
        kids: dict[str, list[Any]] = {}
        for run in self._search(f"tags.`{PARENT}` = '{self.parent}'"):
            if run.info.status == "RUNNING":
                self.client.delete_run(run.info.run_id)
                continue
            kids.setdefault(run.data.tags.get(RUN_ID, ""), []).append(run)
        for runs in kids.values():
            runs.sort(key=lambda r: r.info.start_time or 0, reverse=True)
        self.kids = kids
        return kids

    def delete(self, run_id: str) -> None:
        """Delete the nested runs of lrlab run ``run_id`` (soft: MLflow can restore them)."""
        for run in self.kids.pop(run_id, []):
            self.client.delete_run(run.info.run_id)

    def mirror(self, stored: set[str], todo: set[str]) -> None:
        """At a sweep's start: delete the nested runs of every lrlab run the folder no
        longer holds (``--fresh``, a run whose code changed) or is about to train again,
        and any duplicates."""
        for rid, runs in list(self.load_children().items()):
            if rid in todo or rid not in stored:
                self.delete(rid)
            else:
                for extra in runs[1:]:
                    self.client.delete_run(extra.info.run_id)
                self.kids[rid] = runs[:1]

    def log_run(self, summary: dict[str, Any], history: list[dict[str, Any]],
                axes: dict[str, Any]) -> str:
        """One nested run: the axes as params, each history column as a metric per epoch
        (``step`` = epoch), the other numbers of the runs row as metrics, the verdict,
        cause and flags as tags; replaces any nested run of the same lrlab run."""
        from mlflow.entities import Metric, Param

        client, rid = self.client, str(summary["run_id"])
        self.delete(rid)
        end = int(time.time() * 1000)
        wall = _number(summary.get("wall_s")) or 0.0
        tags = {PARENT: self.parent, ROLE: "run", RUN_ID: rid, FOLDER: str(self.folder),
                FOLDER_ID: self.folder_id, KEY: summary.get("key") or "",
                **{t: summary.get(t) for t in VERDICT_TAGS},
                "stopped_by": summary.get("stopped_by"), "device": summary.get("device")}
        if summary.get("error"):
            tags["error"] = str(summary["error"])[-MAX_TAG:]
        run = client.create_run(self.experiment_id, start_time=end - int(wall * 1000),
                                run_name=rid,
                                tags={k: _text(v, MAX_TAG) for k, v in tags.items()})
        mid = run.info.run_id
        params = [Param(k, _text(v, MAX_PARAM)) for k, v in axes.items()]
        metrics = []
        columns: set[str] = set()
        for row in history:
            step = int(row["epoch"])
            for col, value in row.items():
                number = _number(value)
                if col in ("run_id", "epoch") or number is None:
                    continue
                columns.add(col)
                metrics.append(Metric(col, number, end, step))
        for col, value in summary.items():  # test_acc, best_val_loss, gl, epochs_run ...
            number = _number(value)
            if number is not None and col not in axes and col not in columns \
                    and col != "wall_s":  # the run's duration is its start and end time
                metrics.append(Metric(col, number, end, 0))
        for chunk in _chunks(params, TAGS_PER_BATCH):
            client.log_batch(mid, params=chunk)
        for chunk in _chunks(metrics, METRICS_PER_BATCH):
            client.log_batch(mid, metrics=chunk)
        # last: a nested run still RUNNING is one whose logging broke off
        client.set_terminated(mid, "FAILED" if summary.get("error") else "FINISHED", end)
        self.kids[rid] = [client.get_run(mid)]
        return mid

    def update_tags(self, summary: dict[str, Any]) -> None:
        """The verdict, cause and flags of a nested run, as the runs table has them now
        (a resumed sweep judges its stored runs again)."""
        run = self.kids[str(summary["run_id"])][0]
        for tag in VERDICT_TAGS:
            value = _text(summary.get(tag), MAX_TAG)
            if run.data.tags.get(tag, "") != value:
                self.client.set_tag(run.info.run_id, tag, value)

    def reconcile(self, runs: Any, history: Any) -> None:
        """At a sweep's end: make the nested runs mirror the runs table. A run missing in
        MLflow (trained before the plugin was installed, or its logging failed) is logged
        from the tables; the others get their current verdict tags; a nested run of a run
        the table does not hold is deleted."""
        self.load_children()
        axes = axes_names()
        by_run: dict[str, list[dict[str, Any]]] = {}
        if not history.empty:
            for row in history.to_dict("records"):
                by_run.setdefault(str(row["run_id"]), []).append(row)
        held = set()
        for row in runs.to_dict("records") if not runs.empty else []:
            rid = str(row["run_id"])
            held.add(rid)
            kids = self.kids.get(rid, [])
            for extra in kids[1:]:
                self.client.delete_run(extra.info.run_id)
            if not kids:
                self.log_run(row, by_run.get(rid, []),
                             {a: row[a] for a in axes if a in row})
            else:
                self.kids[rid] = kids[:1]
                self.update_tags(row)
        for rid in [r for r in self.kids if r not in held]:
            self.delete(rid)

    def finish(self, runs: Any) -> None:
        """The folder's tables as the parent's artifacts, its verdict counts as tags, and
        the parent marked finished."""
        for name in TABLES:
            if (self.folder / name).is_file():
                self.client.log_artifact(self.parent, str(self.folder / name))
        counts = runs["verdict"].value_counts() if not runs.empty else {}
        self.client.set_tag(self.parent, "lrlab.runs", str(len(runs)))
        self.client.set_tag(self.parent, "verdicts",
                            ", ".join(f"{n} {v}" for v, n in counts.items()) or "none")
        self.client.set_terminated(self.parent, "FINISHED")

    def log_report(self, path: Path) -> None:
        self.client.log_artifact(self.parent, str(path))

    def ui_link(self) -> str | None:
        """The parent run's page, for a tracking server reached over HTTP."""
        if not self.uri.startswith(("http://", "https://")):
            return None
        return (f"{shown_uri(self.uri).rstrip('/')}/#/experiments/{self.experiment_id}"
                f"/runs/{self.parent}")
