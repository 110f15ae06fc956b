"""Built-in datasets: scikit-learn's digits (embedded), and MNIST, Fashion-MNIST, CIFAR-10
through torchvision from a data root (downloaded only when asked); and the user's own data
without plugin code: ``imagefolder``, ``csv``, ``npz``, ``tensors`` and ``torchvision``
(any of its classification datasets, by name).

Each dataset is read whole into memory, except ``imagefolder`` and ``torchvision`` when
their images would not fit (or with ``stream=true``): those are streamed from disk, a
sample at a time, through DataLoader workers (:class:`lrlab.data.StreamingData`). A
relative ``path`` is relative to the current folder, as ``--data-root`` and ``--out`` are.

torch and numpy are imported inside the factories, when a dataset is built: registering
them (``lrlab list``, ``lrlab plugins``) reads only their signatures.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrlab.errors import UsageError
from lrlab.markers import hookimpl
from lrlab.registry import closest

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from lrlab.data import Data, StreamingData


def digits(root: str) -> Data:
    """scikit-learn's 1,797 8x8 handwritten digits, bundled with it: no download."""
    import torch

    from lrlab.data import Data

    pixels, target = _digits_arrays()
    x = torch.tensor(pixels, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(target, dtype=torch.long)
    return Data(x, y, [str(c) for c in range(10)])


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits' pixels (N, 64) and labels, read from the file scikit-learn ships
    (``sklearn/datasets/data/digits.csv.gz``, what ``load_digits`` reads) without
    importing scikit-learn, whose import costs 1-3 s; ``load_digits`` when the file is
    not where it used to be."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" \
        if spec is not None and spec.origin else None
    if path is not None and path.is_file():
        data = np.loadtxt(path, delimiter=",")
        return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # pragma: no cover - a moved file

    bunch = load_digits()
    return bunch.data, bunch.target


def stratified_subset(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0):
    """``n`` samples drawn per class in the classes' proportions (0 keeps all).

    Each class gets its share ``n * count / total`` rounded down, and the samples left
    over go to the classes with the largest remainders, so every class is within one
    sample of its exact share. Same seed, same subset; the original order is kept.
    """
    import torch

    if n <= 0 or n >= len(y):
        return x, y
    classes, counts = torch.unique(y, return_counts=True)
    exact = counts.double() * n / len(y)
    shares = exact.floor().long()
    left = n - int(shares.sum())
    order = torch.argsort(exact - shares, descending=True, stable=True)
    shares[order[:left]] += 1
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c, share in zip(classes.tolist(), shares.tolist(), strict=True):
        idx = torch.nonzero(y == c).flatten()
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:share]])
    ix = torch.cat(picks).sort().values
    return x[ix], y[ix]


def _torchvision(cls_name: str, folder: str, root: str, download: bool, subset: int) -> Data:
    import numpy as np
    import torch
    import torchvision

    from lrlab.data import Data

    cls = getattr(torchvision.datasets, cls_name)
    where = Path(root) / folder
    parts = []
    for train in (True, False):
        ds = _open(lambda train=train: cls(root=root, train=train, download=download),
                   cls_name, where, download, holds=folder)
        data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
        y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
        parts.append((data, y, list(ds.classes)))  # still uint8: subset first, then convert
    (x, y, classes), (xt, yt, _) = parts
    if subset:  # the test split shrinks in the same ratio as the training set
        n_test = max(len(classes), round(subset * len(yt) / len(y)))
        x, y = stratified_subset(x, y, subset)
        xt, yt = stratified_subset(xt, yt, n_test)
    return Data(_images(x), y, [str(c) for c in classes], test=(_images(xt), yt))


def _open(make: Any, what: str, where: Path, download: bool, *, holds: str,
          bad_arguments: bool = False) -> Any:
    """``make()`` a torchvision dataset; what goes wrong is one line: files missing (say
    --download or --data-root), a download that failed, files that do not read, and with
    ``bad_arguments`` a TypeError/ValueError from the class's own argument checks."""
    try:
        return make()
    except RuntimeError as exc:
        if download:
            raise UsageError(f"{what} could not be downloaded to {where}: "
                             f"{_one_line(exc)}") from None
        raise UsageError(f"{what}: files not found (or not intact) in {where}: pass "
                         f"--download to fetch them, or --data-root to point at the folder "
                         f"that holds {holds}") from None
    except (TypeError, ValueError) as exc:
        if bad_arguments:  # the class refused the arguments it was given
            raise UsageError(f"{what}: {_one_line(exc)}") from None
        if isinstance(exc, TypeError):
            raise
        raise UsageError(f"{what}: files in {where} could not be read: "
                         f"{_one_line(exc) or type(exc).__name__}") from None
    except (AssertionError, OSError, EOFError) as exc:
        raise UsageError(f"{what}: files in {where} could not be read: "
                         f"{_one_line(exc) or type(exc).__name__}") from None


