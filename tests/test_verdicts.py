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
    divergence,
    generalization_loss,
    summary_line,
    verdict_of,
)


def history(train_loss, train_acc, val_loss, val_acc, batch_loss=None, max_batch_loss=None):
    n = len(train_loss)
    batch = batch_loss or [float("nan")] + list(train_loss[1:])
    peak = max_batch_loss or [float("nan")] + [b * 1.2 for b in batch[1:]]
    return pd.DataFrame({"epoch": range(n), "lr": [0.1] * n, "train_loss": train_loss,
                         "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
                         "batch_loss": batch, "max_batch_loss": peak})


def summary_of(h: pd.DataFrame, classes=10, **extra):
    return {"num_classes": classes, "error": "", "restored_epoch": 0, "stopped_by": "",
            **extra}


def judge(h, summary=None, **th):
    flags = builtin_diagnose(h, summary or summary_of(h), {**DEFAULT_THRESHOLDS, **th})
    verdict, cause, text = verdict_of(flags)
    return verdict, text, cause


CONVERGED_TRAIN = [2.3, 0.5, 0.2, 0.1, 0.08, 0.07]
CONVERGED_VAL = [2.3, 0.55, 0.3, 0.22, 0.21, 0.205]


def test_generalization_loss_is_prechelts_definition():
    # E_opt = 0.5 (epoch 2), E_va(t) = 0.6 -> GL = 100 * (0.6 / 0.5 - 1) = 20
    assert generalization_loss([0.8, 0.5, 0.55, 0.6]) == pytest.approx(20.0)
    assert generalization_loss([1.0, 0.9]) == 0.0
    assert math.isnan(generalization_loss([1.0, float("nan")]))


def test_nonfinite_loss_is_diverged_with_the_epoch():
    verdict, flags, cause = judge(history([2.3, 1.0, float("nan")], [0.1, 0.6, 0.1],
                                          [2.3, 1.1, float("nan")], [0.1, 0.6, 0.1]))
    assert (verdict, cause) == ("diverged", "nonfinite") and "epoch 2" in flags


def test_training_loss_that_stays_blown_up_is_diverged_threshold_configurable():
    h = history([2.3, 5.0, 6.0, 7.0], [0.1, 0.1, 0.1, 0.1], [2.3, 5.1, 6.1, 7.1],
                [0.1, 0.1, 0.1, 0.1])
    verdict, flags, cause = judge(h)
    assert (verdict, cause) == ("diverged", "blown_up") and "3.0x its start 2.3" in flags
    assert judge(h, diverge_factor=4.0, diverge_batch_factor=100)[0] != "diverged"


def test_the_stop_rule_waits_for_patience_epochs_of_blown_up_loss():
    rows = history([2.3, 5.0, 6.0, 1.0], [0.1] * 4, [2.3] * 4, [0.1] * 4).to_dict("records")
    th = dict(DEFAULT_THRESHOLDS)
    assert divergence(rows[:2], th) is None  # one bad epoch may recover
    assert divergence(rows[:4], th) is None  # ... and this one did
    assert "3 epoch(s)" in divergence(rows[:3] + [{**rows[3], "batch_loss": 9.0}], th)
    nan = {**rows[2], "batch_loss": math.nan, "max_batch_loss": math.inf}
    assert "non-finite" in divergence(rows[:2] + [nan], th)


def test_a_batchnorm_nets_eval_mode_loss_early_on_is_not_divergence():
    # eval-mode (clean) losses of 85 and 166 in the first epochs, as ResNet-18 with
    # one-cycle shows, while the mini-batch losses the optimizer saw stay near the start
    h = history([2.3, 85.0, 166.0, 0.5, 0.3, 0.2], [0.1, 0.38, 0.17, 0.89, 0.92, 0.95],
                [2.3, 93.0, 176.0, 0.45, 0.29, 0.22], [0.1, 0.37, 0.16, 0.88, 0.92, 0.94],
                batch_loss=[math.nan, 1.6, 1.4, 0.9, 0.5, 0.3],
                max_batch_loss=[math.nan, 4.4, 3.0, 2.0, 1.0, 0.6])
    rows = h.to_dict("records")
    assert all(divergence(rows[:i], DEFAULT_THRESHOLDS) is None for i in range(2, 7))
    assert judge(h)[0] not in ("diverged", "unstable")


def test_a_blow_up_that_never_comes_back_is_diverged_not_stuck():
    # lr 1 with momentum: one mini-batch reached 87 in epoch 1, then chance for good
    h = history([2.3, 2.31, 2.30, 2.30], [0.1, 0.1, 0.1, 0.1], [2.3, 2.31, 2.3, 2.3],
                [0.1, 0.1, 0.1, 0.1], max_batch_loss=[math.nan, 87.0, 2.4, 2.4])
    verdict, flags, cause = judge(h)
    assert (verdict, cause) == ("diverged", "blown_up") and "87" in flags


def test_a_spike_it_recovers_from_is_unstable():
    h = history(CONVERGED_TRAIN, [0.1, 0.8, 0.9, 0.95, 0.96, 0.97], CONVERGED_VAL,
                [0.1, 0.78, 0.88, 0.93, 0.94, 0.95],
                max_batch_loss=[math.nan, 31.0, 0.5, 0.3, 0.2, 0.2])
    assert judge(h)[::2] == ("unstable", "spikes")


