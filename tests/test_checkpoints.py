"""A kill loses at most the work since the last checkpoint: a killed sweep, run again,
continues its runs in flight and ends with the numbers of a sweep never interrupted (bit
for bit on CPU, ``wall_s`` aside), on the local and the vectorized executors. Real
processes killed with SIGKILL where it matters; the store and the stoppers' state on
their own."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import lrlab
from lrlab import hookimpl
from lrlab.checkpoints import CheckpointStore, object_state, restore_object
from lrlab.config import build_config, expand, run_key
from lrlab.engine import TrainSettings, train
from lrlab.epochs import EpochRule
from lrlab.executors import Context
from lrlab.plugins import load_plugins
from lrlab.registry import parse_spec

# 8 runs, 2 groups (by augmentation) of 4 members that finish at epoch 2 or 5
GRID = dict(lr=[0.05, 0.1], epochs=[2, 5], augment=["none", "noise"], model="mlp(width=16)")
FLAGS = ["--lr", "0.05,0.1", "--epochs", "2,5", "--augment", "none,noise",
         "--model", "mlp(width=16)", "--checkpoint-s", "0"]
# the kill comes while this run's epoch 4 ends: on the local executor 3 runs are stored,
# this one is checkpointed at epoch 3 and 4 have not started; vectorized, the ep2 members
# of its group are stored, the ep5 ones checkpointed at epoch 3, the other group waits
BLOCKED, AT, LAST = "mlp(width=16)-lr0.1-ep5-none-s0", 4, 5
RUNS = ["run_id", "test_loss", "test_acc", "stopped_by", "restored_epoch", "epochs_run"]

PROBE = '''
import os, time
from pathlib import Path
from lrlab import hookimpl


@hookimpl
def lrlab_epoch_end(run, epoch, metrics):
    if os.environ.get("CKPT_LOG"):
        with open(os.environ["CKPT_LOG"], "a") as fh:
            fh.write(f"{run.run_id} {epoch}\\n")
    if os.environ.get("CKPT_BLOCK"):
        run_id, at, marker = os.environ["CKPT_BLOCK"].split("|")
        if run.run_id == run_id and epoch == int(at):
            Path(marker).write_text("blocked")
            time.sleep(300)  # killed here
'''


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """A plugin module (``-p ckpt_probe``) that logs the epochs it sees and, when asked,
    blocks at one epoch so the test kills the sweep at a known point."""
    folder = tmp_path_factory.mktemp("probe")
    (folder / "ckpt_probe.py").write_text(PROBE)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("ckpt_probe", None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep never interrupted, per executor kind (auto vectorizes both groups)."""
    out = tmp_path_factory.mktemp("reference")
    return {ex: lrlab.run_sweep(out=out / ex, executor=ex, report=False, **GRID)
            for ex in ("local", "vectorized")}


def same_numbers(result, reference) -> None:
    a = result.history.drop(columns="wall_s").sort_values(["run_id", "epoch"])
    b = reference.history.drop(columns="wall_s").sort_values(["run_id", "epoch"])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    a = result.runs[RUNS].sort_values("run_id").reset_index(drop=True)
    b = reference.runs[RUNS].sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def no_checkpoints_left(folder: Path) -> None:
    ckpt = folder / ".checkpoints"
    assert not ckpt.exists() or not list(ckpt.iterdir()), list(ckpt.iterdir())


def epochs_seen(log: Path) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        run_id, epoch = line.rsplit(" ", 1)
        seen.setdefault(run_id, []).append(int(epoch))
    return seen


# -- killed for real -----------------------------------------------------------------


