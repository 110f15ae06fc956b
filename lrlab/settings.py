"""Every setting of a sweep, declared once.

A :class:`Setting` holds a setting's name, its parser (a TOML value, an API value or a
flag's text -> the checked value), its default, unit and help, and what it takes part
in: whether it is a grid axis (a list of values), part of a run's resume key, handed to
the training loop. Everything else is derived from :data:`SWEEP`:

- the options of ``lrlab sweep`` (:mod:`lrlab.cli`), each help text ending in its default;
- the keys a sweep file and ``[tool.lrlab]`` accept, and their parsing (:mod:`lrlab.config`);
- the manifest's ``config`` and each run's resume key (:func:`lrlab.config.run_key`);
- :class:`TrainSettings`, what :func:`lrlab.engine.train` is given beyond the run's axes.

Adding a setting is one :class:`Setting` here plus the code that uses it (see
docs/contributing.md). The range test's own settings are declared the same way in
:mod:`lrlab.lrfind.settings`.

This module imports nothing heavy (no torch, no pandas): the command line builds its
``--help`` from it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from lrlab.errors import UsageError
from lrlab.registry import Spec, closest, parse_spec, split_top

Parser = Callable[[str, Any], Any]  # (setting name, raw value) -> checked value


@dataclass(frozen=True)
class Setting:
    """One setting: how it is read, what it defaults to, where it goes."""

    name: str
    parse: Parser  # the raw value (TOML, API or a flag's text) -> the checked value
    default: Any  # the default as a user writes it; it is read like any given value
    help: str  # one line, for --help and the docs
    unit: str = ""  # what its numbers count (epochs, samples, threads...)
    axis: bool = False  # a grid axis: every value of its list is tried
    key: bool = False  # part of a run's resume key: a change retrains the run
    train: bool = False  # handed to the training loop (a field of TrainSettings)
    switch: bool = False  # a yes/no setting: --name/--no-name on the command line
    repeat: bool = False  # the option may be given many times (--threshold a=1 --threshold b=2)
    option: bool = True  # has a ``lrlab sweep`` option (False: a file or API key only)
    flag: str = ""  # the option's name when it is not --<name-with-dashes>
    metavar: str = "TEXT"
    shown: str = ""  # the default as --help shows it, when not the default itself
    dump: Callable[[Any], Any] = field(default=lambda v: v)  # the value as JSON
    # an axis in run ids: "lr" makes lr0.1; "" writes the value itself (mlp, noise(std=0.3))
    id_prefix: str = ""
    id_always: bool = False  # in every run id, not only when the axis varies

    @property
    def option_name(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def read(self, value: Any) -> Any:
        """The checked value of ``value`` (one line of UsageError when it is wrong)."""
        return self.parse(self.name, value)

    def value(self) -> Any:
        """The checked default."""
        return self.read(self.default)

    def shown_default(self) -> str:
        """The default as a user writes it (``1e-4,1e-3``, ``0.6,0.2,0.2``, ``auto``)."""
        if self.shown:
            return self.shown
        value = self.default
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, (list, tuple)):
            return ",".join(_shown(v) for v in value) or "none"
        if isinstance(value, dict):
            return "none" if not value else ",".join(f"{k}={v:g}" for k, v in value.items())
        return "none" if value is None else _shown(value)

    def help_text(self) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.help}{unit} [default: {self.shown_default()}]"


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Settings(Mapping[str, Setting]):
    """An ordered, read-only table of settings by name."""

    def __init__(self, settings: Iterable[Setting]) -> None:
        self._by_name = {s.name: s for s in settings}

    def __getitem__(self, name: str) -> Setting:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def axes(self) -> list[Setting]:
        return [s for s in self.values() if s.axis]

    def fixed(self) -> list[Setting]:
        return [s for s in self.values() if not s.axis]

    def defaults(self) -> dict[str, Any]:
        """Every setting's checked default."""
        return {s.name: s.value() for s in self.values()}


# -- parsers -----------------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    """A list of values: a list as it is, ``"a,b(c=1,d=2)"`` split at its top-level commas."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [v for v in split_top(value, ",") if v != ""]
    return [value]


