"""Commands that train nothing start quickly: ``lrlab list``, ``lrlab plugins``, ``lrlab
show DIR`` and the help pages import no torch (over a second to import), and list, plugins
and help no pandas either; and they print what they print with torch loaded.

Each command runs in a fresh interpreter (:data:`WRAPPER`) that names, on its last line
of stderr, the heavy modules it imported. Installed third-party plugins are left out
there and in the comparison: they may import torch at the top, that is theirs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lrlab.cli import app
from lrlab.plugins import load_plugins
from lrlab.registry import KINDS

HEAVY = ("torch", "torchvision", "numpy", "pandas", "pyarrow", "scipy", "matplotlib")
# the heavy modules each command may import, and why; any other one fails its test
ALLOWED = {
    "--help": (),
    "sweep --help": (),
    "list": (),  # the built-ins' signatures and docs only
    "plugins": (),
    # the stored Parquet tables (pandas, pyarrow, numpy); the intervals over seeds of the
    # configurations table are lrlab's own numpy (no scipy: its import alone is 0.5 s)
    "show": ("numpy", "pandas", "pyarrow"),
}

WRAPPER = f"""
import sys

import lrlab.plugins

lrlab.plugins.entry_points = lambda group: ()  # installed plugins: theirs may import torch
from lrlab.cli import app

try:
    app(sys.argv[1:], prog_name="lrlab")
finally:
    heavy = [m for m in {HEAVY!r} if m in sys.modules]
    sys.stderr.write("heavy modules: " + " ".join(heavy) + "\\n")
"""


def run_fresh(args: list[str], cwd) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``lrlab ARGS`` in a fresh interpreter: the process, and the heavy modules it
    imported."""
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert last.startswith("heavy modules:"), proc.stderr
    return proc, set(last.removeprefix("heavy modules:").split())


@pytest.fixture
def in_process(tmp_path, monkeypatch):
    """The same command in this process (torch loaded), without installed plugins."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("lrlab.plugins.entry_points", lambda group: ())
    runner = CliRunner()
    return lambda args: runner.invoke(app, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory):
    """A stored sweep (made-up results, shaped like real ones) for ``lrlab show``."""
    from lrlab.report.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("startup") / "syn", lrs=[1e-2, 1e-1])


@pytest.mark.parametrize("command", ["list", "plugins", "show"])
def test_command_imports_no_torch_and_prints_what_it_prints_with_torch(
        command, tmp_path, in_process, sweep_folder):
    args = [command, str(sweep_folder)] if command == "show" else [command]
    proc, heavy = run_fresh(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert heavy <= set(ALLOWED[command]), f"lrlab {command} imported {sorted(heavy)}"
    assert proc.stdout == in_process(args).stdout


@pytest.mark.parametrize("command", ["--help", "sweep --help"])
def test_help_imports_nothing_heavy(command, tmp_path):
    proc, heavy = run_fresh(command.split(), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert heavy <= set(ALLOWED[command]), f"lrlab {command} imported {sorted(heavy)}"


def test_list_shows_every_component_with_its_parameters_without_torch(tmp_path):
    proc, heavy = run_fresh(["list"], tmp_path)
    assert "torch" not in heavy
    registry = load_plugins(use_entry_points=False).registry
    for kind in KINDS:
        for comp in registry.components(kind):
            assert f"{comp.signature} " in proc.stdout, comp.signature


def test_parameter_types_are_the_same_without_torch(tmp_path):
    """A built-in factory names torch only in its return annotation (imported for type
    checkers): its parameters keep their types, so a bad value is still refused."""
    dump = ("import json, sys\n"
            "from lrlab.plugins import load_plugins\n"
            "from lrlab.registry import KINDS\n"
            "registry = load_plugins(use_entry_points=False).registry\n"
            "print(json.dumps({k: {c.name: {p.name: p.type_name for p in c.params.values()}"
            " for c in registry.components(k)} for k in KINDS}))\n"
            "assert 'torch' not in sys.modules, 'loading the built-ins imported torch'\n")
    proc = subprocess.run([sys.executable, "-c", dump], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fresh = json.loads(proc.stdout)
    registry = load_plugins(use_entry_points=False).registry
    here = {k: {c.name: {p.name: p.type_name for p in c.params.values()}
                for c in registry.components(k)} for k in KINDS}
    assert fresh == here
    assert fresh["loss"]["mse"]["on"] == "one of 'probs', 'logits'"
    assert fresh["schedule"]["onecycle"]["anneal"] == "one of 'cos', 'linear'"
    assert fresh["model"]["mlp"] == {"width": "int", "depth": "int", "dropout": "float"}
