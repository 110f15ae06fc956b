"""Component parameters are checked against their annotations, whatever they are
(``int | None``, ``Optional[float]``, ``tuple[int, ...]``, ``list[int]``, ``Literal``, ...),
read the same from the command line as from TOML (``true``, ``(1, 2)``, ``[1, 2]``), and
every refusal is one line naming the component, the parameter, the type and the value."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import pytest
from typer.testing import CliRunner

from lrlab.cli import app
from lrlab.errors import UsageError
from lrlab.plugins import load_plugins
from lrlab.registry import Registry, Spec, parse_spec


def loss_factory(num_classes, *,
                 count: int = 1,
                 rate: float = 0.5,
                 flag: bool = False,
                 label: str = "x",
                 maybe_int: int | None = None,
                 maybe_float: Optional[float] = None,  # noqa: UP045 (the spelling under test)
                 either: Union[int, str] = 0,  # noqa: UP007
                 sizes: tuple[int, ...] = (1,),
                 pair: tuple[int, str] = (1, "a"),
                 ids: list[int] = [],  # noqa: B006
                 weights: dict[str, float] = {},  # noqa: B006
                 mode: Literal["a", "b"] = "a",
                 level: Literal[1, 2] | None = None,
                 anything: Any = None,
                 untyped=3,
                 free=None):
    def loss(logits, targets):
        return 0.0

    loss.kwargs = dict(count=count, rate=rate, flag=flag, label=label, maybe_int=maybe_int,
                       maybe_float=maybe_float, either=either, sizes=sizes, pair=pair, ids=ids,
                       weights=weights, mode=mode, level=level, anything=anything,
                       untyped=untyped, free=free)
    return loss


@pytest.fixture
def registry():
    reg = Registry()
    reg.register_for("loss", "test-plugin")("probe", loss_factory)
    return reg


def build(registry, **params):
    return registry.build("loss", Spec("probe", tuple(sorted(params.items()))), 10).kwargs


GOOD = [
    ("count", 3, 3), ("rate", 2, 2.0), ("rate", 0.25, 0.25), ("flag", True, True),
    ("flag", "false", False), ("label", "y", "y"),
    ("maybe_int", None, None), ("maybe_int", 4, 4),
    ("maybe_float", None, None), ("maybe_float", 3, 3.0), ("maybe_float", 1.5, 1.5),
    ("either", 2, 2), ("either", "two", "two"),
    ("sizes", (2, 3), (2, 3)), ("sizes", [2, 3], (2, 3)), ("sizes", [], ()),
    ("pair", [4, "b"], (4, "b")),
    ("ids", [1, 2], [1, 2]), ("ids", (1, 2), [1, 2]),
    ("weights", {"a": 1, "b": 0.5}, {"a": 1.0, "b": 0.5}),
    ("mode", "b", "b"), ("level", 2, 2), ("level", None, None),
    ("anything", object, object), ("untyped", 7, 7), ("free", "whatever", "whatever"),
]


@pytest.mark.parametrize("key, value, built", GOOD)
def test_good_values_pass_and_reach_the_factory_in_its_form(registry, key, value, built):
    assert build(registry, **{key: value})[key] == built
    assert type(build(registry, **{key: value})[key]) is type(built)


BAD = [
    ("count", "abc", "int"), ("count", 3.5, "int"), ("count", True, "int"),
    ("rate", "fast", "float"), ("rate", False, "float"),
    ("flag", 1, "bool"), ("flag", "yes", "bool"),
    ("label", 3, "str"),
    ("maybe_int", "abc", "int | None"), ("maybe_int", 1.5, "int | None"),
    ("maybe_float", "abc", "float | None"),
    ("either", 1.5, "int | str"),
    ("sizes", "abc", "tuple[int, ...]"), ("sizes", (1, "a"), "tuple[int, ...]"),
    ("sizes", 3, "tuple[int, ...]"),
    ("pair", (1, 2), "tuple[int, str]"), ("pair", (1,), "tuple[int, str]"),
    ("ids", "abc", "list[int]"), ("ids", [1, 2.5], "list[int]"), ("ids", [True], "list[int]"),
    ("weights", {"a": "x"}, "dict[str, float]"), ("weights", [1], "dict[str, float]"),
    ("mode", "c", "one of 'a', 'b'"), ("mode", 1, "one of 'a', 'b'"),
    ("level", 3, "1 | 2 | None"), ("level", True, "1 | 2 | None"),
    ("untyped", "abc", "int"),
]


@pytest.mark.parametrize("key, value, expected", BAD)
def test_bad_values_are_refused_in_one_line(registry, key, value, expected):
    with pytest.raises(UsageError) as info:
        registry.check("loss", Spec("probe", ((key, value),)))
    message = str(info.value)
    assert message == f"loss 'probe': parameter '{key}' must be {expected}, got {value!r}"
    assert "\n" not in message


@pytest.mark.parametrize("text, key, built", [
    ("probe(sizes=(2, 3))", "sizes", (2, 3)),
    ("probe(sizes=[2,3])", "sizes", (2, 3)),
    ("probe(sizes=(4,))", "sizes", (4,)),
    ("probe(ids=[1, 2])", "ids", [1, 2]),
    ("probe(ids=(1, 2))", "ids", [1, 2]),
    ("probe(pair=(5, 'z'))", "pair", (5, "z")),
    ("probe(maybe_int=None)", "maybe_int", None),
    ("probe(maybe_float=2)", "maybe_float", 2.0),
    ("probe(flag=true)", "flag", True),
    ("probe(flag=True)", "flag", True),
    ("probe(mode=b)", "mode", "b"),
    ("probe(weights={'a': 2})", "weights", {"a": 2.0}),
])
def test_command_line_spellings_parse_check_and_build(registry, text, key, built):
    spec = parse_spec(text, "loss")
    assert registry.build("loss", spec, 10).kwargs[key] == built


def test_a_toml_table_with_arrays_builds_too(registry):
    spec = parse_spec({"name": "probe", "sizes": [8, 8], "ids": [1], "flag": True}, "loss")
    kwargs = registry.build("loss", spec, 10).kwargs
    assert kwargs["sizes"] == (8, 8) and kwargs["ids"] == [1] and kwargs["flag"] is True


def test_bad_command_line_tuple_is_refused(registry):
    with pytest.raises(UsageError, match=r"parameter 'sizes' must be tuple\[int, \.\.\.\], "
                                         r"got \(1, 'a'\)"):
        registry.check("loss", parse_spec("probe(sizes=(1, 'a'))", "loss"))


# -- booleans: true/false as in TOML, True/False as in Python ---------------------------


@pytest.mark.parametrize("word, value", [("true", True), ("false", False), ("True", True),
                                         ("False", False)])
def test_true_false_parse_as_booleans(word, value):
    assert parse_spec(f"patience(restore_best={word})").kwargs == {"restore_best": value}


def test_true_and_false_inside_a_tuple_parse_too():
    assert parse_spec("x(a=(true, false, 1))").kwargs == {"a": (True, False, 1)}


def test_words_that_only_start_like_true_stay_words():
    assert parse_spec("x(a=truex, b=min)").kwargs == {"a": "truex", "b": "min"}


@pytest.fixture(scope="module")
def builtins():
    return load_plugins(use_entry_points=False).registry


@pytest.mark.parametrize("word", ["true", "True"])
def test_stopper_restore_best_true_from_a_cli_string(builtins, word):
    spec = parse_spec(f"patience(restore_best={word})", "stopper")
    builtins.check("stopper", spec)
    assert builtins.build("stopper", spec).restore_best is True


@pytest.mark.parametrize("word", ["false", "False"])
def test_stopper_restore_best_false_from_a_cli_string(builtins, word):
    spec = parse_spec(f"gl(restore_best={word})", "stopper")
    assert builtins.build("stopper", spec).restore_best is False


def test_sgd_nesterov_true_from_a_cli_string(builtins):
    import torch

    spec = parse_spec("sgd(nesterov=true,momentum=0.9)", "optimizer")
    opt = builtins.build("optimizer", spec, [torch.nn.Parameter(torch.zeros(1))], 0.1)
    assert opt.param_groups[0]["nesterov"] is True
    assert opt.param_groups[0]["momentum"] == 0.9


def test_a_bool_parameter_refuses_a_number(builtins):
    with pytest.raises(UsageError, match="stopper 'patience': parameter 'restore_best' must be "
                                         "bool, got 1$"):
        builtins.check("stopper", parse_spec("patience(restore_best=1)", "stopper"))


# -- lr as an optimizer parameter --------------------------------------------------------


def test_lr_as_an_optimizer_parameter_points_at_the_lr_option(builtins):
    with pytest.raises(UsageError) as info:
        builtins.check("optimizer", parse_spec("sgd(lr=0.1)", "optimizer"))
    assert str(info.value) == ("optimizer 'sgd' takes its learning rate from --lr (the lr "
                               "axis), not as a parameter: write --lr 0.1")


def test_lr_via_the_cli_is_exit_2_and_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sweep", "--optimizer", "sgd(lr=0.1)", "--collect-only"],
                                catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "optimizer 'sgd' takes its learning rate from --lr" in lines[0]
    assert "write --lr 0.1" in lines[0]


def test_true_booleans_via_the_cli_collect(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sweep", "--optimizer", "sgd(nesterov=true,momentum=0.9)",
                                      "--stopper", "patience(restore_best=true)",
                                      "--collect-only"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].endswith("runs collected")
