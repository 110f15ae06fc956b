"""A sweep's configuration: defaults, [tool.lrlab], sweep files, flags; the grid and its runs.

Precedence, lowest first: built-in defaults < ``[tool.lrlab]`` in pyproject.toml <
the sweep file < command-line flags. Every axis accepts one value or a list.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.errors import UsageError
from lrlab.registry import Spec, closest, parse_spec, split_top
from lrlab.verdicts import check_thresholds

# axis -> registry kind, for the component axes
COMPONENT_AXES = {"dataset": "dataset", "model": "model", "loss": "loss",
                  "optimizer": "optimizer", "schedule": "schedule",
                  "augment": "augmentation", "stopper": "stopper"}
NUMBER_AXES = ("lr", "epochs", "batch_size", "seed")
AXES = tuple(COMPONENT_AXES) + NUMBER_AXES

# The default sweep: a small MLP on scikit-learn's digits, learning rates from far too
# small to far too large, with and without augmentation, long enough to overfit.
DEFAULTS: dict[str, Any] = {
    "dataset": ["digits"],
    "model": ["mlp"],
    "loss": ["cross_entropy"],
    "optimizer": ["sgd(momentum=0.9)"],
    "schedule": ["constant"],
    "augment": ["none", "noise(std=0.3)"],
    "stopper": ["none"],
    "lr": [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
    "epochs": [40],
    "batch_size": [32],
    "seeds": 1,
}

SETTINGS = {
    "name": "the sweep's name: results go to <out>/<name>/",
    "seeds": "number of seeds per configuration (seeds 0..N-1)",
    "split": "train,val,test fractions of the dataset (stratified)",
    "split_seed": "seed of the train/val/test split (the same for every run)",
    "device": "auto, cpu or cuda (auto takes CUDA when present)",
    "executor": "how runs are trained: auto (vectorized where it gives the same answers, "
                "else local), local, vectorized, or a plugin's",
    "data_root": "folder of downloadable datasets (MNIST, CIFAR-10)",
    "download": "allow torchvision to download missing datasets",
    "out": "folder that holds every sweep's results",
    "thresholds": "verdict thresholds (a table)",
    "plugins": "plugin modules to load, as -p does",
    "eval_batch_size": "batch size of the clean evaluations",
    "compile": "torch.compile the models",
    "amp": "automatic mixed precision on CUDA",
    "threads": "CPU threads per run (0: one for small models, else torch's default)",
}
KEYS = set(AXES) | set(SETTINGS)


@dataclass(frozen=True)
class Run:
    """One training run: a value for every axis."""

    run_id: str
    dataset: Spec
    model: Spec
    loss: Spec
    optimizer: Spec
    schedule: Spec
    augment: tuple[Spec, ...]
    stopper: Spec
    lr: float
    epochs: int
    batch_size: int
    seed: int

    def axes(self) -> dict[str, Any]:
        """Every axis as a table cell: components as their strings, numbers as numbers."""
        return {"dataset": str(self.dataset), "model": str(self.model),
                "loss": str(self.loss), "optimizer": str(self.optimizer),
                "schedule": str(self.schedule), "augment": augment_str(self.augment),
                "stopper": str(self.stopper), "lr": self.lr, "epochs": self.epochs,
                "batch_size": self.batch_size, "seed": self.seed}


def augment_str(specs: tuple[Spec, ...]) -> str:
    return "+".join(str(s) for s in specs)


@dataclass
class SweepConfig:
    """Everything that defines a sweep; ``grid`` maps each axis to its values."""

    name: str = "digits"
    grid: dict[str, list[Any]] = field(default_factory=dict)
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_seed: int = 0
    device: str = "auto"
    executor: Spec = field(default_factory=lambda: Spec("auto"))
    data_root: str = "data"
    download: bool = False
    out: str = "reports"
    thresholds: dict[str, float] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    eval_batch_size: int = 4096
    compile: bool = False
    amp: bool = False
    threads: int = 0
    source: str | None = None  # the sweep file, if any
    command_line: str = ""
    # an LR range test run for lr "auto", waiting to be stored when the sweep starts
    lrfind_pending: Any = field(default=None, repr=False, compare=False)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) / self.name

    def settings(self) -> dict[str, Any]:
        """The fixed settings, as stored in the manifest."""
        return {"split": list(self.split), "split_seed": self.split_seed,
                "device": self.device, "executor": str(self.executor),
                "data_root": self.data_root, "download": self.download,
                "eval_batch_size": self.eval_batch_size, "compile": self.compile,
                "amp": self.amp, "threads": self.threads}

    def grid_strings(self) -> dict[str, list[Any]]:
        out = {}
        for axis, values in self.grid.items():
            if axis == "augment":
                out[axis] = [augment_str(v) for v in values]
            elif axis in COMPONENT_AXES:
                out[axis] = [str(v) for v in values]
            else:
                out[axis] = list(values)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "grid": self.grid_strings(), **self.settings(),
                "out": self.out, "thresholds": self.thresholds, "plugins": self.plugins,
                "source": self.source}


# -- reading values ----------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [v for v in split_top(value, ",") if v != ""]
    return [value]


def _number(axis: str, value: Any, kind: type) -> Any:
    if isinstance(value, str):
        try:
            value = float(value) if kind is float else int(value)
        except ValueError:
            raise UsageError(f"{axis} value {value!r} is not a{'n integer' if kind is int else ' number'}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{axis} value {value!r} is not a number")
    if kind is int and float(value) != int(value):
        raise UsageError(f"{axis} value {value!r} is not an integer")
    return kind(value)


AUTO_LR = re.compile(r"^auto(?::(\d+))?$")


def parse_axis(axis: str, value: Any) -> list[Any]:
    values = _as_list(value)
    if not values:
        raise UsageError(f"{axis} has no values: the grid would be empty")
    if axis == "augment":
        return [tuple(parse_spec(p, "augmentation") for p in split_top(v, "+"))
                if isinstance(v, str) else (parse_spec(v, "augmentation"),) for v in values]
    if axis in COMPONENT_AXES:
        return [parse_spec(v, COMPONENT_AXES[axis]) for v in values]
    if axis == "lr":
        out = []
        for v in values:
            if isinstance(v, str) and AUTO_LR.match(v.strip()):
                out.append(v.strip())
                continue
            lr = _number("lr", v, float)
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
    nums = [_number(axis, v, int) for v in values]
    low = {"epochs": 1, "batch_size": 1, "seed": 0}[axis]
    for n in nums:
        if n < low:
            name = {"epochs": "epochs", "batch_size": "batch size", "seed": "seed"}[axis]
            raise UsageError(f"{name} must be >= {low}, got {n}")
    return nums


def _check_keys(table: dict[str, Any], where: str) -> None:
    for key in table:
        if key not in KEYS:
            near = closest(key, sorted(KEYS))
            hint = f"; did you mean '{near}'?" if near else ""
            raise UsageError(f"unknown key '{key}' in {where}{hint}")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"sweep file {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"sweep file {path} is a folder, not a TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"malformed TOML in {path}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read sweep file {path}: {exc.strerror or exc}") from None


def pyproject_defaults(start: Path) -> dict[str, Any]:
    """The [tool.lrlab] table of the nearest pyproject.toml at or above ``start`` that has
    one ({} when none does)."""
    for folder in [start.resolve(), *start.resolve().parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            table = read_toml(candidate).get("tool", {}).get("lrlab")
            if table is not None:
                _check_keys(table, f"[tool.lrlab] of {candidate}")
                return table
    return {}


def build_config(sweep_file: Path | None = None, overrides: dict[str, Any] | None = None,
                 *, cwd: Path | None = None, command_line: str = "") -> SweepConfig:
    """Merge defaults, [tool.lrlab], the sweep file and ``overrides`` (flags or API)."""
    cwd = cwd or Path.cwd()
    merged: dict[str, Any] = dict(DEFAULTS)
    layers = [pyproject_defaults(cwd)]
    if sweep_file is not None:
        table = read_toml(sweep_file)
        _check_keys(table, str(sweep_file))
        layers.append({"name": sweep_file.stem, **table})  # its own name, else its stem
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_keys(overrides, "the arguments")
    layers.append(overrides)
    for layer in layers:  # later layers win; thresholds merge key by key
        if not isinstance(layer.get("thresholds", {}), dict):
            raise UsageError("thresholds must be a table of name = number")
        if "seed" in layer and "seeds" in layer:
            raise UsageError("give seed (a list of seeds) or seeds (how many), not both")
        thresholds = {**merged.get("thresholds", {}), **layer.get("thresholds", {})}
        for given, other in (("seed", "seeds"), ("seeds", "seed")):
            if given in layer:  # a later layer's seed replaces an earlier seeds, and back
                merged.pop(other, None)
        merged.update(layer)
        merged["thresholds"] = thresholds

    grid: dict[str, list[Any]] = {}
    for axis in AXES:
        if axis == "seed":
            if "seed" in merged:
                grid["seed"] = parse_axis("seed", merged["seed"])
            else:
                n = _number("seeds", merged.get("seeds", 1), int)
                if n < 1:
                    raise UsageError(f"seeds must be >= 1, got {n}")
                grid["seed"] = list(range(n))
            continue
        grid[axis] = parse_axis(axis, merged[axis])

    cfg = SweepConfig(grid=grid, source=str(sweep_file) if sweep_file else None,
                      command_line=command_line)
    cfg.name = str(merged.get("name") or _default_name(grid))
    check_name(cfg.name, "sweep name")
    from lrlab.data import check_fractions

    split = merged.get("split", cfg.split)
    cfg.split = check_fractions(tuple(_number("split", v, float) for v in _as_list(split)))
    cfg.split_seed = _number("split_seed", merged.get("split_seed", 0), int)
    cfg.device = str(merged.get("device", "auto"))
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise UsageError(f"device must be auto, cpu or cuda, got {cfg.device!r}")
    cfg.executor = parse_spec(merged.get("executor", "auto"), "executor")
    cfg.data_root = str(merged.get("data_root", "data"))
    cfg.download = _flag("download", merged.get("download", False))
    cfg.out = str(merged.get("out", "reports"))
    cfg.thresholds = check_thresholds(merged.get("thresholds", {}))
    cfg.plugins = [str(p) for p in _as_list(merged.get("plugins", []))]
    cfg.eval_batch_size = _number("eval_batch_size", merged.get("eval_batch_size", 4096), int)
    if cfg.eval_batch_size < 1:
        raise UsageError(f"eval_batch_size must be >= 1, got {cfg.eval_batch_size}")
    cfg.compile = _flag("compile", merged.get("compile", False))
    cfg.amp = _flag("amp", merged.get("amp", False))
    cfg.threads = _number("threads", merged.get("threads", 0), int)
    if cfg.threads < 0:
        raise UsageError(f"threads must be >= 0, got {cfg.threads}")
    return cfg


def check_name(name: str, what: str = "name") -> None:
    """A folder name under --out: letters, digits, '.', '_' or '-' (no paths)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise UsageError(f"{what} {name!r} must be letters, digits, '.', '_' or '-'")


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{key} must be true or false, got {value!r}")
    return value


