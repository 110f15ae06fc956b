"""docs/plugins.md stays true: every hook with its exact signature, examples that load
and run, and a quickstart plugin that works when installed as the page says."""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import pytest

from lrlab.plugins import load_plugins
from lrlab.testing import fake_distribution, run_tiny_sweep

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "plugins.md"
HOOKSPECS = ROOT / "lrlab" / "hookspecs.py"


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def specs() -> dict[str, str]:
    """hook name -> its signature written on one line, as in hookspecs.py."""
    out = {}
    for node in ast.parse(HOOKSPECS.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef):
            ret = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            out[node.name] = f"def {node.name}({ast.unparse(node.args)}){ret}"
    return out


def blocks(lang: str, text: str | None = None) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text if text is not None else page(), re.S)


def section(name: str) -> str:
    """The page's text under the heading of hook ``name``, up to the next heading."""
    match = re.search(rf"^#+ `{name}`\n(.*?)(?=^#+ )", page() + "\n# end", re.M | re.S)
    assert match, f"docs/plugins.md has no heading for `{name}`"
    return match.group(1)


def toml(text: str) -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads(text)


def as_module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<docs/plugins.md: {name}>", "exec"), module.__dict__)
    return module


def test_every_hookspec_has_a_heading_and_its_exact_signature():
    assert len(specs()) == 16
    for name, signature in specs().items():
        text = section(name)
        assert signature in text, f"docs/plugins.md shows another signature for {name}"


def test_every_hook_has_an_example_that_loads_as_a_plugin():
    for name in specs():
        examples = blocks("python", section(name))
        assert examples, f"no example for {name}"
        module = as_module(f"example_{name}", examples[0])
        assert getattr(module, name, None) is not None, f"the {name} example does not define it"
        host = load_plugins(plugins=[module], use_entry_points=False)  # validates arguments
        assert [h.name for h in host.pm.get_hookcallers(module)] == [name]


def test_the_hook_examples_run_together_in_one_sweep(out, capsys):
    modules = [as_module(f"example_{n}", blocks("python", section(n))[0]) for n in specs()]
    result = run_tiny_sweep(*modules, out=out, dataset="blobs", model="wide_linear",
                            loss="nll_temp", optimizer="nesterov", schedule="halving",
                            augment="dropout_pixels", stopper="after(epochs=1)",
                            executor="reverse", lr=[0.1, 0.05], epochs=3, report=True,
                            extra_plugins=("no:lrlab-spikes",))
    runs = result.runs
    assert list(runs["error"]) == ["", ""], runs["error"].tolist()
    assert list(runs["epochs_run"]) == [1, 1]  # the stopper
    assert result.config.thresholds["overfit_gap_acc"] == 0.03  # lrlab_configure
    printed = capsys.readouterr().out
    assert "training 2 runs" in printed and "best: " in printed
    assert "Time per run" in (result.folder / "index.html").read_text()


def test_the_entry_point_block_and_the_quickstart_module_work_as_installed(
        tmp_path, monkeypatch, out):
    pyproject = next(b for b in blocks("toml") if b.startswith("# pyproject.toml"))
    project = toml(pyproject)["project"]
    eps = project["entry-points"]["lrlab"]
    module_src = next(b for b in blocks("python") if b.startswith("# lrlab_hello.py"))
    (tmp_path / "lrlab_hello.py").write_text(module_src)
    fake_distribution(tmp_path, project["name"], eps, project["version"])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lrlab_hello", raising=False)

    info = load_plugins().info["lrlab-hello"]
    assert (info.source, info.version) == ("entry point", "0.1.0")
    assert info.registered == ["model:tinynet", "stopper:target_acc"]
    result = run_tiny_sweep(out=out, model=["tinynet", "tinynet(width=8)"],
                            stopper="target_acc(target=0.5)", epochs=10)
    assert list(result.runs["error"]) == ["", ""]
    assert set(result.runs["stopped_by"]) == {"stopper"}


def test_the_quickstart_tests_pass_against_the_quickstart_plugin(tmp_path, monkeypatch):
    module_src = next(b for b in blocks("python") if b.startswith("# lrlab_hello.py"))
    tests_src = next(b for b in blocks("python") if b.startswith("# tests/test_hello.py"))
    pyproject = toml(next(b for b in blocks("toml")
                                   if b.startswith("# pyproject.toml")))["project"]
    (tmp_path / "lrlab_hello.py").write_text(module_src)
    (tmp_path / "test_hello.py").write_text(tests_src)
    fake_distribution(tmp_path, pyproject["name"], pyproject["entry-points"]["lrlab"],
                      pyproject["version"])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lrlab_hello", raising=False)
    code = pytest.main([str(tmp_path / "test_hello.py"), "-q", "-p", "no:cacheprovider",
                        f"--basetemp={tmp_path / 'tmp'}"])
    assert code == 0


def test_every_python_block_compiles():
    sources = blocks("python")
    assert len(sources) >= 5
    for i, source in enumerate(sources):  # a SyntaxError fails the test, naming the block
        assert compile(source, f"<docs/plugins.md block {i}>", "exec") is not None
