"""The training engine: reproducible runs, the stratified split, clean per-epoch
evaluation, a test split touched once, divergence, the device."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import lrlab
import lrlab.engine as engine
from lrlab.builtin.datasets import digits
from lrlab.data import Data, stratified_split

TINY = {"epochs": 3, "augment": "none", "report": False}


def history(result) -> pd.DataFrame:
    return result.history.drop(columns=["wall_s"]).sort_values(["run_id", "epoch"]) \
        .reset_index(drop=True)


def test_same_seed_same_config_gives_the_same_history_bit_for_bit(out, tmp_path):
    # dropout and augmentation too: every random source is seeded by the run
    config = dict(lr=[0.05, 0.5], model="mlp(dropout=0.2)", augment="flip+noise",
                  epochs=3, report=False, device="cpu")
    a = lrlab.run_sweep(out=out, **config)
    b = lrlab.run_sweep(out=tmp_path / "again", **config)
    pd.testing.assert_frame_equal(history(a), history(b), check_exact=True)
    cols = ["test_loss", "test_acc", "best_epoch"]
    pd.testing.assert_frame_equal(a.runs[cols], b.runs[cols], check_exact=True)


def test_different_seeds_give_different_runs(out):
    result = lrlab.run_sweep(out=out, lr=0.1, seeds=2, **TINY)
    h = result.history.set_index(["run_id", "epoch"])
    first, second = (h.loc[rid] for rid in result.runs.sort_values("seed")["run_id"])
    assert first.loc[0, "train_loss"] != second.loc[0, "train_loss"]  # initialization
    assert first.loc[3, "val_loss"] != second.loc[3, "val_loss"]


def test_history_has_epoch_zero_and_every_epoch(out):
    result = lrlab.run_sweep(out=out, lr=0.1, **TINY)
    assert result.history["epoch"].tolist() == [0, 1, 2, 3]
    first = result.history.iloc[0]
    assert 0.0 <= first["train_acc"] <= 0.3  # untrained: about chance on 10 classes


# -- the split ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    return digits("")


def _ids(split, data):
    """Which rows of ``data.x`` each part holds (digits rows are unique)."""
    rows = {tuple(r.flatten().tolist()): i for i, r in enumerate(data.x)}
    return [sorted(rows[tuple(r.flatten().tolist())] for r in part[0])
            for part in (split.train, split.val, split.test)]


@pytest.mark.parametrize("fractions", [(0.6, 0.2, 0.2), (0.5, 0.25, 0.25), (0.8, 0.1, 0.1)])
def test_split_keeps_class_proportions(data, fractions):
    split = stratified_split(data, fractions, seed=0)
    counts = torch.bincount(data.y)
    for part, frac in zip((split.train, split.val, split.test), fractions, strict=True):
        part_counts = torch.bincount(part[1], minlength=10)
        for c in range(10):
            assert abs(part_counts[c].item() - frac * counts[c].item()) <= 1, (c, frac)
    assert sum(split.sizes()) == len(data.y)


def test_split_is_deterministic_disjoint_and_complete(data):
    a = _ids(stratified_split(data, (0.6, 0.2, 0.2), seed=0), data)
    b = _ids(stratified_split(data, (0.6, 0.2, 0.2), seed=0), data)
    c = _ids(stratified_split(data, (0.6, 0.2, 0.2), seed=1), data)
    assert a == b and a != c
    assert sorted(a[0] + a[1] + a[2]) == list(range(len(data.y)))


def test_split_fractions_come_from_the_config(out):
    result = lrlab.run_sweep(out=out, lr=0.1, split="0.5,0.3,0.2", epochs=1,
                             augment="none", report=False)
    import json

    manifest = json.loads((result.folder / "manifest.json").read_text())
    sizes = manifest["split_sizes"]["digits"]
    assert abs(sizes["train"] - 0.5 * 1797) <= 10 and abs(sizes["val"] - 0.3 * 1797) <= 10


def test_bad_fractions_are_usage_errors(data):
    with pytest.raises(lrlab.UsageError):
        stratified_split(data, (0.6, 0.3, 0.3), 0)
    tiny = Data(torch.zeros(4, 1, 2, 2), torch.tensor([0, 0, 1, 1]), ["a", "b"])
    with pytest.raises(lrlab.UsageError, match="empty"):
        stratified_split(tiny, (0.6, 0.2, 0.2), 0)


# -- evaluation, the test split, divergence --------------------------------------------


def test_the_test_split_is_evaluated_once_at_the_end(out, monkeypatch):
    calls = []
    real = engine.evaluate

    def counting(model, loss_fn, x, y, batch_size):
        calls.append(len(y))
        return real(model, loss_fn, x, y, batch_size)

    monkeypatch.setattr(engine, "evaluate", counting)
    split = (0.6, 0.25, 0.15)  # three different sizes tell the parts apart
    result = lrlab.run_sweep(out=out, lr=0.1, epochs=4, augment="noise", report=False,
                             split=list(split))
    n_train, n_val, n_test = stratified_split(digits(""), split, 0).sizes()
    assert len({n_train, n_val, n_test}) == 3
    assert calls == [n_train, n_val] * 5 + [n_test]  # epochs 0..4, then the test once
    row = result.runs.iloc[0]
    assert row["test_acc"] > 0.5


def test_a_diverged_run_stops_at_once_and_the_sweep_goes_on(out):
    result = lrlab.run_sweep(out=out, lr=[1000.0, 0.1], epochs=5, augment="none",
                             report=False)
    runs = result.runs.set_index("lr")
    assert runs.loc[1000.0, "verdict"] == "diverged"
    assert runs.loc[1000.0, "stopped_by"] == "diverged"
    assert runs.loc[1000.0, "epochs_run"] == 1
    assert runs.loc[0.1, "epochs_run"] == 5 and runs.loc[0.1, "verdict"] != "error"


def test_batches_come_from_tensors_not_a_dataloader(out, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("a DataLoader was built for in-memory data")

    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", refuse)
    result = lrlab.run_sweep(out=out, lr=0.1, epochs=1, augment="crop", report=False)
    assert result.runs.iloc[0]["error"] == ""


# -- the device --------------------------------------------------------------------------


def test_device_auto_takes_cuda_only_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert engine.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(lrlab.UsageError, match="CUDA"):
        engine.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert engine.resolve_device("auto") == torch.device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_auto_is_cpu_here(out):
    result = lrlab.run_sweep(out=out, lr=0.1, epochs=1, augment="none", report=False)
    assert result.runs.iloc[0]["device"] == "cpu"


def test_small_cpu_runs_use_one_thread_and_restore_the_setting(monkeypatch):
    import lrlab.threads
    from lrlab.engine import cpu_threads

    monkeypatch.setattr(lrlab.threads, "cores_for_training", lambda: 2)  # an idle machine

    before = torch.get_num_threads()
    small = torch.nn.Linear(64, 10)
    big = torch.nn.Linear(4096, 4096)
    seen = {}
    with cpu_threads(small, 32, torch.device("cpu"), 0):
        seen["small"] = torch.get_num_threads()
    torch.set_num_threads(2)
    with cpu_threads(big, 128, torch.device("cpu"), 0):
        seen["big"] = torch.get_num_threads()
    with cpu_threads(small, 32, torch.device("cpu"), 3):
        seen["asked"] = torch.get_num_threads()
    assert torch.get_num_threads() == 2
    torch.set_num_threads(before)
    assert seen == {"small": 1, "big": 2, "asked": 3}
