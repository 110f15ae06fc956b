"""Helpers for testing lrlab plugins, in the spirit of pytest's ``pytester``.

lrlab installs this module as a pytest plugin (entry point ``pytest11``), so the test
suite of any plugin package gets these fixtures with no conftest.py:

``lrlab_sweep``
    ``lrlab_sweep(*plugins, **overrides)`` runs a tiny sweep (digits, 2 epochs, one
    learning rate, no augmentation) in the test's ``tmp_path`` with the given plugin
    objects registered, and returns its :class:`lrlab.SweepResult`.
``lrlab_plugins``
    ``lrlab_plugins(*plugins)`` loads plugins as a sweep does and returns the
    :class:`lrlab.plugins.Plugins` (its ``registry`` and ``info``), without training.
``lrlab_recorder``
    a fresh :class:`HookRecorder`: pass it to ``lrlab_sweep`` and read ``.calls``.

The same helpers are plain functions (:func:`run_tiny_sweep`, :func:`load_with`,
:func:`entry_point`, :func:`fake_distribution`) for use outside pytest's fixtures (the
module itself imports pytest, a test extra). It imports nothing heavy until a helper is
called: pytest loads it in every session.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from lrlab.plugins import Plugins
    from lrlab.sweep import SweepResult

# what a tiny sweep trains unless told otherwise: a second or two on one CPU core
TINY: dict[str, Any] = {
    "dataset": "digits",
    "model": "linear",
    "loss": "cross_entropy",
    "optimizer": "sgd(momentum=0.9)",
    "schedule": "constant",
    "augment": "none",
    "stopper": "none",
    "lr": [0.1],
    "epochs": 2,
    "batch_size": 64,
    "name": "tiny",
}


def run_tiny_sweep(*plugins: Any, out: str | Path, report: bool = False,
                   extra_plugins: tuple[str, ...] = (), **overrides: Any) -> SweepResult:
    """Run a tiny sweep with ``plugins`` registered and return its result.

    :param plugins: plugin objects (a module, a class or an instance with ``lrlab_*``
        hooks); installed plugins (entry points) load as well, as in a real sweep.
    :param out: folder that receives ``<out>/<name>/`` (``runs.parquet`` ...).
    :param report: build the HTML report too (calls ``lrlab_report_sections``).
    :param extra_plugins: ``-p`` arguments (``"no:NAME"`` blocks a plugin).
    :param overrides: any sweep key, over :data:`TINY`: ``model="lenet5"``,
        ``lr=[0.01, 0.1]``, ``stopper="plateau_ema(patience=2)"``, ``thresholds={...}``.
    """
    from lrlab.sweep import run_sweep

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**TINY, **overrides}
    return run_sweep(plugins=plugins, extra_plugins=extra_plugins, out=str(out),
                     fresh=True, report=report, cwd=out, **settings)


def load_with(*plugins: Any, extra_plugins: tuple[str, ...] = (),
              use_entry_points: bool = True) -> Plugins:
    """Load plugins as a sweep does (built-ins, entry points, then ``plugins``)."""
    from lrlab.plugins import load_plugins

    return load_plugins(extra_plugins, plugins=plugins, use_entry_points=use_entry_points)


def entry_point(name: str, group: str = "lrlab") -> EntryPoint:
    """The installed entry point ``name`` of ``group``; fails the test when missing.

    The first test of a plugin package should check that pip installed it where
    lrlab looks: ``assert entry_point("classic").load() is lrlab_classic``.
    """
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        names = sorted(ep.name for ep in entry_points(group=group))
        raise AssertionError(f"no entry point '{name}' in group '{group}' (installed: "
                             f"{', '.join(names) or 'none'}); is the package installed "
                             f"(pip install -e .)?")
    return found[0]


def fake_distribution(folder: str | Path, name: str, entry_points_: dict[str, str],
                      version: str = "0.0.1", group: str = "lrlab") -> Path:
    """Write a ``NAME-VERSION.dist-info`` into ``folder`` declaring entry points.

    With ``folder`` on ``sys.path`` (``monkeypatch.syspath_prepend(folder)``),
    :mod:`importlib.metadata` sees an installed distribution, so lrlab loads its entry
    points exactly as after ``pip install``, with nothing installed.

    :param entry_points_: entry-point name -> object reference (``"my_plugin"``).
    """
    info = Path(folder) / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                   f"Version: {version}\n")
    lines = [f"[{group}]"] + [f"{k} = {v}" for k, v in entry_points_.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return info


class HookRecorder:
    """A plugin that records every lifecycle and analysis hook call, in order.

    ``calls`` holds tuples: ``("lrlab_epoch_end", run_id, epoch)``,
    ``("lrlab_run_start", run_id)``, ``("lrlab_sweep_start",)`` ...
    """

    __name__ = "hook-recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.metrics: dict[tuple[str, int], dict[str, float]] = {}
        self.results: dict[str, Any] = {}

    def names(self) -> list[str]:
        """The hook names, in call order."""
        return [c[0] for c in self.calls]

    def for_run(self, run_id: str) -> list[tuple[Any, ...]]:
        """The calls about one run, in order."""
        return [c for c in self.calls if len(c) > 1 and c[1] == run_id]

    def lrlab_configure(self, config):
        self.calls.append(("lrlab_configure",))

    def lrlab_sweep_start(self, config, runs):
        self.calls.append(("lrlab_sweep_start",))

    def lrlab_run_start(self, run):
        self.calls.append(("lrlab_run_start", run.run_id))

    def lrlab_epoch_end(self, run, epoch, metrics):
        self.metrics[(run.run_id, epoch)] = dict(metrics)
        self.calls.append(("lrlab_epoch_end", run.run_id, epoch))

    def lrlab_diagnose(self, run):
        self.calls.append(("lrlab_diagnose", run.run_id))

    def lrlab_run_end(self, run, result):
        self.results[run.run_id] = result
        self.calls.append(("lrlab_run_end", run.run_id))

    def lrlab_sweep_end(self, config, runs, history):
        self.calls.append(("lrlab_sweep_end",))

    def lrlab_report_sections(self, runs):
        self.calls.append(("lrlab_report_sections",))


@pytest.fixture
def lrlab_sweep(tmp_path: Path) -> Callable[..., SweepResult]:
    """``lrlab_sweep(*plugins, **overrides)``: a tiny sweep in ``tmp_path``."""

    def run(*plugins: Any, **overrides: Any) -> SweepResult:
        overrides.setdefault("out", tmp_path / "lrlab-sweeps")
        return run_tiny_sweep(*plugins, **overrides)

    return run


@pytest.fixture
def lrlab_plugins() -> Callable[..., Plugins]:
    """``lrlab_plugins(*plugins)``: a fresh plugin manager with ``plugins`` loaded."""
    return load_with


@pytest.fixture
def lrlab_recorder() -> HookRecorder:
    """A fresh :class:`HookRecorder` to pass to ``lrlab_sweep``."""
    return HookRecorder()
