"""The worker side of the ``ray`` executor: rebuild the driver's plugin host, train one run.

A Ray worker is another Python process (maybe on another machine), so it cannot share the
driver's plugin manager. The driver describes its host in a :class:`HostSpec` (which
``-p`` modules, which local ``lrlab_plugins.py`` files, which plugins were blocked, which
entry points were loaded) and each worker rebuilds it with
:func:`lrlab.plugins.load_plugins`, once per sweep and worker process.

Nothing here imports Ray: this module runs inside a Ray task, and the task is a plain
function.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from lrlab.config import Run, SweepConfig
from lrlab.executors import Context
from lrlab.plugins import ENTRY_POINT_GROUP, LOCAL_PLUGIN_FILE, Plugins, load_plugins
from lrlab.results import RunResult


@dataclass(frozen=True)
class LocalFile:
    """A ``lrlab_plugins.py`` the driver loaded: its folder and its source text."""

    folder: str
    source: str


@dataclass(frozen=True)
class HostSpec:
    """How a worker rebuilds the driver's plugin host (small, picklable)."""

    modules: tuple[str, ...] = ()  # ``-p`` modules, in load order
    local_files: tuple[LocalFile, ...] = ()  # local plugin files, in load order
    blocked: tuple[str, ...] = ()  # names the driver blocked (``-p no:NAME``)
    # names of the entry points the driver loaded; None when it loaded none at all
    entry_points: tuple[str, ...] | None = None
    skipped: tuple[str, ...] = ()  # API plugin objects that stay in the driver


def host_spec(host: Plugins) -> HostSpec:
    """Describe the driver's loaded plugins so that a worker can load the same ones."""
    modules, files, eps, skipped = [], [], [], []
    for info in host.info.values():
        if info.source == "-p":
            modules.append(info.name)
        elif info.source == "local file":
            path = Path(info.where)
            files.append(LocalFile(str(path.parent), path.read_text(encoding="utf-8")))
        elif info.source == "entry point":
            eps.append(info.name)
        elif info.source == "api":
            skipped.append(info.name)
    blocked = tuple(name for name, plugin in host.pm.list_name_plugin() if plugin is None)
    return HostSpec(tuple(modules), tuple(files), blocked, tuple(eps) if eps else None,
                    tuple(skipped))


def _local_folder(file: LocalFile) -> Path:
    """The folder to load a local plugin file from, on this machine.

    The driver's folder when it holds the same file (a local cluster, a shared disk);
    otherwise a private folder the source is written to (a node of a remote cluster).
    """
    here = Path(file.folder) / LOCAL_PLUGIN_FILE
    if here.is_file() and here.read_text(encoding="utf-8") == file.source:
        return Path(file.folder)
    digest = hashlib.sha256(file.source.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"lrlab-ray-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / LOCAL_PLUGIN_FILE
    if not target.is_file():
        partial = folder / f".{LOCAL_PLUGIN_FILE}.{digest}.tmp"
        partial.write_text(file.source, encoding="utf-8")
        partial.replace(target)  # atomic: two workers on one node may race here
    return folder


def build_host(spec: HostSpec) -> Plugins:
    """Load, in this process, the plugins the driver loaded (API objects excepted)."""
    extra = [f"no:{name}" for name in spec.blocked]
    if spec.entry_points is not None:
        wanted = set(spec.entry_points)
        extra += [f"no:{ep.name}" for ep in entry_points(group=ENTRY_POINT_GROUP)
                  if ep.name not in wanted and ep.name not in spec.blocked]
    extra += list(spec.modules)
    return load_plugins(extra, local_dirs=[_local_folder(f) for f in spec.local_files],
                        use_entry_points=spec.entry_points is not None)


def worker_device(config: SweepConfig, gpus: float):
    """The device a task trains on: ``auto`` is CUDA only when the task was given a GPU."""
    import torch

    from lrlab.engine import resolve_device

    if config.device == "auto" and gpus <= 0:
        return torch.device("cpu")
    return resolve_device(config.device)


# token -> Context: the host and the data of the current sweep, kept while this worker
# process trains more of its runs (Ray reuses worker processes between tasks)
_CONTEXTS: dict[str, Context] = {}


def _context(token: str, config: SweepConfig, spec: HostSpec, cpus: float,
             gpus: float) -> Context:
    if token not in _CONTEXTS:
        import torch

        _CONTEXTS.clear()  # one sweep at a time per worker process
        torch.set_num_threads(max(1, int(cpus)))
        host = build_host(spec)
        _CONTEXTS[token] = Context(config, host, worker_device(config, gpus))
    return _CONTEXTS[token]


def train_remote(token: str, config: SweepConfig, spec: HostSpec, run: Run, cpus: float,
                 gpus: float) -> tuple[RunResult, list[str]]:
    """The Ray task: train one run here and hand back its result and the context's notes.

    :func:`lrlab.executors.Context.train_one` turns an exception in training into an
    ``error`` result; an exception while loading the plugins propagates and the driver
    turns it into an ``error`` result.
    """
    context = _context(token, config, spec, cpus, gpus)
    result = context.train_one(run)
    return result, list(context.notes)
