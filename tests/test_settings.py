"""Each sweep setting is declared once (lrlab.settings.SWEEP) and every face derives from
that declaration: --help with its default, sweep files, [tool.lrlab], the manifest, the
resume key and the training settings. The CLI and the Python API are one entry: the same
results and the same report."""

import dataclasses
import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from lrlab.cli import app
from lrlab.config import build_config, expand, run_key
from lrlab.errors import UsageError
from lrlab.settings import SWEEP, Setting, TrainSettings, integer
from lrlab.sweep import run_sweep

runner = CliRunner()
TINY = {"lr": "0.05", "epochs": "2", "augment": "none", "model": "mlp(width=16)"}


def _help() -> str:
    result = runner.invoke(app, ["sweep", "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", result.output)


def test_every_setting_with_an_option_is_in_sweep_help_with_its_default():
    text = _help()
    for setting in SWEEP.values():
        if not setting.option:
            continue
        assert setting.option_name in text, setting.name
        assert f"[default: {setting.shown_default()}]" in text, setting.name
    assert "[default: 0.0001,0.001,0.01,0.1,1,10]" in text  # the default learning rates
    assert "--amp / --no-amp" in text  # a switch can be turned off over [tool.lrlab]


def test_every_default_passes_its_own_parser_and_a_bad_one_fails():
    defaults = SWEEP.defaults()  # every default read through its own parser
    assert set(defaults) == set(SWEEP)
    assert all(isinstance(defaults[s.name], list) and defaults[s.name]
               for s in SWEEP.axes())  # an axis is a non-empty list of values
    assert defaults["lr"] == [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
    assert defaults["split"] == (0.6, 0.2, 0.2) and defaults["executor"].name == "auto"
    assert defaults["thresholds"]["overfit_gl"] == 25
    broken = dataclasses.replace(SWEEP["epochs"], default="0")  # one a user could not write
    with pytest.raises(UsageError, match="epochs must be >= 1, got 0"):
        broken.value()


def test_training_settings_are_the_declared_train_settings():
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    assert fields == {"device"} | {s.name for s in SWEEP.values() if s.train}
    defaults = TrainSettings(device="cpu")
    assert defaults.eval_batch_size == SWEEP["eval_batch_size"].value()
    assert defaults.thresholds == SWEEP["thresholds"].value()


@pytest.fixture
def new_setting(monkeypatch):
    """A setting added the way a contributor adds one: a declaration in SWEEP, nothing
    else."""
    setting = Setting("warmup_epochs", integer(0), 0, "Epochs of LR warm-up", unit="epochs",
                      key=True, train=True)
    monkeypatch.setitem(SWEEP._by_name, setting.name, setting)
    return setting


def test_a_new_declaration_reaches_toml_pyproject_flags_manifest_and_resume_key(
        tmp_path, new_setting):
    default = build_config(None, {}, cwd=tmp_path)
    assert default.warmup_epochs == 0
    (tmp_path / "pyproject.toml").write_text("[tool.lrlab]\nwarmup_epochs = 2\n")
    from_pyproject = build_config(None, {}, cwd=tmp_path)
    assert from_pyproject.warmup_epochs == 2
    sweep = tmp_path / "s.toml"
    sweep.write_text("warmup_epochs = 3\n")
    assert build_config(sweep, {}, cwd=tmp_path).warmup_epochs == 3
    assert build_config(sweep, {"warmup_epochs": "4"}, cwd=tmp_path).warmup_epochs == 4
    assert build_config(None, {}, cwd=tmp_path).to_dict()["warmup_epochs"] == 2
    with pytest.raises(UsageError, match="warmup_epochs must be >= 0, got -1"):
        build_config(None, {"warmup_epochs": -1}, cwd=tmp_path)
    run = expand(default)[0]
    assert run_key(run, default) != run_key(run, from_pyproject)  # a change retrains
    train = TrainSettings  # derived at import: a new train setting needs a re-import
    assert train is not None
    from lrlab.cli_support import option_of

    assert "[default: 0]" in option_of(new_setting).annotation.__metadata__[0].help


def test_a_setting_outside_the_resume_key_does_not_change_it(tmp_path):
    a = build_config(None, {"device": "cpu", "threads": 1}, cwd=tmp_path)
    b = build_config(None, {"device": "auto", "threads": 2}, cwd=tmp_path)
    assert [run_key(r, a) for r in expand(a)] == [run_key(r, b) for r in expand(b)]
    c = build_config(None, {"split_seed": 1}, cwd=tmp_path)
    assert run_key(expand(a)[0], a) != run_key(expand(c)[0], c)


def test_an_unknown_key_names_the_closest_setting(tmp_path):
    (tmp_path / "s.toml").write_text("eval_batchsize = 8\n")
    with pytest.raises(UsageError, match="did you mean 'eval_batch_size'"):
        build_config(tmp_path / "s.toml", {}, cwd=tmp_path)


def test_switches_and_thresholds_read_the_same_from_flags_toml_and_api(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.lrlab]\ndownload = true\n[tool.lrlab.thresholds]\noverfit_gl = 30\n")
    assert build_config(None, {}, cwd=tmp_path).download is True
    assert build_config(None, {"download": False}, cwd=tmp_path).download is False
    assert build_config(None, {"download": "false"}, cwd=tmp_path).download is False
    merged = build_config(None, {"thresholds": ["near_chance=0.3"]}, cwd=tmp_path).thresholds
    assert merged["overfit_gl"] == 30 and merged["near_chance"] == 0.3
    with pytest.raises(UsageError, match="is not KEY=NUMBER"):
        build_config(None, {"thresholds": ["near_chance"]}, cwd=tmp_path)


# -- one entry for the CLI and the API ---------------------------------------------------


def _comparable(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.drop(columns=["wall_s"]).reset_index(drop=True)


def test_the_cli_and_run_sweep_give_the_same_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    cli = runner.invoke(app, ["sweep", *args, "--out", "cli", "-q"])
    assert cli.exit_code == 0, cli.output
    api = run_sweep(out="api", **TINY)
    pd.testing.assert_frame_equal(_comparable(pd.read_parquet("cli/digits/runs.parquet")),
                                  _comparable(api.runs))
    cli_config = json.loads((tmp_path / "cli/digits/manifest.json").read_text())["config"]
    api_config = json.loads((tmp_path / "api/digits/manifest.json").read_text())["config"]
    assert {**cli_config, "out": ""} == {**api_config, "out": ""}


def test_collect_only_and_junit_checks_are_in_the_library(tmp_path):
    result = run_sweep(out=tmp_path / "r", collect_only=True, lr="0.1,1", epochs=1)
    assert sorted(result.collected) == ["mlp-lr0.1-ep1-noise(std=0.3)-s0",
                                        "mlp-lr0.1-ep1-none-s0",
                                        "mlp-lr1-ep1-noise(std=0.3)-s0", "mlp-lr1-ep1-none-s0"]
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written
    with pytest.raises(UsageError, match="is a folder"):
        run_sweep(out=tmp_path / "r", junit_xml=tmp_path, **TINY)
    assert not (tmp_path / "r").exists()  # refused before anything was written


SECTION_PLUGIN = '''
from lrlab import Section, hookimpl


@hookimpl
def lrlab_report_sections(runs):
    return [Section("{title}", "<p>{title}: %d runs</p>" % len(runs))]
'''


def test_write_report_from_python_equals_lrlab_report_with_the_sweeps_plugins(
        tmp_path, monkeypatch):
    """A sweep that loaded a -p module and a local lrlab_plugins.py: `lrlab report DIR`
    and write_report(DIR) both load them again from the manifest's recipe."""
    (tmp_path / "report_pmod.py").write_text(SECTION_PLUGIN.format(title="From dash p"))
    (tmp_path / "lrlab_plugins.py").write_text(SECTION_PLUGIN.format(title="From local"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    run_sweep(out="r", extra_plugins=["report_pmod"], report=False, **TINY)
    from lrlab.report import write_report

    page = write_report(tmp_path / "r" / "digits").read_text()
    cli = runner.invoke(app, ["report", str(tmp_path / "r" / "digits")])
    assert cli.exit_code == 0, cli.output
    again = (tmp_path / "r" / "digits" / "index.html").read_text()
    for title in ("From dash p: 1 runs", "From local: 1 runs"):
        assert title in page and title in again

    def stable(html: str) -> str:  # the build time and the timestamp differ
        return re.sub(r"\d{4}-\d\d-\d\dT[\d:+]+| in [\d.]+ s · ", "",
                      html)

    assert stable(page) == stable(again)


def test_an_empty_name_is_refused_not_replaced_by_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["sweep", "--name", "", "--epochs", "1"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: sweep name '' must be letters, digits, '.', '_' or '-'"]
    assert not (tmp_path / "reports").exists()
