"""lrlab: a learning-rate and overfitting lab for PyTorch."""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("lrlab")

from lrlab.data import Data  # noqa: E402
from lrlab.errors import PluginError, UsageError  # noqa: E402
from lrlab.results import load_results  # noqa: E402
from lrlab.sweep import SweepResult, run_sweep  # noqa: E402
from lrlab.verdicts import Flag  # noqa: E402

__all__ = ["Data", "Flag", "PluginError", "SweepResult", "UsageError", "__version__",
           "hookimpl", "load_results", "run_sweep"]
