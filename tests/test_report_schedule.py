"""The learning-rate schedule figure: each run's LR replayed per batch from its schedule,
consistent with what training recorded, and drawn per epoch when it cannot be replayed."""

from __future__ import annotations

import math

import pytest
from htmldom import parse

import lrlab
from lrlab.plugins import load_plugins
from lrlab.report import write_report
from lrlab.report.analysis import view
from lrlab.report.fig_lr import MAX_POINTS, lr_schedule, replayed_lrs
from lrlab.results import load_results


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory):
    """Two schedules, two LRs, 3 epochs on digits (34 batches an epoch)."""
    out = tmp_path_factory.mktemp("reports")
    return lrlab.run_sweep(out=out, name="sched", lr=[0.01, 0.1], epochs=3, augment="none",
                           executor="local",  # the LR recorded by torch's own scheduler
                           schedule=["constant", "onecycle(pct_start=0.5)"], report=False)


def sweep_view(result, registry):
    runs, history, manifest = load_results(result.folder)
    return view(runs, history, manifest, "sched", registry)


def test_replayed_lrs_match_the_lr_training_recorded_at_each_epoch(scheduled):
    sw = sweep_view(scheduled, load_plugins().registry)
    spe = math.ceil(sw.manifest["split_sizes"]["digits"]["train"] / 32)
    for row in sw.runs.to_dict("records"):
        x, lrs = replayed_lrs(sw, row)
        assert len(lrs) == row["epochs_run"] * spe  # one value per batch trained
        recorded = sw.history[sw.history["run_id"] == row["run_id"]].set_index("epoch")["lr"]
        for epoch in range(1, row["epochs_run"] + 1):  # the last batch of epoch e sits at e
            assert x[epoch * spe - 1] == pytest.approx(epoch)
            assert lrs[epoch * spe - 1] == pytest.approx(recorded[epoch], rel=1e-12)
        if row["schedule"].startswith("onecycle"):  # warm-up inside the first epoch shows
            assert lrs[0] == pytest.approx(row["lr"] / 25)
            assert max(lrs) == pytest.approx(row["lr"], rel=1e-3)
            assert lrs[spe // 2] > lrs[0] * 5


def test_long_runs_are_thinned_to_at_most_max_points_keeping_the_last_batch(scheduled):
    sw = sweep_view(scheduled, load_plugins().registry)
    row = sw.runs.iloc[0].to_dict()
    sw.manifest["split_sizes"]["digits"]["train"] = 32 * 5000  # 5,000 batches an epoch
    x, lrs = replayed_lrs(sw, row)
    assert len(lrs) <= MAX_POINTS + 1 and x[-1] == pytest.approx(row["epochs_run"])


def test_without_a_registry_or_with_an_unknown_schedule_the_figure_falls_back_to_epochs(
        scheduled):
    sw = sweep_view(scheduled, None)
    assert replayed_lrs(sw, sw.runs.iloc[0].to_dict()) is None
    assert "last batch of each epoch" in lr_schedule(sw).caption
    sw = sweep_view(scheduled, load_plugins().registry)
    sw.runs["schedule"] = sw.runs["schedule"].str.replace("onecycle", "warmup_plugin")
    assert replayed_lrs(sw, sw.runs.iloc[-1].to_dict()) is None
    assert not lr_schedule(sw).absent


def test_the_report_draws_the_schedule_per_batch(scheduled):
    dom = parse(write_report(scheduled.folder))
    figure = dom.find("figure", id="fig-lr-schedule")
    assert figure is not None and figure.find("img") is not None
    assert "at every batch" in figure.find("figcaption").text()
