"""lrlab-mlflow: discovered through its entry point; a sweep read back from the MLflow
store it wrote; resume, retraining and back-filling never duplicate a run."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import lrlab_mlflow
import pandas as pd
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

import lrlab
from lrlab.testing import entry_point

NAME = "mlf"
GRID = {"dataset": "digits", "model": "mlp(width=16)", "lr": [0.05, 0.1], "epochs": 2,
        "augment": "none", "batch_size": 64, "optimizer": "sgd(momentum=0.9)",
        "name": NAME}
HISTORY_METRICS = ["lr", "train_loss", "train_acc", "val_loss", "val_acc"]
TABLES = {"runs.parquet", "history.parquet", "configs.parquet", "manifest.json"}


@pytest.fixture(autouse=True)
def local_store(monkeypatch):
    """Each test logs to the default store in its sweep folder, whatever the shell says."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite file with its tables made and nothing in it. Making the tables
    runs MLflow's ~100 migrations (seconds, more on a slow disk), so the tests after the
    first copy this file into their sweep folders; the plugin opens it as its own."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}")
    return path


@pytest.fixture
def seeded(tmp_path, empty_store) -> Path:
    """``tmp_path`` with an empty store already in the sweep folder."""
    (tmp_path / NAME).mkdir()
    shutil.copy(empty_store, tmp_path / NAME / "mlflow.db")
    return tmp_path


def sweep(out: Path, *plugins, report: bool = False, **overrides) -> lrlab.SweepResult:
    result = lrlab.run_sweep(plugins=plugins, out=str(out), cwd=out, report=report,
                             **{**GRID, **overrides})
    lrlab_mlflow.wait()  # the report's upload runs beside the caller
    return result


class Store:
    """What a sweep folder's MLflow store holds, read back with MlflowClient."""

    def __init__(self, folder: Path, uri: str | None = None, experiment: str = NAME):
        self.client = MlflowClient(tracking_uri=uri or f"sqlite:///{folder / 'mlflow.db'}")
        self.experiment = self.client.get_experiment_by_name(experiment)
        assert self.experiment is not None

    def runs(self, view=ViewType.ACTIVE_ONLY):
        return self.client.search_runs([self.experiment.experiment_id], "",
                                       run_view_type=view, max_results=1000)

    def parents(self):
        return [r for r in self.runs() if r.data.tags.get("lrlab.role") == "sweep"]

    def nested(self) -> dict[str, object]:
        """lrlab run id -> its nested run; fails on a duplicate."""
        out = {}
        for r in self.runs():
            if r.data.tags.get("lrlab.role") == "run":
                rid = r.data.tags["lrlab.run_id"]
                assert rid not in out, f"two nested runs for {rid}"
                out[rid] = r
        return out

    def metric(self, run, key):
        return sorted((m.step, m.value) for m in
                      self.client.get_metric_history(run.info.run_id, key))

    def artifacts(self, run) -> set[str]:
        return {f.path for f in self.client.list_artifacts(run.info.run_id)}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=0)


def check_mirrors(store: Store, result: lrlab.SweepResult) -> None:
    """One parent; one nested run per row of the runs table, with its axes as params, its
    history as metric histories and its verdict as tags."""
    [parent] = store.parents()
    nested = store.nested()
    runs = result.runs.set_index("run_id")
    assert set(nested) == set(runs.index)
    for rid, mrun in nested.items():
        row = runs.loc[rid]
        assert mrun.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert mrun.data.tags["lrlab.folder"] == str(result.folder.resolve())
        assert mrun.info.run_name == rid
        for tag in ("verdict", "cause", "flags"):
            assert mrun.data.tags.get(tag, "") == (row[tag] or ""), tag
        for axis in ("dataset", "model", "lr", "epochs", "augment", "optimizer", "seed"):
            assert mrun.data.params[axis] == str(row[axis]), axis
        history = result.history[result.history.run_id == rid].sort_values("epoch")
        assert list(history.epoch) == [0, 1, 2]
        for key in HISTORY_METRICS:
            logged = store.metric(mrun, key)
            assert [s for s, _ in logged] == list(history.epoch), key
            assert all(same(v, h) for (_, v), h in zip(logged, history[key], strict=True)), key
        assert same(mrun.data.metrics["test_acc"], row["test_acc"])
        assert mrun.info.status == ("FAILED" if row["error"] else "FINISHED")


