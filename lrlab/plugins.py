"""Loading plugins and calling hooks.

Built-in components are internal plugins: modules of ``lrlab.builtin`` that hold only
hook implementations, loaded on the same path as third-party ones. A fresh manager is
built per sweep (:func:`load_plugins`); nothing is loaded at import time.

A function or method named ``lrlab_*`` is a hook implementation whether or not it is
marked ``@lrlab.hookimpl`` (as pytest treats ``pytest_*``), so a misspelt hook name
fails loading instead of being silently ignored.

Set ``LRLAB_TRACE_HOOKS=1`` to print every hook call, its arguments and which plugins
answered, on stderr.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points, packages_distributions, version
from pathlib import Path
from typing import Any

import pluggy

from lrlab import hookspecs
from lrlab.errors import PluginError, UsageError
from lrlab.registry import KINDS, PLURAL, Registry

PROJECT = "lrlab"
PREFIX = "lrlab_"
ENTRY_POINT_GROUP = "lrlab"
LOCAL_PLUGIN_FILE = "lrlab_plugins.py"
TRACE_ENV = "LRLAB_TRACE_HOOKS"

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
    where: str = ""  # module, entry point (and its distribution) or file path
    registered: list[str] = field(default_factory=list)  # "model:lenet5"
    hooks: list[str] = field(default_factory=list)  # lifecycle/analysis hooks it implements

    @property
    def what(self) -> str:
        """What it registered and hooks into, in one line (``-`` for nothing)."""
        return ", ".join(self.registered + self.hooks) or "-"


class _Manager(pluggy.PluginManager):
    """pluggy's manager, treating every ``lrlab_*`` routine as a hook implementation."""

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(PREFIX):
            method = getattr(plugin, name, None)
            if inspect.isroutine(method):
                opts = {}
        return opts


def trace_enabled() -> bool:
    """True when ``LRLAB_TRACE_HOOKS`` is set to anything but ``""`` or ``0``."""
    return os.environ.get(TRACE_ENV, "") not in ("", "0")


def _short(value: Any, width: int = 60) -> str:
    """A one-glance form of a hook argument for the trace."""
    if hasattr(value, "shape") and hasattr(value, "columns"):  # a DataFrame
        return f"<table {value.shape[0]}x{value.shape[1]}>"
    if hasattr(value, "grid") and hasattr(value, "name"):  # SweepConfig
        return f"<config {value.name}>"
    if hasattr(value, "run_id"):  # Run
        return str(value.run_id)
    if hasattr(value, "summary") and hasattr(value, "run"):  # RunResult
        return f"<result {value.run.run_id} {value.summary.get('verdict') or ''}>".strip()
    if isinstance(value, list) and value and hasattr(value[0], "run_id"):
        return f"<{len(value)} runs>"
    if isinstance(value, dict) and all(isinstance(v, float) for v in value.values()):
        return "{" + ", ".join(f"{k}: {v:.4g}" for k, v in value.items()) + "}"
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _trace(msg: str) -> None:
    sys.stderr.write(f"[lrlab hooks] {msg}\n")


