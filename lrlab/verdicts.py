"""Verdicts: each names a cause and a cure, with the numbers that triggered it.

==========  ===============================================  ==============================
verdict     cause (the ``cause`` column)                     cure
==========  ===============================================  ==============================
diverged    ``nonfinite``: a loss became NaN/inf;            lower the LR (a decade), or
            ``blown_up``: the training loss blew up and      warm up
            never came back
unstable    ``spikes``: mini-batch losses spiked far past    lower the LR, or warm up
            the start; ``rising``: the training loss gave    (``--schedule onecycle``)
            back much of what it had gained; ``collapse``:
            validation accuracy fell back towards chance
            after the run had learned
underfit    ``stuck``: barely moved from chance;             raise the LR or a bigger
            ``still_improving``: validation loss still       model; train longer
            falling at the end
overfit     ``gap``: train-val accuracy gap; ``gl``:         augment, regularize, stop
            Prechelt's GL on the validation loss             earlier
ok          none of these
error       the run raised                                   fix it, re-run
==========  ===============================================  ==============================

The judgement is on the weights the run keeps: the restored epoch when a stopper restored
one, else the last. Divergence is decided from training-mode evidence (the mini-batch
losses the optimizer saw), because a BatchNorm net's eval-mode loss in its first epochs
says little. A run that ends at or near chance is never ``ok`` or ``overfit``.

The built-in diagnosis below is registered through the ``lrlab_diagnose`` hook by the
internal plugin ``lrlab.builtin.verdicts``, exactly as a third-party diagnosis is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lrlab.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - only annotations: the stoppers import this module
    import pandas as pd

# in order of severity: a run's verdict is the most severe one any diagnosis supports
VERDICTS = ("ok", "overfit", "underfit", "unstable", "diverged", "error")
# what fails a sweep under --strict and a JUnit test case (with error): an underfit run is
# an expected part of a learning-rate sweep (the rates too small to learn in time)
FAILING = ("overfit", "unstable", "diverged")
SEVERITY = {v: i for i, v in enumerate(VERDICTS)}
# the causes the built-in diagnosis tells apart, per verdict
CAUSES = {"diverged": ("nonfinite", "blown_up"),
          "unstable": ("spikes", "rising", "collapse"),
          "underfit": ("stuck", "still_improving"),
          "overfit": ("gap", "gl")}

DEFAULT_THRESHOLDS: dict[str, float] = {
    # diverged: the epoch's mean mini-batch loss (training mode) above this multiple of the
    # untrained model's loss means it blew up; for diverge_patience epochs in a row, or at
    # the last epoch, it is not coming back (the run stops then)
    "diverge_factor": 1.5,
    # diverged: epochs in a row blown up before a run is stopped (one bad epoch can recover)
    "diverge_patience": 3,
    # unstable: one mini-batch's loss above this multiple of the start is a spike the LR
    # caused (a healthy run's batches stay within ~2x of it); a run that spiked and ends
    # near chance diverged
    "diverge_batch_factor": 5.0,
    # unstable: the training loss gave back this fraction of what it had gained (rose from
    # its minimum towards its start): a rate that is too large, not overfitting (which
    # leaves the training loss falling)
    "unstable_rise": 0.25,
    # unstable: validation accuracy lost this fraction of the progress it had made from
    # chance (after making at least half of the way)
    "unstable_collapse": 0.5,
    # near chance: less than this fraction of the way from chance (1 / classes) to 100%
    # validation accuracy; such a run is never ok or overfit
    "near_chance": 0.2,
    # underfit (stuck): the best training accuracy never got this fraction of the way from
    # chance to 100%
    "underfit_progress": 0.5,
    # underfit (still improving): validation loss fell by this fraction over the last fifth
    # of the epochs (at least one): more epochs would still pay
    "underfit_still_improving": 0.2,
    # underfit (still improving): or validation accuracy rose by this much over that window
    # (2 points: well above the epoch-to-epoch noise on one validation split)
    "underfit_still_improving_acc": 0.02,
    # overfit: train-val accuracy gap of the kept weights, as a fraction (0.05 = 5 points)
    "overfit_gap_acc": 0.05,
    # overfit: Prechelt's generalization loss of the kept weights, in percent
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
    """One piece of evidence: the verdict it supports (None for a plain note), its cause
    (one of :data:`CAUSES`, or a plugin's own word) and its numbers."""

    verdict: str | None
    text: str
    cause: str | None = None

    def __str__(self) -> str:
        if not self.verdict:
            return self.text
        cause = f" ({self.cause.replace('_', ' ')})" if self.cause else ""
        return f"{self.verdict}{cause}: {self.text}"


def summary_line(verdicts: list[str], wall_s: float | None = None, what: str = "") -> str:
    """pytest's last line: ``12 runs: 7 ok, 3 overfit, 1 underfit, 1 diverged in 14.2s``."""
    counts = {v: verdicts.count(v) for v in VERDICTS}
    parts = [f"{counts[v]} {v}" for v in VERDICTS if counts[v]]
    n = len(verdicts)
    line = f"{n} run{'s' if n != 1 else ''}: {', '.join(parts) or 'none'}"
    return line + (f" in {wall_s:.1f}s{what}" if wall_s is not None else "")


def worst(verdicts: Sequence[str]) -> str:
    return max(verdicts, key=SEVERITY.__getitem__, default="ok")


def verdict_of(flags: list[Flag]) -> tuple[str, str, str]:
    """``(verdict, cause, flags text)`` of a run's evidence: the most severe verdict any
    flag supports (``ok`` if none), the cause of the first flag that supports it, and
    every flag, joined."""
    verdict = worst([f.verdict for f in flags if f.verdict])
    cause = next((f.cause or "" for f in flags if f.verdict == verdict), "")
    return verdict, cause, "; ".join(str(f) for f in flags)


def generalization_loss(val_losses: Sequence[float], nonfinite: float = math.nan) -> float:
    """Prechelt's GL at the last epoch: 100 * (E_va(t) / min_{t'<=t} E_va(t') - 1).

    ``nonfinite`` is the answer once a loss is not finite: NaN for a verdict (the number
    means nothing then), infinity for a stopper (stop now)."""
    vals = [v for v in val_losses if math.isfinite(v)]
    if not vals or len(vals) != len(val_losses):
        return nonfinite
    best = min(vals)
    return 100.0 * (vals[-1] / best - 1.0) if best > 0 else math.inf


# epochs the validation loss must stay up for the overfit GL to count (one noisy last
# epoch is not overfitting)
GL_WINDOW = 3


def kept_gl(val_losses: Sequence[float]) -> float:
    """Prechelt's GL of the kept weights, made robust to one noisy epoch: the lowest
    validation loss of the last :data:`GL_WINDOW` epochs against the minimum so far (so
    the loss has stayed up, not just blipped). Equals GL when a run has fewer epochs or
    kept its best."""
    vals = list(val_losses)
    if not vals:
        return math.nan
    gl = generalization_loss(vals)
    if not math.isfinite(gl):
        return gl
    recent = min(vals[-GL_WINDOW:])
    best = min(vals)
    return 100.0 * (recent / best - 1.0) if best > 0 else math.inf


def progress(acc: float, num_classes: int) -> float:
    """How far ``acc`` got from chance (0) to perfect (1)."""
    chance = 1.0 / max(num_classes, 2)
    return (acc - chance) / (1.0 - chance)


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def batch_loss(row: dict[str, Any]) -> float:
    """The epoch's training-mode loss: the mean of its mini-batch losses (what the
    optimizer saw), or the clean training loss in tables that predate it."""
    value = row.get("batch_loss")
    peak = row.get("max_batch_loss")
    missing = value is None or (math.isnan(float(value)) and not (
        peak is not None and math.isinf(float(peak))))  # a NaN loss makes the peak inf
    if missing or int(row.get("epoch", 1)) == 0:
        return float(row["train_loss"])
    return float(value)


def divergence(rows: Sequence[dict[str, Any]], th: dict[str, float]) -> str | None:
    """Why the run cannot recover as of its last epoch, or None: the one rule the
    executors stop a run on. ``rows`` are its history so far (epoch 0 first).

    A non-finite mini-batch loss means non-finite gradients, and the weights do not come
    back from those; a mean mini-batch loss above ``diverge_factor`` x the start for
    ``diverge_patience`` epochs in a row is blown up and not coming back. A single bad
    epoch, a spike, or a noisy eval-mode loss is judged afterwards, not stopped on."""
    start = float(rows[0]["train_loss"])
    last = rows[-1]
    epoch = last["epoch"]
    peak = float(last.get("max_batch_loss", math.nan))
    loss = batch_loss(last)
    if not math.isfinite(loss) or math.isinf(peak):
        return (f"the training loss became non-finite in epoch {epoch} "
                f"(lr {float(last['lr']):.3g})")
    patience = max(1, int(th["diverge_patience"]))
    recent = [batch_loss(r) for r in rows[1:][-patience:]]
    if len(recent) == patience and all(v > th["diverge_factor"] * start for v in recent):
        return (f"the training loss stayed above {th['diverge_factor']:g}x its start "
                f"{start:.3g} for {patience} epoch(s), {loss:.3g} in epoch {epoch}")
    return None


def kept_epoch(history: pd.DataFrame, summary: dict[str, Any]) -> int:
    """The epoch whose weights the run keeps: the restored one, else the last."""
    restored = int(summary.get("restored_epoch") or 0)
    epochs = history["epoch"].tolist()
    return restored if restored > 0 and restored in epochs else int(epochs[-1])


def builtin_diagnose(history: pd.DataFrame, summary: dict[str, Any],
                     th: dict[str, float]) -> list[Flag]:
    """The built-in verdict of one run, with its evidence; first match wins:

    diverged, unstable, underfit (stuck), underfit (still improving), overfit. Notes
    (flags without a verdict) say what happened after a restored epoch."""
    if summary.get("error") or history is None or len(history) < 2:
        return []
    th = {**DEFAULT_THRESHOLDS, **th}
    rows = history.sort_values("epoch").to_dict("records")
    classes = int(summary.get("num_classes") or 0) or 10
    keep = kept_epoch(history, summary)
    upto = [r for r in rows if r["epoch"] <= keep]  # epoch 0 .. the kept epoch
    after = [r for r in rows if r["epoch"] > keep]
    kept = upto[-1]
    notes = _after_restore(kept, after)
    for rule in (_diverged, _unstable, _stuck, _still_improving, _overfit):
        flag = rule(upto, kept, summary, classes, th)
        if flag is not None:
            return [flag, *notes]
    return notes


def _near_chance(acc: float, classes: int, th: dict[str, float]) -> bool:
    return not progress(acc, classes) >= th["near_chance"]


def _peak(rows: list[dict[str, Any]]) -> tuple[float, int]:
    """The largest mini-batch loss of these epochs, and its epoch."""
    peaks = [(float(r.get("max_batch_loss", math.nan)), int(r["epoch"])) for r in rows[1:]]
    peaks = [p for p in peaks if not math.isnan(p[0])]
    return max(peaks, default=(math.nan, 0))


def _diverged(upto, kept, summary, classes, th) -> Flag | None:
    start = float(upto[0]["train_loss"])
    if summary.get("stopped_by") == "diverged":
        reason = divergence(upto, th) or (
            f"training stopped for divergence in epoch {kept['epoch']}")
        return Flag("diverged", reason, "nonfinite" if "non-finite" in reason else "blown_up")
    for r in upto[1:]:
        if not (_finite(batch_loss(r)) and _finite(r["train_loss"]) and _finite(r["val_loss"])):
            return Flag("diverged", f"the loss became non-finite in epoch {r['epoch']} "
                                    f"(lr {float(r['lr']):.3g})", "nonfinite")
    end = batch_loss(kept)
    if end > th["diverge_factor"] * start:
        return Flag("diverged", f"the training loss ended at {end:.3g}, "
                                f"{end / start:.1f}x its start {start:.3g}", "blown_up")
    # near chance at the end after any mini-batch loss rose past diverge_factor x the
    # start: blown up and not back, whether or not it had learned first (a rate too small
    # never lifts a batch loss that far). One that fell back only part of the way is
    # unstable (rising or collapse): its weights still hold something.
    peak, at = _peak(upto)
    if peak > th["diverge_factor"] * start and _near_chance(float(kept["val_acc"]), classes,
                                                             th):
        what = f"a mini-batch loss reached {peak:.3g} in epoch {at}"
        return Flag("diverged", f"{what} ({start:.3g} at the start) and never came back: val "
                                f"acc {float(kept['val_acc']):.3f}, chance {1 / classes:.3f}",
                    "blown_up")
    return None


def _unstable(upto, kept, summary, classes, th) -> Flag | None:
    start = float(upto[0]["train_loss"])
    trained = upto[1:]
    peak, at = _peak(upto)
    if peak > th["diverge_batch_factor"] * start:
        return Flag("unstable", f"a mini-batch loss spiked to {peak:.3g} in epoch {at}, "
                                f"{peak / start:.0f}x the start {start:.3g}", "spikes")
    losses = [batch_loss(r) for r in trained]
    low_i = min(range(len(losses)), key=losses.__getitem__)
    low, end = losses[low_i], losses[-1]
    gained = start - low
    if gained > 0.1 * start and end - low > th["unstable_rise"] * gained:
        return Flag("unstable", f"the training loss rose from {low:.3g} (epoch "
                                f"{trained[low_i]['epoch']}) to {end:.3g} (epoch "
                                f"{kept['epoch']}), giving back "
                                f"{100 * (end - low) / gained:.0f}% of what it had gained",
                    "rising")
    accs = [progress(float(r["val_acc"]), classes) for r in trained]
    best_i = max(range(len(accs)), key=accs.__getitem__)
    best, now = accs[best_i], accs[-1]
    if best >= 0.5 and best - now > th["unstable_collapse"] * best:
        return Flag("unstable", f"val acc fell from {float(trained[best_i]['val_acc']):.3f} "
                                f"(epoch {trained[best_i]['epoch']}) to "
                                f"{float(kept['val_acc']):.3f}, back towards chance "
                                f"{1 / classes:.3f}", "collapse")
    return None


def _stuck(upto, kept, summary, classes, th) -> Flag | None:
    best = max(float(r["train_acc"]) for r in upto[1:])
    need = 1 / classes + th["underfit_progress"] * (1 - 1 / classes)
    if not best >= need:
        return Flag("underfit", f"best train acc {best:.3f} after {len(upto) - 1} epochs, "
                                f"chance {1 / classes:.3f}, needs {need:.3f}", "stuck")
    val = float(kept["val_acc"])
    if _near_chance(val, classes, th):
        return Flag("underfit", f"val acc {val:.3f} at epoch {kept['epoch']} is near chance "
                                f"{1 / classes:.3f} (train acc {best:.3f})", "stuck")
    return None


def _still_improving(upto, kept, summary, classes, th) -> Flag | None:
    if summary.get("stopped_by") or int(summary.get("restored_epoch") or 0):
        return None  # a stopper or a plugin ended it: it was no longer improving
    trained = upto[1:]
    window = max(1, round(len(trained) / 5))
    prior = upto[-2 * window:-window] or upto[:1]
    last = upto[-min(window, GL_WINDOW):]
    # the best of the run's last epochs (up to three) against the best of the fifth of the
    # run before its last fifth: one noisy epoch at either end does not make a trend, and
    # a minimum passed earlier in the last fifth is not improvement at the end
    before, end = min(float(r["val_loss"]) for r in prior), min(float(r["val_loss"])
                                                                for r in last)
    fell = (before - end) / before if before > 0 else 0.0
    acc0, acc1 = max(float(r["val_acc"]) for r in prior), max(float(r["val_acc"]) for r in last)
    if fell > th["underfit_still_improving"] or acc1 - acc0 > th["underfit_still_improving_acc"]:
        span = f"epochs {prior[0]['epoch']}-{prior[-1]['epoch']} vs {last[0]['epoch']}-" \
               f"{last[-1]['epoch']}" if window > 1 else \
               f"epoch {prior[-1]['epoch']} vs {last[-1]['epoch']}"
        return Flag("underfit", f"still improving at the end: best val loss {before:.3g} -> "
                                f"{end:.3g} ({100 * fell:.0f}% lower), best val acc "
                                f"{acc0:.3f} -> {acc1:.3f} ({span})", "still_improving")
    return None


def _overfit(upto, kept, summary, classes, th) -> Flag | None:
    gap = float(kept["train_acc"]) - float(kept["val_acc"])
    vals = [float(r["val_loss"]) for r in upto[1:]]
    gl = kept_gl(vals)
    at = f"epoch {kept['epoch']}" + (" (restored)" if int(summary.get("restored_epoch") or 0)
                                     else "")
    if gl > th["overfit_gl"]:
        best_i = min(range(len(vals)), key=vals.__getitem__)
        return Flag("overfit", f"GL {gl:.1f}% > {th['overfit_gl']:g}%: val loss {vals[-1]:.3g} "
                               f"at {at} (and above {min(vals[-GL_WINDOW:]):.3g} over the "
                               f"last {min(GL_WINDOW, len(vals))} epochs) vs its minimum {vals[best_i]:.3g} at epoch "
                               f"{upto[1 + best_i]['epoch']}", "gl")
    if gap > th["overfit_gap_acc"]:
        return Flag("overfit", f"train-val acc gap {gap:.3f} > {th['overfit_gap_acc']:g} at "
                               f"{at}", "gap")
    return None


def _after_restore(kept: dict[str, Any], after: list[dict[str, Any]]) -> list[Flag]:
    """What happened after the kept epoch, when a stopper restored it."""
    if not after:
        return []
    last = after[-1]
    parts = []
    v0, v1 = float(kept["val_loss"]), float(last["val_loss"])
    if _finite(v1) and v0 > 0 and v1 > v0:
        parts.append(f"val loss rose {100 * (v1 / v0 - 1):.0f}% after epoch {kept['epoch']}")
    elif _finite(v1):
        parts.append(f"val loss {v1:.3g} at epoch {last['epoch']} did not beat "
                     f"{v0:.3g}")
    return [Flag(None, f"{'; '.join(parts) or 'training went on'}; early stopping kept "
                       f"epoch {kept['epoch']} (val acc {float(kept['val_acc']):.3f})")]


def tested_numbers(history: list[dict[str, Any]], restored_epoch: int | None) -> dict[str, float]:
    """Gap and GL of the weights the run keeps (the restored epoch's, else the last):
    the numbers the overfit verdict is judged on, for the ``runs`` table."""
    trained = [h for h in history if h["epoch"] >= 1]
    if not trained:
        return {"tested_train_acc": math.nan, "tested_gap_acc": math.nan,
                "tested_gl": math.nan}
    upto = [h for h in trained if not restored_epoch or h["epoch"] <= restored_epoch]
    kept = upto[-1]
    return {"tested_train_acc": float(kept["train_acc"]),
            "tested_gap_acc": float(kept["train_acc"]) - float(kept["val_acc"]),
            "tested_gl": kept_gl([h["val_loss"] for h in upto])}