# auto with no minimum: these groups spare too few steps (306) for auto to vectorize them
@pytest.mark.parametrize("executor", ["local", "vectorized", "auto(min_spared_steps=0)"])
def test_a_killed_sweep_resumes_its_runs_in_flight_with_the_uninterrupted_numbers(
        tmp_path, probe, reference, monkeypatch, executor):
    out, marker = tmp_path / "reports", tmp_path / "blocked"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(probe), os.environ.get(
        "PYTHONPATH", "")]), "CKPT_BLOCK": f"{BLOCKED}|{AT}|{marker}"}
    proc = subprocess.Popen([sys.executable, "-m", "lrlab", "sweep", "-q", "-p", "ckpt_probe",
                             "--out", str(out), *FLAGS, "--executor", executor],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the sweep never reached the epoch"
            time.sleep(0.05)
        saved = sorted(p.name for p in (out / "digits" / ".checkpoints").glob("*.pt"))
        assert saved  # the run in flight (vectorized: its group's members) was saved
    finally:
        proc.kill()  # SIGKILL: nothing runs after it
        proc.communicate()
    stored = lrlab.load_results(out / "digits")[0]  # the tables and the journal
    assert 0 < len(stored) < 8

    # the same sweep again: the API that `lrlab sweep` calls, in this process
    log = tmp_path / "epochs.log"
    monkeypatch.setenv("CKPT_LOG", str(log))
    result = lrlab.run_sweep(out=out, executor=executor, checkpoint_s=0, report=False,
                             extra_plugins=["ckpt_probe"], **GRID)
    same_numbers(result, reference["local" if executor == "local" else "vectorized"])
    assert sorted(result.skipped) == sorted(stored.run_id)
    seen = epochs_seen(log)
    assert seen[BLOCKED] == list(range(AT, LAST + 1))  # continued after its checkpoint
    in_flight = [r for r in seen if min(seen[r]) > 1]
    assert len(in_flight) == (1 if executor == "local" else 2)
    assert all(seen[r] == list(range(1, len(seen[r]) + 1)) for r in seen if r not in in_flight)
    assert any(f"{len(in_flight)} run(s) continued from the checkpoint" in n
               for n in result.notes), result.notes
    no_checkpoints_left(out / "digits")


# -- interrupted in this process: optimizers, schedules and stoppers with state --------


class Interrupt:
    """Ctrl-C (as the CLI turns SIGINT and SIGTERM into) when ``run_id``'s ``epoch`` ends."""

    def __init__(self, run_id: str, epoch: int) -> None:
        self.run_id, self.epoch = run_id, epoch

    @hookimpl
    def lrlab_epoch_end(self, run, epoch, metrics):
        if run.run_id == self.run_id and epoch == self.epoch:
            raise KeyboardInterrupt


STATEFUL = dict(lr=[0.003, 0.01], epochs=[3, 8], augment="noise", optimizer="adam",
                schedule="onecycle", stopper="patience(patience=30,restore_best=True)",
                model="mlp(width=16)", checkpoint_s=0, report=False)


@pytest.mark.parametrize("executor, model", [("local", "mlp(width=16,dropout=0.2)"),
                                             ("vectorized", "mlp(width=16)"),
                                             ("vectorized", "mlp(width=16,dropout=0.2)")])
def test_an_interrupted_run_continues_its_optimizer_schedule_stopper_and_random_streams(
        out, executor, model):
    grid = {**STATEFUL, "model": model, "executor": executor}
    never = lrlab.run_sweep(out=out / "never", **grid)
    assert never.runs.restored_epoch.notna().all()  # the best snapshot decides the test
    victim = never.runs.run_id.iloc[-1]
    with pytest.raises(KeyboardInterrupt):
        lrlab.run_sweep(out=out / "cut", plugins=[Interrupt(victim, 5)], **grid)
    assert list((out / "cut" / "digits" / ".checkpoints").glob("*.pt"))
    resumed = lrlab.run_sweep(out=out / "cut", **grid)
    same_numbers(resumed, never)
    continued = 1 if executor == "local" else 2  # vectorized: the ep8 members together
    assert victim in resumed.ran
    assert any(f"{continued} run(s) continued" in n for n in resumed.notes), resumed.notes
    no_checkpoints_left(out / "cut" / "digits")


def test_a_local_checkpoint_continues_on_the_local_executor_under_auto(out):
    grid = {**STATEFUL, "lr": [0.01], "epochs": 8, "stopper": "none"}
    never = lrlab.run_sweep(out=out / "never", executor="local", **grid)
    run_id = never.runs.run_id.iloc[0]
    with pytest.raises(KeyboardInterrupt):
        lrlab.run_sweep(out=out / "cut", executor="local", plugins=[Interrupt(run_id, 3)],
                        **grid)
    resumed = lrlab.run_sweep(out=out / "cut", executor="auto", **grid)
    same_numbers(resumed, never)
    assert any("1 run(s) continued" in n for n in resumed.notes)


# -- the engine and the store ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    host = load_plugins([])
    cfg = build_config(overrides={"lr": 0.05, "epochs": 5, "augment": "noise",
                                  "model": "mlp(width=16)"})
    context = Context(cfg, host, torch.device("cpu"), checkpoints=None)
    run = expand(cfg)[0]
    return run, context.data(run), host.registry, run_key(run, cfg)


def rows(trained) -> pd.DataFrame:
    return pd.DataFrame(trained.history).drop(columns="wall_s")


def test_a_damaged_checkpoint_means_training_from_scratch(tmp_path, digits):
    run, data, registry, key = digits
    settings = TrainSettings(torch.device("cpu"))
    never = train(run, data, registry, settings)
    store = CheckpointStore(tmp_path, every_s=0)
    tmp_path.mkdir(exist_ok=True)
    for damage in (b"not a checkpoint", b""):
        store.path(key).write_bytes(damage)
        assert store.load(key) is None and store.peek(key) is None
        trained = train(run, data, registry, settings, checkpoints=store, key=key)
        assert trained.resumed_epoch is None and rows(trained).equals(rows(never))
    whole = store.path(key).read_bytes()  # the last save of that run: after epoch 4
    store.path(key).write_bytes(whole[:len(whole) // 2])  # cut short
    assert store.load(key) is None
    store.path(key).write_bytes(whole)
    trained = train(run, data, registry, settings, checkpoints=store, key=key)
    assert trained.resumed_epoch == 4 and rows(trained).equals(rows(never))
    assert (trained.test_loss, trained.test_acc) == (never.test_loss, never.test_acc)
    other = train(run, data, registry, settings, checkpoints=store, key=key, code="edited")
    assert other.resumed_epoch is None  # saved under other code: from scratch


def test_nothing_is_written_until_a_save_is_due_and_then_once_per_interval(tmp_path,
                                                                            monkeypatch):
    now = [100.0]
    monkeypatch.setattr("lrlab.checkpoints.time.monotonic", lambda: now[0])
    store = CheckpointStore(tmp_path / ".checkpoints", every_s=30)
    store.begin("a")
    assert not store.save_if_due("a", lambda: {"x": 1})
    assert not (tmp_path / ".checkpoints").exists()  # the folder comes with a save
    now[0] += 29.9
    assert not store.due("a")
    now[0] += 0.1
    assert store.save_if_due("a", lambda: {"x": 2}) and store.load("a") == {"x": 2}
    now[0] += 10
    assert not store.due("a") and not store.save_if_due("a", lambda: {"x": 3})
    assert not store.due("b")  # a key without a clock starts one when asked
    now[0] += 30
    assert store.due("a") and store.due("b")
    every = CheckpointStore(tmp_path / "every", every_s=0)
    assert all(every.due("a") for _ in range(3))


def test_a_save_is_atomic_and_a_failed_one_leaves_the_last_whole(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path, every_s=0)
    store.save("k", {"weights": torch.arange(4.0)})
    seen = []
    real = os.replace

    def replace(src, dst):
        seen.append(Path(src).name)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Exception, match="No space left"):
        store.save("k", {"weights": torch.zeros(4)})
    monkeypatch.setattr(os, "replace", real)
    assert seen and seen[0].startswith(f".k.pt.{os.getpid()}.") and seen[0].endswith(".tmp")
    assert torch.equal(store.load("k")["weights"], torch.arange(4.0))
    with pytest.raises(AttributeError, match="pickle"):
        store.save("k", {"weights": torch.zeros(4), "bad": lambda: 0})  # cannot pickle
    assert torch.equal(store.load("k")["weights"], torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pt"]  # no temporary file


def test_a_failed_save_is_said_once_and_the_run_trains_on(tmp_path):
    said = []
    store = CheckpointStore(tmp_path, every_s=0, on_problem=said.append)
    assert not store.save_if_due("k", lambda: {"bad": lambda: 0})
    assert not store.due("k") and not store.save_if_due("k", lambda: {"ok": 1})
    assert len(said) == 1 and "could not be checkpointed" in said[0]
    assert not store.path("k").exists()


def test_remove_takes_the_checkpoint_a_kills_temporary_file_and_the_empty_folder(tmp_path):
    folder = tmp_path / ".checkpoints"
    store = CheckpointStore(folder, every_s=0)
    store.save("a", {"x": 1})
    store.save("b", {"x": 2})
    (folder / ".a.pt.12345.1.tmp").write_bytes(b"half")  # a save cut by kill -9
    store.remove("a")
    assert sorted(p.name for p in folder.iterdir()) == ["b.pt"]
    store.remove("b")
    assert not folder.exists()
    store.remove("never saved")  # nothing to do, nothing created
    assert not folder.exists()


def test_a_context_keeps_checkpoints_in_the_sweep_folder(tmp_path):
    cfg = build_config(overrides={"out": str(tmp_path), "checkpoint_s": 5})
    context = Context(cfg, load_plugins([]), torch.device("cpu"))
    assert context.checkpoints.folder == cfg.out_dir / ".checkpoints"
    assert context.checkpoints.every_s == 5
    assert Context(cfg, context.plugins, torch.device("cpu"), checkpoints=None).checkpoints \
        is None


# -- stoppers --------------------------------------------------------------------------


class PluginStopper:
    """A stopper of a plugin: no state_dict, plain attributes."""

    restore_best = True

    def __init__(self):
        self.best_epoch, self.seen = None, []

    def update(self, epoch, metrics):
        self.seen.append(metrics["val_loss"])
        if self.best_epoch is None or metrics["val_loss"] < min(self.seen[:-1]):
            self.best_epoch = epoch
        return len(self.seen) > 3 and self.seen[-1] > self.seen[-4]


class SlotStopper:
    """One with ``__slots__``: pickled whole."""

    __slots__ = ("best_epoch", "n")
    restore_best = False

    def __init__(self):
        self.best_epoch, self.n = None, 0

    def update(self, epoch, metrics):
        self.n += 1
        self.best_epoch = epoch
        return self.n >= 7


@pytest.fixture(scope="module")
def stoppers():
    return load_plugins([]).registry


@pytest.mark.parametrize("spec", ["none", "patience(patience=3)",
                                  "patience(monitor=val_acc,min_delta=0.01,patience=2)",
                                  "gl(alpha=1)", "pq(alpha=0.2,strip=2)", "up(s=2,strip=2)",
                                  PluginStopper, SlotStopper])
def test_a_stopper_continues_from_its_saved_state(stoppers, spec):
    def make():
        return spec() if isinstance(spec, type) else stoppers.build("stopper", parse_spec(spec))

    rng = random.Random(7)
    epochs = [{"val_loss": 1 + rng.random(), "train_loss": 1 / (e + 1) + 0.1 * rng.random(),
               "val_acc": rng.random(), "train_acc": rng.random(), "lr": 0.1}
              for e in range(20)]
    for cut in (1, 4, 9):
        whole, first = make(), make()
        for e in range(cut):
            whole.update(e + 1, epochs[e])
            first.update(e + 1, epochs[e])
        rule = EpochRule(None, first, {})
        rule.snapshot_taken = True
        buffer = io.BytesIO()
        torch.save(rule.state_dict(), buffer)  # as a checkpoint keeps it
        buffer.seek(0)
        again = EpochRule(None, make(), {})
        again.load_state_dict(torch.load(buffer, weights_only=False))
        assert again.snapshot_taken
        for e in range(cut, len(epochs)):
            assert again.stopper.update(e + 1, epochs[e]) == whole.update(e + 1, epochs[e])
            assert again.stopper.best_epoch == whole.best_epoch, (spec, cut, e)


def test_object_state_prefers_state_dict_then_attributes_then_the_object():
    from lrlab.builtin.stoppers import patience

    assert set(object_state(patience())) == {"state_dict"}
    assert set(object_state(PluginStopper())) == {"vars"}
    assert set(object_state(SlotStopper())) == {"object"}
    slot = SlotStopper()
    slot.update(1, {})
    assert restore_object(SlotStopper(), object_state(slot)).n == 1
    seen = patience(patience=2)
    seen.update(1, {"val_loss": 0.5})
    fresh = restore_object(patience(patience=2), object_state(seen))
    assert (fresh.best, fresh.best_epoch, fresh.wait) == (0.5, 1, 0)
