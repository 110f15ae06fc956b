"""Components: how they are written (``name(key=value)``), registered, checked and built.

A component is a factory function registered under a name by a plugin. Its
keyword-only parameters are the component's parameters, so ``lrlab list`` and the
checks on user input read them straight from the signature::

    def mlp(input_shape, num_classes, *, width: int = 128, depth: int = 2): ...

A model may also be named by an import path, ``module:Name`` or ``file.py:Name`` (see
:func:`resolve_import_path`), and the Python API takes model classes and data objects
directly (:func:`object_spec`): such components are registered on the fly, the first time
they are checked, under the plugin names :data:`IMPORT_PLUGIN` and :data:`API_PLUGIN`.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import types
import typing
from collections import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lrlab.errors import PluginError, UsageError

KINDS = ("dataset", "model", "loss", "optimizer", "schedule", "augmentation", "stopper",
         "executor")
# the plural used in hook names: lrlab_register_<plural>
PLURAL = {"dataset": "datasets", "model": "models", "loss": "losses",
          "optimizer": "optimizers", "schedule": "schedules",
          "augmentation": "augmentations", "stopper": "stoppers", "executor": "executors"}


class Register(Protocol):
    def __call__(self, name: str, factory: Callable[..., Any], doc: str | None = None) -> None:
        ...


# -- specs: "name(key=value, ...)" -------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A component as the user wrote it: a name and parameter values."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    # the object itself, for a component given to the Python API (a model class, a
    # lrlab.Data): registered under ``name`` when the spec is first checked
    source: Any = field(default=None, compare=False, repr=False)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in self.params)
        return f"{self.name}({inner})"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses/brackets and quotes: ``"a(x=1,y=2),b"`` -> 2
    parts, ``"csv(features='a,b')"`` -> 1."""
    parts, depth, cur = [], 0, []
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0 and not quote:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


# bare words read as TOML reads them, so a value is written the same way on the command
# line as in a sweep file: restore_best=true
_WORDS = {"true": True, "false": False}


