"""The range test's settings, declared once (as :mod:`lrlab.settings` declares the sweep's).

:data:`RANGE_TEST` holds the test's own settings (``start_lr end_lr steps mode diverge
smooth``), ``seeds`` (the sweep's own declaration, :data:`lrlab.settings.SWEEP`) and
``lrlab lr-find``'s ``--name``. :data:`SHARED` holds what lr-find shares with a sweep
(the components, the batch size and the data), taken from ``SWEEP``: the same parsers
and defaults; an axis there is a list, lr-find takes one value of it (:func:`one_value`).
Everything else is derived from these declarations:

- the options of ``lrlab lr-find`` and their help (:data:`COMMAND`,
  :func:`lrlab.cli_support.with_setting_options`), each ending in its default;
- the defaults of :func:`lrlab.lrfind.lr_find` and :func:`lrlab.lrfind.core.range_test`
  and their checks (:func:`read`, :func:`read_test`);
- the test ``lrlab sweep --lr auto`` runs (:data:`lrlab.lrfind.auto.TEST`).

Like :mod:`lrlab.settings`, this module imports nothing heavy (no torch, no pandas).
Messages name the options as users type them (``--start-lr must be ...``), in the
command and in the Python API alike.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from lrlab.errors import UsageError
from lrlab.settings import SWEEP, Setting, Settings, folder_name

MODES = ("exp", "linear")
MAX_LR = 1e6  # the largest rate a range test may try; the plot's axes overflow beyond


def _flag(name: str) -> str:
    """``start_lr`` -> ``--start-lr`` (a name that already is a flag stays)."""
    return name if name.startswith("-") else "--" + name.replace("_", "-")


def _real(value: Any, message: str) -> float:
    """``value`` (a number, or its text) as a float; ``message`` when it is not one."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise UsageError(f"{message}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{message}, got {value!r}")
    return float(value)


# -- parsers: (setting name, raw value) -> the checked value ------------------------------


def learning_rate(name: str, value: Any) -> float:
    """A learning rate > 0, finite and at most :data:`MAX_LR`."""
    message = f"{_flag(name)} must be a positive learning rate"
    lr = _real(value, message)
    if not (math.isfinite(lr) and lr > 0):
        raise UsageError(f"{message}, got {lr!r}")
    if lr > MAX_LR:  # far past any divergence
        raise UsageError(f"{_flag(name)} must be at most {MAX_LR:g}, got {lr:g}")
    return lr


def step_count(name: str, value: Any) -> int:
    """A whole number of steps >= 2 (the schedule needs a first and a last)."""
    message = f"{_flag(name)} must be an integer >= 2"
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise UsageError(f"{message}, got {value!r}") from None
    try:
        if isinstance(value, bool):
            raise TypeError
        n = operator.index(value)  # int, numpy integers; not 2.0
    except TypeError:
        raise UsageError(f"{message}, got {value!r}") from None
    if n < 2:
        raise UsageError(f"{message}, got {n!r}")
    return n


def growth_mode(name: str, value: Any) -> str:
    if value not in MODES:
        raise UsageError(f"{_flag(name)} must be {' or '.join(MODES)}, got {value!r}")
    return value


def divergence(name: str, value: Any) -> float:
    """A multiple of the best smoothed loss, > 1 and finite."""
    message = f"{_flag(name)} must be a multiple of the best loss above 1"
    x = _real(value, message)
    if not (math.isfinite(x) and x > 1):
        raise UsageError(f"{message}, got {x!r}")
    return x


def ema_factor(name: str, value: Any) -> float:
    """The factor of an exponential moving average: in [0, 1) (0: no smoothing)."""
    message = f"{_flag(name)} must be in [0, 1) (an EMA factor)"
    x = _real(value, message)
    if not 0 <= x < 1:
        raise UsageError(f"{message}, got {x!r}")
    return x


# -- the declarations ---------------------------------------------------------------------
# Leslie Smith's range test as fastai runs it: 100 mini-batches while the rate grows
# evenly on a log scale from 1e-7 to 10, stopping once the smoothed loss is 4x its best.

