"""The command line as a user meets it: output, exit codes, one-line errors, nothing
half-written on bad input."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from typer.testing import CliRunner

from lrlab.cli import app

runner = CliRunner()
TINY = ["--lr", "0.05", "--epochs", "2", "--augment", "none"]


def invoke(*args, cwd=None):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "lrlab", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert "sweep" in proc.stdout and "lr-find" in proc.stdout


def test_collect_only_lists_the_default_runs_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", "--collect-only")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert "mlp-lr0.01-ep40-none-s0" in lines
    assert lines[-1] == "12 runs collected"
    assert not (tmp_path / "reports").exists()


def test_sweep_prints_table_where_results_went_and_pytest_style_last_line(out):
    result = invoke("sweep", *TINY, "--lr", "0.05,1000", "--out", out, "--name", "t")
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("2 runs: ") and last.endswith("s")
    assert "1 diverged" in last
    assert "mlp-lr0.05-ep2-none-s0" in result.stdout
    assert str(out / "t") in result.stdout
    runs = pd.read_parquet(out / "t" / "runs.parquet")
    assert sorted(runs["run_id"]) == ["mlp-lr0.05-ep2-none-s0", "mlp-lr1000-ep2-none-s0"]


@pytest.mark.parametrize("args, message", [
    (["--model", "mpl"], "unknown model 'mpl'; did you mean 'mlp'? (choices: cnn, "),
    (["--optimizer", "adma"], "did you mean 'adam'?"),
    (["--model", "mlp(widht=3)"], "model 'mlp' has no parameter 'widht'; did you mean 'width'?"),
    (["--model", "mlp(width=wide)"], "parameter 'width' must be int, got 'wide'"),
    (["--lr", "0"], "learning rate must be > 0"),
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--lr", ","], "grid would be empty"),
    (["--augment", "flip+crap"], "unknown augmentation 'crap'; did you mean 'crop'?"),
    (["--stopper", "patience(patience=3.5)"], "parameter 'patience' must be int"),
    (["--executor", "locl"], "unknown executor 'locl'"),
    (["-k", "nothing-matches"], "selects none of the runs"),
    (["--threshold", "overfit_gl"], "is not KEY=NUMBER"),
    (["--threshold", "overfit_gapacc=0.1"], "did you mean 'overfit_gap_acc'?"),
    (["--seeds", "x"], "seeds value 'x' is not an integer"),
    (["--threads", "x"], "threads value 'x' is not an integer"),
    (["--eval-batch-size", "0"], "eval_batch_size must be >= 1"),
    (["--lr", "0.1,0.1000001"], "would both be run 'lr0.1'"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(out, args, message):
    result = invoke("sweep", *TINY, "--out", out, *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert not out.exists()


def test_malformed_toml_exits_2(tmp_path):
    sweep = tmp_path / "bad.toml"
    sweep.write_text("lr = [0.1,\n")
    result = invoke("sweep", sweep, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "malformed TOML" in result.stderr
    assert not (tmp_path / "r").exists()


def test_data_root_without_files_exits_2_before_writing(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    result = invoke("sweep", *TINY, "--dataset", "mnist", "--data-root", empty,
                    "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "--download" in result.stderr and str(empty) in result.stderr
    assert not (tmp_path / "r").exists()


def test_keyword_selects_runs(out):
    result = invoke("sweep", *TINY, "--lr", "0.01,0.1", "-k", "lr0.1", "--out", out,
                    "--collect-only")
    assert result.stdout.strip().splitlines() == ["mlp-lr0.1-ep2-none-s0", "1 run collected"]


BROKEN_PLUGIN = '''
import lrlab
from torch import nn

def broken(input_shape, num_classes):
    """A model whose forward raises."""
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, num_classes)
        def forward(self, x):
            raise RuntimeError("broken forward")
    return Broken()

@lrlab.hookimpl
def lrlab_register_models(register):
    register("broken", broken)
'''


@pytest.fixture
def broken_sweep(tmp_path):
    (tmp_path / "lrlab_plugins.py").write_text(BROKEN_PLUGIN)
    sweep = tmp_path / "broken.toml"
    sweep.write_text('model = ["broken", "mlp"]\nlr = [0.05]\nepochs = 2\naugment = "none"\n'
                     f'out = "{tmp_path / "r"}"\n')
    return sweep


def test_a_run_that_raises_is_an_error_and_the_sweep_goes_on(broken_sweep, tmp_path):
    result = invoke("sweep", broken_sweep)
    assert result.exit_code == 0, result.output
    runs = pd.read_parquet(tmp_path / "r" / "broken" / "runs.parquet").set_index("run_id")
    assert runs.loc["broken-lr0.05-ep2-none-s0", "verdict"] == "error"
    assert "RuntimeError: broken forward" in runs.loc["broken-lr0.05-ep2-none-s0", "error"]
    assert "Traceback" in runs.loc["broken-lr0.05-ep2-none-s0", "error"]
    assert runs.loc["mlp-lr0.05-ep2-none-s0", "verdict"] != "error"
    assert "1 error" in result.stdout.strip().splitlines()[-1]


def test_exitfirst_stops_after_the_first_error(broken_sweep, tmp_path):
    result = invoke("sweep", broken_sweep, "-x")
    runs = pd.read_parquet(tmp_path / "r" / "broken" / "runs.parquet")
    assert list(runs["run_id"]) == ["broken-lr0.05-ep2-none-s0"]
    assert result.stdout.strip().splitlines()[-1].startswith("1 run: 1 error")


def test_strict_exits_1_on_a_diverged_run_and_0_when_all_ok(out):
    bad = invoke("sweep", *TINY, "--lr", "1000", "--out", out, "--name", "bad", "--strict")
    assert bad.exit_code == 1
    good = invoke("sweep", *TINY, "--out", out, "--name", "good", "--strict",
                  "--threshold", "overfit_gap_acc=1", "--threshold", "overfit_gl=1000",
                  "--threshold", "underfit_progress=0")
    assert good.exit_code == 0, good.output


def test_junit_xml_has_a_test_case_per_run_with_verdict_failures(broken_sweep, tmp_path):
    xml = tmp_path / "junit.xml"
    invoke("sweep", broken_sweep, "--lr", "0.05,1000", "--junit-xml", xml)
    suite = ET.parse(xml).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"broken-lr0.05-ep2-none-s0", "broken-lr1000-ep2-none-s0",
                          "mlp-lr0.05-ep2-none-s0", "mlp-lr1000-ep2-none-s0"}
    diverged = cases["mlp-lr1000-ep2-none-s0"].find("failure")
    assert diverged is not None and diverged.get("type") == "diverged"
    assert "exceeds" in diverged.get("message") or "became" in diverged.get("message")
    assert diverged.get("message").startswith("diverged (nonfinite): ")  # said once, not twice
    assert diverged.get("message").count("diverged") == 1
    assert cases["broken-lr0.05-ep2-none-s0"].find("error") is not None
    assert suite.get("errors") == "2" and suite.get("tests") == "4"
    # the same runs fail in JUnit as under --strict: overfit and diverged (underfit passes)
    verdicts = pd.read_parquet(xml.parent / "r" / "broken" / "runs.parquet").set_index(
        "run_id")["verdict"]
    failing = {name for name, c in cases.items() if c.find("failure") is not None}
    assert failing == {r for r, v in verdicts.items() if v in ("overfit", "diverged")}


def test_resume_skips_finished_runs_and_fresh_starts_over(out):
    first = invoke("sweep", *TINY, "--out", out, "--name", "r")
    assert first.exit_code == 0
    wall = pd.read_parquet(out / "r" / "runs.parquet")["wall_s"].tolist()
    again = invoke("sweep", *TINY, "--lr", "0.05,0.1", "--out", out, "--name", "r")
    assert "resumed: 1 finished run(s) skipped" in again.stdout
    runs = pd.read_parquet(out / "r" / "runs.parquet")
    assert sorted(runs["run_id"]) == ["mlp-lr0.05-ep2-none-s0", "mlp-lr0.1-ep2-none-s0"]
    assert runs.set_index("run_id").loc["mlp-lr0.05-ep2-none-s0", "wall_s"] == wall[0]
    history = pd.read_parquet(out / "r" / "history.parquet")
    assert len(history) == 2 * 3  # epochs 0..2 per run, nothing duplicated
    fresh = invoke("sweep", *TINY, "--lr", "0.05,0.1", "--out", out, "--name", "r", "--fresh")
    assert "resumed" not in fresh.stdout


def test_a_different_grid_in_the_same_folder_is_refused(out):
    invoke("sweep", *TINY, "--lr", "0.05,0.1", "--out", out, "--name", "r")
    result = invoke("sweep", *TINY, "--lr", "0.2", "--out", out, "--name", "r")
    assert result.exit_code == 2
    assert "--fresh" in result.stderr and "--name" in result.stderr
    assert len(pd.read_parquet(out / "r" / "runs.parquet")) == 2  # nothing lost


@pytest.mark.parametrize("text, message", [
    (b"\xff\xfe", "malformed TOML"),
    (b"thresholds = 5\n", "thresholds must be a table"),
    (b'download = "no"\n', "download must be true or false"),
    (b"seed = [1]\nseeds = 2\n", "not both"),
    (b"eval_batch_size = -5\n", "eval_batch_size must be >= 1"),
])
def test_a_bad_sweep_file_is_one_line_exit_2(tmp_path, out, text, message):
    sweep_file = tmp_path / "bad.toml"
    sweep_file.write_bytes(text)
    result = invoke("sweep", sweep_file, "--out", out)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_unwritable_destinations_are_refused_before_anything_runs(tmp_path, out):
    (tmp_path / "a-file").write_text("")
    folder = invoke("sweep", tmp_path)  # a folder where a sweep file should be
    assert folder.exit_code == 2 and "is a folder" in folder.stderr
    on_file = invoke("sweep", *TINY, "--out", tmp_path / "a-file" / "sub")
    assert on_file.exit_code == 2 and "a-file is a file" in on_file.stderr
    junit = invoke("sweep", *TINY, "--out", out, "--junit-xml", tmp_path / "no" / "j.xml")
    assert junit.exit_code == 2 and "does not exist" in junit.stderr
    assert not out.exists()  # refused before training, not after


SECTION_PLUGIN = """
from lrlab.report import Section


