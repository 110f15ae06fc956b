"""How a sweep's plugins were loaded, recorded once (:class:`PluginRecipe`).

The manifest keeps it (``plugin_recipe``); ``lrlab report``, :func:`lrlab.write_report`,
a resumed sweep and the Ray executor's workers load the same plugins from it with
:func:`load_recipe`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrlab.plugins import LOCAL_PLUGIN_FILE, Plugins, load_plugins


@dataclass(frozen=True)
class LocalFile:
    """A ``lrlab_plugins.py`` that was loaded: where it was and what it held."""

    path: str
    source: str = ""  # its text (carried to Ray workers; the manifest keeps its digest)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PluginRecipe:
    """How a sweep's plugins were loaded, so that another process loads the same ones:
    ``lrlab report``, :func:`lrlab.report.write_report`, a resumed sweep and a Ray worker
    all go through :func:`load_recipe`.

    Built-ins always load (less the blocked ones). Plugin objects given to the Python API
    are kept by import path when they have one (a module, or a class defined at the top of
    a module); an instance cannot be rebuilt elsewhere and is only named.
    """

    modules: tuple[str, ...] = ()  # ``-p`` modules (and the sweep's ``plugins``), in order
    local_files: tuple[LocalFile, ...] = ()  # ``lrlab_plugins.py`` files, in order
    blocked: tuple[str, ...] = ()  # names blocked with ``-p no:NAME``
    # the entry points loaded; None (not recorded): every one installed
    entry_points: tuple[str, ...] | None = None
    api: tuple[str, ...] = ()  # API plugin objects by import path ("module:qualname")
    unnamed: tuple[str, ...] = ()  # API plugin objects that cannot be rebuilt

    def to_dict(self) -> dict[str, Any]:
        """What the manifest stores (local files by path and digest, not their text)."""
        return {"modules": list(self.modules), "blocked": list(self.blocked),
                "local_files": [{"path": f.path, "sha256": f.digest}
                                for f in self.local_files],
                "entry_points": None if self.entry_points is None else
                list(self.entry_points), "api": list(self.api), "unnamed": list(self.unnamed)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PluginRecipe:
        files = []
        for f in data.get("local_files") or []:
            path = Path(f["path"])
            files.append(LocalFile(str(path), path.read_text(encoding="utf-8")
                                   if path.is_file() else ""))
        eps = data.get("entry_points")
        return cls(tuple(data.get("modules") or ()), tuple(files),
                   tuple(data.get("blocked") or ()), None if eps is None else tuple(eps),
                   tuple(data.get("api") or ()), tuple(data.get("unnamed") or ()))

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> PluginRecipe:
        """The recipe a sweep's manifest recorded (older manifests: read from its list of
        loaded plugins)."""
        if isinstance(manifest.get("plugin_recipe"), dict):
            return cls.from_dict(manifest["plugin_recipe"])
        loaded = manifest.get("plugins") or []
        return cls.from_dict({
            "modules": [p["name"] for p in loaded if p.get("source") == "-p"],
            "local_files": [{"path": p["where"]} for p in loaded
                            if p.get("source") == "local file"]})

    @classmethod
    def of(cls, host: Plugins) -> PluginRecipe:
        """How ``host`` was loaded (:func:`recipe_of`)."""
        return recipe_of(host)

    def load(self, *, plugins: Iterable[Any] = ()) -> Plugins:
        """Load these plugins in this process (:func:`load_recipe`)."""
        return load_recipe(self, plugins=plugins)

    def with_extra(self, extra: Sequence[str]) -> PluginRecipe:
        """This recipe and more ``-p`` arguments (``no:NAME`` blocks)."""
        blocked = [a[3:] for a in extra if a.startswith("no:")]
        modules = [a for a in extra if not a.startswith("no:") and a not in self.modules]
        return PluginRecipe((*self.modules, *modules), self.local_files,
                            (*self.blocked, *blocked), self.entry_points, self.api,
                            self.unnamed)


def _import_path(obj: Any) -> str:
    """``module:qualname`` of a module or top-level class that can be imported again."""
    if isinstance(obj, types.ModuleType):
        name = obj.__name__
        return name if name != "__main__" and not name.startswith("lrlab_local_plugins_") \
            else ""
    if isinstance(obj, type) and "." not in obj.__qualname__ and obj.__module__ != "__main__":
        return f"{obj.__module__}:{obj.__qualname__}"
    return ""


def recipe_of(host: Plugins) -> PluginRecipe:
    """How ``host`` was loaded."""
    modules, files, eps, api, unnamed = [], [], [], [], []
    for info in host.info.values():
        if info.source == "-p":
            modules.append(info.name)
        elif info.source == "local file":
            path = Path(info.where)
            files.append(LocalFile(str(path), path.read_text(encoding="utf-8")
                                   if path.is_file() else ""))
        elif info.source == "entry point":
            eps.append(info.name)
        elif info.source == "api":
            where = _import_path(host.pm.get_plugin(info.name))
            (api if where else unnamed).append(where or info.name)
    blocked = tuple(name for name, plugin in host.pm.list_name_plugin() if plugin is None)
    return PluginRecipe(tuple(modules), tuple(files), blocked, tuple(eps), tuple(api),
                        tuple(unnamed))


def _local_folder(file: LocalFile) -> Path | None:
    """The folder to load a recorded ``lrlab_plugins.py`` from, here: its own folder when
    it holds the same text (or the text is unknown); else a private folder the text is
    written to (another machine, or a file edited since). None: nothing to load."""
    here = Path(file.path)
    if here.is_file() and (not file.source or
                           here.read_text(encoding="utf-8") == file.source):
        return here.parent
    if not file.source:
        return None
    folder = Path(tempfile.gettempdir()) / f"lrlab-plugins-{file.digest}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / LOCAL_PLUGIN_FILE
    if not target.is_file():
        partial = folder / f".{LOCAL_PLUGIN_FILE}.{os.getpid()}.tmp"
        partial.write_text(file.source, encoding="utf-8")
        partial.replace(target)  # atomic: two workers on one node may race here
    return folder


def _load_api_object(where: str) -> Any:
    """The module or class recorded as ``module:qualname``; None when it is gone (a test's
    module, a notebook's class): that plugin is then left out."""
    modname, _, qualname = where.partition(":")
    try:
        module = importlib.import_module(modname)
        return getattr(module, qualname) if qualname else module
    except (ImportError, AttributeError):
        return None


def load_recipe(recipe: PluginRecipe, *, plugins: Iterable[Any] = ()) -> Plugins:
    """Load, in this process, the plugins ``recipe`` records (and ``plugins`` objects).

    The entry points are the recorded ones (those installed here); the local files are
    loaded from their recorded text when the file on disk changed or is not here.
    """
    extra = [*(f"no:{name}" for name in recipe.blocked), *recipe.modules]
    folders = [f for f in (_local_folder(file) for file in recipe.local_files) if f]
    objects = [o for o in (_load_api_object(w) for w in recipe.api) if o is not None]
    return load_plugins(extra, plugins=[*objects, *plugins], local_dirs=folders,
                        use_entry_points=recipe.entry_points != (),
                        only_entry_points=recipe.entry_points)
