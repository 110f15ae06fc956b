"""The runs and history tables: columns, Parquet store, manifest, atomic writes, resume,
and a sweep killed mid-way losing nothing that had finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd

import lrlab
from lrlab.results import RUNS_FILE, ResultStore, RunResult

RUNS_COLUMNS = ["run_id", "dataset", "model", "loss", "optimizer", "schedule", "augment",
                "stopper", "lr", "epochs", "batch_size", "seed", "verdict", "flags",
                "epochs_run", "best_epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                "best_train_loss", "best_train_acc", "best_val_loss", "best_val_acc",
                "test_loss", "test_acc", "gap_loss", "gap_acc", "gl", "wall_s", "device",
                "error"]
HISTORY_COLUMNS = ["run_id", "epoch", "lr", "train_loss", "train_acc", "val_loss",
                   "val_acc", "wall_s"]


def test_python_api_returns_the_design_tables(out):
    result = lrlab.run_sweep(out=out, name="api", lr=[0.05, 0.1], epochs=3, augment="none",
                             report=False)
    assert set(RUNS_COLUMNS) <= set(result.runs.columns)
    # the DESIGN columns, then the epoch's largest mini-batch loss (divergence evidence)
    assert list(result.history.columns) == HISTORY_COLUMNS + ["max_batch_loss", "batch_loss"]
    assert len(result.runs) == 2 and len(result.history) == 2 * 4  # epochs 0..3
    row = result.runs.iloc[0]
    assert row["gap_acc"] == row["train_acc"] - row["val_acc"]
    assert row["gap_loss"] == row["val_loss"] - row["train_loss"]
    assert row["device"] == "cpu" and row["epochs_run"] == 3
    stored, history, manifest = lrlab.load_results(out / "api")
    pd.testing.assert_frame_equal(stored, result.runs, check_like=True)
    pd.testing.assert_frame_equal(history, result.history)


def test_manifest_records_config_command_versions_and_device(out):
    lrlab.run_sweep(out=out, name="m", lr=0.05, epochs=1, augment="none", report=False)
    manifest = json.loads((out / "m" / "manifest.json").read_text())
    assert manifest["config"]["grid"]["lr"] == [0.05]
    assert manifest["config"]["split"] == [0.6, 0.2, 0.2]
    assert "command_line" in manifest
    assert manifest["versions"]["torch"] and manifest["versions"]["lrlab"] == lrlab.__version__
    assert manifest["device"]["type"] == "cpu"
    assert manifest["split_sizes"]["digits"] == {"train": 1079, "val": 359, "test": 359}
    assert any(p["name"] == "builtin.models" for p in manifest["plugins"])


def test_history_lr_is_the_lr_used_and_epoch_zero_is_the_untrained_model(out):
    result = lrlab.run_sweep(out=out, lr=0.1, epochs=4, augment="none", report=False,
                             schedule="step(every=2,gamma=0.5)")
    h = result.history
    assert list(h["epoch"]) == [0, 1, 2, 3, 4]
    assert list(h["lr"]) == [0.1, 0.1, 0.1, 0.05, 0.05]
    assert h["train_acc"].iloc[0] < 0.3  # untrained: near chance


class CountStored:
    """Records, as each run starts, how many runs a reader of the folder finds."""

    def __init__(self, folder):
        self.folder, self.seen = folder, []

    def lrlab_run_start(self, run):
        self.seen.append(len(lrlab.load_results(self.folder)[0]))


def test_every_write_is_a_whole_temporary_file_renamed_into_place(out, monkeypatch):
    import lrlab.storage

    renames = []
    real = os.replace

    def replace(src, dst):
        src, dst = Path(src), Path(dst)
        if dst.suffix == ".parquet":  # the file to be renamed is already whole
            renames.append((src, dst, len(pd.read_parquet(src))))
        real(src, dst)

    monkeypatch.setattr(lrlab.storage.os, "replace", replace)
    counter = CountStored(out / "a")
    lrlab.run_sweep(out=out, name="a", lr=[0.05, 0.1, 0.2], epochs=1, augment="none",
                    executor="local", report=False, save="none", plugins=[counter])
    assert counter.seen == [0, 1, 2]  # each run readable as soon as it was stored
    runs_writes = [n for src, dst, n in renames if dst.name == "runs.parquet"]
    assert runs_writes[0] == 0 and runs_writes[-1] == 3  # at the start, and at the end
    assert all(src.parent == dst.parent and src.name.startswith(".") for src, dst, _ in renames)
    names = sorted(p.name for p in (out / "a").iterdir())
    assert names == [".lock", "configs.parquet", "history.parquet", "manifest.json",
                     "runs.parquet"]  # no temp left, the journal compacted and removed


def made_results(n: int, epochs: int = 2) -> list:
    """``n`` finished runs of an lr grid, with their keys and histories (not trained)."""
    from lrlab.config import build_config, expand, run_key
    from lrlab.results import summarize

    cfg = build_config(overrides={"lr": [0.001 * (i + 1) for i in range(n)],
                                  "epochs": epochs, "augment": "none"})
    results = []
    for i, run in enumerate(expand(cfg)):
        history = [{"epoch": e, "lr": run.lr, "train_loss": 2.0 / (e + 1) + i,
                    "train_acc": 0.1 * e, "val_loss": 2.1 / (e + 1) + i, "val_acc": 0.1 * e,
                    "wall_s": 0.01 * e, "max_batch_loss": 2.5, "batch_loss": 2.0}
                   for e in range(epochs + 1)]
        results.append(RunResult(run, summarize(run, history, key=run_key(run, cfg)),
                                 history))
    return results


def journal_lines(folder: Path) -> list[bytes]:
    path = folder / ".journal.jsonl"
    return path.read_bytes().splitlines() if path.exists() else []


def test_storing_a_run_appends_one_journal_record_and_does_not_rewrite_the_tables(
        tmp_path, monkeypatch):
    import lrlab.results

    writes = []
    real = lrlab.results.atomic_write_table
    monkeypatch.setattr(lrlab.results, "atomic_write_table",
                        lambda table, path: (writes.append(Path(path).name),
                                             real(table, path)))
    monkeypatch.setattr(ResultStore, "COMPACT_RATIO", float("inf"))  # never due
    store = ResultStore(tmp_path / "s")
    store.start({})
    for result in made_results(40):
        store.add(result)
    # O(1) per run: 40 runs stored, the tables written once (at the start), not 40 times
    assert writes == ["history.parquet", "runs.parquet"]
    assert len(journal_lines(store.folder)) == 40
    runs, history, _ = lrlab.load_results(store.folder)  # a reader sees every run
    assert len(runs) == 40 and len(history) == 40 * 3
    assert pd.read_parquet(store.folder / RUNS_FILE).empty  # ... from the journal
    store.finish(pd.DataFrame(), {}, wall_s=1.0, notes=[])
    assert pd.read_parquet(store.folder / RUNS_FILE)["run_id"].tolist() == runs["run_id"].tolist()
    assert not journal_lines(store.folder) and not (store.folder / ".journal.jsonl").exists()


def test_the_tables_are_rewritten_when_that_is_cheap_next_to_the_time_since(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(ResultStore, "COMPACT_RATIO", 0.0)  # always due
    store = ResultStore(tmp_path / "s")
    store.start({})
    for i, result in enumerate(made_results(3), 1):
        store.add(result)
        assert len(pd.read_parquet(store.folder / RUNS_FILE)) == i
        assert not journal_lines(store.folder)


def test_a_record_cut_short_by_a_kill_is_ignored_and_cut_off_by_the_next_sweep(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(ResultStore, "COMPACT_RATIO", float("inf"))
    results = made_results(4)
    store = ResultStore(tmp_path / "s")
    store.start({})
    for result in results[:3]:
        store.add(result)
    store._journal.sync()
    with open(store.folder / ".journal.jsonl", "ab") as fh:
        fh.write(b'{"run": {"run_id": "half')  # the write a kill -9 cut
    runs, history, _ = lrlab.load_results(store.folder)
    assert len(runs) == 3 and len(history) == 9
    again = ResultStore(store.folder)  # the resumed sweep
    selected = {r.summary["key"]: r.run for r in results}
    todo, skipped, _ = again.resume(selected, set(selected))
    assert [r.run_id for r in todo] == [results[3].run.run_id] and len(skipped) == 3
    again.start({})  # compacted: the journal, cut tail and all, is gone
    assert not (store.folder / ".journal.jsonl").exists()
    again.add(results[3])
    assert len(journal_lines(store.folder)) == 1
    assert len(lrlab.load_results(store.folder)[0]) == 4


def test_a_compaction_killed_before_it_removed_the_journal_reads_each_run_once(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(ResultStore, "COMPACT_RATIO", float("inf"))
    store = ResultStore(tmp_path / "s")
    store.start({})
    for result in made_results(3):
        store.add(result)
    store._journal.sync()
    journal = (store.folder / ".journal.jsonl").read_bytes()
    store.finish(pd.DataFrame(), {}, wall_s=1.0, notes=[])  # tables hold the 3 runs
    (store.folder / ".journal.jsonl").write_bytes(journal)  # ... and the journal still
    runs, history, _ = lrlab.load_results(store.folder)
    assert runs["run_id"].is_unique and len(runs) == 3 and len(history) == 9


def test_a_retried_run_replaces_its_record_whether_compacted_or_in_the_journal(
        tmp_path, monkeypatch):
    monkeypatch.setattr(ResultStore, "COMPACT_RATIO", float("inf"))
    first, second = made_results(2)
    store = ResultStore(tmp_path / "s")
    store.start({})
    store.add(first)
    store.add(second)
    store.finish(pd.DataFrame(), {}, wall_s=1.0, notes=[])  # both compacted
    for attempt in (1, 2):  # retried: once over the compacted record, once over its own
        retry = RunResult(first.run, {**first.summary, "wall_s": float(attempt)},
                          [{**h, "train_loss": float(attempt)} for h in first.history])
        store.add(retry)
        for runs, history in (store.tables(), lrlab.load_results(store.folder)[:2]):
            assert runs["run_id"].tolist() == [second.run.run_id, first.run.run_id]
            assert runs["wall_s"].iloc[-1] == attempt
            mine = history[history["run_id"] == first.run.run_id]
            assert len(mine) == 3 and (mine["train_loss"] == attempt).all()


def test_store_add_replaces_a_run_rather_than_duplicating(tmp_path, out):
    result = lrlab.run_sweep(out=out, name="d", lr=0.05, epochs=1, augment="none",
                             report=False)
    store = ResultStore(out / "d")
    store.load()

    rows = result.history.drop(columns="run_id").to_dict("records")
    store.add(RunResult(None, result.runs.iloc[0].to_dict(), rows))
    runs, history = store.tables()
    assert len(runs) == 1 and len(history) == 2
    # the stored file round-trips with the same column types as a fresh sweep wrote
    again = pd.read_parquet(out / "d" / RUNS_FILE)
    assert dict(again.dtypes) == dict(result.runs.dtypes)
    assert list(pd.read_parquet(out / "d" / "history.parquet").columns) == list(
        result.history.columns)


KILL_SCRIPT = textwrap.dedent("""
    import pathlib, sys, time, lrlab

    class HangOnThird:  # the third run never finishes: the sweep is killed while in it
        started = 0

        def lrlab_run_start(self, run):
            self.started += 1
            if self.started == 3:
                pathlib.Path(sys.argv[2]).write_text(run.run_id)
                time.sleep(600)

    lrlab.run_sweep(out=sys.argv[1], name="k", lr=[0.01, 0.02, 0.03, 0.04, 0.05, 0.06],
                    epochs=2, augment="none", executor="local", report=False,
                    plugins=[HangOnThird()])
