"""The package's shape: leaf modules, no import cycles, one public face for plugins.

* the modules of ``lrlab`` import one another without a cycle, counting imports inside
  functions too (only ``if TYPE_CHECKING:`` blocks are left out);
* no module inside the package imports the face ``lrlab`` itself (``import lrlab``,
  ``from lrlab import X``): they import the leaf modules (``lrlab.markers``,
  ``lrlab.version``) or the module that defines what they need;
* the first-party plugins in ``plugins/`` use only the face, ``lrlab.__all__``;
* ``import lrlab`` is cheap: no torch, no pandas, and every public name resolves.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

import lrlab

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lrlab"
PLUGINS = ROOT / "plugins"
# (plugin folder, sub folder) not yet held to the public face, with the reason
NOT_YET = {("lrlab-ray", "tests"): "its tests drive the CLI app and load_plugins directly"}


# -- reading the sources ---------------------------------------------------------------


def package_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the ``lrlab`` package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = package_modules()


def is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING`` (the test of an ``if``)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.AST, runtime_only: bool = True) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (functions, classes, ``try``); with
    ``runtime_only`` the bodies of ``if TYPE_CHECKING:`` are skipped (their ``else`` is
    not)."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif runtime_only and isinstance(node, ast.If) and is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))
    yield from sorted(found, key=lambda n: (n.lineno, n.col_offset))


def absolute(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def where(path: Path, node: ast.AST) -> str:
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return f"{shown}:{node.lineno}"


def nearest_module(name: str) -> str:
    """``name`` if it is a module of the package, else its nearest enclosing one."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imported_modules(node: ast.Import | ast.ImportFrom, module: str,
                     path: Path) -> list[str]:
    """The package's modules one import statement imports (``from lrlab.x import y``
    is ``lrlab.x.y`` when that is a module, else ``lrlab.x``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        source = absolute(node, module, path)
        names = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source
                 for a in node.names]
    return [m for m in map(nearest_module, names)
            if m and m.split(".")[0] == "lrlab"]


def import_graph() -> dict[str, dict[str, str]]:
    """module -> {imported module: 'file:line' of the first import making that edge}."""
    graph: dict[str, dict[str, str]] = {}
    for module, path in MODULES.items():
        edges = graph.setdefault(module, {})
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in import_nodes(tree):
            for target in imported_modules(node, module, path):
                if target != module:
                    edges.setdefault(target, where(path, node))
    return graph


def find_cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """Cycles found by a depth-first search (one per back edge): ``[a, b, ..., a]``."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def describe(cycle: list[str], graph: dict[str, dict[str, str]]) -> str:
    edges = [f"  {a} -> {b}  ({graph[a][b]})" for a, b in pairwise(cycle)]
    return " -> ".join(cycle) + "\n" + "\n".join(edges)


# -- inside the package ----------------------------------------------------------------


def test_the_graph_sees_the_package_and_its_edges():
    graph = import_graph()
    assert {"lrlab", "lrlab.markers", "lrlab.version", "lrlab.hookspecs",
            "lrlab.report.sections", "lrlab.builtin.models"} <= set(graph)
    assert "lrlab.markers" in graph["lrlab.hookspecs"]
    assert "lrlab.errors" in graph["lrlab.report.sections"]
    # from lrlab.report.sections import Section, inside a function, is an edge
    assert "lrlab.report.sections" in graph["lrlab.builtin.lrfind"]
    # the face's lazy __getattr__ goes through importlib: only the leaves are edges
    assert set(graph["lrlab"]) == {"lrlab.markers", "lrlab.version"}


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:1"}, "c": {"a": "c.py:1"}, "d": {}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert "c -> a  (c.py:1)" in describe(["a", "b", "c", "a"], graph)


def test_no_import_cycle_between_the_packages_modules():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in lrlab (function-level imports count):\n" + \
        "\n".join(describe(c, graph) for c in cycles)


def test_the_leaf_modules_import_nothing_of_lrlab():
    graph = import_graph()
    assert graph["lrlab.version"] == {}
    assert graph["lrlab.markers"] == {}


