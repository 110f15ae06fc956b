"""Components: how they are written (``name(key=value)``), registered, checked and built.

A component is a factory function registered under a name by a plugin. Its
keyword-only parameters are the component's parameters, so ``lrlab list`` and the
checks on user input read them straight from the signature::

    def mlp(input_shape, num_classes, *, width: int = 128, depth: int = 2): ...
"""

from __future__ import annotations

import ast
import difflib
import inspect
import types
import typing
from collections import abc
from collections.abc import Callable
from dataclasses import dataclass, field
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
    """Split on ``sep`` outside parentheses/brackets: ``"a(x=1,y=2),b"`` -> 2 parts."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
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
    """Parse ``"mlp"``, ``"mlp(width=64, depth=3)"`` or a TOML table ``{name="mlp", ...}``."""
    if isinstance(value, Spec):
        return value
    if isinstance(value, dict):
        if "name" not in value:
            raise UsageError(f"{kind} table {value!r} has no 'name' key")
        params = tuple(sorted((k, v) for k, v in value.items() if k != "name"))
        return Spec(str(value["name"]), params)
    if not isinstance(value, str):
        raise UsageError(f"{kind} {value!r} is not a name like 'mlp' or 'mlp(width=64)'")
    text = value.strip()
    if "(" not in text:
        if not text or not _is_name(text):
            raise UsageError(f"malformed {kind} {value!r}: expected a name like 'mlp'")
        return Spec(text)
    name, _, rest = text.partition("(")
    name = name.strip()
    if not rest.endswith(")") or not _is_name(name):
        raise UsageError(f"malformed {kind} {value!r}: expected name(key=value, ...)")
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

    @property
    def signature(self) -> str:
        if not self.params:
            return self.name
        inner = ", ".join(f"{p.name}={p.default!r}" for p in self.params.values())
        return f"{self.name}({inner})"


def _params_of(factory: Callable[..., Any]) -> dict[str, Param]:
    sig = inspect.signature(factory)
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # unresolvable annotations: fall back to the defaults' types
        hints = {}
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
    from lrlab.data import Data

    return isinstance(obj, Data)


RETURNS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "dataset": ("lrlab.data.Data", _check_dataset),
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

    def get(self, kind: str, name: str) -> Component:
        try:
            return self._items[kind][name]
        except KeyError:
            raise UsageError(unknown_name_message(kind, name, self.names(kind))) from None

    def check(self, kind: str, spec: Spec) -> Component:
        """Check that ``spec`` names a component of ``kind`` with valid parameters."""
        comp = self.get(kind, spec.name)
        for key, value in spec.params:
            param = comp.params.get(key)
            if param is None and kind == "optimizer" and key == "lr":
                raise UsageError(f"optimizer '{spec.name}' takes its learning rate from --lr "
                                 f"(the lr axis), not as a parameter: write --lr {_fmt(value)}")
            if param is None:
                choices = list(comp.params)
                near = closest(key, choices)
                hint = f"; did you mean '{near}'?" if near else ""
                known = ", ".join(choices) if choices else "none"
                raise UsageError(f"{kind} '{spec.name}' has no parameter '{key}'{hint} "
                                 f"(parameters: {known})")
            _check_type(kind, spec.name, param, value)
        return comp

    def build(self, kind: str, spec: Spec, *args: Any) -> Any:
        """Call the factory of ``spec`` with the kind's contract arguments and its params."""
        comp = self.check(kind, spec)
        kwargs = {k: _coerce(comp.params[k], v) for k, v in spec.params}
        obj = comp.factory(*args, **kwargs)
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