""")


def test_a_killed_sweep_keeps_every_finished_run_and_resumes(tmp_path, out):
    script, marker = tmp_path / "sweep.py", tmp_path / "in-flight"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(marker)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not marker.exists():
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)  # while the third run trains
    proc.wait()
    pd.read_parquet(out / "k" / RUNS_FILE)  # whole, readable files
    pd.read_parquet(out / "k" / "history.parquet")
    kept, history, _ = lrlab.load_results(out / "k")  # with the journal's records
    assert list(kept["run_id"]) == ["mlp-lr0.01-ep2-none-s0", "mlp-lr0.02-ep2-none-s0"]
    assert sorted(set(history["run_id"])) == sorted(kept["run_id"])
    assert len(history) == 2 * 3  # epochs 0..2 of each finished run, whole
    resumed = lrlab.run_sweep(out=out, name="k", lr=[0.01, 0.02, 0.03, 0.04, 0.05, 0.06],
                              epochs=2, augment="none", executor="local", report=False)
    assert set(resumed.skipped) == set(kept["run_id"])
    assert len(resumed.runs) == 6 and len(resumed.ran) == 4
    again = resumed.runs.set_index("run_id")
    for row in kept.itertuples():  # the finished runs were kept, not trained again
        assert again.loc[row.run_id, "wall_s"] == row.wall_s


def test_best_configuration_averages_seeds_on_validation_and_skips_errors():
    from lrlab.results import best_configuration

    def row(lr, seed, acc, verdict="ok"):
        return {"run_id": f"lr{lr}-s{seed}", "lr": lr, "seed": seed, "model": "mlp",
                "verdict": verdict, "tested_val_acc": acc, "tested_val_loss": 1 - acc,
                "test_acc": 0.5}

    runs = pd.DataFrame([row(0.1, 0, 0.99), row(0.1, 1, 0.80),  # best single run, mean 0.895
                         row(0.01, 0, 0.93), row(0.01, 1, 0.92),  # best mean 0.925
                         row(1.0, 0, 1.0, "error")])
    best = best_configuration(runs)
    assert list(best["run_id"]) == ["lr0.01-s0", "lr0.01-s1"]
    assert best_configuration(runs[runs["verdict"] == "error"]) is None
