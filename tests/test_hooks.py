"""The lifecycle and analysis hooks: the order they fire in, what they see, what their
answers do, and what an exception in one does to the run and the sweep."""

from __future__ import annotations

import html
import inspect

import pytest

import lrlab
from lrlab import hookspecs
from lrlab.plugins import load_plugins
from lrlab.sweep import run_sweep
from lrlab.testing import HookRecorder, run_tiny_sweep

EXECUTORS = ("local", "vectorized")  # every executor must call the hooks the same way


def _executor_or_skip(name: str) -> None:
    if name not in load_plugins(use_entry_points=False).registry.names("executor"):
        pytest.skip(f"executor '{name}' is not registered yet")


def test_documented_order_on_the_local_executor(out):
    rec = HookRecorder()
    result = run_tiny_sweep(rec, out=out, lr=[0.05, 0.1], report=True, executor="local")
    a, b = result.runs["run_id"]
    per_run = lambda rid: [("lrlab_run_start", rid), ("lrlab_epoch_end", rid, 1),  # noqa: E731
                           ("lrlab_epoch_end", rid, 2), ("lrlab_diagnose", rid),
                           ("lrlab_run_end", rid)]
    assert rec.calls == [("lrlab_configure",), ("lrlab_sweep_start",), *per_run(a),
                         *per_run(b), ("lrlab_sweep_end",), ("lrlab_report_sections",)]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_every_executor_keeps_the_order_of_each_run(out, executor):
    _executor_or_skip(executor)
    rec = HookRecorder()
    result = run_tiny_sweep(rec, out=out, lr=[0.05, 0.1], executor=executor)
    names = rec.names()
    assert names[:2] == ["lrlab_configure", "lrlab_sweep_start"]
    assert names[-1] == "lrlab_sweep_end" and names.count("lrlab_sweep_end") == 1
    for rid in result.runs["run_id"]:  # runs may interleave; each run's calls may not
        assert rec.for_run(rid) == [("lrlab_run_start", rid), ("lrlab_epoch_end", rid, 1),
                                    ("lrlab_epoch_end", rid, 2), ("lrlab_diagnose", rid),
                                    ("lrlab_run_end", rid)]


def test_epoch_end_sees_the_epochs_metrics_as_stored_in_history(out):
    rec = HookRecorder()
    result = run_tiny_sweep(rec, out=out)
    rid = result.runs["run_id"][0]
    for row in result.history[result.history["epoch"] > 0].itertuples():
        seen = rec.metrics[(rid, row.epoch)]
        assert set(seen) == {"lr", "train_loss", "train_acc", "val_loss", "val_acc"}
        assert seen["val_loss"] == pytest.approx(row.val_loss)
        assert seen["lr"] == pytest.approx(row.lr)


class StopAtOne:
    __name__ = "stop-at-one"

    @lrlab.hookimpl
    def lrlab_epoch_end(self, epoch):
        return epoch == 1


@pytest.mark.parametrize("executor", EXECUTORS)
def test_epoch_end_returning_true_stops_the_run(out, executor):
    _executor_or_skip(executor)
    result = run_tiny_sweep(StopAtOne(), out=out, epochs=5, executor=executor)
    row = result.runs.iloc[0]
    assert (row["epochs_run"], row["stopped_by"]) == (1, "plugin")
    assert result.history["epoch"].max() == 1


class Configure:
    __name__ = "configure"

    @lrlab.hookimpl
    def lrlab_configure(self, config):
        config.grid["epochs"] = [1]
        config.thresholds["plugin_key"] = 3.0


def test_configure_may_change_the_config_before_the_grid_is_expanded(out):
    rec = HookRecorder()
    result = run_tiny_sweep(Configure(), rec, out=out, epochs=4)
    assert list(result.runs["epochs"]) == [1]
    assert result.config.thresholds["plugin_key"] == 3.0


class Tables:
    __name__ = "tables"

    def __init__(self):
        self.started, self.ended = None, None

    @lrlab.hookimpl
    def lrlab_sweep_start(self, config, runs):
        self.started = [r.run_id for r in runs]

    @lrlab.hookimpl
    def lrlab_sweep_end(self, config, runs, history):
        self.ended = (len(runs), len(history), config.name)


def test_sweep_start_sees_only_runs_to_train_and_sweep_end_the_final_tables(out, tmp_path):
    first = run_sweep(out=out, lr=[0.1], epochs=2, augment="none", model="linear",
                      report=False, cwd=tmp_path)
    spy = Tables()
    second = run_sweep(out=out, lr=[0.1, 0.05], epochs=2, augment="none", model="linear",
                       report=False, cwd=tmp_path, plugins=[spy])
    assert second.skipped == list(first.runs["run_id"])
    assert spy.started == second.ran and len(spy.started) == 1
    assert spy.ended == (2, 2 * 3, second.config.name)  # both runs, epochs 0..2 each


NOT_STILL_IMPROVING = {"underfit_still_improving": 10.0, "underfit_still_improving_acc": 10.0}