class _Words(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _WORDS:
            return ast.copy_location(ast.Constant(_WORDS[node.id]), node)
        return node


def _literal(text: str) -> Any:
    """A Python literal (``64``, ``'a'``, ``(1, 2)``, ``[1, 2]``, ``True``), ``true`` /
    ``false`` as in TOML (also inside a tuple or list), else the text itself."""
    if text in _WORDS:
        return _WORDS[text]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return ast.literal_eval(_Words().visit(ast.parse(text, mode="eval")))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text  # a bare word: mode=min


def parse_spec(value: Any, kind: str = "component") -> Spec:
    """Parse ``"mlp"``, ``"mlp(width=64, depth=3)"``, an import path
    ``"models.py:Net(width=64)"`` or a TOML table ``{name="mlp", ...}``; a model class or
    factory and a dataset object (tensors, a torch Dataset) given to the Python API become
    a spec that carries them (:func:`object_spec`)."""
    if isinstance(value, Spec):
        return value
    if isinstance(value, dict):
        if "name" not in value:
            raise UsageError(f"{kind} table {value!r} has no 'name' key")
        params = tuple(sorted((k, v) for k, v in value.items() if k != "name"))
        if not isinstance(value["name"], str) and kind in OBJECT_KINDS:
            base = object_spec(value["name"], kind)
            return Spec(base.name, tuple(sorted({**base.kwargs, **dict(params)}.items())),
                        base.source)
        return Spec(str(value["name"]), params)
    if not isinstance(value, str):
        if kind in OBJECT_KINDS:
            return object_spec(value, kind)
        raise UsageError(f"{kind} {value!r} is not a name like 'mlp' or 'mlp(width=64)'")
    text = value.strip()
    if "(" not in text:
        if not text or not (_is_name(text) or is_import_path(text)):
            raise UsageError(f"malformed {kind} {value!r}: expected a name like 'mlp'"
                             + _import_hint(text))
        return Spec(text)
    name, _, rest = text.partition("(")
    name = name.strip()
    if not rest.endswith(")") or not (_is_name(name) or is_import_path(name)):
        raise UsageError(f"malformed {kind} {value!r}: expected name(key=value, ...)"
                         + _import_hint(name))
    params = {}
    body = rest[:-1].strip()
    for item in split_top(body, ",") if body else []:
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise UsageError(f"malformed {kind} {value!r}: {item!r} is not key=value")
        params[key] = _literal(val.strip())
    return Spec(name, tuple(sorted(params.items())))


def _is_name(text: str) -> bool:
    return bool(text) and text[0].isalpha() and all(c.isalnum() or c in "_-." for c in text)


def _import_hint(text: str) -> str:
    return " or an import path like 'module:Name' or 'file.py:Name'" if ":" in text else ""


def is_import_path(text: str) -> bool:
    """``module:Name`` (a dotted module name) or ``path/to/file.py:Name``; ``Name`` may be
    dotted (``Outer.Inner``)."""
    where, sep, attr = text.rpartition(":")
    if not sep or not where.strip() or not attr:
        return False
    if not all(part.isidentifier() for part in attr.split(".")):
        return False
    return where.endswith(".py") or all(part.isidentifier() for part in where.split("."))


# -- components given as objects (the Python API) ----------------------------------------

OBJECT_KINDS = ("model", "dataset")  # the kinds the Python API takes as objects
IMPORT_PLUGIN = "import path"  # the plugin name of models named by an import path
API_PLUGIN = "api object"  # the plugin name of objects given to the Python API
# the contract arguments a model class or factory of the user's gets by name, when its
# signature has parameters of these names (see flexible_component)
CONTRACT = {"model": ("input_shape", "num_classes")}


def _object_name(obj: Any, fallback: str) -> str:
    """A component name from an object's ``__name__`` (``<lambda>`` -> ``lambda``)."""
    raw = getattr(obj, "__name__", "") or ""
    name = re.sub(r"[^A-Za-z0-9_.-]", "", raw)
    return name if _is_name(name) else fallback


def object_spec(value: Any, kind: str) -> Spec:
    """The spec of an object given to the Python API as a component of ``kind``.

    A model: a ``torch.nn.Module`` subclass or a factory function, named by its
    ``__name__`` (``TinyNet``); ``functools.partial(TinyNet, width=64)`` sets parameters
    (``TinyNet(width=64)``). A dataset: a ``lrlab.Data``, a tensor pair ``(x, y)`` or a
    torch ``Dataset`` (read into memory), named by its kind, shape and a digest of its
    contents (``tensors-300x4-1a2b3c4d``), so a resumed sweep knows the same data again.
    """
    if kind == "dataset":
        from lrlab.data import as_data

        name, data = as_data(value)
        return Spec(name, (), data)
    if kind != "model":
        raise UsageError(f"{kind} {value!r} is not a name like 'mlp' or 'mlp(width=64)'")
    if isinstance(value, functools.partial):
        if value.args:
            raise UsageError(f"model {value!r}: give its parameters by keyword "
                             f"(functools.partial({_object_name(value.func, 'model')}, "
                             f"width=64))")
        base = object_spec(value.func, kind)
        return Spec(base.name, tuple(sorted(value.keywords.items())), base.source)
    if not callable(value):
        raise UsageError(f"model {value!r:.80} is neither a name, an import path, a "
                         f"torch.nn.Module subclass nor a factory")
    return Spec(_object_name(value, "model"), (), value)


class _Fixed:
    """The factory of a dataset given as an object: it returns that object."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __call__(self, root: str) -> Any:
        return self.data


def flexible_component(kind: str, name: str, obj: Any, plugin: str) -> Component:
    """A model of the user's (an import path's target, or a class given to the Python API):
    a ``torch.nn.Module`` subclass or a factory function returning one.

    Its parameters are those of its signature (the class's ``__init__``) that can be given
    by keyword; ``input_shape`` and ``num_classes`` are not among them: lrlab passes them,
    by those names, to a class or factory whose signature has them, and leaves them out
    for one that has not (``TinyNet(width=32)`` is built as ``TinyNet(width=32)``, or as
    ``TinyNet(input_shape=..., num_classes=..., width=32)``). A ``**kwargs`` takes any
    parameter, unchecked.
    """
    import torch

    what = f"{kind} '{name}'"
    label = getattr(obj, "__qualname__", None) or type(obj).__name__
    if isinstance(obj, type):
        if not issubclass(obj, torch.nn.Module):
            raise UsageError(f"{what}: {label} is a class but not a torch.nn.Module "
                             f"subclass")
    elif isinstance(obj, torch.nn.Module):
        raise UsageError(f"{what}: {label} is a torch.nn.Module instance; give its class "
                         f"or a factory function (every run builds a fresh model)")
    elif not callable(obj):
        raise UsageError(f"{what}: {label} is a {type(obj).__name__}, neither a "
                         f"torch.nn.Module subclass nor a factory function")
    contract_names = CONTRACT.get(kind, ())
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        sig = None
    params: dict[str, Param] = {}
    contract: list[str] = []
    open_params = sig is None
    if sig is not None:
        hints = _hints(obj.__init__ if isinstance(obj, type) else obj)
        for p in sig.parameters.values():
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                open_params = True
            elif p.name in contract_names and p.kind is not inspect.Parameter.VAR_POSITIONAL:
                contract.append(p.name)
            elif p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                            inspect.Parameter.KEYWORD_ONLY):
                params[p.name] = Param(p.name, p.default, hints.get(p.name, p.annotation))
    return Component(kind, name, obj, plugin, _first_line(obj.__doc__), params,
                     contract=tuple(contract), open_params=open_params, source=obj)


# -- import paths: module:Name, file.py:Name ---------------------------------------------


@contextlib.contextmanager
def _on_path(folder: Path):
    """``folder`` first on ``sys.path`` while the block runs (where it was not already)."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _load_file(name: str, where: str) -> types.ModuleType:
    """The module of a ``.py`` file, relative to the current folder (imported once, again
    when the file changes); its folder is on ``sys.path`` while it is imported."""
    path = Path(where).expanduser()
    full = path if path.is_absolute() else Path.cwd() / path
    if not full.is_file():
        raise UsageError(f"model '{name}': no file {where} (in {full.parent})")
    full = full.resolve()
    st = full.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    stem = re.sub(r"\W", "_", full.stem)
    modname = f"lrlab_user_{stem}_{hashlib.sha1(str(full).encode()).hexdigest()[:10]}"
    cached = sys.modules.get(modname)
    if cached is not None and getattr(cached, "__lrlab_stamp__", None) == stamp:
        return cached
    spec = importlib.util.spec_from_file_location(modname, full)
    if spec is None or spec.loader is None:
        raise UsageError(f"model '{name}': {where} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    module.__lrlab_stamp__ = stamp  # type: ignore[attr-defined]
    sys.modules[modname] = module
    try:
        with _on_path(full.parent):
            spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(modname, None)
        raise UsageError(f"model '{name}': {where} failed to import: "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None
    return module


def _import_module(name: str, modname: str) -> types.ModuleType:
    """An importable module (the current folder is searched first, as ``python -m``
    does)."""
    importlib.invalidate_caches()
    try:
        with _on_path(Path.cwd()):
            return importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name and (modname == exc.name or modname.startswith(exc.name + ".")):
            raise UsageError(f"model '{name}': no module named '{modname}' (not "
                             f"installed, nor in the current folder {Path.cwd()}); a "
                             f"file is written {modname.replace('.', '/')}.py:Name") \
                from None
        raise UsageError(f"model '{name}': importing {modname} failed: "
                         f"ModuleNotFoundError: {_one_line(exc)}") from None
    except Exception as exc:
        raise UsageError(f"model '{name}': importing {modname} failed: "
                         f"{type(exc).__name__}: {_one_line(exc)}") from None


def resolve_import_path(name: str) -> Any:
    """The object an import path names: ``module:Name`` imports ``module`` (installed, or
    in the current folder); ``path/file.py:Name`` loads that file, a relative path being
    relative to the current folder. One line of :class:`UsageError` when it does not
    resolve."""
    where, _, attr = name.rpartition(":")
    if where.endswith(".py"):
        module = _load_file(name, where)
    else:
        module = _import_module(name, where)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            choices = [n for n, v in vars(module).items() if not n.startswith("_")
                       and (isinstance(v, type) or inspect.isfunction(v))
                       and getattr(v, "__module__", None) == module.__name__]
            near = closest(part, choices)
            hint = f"; did you mean '{near}'?" if near else \
                (f" (it has: {', '.join(sorted(choices))})" if choices else "")
            raise UsageError(f"model '{name}': {where} has no '{attr}'{hint}")
        obj = getattr(obj, part)
    return obj


# -- components and the registry -------------------------------------------------------


@dataclass
class Param:
    name: str
    default: Any
    annotation: Any

    @property
    def expected(self) -> Any:
        """The type values are checked against: the annotation, else the default's type
        (``None`` where neither says: anything goes)."""
        ann = self.annotation
        if ann is inspect.Parameter.empty or isinstance(ann, str):
            # no annotation, or one that did not resolve: the default's type
            default = self.default
            return None if default is None or default is inspect.Parameter.empty \
                else type(default)
        return ann

    @property
    def type_name(self) -> str:
        ann = self.expected
        if ann is None:
            return "any"
        if typing.get_origin(ann) is typing.Literal:
            return "one of " + ", ".join(map(repr, typing.get_args(ann)))
        return type_name(ann)


@dataclass
class Component:
    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    doc: str = ""
    params: dict[str, Param] = field(default_factory=dict)
    # None: the factory is called with the kind's contract arguments, positionally (the
    # plugin contract); else only those of CONTRACT[kind] named here, by keyword (a model
    # class or factory of the user's: see flexible_component)
    contract: tuple[str, ...] | None = None
    open_params: bool = False  # any parameter is taken, unchecked (a **kwargs)
    source: Any = field(default=None, repr=False)  # the object a user gave, if any

    @property
    def signature(self) -> str:
        if not self.params:
            return self.name
        inner = ", ".join(p.name if p.default is inspect.Parameter.empty
                          else f"{p.name}={p.default!r}" for p in self.params.values())
        return f"{self.name}({inner})"


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory's annotations, resolved. ``typing.get_type_hints`` gives up on all of
    them when one does not resolve (a return type imported only for type checkers, as in a
    plugin that imports torch when it builds); then each is resolved on its own."""
    try:
        return typing.get_type_hints(factory)
    except Exception:
        pass
    namespace = getattr(inspect.unwrap(factory), "__globals__", {})
    hints: dict[str, Any] = {}
    for name, ann in getattr(factory, "__annotations__", {}).items():
        try:
            hints[name] = eval(ann, namespace) if isinstance(ann, str) else ann
        except Exception:
            continue  # left as text: values are checked against the default's type
    return hints


def _params_of(factory: Callable[..., Any]) -> dict[str, Param]:
    sig = inspect.signature(factory)
    hints = _hints(factory)
    return {
        p.name: Param(p.name, p.default, hints.get(p.name, p.annotation))
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def closest(name: str, choices: list[str]) -> str | None:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return match[0] if match else None


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    near = closest(name, choices)
    hint = f"; did you mean '{near}'?" if near else ""
    return f"unknown {kind} '{name}'{hint} (choices: {', '.join(sorted(choices))})"


# what each kind's factory must return; checked when it is built
def _check_model(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


def _check_optimizer(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.optim.Optimizer)


def _check_schedule(obj: Any) -> bool:
    return hasattr(obj, "step") and hasattr(obj, "get_last_lr")


def _check_stopper(obj: Any) -> bool:
    return callable(getattr(obj, "update", None)) and hasattr(obj, "best_epoch")


def _check_executor(obj: Any) -> bool:
    return callable(getattr(obj, "run", None))


def _check_dataset(obj: Any) -> bool:
    from lrlab.data import Data, StreamingData

    return isinstance(obj, (Data, StreamingData))


RETURNS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "dataset": ("lrlab.data.Data or lrlab.data.StreamingData", _check_dataset),
    "model": ("torch.nn.Module", _check_model),
    "loss": ("callable (logits, targets) -> loss", callable),
    "optimizer": ("torch.optim.Optimizer", _check_optimizer),
    "schedule": ("LR scheduler (step, get_last_lr)", _check_schedule),
    "augmentation": ("callable Tensor -> Tensor", callable),
    "stopper": ("stopper (update(epoch, metrics), best_epoch)", _check_stopper),
    "executor": ("executor (run(runs, context))", _check_executor),
}


class Registry:
    """The components of every kind, by name, with the plugin that registered each."""

    def __init__(self) -> None:
        self._items: dict[str, dict[str, Component]] = {k: {} for k in KINDS}

    def register_for(self, kind: str, plugin: str) -> Register:
        """A ``register`` callable bound to one plugin and one kind."""

        def register(name: str, factory: Callable[..., Any], doc: str | None = None) -> None:
            if not isinstance(name, str) or not name or not _is_name(name) or "+" in name:
                raise PluginError(f"plugin '{plugin}' registered a {kind} with an invalid "
                                  f"name {name!r}")
            if not callable(factory):
                raise PluginError(f"plugin '{plugin}' registered {kind} '{name}' with a "
                                  f"factory that is not callable")
            old = self._items[kind].get(name)
            if old is not None:
                raise PluginError(f"{kind} '{name}' is registered twice: by plugin "
                                  f"'{old.plugin}' and by plugin '{plugin}'")
            self._items[kind][name] = Component(
                kind, name, factory, plugin, _first_line(doc or factory.__doc__),
                _params_of(factory))

        return register

    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def components(self, kind: str) -> list[Component]:
        return [self._items[kind][n] for n in self.names(kind)]

    def by_plugin(self, plugin: str) -> list[Component]:
        return [c for k in KINDS for c in self._items[k].values() if c.plugin == plugin]

    def adhoc(self) -> list[Component]:
        """The components registered on the fly: models named by an import path, and
        objects given to the Python API."""
        return [c for k in KINDS for c in self._items[k].values()
                if c.plugin in (IMPORT_PLUGIN, API_PLUGIN)]

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; a model's import path (``module:Name``,
        ``file.py:Name``) is resolved and registered the first time it is asked for."""
        found = self._items[kind].get(name)
        if found is not None:
            return found
        if ":" in name and is_import_path(name):
            if kind != "model":
                raise UsageError(f"{kind} '{name}': import paths name models only; a "
                                 f"{kind} comes from a plugin (see docs/plugins.md)")
            comp = flexible_component(kind, name, resolve_import_path(name), IMPORT_PLUGIN)
            self._items[kind][name] = comp
            return comp
        raise UsageError(unknown_name_message(kind, name, self.names(kind)))

    def _adopt(self, kind: str, spec: Spec) -> Component:
        """The component of a spec that carries its object (the Python API), registered
        under the spec's name the first time."""
        old = self._items[kind].get(spec.name)
        if old is not None:
            # a dataset's name holds a digest of its contents: the same name, the same data
            if old.source is spec.source or (kind == "dataset" and old.plugin == API_PLUGIN):
                return old
            if old.plugin == API_PLUGIN:
                raise UsageError(f"two different {kind}s are named '{spec.name}': name "
                                 f"one otherwise, e.g. lrlab.Spec('{spec.name}2', "
                                 f"source=...)")
            raise UsageError(f"the {kind} '{spec.name}' given to run_sweep has the name of "
                             f"the {kind} '{spec.name}' of plugin '{old.plugin}': name it "
                             f"otherwise, e.g. lrlab.Spec('my-{spec.name}', source=...)")
        if kind == "dataset":
            from lrlab.data import Data, StreamingData, as_data

            data = spec.source if isinstance(spec.source, (Data, StreamingData)) \
                else as_data(spec.source)[1]
            comp = Component(kind, spec.name, _Fixed(data), API_PLUGIN,
                             f"{len(data.y)} samples of shape {tuple(data.input_shape)}, "
                             f"given to run_sweep", source=spec.source)
        elif kind == "model":
            comp = flexible_component(kind, spec.name, spec.source, API_PLUGIN)
        else:
            raise UsageError(f"{kind} '{spec.name}': only models and datasets may be given "
                             f"as objects; a {kind} comes from a plugin")
        self._items[kind][spec.name] = comp
        return comp

    def check(self, kind: str, spec: Spec) -> Component:
        """Check that ``spec`` names a component of ``kind`` with valid parameters."""
        comp = self._adopt(kind, spec) if spec.source is not None else self.get(kind, spec.name)
        for key, value in spec.params:
            param = comp.params.get(key)
            if param is None and kind == "optimizer" and key == "lr":
                raise UsageError(f"optimizer '{spec.name}' takes its learning rate from --lr "
                                 f"(the lr axis), not as a parameter: write --lr {_fmt(value)}")
            if param is None and key in (comp.contract or ()):
                raise UsageError(f"{kind} '{spec.name}': '{key}' is not a parameter: lrlab "
                                 f"passes it, from the dataset")
            if param is None and comp.open_params:
                continue
            if param is None:
                choices = list(comp.params)
                near = closest(key, choices)
                hint = f"; did you mean '{near}'?" if near else ""
                known = ", ".join(choices) if choices else "none"
                raise UsageError(f"{kind} '{spec.name}' has no parameter '{key}'{hint} "
                                 f"(parameters: {known})")
            _check_type(kind, spec.name, param, value)
        given = spec.kwargs
        missing = [p.name for p in comp.params.values()
                   if p.default is inspect.Parameter.empty and p.name not in given]
        if missing:
            example = ", ".join(f"{m}=..." for m in missing)
            note = ""
            if comp.contract is not None and kind in CONTRACT:
                note = (" (lrlab passes " + " and ".join(CONTRACT[kind]) +
                        " to parameters of those names)")
            what = "parameters" if len(missing) > 1 else "parameter"
            raise UsageError(f"{kind} '{spec.name}' needs {what} "
                             f"{', '.join(repr(m) for m in missing)}: write "
                             f"{spec.name}({example}){note}")
        return comp

    def build(self, kind: str, spec: Spec, *args: Any) -> Any:
        """Call the factory of ``spec`` with the kind's contract arguments and its params."""
        comp = self.check(kind, spec)
        kwargs = {k: _coerce(comp.params[k], v) if k in comp.params else v
                  for k, v in spec.params}
        if comp.contract is None:
            obj = comp.factory(*args, **kwargs)
        else:
            named = dict(zip(CONTRACT.get(kind, ()), args, strict=False))
            obj = comp.factory(**{k: v for k, v in named.items() if k in comp.contract},
                               **kwargs)
        what, ok = RETURNS[kind]
        if not ok(obj):
            raise PluginError(f"{kind} '{spec.name}' from plugin '{comp.plugin}' returned "
                              f"{type(obj).__name__}, not a {what}")
        return obj


def _check_type(kind: str, name: str, param: Param, value: Any) -> None:
    """Refuse ``value`` for ``param`` unless it fits the parameter's annotation (or its
    default's type): one line naming the component, the parameter, the type and the value."""
    ann = param.expected
    if ann is not None and not matches(ann, value):
        raise UsageError(f"{kind} '{name}': parameter '{param.name}' must be "
                         f"{param.type_name}, got {value!r}")


_UNIONS = (typing.Union, types.UnionType)
_SEQUENCES = (list, tuple, abc.Sequence, abc.MutableSequence, abc.Collection, abc.Iterable)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)
# 'true' / 'false' for a bool, however the value got here (a Spec built in code, a string
# in a sweep file)
_BOOL_WORDS = {"true": True, "false": False, "True": True, "False": False}


def matches(ann: Any, value: Any) -> bool:
    """Whether ``value`` (as read from TOML or the command line) fits ``ann``: ``int``,
    ``float`` (an int too), ``bool`` (never 0/1), ``str``, ``None``, ``X | Y``,
    ``Optional[X]``, ``Literal[...]``, ``tuple[X, ...]`` / ``tuple[X, Y]`` and ``list[X]``
    (a list or a tuple: TOML has only arrays), ``dict[K, V]``, ``Annotated[X, ...]``, any
    class; what it cannot judge (a TypeVar, a Protocol) it lets through."""
    if ann is typing.Any or ann is object:
        return True
    if ann is None or ann is type(None):
        return value is None
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return matches(args[0], value)
    if origin is typing.Literal:
        # Literal[1] is not met by True, nor Literal[True] by 1
        return any(value == a and type(value) is type(a) for a in args)
    if origin in _UNIONS:
        return any(matches(a, value) for a in args)
    if ann is bool:
        return isinstance(value, bool) or (isinstance(value, str) and value in _BOOL_WORDS)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ann is str:
        return isinstance(value, str)
    if origin is tuple or ann is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(args[0], v) for v in value)
        if args == ((),):
            return len(value) == 0
        return len(value) == len(args) and all(map(matches, args, value))
    if origin in _SEQUENCES or ann in (list, abc.Sequence):
        if not isinstance(value, (tuple, list)):
            return False
        return not args or all(matches(args[0], v) for v in value)
    if origin in _MAPPINGS or ann in _MAPPINGS:
        if not isinstance(value, dict):
            return False
        if len(args) != 2:
            return True
        return all(matches(args[0], k) and matches(args[1], v) for k, v in value.items())
    if origin in (set, frozenset, abc.Set, abc.MutableSet) or ann in (set, frozenset):
        if not isinstance(value, (set, frozenset, tuple, list)):
            return False
        return not args or all(matches(args[0], v) for v in value)
    if isinstance(origin, type):
        return isinstance(value, origin)
    if isinstance(ann, type):
        if getattr(ann, "_is_protocol", False):
            return True
        return isinstance(value, ann)
    return True  # a TypeVar, a NewType, a string: not ours to judge


def type_name(ann: Any) -> str:
    """``ann`` as a user reads it: ``int``, ``int | None``, ``tuple[int, ...]``."""
    if ann is None or ann is type(None):
        return "None"
    if ann is Ellipsis:
        return "..."
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(map(repr, args))
    if origin in _UNIONS:
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        base = getattr(origin, "__name__", str(origin).replace("typing.", ""))
        if args == ((),):
            return f"{base}[()]"
        return f"{base}[{', '.join(type_name(a) for a in args)}]" if args else base
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "")


