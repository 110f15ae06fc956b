"""Repeated splits (``--split-seeds N`` / ``split_seed`` as an axis): every configuration
on N train/val/test splits, so its intervals hold the split's variance too (Monte Carlo
cross-validation); one split keeps the run ids and resume keys a sweep had before."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

import lrlab
from lrlab.cli import app
from lrlab.config import build_config, expand, run_key
from lrlab.configs import config_id, config_table
from lrlab.errors import UsageError
from lrlab.terminal import print_results

TINY = {"lr": [0.1], "epochs": 2, "seeds": 2, "augment": "none", "model": "mlp(width=16)",
        "report": False}


@pytest.fixture(scope="module")
def two_splits(tmp_path_factory):
    out = tmp_path_factory.mktemp("splits")
    return lrlab.run_sweep(out=out, name="two", split_seeds=2, executor="local", **TINY)


def test_every_configuration_runs_on_each_split_and_is_one_configuration(two_splits):
    runs = two_splits.runs
    assert sorted(zip(runs["split_seed"], runs["seed"], strict=True)) == \
        [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert sorted(runs["run_id"]) == [f"mlp(width=16)-lr0.1-ep2-none-sp{p}-s{s}"
                                      for p in (0, 1) for s in (0, 1)]
    assert set(runs["run_id"].map(config_id)) == {"mlp(width=16)-lr0.1-ep2-none"}
    table = config_table(runs)
    assert len(table) == 1 and table["n"].iloc[0] == 4
    # the splits differ: the same seed learns differently on each
    by = runs.set_index("run_id")["tested_val_acc"]
    assert by["mlp(width=16)-lr0.1-ep2-none-sp0-s0"] != by["mlp(width=16)-lr0.1-ep2-none-sp1-s0"]


def test_the_numbers_say_they_hold_the_splits_variance(two_splits):
    from lrlab.report.analysis import intervals_note, view

    out = io.StringIO()
    print_results(Console(file=out, width=300), two_splits.runs)
    text = out.getvalue()
    assert "4 runs (2 seeds × 2 splits)" in text and "over seeds and splits" in text
    _, history, manifest = lrlab.load_results(two_splits.folder)
    note = intervals_note(view(two_splits.runs, history, manifest, "two"))
    assert "seeds and splits: each run had its own initialisation, batch order and split" \
        in note and "paired by seed and split" in note
    assert manifest["config"]["grid"]["split_seed"] == [0, 1]
    assert manifest["split_sizes"]["digits"] == {"train": 1079, "val": 359, "test": 359}


def test_one_split_says_how_to_get_the_splits_variance(tmp_path):
    from lrlab.report.analysis import intervals_note, view

    result = lrlab.run_sweep(out=tmp_path, name="one", executor="local", **TINY)
    assert set(result.runs["split_seed"]) == {0}
    assert not any("-sp" in r for r in result.runs["run_id"])
    _, history, manifest = lrlab.load_results(result.folder)
    note = intervals_note(view(result.runs, history, manifest, "one"))
    assert "the split is fixed (split_seed 0)" in note and "--split-seeds 3" in note


def test_vectorized_trains_each_split_as_its_own_group_with_the_local_numbers(two_splits,
                                                                             tmp_path):
    result = lrlab.run_sweep(out=tmp_path, name="vec", split_seeds=2, executor="vectorized",
                             **TINY)
    local = two_splits.runs.set_index("run_id")["tested_val_acc"].sort_index()
    vec = result.runs.set_index("run_id")["tested_val_acc"].sort_index()
    assert vec.to_dict() == local.to_dict()
    from lrlab.plugins import load_plugins
    from lrlab.vectorized.plan import group_key

    registry = load_plugins(use_entry_points=False).registry
    given = {k: v for k, v in TINY.items() if k != "report"}
    config = build_config(None, {**given, "split_seeds": 2}, cwd=tmp_path)
    keys = {group_key(registry, run) for run in expand(config)}
    assert len(keys) == 2  # one group per split: a group shares one split's tensors


def test_a_list_or_a_count_of_split_seeds_and_not_both(tmp_path):
    assert build_config(None, {"split_seed": [3, 5]}, cwd=tmp_path).grid["split_seed"] == [3, 5]
    assert build_config(None, {"split_seeds": 3}, cwd=tmp_path).grid["split_seed"] == [0, 1, 2]
    assert build_config(None, {"split_seed": 4}, cwd=tmp_path).grid["split_seed"] == [4]
    with pytest.raises(UsageError, match="give split_seed .* or split_seeds .*, not both"):
        build_config(None, {"split_seed": [1], "split_seeds": 2}, cwd=tmp_path)
    # a later layer's count replaces an earlier layer's list, as seeds does
    (tmp_path / "s.toml").write_text("split_seed = [7, 8]\n")
    assert build_config(tmp_path / "s.toml", {"split_seeds": 2},
                        cwd=tmp_path).grid["split_seed"] == [0, 1]


def test_bad_split_seeds_on_the_command_line_are_one_line_and_exit_2(tmp_path):
    runner = CliRunner()
    for args, message in ((["--split-seeds", "0"], "split_seeds must be >= 1"),
                          (["--split-seed", "-1"], "split"),
                          (["--split-seed", "1", "--split-seeds", "2"], "not both")):
        res = runner.invoke(app, ["sweep", "--out", str(tmp_path / "o"), *args])
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_one_split_keeps_the_run_ids_and_resume_keys_of_earlier_versions(tmp_path):
    # the keys lrlab 0.x computed when split_seed was one fixed setting (from git history)
    default = expand(build_config(None, {}, cwd=tmp_path))[0]
    assert default.run_id == "mlp-lr0.0001-ep40-none-s0"
    assert run_key(default, build_config(None, {}, cwd=tmp_path)) == "c3bd985904c01760"
    two = build_config(None, {"split_seed": 2}, cwd=tmp_path)
    assert run_key(expand(two)[0], two) == "6bf8eb0e1cb47ab6"


def test_the_range_test_takes_one_split(tmp_path):
    from lrlab.lrfind import lr_find

    with pytest.raises(UsageError, match="the range test trains on one split"):
        lr_find(split_seed=[0, 1], steps=5)
