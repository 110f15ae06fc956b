"""The built-in datasets: digits in memory; MNIST, Fashion-MNIST and CIFAR-10 read by
torchvision from files these tests write themselves (never downloaded)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import lrlab
from lrlab.builtin.datasets import stratified_subset
from lrlab.data import stratified_split
from lrlab.plugins import load_plugins
from lrlab.registry import parse_spec


@pytest.fixture(scope="module")
def registry():
    return load_plugins(use_entry_points=False).registry


pytestmark = pytest.mark.usefixtures("no_downloads")  # tests/conftest.py


def build(registry, text, root):
    return registry.build("dataset", parse_spec(text), str(root))


def test_digits_shapes_classes_and_range(registry, tmp_path):
    data = build(registry, "digits", tmp_path)
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == torch.float32
    assert data.y.dtype == torch.int64 and data.y.shape == (1797,)
    assert data.classes == [str(i) for i in range(10)]
    assert sorted(data.y.unique().tolist()) == list(range(10))
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    assert data.test is None


# -- MNIST-format IDX files ------------------------------------------------------------


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """``{prefix}-images-idx3-ubyte`` (magic 2051) and ``-labels-idx1-ubyte`` (2049)."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x00000801, n) + labels.astype(np.uint8).tobytes())


def fake_mnist(root: Path, folder: str, n_train: int = 120, n_test: int = 30):
    rng = np.random.default_rng(0)
    train_y = np.arange(n_train) % 10
    test_y = np.arange(n_test) % 10
    train_x = rng.integers(0, 256, (n_train, 28, 28))
    test_x = rng.integers(0, 256, (n_test, 28, 28))
    train_x[:, 0, 0] = 255  # a known pixel
    write_idx(root / folder / "raw", "train", train_x, train_y)
    write_idx(root / folder / "raw", "t10k", test_x, test_y)
    return (train_x, train_y), (test_x, test_y)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_format_loads_with_its_own_test_split(registry, tmp_path, name, folder):
    (train_x, train_y), (test_x, test_y) = fake_mnist(tmp_path, folder)
    data = build(registry, name, tmp_path)
    assert data.x.shape == (120, 1, 28, 28) and data.x.dtype == torch.float32
    assert torch.equal(data.y, torch.as_tensor(train_y, dtype=torch.long))
    assert torch.allclose(data.x[:, 0], torch.as_tensor(train_x / 255.0, dtype=torch.float32))
    assert data.x[:, 0, 0, 0].eq(1.0).all()
    assert len(data.classes) == 10
    xt, yt = data.test
    assert xt.shape == (30, 1, 28, 28)
    assert torch.equal(yt, torch.as_tensor(test_y, dtype=torch.long))
    # the split keeps the dataset's own test split and takes train/val from the rest
    split = stratified_split(data, (0.6, 0.2, 0.2), 0)
    assert split.test[0] is xt
    assert split.sizes() == (90, 30, 30)


def test_mnist_subset_is_stratified_and_shrinks_the_test_split(registry, tmp_path):
    fake_mnist(tmp_path, "MNIST", n_train=600, n_test=100)
    data = build(registry, "mnist(subset=60)", tmp_path)
    assert len(data.y) == 60 and torch.bincount(data.y).tolist() == [6] * 10
    assert len(data.test[1]) == 10  # the same 6:1 ratio as 600:100


def test_stratified_subset_keeps_class_proportions():
    y = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    x = torch.arange(1000).float()
    xs, ys = stratified_subset(x, y, 101)
    counts = torch.bincount(ys).tolist()
    assert sum(counts) == 101
    for c, share in enumerate([0.5, 0.3, 0.2]):
        assert abs(counts[c] - 101 * share) <= 1
    assert torch.equal(y[xs.long()], ys)  # samples stay with their labels
    assert torch.equal(stratified_subset(x, y, 101, seed=0)[0], xs)  # same seed, same pick
    assert not torch.equal(stratified_subset(x, y, 101, seed=1)[0], xs)
    assert stratified_subset(x, y, 0)[0] is x


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST/raw"),
                                         ("fashion-mnist", "FashionMNIST/raw"),
                                         ("cifar10", "cifar-10-batches-py")])
def test_missing_files_say_where_and_mention_download(registry, tmp_path, name, folder):
    with pytest.raises(lrlab.UsageError) as info:
        build(registry, name, tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere" / folder) in message
    assert "--download" in message and "\n" not in message


def test_a_corrupt_idx_file_is_a_usage_error(registry, tmp_path):
    fake_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00" * 16)
    with pytest.raises(lrlab.UsageError, match="could not be read"):
        build(registry, "mnist", tmp_path)


def test_missing_mnist_through_a_sweep_is_a_usage_error(tmp_path):
    with pytest.raises(lrlab.UsageError, match="--download"):
        lrlab.run_sweep(out=tmp_path / "out", dataset="mnist", data_root=str(tmp_path),
                        epochs=1, lr=0.1, augment="none", report=False)
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_mnist_trains_end_to_end(tmp_path):
    fake_mnist(tmp_path, "MNIST", n_train=100, n_test=20)
    result = lrlab.run_sweep(out=tmp_path / "out", dataset="mnist", data_root=str(tmp_path),
                             epochs=1, lr=0.1, augment="none", model="linear", report=False)
    row = result.runs.iloc[0]
    assert row["error"] == "" and row["test_acc"] >= 0


# -- CIFAR-10 pickled batches ------------------------------------------------------------


def test_cifar10_format_loads(registry, tmp_path, monkeypatch):
    """Tiny batches in cifar-10-batches-py's format. torchvision checks each file's MD5
    against the real files', which no fake can match, so only that check is patched out;
    the reading, the layout (N, 3, 32, 32) and the labels go through torchvision."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = 10
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        labels = list(range(10))
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels}, fh)
        written.append((data, labels))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
             "ship", "truck"]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": names}, fh)
    data = build(registry, "cifar10", tmp_path)
    assert data.x.shape == (50, 3, 32, 32) and data.classes == names
    first = torch.as_tensor(written[0][0][0].reshape(3, 32, 32) / 255.0, dtype=torch.float32)
    assert torch.allclose(data.x[0], first)  # channels first, as stored
    assert data.test[0].shape == (10, 3, 32, 32)
    assert data.y.tolist() == list(range(10)) * 5


def test_the_dataset_module_imports_neither_torch_nor_numpy_until_a_dataset_is_built():
    import subprocess
    import sys

    code = ("import sys, lrlab.builtin.datasets; "
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]  # what `lrlab list` registers stays light


def test_a_splits_parts_are_contiguous_whatever_the_datas_layout():
    # images stacked channels-last keep their strides through indexing; a part that is not
    # contiguous makes every batch's gather copy the whole part
    x = torch.rand(40, 8, 8, 3).permute(0, 3, 1, 2)
    data = lrlab.Data(x, torch.arange(40) % 2, ["a", "b"], test=(x[:10], torch.arange(10) % 2))
    split = stratified_split(data, (0.6, 0.2, 0.2), 0)
    for part in (split.train, split.val, split.test):
        assert part[0].is_contiguous()
    assert torch.equal(split.test[0], x[:10])
