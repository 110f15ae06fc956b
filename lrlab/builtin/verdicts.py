"""The built-in diagnoses (diverged, underfit, overfit), through the lrlab_diagnose hook."""

from __future__ import annotations

from lrlab.markers import hookimpl
from lrlab.verdicts import builtin_diagnose


@hookimpl
def lrlab_diagnose(run, history, summary, thresholds):
    if history is None or len(history) == 0:
        return None
    return builtin_diagnose(history, summary, thresholds)