RANGE_TEST = Settings([
    Setting("start_lr", learning_rate, 1e-7, "Learning rate of the first step",
            metavar="LR"),
    Setting("end_lr", learning_rate, 10.0, "Learning rate of the last step", metavar="LR"),
    Setting("steps", step_count, 100, "Training steps (one mini-batch each)",
            metavar="INT"),
    Setting("mode", growth_mode, "exp", "How the rate grows: exp (evenly on a log scale) or "
            "linear", metavar="|".join(MODES)),
    Setting("diverge", divergence, 4.0, "Stop once the smoothed loss exceeds this "
            "multiple of its best", metavar="FLOAT"),
    Setting("smooth", ema_factor, 0.98, "Smoothing of the loss: the factor of its "
            "exponential moving average (0 = none)", metavar="FLOAT"),
    SWEEP["seeds"],  # the same meaning as a sweep's: seeds 0..N-1, each rule their median
    Setting("name", folder_name(), None, "Results folder name under --out",
            shown="lrfind-<dataset>-<model>"),
])

# the settings of the curve itself: what ``--lr auto`` runs the test with
TEST_SETTINGS = ("start_lr", "end_lr", "steps", "mode", "diverge", "smooth")

# what one range test trains, as a sweep declares it; lr-find takes one value of each
ONE_VALUE = ("model", "dataset", "optimizer", "loss", "batch_size")
_ONE = {  # name -> (help, metavar) of one value
    "model": ("Model to test, e.g. mlp or mlp(width=64)", "TEXT"),
    "dataset": ("Dataset to train on (its train split only)", "TEXT"),
    "optimizer": ("Optimizer whose learning rate is tested", "TEXT"),
    "loss": ("Loss function, e.g. cross_entropy or mse", "TEXT"),
    "batch_size": ("Mini-batch size", "INT"),
}
SHARED = Settings([  # SWEEP's declarations: their parsers, defaults and units
    *(replace(SWEEP[n], help=_ONE[n][0], metavar=_ONE[n][1]) for n in ONE_VALUE),
    *(SWEEP[n] for n in ("out", "data_root", "download", "device")),
])

# the options of ``lrlab lr-find``, in the order --help lists them
COMMAND = [*(SHARED[n] for n in ONE_VALUE), *RANGE_TEST.values(),
           *(SHARED[n] for n in ("out", "data_root", "download", "device"))]


# -- reading values -----------------------------------------------------------------------


def read(setting: Setting, value: Any) -> Any:
    """``setting``'s checked value of ``value``; a wrong one is one line of UsageError that
    names its option (``--seeds must be >= 1``)."""
    return setting.parse(setting.option_name, value)


def default(name: str) -> Any:
    """The checked default of lr-find's setting ``name`` (a shared axis: its one value),
    read by its declaration's parser like any given value."""
    setting = RANGE_TEST.get(name) or SHARED.get(name) or SWEEP[name]
    value = setting.parse(setting.name, setting.default)
    return value[0] if setting.axis else value


def one_value(name: str, values: Any) -> Any:
    """The one value of a shared axis (already parsed to a list, or raw); more than one is
    refused: a range test tests one of each."""
    setting = SHARED[name]
    if not isinstance(values, list):
        values = read(setting, values)
    if len(values) != 1:
        listed = ", ".join(str(v) for v in values)
        raise UsageError(f"lr-find tests one {name} at a time; got {len(values)}: {listed}")
    return values[0]


def check_range(start_lr: float, end_lr: float) -> None:
    """The rates must grow: ``start_lr`` below ``end_lr``."""
    if start_lr >= end_lr:
        raise UsageError(f"--start-lr ({start_lr:g}) must be below --end-lr ({end_lr:g})")


def read_test(values: Mapping[str, Any]) -> dict[str, Any]:
    """The checked values of the range test's own settings in ``values`` (names of
    :data:`RANGE_TEST`), ``start_lr`` below ``end_lr`` when both are there."""
    out = {name: read(RANGE_TEST[name], value) for name, value in values.items()}
    if "start_lr" in out and "end_lr" in out:
        check_range(out["start_lr"], out["end_lr"])
    return out


def seed_list(seeds: Any) -> list[int]:
    """A number N (seeds 0..N-1, checked as a sweep checks ``seeds``) or the seeds
    themselves (each checked as a sweep's ``seed``)."""
    if isinstance(seeds, (numbers.Integral, str)):
        if not isinstance(seeds, (bool, str)):
            seeds = operator.index(seeds)  # a numpy integer too
        return list(range(read(RANGE_TEST["seeds"], seeds)))
    seeds = list(seeds)
    if not seeds:
        raise UsageError("the range test needs at least one seed")
    return SWEEP["seed"].parse("--seeds", seeds)


def smooth_or_beta(smooth: float, beta: float | None) -> float:
    """``smooth``, or ``beta`` (its old name in the Python API) when that is given."""
    if beta is None:
        return smooth
    if smooth != RANGE_TEST["smooth"].default and smooth != beta:
        raise UsageError("give smooth or beta (its old name), not both")
    return beta
