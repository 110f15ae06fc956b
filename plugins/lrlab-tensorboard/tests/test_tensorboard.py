"""lrlab-tensorboard: discovered through its entry point; a sweep's runs as TensorBoard
runs, read back with TensorBoard's own reader and served by a real ``tensorboard``."""

import json
import math
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import lrlab_tensorboard
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import lrlab
from lrlab.testing import entry_point

TINY = {"lr": [0.05, 0.1], "epochs": 2, "augment": "none", "model": "mlp(width=16)",
        "report": False}


def sweep(out: Path, **overrides):
    """The tiny sweep of this suite, with ``out`` and ``cwd`` in the test's folder."""
    return lrlab.run_sweep(**{**TINY, **overrides}, out=out, cwd=out)


def events(folder: Path) -> list[Path]:
    return sorted(folder.rglob("events.out.tfevents.*"))


def accumulate(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def hparams_of(acc: EventAccumulator) -> dict:
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    out = {}
    for name, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = getattr(value, kind)
    return out


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(lrlab_tensorboard.ENV, raising=False)


def test_discovered_through_the_real_entry_point(lrlab_plugins):
    assert entry_point("lrlab-tensorboard").load() is lrlab_tensorboard
    info = lrlab_plugins().info["lrlab-tensorboard"]
    assert info.source == "entry point"
    assert sorted(info.hooks) == ["lrlab_run_end", "lrlab_sweep_end", "lrlab_sweep_start"]


def test_importing_the_plugin_does_not_import_torch_or_tensorboard():
    code = ("import sys, lrlab_tensorboard\n"
            "heavy = [m for m in ('torch', 'tensorboard', 'pandas') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_run_is_a_tensorboard_run_with_the_history_as_scalars(tmp_path, no_env):
    result = sweep(tmp_path)
    root = result.folder / "tensorboard"
    assert sorted(p.name for p in root.iterdir()) == sorted(result.runs["run_id"])
    for run_id, rows in result.history.groupby("run_id"):
        folder = root / run_id
        assert len(events(folder)) == 1
        acc = accumulate(folder)
        for col, tag in lrlab_tensorboard.SCALARS.items():
            want = [(int(r.epoch), float(getattr(r, col))) for r in rows.itertuples()
                    if not math.isnan(getattr(r, col))]
            got = [(e.step, e.value) for e in acc.Scalars(tag)]
            assert [s for s, _ in got] == [s for s, _ in want], tag
            assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), tag
        # epoch 0 is the untrained model: it has a clean loss but no mini-batch losses
        assert [e.step for e in acc.Scalars("loss/train")] == [0, 1, 2]
        assert [e.step for e in acc.Scalars("loss/train_batches_mean")] == [1, 2]
        walls = [e.wall_time for e in acc.Scalars("loss/train")]
        assert walls == sorted(walls) and walls[-1] <= time.time()


def test_hparams_hold_every_axis_the_final_metrics_and_the_verdict(tmp_path, no_env):
    result = sweep(tmp_path)
    root = result.folder / "tensorboard"
    for row in result.runs.to_dict("records"):
        acc = accumulate(root / row["run_id"])
        content = acc.PluginTagToContent("hparams")
        assert set(content) == {"_hparams_/experiment", "_hparams_/session_start_info",
                                "_hparams_/session_end_info"}
        hp = hparams_of(acc)
        axes = lrlab_tensorboard.axis_names()
        assert set(hp) == {*axes, "verdict", "cause"}
        for axis in axes:
            assert hp[axis] == (row[axis] if isinstance(row[axis], str)
                                else pytest.approx(float(row[axis]))), axis
        assert hp["verdict"] == row["verdict"] and hp["cause"] == row["cause"]
        experiment = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/experiment"]).experiment
        metrics = {m.name.tag for m in experiment.metric_infos}
        assert metrics == set(lrlab_tensorboard.METRICS.values())
        # chosen on validation: no test-split number per run
        assert not any(m.startswith("hparams/test_") for m in metrics)
        for col, tag in lrlab_tensorboard.METRICS.items():
            [point] = acc.Scalars(tag)
            assert point.step == row["epochs_run"]
            assert point.value == pytest.approx(float(row[col]), rel=1e-6, abs=1e-9), tag


def test_a_resumed_sweep_writes_nothing_twice_and_a_retrained_run_replaces_its_folder(
        tmp_path, no_env, monkeypatch):
    calls = []
    write = lrlab_tensorboard.write_run
    monkeypatch.setattr(lrlab_tensorboard, "write_run",
                        lambda root, run_id, *a: calls.append(run_id) or write(root, run_id, *a))
    first = sweep(tmp_path)
    assert len(calls) == 2  # once per run, at its end; lrlab_sweep_end had nothing to add
    root = first.folder / "tensorboard"
    written = events(root)
    assert len(written) == 2

    resumed = sweep(tmp_path)  # everything stored: nothing trained, nothing written
    assert resumed.ran == [] and len(calls) == 2 and events(root) == written

    again = sweep(tmp_path, fresh=True)  # every run trained again: each folder replaced
    assert len(again.ran) == 2 and len(calls) == 4
    assert len(events(root)) == 2 and set(events(root)).isdisjoint(written)
    for run_id in again.runs["run_id"]:
        assert [e.step for e in accumulate(root / run_id).Scalars("loss/val")] == [0, 1, 2]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_sweep_end_writes_a_missing_run_and_a_rejudged_verdict_and_prunes(tmp_path,
                                                                          no_env):
    first = sweep(tmp_path)
    root = first.folder / "tensorboard"
    gone, other = first.runs["run_id"]
    shutil.rmtree(root / gone)  # say, trained before the plugin was installed
    (root / "stale-run").mkdir()  # a run this sweep no longer holds
    (root / "stale-run" / lrlab_tensorboard.STAMP).write_text("{}")
    (root / "not-ours").mkdir()  # a folder the plugin did not write is left alone
    # judged again with thresholds under which 2 epochs are not underfit: the stored
    # runs' verdicts change without training
    before = dict(zip(first.runs["run_id"], first.runs["verdict"], strict=True))
    resumed = sweep(tmp_path, thresholds={"underfit_progress": 0.0, "near_chance": 0.0,
                                          "underfit_still_improving": 10.0,
                                          "underfit_still_improving_acc": 10.0})
    assert resumed.ran == []
    after = dict(zip(resumed.runs["run_id"], resumed.runs["verdict"], strict=True))
    assert after != before, (before, after)
    assert sorted(p.name for p in root.iterdir()) == sorted([gone, other, "not-ours"])
    for run_id, verdict in after.items():
        assert hparams_of(accumulate(root / run_id))["verdict"] == verdict
        stamp = json.loads((root / run_id / lrlab_tensorboard.STAMP).read_text())
        assert stamp["verdict"] == verdict
        assert len(events(root / run_id)) == 1
    assert [e.step for e in accumulate(root / gone).Scalars("accuracy/val")] == [0, 1, 2]


def test_the_env_var_moves_the_runs_to_a_folder_per_sweep_name(tmp_path, monkeypatch):
    monkeypatch.setenv(lrlab_tensorboard.ENV, str(tmp_path / "tb"))
    result = sweep(tmp_path / "out", name="named")
    assert not (result.folder / "tensorboard").exists()
    assert sorted(p.name for p in (tmp_path / "tb" / "named").iterdir()) == \
        sorted(result.runs["run_id"])


def test_the_vectorized_executor_interleaving_runs_writes_each_run_whole(tmp_path, no_env):
    result = sweep(tmp_path, executor="vectorized", lr=[0.02, 0.05, 0.1], seed=[0, 1])
    root = result.folder / "tensorboard"
    assert len(result.runs) == 6 and (result.runs["error"] == "").all()
    for run_id, rows in result.history.groupby("run_id"):
        got = [e.value for e in accumulate(root / run_id).Scalars("accuracy/train")]
        assert got == pytest.approx(list(rows["train_acc"]), rel=1e-6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, data: bytes | None = None):
    request = urllib.request.Request(url, data=data, headers={
        "X-XSRF-Protected": "1", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_tensorboard_serves_the_runs_their_scalars_and_hparams(tmp_path, no_env):
    result = sweep(tmp_path)
    runs = sorted(result.runs["run_id"])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "tensorboard.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir",
         str(result.folder / "tensorboard"), "--host", "127.0.0.1", "--port", str(port),
         "--reload_interval", "1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, listed, last = time.monotonic() + 60, [], None
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()
            try:
                listed = sorted(get_json(f"{base}/data/runs"))
                if listed == runs:
                    tags = get_json(f"{base}/data/plugin/scalars/tags")
                    if sorted(tags) == runs:
                        break
            except OSError as exc:  # not listening yet
                last = exc
            time.sleep(0.5)
        else:
            pytest.fail(f"tensorboard listed {listed}, not {runs}, within 60 s ({last}):\n"
                        + (tmp_path / "tensorboard.log").read_text())
        for run_id in runs:
            assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr"} <= \
                set(tags[run_id])
        assert get_json(f"{base}/data/plugins_listing")["hparams"]["enabled"]
        experiment = get_json(f"{base}/data/plugin/hparams/experiment",
                              json.dumps({"experimentName": ""}).encode())
        assert {*lrlab_tensorboard.axis_names(), "verdict"} <= \
            {h["name"] for h in experiment["hparamInfos"]}
        # the HParams dashboard's table: a row per run, its axes, verdict and metrics
        query = {"experimentName": "", "startIndex": 0, "sliceSize": 100,
                 "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                 "colParams": [{"hparam": "lr"}, {"hparam": "verdict"},
                               {"metric": {"tag": "hparams/val_acc", "group": ""}}]}
        groups = get_json(f"{base}/data/plugin/hparams/session_groups",
                          json.dumps(query).encode())["sessionGroups"]
        by_name = {g["name"]: g for g in groups}
        assert sorted(by_name) == runs
        for row in result.runs.to_dict("records"):
            group = by_name[row["run_id"]]
            assert group["hparams"]["lr"] == pytest.approx(row["lr"])
            assert group["hparams"]["verdict"] == row["verdict"]
            [val_acc] = [m["value"] for m in group["metricValues"]
                         if m["name"]["tag"] == "hparams/val_acc"]
            assert val_acc == pytest.approx(row["val_acc"], rel=1e-6)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
