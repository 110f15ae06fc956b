"""How many CPU threads a training runs on: one for a small step, else the cores free.

torch gives every process one intra-op thread per core, and its OpenMP threads spin while
they wait for each other. Two sweeps that each take every core of a machine therefore do
not share it, they fight over it: two 16-run digits sweeps started together on 2 cores
took 136 s against 11 s alone. So a training (``threads`` 0, on the CPU) runs on

- one thread when a step is small (under :data:`SMALL_STEP` multiply-adds: per-step
  overhead bound, a second thread only adds synchronisation), else
- the cores free for it, at most torch's own setting: the cores this process may run on
  (``os.sched_getaffinity``, a cgroup's CPU quota), shared evenly among the lrlab
  processes training on this machine now (each keeps a file fresh in
  ``<tempdir>/lrlab-training-<uid>/`` while it trains: an advisory count), less the cores
  that other work kept busy over the last second or so (``/proc/stat`` less this
  process's own CPU time). At least one.

The choice is made again at most once a :data:`REFRESH_S`, so a sweep gives cores back
within a second of another starting, and takes them again when it ends.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import tempfile
import time
from pathlib import Path

import torch

__all__ = ["SMALL_STEP", "choose", "cores_for_training", "free_cores", "training_processes",
           "usable_cores"]

# Below this many multiply-adds per training step (parameters x batch size), a CPU run is
# bound by per-step overhead, and a second intra-op thread only adds synchronisation: on
# 2 cores the default digits sweep runs 2x faster on one thread.
SMALL_STEP = 4_000_000
REFRESH_S = 1.0  # seconds a choice is kept
FRESH_S = 10.0  # a training process's file younger than this counts
FIRST_WINDOW_S = 0.1  # the first look at how busy the cores are

_state: dict = {}  # the last choice, the last look at /proc/stat, our own file


def choose(model: torch.nn.Module, batch_size: int, device: torch.device,
           threads: int) -> int:
    """The thread count for training ``model`` at ``batch_size`` (``threads`` > 0: that)."""
    cap = torch.get_num_threads()
    if device.type != "cpu":
        return cap
    _heartbeat()
    if threads > 0:
        return threads
    size = batch_size * sum(p.numel() for p in model.parameters()
                            if not torch.nn.parameter.is_lazy(p))
    if size < SMALL_STEP or cap <= 1:
        return 1
    now = time.monotonic()
    chosen = _state.get("chosen")
    if chosen is None or now - chosen[0] >= REFRESH_S:
        chosen = _state["chosen"] = (now, cores_for_training())
    return min(cap, chosen[1])


def cores_for_training() -> int:
    """The cores free for this process to train on now (at least one)."""
    cores = usable_cores()
    share = max(1, cores // training_processes())
    return max(1, min(share, round(free_cores(cores))))


def usable_cores() -> int:
    """The cores this process may run on: its affinity, capped by a cgroup's quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    return cores


def free_cores(cores: int) -> float:
    """``cores`` less the cores that other processes kept busy since the last look (a
    first look, or one after a long pause, waits :data:`FIRST_WINDOW_S`); ``cores`` where
    /proc/stat cannot be read."""
    before = _state.get("look")
    if before is None or time.monotonic() - before[0] > 10 * REFRESH_S:
        before = _look()  # none, or too old to tell what is busy now
    if before is None:
        return float(cores)
    if time.monotonic() - before[0] < FIRST_WINDOW_S / 2:
        time.sleep(FIRST_WINDOW_S)
    now = _look()
    if now is None:
        return float(cores)
    _state["look"] = now
    seconds = now[0] - before[0]
    others = (now[1] - before[1] - (now[2] - before[2])) / seconds  # busy cores, not ours
    return min(float(cores), max(0.0, cores - others))


def _look() -> tuple[float, float, float] | None:
    """(time, CPU seconds busy on our cores, CPU seconds of this process), or None."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
        mine = os.sched_getaffinity(0)
    except (OSError, AttributeError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in mine:
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            busy += sum(ticks) - ticks[3] - ticks[4]
    return time.monotonic(), busy / hz, time.process_time()


def _folder() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"lrlab-training-{uid}"


def _heartbeat() -> None:
    """Keep this process's file in the training folder fresh (once a second at most)."""
    now = time.monotonic()
    if now - _state.get("beat", -math.inf) < REFRESH_S:
        return
    _state["beat"] = now
    path = _folder() / str(os.getpid())
    try:
        path.parent.mkdir(exist_ok=True)
        path.touch()
    except OSError:
        return  # advisory: a read-only temp folder only loses the count
    if _state.get("file") != path:
        _state["file"] = path
        atexit.register(_forget, path)


def _forget(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def training_processes() -> int:
    """The lrlab processes training on this machine now (this one included), by their
    fresh files; stale ones (a killed process's) are removed."""
    count = 0
    now = time.time()
    try:
        entries = list(os.scandir(_folder()))
    except OSError:
        return 1
    for entry in entries:
        try:
            age = now - entry.stat().st_mtime
        except OSError:
            continue
        if age < FRESH_S:
            count += 1
        elif age > 10 * FRESH_S:
            _forget(Path(entry.path))
    return max(1, count)
