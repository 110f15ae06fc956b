"""The weights back: ``--save best|all|none`` keeps the weights each run's test split was
scored on, and ``lrlab.load_model`` rebuilds the model with them, its validation accuracy
on the sweep's own split the runs table's ``tested_val_acc``."""

from __future__ import annotations

import functools
import math
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import lrlab
from lrlab.configs import best_configuration
from lrlab.data import stratified_split
from lrlab.engine import evaluate
from lrlab.plugins import load_plugins
from lrlab.registry import Spec
from lrlab.weights import weights_dir

TINY = {"lr": [0.03, 0.1], "epochs": 4, "augment": "none", "model": "mlp(width=16)",
        "executor": "local", "report": False}
ROOT = Path(__file__).resolve().parents[1]
PATIENCE = "patience(patience=2,restore_best=True)"


@functools.cache
def digits_val(split: tuple[float, ...], split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation split of digits the sweep used."""
    registry = load_plugins(use_entry_points=False).registry
    data = registry.build("dataset", Spec("digits"), "data")
    return stratified_split(data, split, split_seed).val


def val_acc(folder, model: torch.nn.Module, run_id: str | None = None) -> float:
    """The model's accuracy on the validation split it was chosen on (run ``run_id``'s
    split; without one, the sweep's only split), on the device it trained on."""
    runs, _, manifest = lrlab.load_results(folder)
    config = manifest["config"]
    if run_id is None:
        (split_seed,) = config["grid"]["split_seed"]
    else:
        split_seed = int(runs.set_index("run_id").loc[run_id, "split_seed"])
    x, y = digits_val(tuple(config["split"]), split_seed)
    device = torch.device(runs["device"].iloc[0])
    return evaluate(model.to(device), torch.nn.functional.cross_entropy, x.to(device),
                    y.to(device), 4096)[1]


def saved_names(folder) -> set[str]:
    where = weights_dir(folder)
    return {p.name for p in where.iterdir()} if where.is_dir() else set()


def acc_of(runs, run_id: str) -> float:
    return float(runs.set_index("run_id").loc[run_id, "tested_val_acc"])


def test_save_best_keeps_the_best_configurations_seeds_and_loads_the_first(out):
    result = lrlab.run_sweep(out=out, name="best", seeds=2, **TINY)
    best = best_configuration(result.runs)
    assert best is not None and len(best) == 2
    assert set(result.weights) == set(best["run_id"])
    assert saved_names(result.folder) == {p.name for p in result.weights.values()}
    model = lrlab.load_model(result.folder)
    assert not model.training
    first = best.sort_values("seed")["run_id"].iloc[0]
    assert val_acc(result.folder, model) == acc_of(result.runs, first)
    other = next(r for r in result.runs["run_id"] if r not in set(best["run_id"]))
    with pytest.raises(lrlab.UsageError, match="no weights saved for run .*--save all"):
        lrlab.load_model(result.folder, other)


def test_save_all_keeps_every_run_and_each_vectorized_member_loads_its_own(out,
                                                                          monkeypatch):
    from lrlab.vectorized.stacked import StackedModel

    rows = []
    real = StackedModel.state_dicts

    def spy(self, params, buffers):
        states = real(self, params, buffers)
        rows.extend(states)
        return states

    monkeypatch.setattr(StackedModel, "state_dicts", spy)
    result = lrlab.run_sweep(out=out, name="all", save="all",
                             **{**TINY, "executor": "vectorized"})
    assert len(rows) == 2  # both runs trained as one group
    assert set(result.weights) == set(result.runs["run_id"]) and len(result.weights) == 2
    for run_id in result.runs["run_id"]:
        model = lrlab.load_model(result.folder, run_id)
        assert val_acc(result.folder, model) == acc_of(result.runs, run_id)


@pytest.mark.parametrize("executor", ["local", "vectorized"])
def test_each_split_seeds_run_is_scored_on_its_own_split(out, executor):
    result = lrlab.run_sweep(out=out, name=f"splits-{executor}", save="all", split_seeds=2,
                             **{**TINY, "executor": executor})
    assert sorted(set(result.runs["split_seed"])) == [0, 1]
    for run_id in result.runs["run_id"]:
        model = lrlab.load_model(result.folder, run_id)
        assert val_acc(result.folder, model, run_id) == acc_of(result.runs, run_id)


@pytest.mark.parametrize("executor", ["local", "vectorized"])
def test_a_restored_run_saves_the_restored_weights(out, executor):
    result = lrlab.run_sweep(out=out, name=f"restored-{executor}", save="all",
                             **{**TINY, "lr": 1.0, "epochs": 12, "stopper": PATIENCE,
                                "executor": executor})
    row = result.runs.iloc[0]
    assert row["stopped_by"] == "stopper" and 0 < row["restored_epoch"] < row["epochs_run"]
    model = lrlab.load_model(result.folder, row["run_id"])
    assert val_acc(result.folder, model) == row["tested_val_acc"]
    assert row["tested_epoch"] == row["restored_epoch"]


def test_save_none_writes_nothing_removes_nothing_and_fresh_removes_the_folder(out):
    stored = lrlab.run_sweep(out=out, name="n", save="all", **TINY)
    names = saved_names(stored.folder)
    assert len(names) == 2
    again = lrlab.run_sweep(out=out, name="n", save="none", **TINY)  # resumed: all skipped
    assert len(again.skipped) == 2 and saved_names(again.folder) == names
    fresh = lrlab.run_sweep(out=out, name="n", save="none", fresh=True, **TINY)
    assert not weights_dir(fresh.folder).exists() and fresh.weights == {}
    none = lrlab.run_sweep(out=out, name="none", save="none", **TINY)
    assert not weights_dir(none.folder).exists()
    with pytest.raises(lrlab.UsageError, match="--save none"):
        lrlab.load_model(none.folder)


class StopAfterTwo:
    """Interrupts the sweep (as Ctrl-C would) when a third run ends."""

    def __init__(self) -> None:
        self.ended = 0

    @lrlab.hookimpl
    def lrlab_run_end(self, run, result):
        self.ended += 1
        if self.ended == 3:
            raise KeyboardInterrupt


def test_an_interrupted_sweep_keeps_every_stored_runs_weights_and_a_resume_prunes(out):
    from lrlab.sweep import SweepInterrupted

    settings = {**TINY, "lr": [0.01, 0.03, 0.1, 0.3]}
    with pytest.raises(SweepInterrupted) as stop:
        lrlab.run_sweep(out=out, name="cut", plugins=[StopAfterTwo()], **settings)
    cut = stop.value.result
    assert len(cut.runs) == 2 and set(cut.weights) == set(cut.runs["run_id"])
    resumed = lrlab.run_sweep(out=out, name="cut", **settings)
    assert len(resumed.skipped) == 2
    best = best_configuration(resumed.runs)
    assert set(resumed.weights) == set(best["run_id"])
    assert val_acc(resumed.folder, lrlab.load_model(resumed.folder)) == \
        acc_of(resumed.runs, best["run_id"].iloc[0])


PLUGIN = '''
import math

import torch


class Plug(torch.nn.Module):
    def __init__(self, input_shape, num_classes, width=8):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(),
                                       torch.nn.Linear(math.prod(input_shape), width),
                                       torch.nn.ReLU(), torch.nn.Linear(width, num_classes))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("scratch", torch.zeros(()), persistent=False)

    def forward(self, x):
        return self.net(x) * self.scale


def plug(input_shape, num_classes, *, width: int = 8):
    """A model of a local plugin file."""
    return Plug(input_shape, num_classes, width)


def lrlab_register_models(register):
    register("plug", plug)
'''


@pytest.mark.parametrize("executor", ["local", "vectorized"])
def test_a_local_plugins_model_reloads_through_the_recipe(tmp_path, monkeypatch, executor):
    (tmp_path / "lrlab_plugins.py").write_text(PLUGIN)
    result = lrlab.run_sweep(out=tmp_path / "r", name="plug", cwd=tmp_path, save="all",
                             **{**TINY, "model": "plug(width=12)", "executor": executor})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recipe finds the file where the sweep loaded it
    for run_id in result.runs["run_id"]:  # a persistent buffer saved, a non-persistent not
        model = lrlab.load_model(result.folder, run_id)
        assert type(model).__name__ == "Plug" and model.net[1].out_features == 12
        assert val_acc(result.folder, model) == acc_of(result.runs, run_id)


def test_an_import_path_model_loads_from_another_folder(tmp_path, monkeypatch):
    (tmp_path / "nets.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    result = lrlab.run_sweep(out=tmp_path / "r", name="path", cwd=tmp_path, save="all",
                             **{**TINY, "model": "nets.py:Plug(width=10)", "lr": 0.1})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # nets.py is relative to where the sweep ran
    model = lrlab.load_model(result.folder, result.runs["run_id"].iloc[0])
    assert model.net[1].out_features == 10
    assert val_acc(result.folder, model) == result.runs["tested_val_acc"].iloc[0]


class TinyNet(torch.nn.Module):
    def __init__(self, input_shape, num_classes, width: int = 8):
        super().__init__()
        self.layer = torch.nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x):
        return self.layer(x.flatten(1))


