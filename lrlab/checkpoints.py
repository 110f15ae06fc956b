"""Checkpoints of runs in flight: a kill loses at most the work since the last one.

A sweep keeps them in ``<sweep folder>/.checkpoints/``, one file per run, named by the
run's resume key (``<key>.pt``). An executor asks :meth:`CheckpointStore.due` at an epoch
boundary and saves when it says so: at most once every ``checkpoint_s`` seconds per run
(or group), the clock starting when the run (or group) starts, so a run shorter than
that writes nothing; ``checkpoint_s = 0`` saves after every epoch. The folder is created
by the first save. When a finished run is stored, the sweep driver removes its
checkpoint (:meth:`CheckpointStore.remove`), and the folder goes with its last file.

A save is atomic (:func:`lrlab.storage.atomic_write`): ``torch.save`` to a temporary
file of this process (``.<key>.pt.<pid>.<thread>.tmp``), flushed and fsynced, then
``os.replace``-d into place, so a kill mid-save leaves the previous checkpoint whole (and
at worst a temporary file, which :meth:`CheckpointStore.remove` takes away). A file that cannot be read back (cut
short, damaged, written by another version) loads as ``None``: that run trains from
scratch. The files are pickles (``torch.load(weights_only=False)``), as trusted as the
rest of the results folder.

What is in a file is the executor's business (:mod:`lrlab.engine` for the local executor,
:mod:`lrlab.vectorized.trainer` for a vectorized group); each starts with a small
``header`` (``format``, ``device``, ``epoch`` ...) that :meth:`CheckpointStore.peek`
reads without loading the tensors. The helpers here save and restore what both need:
a stopper's state (:func:`object_state`) and the global random state (:func:`rng_state`).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from lrlab.storage import atomic_write

SUFFIX = ".pt"


class CheckpointStore:
    """The checkpoints of a sweep's runs in flight, in ``folder``, saved at most once per
    ``every_s`` seconds per key (0: whenever asked)."""

    def __init__(self, folder: Path, every_s: float,
                 on_problem: Callable[[str], None] | None = None) -> None:
        self.folder = Path(folder)
        self.every_s = float(every_s)
        self.on_problem = on_problem  # told (once per key) when a save fails
        self._last: dict[str, float] = {}  # key -> when its clock last started
        self.failed: dict[str, str] = {}  # key -> why its save failed (no more tries)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{SUFFIX}"

    # -- when --------------------------------------------------------------------------

    def begin(self, key: str) -> None:
        """Start the clock of ``key``: its first save is due ``every_s`` from now."""
        self._last[key] = time.monotonic()

    def due(self, key: str) -> bool:
        """Whether a save of ``key`` is due now: ``every_s`` seconds after its last save
        (or after :meth:`begin`, or after the first question when it had no clock)."""
        if key in self.failed:
            return False
        if self.every_s <= 0:
            return True
        now = time.monotonic()
        last = self._last.setdefault(key, now)
        return now - last >= self.every_s

    # -- writing -----------------------------------------------------------------------

    def save(self, key: str, state: dict[str, Any]) -> None:
        """Write ``state`` as the checkpoint of ``key``, atomically (an exception leaves the
        previous checkpoint, if any, in place and no temporary file behind; a failed write
        is a :class:`lrlab.storage.StorageError`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path(key), lambda fh: torch.save(state, fh))
        self._last[key] = time.monotonic()

    def save_if_due(self, key: str, make_state: Callable[[], dict[str, Any]]) -> bool:
        """Save ``make_state()`` as ``key``'s checkpoint when a save is due; True if saved.

        A failure (a stopper that cannot be pickled, a full disk) is said once through
        ``on_problem`` and ends the checkpoints of ``key``: the run trains on without."""
        return self.save_all_if_due(key, lambda: [(key, make_state())])

    def save_all_if_due(self, clock: str,
                        make_states: Callable[[], Iterable[tuple[str, dict[str, Any]]]]) -> bool:
        """:meth:`save_if_due` for several checkpoints on one clock (a group's members):
        when ``clock`` is due, save each ``(key, state)`` that ``make_states()`` yields."""
        if not self.due(clock):
            return False
        try:
            for key, state in make_states():
                self.save(key, state)
        except Exception as exc:
            self.failed[clock] = f"{type(exc).__name__}: {exc}"
            if self.on_problem is not None:
                self.on_problem(f"checkpoints: a run in flight could not be checkpointed "
                                f"({self.failed[clock]}); it trains on without")
            return False
        self._last[clock] = time.monotonic()
        return True

    def remove(self, key: str) -> None:
        """Forget ``key``: its checkpoint, a temporary file a kill left, its clock. The
        folder goes when it is left empty."""
        self._last.pop(key, None)
        self.failed.pop(key, None)
        if not self.folder.is_dir():
            return
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()
        for tmp in self.folder.glob(f".{key}{SUFFIX}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        with contextlib.suppress(OSError):  # not empty, or gone
            self.folder.rmdir()

    def clear(self) -> None:
        """Remove every checkpoint (a sweep started over)."""
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                with contextlib.suppress(OSError):
                    path.unlink()
            with contextlib.suppress(OSError):
                self.folder.rmdir()
        self._last.clear()
        self.failed.clear()

    # -- reading -----------------------------------------------------------------------

    def load(self, key: str, map_location: Any = None) -> dict[str, Any] | None:
        """The checkpoint of ``key``, or None when there is none or it cannot be read."""
        return self._read(key, map_location, mmap=False)

    def peek(self, key: str) -> dict[str, Any] | None:
        """The ``header`` of ``key``'s checkpoint (None: no readable one), its tensors left
        on disk (memory-mapped, never read)."""
        state = self._read(key, "cpu", mmap=True)
        header = state.get("header") if state is not None else None
        return dict(header) if isinstance(header, dict) else None

    def _read(self, key: str, map_location: Any, mmap: bool) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location=map_location, weights_only=False,
                               mmap=mmap)
        except Exception:  # cut short, damaged, or not ours: train from scratch
            return None
        return state if isinstance(state, dict) else None


# -- what every executor saves ----------------------------------------------------------


def object_state(obj: Any) -> dict[str, Any]:
    """The state of a stopper (or any small stateful object) to restore it later: its
    ``state_dict()`` when it has one, else a copy of its attributes, else the object
    itself (pickled with the checkpoint)."""
    if callable(getattr(obj, "state_dict", None)) and \
            callable(getattr(obj, "load_state_dict", None)):
        return {"state_dict": copy.deepcopy(obj.state_dict())}
    if hasattr(obj, "__dict__"):
        return {"vars": copy.deepcopy(vars(obj))}
    return {"object": copy.deepcopy(obj)}


def restore_object(obj: Any, state: dict[str, Any]) -> Any:
    """``obj`` (or its replacement) with the ``state`` of :func:`object_state` restored."""
    if "state_dict" in state:
        obj.load_state_dict(copy.deepcopy(state["state_dict"]))
        return obj
    if "vars" in state:
        vars(obj).update(copy.deepcopy(state["vars"]))
        return obj
    return copy.deepcopy(state["object"])


def rng_state(device: torch.device) -> tuple[torch.Tensor, ...]:
    """The global random state(s) augmentation and dropout on ``device`` draw from."""
    if device.type == "cuda":
        return torch.get_rng_state(), torch.cuda.get_rng_state(device)
    return (torch.get_rng_state(),)


def set_rng_state(state: tuple[torch.Tensor, ...], device: torch.device) -> None:
    """Restore what :func:`rng_state` gave."""
    torch.set_rng_state(state[0].cpu())
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[1].cpu(), device)
