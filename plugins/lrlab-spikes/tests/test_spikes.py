"""lrlab-spikes: discovered through its entry point; finds spikes; reports them."""

import math

import lrlab_spikes
import pandas as pd
import pytest

import lrlab
from lrlab.testing import entry_point


def history(losses, run_id="r", lr=0.5):
    return pd.DataFrame({"run_id": run_id, "epoch": range(len(losses)), "lr": lr,
                         "train_loss": losses})


def test_discovered_through_the_real_entry_point(lrlab_plugins):
    assert entry_point("lrlab-spikes").load() is lrlab_spikes
    info = lrlab_plugins().info["lrlab-spikes"]
    assert info.source == "entry point"
    assert info.hooks == ["lrlab_diagnose", "lrlab_report_sections"]


def test_a_rise_above_the_best_so_far_is_a_spike():
    # start 2.0, threshold 0.1 * 2.0 = 0.2 above the best so far (0.3 at epoch 2)
    spikes = lrlab_spikes.find_spikes(history([2.0, 1.0, 0.3, 0.45, 0.9, 0.8, 0.2]), 0.1)
    assert len(spikes) == 1
    s = spikes[0]  # the excursion's highest epoch
    assert (s.epoch, s.best, s.loss) == (4, 0.3, 0.9)
    assert s.rise == pytest.approx(0.3)


def test_two_excursions_are_two_spikes_and_noise_is_none():
    assert lrlab_spikes.find_spikes(history([2.0, 1.0, 0.9, 0.95, 0.8, 0.85]), 0.1) == []
    spikes = lrlab_spikes.find_spikes(history([2.0, 1.0, 1.5, 0.5, 0.4, 1.0]), 0.1)
    assert [s.epoch for s in spikes] == [2, 5]


def test_non_finite_losses_are_left_to_the_builtin_verdict():
    assert lrlab_spikes.find_spikes(history([2.0, 1.0, math.nan, math.inf]), 0.1) == []


def test_diagnose_adds_a_note_and_raises_the_verdict_past_spike_diverged():
    run = type("Run", (), {"lr": 0.5})()
    h = history([2.0, 1.0, 0.3, 0.9])
    [note] = lrlab_spikes.lrlab_diagnose(run, h, {})
    assert note.verdict is None and "loss spike" in note.text and "lr 0.5" in note.text
    [flag] = lrlab_spikes.lrlab_diagnose(run, h, {"spike_diverged": 0.2})
    assert flag.verdict == "diverged"
    assert lrlab_spikes.lrlab_diagnose(run, history([2.0, 1.0, 0.5]), {}) is None


def test_stability_finds_the_highest_stable_lr_per_configuration():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "lr": [0.01, 0.1, 1.0],
                         "model": "mlp", "verdict": ["ok", "ok", "diverged"]})
    h = pd.concat([history([2.0, 1.0, 0.5], "a"), history([2.0, 0.5, 1.2], "b"),
                   history([2.0, 5.0, 9.0], "c")])
    [row] = lrlab_spikes.stability(runs, h, 0.1)
    assert (row["stable"], row["unstable"]) == (0.01, 0.1)
    assert row["unstable_runs"] == ["b", "c"]


def test_sweep_flags_a_too_high_lr_and_reports_it_with_a_figure(lrlab_sweep):
    # lr 0.5 spikes (digits, mlp: 0.42 -> 1.07 at epoch 4, 28% of the start) without
    # passing the built-in divergence limits, so only this plugin sees it; spike_diverged
    # makes that the verdict
    result = lrlab_sweep(model="mlp(width=64)", lr=[0.01, 0.5], epochs=6, report=True,
                         thresholds={"spike_diverged": 0.05})
    runs = result.runs.set_index("lr")
    assert "loss spike" not in runs.loc[0.01, "flags"]
    assert "loss spike" in runs.loc[0.5, "flags"], runs["flags"]
    assert "exceeds" not in runs.loc[0.5, "flags"]  # not the built-in divergence
    assert runs.loc[0.5, "verdict"] == "diverged"
    page = (result.folder / "index.html").read_text()
    assert "Loss spikes and the learning rate" in page
    assert "data:image/png;base64," in page.split("Loss spikes and the learning rate")[1]


def test_a_stable_sweep_gets_a_one_line_section_without_a_figure():
    runs = pd.DataFrame({"run_id": ["a"], "lr": [0.01], "verdict": ["ok"]})
    [section] = lrlab_spikes.lrlab_report_sections(runs, history([2.0, 1.0, 0.5], "a"), {})
    assert isinstance(section, lrlab.Section)
    assert "trained stably" in section.html and "<img" not in section.html
