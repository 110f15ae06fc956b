"""The learning-rate range test (``lrlab lr-find``) and ``--lr auto`` for sweeps.

    >>> from lrlab.lrfind import lr_find
    >>> result = lr_find("mlp", "digits", "sgd(momentum=0.9)", seeds=3)
    >>> result.suggestions["valley"].lr, result.suggestions["valley"].spread

Modules: ``core`` (the test on any model and optimizer, the rules), ``finder``
(``lr_find`` on registered components, the result and its files), ``plot`` (the
figure), ``auto`` (``--lr auto`` for sweeps), ``command`` (the Typer command),
``settings`` (the test's settings, declared once: defaults, checks, help).
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module; imported on first use, so `lrlab --help` (which registers the
# lr-find command) does not import torch
_NAMES = {
    "grid_around": "auto", "resolve_auto_lr": "auto",
    "lr_find_command": "command", "run_lr_find": "command",
    "EXPLANATIONS": "core", "RULES": "core", "Suggestion": "core", "lr_schedule": "core",
    "minimum": "core", "range_test": "core", "steepest": "core", "suggest": "core",
    "valley": "core",
    "LRFindResult": "finder", "lr_find": "finder",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'lrlab.lrfind' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lrlab.lrfind.{_NAMES[name]}"), name)
    globals()[name] = value
    return value