def _images(data: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` -> float ``(N, C, H, W)`` in [0, 1]."""
    x = data.float().div_(255.0)
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _check_subset(subset: int) -> None:
    if subset < 0:
        raise UsageError(f"dataset subset must be >= 0 (0 keeps all), got {subset}")


def mnist(root: str, *, download: bool = False, subset: int = 0) -> Data:
    """MNIST handwritten digits, 28x28 (torchvision): 60k train + its own 10k test split.

    `subset` keeps that many training images, stratified (the test split shrinks alike).
    """
    _check_subset(subset)
    return _torchvision("MNIST", "MNIST/raw", root, download, subset)


def fashion_mnist(root: str, *, download: bool = False, subset: int = 0) -> Data:
    """Fashion-MNIST clothing images, 28x28 (torchvision): 60k train + its own 10k test."""
    _check_subset(subset)
    return _torchvision("FashionMNIST", "FashionMNIST/raw", root, download, subset)


def cifar10(root: str, *, download: bool = False, subset: int = 0) -> Data:
    """CIFAR-10 colour images, 3x32x32 (torchvision): 50k train + its own 10k test."""
    _check_subset(subset)
    return _torchvision("CIFAR10", "cifar-10-batches-py", root, download, subset)


# -- the user's own data ------------------------------------------------------------------


def _local(path: str, what: str, folder: bool = False) -> Path:
    """``path`` (relative to the current folder) that exists: a file, or a folder."""
    p = Path(path).expanduser()
    full = p if p.is_absolute() else Path.cwd() / p
    where = "" if p.is_absolute() else f" (relative to {Path.cwd()})"
    kind = "folder" if folder else "file"
    if not full.exists():
        raise UsageError(f"dataset {what}: no {kind} {path}{where}")
    if folder and not full.is_dir():
        raise UsageError(f"dataset {what}: {path} is a file, not a folder of class folders")
    if not folder and full.is_dir():
        raise UsageError(f"dataset {what}: {path} is a folder, not a file")
    return full


def _image_files(root: Path) -> tuple[list[str], list[list[Path]]]:
    """The class folders of an ImageFolder layout (sorted names, hidden ones left out)
    and the image files in each (recursively, by extension, sorted)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    files = []
    for name in classes:
        found = []
        for folder, dirs, names in os.walk(root / name, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(folder) / n for n in names
                      if not n.startswith(".") and n.lower().endswith(IMG_EXTENSIONS)]
        files.append(sorted(found))
    return classes, files


def _fit_image(img, size: int, grayscale: bool):
    """A PIL image in the mode asked for, its shorter side resized to ``size`` and its
    centre cropped to ``size`` x ``size`` (the aspect ratio kept)."""
    from PIL import Image, ImageOps

    img = img.convert("L" if grayscale else "RGB")
    return ImageOps.fit(img, (size, size), Image.Resampling.BILINEAR)


def _decode(path: Path, size: int, grayscale: bool, base: Path) -> np.ndarray:
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as img:
            arr = np.asarray(_fit_image(img, size, grayscale), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UsageError(f"dataset imagefolder: cannot read image {path.relative_to(base)}: "
                         f"{' '.join(str(exc).split()) or type(exc).__name__}") from None
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


CACHE_PREFIX = ".lrlab-cache-"


def _cache_name(size: int, grayscale: bool, files: list[list[Path]], base: Path) -> tuple[str, str]:
    """The cache file's name, and the pattern of the older ones of the same settings: the
    settings and a digest of every file's name, size and modification time."""
    h = hashlib.sha1(b"lrlab imagefolder cache 1")
    for group in files:
        h.update(b"\0class")
        for f in group:
            st = f.stat()
            h.update(f"{f.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    stem = f"{CACHE_PREFIX}{size}px-{'gray' if grayscale else 'rgb'}-"
    return f"{stem}{h.hexdigest()[:16]}.pt", f"{stem}*.pt"


def imagefolder(root: str, *, path: str, size: int = 32, grayscale: bool = False,
                cache: bool = True, stream: bool | None = None) -> Data | StreamingData:
    """Your images, one folder per class (torchvision's ImageFolder layout), as size x size.

    Each image is converted to RGB (or `grayscale`), its shorter side resized to `size`
    and its centre cropped; the decoded images are cached beside them
    (`.lrlab-cache-*.pt`, rebuilt when a file is added, removed or changed; `cache=false`
    keeps nothing) and held in memory. Images that would take more than a third of the
    memory available as float32 (MemAvailable in /proc/meminfo) are streamed instead,
    read a batch at a time by DataLoader workers (--workers): from a uint8 cache
    `.lrlab-cache-*.npy` beside them, memory-mapped (decoded once; with `cache=false`,
    from the image files, decoded every epoch). `stream=true` streams always,
    `stream=false` never.
    """
    import numpy as np
    import torch

    from lrlab.data import Data, StreamingData, fits_in_memory

    if size < 1:
        raise UsageError(f"dataset imagefolder: size must be >= 1, got {size}")
    if stream not in (None, True, False):
        raise UsageError(f"dataset imagefolder: stream must be true or false, got {stream!r}")
    base = _local(path, "imagefolder", folder=True)
    classes, files = _image_files(base)
    if len(classes) < 2:
        found = f" (found only {classes[0]!r})" if classes else ""
        raise UsageError(f"dataset imagefolder: {path} needs at least two class folders, "
                         f"one per class, each holding its images{found}")
    empty = [c for c, group in zip(classes, files, strict=True) if not group]
    if empty:
        raise UsageError(f"dataset imagefolder: class folder(s) {', '.join(map(repr, empty))} "
                         f"in {path} hold no images (.png, .jpg, ...)")
    paths = [f for group in files for f in group]
    y = torch.tensor([i for i, group in enumerate(files) for _ in group], dtype=torch.long)
    shape = (1 if grayscale else 3, size, size)
    if stream is None:
        stream = not fits_in_memory(len(paths) * 4 * shape[0] * size * size)
    name, pattern = _cache_name(size, grayscale, files, base)
    target = base / name
    if stream:
        mapped = _mapped_cache(base, target.with_suffix(".npy"), pattern[:-3] + ".npy",
                               paths, shape) if cache else None
        images = ImageFiles(paths, y.tolist(), size, grayscale, base) if mapped is None \
            else MappedImages(mapped, y.tolist())
        return StreamingData(images, y, list(classes), shape)
    if cache and target.is_file():
        try:
            stored = torch.load(target, weights_only=True)
            if stored["classes"] == classes:
                return Data(stored["x"].float().div_(255.0), stored["y"], list(classes))
        except Exception:  # a broken cache is rebuilt
            pass
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(lambda f: _decode(f, size, grayscale, base), paths))
    x = torch.from_numpy(np.stack(arrays))
    if cache:
        _write_cache(base, target, pattern, {"x": x, "y": y, "classes": list(classes)})
    return Data(x.float().div_(255.0), y, list(classes))


def _mapped_cache(base: Path, target: Path, pattern: str, paths: list[Path],
                  shape: tuple[int, int, int]) -> Path | None:
    """The uint8 ``(N, C, H, W)`` ``.npy`` cache a streamed imagefolder reads, decoded a
    chunk at a time into a memory map (never whole in memory), renamed into place when
    complete; the stale ones of the same settings removed. None where the folder cannot
    be written (the images are then decoded from their files, every epoch)."""
    import numpy as np

    if target.is_file():
        try:
            found = np.load(target, mmap_mode="r")
            if found.shape == (len(paths), *shape) and found.dtype == np.uint8:
                return target
        except (OSError, ValueError):  # a broken cache is rebuilt
            pass
    size, grayscale = shape[1], shape[0] == 1
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                        shape=(len(paths), *shape))
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for start in range(0, len(paths), 1024):
                chunk = paths[start:start + 1024]
                out[start:start + len(chunk)] = np.stack(list(pool.map(
                    lambda f: _decode(f, size, grayscale, base), chunk)))
        out.flush()
        del out
        os.replace(partial, target)
    except OSError:
        return None
    finally:
        partial.unlink(missing_ok=True)
    _remove_stale(base, pattern, target)
    return target


def _remove_stale(base: Path, pattern: str, keep: Path) -> None:
    """Remove the caches matching ``pattern`` in ``base`` other than ``keep`` (older
    versions of the same images); one that cannot be removed is left."""
    for old in base.glob(pattern):
        if old != keep:
            try:
                old.unlink()
            except OSError:
                pass


class MappedImages:
    """Decoded images in a uint8 ``.npy`` file, as a map-style torch dataset read through
    a memory map (opened in each worker process): item ``i`` is ``(x, y)``, ``x`` float
    ``(C, H, W)`` in [0, 1], as :func:`imagefolder` holds it in memory."""

    def __init__(self, path: Path, labels: list[int]) -> None:
        self.path, self.labels = path, labels
        self._array = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import numpy as np
        import torch

        return torch.from_numpy(self._mapped()[i].astype(np.float32)).div_(255.0), \
            self.labels[i]

    def read_batch(self, indices: list[int]) -> torch.Tensor:
        """The inputs of items ``indices``, gathered from the map in one step."""
        import numpy as np
        import torch

        return torch.from_numpy(self._mapped()[indices].astype(np.float32)).div_(255.0)

    def _mapped(self):
        import numpy as np

        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}  # a worker maps the file itself


class ImageFiles:
    """The images of an ImageFolder layout as a map-style torch dataset, read one by one:
    item ``i`` is ``(x, y)``, ``x`` the image decoded as :func:`imagefolder` decodes it,
    float ``(C, size, size)`` in [0, 1]."""

    def __init__(self, paths: list[Path], labels: list[int], size: int, grayscale: bool,
                 base: Path) -> None:
        self.paths, self.labels = paths, labels
        self.size, self.grayscale, self.base = size, grayscale, base

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import numpy as np
        import torch

        pixels = _decode(self.paths[i], self.size, self.grayscale, self.base)
        return torch.from_numpy(pixels.astype(np.float32)).div_(255.0), self.labels[i]


def _write_cache(base: Path, target: Path, pattern: str, payload: dict) -> None:
    """Write the cache atomically and remove the stale ones of the same settings; a folder
    that cannot be written is left as it is (no cache)."""
    import torch

    from lrlab.storage import StorageError, atomic_write

    try:
        atomic_write(target, lambda fh: torch.save(payload, fh))
    except (StorageError, OSError):
        return
    _remove_stale(base, pattern, target)


def _columns(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(c).strip() for c in items if str(c).strip()]


def csv(root: str, *, path: str, target: str | int,
        features: str | list[str | int] | None = None, sep: str = ",",
        standardize: bool = True) -> Data:
    """A table of numbers: each row a sample, `target` its class, the other columns (or `features`) its features.

    The target's distinct values become the classes (sorted; numbers as numbers). Each
    feature is standardized with the mean and standard deviation of the training split
    alone (`standardize=false` keeps the values as they are).
    """
    import numpy as np
    import pandas as pd
    import torch

    from lrlab.data import tensors_data

    file = _local(path, "csv")
    target = str(target)
    try:
        table = pd.read_csv(file, sep=sep)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UsageError(f"dataset csv: cannot read {path}: {' '.join(str(exc).split())}") \
            from None
    columns = [str(c) for c in table.columns]
    table.columns = columns

    def known(name: str, role: str) -> None:
        if name not in columns:
            near = closest(name, columns)
            hint = f"; did you mean '{near}'?" if near else ""
            raise UsageError(f"dataset csv: {path} has no {role} column '{name}'{hint} "
                             f"(columns: {', '.join(columns)})")

    known(target, "target")
    chosen = _columns(features)
    if chosen is None:
        chosen = [c for c in columns if c != target]
    for c in chosen:
        known(c, "feature")
    if target in chosen:
        raise UsageError(f"dataset csv: the target column '{target}' is also among the "
                         f"features")
    if not chosen:
        raise UsageError(f"dataset csv: {path} has no feature columns besides '{target}'")
    for c in chosen:
        col = table[c]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            example = next((v for v in col if isinstance(v, str)), col.iloc[0])
            raise UsageError(f"dataset csv: feature column '{c}' is not numeric (e.g. "
                             f"{example!r}): encode it as numbers, or leave it out with "
                             f"features=...")
        missing = int(col.isna().sum())
        if missing:
            raise UsageError(f"dataset csv: feature column '{c}' has {missing} empty "
                             f"value(s): fill or drop them first")
    labels = table[target]
    if labels.isna().any():
        raise UsageError(f"dataset csv: target column '{target}' has "
                         f"{int(labels.isna().sum())} empty value(s)")
    values = labels.to_numpy()
    if values.dtype == object:
        values = values.astype(str)
    x = torch.tensor(table[chosen].to_numpy(dtype=np.float32))
    data = tensors_data(x, values, what=f"dataset csv ({path})")
    data.standardize = standardize
    return data


def _arrays_file(path: str, what: str) -> tuple[Path, str]:
    return _local(path, what), f"dataset {what} ({path})"


def npz(root: str, *, path: str) -> Data:
    """Arrays in a NumPy .npz file: `x` (a row per sample, any shape), `y` (labels), optional `classes`.

    uint8 `x` is read as image pixels and scaled to [0, 1]; optional `x_test`, `y_test`
    are the data's own test split. Labels are indices into `classes`, or else their
    distinct values become the classes.
    """
    import numpy as np

    file, what = _arrays_file(path, "npz")
    try:
        with np.load(file, allow_pickle=False) as arrays:
            found = {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"{what}: cannot read it as .npz: {' '.join(str(exc).split())}") \
            from None
    return _from_table(found, what)


def tensors(root: str, *, path: str) -> Data:
    """Tensors saved with torch.save: a pair (x, y) or a dict with `x`, `y` (optional `classes`, `x_test`, `y_test`).

    Loaded with `weights_only=True` (no code runs); read like `npz`.
    """
    import torch

    file, what = _arrays_file(path, "tensors")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle's, torch's and the safe loader's own errors
        raise UsageError(f"{what}: cannot load it with torch.load(weights_only=True): "
                         f"{' '.join(str(exc).split())[:300]}") from None
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        obj = {"x": obj[0], "y": obj[1]}
    if not isinstance(obj, dict):
        raise UsageError(f"{what}: holds a {type(obj).__name__}; save a pair (x, y) or a "
                         f"dict with 'x' and 'y'")
    return _from_table(obj, what)


def _from_table(found: dict, what: str) -> Data:
    from lrlab.data import tensors_data

    missing = [k for k in ("x", "y") if k not in found]
    if missing:
        raise UsageError(f"{what}: has no {' and '.join(map(repr, missing))} (it has: "
                         f"{', '.join(map(str, found)) or 'nothing'})")
    test = None
    if ("x_test" in found) != ("y_test" in found):
        raise UsageError(f"{what}: has one of x_test and y_test; give both or neither")
    if "x_test" in found:
        test = (found["x_test"], found["y_test"])
    return tensors_data(found["x"], found["y"], found.get("classes"), what, test=test)


# -- any torchvision classification dataset, by name --------------------------------------

# torchvision.datasets entries that are not datasets of labelled samples to read by name
_NOT_BY_NAME = {"VisionDataset", "DatasetFolder", "ImageFolder", "FakeData", "wrap_dataset_for_transforms_v2"}


def _torchvision_classes() -> dict[str, type]:
    import torchvision.datasets as tvd

    out = {}
    for name in getattr(tvd, "__all__", dir(tvd)):
        obj = getattr(tvd, name, None)
        if isinstance(obj, type) and name not in _NOT_BY_NAME:
            out[name] = obj
    return out


def torchvision_class(name: str) -> type:
    """A torchvision dataset class by its name (case does not matter)."""
    known = _torchvision_classes()
    if name in known:
        return known[name]
    folded = {k.lower(): v for k, v in known.items()}
    if name.lower() in folded:
        return folded[name.lower()]
    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5) or \
        [k for k in known if k.lower() in {m.lower() for m in difflib.get_close_matches(
            name.lower(), list(folded), n=3, cutoff=0.5)}]
    hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
    raise UsageError(f"dataset torchvision: torchvision has no dataset '{name}'{hint}")


def _nchw(data: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` as ``(N, C, H, W)``."""
    if data.ndim == 3:
        return data.unsqueeze(1)
    if data.ndim == 4 and data.shape[-1] in (1, 3, 4) and data.shape[1] not in (1, 3, 4):
        return data.permute(0, 3, 1, 2).contiguous()
    return data


def _labels_of(ds) -> Any:
    """A torchvision dataset's labels where it keeps them (``targets`` / ``labels``)."""
    labels = getattr(ds, "targets", None)
    return labels if labels is not None else getattr(ds, "labels", None)


def _pixels(sample, size: int, what: str) -> tuple[np.ndarray, int]:
    """A torchvision sample ``(image, label)`` as uint8 ``(C, H, W)`` (resized to ``size``
    when given) and its class index."""
    import numpy as np
    import torch

    img, label = sample[0], sample[1]
    if not hasattr(img, "convert"):
        raise UsageError(f"{what}: its samples are {type(img).__name__}, not images")
    if size:
        img = _fit_image(img, size, img.mode == "L")
    arr = np.asarray(img.convert("L" if img.mode in ("L", "1", "I", "F") else "RGB"),
                     dtype=np.uint8)
    if not isinstance(label, (int, np.integer)) and not (
            isinstance(label, torch.Tensor) and label.numel() == 1):
        raise UsageError(f"{what}: its targets are {type(label).__name__}, not class "
                         f"indices: it is not a classification dataset")
    return (arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)), int(label)


