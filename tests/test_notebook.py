"""lrlab in a notebook: a sweep and a stored sweep render as HTML (summary line, flagged
runs with their flags, the LR figure as an inline PNG), and the progress plugin draws and
updates one output. The last test executes a real notebook in a Jupyter kernel (with
nbclient and ipykernel; skipped without them, run by CI in .ci/plugins)."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from lrlab import notebook
from lrlab.errors import UsageError
from lrlab.sweep import SweepResult, run_sweep
from lrlab.verdicts import summary_line

# lr 3 diverges; 0.01 and 0.1 underfit in 3 epochs: every run is flagged, two LRs or more
SWEEP = {"lr": [0.01, 0.1, 3.0], "epochs": 3, "augment": "none", "model": "mlp(width=32)",
         "report": False}
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> SweepResult:
    out = tmp_path_factory.mktemp("notebook")
    return run_sweep(**SWEEP, out=out, cwd=out)


def html_of(result: SweepResult, **kw) -> str:
    return notebook.sweep_html(result.runs, result.configs, name=result.config.name,
                               folder=result.folder, history=result.history,
                               wall_s=result.wall_s, **kw)


def pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in IMG.findall(page)]


def test_a_sweep_renders_its_summary_flagged_runs_and_lr_figure(result):
    page = html_of(result)
    assert result.summary_line() in page
    assert "best by validation" in page
    runs = result.runs.set_index("lr")
    assert runs.loc[3.0, "verdict"] == "diverged", runs[["verdict", "flags"]]
    flagged = result.runs[result.runs["verdict"] != "ok"]
    assert len(flagged) >= 2 and f"Flagged runs ({len(flagged)})" in page
    for row in flagged.itertuples():  # each flagged run with its verdict and flags
        assert f"<code>{row.run_id}</code>" in page
        assert f'data-verdict="{row.verdict}"' in page
        assert notebook._e(row.flags) in page
    [png] = pngs(page)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert "Learning-rate sensitivity" in page


def test_every_value_is_escaped(result):
    runs = result.runs.copy()
    runs.loc[0, "run_id"] = "<script>alert(1)</script>"
    runs.loc[0, "flags"] = 'a & b "quoted" <i>'
    page = notebook.sweep_html(runs, name="<b>sweep</b>", folder=Path("/tmp/a<b>"))
    assert "<script>" not in page and "<i>" not in page and "<b>sweep</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b &quot;quoted&quot; &lt;i&gt;" in page
    assert "&lt;b&gt;sweep&lt;/b&gt;" in page and "/tmp/a&lt;b&gt;" in page


def test_a_single_lr_says_why_there_is_no_figure_and_no_runs_say_so(result):
    one = result.runs[result.runs["lr"] == 0.1]
    page = notebook.sweep_html(one, name="one")
    assert "<img" not in page and "single learning rate" in page
    assert f"{summary_line(list(one['verdict']))}</div>" in page  # no wall time given
    assert "no runs" in notebook.sweep_html(pd.DataFrame(), name="empty")


def test_the_wall_time_is_read_from_the_folder_when_not_given(result):
    page = notebook.sweep_html(result.runs, folder=result.folder)
    stored = json.loads((result.folder / "manifest.json").read_text())["wall_s"]
    verdicts = list(result.runs["verdict"])
    assert summary_line(verdicts, stored) in page
    assert f"<b>{result.config.name}</b>" in page  # the name from the manifest


def test_show_renders_a_stored_sweep(result):
    shown = notebook.show(result.folder)
    assert isinstance(shown, notebook.Shown)
    assert shown.runs["run_id"].tolist() == result.runs["run_id"].tolist()
    page = shown._repr_html_()
    assert shown.summary_line() in page and shown.summary_line().startswith("3 runs: ")
    assert "Flagged runs (" in page and len(pngs(page)) == 1
    assert repr(shown) == f"<lrlab sweep 'digits' in {result.folder}: {shown.summary_line()}>"
    assert notebook.show(result).folder == result.folder  # a SweepResult works too
    with pytest.raises(UsageError, match="holds no sweep results"):
        notebook.show(result.folder.parent)


def test_a_sweep_result_renders_as_html(result, monkeypatch):
    if not hasattr(SweepResult, "_repr_html_"):  # until lrlab.sweep wires it
        monkeypatch.setattr(SweepResult, "_repr_html_", lambda self: html_of(self),
                            raising=False)
    page = result._repr_html_()
    assert result.summary_line() in page and len(pngs(page)) == 1


class FakeDisplay:
    """``display(html) -> handle``: every page drawn, in order."""

    def __init__(self) -> None:
        self.pages: list[str] = []

    def __call__(self, page: str) -> FakeDisplay:
        self.pages.append(page)
        return self

    def update(self, page: str) -> None:
        self.pages.append(page)


def test_progress_draws_one_output_and_updates_it(tmp_path):
    shown = FakeDisplay()
    done = run_sweep(lr=[0.05, 0.1], epochs=2, augment="none", model="mlp(width=16)",
                     out=tmp_path, cwd=tmp_path, report=False,
                     plugins=[notebook.NotebookProgress(every=0, display=shown)])
    first, last = shown.pages[0], shown.pages[-1]
    assert "0/2 runs" in first and "<progress" in first
    assert any("epoch 1/2" in p for p in shown.pages)  # redrawn per epoch
    assert any("1/2 runs" in p for p in shown.pages)
    assert "2/2 runs" in last and "100% of epochs" in last
    expected = summary_line(list(done.runs["verdict"]))  # the time differs a little
    assert f"<b>done</b>: {expected} in " in last


def test_progress_outside_a_notebook_prints_a_line_per_run(tmp_path, capsys):
    run_sweep(lr=[0.05, 0.1], epochs=1, augment="none", out=tmp_path, cwd=tmp_path,
              report=False, name="plain", plugins=[notebook.NotebookProgress()])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "plain: training 2 run(s)"
    assert [ln.split(" ")[0] for ln in lines[1:3]] == ["[1/2]", "[2/2]"]
    assert lines[3].startswith("plain: 2 runs: ")


# -- a real notebook ---------------------------------------------------------------------

NOTEBOOK = [
    """\
