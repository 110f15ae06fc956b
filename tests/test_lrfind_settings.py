"""The range test's settings are declared once (lrlab.lrfind.settings): `lrlab lr-find`'s
options and help, `lr_find`'s and `range_test`'s defaults and checks, and the test that
`lrlab sweep --lr auto` runs all come from those declarations."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from lrlab.cli import app
from lrlab.errors import UsageError
from lrlab.lrfind import auto, lr_find, range_test
from lrlab.lrfind.finder import LRFindResult
from lrlab.lrfind.settings import (
    COMMAND,
    ONE_VALUE,
    RANGE_TEST,
    SHARED,
    TEST_SETTINGS,
    default,
    read,
)
from lrlab.settings import SWEEP

# what users have known since lr-find came out; a change here is a change they see
KNOWN = {"start_lr": 1e-7, "end_lr": 10.0, "steps": 100, "mode": "exp", "diverge": 4.0,
         "smooth": 0.98}


def flat(text: str) -> str:
    """Help text with its wrapping and any box drawing undone: one line of words."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture(scope="module")
def help_text() -> str:
    result = CliRunner().invoke(app, ["lr-find", "--help"])
    assert result.exit_code == 0, result.output
    return flat(result.output)


# -- --help ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(RANGE_TEST))
def test_help_shows_each_range_test_setting_with_its_default(help_text, name):
    setting = RANGE_TEST[name]
    assert setting.option_name in help_text
    assert flat(setting.help_text()) in help_text  # its help, ending in [default: ...]
    assert f"[default: {setting.shown_default()}]" in help_text


@pytest.mark.parametrize("shown", ["[default: 1e-07]", "[default: 10]", "[default: 100]",
                                   "[default: exp]", "[default: 4]", "[default: 0.98]",
                                   "[default: lrfind-<dataset>-<model>]"])
def test_help_shows_the_known_defaults(help_text, shown):
    assert shown in help_text


def test_help_lists_every_option_users_have_with_a_default(help_text):
    for option in ("--model", "--dataset", "--optimizer", "--loss", "--batch-size",
                   "--start-lr", "--end-lr", "--steps", "--mode", "--diverge", "--smooth",
                   "--seeds", "--name", "--out", "--data-root", "--download", "--device",
                   "--plugin"):
        assert option in help_text, option
    assert "--download / --no-download" in help_text
    for setting in COMMAND:  # the shared ones too, each with its default
        assert flat(setting.help_text()) in help_text, setting.name
    assert help_text.count("[default: ") == len(COMMAND)


# -- bad values: one line, exit code 2, nothing written ----------------------------------