class Judge:
    __name__ = "judge"

    def __init__(self, verdict):
        self.verdict = verdict

    @lrlab.hookimpl
    def lrlab_diagnose(self, run, history, summary, thresholds):
        assert list(history["epoch"]) == [0, 1, 2] and summary["run_id"] == run.run_id
        return [lrlab.Flag(self.verdict, f"judged by a plugin at lr {run.lr:g}")]


@pytest.mark.parametrize("verdict, expected", [(None, "ok"), ("overfit", "overfit"),
                                               ("bogus", "error")])
def test_diagnose_adds_flags_and_can_raise_the_verdict(out, verdict, expected):
    # two epochs are too few to have stopped improving: judged so, the built-in verdict
    # would be underfit and hide what the plugin said
    result = run_tiny_sweep(Judge(verdict), out=out, extra_plugins=("no:lrlab-spikes",),
                            thresholds=NOT_STILL_IMPROVING)
    row = result.runs.iloc[0]
    assert row["verdict"] == expected
    if expected != "error":
        assert "judged by a plugin at lr 0.1" in row["flags"]
    else:
        assert "unknown verdict 'bogus'" in row["flags"]


class Sections:
    __name__ = "sections"

    @lrlab.hookimpl
    def lrlab_report_sections(self, runs, history, manifest):
        from lrlab.report import Section

        return [Section("Plugin section title", f"<p>{len(runs)} runs seen</p>")]


def test_report_sections_appear_in_the_report(out):
    result = run_tiny_sweep(Sections(), out=out, report=True)
    page = (result.folder / "index.html").read_text()
    assert "Plugin section title" in page and "<p>1 runs seen</p>" in page


class Boom:
    """Raises in one hook, for the run at lr 0.1 only."""

    __name__ = "boom"

    def __init__(self, hook):
        self.hook = hook

    def _maybe(self, hook, run=None):
        if hook == self.hook and (run is None or run.lr == 0.1):
            raise RuntimeError(f"boom in {hook}")

    @lrlab.hookimpl
    def lrlab_run_start(self, run):
        self._maybe("lrlab_run_start", run)

    @lrlab.hookimpl
    def lrlab_epoch_end(self, run, epoch):
        self._maybe("lrlab_epoch_end", run)

    @lrlab.hookimpl
    def lrlab_diagnose(self, run):
        self._maybe("lrlab_diagnose", run)

    @lrlab.hookimpl
    def lrlab_run_end(self, run):
        self._maybe("lrlab_run_end", run)

    @lrlab.hookimpl
    def lrlab_sweep_start(self):
        self._maybe("lrlab_sweep_start")

    @lrlab.hookimpl
    def lrlab_sweep_end(self):
        self._maybe("lrlab_sweep_end")

    @lrlab.hookimpl
    def lrlab_report_sections(self):
        self._maybe("lrlab_report_sections")


@pytest.mark.parametrize("hook", ["lrlab_run_start", "lrlab_epoch_end", "lrlab_diagnose",
                                  "lrlab_run_end"])
def test_an_exception_in_a_run_hook_errors_that_run_naming_the_plugin(out, hook):
    result = run_tiny_sweep(Boom(hook), out=out, lr=[0.1, 0.05])
    runs = result.runs.set_index("lr")
    assert runs.loc[0.1, "verdict"] == "error"
    assert f"plugin 'boom' failed in {hook}: RuntimeError: boom in {hook}" in \
        runs.loc[0.1, "flags"]
    assert "boom in" in runs.loc[0.1, "error"]  # the traceback is kept
    assert runs.loc[0.05, "verdict"] != "error"  # the sweep went on
    assert runs.loc[0.05, "epochs_run"] == 2


@pytest.mark.parametrize("hook", ["lrlab_sweep_start", "lrlab_sweep_end"])
def test_an_exception_in_a_sweep_hook_fails_the_sweep_naming_the_plugin(out, hook):
    with pytest.raises(lrlab.PluginError,
                       match=f"plugin 'boom' failed in {hook}: RuntimeError: boom"):
        run_tiny_sweep(Boom(hook), out=out, report=True)


def test_an_exception_in_report_sections_is_shown_in_its_place_naming_the_plugin(out):
    result = run_tiny_sweep(Boom("lrlab_report_sections"), Sections(), out=out, report=True)
    page = html.unescape((result.folder / "index.html").read_text())
    assert "plugin 'boom' failed in lrlab_report_sections: RuntimeError" in page
    assert "Plugin section title" in page  # the other plugins' sections are kept


def test_an_exception_in_configure_names_the_plugin(out):
    class BadConfigure:
        __name__ = "bad-configure"

        @lrlab.hookimpl
        def lrlab_configure(self, config):
            raise KeyError("nope")

    with pytest.raises(lrlab.PluginError, match="plugin 'bad-configure' failed in "
                                                "lrlab_configure: KeyError"):
        run_tiny_sweep(BadConfigure(), out=out)


def test_every_lifecycle_and_analysis_hook_has_a_test_here():
    source = inspect.getsource(inspect.getmodule(Boom))
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("lrlab_") and not name.startswith("lrlab_register_"):
            assert f"def {name}(" in source, f"no test plugin implements {name}"
