"""lrlab: a learning-rate and overfitting lab for PyTorch.

This module is lrlab's public face: everything a plugin or a script needs, and nothing
else. Importing it is cheap: ``hookimpl`` and ``__version__`` come from leaf modules, and
every other name is imported on first access (PEP 562), so a plugin module that does
``import lrlab`` to mark its hooks does not pull in torch, pandas or the sweep machinery.

Plugins import only from here (and from :mod:`lrlab.testing` in their tests)::

    import lrlab
    from lrlab import Flag, Section, UsageError, hookimpl
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lrlab.markers import hookimpl
from lrlab.version import __version__

# public name -> (module, attribute in it; None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "Context": ("lrlab.executors", "Context"),
    "Data": ("lrlab.data", "Data"),
    "Flag": ("lrlab.verdicts", "Flag"),
    "PluginError": ("lrlab.errors", "PluginError"),
    "PluginRecipe": ("lrlab.recipe", "PluginRecipe"),
    "Run": ("lrlab.config", "Run"),
    "RunResult": ("lrlab.results", "RunResult"),
    "Section": ("lrlab.report.sections", "Section"),
    "Spec": ("lrlab.registry", "Spec"),
    "StreamingData": ("lrlab.data", "StreamingData"),
    "SweepResult": ("lrlab.sweep", "SweepResult"),
    "UsageError": ("lrlab.errors", "UsageError"),
    "load_model": ("lrlab.weights", "load_model"),
    "load_results": ("lrlab.results", "load_results"),
    "run_sweep": ("lrlab.sweep", "run_sweep"),
    "show": ("lrlab.notebook", "show"),
    "NotebookProgress": ("lrlab.notebook", "NotebookProgress"),
    "testing": ("lrlab.testing", None),  # imports pytest: only on access
    "write_report": ("lrlab.report", "write_report"),
}

__all__ = [
    "Context",
    "Data",
    "Flag",
    "NotebookProgress",
    "PluginError",
    "PluginRecipe",
    "Run",
    "RunResult",
    "Section",
    "Spec",
    "StreamingData",
    "SweepResult",
    "UsageError",
    "__version__",
    "hookimpl",
    "load_model",
    "load_results",
    "run_sweep",
    "show",
    "testing",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first access and keep it in the module's namespace."""
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'lrlab' has no attribute {name!r}") from None
    found = importlib.import_module(module)
    value = found if attr is None else getattr(found, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from lrlab import testing
    from lrlab.config import Run
    from lrlab.data import Data, StreamingData
    from lrlab.errors import PluginError, UsageError
    from lrlab.executors import Context
    from lrlab.notebook import NotebookProgress, show
    from lrlab.recipe import PluginRecipe
    from lrlab.registry import Spec
    from lrlab.report import write_report
    from lrlab.report.sections import Section
    from lrlab.results import RunResult, load_results
    from lrlab.sweep import SweepResult, run_sweep
    from lrlab.verdicts import Flag
    from lrlab.weights import load_model
