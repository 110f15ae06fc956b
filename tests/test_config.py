"""Grids from flags, sweep files and [tool.lrlab]; run ids; -k; bad values."""

from __future__ import annotations

import pytest

from lrlab.config import build_config, expand
from lrlab.errors import UsageError
from lrlab.keywords import keyword_matcher
from lrlab.registry import Spec, parse_spec


def test_spec_parses_name_and_typed_params():
    spec = parse_spec("mlp(width=64, depth=3, dropout=0.5, mode=min, flag=True)")
    assert spec.name == "mlp"
    assert spec.kwargs == {"width": 64, "depth": 3, "dropout": 0.5, "mode": "min", "flag": True}
    assert str(spec) == "mlp(depth=3,dropout=0.5,flag=True,mode=min,width=64)"


def test_spec_accepts_a_toml_inline_table():
    assert parse_spec({"name": "patience", "patience": 3}) == Spec("patience", (("patience", 3),))


@pytest.mark.parametrize("text", ["mlp(width)", "mlp(width=1", "(x=1)", "9lives", ""])
def test_malformed_spec_is_a_usage_error(text):
    with pytest.raises(UsageError):
        parse_spec(text)


def test_default_grid_is_the_documented_default_sweep(tmp_path):
    cfg = build_config(cwd=tmp_path)
    runs = expand(cfg)
    assert len(cfg.grid["lr"]) >= 6
    assert min(cfg.grid["lr"]) <= 1e-4 and max(cfg.grid["lr"]) >= 1.0
    assert {a[0].name for a in cfg.grid["augment"]} >= {"none"} and len(cfg.grid["augment"]) == 2
    assert cfg.name == "digits"
    assert len(runs) == len(cfg.grid["lr"]) * 2


def test_run_ids_are_readable_and_name_the_varying_axes(tmp_path):
    cfg = build_config(overrides={"lr": "0.01", "epochs": "30", "augment": "flip",
                                  "optimizer": "sgd,adam"}, cwd=tmp_path)
    ids = [r.run_id for r in expand(cfg)]
    assert ids == ["mlp-sgd-lr0.01-ep30-flip-s0", "mlp-adam-lr0.01-ep30-flip-s0"]
    # stable: the same config expands to the same ids
    assert ids == [r.run_id for r in expand(build_config(overrides={
        "lr": "0.01", "epochs": "30", "augment": "flip", "optimizer": "sgd,adam"}, cwd=tmp_path))]


def test_every_component_kind_can_be_an_axis(tmp_path):
    cfg = build_config(overrides={
        "lr": "1e-3,1e-2", "epochs": "10,30", "augment": "none,flip+crop", "seeds": 3,
        "model": "mlp,cnn", "optimizer": "sgd,adam", "loss": "cross_entropy,mse",
        "schedule": "constant,onecycle", "stopper": "none,patience(patience=3)",
        "batch_size": "32,128"}, cwd=tmp_path)
    runs = expand(cfg)
    assert len(runs) == 2 ** 9 * 3
    assert len({r.run_id for r in runs}) == len(runs)
    assert runs[0].augment == (Spec("none"),)
    assert any(r.augment == (Spec("flip"), Spec("crop")) for r in runs)


def test_precedence_pyproject_then_file_then_flags(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lrlab]\nname = "project"\nepochs = 7\nlr = [0.5]\nbatch_size = 64\n'
        '[tool.lrlab.thresholds]\noverfit_gl = 11\n')
    sweep = tmp_path / "mine.toml"
    sweep.write_text('lr = [0.1, 0.2]\nmodel = "linear"\n[thresholds]\noverfit_gap_acc = 0.2\n')
    cfg = build_config(sweep, {"batch_size": "16"}, cwd=tmp_path)
    assert cfg.grid["epochs"] == [7]  # from [tool.lrlab]
    assert cfg.grid["lr"] == [0.1, 0.2]  # the file beats [tool.lrlab]
    assert cfg.grid["batch_size"] == [16]  # flags beat both
    assert cfg.grid["model"] == [Spec("linear")]
    assert cfg.name == "mine"  # the sweep file's stem beats [tool.lrlab]'s name
    assert build_config(None, {}, cwd=tmp_path).name == "project"  # without a file
    assert cfg.thresholds["overfit_gl"] == 11 and cfg.thresholds["overfit_gap_acc"] == 0.2


@pytest.mark.parametrize("overrides, message", [
    ({"lr": "0"}, "learning rate must be > 0"),
    ({"lr": "-1e-3"}, "learning rate must be > 0"),
    ({"lr": "fast"}, "is not a number"),
    ({"epochs": "0"}, "epochs must be >= 1"),
    ({"epochs": "2.5"}, "not an integer"),
    ({"batch_size": "0"}, "batch size must be >= 1"),
    ({"lr": ""}, "grid would be empty"),
    ({"seeds": 0}, "seeds must be >= 1"),
    ({"split": "0.5,0.5"}, "three positive fractions"),
    ({"split": "0.6,0.3,0.3"}, "add up to 1"),
    ({"device": "tpu"}, "device must be"),
    ({"name": "../etc"}, "sweep name"),
])
def test_bad_values_name_the_problem(tmp_path, overrides, message):
    with pytest.raises(UsageError, match=message):
        build_config(overrides=overrides, cwd=tmp_path)


def test_unknown_key_in_a_sweep_file_suggests_the_closest(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text("learning_rate = 0.1\nepoch = 3\n")
    with pytest.raises(UsageError, match="unknown key 'learning_rate'|did you mean 'epochs'"):
        build_config(sweep, cwd=tmp_path)


def test_malformed_toml_is_a_usage_error(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text("lr = [0.1, \n")
    with pytest.raises(UsageError, match="malformed TOML"):
        build_config(sweep, cwd=tmp_path)


@pytest.mark.parametrize("expr, expected", [
    ("lr0.1", ["mlp-lr0.1-ep3-none-s0", "mlp-lr0.1-ep3-flip-s0"]),
    ("lr0.1 and not flip", ["mlp-lr0.1-ep3-none-s0"]),
    ("(lr0.01 or lr0.1) and flip", ["mlp-lr0.01-ep3-flip-s0", "mlp-lr0.1-ep3-flip-s0"]),
    ("NONE and not lr0.1", ["mlp-lr0.01-ep3-none-s0"]),
])
def test_keyword_expressions_select_runs(tmp_path, expr, expected):
    cfg = build_config(overrides={"lr": "0.01,0.1", "epochs": 3, "augment": "none,flip"},
                       cwd=tmp_path)
    match = keyword_matcher(expr)
    assert [r.run_id for r in expand(cfg) if match(r.run_id)] == expected


@pytest.mark.parametrize("expr", ["", "a and", "(a", "a b", "or a"])
def test_bad_keyword_expression_is_a_usage_error(expr):
    with pytest.raises(UsageError):
        keyword_matcher(expr)(" ")