def coerce(ann: Any, value: Any) -> Any:
    """``value``, checked against ``ann`` already, in the form the factory expects: a float
    for a float, a bool for ``'true'``, a tuple for a tuple (TOML arrays are lists), a list
    for a list (``(1, 2)`` on the command line is a tuple)."""
    if ann is None or ann is typing.Any:
        return value
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return coerce(args[0], value)
    if origin is typing.Literal:
        return value
    if origin in _UNIONS:
        # the first member the value fits exactly, so 3 stays 3 for int | float
        for strict in (True, False):
            for member in args:
                if matches(member, value) and (not strict or _exact(member, value)):
                    return coerce(member, value)
        return value
    if ann is float:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if ann is bool:
        return _BOOL_WORDS[value] if isinstance(value, str) else value
    if (origin is tuple or ann is tuple) and isinstance(value, (tuple, list)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v) for v in value)
        if args and args != ((),) and len(args) == len(value):
            return tuple(map(coerce, args, value))
        return tuple(value)
    if (origin is list or ann is list) and isinstance(value, (tuple, list)):
        return [coerce(args[0], v) for v in value] if args else list(value)
    if (origin is dict or ann is dict) and isinstance(value, dict) and len(args) == 2:
        return {coerce(args[0], k): coerce(args[1], v) for k, v in value.items()}
    if origin in (set, frozenset) and isinstance(value, (set, frozenset, tuple, list)):
        return origin(coerce(args[0], v) for v in value) if args else origin(value)
    return value


def _exact(ann: Any, value: Any) -> bool:
    """Whether ``value`` fits ``ann`` without being converted (an int is not an exact
    float, a list not an exact tuple)."""
    if ann is float:
        return isinstance(value, float)
    if ann is bool:
        return isinstance(value, bool)
    origin = typing.get_origin(ann) or ann
    if origin is tuple:
        return isinstance(value, tuple)
    if origin is list:
        return isinstance(value, list)
    return True


def _coerce(param: Param, value: Any) -> Any:
    return coerce(param.expected, value)
