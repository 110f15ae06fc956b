"""A labelled set of runs whose verdict is known by construction, for checking lrlab's
judgement (tests/test_verdict_truth.py, benchmarks/verdicts.py).

Two kinds of case:

* hand-written histories of edge cases (10 classes, start loss ~2.30 unless said), each
  built so that what happened is not in doubt, judged with ``builtin_diagnose``;
* real trainings on digits (MLP, a few seconds on 2 CPU cores), labelled with what a
  careful teacher would say of such a run, grouped into a few ``run_sweep`` calls.

``verdict_cases(tmp)`` runs them all and returns ``(name, expected_verdict,
expected_cause_or_None, actual_verdict, actual_cause)`` tuples; ``details`` (filled as a
side effect) maps each name to its flags text and the tail of its history, for printing
disagreements.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

START = 2.3026  # ln 10: the untrained 10-class loss
NAN = math.nan

# name -> (flags text, history tail as text)
details: dict[str, tuple[str, str]] = {}


# -- hand-written histories -----------------------------------------------------------------

def curve(n: int, start: float, end: float, tau: float) -> np.ndarray:
    """n + 1 values (epoch 0..n) decaying exponentially from start towards end."""
    t = np.arange(n + 1, dtype=float)
    return end + (start - end) * np.exp(-t / tau)


def hist(train_loss, train_acc, val_loss, val_acc, *, batch_loss=None, max_batch=None,
         lr: float = 0.05) -> pd.DataFrame:
    """A history: epoch 0 untrained; batch_loss defaults to the train loss (training mode
    noise-free), max_batch_loss to 1.3x the batch loss; both NaN at epoch 0."""
    tl = np.asarray(train_loss, dtype=float)
    n = len(tl)
    bl = tl.copy() if batch_loss is None else np.asarray(batch_loss, dtype=float)
    mb = 1.3 * bl if max_batch is None else np.asarray(max_batch, dtype=float)
    bl, mb = bl.copy(), mb.copy()
    bl[0] = mb[0] = NAN
    return pd.DataFrame({"epoch": range(n), "lr": [lr] * n, "train_loss": tl,
                         "train_acc": np.asarray(train_acc, dtype=float),
                         "val_loss": np.asarray(val_loss, dtype=float),
                         "val_acc": np.asarray(val_acc, dtype=float),
                         "max_batch_loss": mb, "batch_loss": bl})


def clean(n: int = 30, *, tl_end=0.05, vl_end=0.12, ta_end=0.99, va_end=0.965, tau=3.0):
    """A clean converging run (arrays, so cases can edit them)."""
    return dict(train_loss=curve(n, START, tl_end, tau), train_acc=curve(n, 0.1, ta_end, tau),
                val_loss=curve(n, START, vl_end, tau), val_acc=curve(n, 0.1, va_end, tau))


def summary_for(h: pd.DataFrame, classes: int = 10, **extra: Any) -> dict[str, Any]:
    return {"num_classes": classes, "error": "", "epochs_run": len(h) - 1,
            "restored_epoch": 0, "stopped_by": "", **extra}


def hand_cases() -> list[tuple[str, str, str | None, pd.DataFrame, dict[str, Any]]]:
    """(name, expected verdict, expected cause, history, summary)."""
    cases = []

    def add(name, verdict, cause, h, **summary):
        classes = summary.pop("classes", 10)
        cases.append((name, verdict, cause, h, summary_for(h, classes, **summary)))

    # -- diverged --------------------------------------------------------------------------
    c = clean(10)
    for k in ("train_loss", "val_loss"):
        c[k][6:] = NAN
    c["train_acc"][6:] = c["val_acc"][6:] = 0.1
    add("hand: NaN loss after learning", "diverged", "nonfinite", hist(**c))

    c = clean(10)
    bl = c["train_loss"].copy()
    mb = 1.3 * bl
    bl[7], mb[7] = math.inf, math.inf
    add("hand: inf mini-batch loss", "diverged", "nonfinite",
        hist(**c, batch_loss=bl, max_batch=mb))

    c = clean(10)
    c["val_loss"][-1] = NAN
    add("hand: NaN val loss at the last epoch", "diverged", "nonfinite", hist(**c))

    n = 15
    tl = np.r_[START, 4.0, 9.0, np.full(n - 2, 14.0) + np.linspace(0, 3, n - 2)]
    acc = np.r_[0.1, 0.2, np.full(n - 1, 0.1)]
    add("hand: loss blown up and staying up", "diverged", "blown_up",
        hist(tl, acc, tl * 1.05, acc, max_batch=tl * 2))

    n = 20
    tl = np.r_[START, 2.0, np.full(n - 1, 2.31)]
    bl = np.r_[START, 6.0, np.full(n - 1, 2.31)]
    mb = np.r_[START, 40.0, np.full(n - 1, 2.5)]
    acc = np.r_[0.1, 0.3, np.full(n - 1, 0.1)]
    add("hand: blow-up then stuck at chance", "diverged", "blown_up",
        hist(tl, acc, tl, acc, batch_loss=bl, max_batch=mb))

    c = clean(4)
    bl = np.r_[START, 2.0, 5.0, 6.5, 7.5]
    c["train_loss"] = np.r_[START, 1.9, 5.5, 7.0, 8.0]
    c["val_loss"] = c["train_loss"] * 1.02
    c["train_acc"] = c["val_acc"] = np.r_[0.1, 0.4, 0.15, 0.1, 0.1]
    add("hand: stopped for divergence (stopped_by=diverged)", "diverged", "blown_up",
        hist(**c, batch_loss=bl), stopped_by="diverged")

    c = clean(20)
    bl = c["train_loss"].copy()
    bl[-1] = 4.5  # the last epoch blew up (the run ends there)
    c["train_loss"][-1], c["val_loss"][-1] = 4.8, 5.0
    c["train_acc"][-1], c["val_acc"][-1] = 0.3, 0.28
    add("hand: blew up in the last epoch", "diverged", "blown_up", hist(**c, batch_loss=bl))

    # -- unstable --------------------------------------------------------------------------
    c = clean(30)
    mb = 1.3 * c["train_loss"]
    mb[6] = 25.0  # one mini-batch, 11x the start; the epoch's mean barely moves
    add("hand: single big batch spike then recovery", "unstable", "spikes",
        hist(**c, max_batch=mb))

    n = 30
    tl = np.r_[curve(8, START, 0.3, 2.0), np.linspace(0.35, 1.2, n - 8)]
    ta = np.r_[curve(8, 0.1, 0.92, 2.0), np.linspace(0.91, 0.62, n - 8)]
    add("hand: training loss rising back after learning", "unstable", "rising",
        hist(tl, ta, tl * 1.1, ta - 0.02))

    n = 30
    c = clean(n)
    c["val_acc"][15:] = np.linspace(0.9, 0.11, n - 14)
    c["val_loss"][15:] = np.linspace(0.3, 2.5, n - 14)
    add("hand: val acc collapse to chance after learning", "unstable", "collapse",
        hist(**c, max_batch=np.full(n + 1, 1.5)))

    # -- underfit --------------------------------------------------------------------------
    n = 40
    tl = curve(n, START, 2.15, 30.0)
    ta = np.linspace(0.1, 0.24, n + 1)
    add("hand: barely moving from chance, loss falling", "underfit", "stuck",
        hist(tl, ta, tl + 0.005, ta - 0.01, max_batch=tl + 0.15))

    n = 20
    c = clean(n, tau=12.0, tl_end=0.05, vl_end=0.1, ta_end=0.99, va_end=0.97)
    add("hand: val loss still falling steeply at the end", "underfit", "still_improving",
        hist(**c))

    h = hist([START, 1.2], [0.1, 0.72], [START, 1.25], [0.1, 0.70])
    add("hand: 1-epoch run", "underfit", "still_improving", h)

    n = 25
    c = clean(n)
    c["val_loss"] = curve(n, START, 0.25, 3.0)
    c["val_acc"] = np.r_[curve(20, 0.1, 0.82, 3.0), np.linspace(0.84, 0.92, 5)]
    c["train_acc"] = np.r_[curve(20, 0.1, 0.84, 3.0), np.linspace(0.86, 0.94, 5)]
    add("hand: val acc still climbing at the end (loss flat)", "underfit", "still_improving",
        hist(**c))

    # -- ok --------------------------------------------------------------------------------
    add("hand: clean converged run", "ok", None, hist(**clean(30)))

    n = 30
    c = dict(train_loss=curve(n, 0.6931, 0.05, 3), train_acc=curve(n, 0.5, 0.985, 3),
             val_loss=curve(n, 0.6931, 0.08, 3), val_acc=curve(n, 0.5, 0.975, 3))
    add("hand: clean 2-class run", "ok", None, hist(**c), classes=2)

    c = clean(15)
    add("hand: stopper stopped a converged run (no restore)", "ok", None, hist(**c),
        stopped_by="stopper")

    n = 25
    c = clean(n)
    c["val_loss"][11:] = np.linspace(0.13, 0.45, n - 10)  # rose after epoch 10
    c["train_loss"][11:] = np.linspace(0.04, 0.001, n - 10)
    c["train_acc"][11:] = 1.0
    c["val_acc"][11:] = np.linspace(0.96, 0.93, n - 10)
    add("hand: stopper restored a fine epoch, val loss rose after it", "ok", None, hist(**c),
        restored_epoch=10, stopped_by="stopper")

    n = 30
    c = clean(n, tau=4.0)
    c["train_loss"][1:4] = [18.0, 9.0, 3.5]   # eval-mode loss with bad BN statistics
    c["val_loss"][1:4] = [20.0, 10.0, 4.0]
    c["train_acc"][1:4] = c["val_acc"][1:4] = [0.12, 0.25, 0.5]
    bl = curve(n, START, 0.05, 4.0) * 1.1       # the batches the optimizer saw: normal
    add("hand: BatchNorm-like, eval loss huge early, batch loss normal", "ok", None,
        hist(**c, batch_loss=bl, max_batch=bl * 1.4))

    # -- overfit ---------------------------------------------------------------------------
    n = 40
    c = dict(train_loss=curve(n, START, 0.005, 3), train_acc=curve(n, 0.1, 1.0, 3),
             val_loss=curve(n, START, 0.55, 3), val_acc=curve(n, 0.1, 0.84, 3))
    add("hand: train-val accuracy gap, val loss flat", "overfit", "gap", hist(**c))

    n = 40
    c = clean(n)
    c["train_loss"] = curve(n, START, 0.001, 3)
    c["train_acc"] = curve(n, 0.1, 0.995, 3)
    c["val_loss"] = np.r_[curve(10, START, 0.28, 2.5), np.linspace(0.30, 0.75, n - 10)]
    c["val_acc"] = np.r_[curve(10, 0.1, 0.93, 2.5), np.linspace(0.93, 0.91, n - 10)]
    add("hand: val loss rising after its minimum, train loss falling", "overfit", "gl",
        hist(**c))

    n = 30
    c = dict(train_loss=curve(n, START, 0.002, 3), train_acc=curve(n, 0.1, 1.0, 3),
             val_loss=curve(n, START, 0.6, 3), val_acc=curve(n, 0.1, 0.82, 3))
    c["val_loss"][21:] = np.linspace(0.62, 0.9, n - 20)
    add("hand: stopper restored an epoch that already had a big gap", "overfit", "gap",
        hist(**c), restored_epoch=20, stopped_by="stopper")

    # -- never ok/overfit ------------------------------------------------------------------
    n = 30
    c = dict(train_loss=curve(n, START, 0.2, 4), train_acc=curve(n, 0.1, 0.95, 4),
             val_loss=curve(n, START, 2.25, 4), val_acc=curve(n, 0.1, 0.14, 4))
    add("hand: ends near chance with a big train acc", "underfit", "stuck",
        hist(**c, max_batch=curve(n, START, 0.2, 4) + 0.4))
    return cases


def run_hand_cases() -> list[tuple[str, str, str | None, str, str]]:
    from lrlab.verdicts import DEFAULT_THRESHOLDS, builtin_diagnose, verdict_of

    out = []
    for name, verdict, cause, h, summary in hand_cases():
        flags = builtin_diagnose(h, summary, dict(DEFAULT_THRESHOLDS))
        got, got_cause, text = verdict_of(flags)
        details[name] = (text, tail(h))
        out.append((name, verdict, cause, got, got_cause))
    return out


def tail(h: pd.DataFrame, n: int = 6) -> str:
    cols = [c for c in ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                        "max_batch_loss", "batch_loss") if c in h]
    h = h.sort_values("epoch")[cols]
    picks = sorted(set([0, 1, *range(max(0, len(h) - n), len(h))]))
    return h.iloc[picks].round(4).to_string(index=False)


# -- real trainings -------------------------------------------------------------------------

class TinyBN:
    """A plugin object: ``bnmlp``, an MLP with BatchNorm (64 -> 64 -> BN -> ReLU -> 10)."""

    @staticmethod
    def bnmlp(input_shape, num_classes, *, width: int = 64):
        """Flatten, Linear, BatchNorm1d, ReLU, Linear."""
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width),
                             nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, num_classes))

    def __init__(self):
        import lrlab

        @lrlab.hookimpl
        def lrlab_register_models(register):
            register("bnmlp", TinyBN.bnmlp)

        self.lrlab_register_models = lrlab_register_models


# (sweep name, run_sweep keyword arguments, {selector: (label, verdict, cause)}); a
# selector is a dict of axis values a row of ``runs`` must match (lr compared as float)
SWEEPS: list[tuple[str, dict[str, Any], list[tuple[dict[str, Any], str, str, str | None]]]] = [
    ("lr", dict(lr=[1e-4, 0.01, 0.03, 0.3, 0.5, 1.0, 10.0], epochs=[40], augment=["none"]), [
        ({"lr": 1e-4}, "real: sgd lr 1e-4, 40 epochs", "underfit", "stuck"),
        ({"lr": 0.01}, "real: sgd lr 0.01, 40 epochs", "ok", None),
        # train loss -> 0.003, train acc 1.0, val loss 0.123 (epoch 11) -> 0.16: Prechelt's GL
        ({"lr": 0.03}, "real: sgd lr 0.03, 40 epochs (val loss up 30% from its min)",
         "overfit", "gl"),
        # learned to 0.81 val acc in 1 epoch, then the training loss climbed back to ~1.7
        ({"lr": 0.3}, "real: sgd lr 0.3, 40 epochs", "unstable", None),
        # a 6x batch spike in epoch 1, then at chance (val acc 0.10) for 30 epochs
        ({"lr": 0.5}, "real: sgd lr 0.5, 40 epochs (blown up to chance)", "diverged", None),
        ({"lr": 1.0}, "real: sgd lr 1, 40 epochs", "diverged", None),
        ({"lr": 10.0}, "real: sgd lr 10, 40 epochs", "diverged", None),
    ]),
    ("noise", dict(lr=[0.01, 0.03], epochs=[40], augment=["noise(std=0.3)"]), [
        ({"lr": 0.01}, "real: sgd lr 0.01 + noise aug, 40 epochs", "ok", None),
        # val loss ~0.09-0.11 over the last 15 epochs; epoch 40 alone jumped 0.085 -> 0.141
        # with the training loss rising too (0.026 -> 0.050): noise, not overfitting
        ({"lr": 0.03}, "real: sgd lr 0.03 + noise aug, 40 epochs (last-epoch val blip)",
         "ok", None),
    ]),
    ("opt", dict(optimizer=["adam", "radam"], lr=[1e-3], epochs=[1, 40], augment=["none"]), [
        ({"optimizer": "adam", "epochs": 1}, "real: adam 1e-3, 1 epoch", "underfit",
         "still_improving"),
        ({"optimizer": "radam", "epochs": 1}, "real: radam 1e-3, 1 epoch", "underfit", None),
        ({"optimizer": "adam", "epochs": 40}, "real: adam 1e-3, 40 epochs", "ok", None),
        ({"optimizer": "radam", "epochs": 40}, "real: radam 1e-3, 40 epochs", "ok", None),
    ]),
    ("loss-sched", dict(loss=["cross_entropy", "mse"], schedule=["constant", "onecycle"],
                        lr=[0.01, 0.3], epochs=[40], augment=["none"]), [
        ({"loss": "cross_entropy", "schedule": "onecycle", "lr": 0.01},
         "real: sgd lr 0.01 onecycle, 40 epochs", "ok", None),
        # learned to 0.64 in epoch 1, a 5.5 batch spike in epoch 14, then at chance
        ({"loss": "cross_entropy", "schedule": "onecycle", "lr": 0.3},
         "real: sgd lr 0.3 onecycle, 40 epochs (ends at chance)", "diverged", None),
        # mse's gradients are ~10x smaller: lr 0.01 is far too small for it (acc ~0.5)
        ({"loss": "mse", "schedule": "constant", "lr": 0.01},
         "real: sgd lr 0.01 mse, 40 epochs", "underfit", None),
        ({"loss": "mse", "schedule": "onecycle", "lr": 0.01},
         "real: sgd lr 0.01 mse onecycle, 40 epochs", "underfit", None),
        ({"loss": "mse", "schedule": "constant", "lr": 0.3},
         "real: sgd lr 0.3 mse, 40 epochs", "ok", None),
        ({"loss": "mse", "schedule": "onecycle", "lr": 0.3},
         "real: sgd lr 0.3 mse onecycle, 40 epochs", "ok", None),
    ]),
    ("tiny", dict(lr=[0.01, 0.03], epochs=[150], augment=["none"],
                  split=[0.05, 0.475, 0.475]), [
        ({"lr": 0.01}, "real: 5% training data, lr 0.01, 150 epochs", "overfit", None),
        ({"lr": 0.03}, "real: 5% training data, lr 0.03, 150 epochs", "overfit", None),
    ]),
    ("stop", dict(lr=[0.03, 0.1], epochs=[100], augment=["none"],
                  stopper=["patience(patience=10,restore_best=True)"]), [
        ({"lr": 0.03}, "real: lr 0.03, 100 epochs, patience 10 restore_best", "ok", None),
        ({"lr": 0.1}, "real: lr 0.1, 100 epochs, patience 10 restore_best", "ok", None),
    ]),
    ("bn", dict(model=["bnmlp"], lr=[0.05, 0.3, 1.0], epochs=[30], augment=["none"]), [
        ({"lr": 0.05}, "real: BN mlp lr 0.05, 30 epochs", "ok", None),
        # train loss ~1e-4 and train acc 1.0 from epoch 21 on; val loss bounces 0.09-0.20
        # from epoch to epoch (val acc 0.95-0.975): converged, nothing left to gain
        ({"lr": 0.3}, "real: BN mlp lr 0.3, 30 epochs (converged, noisy val loss)", "ok",
         None),
        # 0.82 val acc after epoch 1, then an 8x batch spike and at chance to the end
        ({"lr": 1.0}, "real: BN mlp lr 1, 30 epochs (ends at chance)", "diverged", None),
    ]),
]


def _match(row: pd.Series, sel: dict[str, Any]) -> bool:
    for k, v in sel.items():
        if isinstance(v, float):
            if not math.isclose(float(row[k]), v, rel_tol=1e-9):
                return False
        elif str(row[k]) != str(v):
            return False
    return True


def run_real_cases(tmp: str | Path) -> list[tuple[str, str, str | None, str, str]]:
    import lrlab

    out = []
    for name, kwargs, picks in SWEEPS:
        plugins = [TinyBN()] if kwargs.get("model") == ["bnmlp"] else []
        res = lrlab.run_sweep(out=str(tmp), report=False, name=name, fresh=True,
                              plugins=plugins, **kwargs)
        runs = res.runs
        for sel, label, verdict, cause in picks:
            rows = runs[[_match(r, sel) for _, r in runs.iterrows()]]
            assert len(rows) == 1, (name, sel, runs[["run_id"]].to_string())
            row = rows.iloc[0]
            h = res.history[res.history["run_id"] == row["run_id"]]
            details[label] = (str(row["flags"]), tail(h))
            out.append((label, verdict, cause, str(row["verdict"]), str(row["cause"])))
    return out


def verdict_cases(tmp: str | Path) -> list[tuple[str, str, str | None, str, str]]:
    """Every case, run: (name, expected verdict, expected cause or None, lrlab's verdict,
    lrlab's cause)."""
    return run_hand_cases() + run_real_cases(tmp)