def number(name: str, value: Any, kind: type = float) -> Any:
    """``value`` as an int or float; a bool, or text that is not a number, is refused."""
    if isinstance(value, str):
        try:
            value = float(value) if kind is float else int(value)
        except ValueError:
            article = "n integer" if kind is int else " number"
            raise UsageError(f"{name} value {value!r} is not a{article}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{name} value {value!r} is not a number")
    if kind is int and float(value) != int(value):
        raise UsageError(f"{name} value {value!r} is not an integer")
    return kind(value)


def integer(low: int, what: str | None = None) -> Parser:
    """A parser of whole numbers ``>= low``."""
    def parse(name: str, value: Any) -> int:
        n = number(name, value, int)
        if n < low:
            raise UsageError(f"{what or name} must be >= {low}, got {n}")
        return n
    return parse


def nonnegative(name: str, value: Any) -> float:
    """A finite number ``>= 0``."""
    x = number(name, value, float)
    if not (math.isfinite(x) and x >= 0):
        raise UsageError(f"{name} must be a number >= 0, got {value!r}")
    return x


def boolean(name: str, value: Any) -> bool:
    """``true``/``false``: a bool, or its text as TOML writes it."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be true or false, got {value!r}")
    return value


def text(name: str, value: Any) -> str:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise UsageError(f"{name} must be text, got {value!r}")
    return str(value)


def device(name: str, value: Any) -> str:
    value = text(name, value)
    if value not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", value):
        raise UsageError(f"device must be auto, cpu or cuda, got {value!r}")
    return value


def choice(*options: str) -> Parser:
    """A parser of one word among ``options`` (``best``, ``all``, ``none``)."""
    def parse(name: str, value: Any) -> str:
        word = text(name, value).strip().lower()
        if word not in options:
            near = closest(word, list(options))
            hint = f"; did you mean '{near}'?" if near else ""
            raise UsageError(f"{name} must be {', '.join(options[:-1])} or {options[-1]}, "
                             f"got {value!r}{hint}")
        return word
    return parse


def folder_name(what: str = "name") -> Parser:
    """A parser of results-folder names (None: the command derives one)."""
    def parse(name: str, value: Any) -> str | None:
        if value is None:
            return None
        value = text(name, value)
        check_name(value, what)
        return value
    return parse


def check_name(name: str, what: str = "name") -> None:
    """A folder name under --out: letters, digits, '.', '_' or '-' (no paths)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise UsageError(f"{what} {name!r} must be letters, digits, '.', '_' or '-'")


def fractions(name: str, value: Any) -> tuple[float, float, float]:
    from lrlab.data import check_fractions

    return check_fractions(tuple(number(name, v, float) for v in as_list(value)))


def component(kind: str) -> Parser:
    def parse(name: str, value: Any) -> Spec:
        return parse_spec(value, kind)
    return parse


def strings(name: str, value: Any) -> list[str]:
    return [str(v) for v in as_list(value)]


def thresholds(name: str, value: Any) -> dict[str, float]:
    """The verdict thresholds: a table (TOML, API) or ``KEY=VALUE`` items (flags), checked
    and filled in with lrlab's own (:func:`lrlab.verdicts.check_thresholds`)."""
    from lrlab.verdicts import check_thresholds

    return check_thresholds(threshold_table(value))


def threshold_table(value: Any) -> dict[str, Any]:
    """The thresholds as given, unchecked: layers are merged key by key before parsing."""
    if isinstance(value, (list, tuple)):
        table = {}
        for item in value:
            key, eq, raw = str(item).partition("=")
            try:
                table[key.strip()] = float(raw)
            except ValueError:
                raise UsageError(f"--threshold {item!r} is not KEY=NUMBER") from None
            if not eq or not key.strip():
                raise UsageError(f"--threshold {item!r} is not KEY=NUMBER")
        return table
    if not isinstance(value, dict):
        raise UsageError("thresholds must be a table of name = number")
    return dict(value)


# -- the grid axes -----------------------------------------------------------------------

AUTO_LR = re.compile(r"^auto(?::(\d+))?$")


def _not_empty(name: str, value: Any) -> list[Any]:
    values = as_list(value)
    if not values:
        raise UsageError(f"{name} has no values: the grid would be empty")
    return values


