"""The user's own data and model without plugin code: the built-in datasets imagefolder,
csv, npz, tensors and torchvision (by class name), models named by an import path
(``module:Name``, ``file.py:Name``), and objects given to the Python API. Every file here
is written by the tests themselves; nothing is downloaded."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_datasets import write_idx  # the MNIST-format files torchvision reads
from torch import nn
from typer.testing import CliRunner

import lrlab
from lrlab.cli import app
from lrlab.data import stratified_split
from lrlab.plugins import load_plugins
from lrlab.registry import parse_spec

TINY = dict(epochs=1, lr=0.1, augment="none", report=False)


pytestmark = pytest.mark.usefixtures("no_downloads")  # tests/conftest.py


@pytest.fixture
def registry():
    return load_plugins(use_entry_points=False).registry


def build(registry, text, root="data"):
    return registry.build("dataset", parse_spec(text), str(root))


# -- the files the tests read ---------------------------------------------------------


def write_png(path: Path, value: int, size=(10, 14), seed=0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(value + rng.integers(-20, 20, (*size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_pets(folder: Path, classes=("cat", "dog", "fox"), per_class=8) -> Path:
    """An ImageFolder: a folder per class of small PNGs, each class its own brightness."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_png(folder / name / f"{i}.png", 40 + 80 * c, seed=10 * c + i)
    return folder


def write_csv(path: Path, n=60, text_column=False) -> Path:
    """Two numeric features (the first tells the class) and the class column ``label``
    with the values 1, 2 and 10."""
    rng = np.random.default_rng(1)
    label = np.array([1, 2, 10])[np.arange(n) % 3]
    table = pd.DataFrame({"a": label * 3.0 + rng.normal(0, 0.5, n),
                          "b": rng.normal(100, 20, n), "label": label})
    if text_column:
        table["colour"] = rng.choice(["red", "green"], n)
    table.to_csv(path, index=False)
    return path


MODELS = '''
import math

from torch import nn


class TinyNet(nn.Module):
    """Flatten, one hidden layer, the logits."""

    def __init__(self, input_shape, num_classes, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width),
                                 nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)


class Plain(nn.Module):
    """No contract arguments: two features in, three classes out."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.width = width
        self.net = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 3))

    def forward(self, x):
        return self.net(x)


def make(input_shape, num_classes, *, hidden: int = 4):
    """A factory."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden),
                         nn.Linear(hidden, num_classes))


def broken(input_shape, num_classes):
    return 42


class NotAModule:
    def __init__(self, width: int = 3):
        self.width = width
'''


def write_models(path: Path) -> Path:
    path.write_text(MODELS, encoding="utf-8")
    return path


class ApiNet(nn.Module):
    """A model class given to the Python API."""

    def __init__(self, input_shape, num_classes, width: int = 8):
        super().__init__()
        self.width = width
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width),
                                 nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x):
        return self.net(x)


def blobs(n=90, features=4, classes=3):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    return torch.randn(n, features, generator=g) + y[:, None].float(), y


def ok_runs(result, n):
    runs = result.runs
    assert len(runs) == n and (runs["error"] == "").all(), runs["error"].tolist()
    return runs


# -- imagefolder -----------------------------------------------------------------------


def test_imagefolder_shapes_classes_range_and_relative_path(registry, tmp_path, monkeypatch):
    write_pets(tmp_path / "pets")
    monkeypatch.chdir(tmp_path)
    data = build(registry, "imagefolder(path=pets, size=8)")  # relative to the current folder
    assert data.x.shape == (24, 3, 8, 8) and data.x.dtype == torch.float32
    assert data.classes == ["cat", "dog", "fox"]
    assert torch.bincount(data.y).tolist() == [8, 8, 8]
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0
    means = [data.x[data.y == c].mean().item() for c in range(3)]
    assert means == sorted(means)  # each class its brightness: the labels follow the folders
    gray = build(registry, "imagefolder(path=pets, size=6, grayscale=true)")
    assert gray.x.shape == (24, 1, 6, 6)