def test_a_training_loss_that_rises_back_is_unstable_not_underfit():
    # lr 0.509: the training loss fell to 1.84, then rose to 2.39 (the old verdict,
    # underfit, told the learner to raise the LR)
    h = history([2.3, 1.84, 2.0, 2.2, 2.39], [0.1, 0.4, 0.3, 0.2, 0.1],
                [2.3, 1.85, 2.0, 2.2, 2.4], [0.1, 0.4, 0.3, 0.2, 0.1])
    verdict, flags, cause = judge(h)
    assert (verdict, cause) == ("unstable", "rising") and "1.84" in flags and "2.39" in flags


def test_a_collapse_towards_chance_after_learning_is_unstable_not_overfit():
    h = history([2.3, 0.5, 0.4, 0.45, 0.5], [0.1, 0.9, 0.92, 0.5, 0.3],
                [2.3, 0.6, 0.5, 3.0, 5.0], [0.1, 0.85, 0.9, 0.5, 0.3])
    verdict, _, cause = judge(h)
    assert (verdict, cause) == ("unstable", "collapse")


def test_never_far_from_chance_is_underfit_stuck():
    h = history([2.3, 2.2, 2.1], [0.1, 0.2, 0.3], [2.3, 2.2, 2.1], [0.1, 0.2, 0.3])
    verdict, flags, cause = judge(h)
    assert (verdict, cause) == ("underfit", "stuck")
    assert "best train acc 0.300" in flags and "chance 0.100" in flags and "needs 0.550" in flags


def test_ending_near_chance_is_never_ok_or_overfit():
    # the training split memorised, the validation split at chance
    h = history([2.3, 0.5, 0.1], [0.1, 0.9, 1.0], [2.3, 2.3, 2.3], [0.1, 0.11, 0.12])
    assert judge(h)[::2] == ("underfit", "stuck")


def test_a_validation_loss_still_falling_at_the_end_is_underfit_train_longer():
    h = history([2.3, 1.2, 0.7], [0.1, 0.75, 0.85], [2.3, 1.25, 0.75], [0.1, 0.74, 0.84])
    verdict, flags, cause = judge(h)
    assert (verdict, cause) == ("underfit", "still_improving") and "40% lower" in flags
    assert judge(h, underfit_still_improving=0.5, underfit_still_improving_acc=0.2)[0] == "ok"


def test_a_converged_run_is_ok():
    h = history(CONVERGED_TRAIN, [0.1, 0.8, 0.9, 0.95, 0.96, 0.97], CONVERGED_VAL,
                [0.1, 0.78, 0.88, 0.93, 0.94, 0.95])
    assert judge(h) == ("ok", "", "")


def test_gap_beyond_threshold_is_overfit_with_numbers():
    h = history([2.3, 0.5, 0.1, 0.09], [0.1, 0.9, 1.0, 1.0], [2.3, 0.6, 0.55, 0.55],
                [0.1, 0.85, 0.88, 0.88])
    verdict, flags, cause = judge(h)
    assert (verdict, cause) == ("overfit", "gap") and "gap 0.120 > 0.05" in flags
    assert judge(h, overfit_gap_acc=0.2)[0] == "ok"


def test_val_loss_rising_past_its_minimum_is_overfit_by_gl():
    h = history([2.3, 0.5, 0.2, 0.1, 0.08, 0.07], [0.1, 0.9, 0.95, 0.96, 0.96, 0.96],
                [2.3, 0.4, 0.45, 0.55, 0.6, 0.65], [0.1, 0.9, 0.93, 0.93, 0.93, 0.93])
    verdict, flags, cause = judge(h)
    # judged on the lowest of the last three epochs (0.55): GL 37.5%, not the last's 62.5%
    assert (verdict, cause) == ("overfit", "gl") and "GL 37.5% > 25%" in flags
    assert "minimum 0.4 at epoch 1" in flags
    assert judge(h, overfit_gl=40)[0] == "ok"


def test_one_noisy_last_epoch_is_not_overfitting():
    # the minimum in the epoch before the last, then one bad epoch: Prechelt's GL at the
    # last epoch alone would say 66%
    h = history([2.3, 0.3, 0.1, 0.05, 0.03, 0.05], [0.1, 0.9, 0.97, 0.99, 0.99, 0.99],
                [2.3, 0.3, 0.1, 0.103, 0.085, 0.141], [0.1, 0.9, 0.96, 0.96, 0.97, 0.955])
    assert judge(h)[0] == "ok"


def test_a_run_whose_stopper_restored_is_judged_on_the_kept_epoch():
    # val loss bottomed at epoch 2, rose 150% after; the stopper kept epoch 2
    h = history([2.3, 0.5, 0.2, 0.1, 0.05], [0.1, 0.9, 0.95, 0.99, 1.0],
                [2.3, 0.4, 0.2, 0.3, 0.5], [0.1, 0.9, 0.94, 0.93, 0.92])
    restored = summary_of(h, restored_epoch=2, stopped_by="stopper")
    verdict, flags, _ = judge(h, restored)
    assert verdict == "ok"
    assert "val loss rose 150% after epoch 2; early stopping kept epoch 2" in flags
    assert judge(h)[0] == "overfit"  # the same history, the last epoch kept


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
    causes = result.runs.set_index("run_id")["cause"]
    assert causes["mlp-lr0.0001-ep40-none-s0"] == "stuck"
    assert verdicts["mlp-lr10-ep40-none-s0"] == "diverged"  # far too large
    assert (verdicts.filter(like="lr0.01-") == "ok").any()
    flagged = result.runs[result.runs["verdict"] != "ok"]
    assert flagged["flags"].str.len().gt(0).all()  # every flagged run says why