class Plugins:
    """The plugin manager of one sweep, its registry of components and who did what."""

    def __init__(self) -> None:
        self.pm = _Manager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.info: dict[str, PluginInfo] = {}
        self.trace = trace_enabled()
        if self.trace:
            self.pm.add_hookcall_monitoring(self._before, self._after)

    # -- tracing ----------------------------------------------------------------------

    @staticmethod
    def _before(hook_name: str, impls: Sequence[Any], kwargs: dict[str, Any]) -> None:
        args = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
        names = ", ".join(i.plugin_name for i in reversed(impls)) or "no plugin"
        _trace(f"{hook_name}({args}) -> {names}")

    @staticmethod
    def _after(outcome: Any, hook_name: str, impls: Sequence[Any],
               kwargs: dict[str, Any]) -> None:
        exc = outcome.exception
        if exc is not None:
            _trace(f"{hook_name} raised {type(exc).__name__}: {exc}")
        else:
            answers = [a for a in outcome.get_result() or [] if a]
            if answers:
                _trace(f"{hook_name} returned {_short(answers)}")

    # -- loading ----------------------------------------------------------------------

    def add(self, plugin: Any, name: str, source: str, version: str = "",
            where: str = "") -> None:
        """Register one plugin object under ``name``; a loading error names it."""
        if self.pm.is_blocked(name):
            return
        if self.pm.is_registered(plugin):  # e.g. "-p pkg" for a module an entry point loaded
            return
        if self.pm.has_plugin(name):
            old = self.info.get(name)
            was = f" ({old.source} {old.where})" if old else ""
            raise PluginError(f"two plugins are named '{name}': {source} {where} and the "
                              f"one already loaded{was}")
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"plugin '{name}' failed to load: {_one_line(exc)}") from None
        self.info[name] = PluginInfo(name, source, version, where)

    def block(self, name: str) -> None:
        self.pm.set_blocked(name)

    def finish_loading(self) -> None:
        """Validate every plugin against the specs, then collect registrations."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin_name = self.pm.get_name(exc.plugin) if exc.plugin else "?"
            raise PluginError(f"plugin '{plugin_name}' failed to load: "
                              f"{_one_line(exc)}") from None
        for kind in KINDS:
            hookname = f"lrlab_register_{PLURAL[kind]}"
            caller = getattr(self.pm.hook, hookname)
            for impl in caller.get_hookimpls():  # in load order
                register = self.registry.register_for(kind, impl.plugin_name)
                if self.trace:
                    _trace(f"{hookname}(register) -> {impl.plugin_name}")
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
        """Call a hook; an exception in an implementation becomes a PluginError naming it.

        A :class:`UsageError` raised by a plugin passes through unchanged (it speaks to
        the user about their input).
        """
        caller = getattr(self.pm.hook, hookname)
        try:
            return caller(**kwargs)
        except (PluginError, UsageError):
            raise
        except Exception as exc:
            plugin = _raising_plugin(caller, exc)
            raise PluginError(f"plugin '{plugin}' failed in {hookname}: "
                              f"{type(exc).__name__}: {exc}") from exc


    # -- what decides a component's numbers ---------------------------------------------

    def code_version(self, kind: str, name: str) -> str:
        """What identifies the code of component ``name``: lrlab's version for a built-in,
        the distribution's version for an installed plugin, and a digest of the source file
        that defines its factory for a ``-p`` module, a local ``lrlab_plugins.py`` or an
        API object (so an edit there retrains its runs); "" when unknown."""
        from lrlab.version import __version__

        comp = self.registry.get(kind, name)
        info = self.info.get(comp.plugin)
        if info is None or info.source == "built-in":
            return f"lrlab {__version__}"
        if info.source == "entry point":
            return f"{info.where} {info.version}".strip()
        try:
            path = inspect.getsourcefile(comp.factory)
        except TypeError:
            path = None
        if not path or not os.path.isfile(path):
            return ""
        cache = self.__dict__.setdefault("_digests", {})
        if path not in cache:
            with open(path, "rb") as fh:
                cache[path] = "sha256:" + hashlib.sha256(fh.read()).hexdigest()[:16]
        return cache[path]


def _raising_plugin(caller: Any, exc: BaseException) -> str:
    """The plugin whose hook implementation is innermost on the traceback."""
    impls = caller.get_hookimpls()
    codes = {impl.function.__code__: impl.plugin_name for impl in impls
             if hasattr(impl.function, "__code__")}
    modules = {}
    for impl in impls:
        plugin = impl.plugin
        mod = plugin.__name__ if isinstance(plugin, types.ModuleType) else \
            getattr(type(plugin), "__module__", None)
        modules.setdefault(mod, impl.plugin_name)
    found = by_module = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        found = codes.get(frame.f_code, found)  # the innermost implementation wins
        by_module = modules.get(frame.f_globals.get("__name__"), by_module)
        tb = tb.tb_next
    return found or by_module or (impls[0].plugin_name if len(impls) == 1 else "?")


def _dist_version(ep: Any) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "", ""
    return getattr(dist, "version", "") or "", dist.metadata["Name"] or ""


def _module_version(module: types.ModuleType) -> str:
    found = getattr(module, "__version__", "")
    if found:
        return str(found)
    top = module.__name__.partition(".")[0]
    for dist in packages_distributions().get(top, []):
        try:
            return version(dist)
        except Exception:  # pragma: no cover - a broken installation
            continue
    return ""


def _import(modname: str, how: str) -> types.ModuleType:
    try:
        return importlib.import_module(modname)
    except ImportError as exc:
        raise UsageError(f"cannot load plugin '{modname}' ({how}): {exc}") from None
    except Exception as exc:
        raise PluginError(f"plugin '{modname}' ({how}) failed to import: "
                          f"{type(exc).__name__}: {exc}") from exc


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
                 local_dirs: Iterable[Path] = (), use_entry_points: bool = True,
                 only_entry_points: Iterable[str] | None = None) -> Plugins:
    """Build a fresh plugin manager: built-ins, entry points, local files, ``-p`` ones.

    :param extra: ``-p`` arguments: a module name to load, or ``no:NAME`` to block one.
    :param plugins: plugin objects (modules, classes, instances) given by the Python API.
    :param local_dirs: folders searched for a ``lrlab_plugins.py``.
    :param use_entry_points: load the ``lrlab`` entry-point group.
    :param only_entry_points: load only these entry points of the group (None: all).
    """
    from lrlab.version import __version__

    host = Plugins()
    to_load = []
    for arg in extra:
        if arg.startswith("no:"):
            host.block(arg[3:])
        else:
            to_load.append(arg)
    for name, modname in BUILTIN_PLUGINS.items():
        if not host.pm.is_blocked(name):
            host.add(importlib.import_module(modname), name, "built-in", __version__,
                     modname)
    only = None if only_entry_points is None else set(only_entry_points)
    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if host.pm.is_blocked(ep.name) or (only is not None and ep.name not in only):
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginError(f"plugin '{ep.name}' (entry point {ep.value}) failed to "
                                  f"import: {type(exc).__name__}: {exc}") from exc
            dist_version, dist_name = _dist_version(ep)
            where = f"{ep.value} ({dist_name})" if dist_name else ep.value
            host.add(obj, ep.name, "entry point", dist_version, where)
    seen = set()
    for folder in local_dirs:
        path = (Path(folder) / LOCAL_PLUGIN_FILE).resolve()
        if path.is_file() and path not in seen:
            seen.add(path)
            host.add(load_local_file(path), str(path), "local file", where=str(path))
    for modname in to_load:
        if host.pm.is_blocked(modname):  # e.g. a sweep's recorded module, blocked now
            continue
        module = _import(modname, "-p")
        host.add(module, modname, "-p", _module_version(module),
                 getattr(module, "__file__", "") or modname)
    for i, obj in enumerate(plugins):
        name = getattr(obj, "__name__", None) or f"{type(obj).__name__}-{i}"
        kind = obj if isinstance(obj, type) else type(obj)
        where = obj.__name__ if isinstance(obj, types.ModuleType) else \
            f"{kind.__module__}.{kind.__qualname__}"
        host.add(obj, name, "api", where=where)
    host.finish_loading()
    return host