def test_imagefolder_cache_is_reused_and_rebuilt_when_a_file_changes(registry, tmp_path,
                                                                     monkeypatch):
    import lrlab.builtin.datasets as datasets

    pets = write_pets(tmp_path / "pets")
    first = build(registry, f"imagefolder(path={pets}, size=8)")
    caches = list(pets.glob(".lrlab-cache-*.pt"))
    assert len(caches) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(datasets, "_decode", no_decoding)
        again = build(registry, f"imagefolder(path={pets}, size=8)")
    assert torch.equal(again.x, first.x) and torch.equal(again.y, first.y)

    changed = pets / "cat" / "0.png"
    write_png(changed, 250, seed=99)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    rebuilt = build(registry, f"imagefolder(path={pets}, size=8)")
    now = list(pets.glob(".lrlab-cache-*.pt"))
    assert len(now) == 1 and now != caches  # a new cache, the stale one removed
    index = 0  # cat/0.png is the first file of the first class
    assert rebuilt.x[index].mean() > first.x[index].mean() + 0.3
    assert torch.equal(rebuilt.x[1:], first.x[1:])


def test_a_sweep_on_an_imagefolder(tmp_path):
    pets = write_pets(tmp_path / "pets")
    result = lrlab.run_sweep(dataset=f"imagefolder(path={pets}, size=8)",
                             model="mlp(width=16)", out=tmp_path / "r", **TINY)
    runs = ok_runs(result, 1)
    assert runs.iloc[0]["run_id"] == "mlp(width=16)-lr0.1-ep1-none-s0"
    assert result.folder == tmp_path / "r" / "imagefolder"


# -- csv --------------------------------------------------------------------------------


def test_csv_classes_features_and_standardization_with_training_statistics(registry,
                                                                           tmp_path):
    path = write_csv(tmp_path / "t.csv")
    data = build(registry, f"csv(path={path}, target=label)")
    assert data.x.shape == (60, 2) and data.x.dtype == torch.float32
    assert data.classes == ["1", "2", "10"]  # sorted as numbers, named as text
    assert data.standardize
    raw = pd.read_csv(path)
    assert torch.allclose(data.x, torch.tensor(raw[["a", "b"]].to_numpy(), dtype=torch.float32))

    split = stratified_split(data, (0.6, 0.2, 0.2), 0)
    plain = stratified_split(dataclasses.replace(data, standardize=False), (0.6, 0.2, 0.2), 0)
    train = plain.train[0].double()
    mean = train.mean(0)
    std = ((train - mean) ** 2).mean(0).sqrt()  # by hand: the training rows alone
    for got, before in ((split.train, plain.train), (split.val, plain.val),
                        (split.test, plain.test)):
        assert torch.equal(got[1], before[1])
        assert torch.allclose(got[0].double(), (before[0].double() - mean) / std, atol=1e-5)
    everything = data.x.double()
    assert not torch.allclose(everything.mean(0), mean, atol=1e-3)  # not the whole table's
    assert torch.allclose(split.train[0].double().mean(0), torch.zeros(2, dtype=torch.float64),
                          atol=1e-5)

    one = build(registry, f"csv(path={path}, target=label, features=a)")
    assert one.x.shape == (60, 1)
    both = build(registry, f"csv(path={path}, target=label, features='b,a', "
                           f"standardize=false)")
    assert torch.allclose(both.x[:, 0], torch.tensor(raw["b"].to_numpy(), dtype=torch.float32))
    assert not both.standardize


def test_a_sweep_on_a_csv_with_a_model_class_from_a_file(tmp_path, monkeypatch):
    write_csv(tmp_path / "t.csv")
    write_models(tmp_path / "models.py")
    monkeypatch.chdir(tmp_path)
    result = lrlab.run_sweep(dataset="csv(path=t.csv, target=label)",
                             model=["models.py:Plain(width=4)", "models.py:make(hidden=3)"],
                             out=tmp_path / "r", **TINY)
    runs = ok_runs(result, 2)
    assert set(runs["model"]) == {"models.py:Plain(width=4)", "models.py:make(hidden=3)"}
    assert "models.py:Plain(width=4)-lr0.1-ep1-none-s0" in set(runs["run_id"])
    manifest = lrlab.load_results(result.folder)[2]
    assert any(p["name"] == "import path" for p in manifest["plugins"])


# -- npz, tensors, and a model from a module --------------------------------------------


