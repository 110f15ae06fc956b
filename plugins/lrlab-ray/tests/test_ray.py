"""lrlab-ray: discovered through its entry point; a real Ray cluster gives the local
executor's answers, stores results as they arrive, survives errors and crashes, honours -x.
"""

import os
import pickle
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points

import lrlab_ray
import pandas as pd
import pytest
import torch
from lrlab_ray.worker import worker_device
from typer.testing import CliRunner

from lrlab.cli import app
from lrlab.errors import UsageError
from lrlab.plugins import load_plugins
from lrlab.recipe import LocalFile, PluginRecipe
from lrlab.registry import parse_spec
from lrlab.sweep import run_sweep
from lrlab.testing import entry_point, run_tiny_sweep

LOCAL_PLUGIN = "def lrlab_register_models(register):\n    register('{name}', {name})\n\n\n" \
               "def {name}(input_shape, num_classes):\n    '''A model.'''\n"


def test_discovered_through_the_real_entry_point():
    assert "lrlab-ray" in {ep.name for ep in entry_points(group="lrlab")}
    assert entry_point("lrlab-ray").load() is lrlab_ray
    host = load_plugins()  # only what is installed
    info = host.info["lrlab-ray"]
    assert (info.source, info.version) == ("entry point", lrlab_ray.__version__)
    assert info.registered == ["executor:ray"]
    assert host.registry.get("executor", "ray").plugin == "lrlab-ray"
    listed = CliRunner().invoke(app, ["list", "executor"])
    assert listed.exit_code == 0, listed.output
    assert "ray(address=''" in listed.output


