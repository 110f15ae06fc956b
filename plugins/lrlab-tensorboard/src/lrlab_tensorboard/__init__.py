"""lrlab-tensorboard: each run of a sweep as a TensorBoard run.

When a run ends (``lrlab_run_end``) its history is written, through
``torch.utils.tensorboard.SummaryWriter``, to ``<sweep folder>/tensorboard/<run_id>/``:
the train and validation loss and accuracy and the learning rate at every epoch (epoch 0
is the untrained model), and its HParams (every axis of the run, its final metrics and
its verdict). ``LRLAB_TENSORBOARD_DIR=DIR`` writes to ``DIR/<sweep name>/<run_id>/``
instead.

Everything is written from the finished run's ``result.history`` in the process that
stores the runs, so it is the same on every executor: runs that the ``vectorized``
executor trains together, and runs that ``ray`` trains in its workers. A run's folder is
written aside and moved into place whole; a run trained again replaces its folder, so a
resumed sweep never holds a run's scalars twice. When the sweep ends
(``lrlab_sweep_end``) the folders are checked against the ``runs`` table: a stored run
without a folder (trained before this plugin was installed) or with another verdict
(judged again on resume) is written from the stored tables, and, in the sweep's own
folder, the folder of a run the table no longer holds is removed.

The learning rate is logged once per epoch: the history's ``lr``, the rate the optimizer
used at the epoch's last step. Importing this module is cheap: torch and tensorboard are
imported inside the hooks.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import lrlab

__version__ = "0.1.0"

ENV = "LRLAB_TENSORBOARD_DIR"
FOLDER = "tensorboard"  # inside the sweep's folder
STAMP = "lrlab-run.json"  # beside the event file: what the folder was written from
WRITING, REPLACED = ".writing-", ".replaced-"  # transient folders

# history column -> scalar tag, one point per epoch (the step is the epoch)
SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "lr": "lr",
    "batch_loss": "loss/train_batches_mean",  # training-mode mini-batch losses
    "max_batch_loss": "loss/train_batches_max",
}
# runs column -> HParams metric tag, one point at the run's last epoch. The test split's
# numbers are left out on purpose: lrlab shows a test number only for the configuration
# chosen on validation, never one per run to choose by.
METRICS = {c: f"hparams/{c}" for c in (
    "train_loss", "train_acc", "val_loss", "val_acc", "tested_val_loss", "tested_val_acc",
    "gap_acc", "gl", "best_epoch", "epochs_run")}
VERDICTS = ["ok", "overfit", "underfit", "unstable", "diverged", "error"]

# where the current sweep writes: set by lrlab_sweep_start
_sweep: dict[str, Any] = {}


def logdir(config: Any) -> tuple[Path, bool]:
    """The folder that holds the sweep's TensorBoard runs, and whether it is the sweep's
    own (``<sweep folder>/tensorboard``, which this plugin keeps in step with the runs
    table) rather than ``$LRLAB_TENSORBOARD_DIR/<sweep name>``."""
    given = os.environ.get(ENV, "").strip()
    if given:
        return Path(given).expanduser().absolute() / str(config.name), False
    return Path(config.out_dir).absolute() / FOLDER, True


def folder_name(run_id: str) -> str:
    return str(run_id).replace("/", "_").replace("\\", "_")


def axis_names() -> list[str]:
    """Every axis of a run (``dataset``, ``model``, ..., ``seed``)."""
    return [f.name for f in fields(lrlab.Run) if f.name != "run_id"]


# -- the hooks ---------------------------------------------------------------------------


@lrlab.hookimpl
def lrlab_sweep_start(config, runs):
    root, owned = logdir(config)
    root.mkdir(parents=True, exist_ok=True)
    for leftover in (*root.glob(WRITING + "*"), *root.glob(REPLACED + "*")):
        shutil.rmtree(leftover, ignore_errors=True)  # of a sweep that was killed
    _sweep.update(root=root, owned=owned)


@lrlab.hookimpl
def lrlab_run_end(run, result):
    root = _sweep.get("root")
    if root is None:  # not inside a sweep (no lrlab_sweep_start): nowhere to write
        return
    write_run(root, run.run_id, run.axes(), result.summary, result.history)


@lrlab.hookimpl
def lrlab_sweep_end(config, runs, history):
    root, owned = logdir(config)
    sync(root, runs, history, prune=owned)


# -- writing -----------------------------------------------------------------------------


def write_run(root: Path, run_id: str, axes: dict[str, Any], summary: dict[str, Any],
              history: Iterable[dict[str, Any]]) -> Path:
    """Write one run's scalars and HParams to ``root/<run_id>/`` (replacing what was
    there) and return that folder."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    root.mkdir(parents=True, exist_ok=True)
    rows = sorted((dict(h) for h in history), key=lambda h: int(h["epoch"]))
    fresh = Path(tempfile.mkdtemp(prefix=WRITING, dir=root))
    try:
        writer = SummaryWriter(log_dir=str(fresh))
        try:
            for tag, value, step, walltime in scalar_points(rows):
                writer.add_scalar(tag, value, step, walltime=walltime)
            values = hparam_values(axes, summary)
            metrics = {tag: _plain(summary.get(col)) for col, tag in METRICS.items()}
            domain = {"verdict": sorted({*VERDICTS, values["verdict"]}, key=_verdict_rank)}
            file_writer = writer._get_file_writer()
            for proto in hparams(values, metrics, hparam_domain_discrete=domain):
                file_writer.add_summary(proto)
            last = int(rows[-1]["epoch"]) if rows else 0
            for tag, value in metrics.items():
                if _number(value):
                    writer.add_scalar(tag, value, last)
        finally:
            writer.close()
        (fresh / STAMP).write_text(json.dumps(stamp(run_id, summary), indent=1))
        final = root / folder_name(run_id)
        replace(fresh, final)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    return final