def test_npz_and_tensors_files(registry, tmp_path):
    x, y = blobs()
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy(), classes=np.array(["a", "b", "c"]))
    data = build(registry, f"npz(path={tmp_path / 'd.npz'})")
    assert torch.equal(data.x, x) and torch.equal(data.y, y) and data.classes == ["a", "b", "c"]

    images = (np.arange(2 * 3 * 4 * 4) % 256).astype(np.uint8).reshape(2, 3, 4, 4)
    np.savez(tmp_path / "img.npz", x=images, y=np.array(["dog", "cat"]),
             x_test=images, y_test=np.array(["cat", "cat"]))
    img = build(registry, f"npz(path={tmp_path / 'img.npz'})")
    assert img.x.shape == (2, 3, 4, 4) and img.x.max() <= 1.0  # uint8 read as pixels
    assert img.classes == ["cat", "dog"] and img.y.tolist() == [1, 0]
    assert img.test[1].tolist() == [0, 0]

    torch.save((x, y), tmp_path / "pair.pt")
    torch.save({"x": x[:, :2], "y": y + 5}, tmp_path / "dict.pt")
    pair = build(registry, f"tensors(path={tmp_path / 'pair.pt'})")
    assert torch.equal(pair.x, x) and pair.classes == ["0", "1", "2"]
    table = build(registry, f"tensors(path={tmp_path / 'dict.pt'})")
    assert table.x.shape == (90, 2) and table.classes == ["5", "6", "7"]
    assert torch.equal(table.y, y)


def test_npz_and_tensors_as_an_axis_with_a_model_from_a_module(tmp_path, monkeypatch):
    x, y = blobs()
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    torch.save((x, y), tmp_path / "t.pt")
    module = f"own_models_{abs(hash(str(tmp_path))) % 10**8}"
    write_models(tmp_path / f"{module}.py")
    monkeypatch.chdir(tmp_path)  # an importable module: the current folder is searched
    result = lrlab.run_sweep(dataset=["npz(path=d.npz)", "tensors(path=t.pt)"],
                             model=f"{module}:TinyNet(width=8)", out=tmp_path / "r",
                             name="both", **TINY)
    runs = ok_runs(result, 2)
    assert sorted(runs["run_id"]) == [
        f"npz(path=d.npz)-{module}:TinyNet(width=8)-lr0.1-ep1-none-s0",
        f"tensors(path=t.pt)-{module}:TinyNet(width=8)-lr0.1-ep1-none-s0"]
    assert all("sha256:" in code for code in runs["code"])  # the module's file, hashed


def test_an_edited_model_file_retrains_its_runs(tmp_path, monkeypatch):
    x, y = blobs()
    torch.save((x, y), tmp_path / "t.pt")
    path = write_models(tmp_path / "nets.py")
    monkeypatch.chdir(tmp_path)
    args = dict(dataset="tensors(path=t.pt)", model="nets.py:TinyNet(width=4)",
                out=tmp_path / "r", **TINY)
    assert len(lrlab.run_sweep(**args).ran) == 1
    assert len(lrlab.run_sweep(**args).skipped) == 1  # unchanged: resumed
    path.write_text(MODELS + "\n# edited\n", encoding="utf-8")
    again = lrlab.run_sweep(**args)
    assert len(again.ran) == 1 and not again.skipped


# -- the call rule and the parameters of a model of one's own ----------------------------


def test_a_model_is_given_input_shape_and_num_classes_only_when_it_names_them(registry,
                                                                               tmp_path,
                                                                               monkeypatch):
    write_models(tmp_path / "models.py")
    monkeypatch.chdir(tmp_path)
    plain = registry.build("model", parse_spec("models.py:Plain(width=5)"), (2,), 3)
    assert plain.width == 5  # built as Plain(width=5)
    tiny = registry.build("model", parse_spec("models.py:TinyNet"), (1, 4, 4), 7)
    assert tiny(torch.zeros(2, 1, 4, 4)).shape == (2, 7)
    made = registry.build("model", parse_spec("models.py:make(hidden=2)"), (3,), 4)
    assert made(torch.zeros(1, 3)).shape == (1, 4)
    comp = registry.get("model", "models.py:TinyNet")
    assert comp.plugin == "import path" and list(comp.params) == ["width"]
    assert comp.doc == "Flatten, one hidden layer, the logits."
    with pytest.raises(lrlab.UsageError, match="has no parameter 'widht'; did you mean 'width'"):
        registry.check("model", parse_spec("models.py:TinyNet(widht=3)"))
    with pytest.raises(lrlab.UsageError, match="parameter 'width' must be int"):
        registry.check("model", parse_spec("models.py:TinyNet(width=wide)"))
    with pytest.raises(lrlab.UsageError, match="'num_classes' is not a parameter"):
        registry.check("model", parse_spec("models.py:TinyNet(num_classes=3)"))
    with pytest.raises(lrlab.PluginError, match="returned int, not a torch.nn.Module"):
        registry.build("model", parse_spec("models.py:broken"), (3,), 4)


