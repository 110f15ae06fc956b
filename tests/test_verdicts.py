"""Verdicts: each rule on hand-made histories, thresholds configurable, the numbers kept in
flags; and the default sweep showing every verdict its grid should produce."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import lrlab
from lrlab.errors import UsageError
from lrlab.verdicts import (
    DEFAULT_THRESHOLDS,
    builtin_diagnose,
    check_thresholds,
    generalization_loss,
    summary_line,
    worst,
)


def history(train_loss, train_acc, val_loss, val_acc):
    n = len(train_loss)
    return pd.DataFrame({"epoch": range(n), "lr": [0.1] * n, "train_loss": train_loss,
                         "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc})


def summary_of(h: pd.DataFrame, classes=10):
    last = h.iloc[-1]
    best = h.iloc[1:].loc[h["val_loss"].iloc[1:].idxmin()]
    return {"epochs_run": len(h) - 1, "best_epoch": int(best["epoch"]),
            "val_loss": last["val_loss"], "best_val_loss": best["val_loss"],
            "gap_acc": last["train_acc"] - last["val_acc"],
            "gl": generalization_loss(list(h["val_loss"].iloc[1:])),
            "num_classes": classes, "error": ""}


def judge(h, **th):
    flags = builtin_diagnose(h, summary_of(h), {**DEFAULT_THRESHOLDS, **th})
    return worst([f.verdict for f in flags if f.verdict]), "; ".join(map(str, flags))


def test_generalization_loss_is_prechelts_definition():
    # E_opt = 0.5 (epoch 2), E_va(t) = 0.6 -> GL = 100 * (0.6 / 0.5 - 1) = 20
    assert generalization_loss([0.8, 0.5, 0.55, 0.6]) == pytest.approx(20.0)
    assert generalization_loss([1.0, 0.9]) == 0.0
    assert math.isnan(generalization_loss([1.0, float("nan")]))


def test_nonfinite_loss_is_diverged_with_the_epoch():
    verdict, flags = judge(history([2.3, 1.0, float("nan")], [0.1, 0.6, 0.1],
                                   [2.3, 1.1, float("nan")], [0.1, 0.6, 0.1]))
    assert verdict == "diverged" and "nan at epoch 2" in flags


def test_loss_blowing_up_past_its_start_is_diverged_threshold_configurable():
    h = history([2.3, 2.0, 4.0], [0.1, 0.3, 0.2], [2.3, 2.1, 4.1], [0.1, 0.3, 0.2])
    verdict, flags = judge(h)
    assert verdict == "diverged" and "4 at epoch 2 exceeds 1.5x its start 2.3" in flags
    assert judge(h, diverge_factor=2.0)[0] == "underfit"


def test_never_far_from_chance_is_underfit():
    h = history([2.3, 2.2, 2.1], [0.1, 0.2, 0.3], [2.3, 2.2, 2.1], [0.1, 0.2, 0.3])
    verdict, flags = judge(h)
    assert verdict == "underfit"
    assert "best train acc 0.300" in flags and "chance 0.100" in flags and "needs 0.550" in flags
    assert judge(h, underfit_progress=0.2)[0] == "ok"


def test_gap_beyond_threshold_is_overfit_with_numbers():
    h = history([2.3, 0.5, 0.1], [0.1, 0.9, 1.0], [2.3, 0.6, 0.55], [0.1, 0.85, 0.88])
    verdict, flags = judge(h)
    assert verdict == "overfit" and "gap 0.120 > 0.05" in flags
    assert judge(h, overfit_gap_acc=0.2)[0] == "ok"


def test_val_loss_rising_past_its_minimum_is_overfit_by_gl():
    h = history([2.3, 0.5, 0.2, 0.1], [0.1, 0.9, 0.95, 0.96], [2.3, 0.4, 0.5, 0.6],
                [0.1, 0.9, 0.93, 0.93])
    verdict, flags = judge(h)
    assert verdict == "overfit" and "GL 50.0% > 25%" in flags and "epoch 1 of 3" in flags
    assert judge(h, overfit_gl=60)[0] == "ok"


def test_thresholds_reject_non_numbers():
    with pytest.raises(UsageError, match="overfit_gl"):
        check_thresholds({"overfit_gl": "high"})


def test_summary_line_reads_like_pytest():
    line = summary_line(["ok"] * 7 + ["overfit"] * 3 + ["underfit", "diverged"], 14.21)
    assert line == "12 runs: 7 ok, 3 overfit, 1 underfit, 1 diverged in 14.2s"


def test_the_default_sweep_shows_every_verdict_its_grid_should(out):
    result = lrlab.run_sweep(out=out, report=False)
    verdicts = result.runs.set_index("run_id")["verdict"]
    assert set(verdicts) >= {"ok", "overfit", "underfit", "diverged"}
    assert verdicts["mlp-lr0.0001-ep40-none-s0"] == "underfit"  # far too small
    assert verdicts["mlp-lr10-ep40-none-s0"] == "diverged"  # far too large
    assert (verdicts.filter(like="lr0.01-") == "ok").any()
    flagged = result.runs[result.runs["verdict"] != "ok"]
    assert flagged["flags"].str.len().gt(0).all()  # every flagged run says why