def test_a_model_given_as_an_object_is_given_again(out):
    result = lrlab.run_sweep(out=out, name="obj", save="all", **{**TINY, "model": TinyNet, "lr": 0.1})
    run_id = result.runs["run_id"].iloc[0]
    with pytest.raises(lrlab.UsageError, match=r"model=TinyNet"):
        lrlab.load_model(result.folder, run_id)
    model = lrlab.load_model(result.folder, run_id, model=TinyNet)
    assert val_acc(result.folder, model) == result.runs["tested_val_acc"].iloc[0]


def test_bad_input_is_one_line(out, tmp_path):
    result = lrlab.run_sweep(out=out, name="bad", save="all", **TINY)
    run_id = result.runs["run_id"].iloc[0]
    with pytest.raises(lrlab.UsageError) as bad:
        lrlab.load_model(result.folder, run_id.replace("-s0", "-s9"))
    assert f"did you mean '{run_id}'" in str(bad.value) and "\n" not in str(bad.value)
    with pytest.raises(lrlab.UsageError, match="holds no sweep results"):
        lrlab.load_model(tmp_path / "nothing")
    (weights_dir(result.folder) / f"{run_id}.pt").write_bytes(b"not a file of weights")
    with pytest.raises(lrlab.UsageError, match="not a readable weights file"):
        lrlab.load_model(result.folder, run_id)