# -- objects given to the Python API -----------------------------------------------------


def test_the_api_takes_a_model_class_and_a_tensor_pair(tmp_path):
    x, y = blobs()
    result = lrlab.run_sweep(model=ApiNet, dataset=(x, y), out=tmp_path / "r", **TINY)
    runs = ok_runs(result, 1)
    assert runs.iloc[0]["run_id"] == "ApiNet-lr0.1-ep1-none-s0"
    name = runs.iloc[0]["dataset"]
    assert name.startswith("tensors-90x4-") and result.folder.name == name
    assert "sha256:" in runs.iloc[0]["code"]  # this file's code


def test_the_api_takes_several_objects_as_an_axis(tmp_path):
    from torch.utils.data import TensorDataset

    x, y = blobs()
    result = lrlab.run_sweep(model=[functools.partial(ApiNet, width=4), "linear"],
                             dataset=[(x, y), TensorDataset(x[:60], y[:60])],
                             out=tmp_path / "r", name="api", **TINY)
    runs = ok_runs(result, 4)
    assert set(runs["model"]) == {"ApiNet(width=4)", "linear"}
    datasets = sorted(set(runs["dataset"]))
    assert datasets[0].startswith("TensorDataset-60x4-") and datasets[1].startswith("tensors-90x4-")
    # the name holds a digest of the contents: the same data, the same name (and resume
    # key); other data of the same shape, another
    assert parse_spec((x, y), "dataset").name == parse_spec((x.clone(), y), "dataset").name
    assert parse_spec((x + 1, y), "dataset").name != parse_spec((x, y), "dataset").name


def test_api_objects_that_are_not_models_or_clash_with_a_name(tmp_path):
    x, y = blobs()

    class Thing:
        pass

    with pytest.raises(lrlab.UsageError, match="is a class but not a torch.nn.Module"):
        lrlab.run_sweep(model=Thing, dataset=(x, y), out=tmp_path / "r", **TINY)
    with pytest.raises(lrlab.UsageError, match="torch.nn.Module instance"):
        lrlab.run_sweep(model=ApiNet((4,), 3), dataset=(x, y), out=tmp_path / "r", **TINY)

    def mlp(input_shape, num_classes):
        return nn.Linear(4, 3)

    with pytest.raises(lrlab.UsageError, match="has the name of the model 'mlp' of plugin "
                                               "'builtin.models'"):
        lrlab.run_sweep(model=mlp, dataset=(x, y), out=tmp_path / "r", **TINY)
    assert not (tmp_path / "r").exists()


# -- torchvision, by class name -----------------------------------------------------------


def test_torchvision_reads_a_class_by_name_from_the_data_root(registry, tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "KMNIST" / "raw", "train", rng.integers(0, 256, (50, 28, 28)),
              np.arange(50) % 10)
    write_idx(tmp_path / "KMNIST" / "raw", "t10k", rng.integers(0, 256, (20, 28, 28)),
              np.arange(20) % 10)
    data = build(registry, "torchvision(name=kmnist)", tmp_path)  # any case
    assert data.x.shape == (50, 1, 28, 28) and data.x.max() <= 1.0
    assert len(data.classes) == 10 and data.test[0].shape == (20, 1, 28, 28)
    assert torch.equal(data.test[1], torch.arange(20) % 10)
    small = build(registry, "torchvision(name=KMNIST, subset=20)", tmp_path)
    assert len(small.y) == 20 and len(small.test[1]) == 10
    with pytest.raises(lrlab.UsageError, match="no dataset 'KMNISTT'; did you mean 'KMNIST'"):
        build(registry, "torchvision(name=KMNISTT)", tmp_path)
    with pytest.raises(lrlab.UsageError) as info:
        build(registry, "torchvision(name=SVHN)", tmp_path / "nowhere")
    assert "--download" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(lrlab.UsageError, match="needs parameter 'name'"):
        build(registry, "torchvision", tmp_path)


