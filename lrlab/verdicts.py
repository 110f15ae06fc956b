"""Verdicts: ok, overfit, underfit, diverged, error — with the numbers that triggered them.

The built-in diagnoses below are registered through the ``lrlab_diagnose`` hook by the
internal plugin ``lrlab.builtin.verdicts``, exactly as a third-party diagnosis is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lrlab.errors import UsageError

VERDICTS = ("ok", "overfit", "underfit", "diverged", "error")
# what fails a sweep under --strict and a JUnit test case (with error): an underfit run is
# an expected part of a learning-rate sweep (the rates too small to learn in time)
FAILING = ("overfit", "diverged")
SEVERITY = {v: i for i, v in enumerate(VERDICTS)}

DEFAULT_THRESHOLDS: dict[str, float] = {
    # diverged: the clean training loss rose past this multiple of its value before
    # training (or became non-finite)
    "diverge_factor": 1.5,
    # diverged: a single mini-batch's training loss rose past this multiple of the start
    # (a run can blow up and die inside one epoch, then sit at chance)
    "diverge_batch_factor": 5.0,
    # underfit: the best training accuracy never got this fraction of the way from
    # chance (1 / classes) to 100%
    "underfit_progress": 0.5,
    # overfit: train-val accuracy gap at the last epoch, as a fraction (0.05 = 5 points)
    "overfit_gap_acc": 0.05,
    # overfit: Prechelt's generalization loss at the last epoch, in percent
    "overfit_gl": 25.0,
}


def check_thresholds(values: dict[str, Any]) -> dict[str, float]:
    """Merge user thresholds over the defaults. Unknown keys are kept for plugins'
    diagnoses, unless one is a near-miss of lrlab's own (a typo would otherwise be
    silently ignored)."""
    import difflib

    out = dict(DEFAULT_THRESHOLDS)
    for key, value in values.items():
        near = difflib.get_close_matches(key, list(DEFAULT_THRESHOLDS), n=1, cutoff=0.8)
        if key not in DEFAULT_THRESHOLDS and near:
            raise UsageError(f"unknown threshold '{key}'; did you mean '{near[0]}'?")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise UsageError(f"threshold '{key}' must be a non-negative number, got {value!r}")
        out[key] = float(value)
    return out


@dataclass
class Flag:
    """One piece of evidence: a verdict it supports (None for a plain note) and its numbers."""

    verdict: str | None
    text: str

    def __str__(self) -> str:
        return f"{self.verdict}: {self.text}" if self.verdict else self.text


def summary_line(verdicts: list[str], wall_s: float | None = None) -> str:
    """pytest's last line: ``12 runs: 7 ok, 3 overfit, 1 underfit, 1 diverged in 14.2s``."""
    counts = {v: verdicts.count(v) for v in VERDICTS}
    parts = [f"{counts[v]} {v}" for v in VERDICTS if counts[v]]
    n = len(verdicts)
    line = f"{n} run{'s' if n != 1 else ''}: {', '.join(parts) or 'none'}"
    return line + (f" in {wall_s:.1f}s" if wall_s is not None else "")


def worst(verdicts: list[str]) -> str:
    return max(verdicts, key=SEVERITY.__getitem__, default="ok")


def verdict_of(flags: list[Flag]) -> tuple[str, str]:
    """``(verdict, flags text)`` of a run's evidence: the most severe verdict any flag
    supports (``ok`` if none), and every flag, joined."""
    return worst([f.verdict for f in flags if f.verdict]), "; ".join(str(f) for f in flags)


def generalization_loss(val_losses: list[float], nonfinite: float = math.nan) -> float:
    """Prechelt's GL at the last epoch: 100 * (E_va(t) / min_{t'<=t} E_va(t') - 1).

    ``nonfinite`` is the answer once a loss is not finite: NaN for a verdict (the number
    means nothing then), infinity for a stopper (stop now)."""
    vals = [v for v in val_losses if math.isfinite(v)]
    if not vals or len(vals) != len(val_losses):
        return nonfinite
    best = min(vals)
    return 100.0 * (vals[-1] / best - 1.0) if best > 0 else math.inf


def divergence(row: dict[str, Any], start: float, th: dict[str, float]) -> str | None:
    """Why an epoch's record shows divergence, or None: the one rule the engine stops on
    and the diagnosis flags. ``row`` has ``epoch lr train_loss max_batch_loss``."""
    loss = float(row["train_loss"])
    epoch = row["epoch"]
    if not math.isfinite(loss):
        return f"train loss became {loss} at epoch {epoch} (lr {row['lr']:.3g})"
    if loss > th["diverge_factor"] * start:
        return (f"train loss {loss:.3g} at epoch {epoch} exceeds {th['diverge_factor']:g}x "
                f"its start {start:.3g}")
    peak = float(row.get("max_batch_loss", math.nan))
    if math.isinf(peak) or peak > th["diverge_batch_factor"] * start:
        return (f"a mini-batch loss reached {peak:.3g} in epoch {epoch}, "
                f"{th['diverge_batch_factor']:g}x past the start {start:.3g}")
    return None


def diagnose_diverged(history: pd.DataFrame, th: dict[str, float]) -> list[Flag]:
    start = float(history["train_loss"].iloc[0])
    for row in history.iloc[1:].to_dict("records"):
        reason = divergence(row, start, th)
        if reason:
            return [Flag("diverged", reason)]
    return []


def diagnose_underfit(history: pd.DataFrame, num_classes: int,
                      th: dict[str, float]) -> list[Flag]:
    trained = history.iloc[1:]
    if trained.empty:
        return []
    chance = 1.0 / num_classes
    need = chance + th["underfit_progress"] * (1.0 - chance)
    best = float(trained["train_acc"].max())
    if not best >= need:
        return [Flag("underfit", f"best train acc {best:.3f} after {len(trained)} epochs, "
                                 f"chance {chance:.3f}, needs {need:.3f}")]
    return []


def diagnose_overfit(summary: dict[str, Any], th: dict[str, float]) -> list[Flag]:
    flags = []
    gap = summary.get("gap_acc", math.nan)
    if gap > th["overfit_gap_acc"]:
        flags.append(Flag("overfit", f"train-val acc gap {gap:.3f} > {th['overfit_gap_acc']:g} "
                                     f"at epoch {summary['epochs_run']}"))
    gl = summary.get("gl", math.nan)
    if gl > th["overfit_gl"]:
        flags.append(Flag("overfit", f"GL {gl:.1f}% > {th['overfit_gl']:g}%: val loss "
                                     f"{summary['val_loss']:.3g} vs its minimum "
                                     f"{summary['best_val_loss']:.3g} at epoch "
                                     f"{summary['best_epoch']} of {summary['epochs_run']}"))
    return flags


def builtin_diagnose(history: pd.DataFrame, summary: dict[str, Any],
                     th: dict[str, float]) -> list[Flag]:
    """Diverged first; a run that learned nothing is underfit; one that learned may overfit."""
    if summary.get("error"):
        return []
    diverged = diagnose_diverged(history, th)
    if diverged:
        return diverged
    underfit = diagnose_underfit(history, int(summary["num_classes"]), th)
    if underfit:
        return underfit
    return diagnose_overfit(summary, th)