def test_loading_the_plugin_does_not_import_ray():
    # lrlab loads every installed plugin on every sweep: only the ray executor pays for Ray
    code = ("import sys; from lrlab.plugins import load_plugins; h = load_plugins(); "
            "assert 'executor:ray' in h.info['lrlab-ray'].registered; "
            "assert 'ray' not in sys.modules, 'importing lrlab_ray imported ray'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- the worker's plugin host (no Ray needed) ---------------------------------------------


class ApiPlugin:
    __name__ = "api-plugin"

    def lrlab_run_start(self, run):
        pass


def test_a_worker_loads_the_drivers_plugins(tmp_path, monkeypatch):
    (tmp_path / "ray_test_pmod.py").write_text(LOCAL_PLUGIN.format(name="from_p"))
    monkeypatch.syspath_prepend(str(tmp_path))
    local = tmp_path / "local"
    local.mkdir()
    (local / "lrlab_plugins.py").write_text(LOCAL_PLUGIN.format(name="from_local"))
    driver = load_plugins(["ray_test_pmod", "no:builtin.vectorized"], local_dirs=[local],
                          plugins=[ApiPlugin()])
    recipe = PluginRecipe.of(driver)
    assert recipe.modules == ("ray_test_pmod",)
    assert recipe.local_files == (LocalFile(str(local / "lrlab_plugins.py"),
                                            (local / "lrlab_plugins.py").read_text()),)
    assert "builtin.vectorized" in recipe.blocked
    assert "lrlab-ray" in recipe.entry_points
    assert recipe.unnamed == ("api-plugin",)
    worker = pickle.loads(pickle.dumps(recipe)).load()  # as a Ray task receives it
    assert set(worker.info) == set(driver.info) - {"api-plugin"}
    assert worker.registry.names("model") == driver.registry.names("model")
    assert {"from_p", "from_local"} <= set(worker.registry.names("model"))
    assert "vectorized" not in worker.registry.names("executor")


def test_a_local_plugin_file_reaches_a_node_without_its_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    source = LOCAL_PLUGIN.format(name="shipped")
    recipe = PluginRecipe(local_files=(LocalFile("/nowhere/on/this/node/lrlab_plugins.py",
                                                 source),))
    assert "shipped" in recipe.load().registry.names("model")
    [written] = tmp_path.glob("lrlab-plugins-*/lrlab_plugins.py")
    assert written.read_text() == source


def test_device_auto_is_cpu_unless_the_task_has_a_gpu():
    config = type("Config", (), {"device": "auto"})()
    assert worker_device(config, gpus=0) == torch.device("cpu")


# -- sweeps on a real Ray cluster ----------------------------------------------------------

GRID = {"lr": [0.01, 0.1, 1.0], "epochs": 2, "augment": "none"}


def test_same_runs_and_histories_as_the_local_executor(ray_cluster, tmp_path):
    local = run_tiny_sweep(out=tmp_path, name="local", executor="local", **GRID)
    on_ray = run_tiny_sweep(out=tmp_path, name="ray", executor="ray", **GRID)
    assert list(on_ray.runs["run_id"]) == list(local.runs["run_id"])
    assert list(on_ray.runs["error"]) == [""] * 3, on_ray.runs["error"].tolist()
    assert set(on_ray.runs["device"]) == {"cpu"}
    same = [c for c in local.runs.columns if c != "wall_s"]  # key (resume) included
    pd.testing.assert_frame_equal(on_ray.runs[same], local.runs[same])

    def history(result):
        rows = result.history.drop(columns="wall_s")
        return rows.sort_values(["run_id", "epoch"]).reset_index(drop=True)

    assert len(history(local)) == 3 * 3  # epochs 0 (untrained), 1, 2
    pd.testing.assert_frame_equal(history(on_ray), history(local), check_exact=True)


def test_weights_and_each_runs_split_come_back_from_the_cluster(ray_cluster, tmp_path):
    import lrlab

    grid = {"lr": [0.1], "epochs": 2, "augment": "none", "seeds": 2, "split_seeds": 2,
            "save": "all"}
    local = run_tiny_sweep(out=tmp_path, name="local-w", executor="local", **grid)
    on_ray = run_tiny_sweep(out=tmp_path, name="ray-w", executor="ray", **grid)
    assert sorted(set(on_ray.runs["split_seed"])) == [0, 1]
    same = [c for c in local.runs.columns if c != "wall_s"]
    pd.testing.assert_frame_equal(on_ray.runs[same], local.runs[same])
    assert set(on_ray.weights) == set(on_ray.runs["run_id"])  # every run's weights came back
    for run_id in on_ray.runs["run_id"]:
        theirs = lrlab.load_model(on_ray.folder, run_id).state_dict()
        ours = lrlab.load_model(local.folder, run_id).state_dict()
        assert theirs.keys() == ours.keys()
        assert all(torch.equal(theirs[k], ours[k]) for k in ours), run_id


class DiskWatcher:
    """Records, at each lrlab_run_end (in the driver), which runs are already on disk."""

    __name__ = "disk-watcher"

    def __init__(self, folder):
        self.folder = folder
        self.seen = []

    def lrlab_run_end(self, run, result):
        import lrlab

        try:  # the tables and the journal of runs stored since (what a resume reads)
            stored, _, _ = lrlab.load_results(self.folder)
        except lrlab.UsageError:  # nothing stored yet
            stored = pd.DataFrame()
        stored = list(stored["model"]) if "model" in stored else []
        self.seen.append((str(run.model), stored, time.monotonic()))


def test_each_result_is_stored_as_it_arrives_not_in_submission_order(ray_cluster, sweepdir):
    watcher = DiskWatcher(sweepdir / "out" / "arrive")
    run_sweep(sweepdir / "sweep.toml", plugins=[watcher], model=["slow(seconds=4)",
              "here_linear"], out=str(sweepdir / "out"), name="arrive", report=False)
    (first, on_disk_1, t1), (second, on_disk_2, t2) = watcher.seen
    # slow was submitted first; here_linear finished first and came back first
    assert (first, second) == ("here_linear", "slow(seconds=4)")
    assert on_disk_1 == [] and on_disk_2 == ["here_linear"]
    assert t2 - t1 > 1.0, "the first result waited for the slow one"


def test_errors_and_crashes_become_error_runs_and_local_plugins_reach_workers(
        ray_cluster, sweepdir):
    result = run_sweep(sweepdir / "sweep.toml", out=str(sweepdir / "out"), report=False)
    runs = result.runs.set_index("model")
    assert sorted(runs.index) == ["boom", "crash", "here_linear"]
    assert runs.loc["here_linear", "error"] == ""
    assert runs.loc["here_linear", "val_acc"] > 0.5  # it trained: the local model reached
    assert "boom from the local lrlab_plugins.py" in runs.loc["boom", "error"]
    assert "died" in runs.loc["crash", "error"]
    assert list(runs.loc[["boom", "crash"], "verdict"]) == ["error", "error"]
    # lrlab_run_start of the local plugin file ran in a Ray worker, not in this process
    marker = sweepdir / f"started-{runs.loc['here_linear', 'run_id']}.pid"
    assert int(marker.read_text()) != os.getpid()


def test_exitfirst_cancels_the_runs_not_finished(ray_cluster, sweepdir):
    result = run_sweep(sweepdir / "sweep.toml", model=["boom", "slow(seconds=4)"],
                       lr=[0.01, 0.1, 1.0], out=str(sweepdir / "out"), name="x",
                       exitfirst=True, report=False)
    assert "error" in set(result.runs["verdict"])
    # the first error stopped the sweep: the runs not finished then were never stored
    assert len(result.runs) < 6, result.runs[["run_id", "verdict"]]


def test_the_command_line_spellings_build_the_executor():
    registry = load_plugins().registry
    built = registry.build("executor", parse_spec("ray(address=auto, gpus_per_run=0.5)"))
    assert (built.address, built.gpus_per_run, built.cpus_per_run) == ("auto", 0.5, 1.0)
    with pytest.raises(UsageError, match="cpus"):
        registry.check("executor", parse_spec("ray(cpus=2)"))


def test_a_cluster_that_cannot_be_reached_is_a_usage_error_naming_it():
    class NoCluster:  # stands in for the ray module: nothing to join
        def is_initialized(self):
            return False

        def init(self, **kwargs):
            raise ConnectionError("Could not find any running Ray instance.\nmore text")

    executor = lrlab_ray.ray(address="auto")
    with pytest.raises(UsageError, match="cluster at 'auto': Could not find any running"):
        executor._connect(NoCluster())
    with pytest.raises(UsageError, match="cpus_per_run > 0"):
        lrlab_ray.ray(cpus_per_run=0)
