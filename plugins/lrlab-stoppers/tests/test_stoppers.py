"""lrlab-stoppers: discovered through its entry point; stops on hand-computed sequences."""

import math

import lrlab_stoppers
import pytest

from lrlab.testing import entry_point


def feed(stopper, val, train=None):
    """Update epoch by epoch; the epoch it stopped at (None if it never did)."""
    train = train or [0.0] * len(val)
    for epoch, (v, t) in enumerate(zip(val, train, strict=True), start=1):
        if stopper.update(epoch, {"val_loss": v, "train_loss": t, "lr": 0.1,
                                  "val_acc": 0.5, "train_acc": 0.5}):
            return epoch
    return None


def test_discovered_through_the_real_entry_point(lrlab_plugins):
    assert entry_point("lrlab-stoppers").load() is lrlab_stoppers
    host = lrlab_plugins()
    assert host.info["lrlab-stoppers"].source == "entry point"
    assert {"stopper:plateau_ema", "stopper:gap_growth"} <= \
        set(host.info["lrlab-stoppers"].registered)


def test_plateau_ema_rides_out_a_noisy_epoch_that_raw_patience_stops_on():
    val = [1.0, 0.8, 0.85, 0.6]  # one noisy epoch (3) on a falling curve
    # alpha 0.5: s = 1.0, 0.9, 0.875, 0.7375: the smoothed curve never stops falling
    stopper = lrlab_stoppers.plateau_ema(alpha=0.5, patience=1)
    assert feed(stopper, val) is None
    assert stopper.smoothed == pytest.approx(0.7375)
    # alpha 1 is no smoothing: the raw bump at epoch 3 stops it, like patience=1
    assert feed(lrlab_stoppers.plateau_ema(alpha=1.0, patience=1), val) == 3


def test_plateau_ema_stops_after_patience_epochs_without_improvement():
    val = [1.0, 0.8, 0.9, 0.95, 1.0, 1.1]
    # alpha 0.5: s = 1.0, 0.9, 0.9 (no gain), 0.925, 0.9625 -> wait 3 at epoch 5
    assert feed(lrlab_stoppers.plateau_ema(alpha=0.5, patience=3), val) == 5


def test_plateau_ema_keeps_the_lowest_raw_val_loss_epoch():
    stopper = lrlab_stoppers.plateau_ema(alpha=0.5, patience=3)
    feed(stopper, [1.0, 0.8, 0.9, 0.95, 1.0, 1.1])
    assert stopper.best_epoch == 2 and stopper.restore_best


def test_gap_growth_stops_when_the_gap_grows_patience_times_in_a_row():
    val = [1.0, 0.9, 0.9, 0.9, 0.9, 0.9]  # flat validation loss: patience would wait
    train = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # gap 0.1, 0.1, 0.2, 0.3, 0.4, 0.5
    stopper = lrlab_stoppers.gap_growth(patience=3)
    assert feed(stopper, val, train) == 5
    assert stopper.best_epoch == 2  # the first epoch of the lowest val loss


def test_gap_growth_restarts_its_count_when_the_gap_shrinks():
    val = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    train = [0.9, 0.8, 0.7, 0.8, 0.7, 0.6]  # gap .1 .2 .3 .2 .3 .4: streak 2, 0, 1, 2
    assert feed(lrlab_stoppers.gap_growth(patience=3), val, train) is None


def test_gap_growth_min_delta_ignores_small_growth():
    val = [1.0] * 5
    train = [0.9, 0.89, 0.88, 0.87, 0.86]  # the gap grows 0.01 per epoch
    assert feed(lrlab_stoppers.gap_growth(patience=2, min_delta=0.05), val, train) is None
    assert feed(lrlab_stoppers.gap_growth(patience=2), val, train) == 3


def test_non_finite_losses_are_neither_improvement_nor_growth():
    stopper = lrlab_stoppers.gap_growth(patience=1)
    assert feed(stopper, [1.0, math.nan, math.inf], [0.5, 0.5, 0.5]) is None
    assert stopper.best_epoch == 1


def test_bad_parameters_are_a_usage_error():
    import lrlab

    with pytest.raises(lrlab.UsageError, match="alpha"):
        lrlab_stoppers.plateau_ema(alpha=0.0)


def test_sweep_stops_runs_through_the_entry_point(lrlab_sweep):
    result = lrlab_sweep(stopper=["plateau_ema(patience=1,alpha=1.0)",
                                  "gap_growth(patience=1)"],
                         model="mlp(width=64)", lr=[0.5], epochs=30)
    runs = result.runs
    assert list(runs["error"]) == ["", ""], runs["error"].tolist()
    # patience 1 on 30 epochs of a too-large learning rate stops both early
    assert (runs["epochs_run"] < 30).all(), runs[["stopper", "epochs_run", "stopped_by"]]
    assert set(runs["stopped_by"]) == {"stopper"}
