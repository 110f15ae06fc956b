"""The learning-rate range test (``lrlab lr-find``) and ``--lr auto`` for sweeps.

    >>> from lrlab.lrfind import lr_find
    >>> result = lr_find("mlp", "digits", "sgd(momentum=0.9)", seeds=3)
    >>> result.suggestions["valley"].lr, result.suggestions["valley"].spread

Modules: ``core`` (the test on any model and optimizer, the rules), ``finder``
(``lr_find`` on registered components, the result and its files), ``plot`` (the
figure), ``auto`` (``--lr auto`` for sweeps), ``command`` (the Typer command),
``settings`` (the test's settings, declared once: defaults, checks, help).
"""

from lrlab.lrfind.auto import grid_around, resolve_auto_lr
from lrlab.lrfind.command import lr_find_command, run_lr_find
from lrlab.lrfind.core import (
    EXPLANATIONS,
    RULES,
    Suggestion,
    lr_schedule,
    minimum,
    range_test,
    steepest,
    suggest,
    valley,
)
from lrlab.lrfind.finder import LRFindResult, lr_find

__all__ = ["EXPLANATIONS", "LRFindResult", "RULES", "Suggestion", "grid_around", "lr_find",
           "lr_find_command", "lr_schedule", "minimum", "range_test", "resolve_auto_lr",
           "run_lr_find", "steepest", "suggest", "valley"]
