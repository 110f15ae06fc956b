"""The learning-rate range test (``lrlab lr-find``) and ``--lr auto`` for sweeps.

    >>> from lrlab.lrfind import lr_find
    >>> result = lr_find("mlp", "digits", "sgd(momentum=0.9)")
    >>> result.suggestions["valley"].lr
"""

from lrlab.lrfind.core import (EXPLANATIONS, RULES, Suggestion, lr_schedule, range_test,
                               steepest, suggest, valley)
from lrlab.lrfind.finder import LRFindResult, lr_find

__all__ = ["EXPLANATIONS", "LRFindResult", "RULES", "Suggestion", "lr_find", "lr_schedule",
           "range_test", "steepest", "suggest", "valley"]