def lrlab_report_sections(runs):
    return [Section("From the sweep's folder", "<p class='local-section'>here</p>")]
"""


def test_report_rebuilt_elsewhere_loads_the_sweeps_local_plugin_file(tmp_path, out,
                                                                      monkeypatch):
    (tmp_path / "lrlab_plugins.py").write_text(SECTION_PLUGIN)
    (tmp_path / "s.toml").write_text('lr = 0.05\nepochs = 1\naugment = "none"\n')
    assert invoke("sweep", tmp_path / "s.toml", "--out", out).exit_code == 0
    (out / "s" / "index.html").unlink()
    monkeypatch.chdir(out)  # another folder, with no lrlab_plugins.py
    assert invoke("report", out / "s").exit_code == 0
    assert "local-section" in (out / "s" / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("damage", ["runs", "history", "manifest", "manifest-list"])
def test_damaged_results_are_one_line_and_exit_2(out, damage):
    invoke("sweep", *TINY, "--out", out, "--name", "d")
    target = {"runs": "runs.parquet", "history": "history.parquet",
              "manifest": "manifest.json", "manifest-list": "manifest.json"}[damage]
    (out / "d" / target).write_bytes(b"[1, 2]" if damage == "manifest-list" else b"garbage")
    for command in ("report", "show"):
        result = invoke(command, out / "d")
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and "damaged" in result.stderr
    again = invoke("sweep", *TINY, "--out", out, "--name", "d")
    if damage in ("runs", "history"):  # resuming reads the tables (it rewrites the manifest)
        assert again.exit_code == 2 and "--fresh" in again.stderr
    else:
        assert again.exit_code == 0


def test_a_resumed_sweep_is_judged_again_with_the_new_thresholds(out):
    grid = (*TINY, "--lr", "0.05,0.1", "--out", out, "--name", "j")
    assert invoke("sweep", *grid).exit_code == 0
    before = pd.read_parquet(out / "j" / "runs.parquet")
    assert set(before["cause"]) != {"stuck"}
    again = invoke("sweep", *grid, "--threshold", "underfit_progress=0.999")
    assert "resumed: 2 finished run(s) skipped" in again.stdout
    after = pd.read_parquet(out / "j" / "runs.parquet")
    assert set(after["cause"]) == {"stuck"}  # no run reaches 99.9% of the way
    assert list(after["wall_s"]) == list(before["wall_s"])  # judged, not trained again


def test_k_selects_part_of_a_stored_grid_and_keeps_the_rest(out):
    grid = (*TINY, "--lr", "0.05,0.1", "--out", out, "--name", "k")
    first = invoke("sweep", *grid, "-k", "lr0.1")  # one run of the two
    assert first.exit_code == 0, first.output
    assert list(pd.read_parquet(out / "k" / "runs.parquet")["run_id"]) == [
        "mlp-lr0.1-ep2-none-s0"]
    other = invoke("sweep", *grid, "-k", "lr0.05")  # the other: the first one is kept
    assert other.exit_code == 0, other.output
    assert sorted(pd.read_parquet(out / "k" / "runs.parquet")["run_id"]) == [
        "mlp-lr0.05-ep2-none-s0", "mlp-lr0.1-ep2-none-s0"]
    again = invoke("sweep", *grid, "-k", "lr0.1")  # a subset of a finished grid
    assert again.exit_code == 0 and "resumed: 1 finished run(s) skipped" in again.stdout
    assert len(pd.read_parquet(out / "k" / "runs.parquet")) == 2


def test_show_prints_the_stored_table(out):
    invoke("sweep", *TINY, "--out", out, "--name", "s")
    result = invoke("show", out / "s")
    assert result.exit_code == 0
    assert "mlp-lr0.05-ep2-none-s0" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("1 run: ")


def test_show_sorted_by_a_test_column_says_why_that_number_is_optimistic(tmp_path):
    from lrlab.report.synthetic import write_synthetic

    folder = write_synthetic(tmp_path / "syn", lrs=[1e-2, 1e-1])
    by_test = invoke("show", folder, "--sort", "test_acc")
    assert by_test.exit_code == 0 and "makes that score optimistic" in by_test.stdout
    by_val = invoke("show", folder, "--sort", "val_acc")
    assert "optimistic" not in by_val.stdout
    assert "only test number shown, read after choosing on validation" in by_val.stdout


def test_show_on_a_folder_without_results_exits_2(tmp_path):
    result = invoke("show", tmp_path)
    assert result.exit_code == 2 and "holds no sweep results" in result.stderr


def test_list_shows_components_params_and_docs():
    result = runner.invoke(app, ["list", "model"])
    assert result.exit_code == 0
    assert "mlp(width=128, depth=2, dropout=0.0)" in result.stdout
    assert "resnet18" in result.stdout and "builtin.models" in result.stdout
    everything = runner.invoke(app, ["list"])
    for kind in ("datasets", "models", "losses", "optimizers", "schedules", "augmentations",
                 "stoppers", "executors"):
        assert kind in everything.stdout
    bad = runner.invoke(app, ["list", "modle"])
    assert bad.exit_code == 2 and "did you mean 'model'" in bad.stderr


def test_plugins_shows_each_builtin_and_what_it_registered():
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    assert "builtin.models" in result.stdout and "model:mlp" in result.stdout
    assert "built-in" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "mlp(width=-3)"], "needs width >= 1"),
    (["--optimizer", "sgd(momentum=-1)"], "Invalid momentum value"),
    (["--augment", "crop(padding=-1)"], "padding must be >= 0"),
])
def test_bad_parameter_values_exit_2_before_anything_is_written(out, args, message):
    result = invoke("sweep", *TINY, "--out", out, *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