def test_a_file_of_an_earlier_training_is_refused(tmp_path):
    (tmp_path / "lrlab_plugins.py").write_text(PLUGIN)
    settings = {**TINY, "model": "plug", "lr": 0.1, "out": tmp_path / "r", "name": "stale",
                "cwd": tmp_path}
    first = lrlab.run_sweep(save="all", **settings)
    assert len(first.weights) == 1
    # the model's code changes: the run is trained again, under --save none
    (tmp_path / "lrlab_plugins.py").write_text(PLUGIN.replace("* self.scale",
                                                              "* self.scale * 3"))
    again = lrlab.run_sweep(save="none", **settings)
    assert again.ran == first.ran and again.weights == first.weights  # the old file stays
    with pytest.raises(lrlab.UsageError, match="holds the weights of an earlier training"):
        lrlab.load_model(again.folder, again.ran[0])


def test_a_ray_workers_result_brings_its_weights_back(out, monkeypatch):
    # the lrlab-ray worker's task, without Ray: its result is pickled back to the driver
    monkeypatch.syspath_prepend(str(ROOT / "plugins" / "lrlab-ray" / "src"))
    worker = pytest.importorskip("lrlab_ray.worker")
    from lrlab.config import build_config, expand
    from lrlab.recipe import recipe_of

    host = load_plugins(use_entry_points=False)
    for save in ("best", "none"):
        config = build_config(overrides={"out": str(out), "lr": 0.1, "epochs": 2,
                                         "augment": "none", "model": "mlp(width=16)",
                                         "save": save})
        run = expand(config)[0]
        result, _ = worker.train_remote(save, config, recipe_of(host), run, 1, 0)
        back = pickle.loads(pickle.dumps(result))
        if save == "none":
            assert back.weights is None
            continue
        assert back.weights and back.weights.keys() == result.weights.keys()
        assert all(torch.equal(back.weights[k], v) and v.device.type == "cpu"
                   for k, v in result.weights.items())


def test_save_bogus_is_exit_2(tmp_path, monkeypatch):
    from lrlab.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sweep", "--save", "bogus", "--epochs", "1"])
    assert result.exit_code == 2
    assert "save must be best, all or none, got 'bogus'" in result.stderr
    assert not (tmp_path / "reports").exists()


def test_the_terminal_and_the_report_say_where_the_weights_are(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lrlab.cli import app

    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["sweep", "--lr", "0.1", "--epochs", "2", "--augment",
                                    "none", "--model", "mlp(width=16)"])
    assert done.exit_code == 0, done.output
    assert ("weights: reports/digits/weights/ (1 run(s), --save best); load with "
            "lrlab.load_model('reports/digits')") in done.output
    page = (tmp_path / "reports" / "digits" / "index.html").read_text()
    assert 'id="weights">Weights: <code>weights/mlp(width=16)-lr0.1-ep2-none-s0.pt' in page


@pytest.mark.parametrize("executor", ["local", "vectorized"])
def test_save_none_copies_no_weights_out_of_the_trainers(tmp_path, executor):
    """Under --save none neither executor copies the tested weights to the CPU."""
    seen = []

    class Watch:
        def lrlab_run_end(self, result):
            seen.append(result.weights)

    lrlab.run_sweep(plugins=[Watch()], lr=[0.05, 0.1], epochs=1, augment="none",
                    model="mlp(width=8)", executor=executor, save="none", report=False,
                    out=tmp_path / "r", cwd=tmp_path)
    assert seen == [None, None]
    seen.clear()
    lrlab.run_sweep(plugins=[Watch()], lr=[0.05, 0.1], epochs=1, augment="none",
                    model="mlp(width=8)", executor=executor, save="all", report=False,
                    out=tmp_path / "r2", cwd=tmp_path)
    assert len(seen) == 2 and all(isinstance(w, dict) and w for w in seen)