def test_discovered_through_the_real_entry_point(lrlab_plugins):
    assert entry_point("lrlab-mlflow").load() is lrlab_mlflow
    info = lrlab_plugins().info["lrlab-mlflow"]
    assert info.source == "entry point"
    assert sorted(info.hooks) == ["lrlab_report_sections", "lrlab_run_end",
                                  "lrlab_sweep_end", "lrlab_sweep_start"]


@pytest.mark.parametrize("executor", ["local", "auto", "vectorized"])
def test_a_sweep_is_one_parent_with_a_nested_run_per_run(tmp_path, request, capsys,
                                                         executor):
    if executor != "local":  # the first makes its store itself; the second is seeded
        request.getfixturevalue("seeded")
    result = sweep(tmp_path, executor=executor, report=True)
    assert (result.runs["error"] == "").all(), result.runs["error"]
    store = Store(result.folder)
    check_mirrors(store, result)
    [parent] = store.parents()
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["lrlab.folder"] == str(result.folder.resolve())
    assert parent.data.tags["lrlab.grid.lr"] == "[0.05, 0.1]"
    assert parent.data.tags["lrlab.runs"] == "2"
    assert store.artifacts(parent) == TABLES | {"index.html"}
    # the page logged is the page the sweep wrote, not an earlier one
    logged = Path(store.client.download_artifacts(parent.info.run_id, "index.html",
                                                  str(tmp_path / "dl")))
    page = (result.folder / "index.html").read_text()
    assert logged.read_text() == page
    assert "logged to MLflow" in page and parent.info.run_id in page
    # the artifacts live in the sweep folder beside the store, not in the cwd
    assert (result.folder / "mlflow.db").is_file() and (result.folder / "mlartifacts").is_dir()
    assert not (tmp_path / "mlruns").exists()
    assert "lrlab-mlflow" not in capsys.readouterr().err


def test_a_resumed_sweep_reuses_its_runs_and_logs_only_the_new_ones(seeded):
    tmp_path = seeded
    first = sweep(tmp_path)
    store = Store(first.folder)
    [parent] = store.parents()
    before = {rid: r.info.run_id for rid, r in store.nested().items()}
    assert len(before) == 2

    again = sweep(tmp_path)  # every run is stored: nothing trains, nothing is logged twice
    assert sorted(again.skipped) == sorted(before) and again.ran == []
    [parent_again] = store.parents()
    assert parent_again.info.run_id == parent.info.run_id
    assert {rid: r.info.run_id for rid, r in store.nested().items()} == before
    check_mirrors(store, again)

    wider = sweep(tmp_path, lr=[0.05, 0.1, 0.2])  # one more lr: only it is trained
    assert len(wider.ran) == 1
    now = {rid: r.info.run_id for rid, r in store.nested().items()}
    assert len(now) == 3 and {k: now[k] for k in before} == before
    check_mirrors(store, wider)
    assert [p.info.run_id for p in store.parents()] == [parent.info.run_id]


class FailOnce:
    """Fails the run at lr 0.1 while armed (an error run is trained again on resume)."""

    __name__ = "fail-once"

    def __init__(self):
        self.armed = True

    def lrlab_run_start(self, run):
        if self.armed and run.lr == 0.1:
            raise RuntimeError("boom")


def test_a_run_trained_again_replaces_its_nested_run(seeded):
    tmp_path = seeded
    first = sweep(tmp_path, FailOnce(), executor="local")
    failed = first.runs.set_index("lr").loc[0.1]
    assert failed.verdict == "error"
    store = Store(first.folder)
    before = store.nested()
    assert before[failed.run_id].info.status == "FAILED"
    assert before[failed.run_id].data.tags["verdict"] == "error"

    second = sweep(tmp_path, executor="local")  # the error run is trained again
    assert second.ran == [failed.run_id]
    after = store.nested()
    assert after[failed.run_id].info.run_id != before[failed.run_id].info.run_id
    ok = next(rid for rid in after if rid != failed.run_id)
    assert after[ok].info.run_id == before[ok].info.run_id  # untouched
    check_mirrors(store, second)
    # the replaced run is deleted (soft: restorable), not left beside its successor
    deleted = [r for r in store.runs(ViewType.DELETED_ONLY)
               if r.data.tags.get("lrlab.run_id") == failed.run_id]
    assert [r.info.run_id for r in deleted] == [before[failed.run_id].info.run_id]

    fresh = lrlab.run_sweep(out=str(tmp_path), cwd=tmp_path, report=False, fresh=True,
                            executor="local", **GRID)  # --fresh: every run again
    assert len(store.parents()) == 1
    renewed = store.nested()
    assert not {r.info.run_id for r in renewed.values()} & \
        {r.info.run_id for r in after.values()}
    check_mirrors(store, fresh)


