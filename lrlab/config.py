"""A sweep's configuration: defaults, [tool.lrlab], sweep files, flags; the grid and its runs.

Every key is a setting declared in :data:`lrlab.settings.SWEEP`. Precedence, lowest
first: the declared defaults < ``[tool.lrlab]`` in pyproject.toml < the sweep file <
command-line flags or API arguments. Every axis accepts one value or a list.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from lrlab.errors import UsageError
from lrlab.registry import Spec, closest
from lrlab.settings import SWEEP, augment_str, check_name, threshold_table

__all__ = ["AXES", "COMPONENT_AXES", "Run", "SweepConfig", "augment_str", "build_config",
           "check_name", "expand", "parse_axis", "run_key"]

AXES = tuple(s.name for s in SWEEP.axes())
# axis -> registry kind, for the component axes
COMPONENT_AXES = {"dataset": "dataset", "model": "model", "loss": "loss",
                  "optimizer": "optimizer", "schedule": "schedule",
                  "augment": "augmentation", "stopper": "stopper"}


def _run_axes(self: Any) -> dict[str, Any]:
    """Every axis as a table cell: components as their strings, numbers as numbers."""
    out = {}
    for axis in AXES:
        value = getattr(self, axis)
        out[axis] = augment_str(value) if axis == "augment" else \
            str(value) if isinstance(value, Spec) else value
    return out


# The axes that repeat a configuration rather than define one, each with the setting that
# counts it (``seeds 3`` is ``seed [0, 1, 2]``). A configuration is a run less these; its
# runs are compared paired on them (lrlab.stats.pair_keys).
REPEATS = {"split_seed": "split_seeds", "seed": "seeds"}
CONFIG_AXES = tuple(a for a in AXES if a not in REPEATS)


# One training run: its id and a value for every axis of lrlab.settings.SWEEP
# (dataset, model, ..., lr, epochs, batch_size, seed).
Run = make_dataclass("Run", [("run_id", str), *((a, Any) for a in AXES)], frozen=True,
                     namespace={"axes": _run_axes})
Run.__module__ = __name__
Run.__doc__ = "One training run: its id and a value for every grid axis (" + \
    ", ".join(AXES) + ")."


@dataclass
class SweepConfig:
    """Everything that defines a sweep: ``grid`` maps each axis to its values, ``values``
    holds every other setting of :data:`lrlab.settings.SWEEP`, checked. A setting reads as
    an attribute too (``config.device``, ``config.split``)."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=lambda: {
        s.name: s.value() for s in SWEEP.fixed()})
    source: str | None = None  # the sweep file, if any
    command_line: str = ""
    # an LR range test run for lr "auto", waiting to be stored when the sweep starts
    lrfind_pending: Any = field(default=None, repr=False, compare=False)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(f"SweepConfig has no setting {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SWEEP and not SWEEP[name].axis and "values" in self.__dict__:
            self.values[name] = value
        else:
            super().__setattr__(name, value)

    @property
    def out_dir(self) -> Path:
        return Path(self.out) / self.name

    def settings(self) -> dict[str, Any]:
        """The fixed settings as JSON values (what the manifest stores)."""
        return {s.name: s.dump(self.values[s.name]) for s in SWEEP.fixed()
                if s.name in self.values}

    def grid_strings(self) -> dict[str, list[Any]]:
        return {axis: SWEEP[axis].dump(values) for axis, values in self.grid.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "grid": self.grid_strings(), **self.settings(),
                "source": self.source}


def recorded_split_seeds(config: dict[str, Any]) -> list[int]:
    """The split seeds a manifest's ``config`` records: its grid's ``split_seed`` (older
    manifests: one fixed ``split_seed``; none recorded: ``[]``)."""
    if "split_seed" in config:
        return [config["split_seed"]]
    return list((config.get("grid") or {}).get("split_seed") or [])


def parse_axis(axis: str, value: Any) -> list[Any]:
    """The checked values of one grid axis."""
    return SWEEP[axis].read(value)


# -- reading the layers ------------------------------------------------------------------


def _check_keys(table: dict[str, Any], where: str) -> None:
    for key in table:
        if key not in SWEEP:
            near = closest(key, sorted(SWEEP))
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


def merge_layers(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """The given values of every layer, later layers winning; thresholds merge key by key,
    and a later ``seed`` (a list of seeds) replaces an earlier ``seeds`` (how many), as
    ``split_seed`` and ``split_seeds`` do."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for listed, count in REPEATS.items():
            if listed in layer and count in layer:
                raise UsageError(f"give {listed} (a list of {listed}s) or {count} (how "
                                 f"many), not both")
        thresholds = {**merged.get("thresholds", {}),
                      **threshold_table(layer.get("thresholds", {}))}
        for listed, count in REPEATS.items():
            for given, other in ((listed, count), (count, listed)):
                if given in layer:
                    merged.pop(other, None)
        merged.update(layer)
        merged["thresholds"] = thresholds
    return merged


def build_config(sweep_file: Path | None = None, overrides: dict[str, Any] | None = None,
                 *, cwd: Path | None = None, command_line: str = "") -> SweepConfig:
    """Merge the defaults, [tool.lrlab], the sweep file and ``overrides`` (flags or API),
    and check every value."""
    cwd = cwd or Path.cwd()
    layers = [pyproject_defaults(cwd)]
    if sweep_file is not None:
        table = read_toml(sweep_file)
        _check_keys(table, str(sweep_file))
        layers.append({"name": sweep_file.stem, **table})  # its own name, else its stem
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_keys(overrides, "the arguments")
    layers.append(overrides)
    given = merge_layers(layers)

    def read(name: str) -> Any:
        setting = SWEEP[name]
        return setting.read(given[name]) if name in given else setting.value()

    grid = {axis: read(axis) for axis in AXES if axis not in REPEATS}
    for listed, count in REPEATS.items():  # seed [0, 1, 2] or seeds 3, alike
        grid[listed] = read(listed) if listed in given else list(range(read(count)))
    grid = {axis: grid[axis] for axis in AXES}
    values = {s.name: read(s.name) for s in SWEEP.fixed()}
    if values["name"] is None:
        values["name"] = "-".join(dict.fromkeys(s.name for s in grid["dataset"]))
        check_name(values["name"], "sweep name")
    return SweepConfig(grid, values, str(sweep_file) if sweep_file else None, command_line)


# -- expanding the grid ------------------------------------------------------------------

# the order of the parts of a run id (axes not listed here follow, in declaration order)
ID_ORDER = ("dataset", "model", "loss", "optimizer", "schedule", "lr", "epochs",
            "batch_size", "augment", "stopper", "split_seed", "seed")


def _id_part(axis: str, value: Any) -> str:
    prefix = SWEEP[axis].id_prefix
    if prefix:
        return f"{prefix}{value:g}" if isinstance(value, float) else f"{prefix}{value}"
    if axis == "augment":
        return augment_str(value)
    # a model named by a path (sub/models.py:Net) keeps a run id that is a file name
    return str(value).replace(" ", "").replace("/", "_").replace("\\", "_")


def run_id(values: dict[str, Any], varying: set[str]) -> str:
    order = [*ID_ORDER, *(a for a in AXES if a not in ID_ORDER)]
    return "-".join(_id_part(a, values[a]) for a in order
                    if SWEEP[a].id_always or a in varying)


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
    """A hash of everything that determines a run's result: its axes and every setting
    declared with ``key=True``. Resume skips the runs whose key is stored."""
    payload = {**run.axes(), **{s.name: s.dump(cfg.values[s.name]) for s in SWEEP.fixed()
                                if s.key}}
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