def scalar_points(rows: list[dict[str, Any]]) -> Iterator[tuple[str, float, int, float]]:
    """``(tag, value, epoch, walltime)`` of every history cell this plugin logs; a
    missing or NaN cell (epoch 0 has no mini-batch losses) is left out. The wall times
    are the run's own (its ``wall_s`` before now)."""
    now = time.time()
    spent = [float(h["wall_s"]) for h in rows if _number(h.get("wall_s"))]
    start = now - (max(spent) if spent else 0.0)
    for h in rows:
        wall = float(h["wall_s"]) if _number(h.get("wall_s")) else max(spent or [0.0])
        for col, tag in SCALARS.items():
            value = _plain(h.get(col))
            if _number(value):
                yield tag, float(value), int(h["epoch"]), start + wall


def hparam_values(axes: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The run's HParams: every axis (numbers as numbers, components as their strings),
    then its ``verdict`` and ``cause``."""
    values = {}
    for name, value in axes.items():
        value = _plain(value)
        values[name] = value if isinstance(value, (bool, int, float)) else \
            ("" if value is None else str(value))
    values["verdict"] = str(summary.get("verdict") or "")
    values["cause"] = str(summary.get("cause") or "")
    return values


def stamp(run_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    """What a run's folder was written from: a stored run that differs is written again."""
    return {"run_id": str(run_id), "key": str(summary.get("key") or ""),
            "verdict": str(summary.get("verdict") or ""),
            "cause": str(summary.get("cause") or ""),
            "epochs_run": int(_plain(summary.get("epochs_run")) or 0)}


def read_stamp(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None


def replace(fresh: Path, final: Path) -> None:
    """Move the folder ``fresh`` to ``final``, replacing a folder there: TensorBoard sees
    either the old run or the new one, never both nor half of one."""
    old = None
    if final.exists():
        old = final.with_name(f"{REPLACED}{uuid.uuid4().hex}")
        final.rename(old)
    fresh.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sync(root: Path, runs: Any, history: Any, *, prune: bool) -> None:
    """Bring ``root`` in step with the stored tables: write each run whose folder is
    missing or was written from another verdict, and with ``prune`` remove the folders
    of runs the table does not hold."""
    keep = set()
    if not runs.empty:
        by_run = dict(tuple(history.groupby("run_id", sort=False))) \
            if not history.empty else {}
        axes = axis_names()
        for row in runs.to_dict("records"):
            name = folder_name(row["run_id"])
            keep.add(name)
            if read_stamp(root / name) == stamp(row["run_id"], row):
                continue
            mine = by_run.get(row["run_id"])
            rows = [] if mine is None else mine.drop(columns="run_id").to_dict("records")
            write_run(root, row["run_id"], {a: row[a] for a in axes if a in row}, row, rows)
    if prune and root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and child.name not in keep and not child.name.startswith(".") \
                    and (child / STAMP).is_file():
                shutil.rmtree(child)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        not math.isnan(value)


def _verdict_rank(verdict: str) -> int:
    return VERDICTS.index(verdict) if verdict in VERDICTS else len(VERDICTS)
