"""The executor contract, and the context every executor trains its runs with.

An executor is anything with ``run(runs, context) -> Iterator[RunResult]``: it trains
the runs in any order or all at once, and yields each result as it finishes. The
context gives it the data (loaded once, on the device), the components, the lifecycle
hooks and :meth:`Context.train_one`, which trains one run exactly as the local executor
does and turns any exception into an ``error`` result. The sweep driver stores each
result, judges it and calls ``lrlab_run_end``; an executor never has to.
An executor that cannot train a streamed dataset (:class:`lrlab.data.StreamingData`,
data too big for memory) says why in a ``cannot_stream`` attribute: a sweep on one is
then refused when the data is loaded, before anything is written.

``Context.checkpoints`` (:class:`lrlab.checkpoints.CheckpointStore`, in
``<sweep folder>/.checkpoints/``, saving every ``checkpoint_s`` seconds) is where an
executor keeps its runs in flight; the driver removes a run's checkpoint once the run is
stored. :meth:`Context.train_one` continues a run from its checkpoint. A Context built
without one (``checkpoints=None``) checkpoints nothing. The Ray plugin's workers build
their Context from the sweep's config like the driver, so they checkpoint too: into the
``out`` folder as the worker's working folder resolves it, under the worker's run key
(which names the data root by its absolute path). A task Ray retries on that machine
continues from there; but only when ``--out`` and ``--data-root`` are absolute (and the
folder shared) are they the driver's files, removed once the run is stored.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from lrlab.checkpoints import CheckpointStore
from lrlab.config import COMPONENT_AXES, Run, SweepConfig, run_key
from lrlab.data import Split, StreamingData, check_finite, stratified_split
from lrlab.engine import train
from lrlab.errors import UsageError
from lrlab.plugins import Plugins
from lrlab.registry import Spec
from lrlab.results import RunResult, summarize
from lrlab.settings import TrainSettings, train_settings


class Executor(Protocol):
    def run(self, runs: list[Run], context: Context) -> Iterator[RunResult]:
        ...


FROM_CONFIG: Any = "from the config"  # Context(checkpoints=...) left out


def checkpoint_store(config: SweepConfig, on_problem=None) -> CheckpointStore:
    """The store of a sweep's checkpoints: ``.checkpoints/`` in its folder, saving every
    ``checkpoint_s`` seconds."""
    return CheckpointStore(config.out_dir / ".checkpoints",
                           float(getattr(config, "checkpoint_s", 30)), on_problem)


@dataclass
class Context:
    """What an executor needs to train runs; one per sweep."""

    config: SweepConfig
    plugins: Plugins
    device: torch.device
    stop_requested: bool = False  # set by the driver under -x after an error
    _data: dict[tuple[str, int], Split] = field(default_factory=dict)  # (dataset, split seed)
    _raw: dict[str, Any] = field(default_factory=dict)  # each dataset as it was loaded
    notes: list[str] = field(default_factory=list)  # said once to the user at the end
    # where runs in flight are checkpointed; by default the sweep's .checkpoints folder
    checkpoints: CheckpointStore | None = field(default=FROM_CONFIG)  # type: ignore[assignment]
    resumed: list[str] = field(default_factory=list)  # run ids continued from a checkpoint

    def __post_init__(self) -> None:
        if self.checkpoints is FROM_CONFIG:
            self.checkpoints = checkpoint_store(self.config, self.note)

    @property
    def registry(self):
        return self.plugins.registry

    @property
    def settings(self) -> TrainSettings:
        """How each run is trained: the device and the sweep's training settings."""
        return train_settings(self.config.values, self.device)

    def run_key(self, run: Run) -> str:
        """The run's resume key (what the store skips on a re-run)."""
        return run_key(run, self.config)

    def code_record(self, run: Run) -> str:
        """What decides the run's numbers besides its settings (lrlab's version, each
        component's code; what the sweep records per stored run): a checkpoint saved
        under another is not continued."""
        from lrlab.version import __version__

        parts = {"lrlab": __version__}
        for axis, kind in COMPONENT_AXES.items():
            value = getattr(run, axis)
            for spec in value if axis == "augment" else (value,):
                if kind == "augmentation" and spec.name == "none":
                    continue
                parts[f"{kind} '{spec.name}'"] = self.plugins.code_version(kind, spec.name)
        return json.dumps(parts, sort_keys=True)

    def data(self, run: Run) -> Split:
        """The run's dataset, split by its split seed and on the device."""
        return self.dataset(run.dataset, run.split_seed)

    def dataset(self, spec: Spec, split_seed: int | None = None) -> Split:
        """A dataset by its spec, split by ``split_seed`` (the sweep's first when not
        given) and on the device. Each dataset is loaded once per sweep, each split made
        once."""
        if split_seed is None:
            split_seed = self.config.grid["split_seed"][0]
        name = str(spec)
        if (name, split_seed) not in self._data:
            raw = self._raw.get(name)
            if raw is None:
                comp = self.registry.check("dataset", spec)
                if self.config.download and "download" in comp.params:
                    spec = Spec(spec.name,
                                tuple(sorted({**spec.kwargs, "download": True}.items())))
                raw = self.registry.build("dataset", spec, self.config.data_root)
                check_finite(raw, name)  # NaN features: one line now, not a sweep of diverged runs
                if isinstance(raw, StreamingData):
                    self.check_streaming(name)
                if len(self.config.grid.get("split_seed", ())) > 1:
                    self._raw[name] = raw  # kept to make its other splits
            split = stratified_split(raw, self.config.split, split_seed)
            self._data[name, split_seed] = split.to(self.device)
        return self._data[name, split_seed]

    def check_streaming(self, name: str) -> None:
        """Refuse a streamed dataset (too big for memory, or ``stream=true``) under an
        executor that cannot stream: one with a ``cannot_stream`` reason (one line, exit 2,
        before anything is written)."""
        executor = self.registry.build("executor", self.config.executor)
        reason = getattr(executor, "cannot_stream", None)
        if reason:
            raise UsageError(f"dataset '{name}' is streamed from disk (too big for memory, "
                             f"or stream=true), and executor '{self.config.executor}' "
                             f"{reason}: use --executor local or auto")

    def split_sizes(self) -> dict[str, dict[str, int]]:
        """Each loaded dataset's train, val and test sizes (every split seed's alike)."""
        return {name: dict(zip(("train", "val", "test"), split.sizes(), strict=True))
                for (name, _), split in self._data.items()}

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # lifecycle hooks, as executors call them

    def run_start(self, run: Run) -> None:
        self.plugins.call("lrlab_run_start", run=run)

    def epoch_end(self, run: Run, epoch: int, metrics: dict[str, float]) -> bool:
        answers = self.plugins.call("lrlab_epoch_end", run=run, epoch=epoch,
                                    metrics=dict(metrics))
        return any(bool(a) for a in answers)

    def result(self, run: Run, trained: Any = None, *, wall_s: float = 0.0,
               error: str = "") -> RunResult:
        """Package a run's outcome (``trained`` from :func:`lrlab.engine.train`): its row,
        its history and, unless the sweep saves none (``--save none``), the weights its
        test split was scored on (``trained.state_dict``, as ``RunResult.weights``)."""
        loaded = self._data.get((str(run.dataset), run.split_seed))
        data_classes = len(loaded.classes) if loaded is not None else 0
        history = trained.history if trained is not None else []
        summary = summarize(
            run, history,
            test_loss=trained.test_loss if trained else float("nan"),
            test_acc=trained.test_acc if trained else float("nan"),
            restored_epoch=trained.restored_epoch if trained else None,
            stopped_by=trained.stopped_by if trained else None,
            num_classes=data_classes, wall_s=wall_s, device=str(self.device), error=error,
            key=self.run_key(run))
        if trained is not None and getattr(trained, "resumed_epoch", None) is not None:
            self._count_resumed(run)
        # the tested weights travel with the result (the trainers keep none under --save none)
        weights = getattr(trained, "state_dict", None) if trained is not None else None
        return RunResult(run, summary, history, weights=weights)

    def _count_resumed(self, run: Run) -> None:
        """One note, kept up to date: how many runs continued from a checkpoint."""
        def text() -> str:
            return (f"checkpoints: {len(self.resumed)} run(s) continued from the "
                    f"checkpoint a stopped sweep left")

        old = text() if self.resumed else None
        self.resumed.append(run.run_id)
        if old in self.notes:
            self.notes[self.notes.index(old)] = text()
        else:
            self.note(text())

    def train_one(self, run: Run, started: bool = False) -> RunResult:
        """Train one run here and now (from its checkpoint, if it has one); an exception
        becomes an ``error`` result.

        ``started``: ``lrlab_run_start`` already fired for this run (an executor that
        tried it another way first and now retrains it here), so it does not fire again.
        """
        start = time.perf_counter()
        try:
            data = self.data(run)
            if not started:
                self.run_start(run)
            trained = train(run, data, self.registry, self.settings, self.epoch_end,
                            checkpoints=self.checkpoints, key=self.run_key(run),
                            code=self.code_record(run) if self.checkpoints is not None
                            else "")
        except Exception:
            return self.result(run, wall_s=time.perf_counter() - start,
                               error=traceback.format_exc())
        # the wall time of a resumed run counts what it used before it was stopped
        return self.result(run, trained, wall_s=time.perf_counter() - start
                           + getattr(trained, "resumed_wall_s", 0.0))


def one_by_one(runs: list[Run], context: Context, started: bool = False) -> Iterator[RunResult]:
    """Train ``runs`` one after another here (what the ``local`` executor does), stopping
    when ``-x`` asks; ``started`` as in :meth:`Context.train_one`."""
    for run in runs:
        if context.stop_requested:
            return
        yield context.train_one(run, started=started)