def test_runs_stored_without_the_plugin_are_logged_from_the_tables(tmp_path, empty_store):
    plain = lrlab.run_sweep(out=str(tmp_path), cwd=tmp_path, report=False,
                            extra_plugins=["no:lrlab-mlflow"], **GRID)
    assert not (plain.folder / "mlflow.db").exists()
    shutil.copy(empty_store, plain.folder / "mlflow.db")
    resumed = sweep(tmp_path)
    assert resumed.ran == []
    check_mirrors(Store(resumed.folder), resumed)


def test_mlflow_tracking_uri_points_elsewhere(tmp_path, monkeypatch, empty_store):
    shutil.copy(empty_store, tmp_path / "server.db")
    uri = f"sqlite:///{tmp_path / 'server.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team-sweeps")
    monkeypatch.chdir(tmp_path)  # MLflow puts this store's artifacts in ./mlruns
    result = sweep(tmp_path / "out")
    assert not (result.folder / "mlflow.db").exists()
    check_mirrors(Store(result.folder, uri=uri, experiment="team-sweeps"), result)


def test_without_mlflow_the_sweep_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(lrlab.UsageError, match=r"pip install mlflow.*-p no:lrlab-mlflow"):
        sweep(tmp_path)
    assert pd.read_parquet(tmp_path / NAME / "runs.parquet").empty  # nothing trained


def test_an_unreachable_server_stops_the_sweep_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:secret@127.0.0.1:9")  # closed
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(lrlab.UsageError) as caught:
        sweep(tmp_path)
    message = str(caught.value)
    assert "cannot log to the MLflow tracking store http://user@127.0.0.1:9" in message
    assert "secret" not in message and "\n" not in message
    assert pd.read_parquet(tmp_path / NAME / "runs.parquet").empty  # nothing trained


def test_lrlab_report_logs_the_rebuilt_page_to_the_parent(seeded, monkeypatch):
    result = sweep(seeded)  # no report yet
    store = Store(result.folder)
    [parent] = store.parents()
    assert "index.html" not in store.artifacts(parent)
    # as `lrlab report DIR` in a new process: the parent is found in the store by its tag
    monkeypatch.setattr(lrlab_mlflow, "_current", None)
    lrlab.write_report(result.folder, plugins=lrlab.testing.load_with())
    lrlab_mlflow.wait()
    assert "index.html" in store.artifacts(parent)
    assert parent.info.run_id in (result.folder / "index.html").read_text()


def test_a_report_of_a_folder_never_logged_creates_no_store(tmp_path):
    plain = lrlab.run_sweep(out=str(tmp_path), cwd=tmp_path, report=False,
                            extra_plugins=["no:lrlab-mlflow"], **GRID)
    lrlab.write_report(plain.folder, plugins=lrlab.testing.load_with())
    lrlab_mlflow.wait()
    assert not (plain.folder / "mlflow.db").exists()
    assert "logged to MLflow" not in (plain.folder / "index.html").read_text()


def test_a_run_whose_logging_failed_is_logged_at_the_sweep_end(seeded, monkeypatch, capsys):
    real, state = MlflowClient.log_batch, {"down": True}

    def flaky(self, run_id, metrics=(), params=(), tags=(), **kw):
        if state["down"] and metrics:  # the server goes away mid-run: a partial run left
            raise ConnectionError("server went away")
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    class BackUp:
        """Brings the server back before the plugin's lrlab_sweep_end."""

        __name__ = "back-up"

        @lrlab.hookimpl(tryfirst=True)
        def lrlab_sweep_end(self):
            state["down"] = False

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    result = sweep(seeded, BackUp(), executor="local")
    err = capsys.readouterr().err
    assert err.count("lrlab-mlflow: could not log run") == 2, err
    assert "ConnectionError: server went away" in err
    assert (result.runs["error"] == "").all()  # MLflow's trouble is not the runs' error
    store = Store(result.folder)
    check_mirrors(store, result)  # the partial runs were replaced by complete ones
    assert len(store.runs(ViewType.DELETED_ONLY)) == 2
