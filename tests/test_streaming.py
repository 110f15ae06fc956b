"""Data too big for memory streams: a :class:`lrlab.data.StreamingData` is split by index
exactly as the in-memory data of the same labels, and the local executor reads its batches
through DataLoader workers in the same order, so a streamed sweep's numbers are the
in-memory sweep's (checkpoints, restored epochs and saved weights included). The
vectorized executor cannot stream and says so; ``auto`` trains such runs locally. Every
file here is written by the tests themselves."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch
from test_checkpoints import Interrupt
from test_datasets import write_idx
from test_own_data import write_pets, write_png
from typer.testing import CliRunner

import lrlab
import lrlab.data
from lrlab.cli import app
from lrlab.data import Data, Feeder, StreamingData, as_data, stratified_split
from lrlab.lrfind import lr_find
from lrlab.plugins import load_plugins
from lrlab.registry import parse_spec

pytestmark = pytest.mark.usefixtures("no_downloads")  # tests/conftest.py

# a grid whose numbers depend on the batch order, the global random stream (noise
# augmentation, dropout) and a restored epoch
GRID = dict(model="mlp(width=16,dropout=0.2)", lr=[0.03, 0.3], epochs=6, augment="noise",
            batch_size=4,
            stopper="patience(patience=9,restore_best=True)", executor="local", workers=1,
            report=False, save="all")


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return write_pets(tmp_path_factory.mktemp("pets") / "pets", per_class=12)


@pytest.fixture(scope="module")
def registry():
    return load_plugins(use_entry_points=False).registry


def folder(pets, stream: str, size: int = 8, cache: str = "true") -> str:
    return f"imagefolder(path={pets}, size={size}, stream={stream}, cache={cache})"


def build(registry, text, root="data"):
    return registry.build("dataset", parse_spec(text), str(root))


def numbers(result):
    history = result.history.drop(columns="wall_s").sort_values(["run_id", "epoch"])
    runs = result.runs.set_index("run_id").sort_index()
    return history.reset_index(drop=True), runs[["best_epoch", "test_loss", "test_acc",
                                                 "verdict"]]


def read_all(part, batch_size=5):
    feeder = Feeder(torch.device("cpu"), workers=1)
    try:
        xs, ys = zip(*feeder.in_order(part, batch_size), strict=True)
    finally:
        feeder.close()
    return torch.cat(xs), torch.cat(ys)


# -- the split ----------------------------------------------------------------------------


@pytest.mark.parametrize("cache", ["true", "false"])  # from the .npy cache, the files
def test_a_streamed_split_holds_the_in_memory_splits_samples_in_the_same_order(registry,
                                                                                 pets, cache):
    held = build(registry, folder(pets, "false"))
    streamed = build(registry, folder(pets, "true", cache=cache))
    assert isinstance(held, Data) and isinstance(streamed, StreamingData)
    assert streamed.input_shape == held.input_shape and streamed.classes == held.classes
    for seed in (0, 3):
        a = stratified_split(held, (0.6, 0.2, 0.2), seed)
        b = stratified_split(streamed, (0.6, 0.2, 0.2), seed)
        assert b.streaming and not a.streaming and b.sizes() == a.sizes()
        for mine, theirs in zip((b.train, b.val, b.test), (a.train, a.val, a.test),
                                strict=True):
            x, y = read_all(mine)
            assert torch.equal(x, theirs[0]) and torch.equal(y, theirs[1])


def test_a_streamed_imagefolder_decodes_once_into_a_memory_mapped_cache(registry, tmp_path,
                                                                        monkeypatch):
    import lrlab.builtin.datasets as datasets

    pets = write_pets(tmp_path / "pets", per_class=4)
    first = build(registry, folder(pets, "true"))
    caches = list(pets.glob(".lrlab-cache-*.npy"))
    assert len(caches) == 1 and np.load(caches[0]).shape == (12, 3, 8, 8)
    assert not list(pets.glob("*.tmp")) and not list(pets.glob(".*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(datasets, "_decode", no_decoding)
        again = build(registry, folder(pets, "true"))
        assert torch.equal(read_all(stratified_split(again, (0.6, 0.2, 0.2), 0).train)[0],
                           read_all(stratified_split(first, (0.6, 0.2, 0.2), 0).train)[0])
    write_png(pets / "cat" / "new.png", 250, seed=99)  # a file added: rebuilt, stale removed
    build(registry, folder(pets, "true"))
    now = list(pets.glob(".lrlab-cache-*.npy"))
    assert len(now) == 1 and now != caches and np.load(now[0]).shape == (13, 3, 8, 8)
    unmapped = tmp_path / "plain"
    write_pets(unmapped, per_class=4)
    build(registry, folder(unmapped, "true", cache="false"))
    assert not list(unmapped.glob(".lrlab-cache-*"))  # cache=false keeps nothing


def test_imagefolder_streams_when_its_images_would_not_fit_in_memory(registry, pets,
                                                                     monkeypatch):
    images = 36 * 3 * 8 * 8 * 4  # float32 bytes
    monkeypatch.setattr(lrlab.data, "available_memory", lambda: images * 3 - 1)
    assert isinstance(build(registry, f"imagefolder(path={pets}, size=8)"), StreamingData)
    assert isinstance(build(registry, folder(pets, "false")), Data)  # asked: held anyway
    monkeypatch.setattr(lrlab.data, "available_memory", lambda: images * 3)
    assert isinstance(build(registry, f"imagefolder(path={pets}, size=8)"), Data)
    monkeypatch.setattr(lrlab.data, "available_memory", lambda: None)  # unknown: held
    assert isinstance(build(registry, f"imagefolder(path={pets}, size=8)"), Data)
    monkeypatch.undo()
    assert lrlab.data.available_memory() > 0  # the real one: /proc/meminfo here


def test_torchvision_streams_its_train_and_own_test_split_by_name(registry, tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "KMNIST" / "raw", "train", rng.integers(0, 256, (60, 28, 28)),
              np.arange(60) % 10)
    write_idx(tmp_path / "KMNIST" / "raw", "t10k", rng.integers(0, 256, (20, 28, 28)),
              np.arange(20) % 10)
    for subset in (0, 30):
        held = build(registry, f"torchvision(name=KMNIST, subset={subset})", tmp_path)
        streamed = build(registry, f"torchvision(name=KMNIST, subset={subset}, stream=true)",
                         tmp_path)
        assert isinstance(streamed, StreamingData) and streamed.input_shape == (1, 28, 28)
        assert torch.equal(streamed.targets, held.y)
        assert torch.equal(read_all(stratified_split(streamed, (0.6, 0.2, 0.2), 0).test)[0],
                           held.test[0])  # its own test split, streamed
        a, b = (stratified_split(d, (0.6, 0.2, 0.2), 1) for d in (held, streamed))
        assert torch.equal(read_all(b.train)[0], a.train[0])


class Squares(torch.utils.data.Dataset):
    """A torch Dataset of uint8 images with text labels: no ``targets`` to read."""

    def __init__(self, n=60):
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(n) % 3
        self.x = (torch.rand(n, 1, 6, 6, generator=g) * 80 + 80 * self.y[:, None, None, None]
                  ).to(torch.uint8)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], ["low", "mid", "high"][int(self.y[i])]


def test_an_api_torch_dataset_streams_when_it_would_not_fit(monkeypatch, tmp_path):
    name, held = as_data(Squares())
    monkeypatch.setattr(lrlab.data, "available_memory", lambda: 1000)
    streamed_name, streamed = as_data(Squares())
    assert isinstance(held, Data) and isinstance(streamed, StreamingData)
    assert streamed.classes == held.classes == ["high", "low", "mid"]
    assert torch.equal(streamed.targets, held.y) and streamed_name.startswith("Squares-60x1x6x6-")
    x, y = read_all(stratified_split(streamed, (0.6, 0.2, 0.2), 0).val)
    part = stratified_split(held, (0.6, 0.2, 0.2), 0).val
    assert torch.equal(x, part[0]) and torch.equal(y, part[1])
    result = lrlab.run_sweep(dataset=Squares(), out=tmp_path / "r", model="mlp(width=8)",
                             epochs=2, lr=0.1, report=False, workers=1)
    assert (result.runs["error"] == "").all(), result.runs["error"].tolist()


# -- training -----------------------------------------------------------------------------


def test_a_streamed_sweep_gives_the_in_memory_numbers_and_weights(pets, tmp_path):
    held = lrlab.run_sweep(dataset=folder(pets, "false"), out=tmp_path / "held", **GRID)
    streamed = lrlab.run_sweep(dataset=folder(pets, "true"), out=tmp_path / "streamed",
                               **GRID)
    assert (streamed.runs["error"] == "").all(), streamed.runs["error"].tolist()
    h_history, h_runs = numbers(held)
    s_history, s_runs = numbers(streamed)
    assert s_history.equals(h_history) and s_runs.equals(h_runs)
    assert streamed.runs.restored_epoch.notna().all()  # the restore path was taken
    assert streamed.runs.val_acc.max() > 0.6  # it learns: chance is 1/3
    for run_id in streamed.runs.run_id:
        a = lrlab.load_model(held.folder, run_id).state_dict()
        b = lrlab.load_model(streamed.folder, run_id).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not multiprocessing.active_children()  # the workers ended with their runs


def test_a_killed_streamed_sweep_resumes_with_the_uninterrupted_numbers(pets, tmp_path):
    grid = {**GRID, "lr": [0.3], "epochs": 5, "checkpoint_s": 0, "save": "none",
            "dataset": folder(pets, "true")}
    never = lrlab.run_sweep(out=tmp_path / "never", **grid)
    victim = never.runs.run_id.iloc[0]
    with pytest.raises(KeyboardInterrupt):
        lrlab.run_sweep(out=tmp_path / "cut", plugins=[Interrupt(victim, 3)], **grid)
    resumed = lrlab.run_sweep(out=tmp_path / "cut", **grid)
    assert any("1 run(s) continued" in n for n in resumed.notes), resumed.notes
    assert numbers(resumed)[0].equals(numbers(never)[0])


def test_the_range_test_reads_a_streamed_dataset_as_it_reads_one_in_memory(pets):
    host = load_plugins(use_entry_points=False)
    curves = [lr_find("mlp(width=16)", folder(pets, stream), host=host, steps=12,
                      batch_size=8, device="cpu").curve for stream in ("false", "true")]
    assert len(curves[0]) > 3 and curves[1].equals(curves[0])


# -- executors that cannot stream ---------------------------------------------------------


def test_vectorized_refuses_a_streamed_dataset_in_one_line_and_writes_nothing(pets,
                                                                              tmp_path):
    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["sweep", "--dataset", folder(pets, "true"),
                                      "--executor", "vectorized", "--lr", "0.1,0.2",
                                      "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "streamed" in lines[0] and "vectorized" in lines[0], lines
    assert not out.exists()


def test_auto_trains_a_streamed_dataset_one_run_at_a_time_and_says_why(pets, tmp_path):
    result = lrlab.run_sweep(dataset=folder(pets, "true"), out=tmp_path / "r",
                             executor="auto", lr=[0.1, 0.2], epochs=1, model="mlp(width=8)", augment="none",
                             report=False, workers=1)
    assert (result.runs["error"] == "").all() and len(result.runs) == 2
    assert any("one at a time" in n and "streamed" in n for n in result.notes), result.notes