def component_axis(kind: str) -> Parser:
    """A list of components of ``kind``, each ``name`` or ``name(key=value, ...)``, a
    model's import path (``models.py:Net(width=64)``), or, from the Python API, an object:
    a model class or factory, a dataset as a tensor pair ``(x, y)``, a ``lrlab.Data`` or a
    torch ``Dataset`` (:func:`lrlab.registry.object_spec`); a list of several is an axis."""
    def parse(name: str, value: Any) -> list[Spec]:
        if kind == "dataset" and _one_dataset(value):
            value = [value]  # (x, y) is one dataset, not a list of two
        return [parse_spec(v, kind) for v in _not_empty(name, value)]
    return parse


def _one_dataset(value: Any) -> bool:
    """A tensor pair ``(x, y)`` given to the API (checked without importing torch unless
    the value is such an object)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2 or \
            not hasattr(value[0], "shape"):
        return False
    from lrlab.data import is_one_dataset

    return is_one_dataset(value)


def augment_axis(name: str, value: Any) -> list[tuple[Spec, ...]]:
    """A list of augmentation pipelines, each ``a+b(k=v)``."""
    return [tuple(parse_spec(p, "augmentation") for p in split_top(v, "+"))
            if isinstance(v, str) else (parse_spec(v, "augmentation"),)
            for v in _not_empty(name, value)]


def lr_axis(name: str, value: Any) -> list[float | str]:
    """Learning rates > 0, or ``auto``/``auto:N`` (the range test chooses)."""
    out: list[float | str] = []
    for v in _not_empty(name, value):
        if isinstance(v, str) and AUTO_LR.match(v.strip()):
            out.append(v.strip())
            continue
        lr = number("lr", v, float)
        if not (lr > 0 and math.isfinite(lr)):
            raise UsageError(f"learning rate must be > 0, got {v!r}")
        out.append(lr)
    ids: dict[str, float] = {}
    for lr in (v for v in out if not isinstance(v, str)):
        other = ids.setdefault(f"{lr:g}", lr)
        if other != lr:
            raise UsageError(f"learning rates {other!r} and {lr!r} would both be run "
                             f"'lr{lr:g}': give them more distinct values")
    return out


def integer_axis(low: int, what: str) -> Parser:
    one = integer(low, what)

    def parse(name: str, value: Any) -> list[int]:
        return [one(name, v) for v in _not_empty(name, value)]
    return parse


def _component_strings(values: list[Any]) -> list[str]:
    return [str(v) for v in values]


def augment_str(specs: tuple[Spec, ...]) -> str:
    return "+".join(str(s) for s in specs)


def _axis(name: str, kind: str, default: str, help: str, **kw: Any) -> Setting:
    parse = augment_axis if kind == "augmentation" else component_axis(kind)
    dump = ((lambda vs: [augment_str(v) for v in vs]) if kind == "augmentation"
            else _component_strings)
    return Setting(name, parse, default, help, axis=True, key=True, dump=dump, **kw)


# -- the declarations --------------------------------------------------------------------
# The default sweep: a small MLP on scikit-learn's digits, learning rates from far too
# small to far too large, with and without augmentation, long enough to overfit.

SWEEP = Settings([
    # grid axes, in the order a run's parameters are listed
    _axis("dataset", "dataset", "digits", "Datasets, e.g. digits,mnist"),
    _axis("model", "model", "mlp", "Models, e.g. mlp(width=64),cnn", id_always=True),
    _axis("loss", "loss", "cross_entropy", "Losses, e.g. cross_entropy,mse"),
    _axis("optimizer", "optimizer", "sgd(momentum=0.9)",
          "Optimizers, e.g. sgd(momentum=0.9),adam"),
    _axis("schedule", "schedule", "constant", "LR schedules, e.g. constant,onecycle"),
    _axis("augment", "augmentation", "none,noise(std=0.3)",
          "Augmentations, e.g. none,flip+crop", id_always=True),
    _axis("stopper", "stopper", "none", "Early stopping, e.g. none,patience(patience=3)"),
    Setting("lr", lr_axis, [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
            "Learning rates, e.g. 1e-3,1e-2, or auto[:N] (a range test chooses N)",
            axis=True, key=True, metavar="LRS", id_prefix="lr", id_always=True),
    Setting("epochs", integer_axis(1, "epochs"), [40], "Epoch counts, e.g. 10,30",
            axis=True, key=True, metavar="INTS", id_prefix="ep", id_always=True),
    Setting("batch_size", integer_axis(1, "batch size"), [32], "Batch sizes, e.g. 32,128",
            unit="samples", axis=True, key=True, metavar="INTS", id_prefix="bs"),
    Setting("split_seed", integer_axis(0, "split seed"), [0],
            "Seeds of the stratified train/val/test split, e.g. 0,1 (instead of "
            "--split-seeds); several repeat every configuration on each split",
            axis=True, key=True, metavar="INTS", id_prefix="sp"),
    Setting("seed", integer_axis(0, "seed"), [0],
            "The seeds themselves, e.g. 0,7 (instead of --seeds)", axis=True, key=True,
            metavar="INTS", id_prefix="s", id_always=True),
    # fixed settings
    Setting("seeds", integer(1), 1, "Seeds per configuration: seeds 0..N-1",
            metavar="N"),
    Setting("split_seeds", integer(1), 1, "Splits per configuration: split seeds "
            "0..N-1, so intervals include the split's variance (Monte Carlo "
            "cross-validation)", metavar="N"),
    Setting("name", folder_name("sweep name"), None, "Sweep name: results go to OUT/NAME/ (default: the "
            "datasets' names)", shown="the datasets' names"),
    Setting("out", text, "reports", "Folder that holds every sweep's results",
            metavar="DIR"),
    Setting("split", fractions, (0.6, 0.2, 0.2), "train,val,test fractions of the "
            "dataset (stratified)", key=True, dump=list, metavar="F,F,F"),
    Setting("device", device, "auto", "auto, cpu or cuda (auto takes CUDA when present)"),
    Setting("executor", component("executor"), "auto",
            "How runs are trained: auto (vectorized where it gives the same answers, "
            "else local), local, vectorized, or a plugin's", dump=str),
    Setting("data_root", text, "data", "Folder of downloadable datasets (MNIST, "
            "CIFAR-10)", key=True, metavar="DIR"),
    Setting("download", boolean, False, "Let torchvision download missing datasets",
            switch=True),
    Setting("eval_batch_size", integer(1), 4096, "Batch size of the clean evaluations",
            unit="samples per forward pass", train=True, metavar="INT"),
    Setting("compile", boolean, False, "torch.compile the models", key=True, train=True,
            switch=True),
    Setting("amp", boolean, False, "Mixed precision (bfloat16) on CUDA", key=True,
            train=True, switch=True),
    Setting("threads", integer(0), 0, "CPU threads per run (0: one for small models, "
            "else the cores free of other work, shared among lrlab's trainings)", train=True,
            metavar="INT"),
    Setting("workers", integer(0), 0, "DataLoader worker processes reading a streamed "
            "dataset (0: half the CPU cores, 1 to 8)", train=True, metavar="INT"),
    Setting("checkpoint_s", nonnegative, 30,
            "How often a run in flight is checkpointed, at an epoch boundary (0: every "
            "epoch); a killed sweep resumes from there", unit="seconds", metavar="SECONDS"),
    Setting("save", choice("best", "all", "none"), "best",
            "Which runs' weights are saved in weights/ (what lrlab.load_model loads): best "
            "(the best configuration's seeds), all or none", train=True, metavar="best|all|none"),
    Setting("thresholds", thresholds, {}, "Verdict threshold KEY=VALUE, e.g. "
            "overfit_gl=10 (repeatable; a table in TOML)", train=True, flag="--threshold",
            metavar="KEY=VALUE", shown="the README's table", dump=dict, repeat=True),
    Setting("plugins", strings, [], "Plugin modules to load, as -p does", option=False),
])

AXES = tuple(s.name for s in SWEEP.axes())


def _train_settings_class() -> type:
    fields: list[Any] = [("device", "torch.device")]
    for s in SWEEP.values():
        if s.train:
            fields.append((s.name, Any, field(default_factory=s.value)))
    cls = make_dataclass("TrainSettings", fields, frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = ("How a run is trained beyond its axes: the device, and every setting "
                   "declared with train=True in lrlab.settings.SWEEP (" +
                   ", ".join(s.name for s in SWEEP.values() if s.train) + ").")
    return cls


TrainSettings = _train_settings_class()


def train_settings(values: Mapping[str, Any], device: Any) -> Any:
    """The :class:`TrainSettings` of a sweep whose settings are ``values``."""
    return TrainSettings(device=device, **{s.name: values[s.name] for s in SWEEP.values()
                                           if s.train})