def _default_name(grid: dict[str, list[Any]]) -> str:
    return "-".join(dict.fromkeys(s.name for s in grid["dataset"]))


# -- expanding the grid ------------------------------------------------------------------


def _id_part(axis: str, value: Any) -> str:
    if axis == "lr":
        return f"lr{value:g}"
    if axis == "epochs":
        return f"ep{value}"
    if axis == "batch_size":
        return f"bs{value}"
    if axis == "seed":
        return f"s{value}"
    if axis == "augment":
        return augment_str(value)
    return str(value).replace(" ", "")


# the parts every id has, in order; the others join when they vary in the grid
ID_ALWAYS = ("model", "lr", "epochs", "augment", "seed")
ID_ORDER = ("dataset", "model", "loss", "optimizer", "schedule", "lr", "epochs",
            "batch_size", "augment", "stopper", "seed")


def run_id(values: dict[str, Any], varying: set[str]) -> str:
    return "-".join(_id_part(a, values[a]) for a in ID_ORDER
                    if a in ID_ALWAYS or a in varying)


def expand(cfg: SweepConfig) -> list[Run]:
    """Every combination of the grid's values, as runs with readable, stable ids."""
    for axis in AXES:
        if not cfg.grid.get(axis):
            raise UsageError(f"{axis} has no values: the grid would be empty")
        if any(isinstance(v, str) for v in cfg.grid[axis]) and axis == "lr":
            raise UsageError("lr 'auto' must be resolved by the LR finder before expansion")
    varying = {a for a in AXES if len(cfg.grid[a]) > 1}
    runs, seen = [], {}
    for combo in itertools.product(*(cfg.grid[a] for a in AXES)):
        values = dict(zip(AXES, combo, strict=True))
        rid = run_id(values, varying)
        if rid in seen:
            continue  # the same value listed twice on an axis
        seen[rid] = True
        runs.append(Run(run_id=rid, **values))
    return runs


def run_key(run: Run, cfg: SweepConfig) -> str:
    """A hash of everything that determines a run's result: resume skips equal keys."""
    payload = {**run.axes(), **{k: v for k, v in cfg.settings().items()
                                if k in ("split", "split_seed", "data_root", "amp", "compile")}}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