def _read_torchvision(ds, size: int, what: str) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 images ``(N, C, H, W)`` and the labels of a torchvision dataset: its arrays
    (``data``, ``targets`` / ``labels``) where it has them, else sample by sample."""
    import numpy as np
    import torch

    data = getattr(ds, "data", None)
    labels = _labels_of(ds)
    if size == 0 and isinstance(data, (torch.Tensor, np.ndarray)) and labels is not None \
            and np.asarray(data).ndim in (3, 4):
        x = data if isinstance(data, torch.Tensor) else torch.from_numpy(np.asarray(data))
        if x.dtype == torch.uint8:
            return _nchw(x), np.asarray(labels)
    xs, ys = [], []
    for i in range(len(ds)):
        arr, label = _pixels(ds[i], size, what)
        xs.append(arr)
        ys.append(label)
    if len({a.shape for a in xs}) > 1:
        raise UsageError(f"{what}: its images differ in size; give size=N (e.g. size=64) "
                         f"to resize them")
    if not xs:
        raise UsageError(f"{what}: it is empty")
    return torch.from_numpy(np.stack(xs)), np.asarray(ys)


class TorchvisionImages:
    """A torchvision dataset's samples (those at ``indices``; all when None) as a map-style
    torch dataset, read one by one as :func:`torchvision` reads them into memory: item
    ``i`` is ``(x, y)``, ``x`` float ``(C, H, W)`` in [0, 1]."""

    def __init__(self, ds, size: int, what: str, indices: list[int] | None = None) -> None:
        self.ds, self.size, self.what, self.indices = ds, size, what, indices

    def __len__(self) -> int:
        return len(self.ds) if self.indices is None else len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import numpy as np
        import torch

        j = i if self.indices is None else self.indices[i]
        arr, label = _pixels(self.ds[j], self.size, self.what)
        return torch.from_numpy(arr.astype(np.float32)).div_(255.0), label


def _stream_labels(ds, what: str) -> np.ndarray:
    """A torchvision dataset's labels, without decoding its images where it keeps them,
    else read sample by sample (each image decoded once and dropped)."""
    import numpy as np

    labels = _labels_of(ds)
    if labels is not None and len(labels) == len(ds):
        return np.asarray(labels)
    return np.asarray([_pixels(ds[i], 0, what)[1] for i in range(len(ds))])


def _fits(ds, size: int, what: str) -> bool:
    """Whether a torchvision dataset's images fit in memory as float32 (judged by its
    ``data`` array, or else its first image)."""
    import numpy as np

    from lrlab.data import fits_in_memory

    data = getattr(ds, "data", None)
    if size == 0 and hasattr(data, "shape") and hasattr(data, "dtype"):
        return fits_in_memory(int(np.prod(data.shape)) * 4)
    if not len(ds):
        return True
    return fits_in_memory(len(ds) * 4 * _pixels(ds[0], size, what)[0].size)


def torchvision(root: str, *, name: str, download: bool = False, subset: int = 0,
                split: str = "", size: int = 0,
                stream: bool | None = None) -> Data | StreamingData:
    """Any torchvision classification dataset by class name (KMNIST, EMNIST, SVHN, CIFAR100, ...), from --data-root.

    Downloaded only with `download=true` (or --download). A class with a `train` flag
    gives its own test split; one with `split` reads "train" and "test" (or the `split`
    you give, e.g. EMNIST's split=balanced, SVHN's split=extra). `size` resizes images of
    varying size to size x size; `subset` keeps that many training samples, stratified.
    A dataset whose images would take more than a third of the memory available as
    float32 is streamed, a sample at a time, by DataLoader workers (--workers);
    `stream=true` streams always, `stream=false` never.
    """
    import numpy as np
    import torch

    from lrlab.data import Data, StreamingData

    _check_subset(subset)
    if stream not in (None, True, False):
        raise UsageError(f"dataset torchvision: stream must be true or false, got {stream!r}")
    cls = torchvision_class(name)
    what = f"dataset torchvision({cls.__name__})"
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    if "root" not in params:
        raise UsageError(f"{what}: {cls.__name__} does not read files from a root folder; "
                         f"it cannot be read by name")
    base: dict = {"root": str(root)}
    if "download" in params:
        base["download"] = download
    if "train" in params:
        if split and "split" not in params:
            raise UsageError(f"{what}: {cls.__name__} takes no split (it has train and test)")
        if split:
            base["split"] = split
        parts = [{"train": True}, {"train": False}]
    elif "split" in params:
        parts = [{"split": split}] if split else [{"split": "train"}, {"split": "test"}]
    else:
        if split:
            raise UsageError(f"{what}: {cls.__name__} takes no split")
        parts = [{}]
    where = Path(root)
    opened = [_open(lambda part=part: cls(**base, **part), what, where, download,
                    holds="them", bad_arguments=True) for part in parts]
    if stream is None:
        stream = not all(_fits(ds, size, what) for ds in opened)
    read = []
    for ds in opened:
        x, labels = (ds, _stream_labels(ds, what)) if stream \
            else _read_torchvision(ds, size, what)
        read.append((x, labels, getattr(ds, "classes", None)))
    labels = [np.asarray(lab) for _, lab, _ in read]
    if any(lab.dtype.kind not in "iu" for lab in labels):
        raise UsageError(f"{what}: its targets are not class indices: it is not a "
                         f"classification dataset")
    if any(len(lab) and lab.min() < 0 for lab in labels):
        raise UsageError(f"{what}: its targets hold negative class indices")
    count = 1 + max(int(lab.max()) for lab in labels if len(lab))
    classes = read[0][2]
    names = [str(c) for c in classes] if classes is not None and len(classes) >= count \
        else [str(i) for i in range(count)]
    x, y = read[0][0], torch.as_tensor(labels[0].astype(np.int64))
    test = (read[1][0], torch.as_tensor(labels[1].astype(np.int64))) if len(read) > 1 \
        else None
    if stream:  # the samples' positions stand in for the images
        x = torch.arange(len(y))
        test = None if test is None else (torch.arange(len(test[1])), test[1])
    if subset:
        n_train = len(y)
        x, y = stratified_subset(x, y, subset)
        if test is not None:
            n_test = max(len(names), round(subset * len(test[1]) / max(1, n_train)))
            test = stratified_subset(test[0], test[1], n_test)
    if stream:
        def streamed(ds, picked: torch.Tensor, labels: torch.Tensor) -> StreamingData:
            images = TorchvisionImages(ds, size, what, picked.tolist() if subset else None)
            return StreamingData(images, labels, names, tuple(images[0][0].shape))

        data = streamed(opened[0], x, y)
        data.test = None if test is None else streamed(opened[1], *test)
        if data.test is not None and data.test.input_shape != data.input_shape:
            raise UsageError(f"{what}: its images differ in size; give size=N (e.g. "
                             f"size=64) to resize them")
        return data
    return Data(_images_nchw(x), y, names,
                test=None if test is None else (_images_nchw(test[0]), test[1]))


def _images_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0)


@hookimpl
def lrlab_register_datasets(register):
    register("digits", digits)
    register("mnist", mnist)
    register("fashion-mnist", fashion_mnist)
    register("cifar10", cifar10)
    register("imagefolder", imagefolder)
    register("csv", csv)
    register("npz", npz)
    register("tensors", tensors)
    register("torchvision", torchvision)