# -- bad input on the command line: one line, exit 2, nothing written ---------------------


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    write_pets(tmp / "one", classes=("cat",), per_class=2)
    write_pets(tmp / "bad", per_class=2)
    (tmp / "bad" / "dog" / "9.png").write_bytes(b"not a png at all")
    write_csv(tmp / "t.csv")
    write_csv(tmp / "text.csv", text_column=True)
    write_models(tmp / "models.py")
    csv = "csv(path=t.csv, target=label)"
    return {
        "missing folder": (["--dataset", "imagefolder(path=nowhere)"], "no folder nowhere"),
        "one class": (["--dataset", "imagefolder(path=one)"],
                      "needs at least two class folders"),
        "unreadable image": (["--dataset", "imagefolder(path=bad)"],
                             "cannot read image dog/9.png"),
        "missing target": (["--dataset", "csv(path=t.csv, target=lable)"],
                           "no target column 'lable'; did you mean 'label'?"),
        "text feature": (["--dataset", "csv(path=text.csv, target=label)"],
                         "feature column 'colour' is not numeric"),
        "no module": (["--dataset", csv, "--model", "nowhere_at_all:Net"],
                      "no module named 'nowhere_at_all'"),
        "no file": (["--dataset", csv, "--model", "nets/none.py:Net"], "no file nets/none.py"),
        "no such name": (["--dataset", csv, "--model", "models.py:Tinynet"],
                         "models.py has no 'Tinynet'; did you mean 'TinyNet'?"),
        "not a module": (["--dataset", csv, "--model", "models.py:NotAModule"],
                         "NotAModule is a class but not a torch.nn.Module subclass"),
        "not a model": (["--dataset", csv, "--model", "models.py:broken"],
                        "returned int, not a torch.nn.Module"),
    }


CASES = ["missing folder", "one class", "unreadable image", "missing target", "text feature",
         "no module", "no file", "no such name", "not a module", "not a model"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, case):
    args, message = _bad_inputs(tmp_path)[case]
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", *args, "--out", str(out), "--epochs", "1",
                                      "--lr", "0.1", "--augment", "none"],
                                catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


def test_a_model_in_a_subfolder_gives_run_ids_and_lr_find_names_that_are_file_names(
        tmp_path, monkeypatch):
    write_csv(tmp_path / "t.csv")
    (tmp_path / "nets").mkdir()
    write_models(tmp_path / "nets" / "models.py")
    monkeypatch.chdir(tmp_path)
    result = lrlab.run_sweep(dataset="csv(path=t.csv, target=label)",
                             model="nets/models.py:Plain(width=4)", out=tmp_path / "r", **TINY)
    [run_id] = ok_runs(result, 1)["run_id"]
    assert run_id == "nets_models.py:Plain(width=4)-lr0.1-ep1-none-s0" and "/" not in run_id
    from lrlab.lrfind import run_lr_find

    found = run_lr_find(dataset="csv(path=t.csv, target=label)",
                        model="nets/models.py:Plain(width=4)", out=str(tmp_path / "f"),
                        steps=5)
    assert found.files["summary"].parent.name == "lrfind-csv-nets_models.py_Plain"


def test_digits_are_read_without_importing_scikit_learn_and_equal_load_digits():
    import subprocess
    import sys

    code = ("import sys; from lrlab.builtin.datasets import digits; d = digits('data'); "
            "assert 'sklearn' not in sys.modules; print(tuple(d.x.shape))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "(1797, 1, 8, 8)", done.stderr
    from sklearn.datasets import load_digits

    from lrlab.builtin.datasets import digits

    bunch, ours = load_digits(), digits("data")
    assert torch.equal(ours.x, torch.tensor(bunch.images, dtype=torch.float32)
                       .unsqueeze(1) / 16.0)
    assert torch.equal(ours.y, torch.tensor(bunch.target)) and ours.classes == \
        [str(c) for c in bunch.target_names]
