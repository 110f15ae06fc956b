"""Loading plugins and calling hooks.

Built-in components are internal plugins: modules of ``lrlab.builtin`` that hold only
hook implementations, loaded on the same path as third-party ones. A fresh manager is
built per sweep (:func:`load_plugins`); nothing is loaded at import time.

Set ``LRLAB_TRACE_HOOKS=1`` to print every hook call with its plugin.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from lrlab import hookspecs
from lrlab.errors import PluginError, UsageError
from lrlab.registry import KINDS, PLURAL, Registry

PROJECT = "lrlab"
ENTRY_POINT_GROUP = "lrlab"
LOCAL_PLUGIN_FILE = "lrlab_plugins.py"

# name -> module: the built-in plugins, in load order
BUILTIN_PLUGINS = {
    "builtin.datasets": "lrlab.builtin.datasets",
    "builtin.models": "lrlab.builtin.models",
    "builtin.losses": "lrlab.builtin.losses",
    "builtin.optimizers": "lrlab.builtin.optimizers",
    "builtin.schedules": "lrlab.builtin.schedules",
    "builtin.augmentations": "lrlab.builtin.augmentations",
    "builtin.stoppers": "lrlab.builtin.stoppers",
    "builtin.executors": "lrlab.builtin.executors",
    "builtin.vectorized": "lrlab.builtin.vectorized",
    "builtin.verdicts": "lrlab.builtin.verdicts",
    "builtin.lrfind": "lrlab.builtin.lrfind",
}


@dataclass
class PluginInfo:
    """One loaded plugin, as ``lrlab plugins`` shows it."""

    name: str
    source: str  # "built-in", "entry point", "-p", "local file", "api"
    version: str = ""
    where: str = ""
    registered: list[str] = field(default_factory=list)  # "model:lenet5"
    hooks: list[str] = field(default_factory=list)  # lifecycle/analysis hooks it implements


class Plugins:
    """The plugin manager of one sweep, its registry of components and who did what."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.info: dict[str, PluginInfo] = {}
        if os.environ.get("LRLAB_TRACE_HOOKS"):
            self.pm.trace.root.setwriter(lambda msg: sys.stderr.write(f"[lrlab hooks] {msg}"))
            self.pm.enable_tracing()

    # -- loading ----------------------------------------------------------------------

    def add(self, plugin: Any, name: str, source: str, version: str = "",
            where: str = "") -> None:
        if self.pm.is_blocked(name):
            return
        if self.pm.has_plugin(name):  # e.g. "-p pkg" for a package its entry point loaded
            return
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin '{name}' failed to load: {exc}") from None
        self.info[name] = PluginInfo(name, source, version, where)

    def block(self, name: str) -> None:
        self.pm.set_blocked(name)

    def finish_loading(self) -> None:
        """Validate every plugin against the specs, then collect registrations."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin_name = self.pm.get_name(exc.plugin) if exc.plugin else "?"
            raise PluginError(f"plugin '{plugin_name}' failed to load: {exc}") from None
        for kind in KINDS:
            hookname = f"lrlab_register_{PLURAL[kind]}"
            caller = getattr(self.pm.hook, hookname)
            for impl in reversed(caller.get_hookimpls()):
                register = self.registry.register_for(kind, impl.plugin_name)
                try:
                    impl.function(register=register)
                except (PluginError, UsageError):
                    raise
                except Exception as exc:
                    raise PluginError(f"plugin '{impl.plugin_name}' failed in {hookname}: "
                                      f"{type(exc).__name__}: {exc}") from exc
        for name, info in self.info.items():
            info.registered = [f"{c.kind}:{c.name}" for c in self.registry.by_plugin(name)]
            plugin = self.pm.get_plugin(name)
            info.hooks = sorted(
                h.name for h in self.pm.get_hookcallers(plugin) or []
                if not h.name.startswith("lrlab_register_"))

    # -- calling hooks ----------------------------------------------------------------

    def call(self, hookname: str, **kwargs: Any) -> list[Any]:
        """Call a hook; an exception in an implementation becomes a PluginError naming it."""
        caller = getattr(self.pm.hook, hookname)
        try:
            return caller(**kwargs)
        except (PluginError, UsageError):
            raise
        except Exception as exc:
            plugin = _raising_plugin(caller, exc)
            raise PluginError(f"plugin '{plugin}' failed in {hookname}: "
                              f"{type(exc).__name__}: {exc}") from exc


def _raising_plugin(caller: Any, exc: BaseException) -> str:
    codes = {impl.function.__code__: impl.plugin_name for impl in caller.get_hookimpls()
             if hasattr(impl.function, "__code__")}
    tb = exc.__traceback__
    found = "?"
    while tb is not None:
        name = codes.get(tb.tb_frame.f_code)
        if name is not None:
            found = name  # the innermost hook implementation on the stack
        tb = tb.tb_next
    return found


def _dist_version(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "version", "") if dist is not None else ""


def _import(modname: str, how: str) -> types.ModuleType:
    try:
        return importlib.import_module(modname)
    except ImportError as exc:
        raise UsageError(f"cannot load plugin '{modname}' ({how}): {exc}") from None


def load_local_file(path: Path) -> types.ModuleType:
    """Import a ``lrlab_plugins.py`` from a path, as pytest imports conftest.py."""
    modname = f"lrlab_local_plugins_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(modname, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise PluginError(f"plugin '{path}' failed to import: "
                          f"{type(exc).__name__}: {exc}") from exc
    return module


def load_plugins(extra: Sequence[str] = (), *, plugins: Iterable[Any] = (),
                 local_dirs: Iterable[Path] = (), use_entry_points: bool = True) -> Plugins:
    """Build a fresh plugin manager: built-ins, entry points, local files, ``-p`` ones.

    :param extra: ``-p`` arguments: a module name to load, or ``no:NAME`` to block one.
    :param plugins: plugin objects (modules, classes, instances) given by the Python API.
    :param local_dirs: folders searched for a ``lrlab_plugins.py``.
    :param use_entry_points: load the ``lrlab`` entry-point group.
    """
    host = Plugins()
    to_load = []
    for arg in extra:
        if arg.startswith("no:"):
            host.block(arg[3:])
        else:
            to_load.append(arg)
    for name, modname in BUILTIN_PLUGINS.items():
        if not host.pm.is_blocked(name):
            host.add(importlib.import_module(modname), name, "built-in", where=modname)
    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if host.pm.is_blocked(ep.name):
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginError(f"plugin '{ep.name}' (entry point {ep.value}) failed to "
                                  f"import: {type(exc).__name__}: {exc}") from exc
            host.add(obj, ep.name, "entry point", _dist_version(ep), ep.value)
    seen = set()
    for folder in local_dirs:
        path = (Path(folder) / LOCAL_PLUGIN_FILE).resolve()
        if path.is_file() and path not in seen:
            seen.add(path)
            host.add(load_local_file(path), str(path), "local file", where=str(path))
    for modname in to_load:
        module = _import(modname, "-p")
        host.add(module, modname, "-p", getattr(module, "__version__", ""),
                 getattr(module, "__file__", "") or modname)
    for i, obj in enumerate(plugins):
        name = getattr(obj, "__name__", None) or f"{type(obj).__name__}-{i}"
        host.add(obj, name, "api", where=repr(obj)[:80])
    host.finish_loading()
    return host