@pytest.mark.parametrize("args,words", [
    (["--start-lr", "abc"], "--start-lr must be a positive learning rate, got 'abc'"),
    (["--start-lr", "0"], "--start-lr must be a positive learning rate, got 0.0"),
    (["--end-lr", "inf"], "--end-lr must be a positive learning rate"),
    (["--end-lr", "1e300"], "--end-lr must be at most 1e+06, got 1e+300"),
    (["--start-lr", "1", "--end-lr", "0.1"], "--start-lr (1) must be below --end-lr (0.1)"),
    (["--steps", "1"], "--steps must be an integer >= 2, got 1"),
    (["--steps", "2.5"], "--steps must be an integer >= 2, got '2.5'"),
    (["--mode", "cosine"], "--mode must be exp or linear, got 'cosine'"),
    (["--diverge", "1"], "--diverge must be a multiple of the best loss above 1, got 1.0"),
    (["--diverge", "x"], "--diverge must be a multiple of the best loss above 1, got 'x'"),
    (["--smooth", "1"], "--smooth must be in [0, 1) (an EMA factor), got 1.0"),
    (["--smooth", "-0.1"], "--smooth must be in [0, 1)"),
    (["--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["--name", "a/b"], "name 'a/b' must be letters"),
    (["--batch-size", "16,32"], "lr-find tests one batch_size at a time; got 2: 16, 32"),
    (["--device", "tpu"], "device must be auto, cpu or cuda"),
])
def test_a_bad_value_is_one_line_and_exit_2(tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["lr-find", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert not (tmp_path / "reports").exists()


def test_given_options_reach_the_test(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, [
        "lr-find", "--steps", "12", "--mode", "linear", "--start-lr", "1e-4", "--end-lr",
        "0.5", "--diverge", "3", "--smooth", "0", "--seeds", "2", "--batch-size", "16",
        "--no-download", "--device", "cpu", "--name", "given", "-p", "no:builtin.vectorized"])
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "reports" / "given" / "lrfind.json").read_text())["settings"]
    assert {k: settings[k] for k in ("steps", "mode", "start_lr", "end_lr", "diverge",
                                     "smooth", "seeds", "batch_size")} == {
        "steps": 12, "mode": "linear", "start_lr": 1e-4, "end_lr": 0.5, "diverge": 3.0,
        "smooth": 0.0, "seeds": [0, 1], "batch_size": 16}


# -- the Python API ------------------------------------------------------------------------


def test_the_declarations_hold_the_known_defaults():
    assert {n: RANGE_TEST[n].default for n in TEST_SETTINGS} == KNOWN
    assert RANGE_TEST["seeds"] is SWEEP["seeds"]  # a sweep's seeds, the same meaning
    assert RANGE_TEST["name"].default is None


def test_lr_find_defaults_are_the_declarations():
    params = inspect.signature(lr_find).parameters
    for name in TEST_SETTINGS:
        assert params[name].default == RANGE_TEST[name].default == KNOWN[name], name
    assert params["seeds"].default == SWEEP["seeds"].read(SWEEP["seeds"].default)
    for name in (*ONE_VALUE, "split_seed"):  # one value of the sweep's axis
        assert [params[name].default] == SWEEP[name].read(SWEEP[name].default), name
    assert params["split_seed"].default == default("split_seed")
    for name in ("device", "data_root", "download", "split"):
        assert params[name].default == SWEEP[name].read(SWEEP[name].default), name
        assert params[name].default == default(name)


def test_range_test_defaults_are_the_declarations():
    params = inspect.signature(range_test).parameters
    for name in TEST_SETTINGS:
        assert params[name].default == RANGE_TEST[name].default, name
    assert params["batch_size"].default == default("batch_size")


def test_auto_test_is_the_declarations():
    assert auto.TEST == {n: RANGE_TEST[n].default for n in TEST_SETTINGS} == KNOWN
    assert set(auto.TEST) <= set(inspect.signature(lr_find).parameters)


def test_shared_settings_are_the_sweeps():
    for name in SHARED:
        ours, theirs = SHARED[name], SWEEP[name]
        assert (ours.parse, ours.default, ours.option_name) == (
            theirs.parse, theirs.default, theirs.option_name), name


@pytest.mark.parametrize("name,text,value", [
    ("start_lr", "1e-3", 1e-3), ("end_lr", "10", 10.0), ("steps", "50", 50),
    ("mode", "linear", "linear"), ("diverge", "2.5", 2.5), ("smooth", "0", 0.0),
    ("seeds", "3", 3), ("name", "mine", "mine")])
def test_each_parser_reads_a_flags_text(name, text, value):
    assert read(RANGE_TEST[name], text) == value
    assert RANGE_TEST[name].read(text) == value


@pytest.mark.parametrize("kwargs,words", [
    ({"steps": 2.0}, "--steps must be an integer >= 2"),
    ({"steps": True}, "--steps must be an integer >= 2"),
    ({"start_lr": True}, "--start-lr must be a positive learning rate"),
    ({"end_lr": 1e7}, "--end-lr must be at most 1e+06"),
    ({"smooth": 1.0}, "--smooth must be in [0, 1)"),
    ({"beta": -0.5}, "--smooth must be in [0, 1)"),
    ({"smooth": 0.5, "beta": 0.9}, "give smooth or beta"),
    ({"seeds": []}, "the range test needs at least one seed"),
    ({"model": "mlp,cnn"}, "lr-find tests one model at a time"),
    ({"batch_size": 0}, "batch size must be >= 1"),
    ({"device": "tpu"}, "device must be auto, cpu or cuda")])
def test_lr_find_checks_through_the_declarations(kwargs, words):
    with pytest.raises(UsageError) as err:
        lr_find(**kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_beta_is_still_the_smoothing_factor():
    x, y = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)), torch.arange(64) % 2

    def curve(**kw):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return range_test(model, opt, F.cross_entropy, x, y, steps=10, batch_size=16, **kw)

    assert curve(beta=0.5).equals(curve(smooth=0.5))
    assert not curve(smooth=0.5).equals(curve())


def test_a_result_written_with_beta_reads_back_as_smooth(tmp_path):
    from lrlab.plugins import load_plugins

    host = load_plugins(use_entry_points=False)
    result = lr_find(steps=8, host=host)
    result.save(tmp_path, plot=False)
    summary = tmp_path / "lrfind.json"
    info = json.loads(summary.read_text())
    info["settings"]["beta"] = info["settings"].pop("smooth")  # as older versions wrote
    summary.write_text(json.dumps(info))
    back = LRFindResult.load(tmp_path)
    assert back.settings["smooth"] == 0.98 and "beta" not in back.settings
    assert back.key == result.key