def face_imports(path: Path, module: str) -> list[str]:
    """``file:line  statement`` for each runtime import of the face ``lrlab`` itself:
    ``import lrlab`` or ``from lrlab import X`` where ``lrlab.X`` is not a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in import_nodes(tree):
        if isinstance(node, ast.Import):
            face = any(a.name == "lrlab" for a in node.names)
        else:
            face = absolute(node, module, path) == "lrlab" and any(
                f"lrlab.{a.name}" not in MODULES for a in node.names)
        if face:
            found.append(f"{where(path, node)}  {ast.unparse(node)}")
    return found


def test_no_module_inside_the_package_imports_the_face():
    found = [line for module, path in MODULES.items() if module != "lrlab"
             for line in face_imports(path, module)]
    assert not found, ("modules inside lrlab import the face `lrlab` (import "
                       "lrlab.markers / lrlab.version / the defining module instead):\n"
                       + "\n".join(found))


# -- the public face -------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_import_lrlab_imports_nothing_heavy():
    done = run_python("""
        import sys
        import lrlab
        lrlab.hookimpl, lrlab.__version__
        import lrlab.hookspecs, lrlab.markers, lrlab.version
        heavy = sorted(m for m in ("torch", "pandas", "numpy", "matplotlib", "pytest",
                                   "lrlab.sweep", "lrlab.report", "lrlab.plugins")
                       if m in sys.modules)
        assert not heavy, heavy
    """)
    assert done.returncode == 0, done.stderr


def test_lrlab_testing_loads_without_torch():
    # pytest loads lrlab.testing (entry point pytest11) in every session
    done = run_python("""
        import sys
        import lrlab.testing
        heavy = sorted(m for m in ("torch", "pandas") if m in sys.modules)
        assert not heavy, heavy
    """)
    assert done.returncode == 0, done.stderr


def test_the_face_exports_what_a_plugin_needs():
    assert {"hookimpl", "__version__", "Data", "Flag", "PluginError", "UsageError",
            "Section", "Spec", "Run", "RunResult", "Context", "run_sweep", "SweepResult",
            "load_results", "write_report", "testing"} <= set(lrlab.__all__)
    assert len(set(lrlab.__all__)) == len(lrlab.__all__)


def test_every_name_in_all_resolves():
    for name in lrlab.__all__:
        assert getattr(lrlab, name) is not None, name
        assert name in dir(lrlab), name
    namespace: dict = {}
    exec("from lrlab import *", namespace)
    assert set(lrlab.__all__) - {"__version__"} <= set(namespace)


def test_the_face_hands_out_the_defining_modules_objects():
    from lrlab import config, errors, executors, markers, report, results, sweep, version
    from lrlab import data as data_module
    from lrlab import registry as registry_module
    from lrlab import testing as testing_module
    from lrlab import verdicts as verdicts_module
    from lrlab.report import sections

    assert lrlab.hookimpl is markers.hookimpl
    assert lrlab.__version__ == version.__version__
    assert lrlab.Data is data_module.Data and lrlab.Flag is verdicts_module.Flag
    assert lrlab.UsageError is errors.UsageError and lrlab.PluginError is errors.PluginError
    assert lrlab.Section is sections.Section is report.Section
    assert lrlab.Spec is registry_module.Spec and lrlab.Run is config.Run
    assert lrlab.RunResult is results.RunResult and lrlab.Context is executors.Context
    assert lrlab.run_sweep is sweep.run_sweep and lrlab.SweepResult is sweep.SweepResult
    assert lrlab.load_results is results.load_results
    assert lrlab.write_report is report.write_report
    assert lrlab.testing is testing_module


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        lrlab.no_such_name  # noqa: B018
    assert not hasattr(lrlab, "no_such_name")


# -- first-party plugins -----------------------------------------------------------------


def plugin_files(sub: str) -> list[tuple[str, Path]]:
    """(plugin folder name, file) for each .py under ``plugins/*/<sub>``."""
    if not PLUGINS.is_dir():
        pytest.skip("no plugins/ folder beside the package (not a source checkout)")
    return [(folder.name, path) for folder in sorted(PLUGINS.iterdir())
            if folder.is_dir() and (folder.name, sub) not in NOT_YET
            for path in sorted((folder / sub).rglob("*.py"))]


def outside_the_face(path: Path, allowed_modules: set[str]) -> list[str]:
    """``file:line  what`` for each use of lrlab beyond ``lrlab.__all__``: an import of
    anything but ``lrlab`` (or ``allowed_modules``), ``from lrlab import`` a name not in
    ``__all__``, or an attribute ``lrlab.X`` not in ``__all__``."""
    public = set(lrlab.__all__)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    bad = []
    for node in import_nodes(tree, runtime_only=False):
        if isinstance(node, ast.Import):
            wrong = [a.name for a in node.names if a.name.split(".")[0] == "lrlab"
                     and a.name != "lrlab" and a.name not in allowed_modules]
        elif node.level or (node.module or "").split(".")[0] != "lrlab":
            wrong = []
        elif node.module == "lrlab":
            wrong = [a.name for a in node.names if a.name not in public]
        else:
            wrong = [] if node.module in allowed_modules else [node.module]
        if wrong:
            bad.append(f"{where(path, node)}  {ast.unparse(node)}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id == "lrlab" and node.attr not in public:
            bad.append(f"{where(path, node)}  lrlab.{node.attr}")
    return bad


def test_first_party_plugins_import_only_the_public_face():
    files = plugin_files("src")
    assert {name for name, _ in files} >= {"lrlab-classic", "lrlab-spikes",
                                           "lrlab-stoppers"}
    bad = [line for _, path in files for line in outside_the_face(path, set())]
    assert not bad, (f"first-party plugins use lrlab beyond lrlab.__all__ "
                     f"({', '.join(lrlab.__all__)}):\n" + "\n".join(bad))


def test_first_party_plugin_tests_use_only_the_face_and_lrlab_testing():
    files = plugin_files("tests")
    bad = [line for _, path in files for line in outside_the_face(path, {"lrlab.testing"})]
    assert not bad, ("first-party plugin tests use lrlab beyond lrlab.__all__ and "
                     "lrlab.testing:\n" + "\n".join(bad))


def test_the_face_check_catches_an_internal_import(tmp_path):
    path = tmp_path / "plugin.py"
    path.write_text("import lrlab\nfrom lrlab import hookimpl, Section\n"
                    "from lrlab.report import Section as S\nimport lrlab.errors\n"
                    "from lrlab import verdicts\nx = lrlab.report\ny = lrlab.Flag\n")
    bad = outside_the_face(path, set())
    assert [line.split("  ")[0] for line in bad] == \
        ["plugin.py:3", "plugin.py:4", "plugin.py:5", "plugin.py:6"], bad