import lrlab
from lrlab import notebook
if not hasattr(lrlab.SweepResult, "_repr_html_"):  # until lrlab.sweep wires it
    lrlab.SweepResult._repr_html_ = lambda self: notebook.sweep_html(
        self.runs, self.configs, name=self.config.name, folder=self.folder,
        history=self.history, wall_s=self.wall_s)
show = getattr(lrlab, "show", notebook.show)  # lrlab.show once the face has it""",
    """\
result = lrlab.run_sweep(lr=[0.05, 0.1], epochs=2, augment="none", model="mlp(width=16)",
                         out=OUT, cwd=OUT, report=False,
                         plugins=[notebook.NotebookProgress(every=0)])
result""",
    """show(result.folder)""",
]


def test_a_real_notebook_shows_progress_the_result_and_a_stored_sweep(tmp_path,
                                                                      monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="needs nbformat (CI installs it)")
    nbclient = pytest.importorskip("nbclient", reason="needs nbclient (CI installs it)")
    pytest.importorskip("ipykernel", reason="needs ipykernel (CI installs it)")
    # a kernel of this very interpreter, whatever kernels the machine has installed
    spec = tmp_path / "jupyter" / "kernels" / "lrlab-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lrlab test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    out = tmp_path / "out"
    cells = [f"OUT = {str(out)!r}\n" + NOTEBOOK[0], *NOTEBOOK[1:]]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="lrlab-test",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    runs = pd.read_parquet(out / "digits" / "runs.parquet")
    expected = summary_line(list(runs["verdict"]))  # "2 runs: ..." (less the time)
    _, sweep_cell, show_cell = nb.cells
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    # the progress: one display output, updated in place to its final state
    [progress] = [o for o in sweep_cell.outputs if o.output_type == "display_data"]
    page = progress.data["text/html"]
    assert "2/2 runs" in page and "100% of epochs" in page and f"done</b>: {expected} in " \
        in page
    # the result and the stored sweep, each as HTML with the summary line and a PNG
    for cell in (sweep_cell, show_cell):
        [shown] = [o for o in cell.outputs if o.output_type == "execute_result"]
        page = shown.data["text/html"]
        assert re.search(re.escape(expected) + r" in \d+\.\ds", page), page[:2000]
        [png] = pngs(page)
        assert png.startswith(b"\x89PNG")
        assert "Flagged runs (" in page
