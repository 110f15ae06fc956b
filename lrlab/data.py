"""Datasets as tensors, and the deterministic stratified train/val/test split.

Also what the user's own data becomes a :class:`Data` by: class labels of any kind
(:func:`encode_labels`), feature tensors (:func:`features`), and the objects the Python
API takes as a dataset (:func:`as_data`: a tensor pair, a ``Data``, a torch ``Dataset``).

Data too big for memory streams: a :class:`StreamingData` (a torch ``Dataset`` and its
labels) is split by index exactly as a :class:`Data` of the same labels is split, and a
:class:`Feeder` reads its mini-batches through ``DataLoader`` worker processes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lrlab.errors import UsageError


@dataclass
class Data:
    """What a dataset factory returns.

    ``x``: float tensor ``(N, C, H, W)`` scaled to about [0, 1] (or feature vectors
    ``(N, F)``, a table's rows); ``y``: int64 class indices ``(N,)``; ``classes``: a name
    per class. ``test`` optionally holds the dataset's own test split ``(x, y)`` (MNIST's
    10,000 images, say): then the split's test fraction is not taken from ``x``.
    ``standardize``: the split scales every feature to mean 0 and standard deviation 1 with
    the statistics of the training part alone (:func:`stratified_split`), so nothing of the
    validation or test rows leaks into training.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    test: tuple[torch.Tensor, torch.Tensor] | None = None
    standardize: bool = False

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class StreamingData:
    """What a dataset factory returns for data too big for memory: read sample by sample.

    ``dataset``: a torch ``Dataset`` whose items are ``(x, y)`` pairs (or ``x`` alone), ``x``
    a tensor of ``input_shape`` (uint8 pixels are scaled to [0, 1], as :func:`features`
    does) or a PIL image; ``targets``: the int64 class index of every item ``(N,)``, known
    without decoding it: the split stratifies on them and the loss is scored against them
    (an item's own ``y`` is not read). ``test``: the dataset's own test split, streamed
    too. Features are not checked for NaN (that would decode everything) and cannot be
    standardized.
    """

    dataset: Any
    targets: torch.Tensor
    classes: list[str]
    input_shape: tuple[int, ...]
    test: StreamingData | None = None

    @property
    def y(self) -> torch.Tensor:
        return self.targets

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class Stream:
    """One part of a streamed split: the items ``indices`` of ``dataset``, their labels
    ``targets`` (in the same order)."""

    dataset: Any
    indices: torch.Tensor
    targets: torch.Tensor
    input_shape: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.targets)


Part = tuple[torch.Tensor, torch.Tensor] | Stream


@dataclass
class Split:
    """Train, validation and test tensors, on one device; or, for a streamed dataset
    (``streaming``), :class:`Stream` parts whose batches a :class:`Feeder` reads."""

    train: Part
    val: Part
    test: Part
    classes: list[str]

    @property
    def streaming(self) -> bool:
        """Whether the parts are streamed from a torch Dataset (not tensors in memory)."""
        return isinstance(self.train, Stream)

    @property
    def input_shape(self) -> tuple[int, ...]:
        if isinstance(self.train, Stream):
            return self.train.input_shape
        return tuple(self.train[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> Split:
        """The split on ``device`` (streamed parts stay where they are: each batch moves)."""
        def mv(pair):
            if isinstance(pair, Stream):
                return pair
            return pair[0].to(device), pair[1].to(device)

        return Split(mv(self.train), mv(self.val), mv(self.test), self.classes)

    def sizes(self) -> tuple[int, int, int]:
        return tuple(len(p) if isinstance(p, Stream) else len(p[1])  # type: ignore[return-value]
                     for p in (self.train, self.val, self.test))


def check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f <= 0 for f in fractions):
        raise UsageError(f"split must be three positive fractions train,val,test; "
                         f"got {fractions!r}")
    total = sum(fractions)
    if abs(total - 1.0) > 1e-6:
        raise UsageError(f"split fractions must add up to 1; got {fractions!r} (sum {total:g})")
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def check_finite(data: Data | StreamingData, name: str) -> None:
    """Refuse a dataset whose features hold NaN or infinities (one line, their count):
    every run on it would only diverge. A streamed dataset is not read for it."""
    if isinstance(data, StreamingData):
        return
    parts = [data.x] + ([data.test[0]] if data.test is not None else [])
    bad = sum(int((~torch.isfinite(x)).sum()) for x in parts
              if isinstance(x, torch.Tensor) and x.is_floating_point())
    if bad:
        samples = sum(int((~torch.isfinite(x.reshape(len(x), -1))).any(1).sum())
                      for x in parts if isinstance(x, torch.Tensor) and x.is_floating_point())
        raise UsageError(f"dataset '{name}' has {bad} non-finite feature value(s) (NaN or "
                         f"infinity) in {samples} sample(s): every run on it would diverge; "
                         f"clean or impute them first")


def split_indices(y: torch.Tensor, fractions: tuple[float, float, float], seed: int = 0,
                  own_test: bool = False) -> list[torch.Tensor]:
    """The train, validation and test indices of a stratified split of labels ``y`` (see
    :func:`stratified_split`); ``own_test``: the data brings its own test split, so the
    test part is empty and the train and validation fractions are rescaled."""
    train_f, val_f, test_f = check_fractions(fractions)
    if own_test:
        train_f, val_f, test_f = train_f / (train_f + val_f), val_f / (train_f + val_f), 0.0
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[], [], []]
    y = y.cpu()
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n = len(idx)
        n_val = int(round(n * val_f))
        n_test = int(round(n * test_f))
        n_train = n - n_val - n_test
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train:n_train + n_val])
        parts[2].append(idx[n_train + n_val:])
    picks = []
    for p in parts:
        cat = torch.cat(p) if p else torch.empty(0, dtype=torch.long)
        picks.append(cat[torch.randperm(len(cat), generator=gen)])
    return picks


def stratified_split(data: Data | StreamingData, fractions: tuple[float, float, float],
                     seed: int = 0) -> Split:
    """Split per class, so each split keeps the class proportions; same seed, same split.

    Within each class the samples are shuffled with ``seed`` and cut at the fractions;
    the parts are concatenated in class order and then shuffled once more. With
    ``data.standardize`` every split is scaled by the training part's per-feature mean and
    (population) standard deviation; a constant feature is only centred. A
    :class:`StreamingData` is split by index, into :class:`Stream` parts: the same
    samples, in the same order, as a :class:`Data` of the same labels.
    """
    picks = split_indices(data.y, fractions, seed, own_test=data.test is not None)
    if isinstance(data, StreamingData):
        def stream(ds: StreamingData, ix: torch.Tensor) -> Stream:
            return Stream(ds.dataset, ix, ds.targets[ix], tuple(ds.input_shape))

        own = data.test
        test = stream(own, torch.arange(len(own.targets))) if own is not None \
            else stream(data, picks[2])
        split = Split(stream(data, picks[0]), stream(data, picks[1]), test,
                      list(data.classes))
        if min(split.sizes()) == 0:
            raise UsageError(f"split {fractions!r} leaves an empty part on "
                             f"{len(data.targets)} samples")
        return split

    def take(ix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # contiguous: a batch's rows are then gathered without copying the whole part
        # (images stacked channels-last, say, keep their strides through indexing)
        return data.x[ix].contiguous(), data.y[ix]

    test = (data.test[0].contiguous(), data.test[1]) if data.test is not None \
        else take(picks[2])
    train, val = take(picks[0]), take(picks[1])
    if data.standardize and len(picks[0]):
        mean, std = standardization(train[0])

        def scale(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return (pair[0] - mean.to(pair[0].device)) / std.to(pair[0].device), pair[1]

        train, val, test = scale(train), scale(val), scale(test)
    split = Split(train, val, test, list(data.classes))
    if min(split.sizes()) == 0:
        raise UsageError(f"split {fractions!r} leaves an empty part on {len(data.y)} samples")
    return split


def standardization(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-feature mean and population standard deviation of ``x`` (over its first
    dimension), a standard deviation of 0 taken as 1."""
    x64 = x.double()
    mean = x64.mean(0, keepdim=True)
    std = x64.std(0, correction=0, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean.to(x.dtype), std.to(x.dtype)


# -- the user's own data: labels, features, objects ----------------------------------------


def _label_name(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def encode_labels(values: Any, classes: Any = None,
                  what: str = "dataset") -> tuple[torch.Tensor, list[str]]:
    """Class indices and class names from labels of any kind.

    With ``classes`` (a name per class), ``values`` must be indices into it. Without, the
    distinct values become the classes, sorted (numbers as numbers, then written as text:
    ``2`` before ``10``), and each label its index.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise UsageError(f"{what}: the labels must be one per sample (shape (N,)), got "
                         f"shape {tuple(arr.shape)}")
    if classes is not None:
        names = [_label_name(c) for c in np.asarray(classes).reshape(-1).tolist()]
        if arr.dtype.kind not in "iub" or (len(arr) and (arr.min() < 0 or arr.max() >= len(names))):
            raise UsageError(f"{what}: with {len(names)} class names the labels must be "
                             f"indices 0..{len(names) - 1}")
        return torch.as_tensor(arr.astype(np.int64)), names
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise UsageError(f"{what}: {int(np.isnan(arr).sum())} label(s) are missing (NaN)")
    try:
        uniques, index = np.unique(arr, return_inverse=True)
    except TypeError:  # mixed kinds of values: sort them as text
        arr = arr.astype(str)
        uniques, index = np.unique(arr, return_inverse=True)
    return torch.as_tensor(index.reshape(-1).astype(np.int64)), \
        [_label_name(u) for u in uniques.tolist()]


def features(x: Any, what: str = "dataset") -> torch.Tensor:
    """``x`` as a float32 tensor with one row per sample: uint8 values are read as image
    pixels and scaled to [0, 1], other numbers kept as they are; a 1-d ``x`` is one feature
    per sample ``(N, 1)``."""
    if not isinstance(x, torch.Tensor):
        arr = np.asarray(x)
        if arr.dtype.kind not in "iufb":
            raise UsageError(f"{what}: x must hold numbers, got {arr.dtype} values")
        x = torch.from_numpy(np.ascontiguousarray(arr))
    x = x.detach().cpu()
    if x.is_complex():
        raise UsageError(f"{what}: x must hold real numbers, got {x.dtype}")
    if x.ndim == 0:
        raise UsageError(f"{what}: x must hold one row per sample, got a scalar")
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return x.unsqueeze(1) if x.ndim == 1 else x


def tensors_data(x: Any, y: Any, classes: Any = None, what: str = "dataset",
                 test: tuple[Any, Any] | None = None) -> Data:
    """A :class:`Data` from features ``x`` and labels ``y`` (tensors, arrays or lists);
    ``test``: the data's own test split, labelled like ``y``."""
    xs = features(x, what)
    labels, names = encode_labels(y, classes, what)
    if len(xs) != len(labels):
        raise UsageError(f"{what}: x has {len(xs)} samples but y has {len(labels)} labels")
    own_test = None
    if test is not None:
        xt = features(test[0], what)
        raw_test = test[1].detach().cpu().numpy() if isinstance(test[1], torch.Tensor) \
            else np.asarray(test[1])
        if classes is None:  # the same classes as y: index by y's names
            lookup = {n: i for i, n in enumerate(names)}
            try:
                yt = torch.as_tensor([lookup[_label_name(v)] for v in raw_test.tolist()],
                                     dtype=torch.long)
            except KeyError as exc:
                raise UsageError(f"{what}: the test labels hold a class the training "
                                 f"labels have not: {exc.args[0]!r}") from None
        else:
            yt, _ = encode_labels(raw_test, classes, what)
        if len(xt) != len(yt) or xt.shape[1:] != xs.shape[1:]:
            raise UsageError(f"{what}: the test split's x {tuple(xt.shape)} and y "
                             f"({len(yt)}) do not match x {tuple(xs.shape)}")
        own_test = (xt, yt)
    if len(names) < 2:
        raise UsageError(f"{what}: needs at least two classes, found {len(names)}"
                         + (f" ({names[0]!r})" if names else ""))
    return Data(xs, labels, names, test=own_test)


def _sample(x: Any, what: str) -> torch.Tensor:
    """One sample of a torch Dataset as a float tensor: a PIL image as ``(C, H, W)`` in
    [0, 1], a tensor or array as it is."""
    if hasattr(x, "getbands") and hasattr(x, "size"):  # a PIL image
        arr = np.asarray(x)
        t = torch.from_numpy(np.ascontiguousarray(arr))
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
        return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.detach().cpu()


def dataset_data(ds: Any, what: str = "dataset") -> Data:
    """A torch ``Dataset`` of ``(x, y)`` samples, read whole into memory (it must fit):
    ``TensorDataset`` directly, any other sample by sample; ``ds.classes`` names the
    classes where it has them."""
    from torch.utils.data import TensorDataset

    classes = getattr(ds, "classes", None)
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        x, y = ds.tensors
    else:
        n = _length(ds, what)
        xs, ys = [], []
        for i in range(n):
            sample = _pair(ds, i, what)
            xs.append(_sample(sample[0], what))
            ys.append(_label(sample[1]))
        shapes = {tuple(t.shape) for t in xs}
        if len(shapes) > 1:
            raise UsageError(f"{what}: the samples of {type(ds).__name__} differ in shape "
                             f"({', '.join(map(str, sorted(shapes)[:3]))}...): give it a "
                             f"transform that makes them one size")
        if not xs:
            raise UsageError(f"{what}: {type(ds).__name__} is empty")
        x, y = torch.stack(xs), ys
    return tensors_data(x, y, _class_names(classes, y), what)


def _length(ds: Any, what: str) -> int:
    try:
        return len(ds)
    except TypeError:
        raise UsageError(f"{what}: {type(ds).__name__} has no length (an iterable "
                         f"dataset): give its tensors (x, y) instead") from None


def _pair(ds: Any, i: int, what: str) -> Any:
    sample = ds[i]
    if not isinstance(sample, (tuple, list)) or len(sample) < 2:
        raise UsageError(f"{what}: sample {i} of {type(ds).__name__} is not a pair (x, y)")
    return sample


def _label(label: Any) -> Any:
    return label.item() if isinstance(label, torch.Tensor) and label.numel() == 1 else label


def _class_names(classes: Any, y: Any) -> Any:
    """``ds.classes`` where the labels are indices into it, else None."""
    if classes is None:
        return None
    labels = np.asarray(y.cpu().numpy() if isinstance(y, torch.Tensor) else y)
    if labels.dtype.kind not in "iu" or (len(labels) and labels.max() >= len(classes)):
        return None
    return classes


def dataset_stream(ds: Any, what: str = "dataset") -> StreamingData:
    """A torch ``Dataset`` of ``(x, y)`` samples as a :class:`StreamingData`: its labels
    from ``ds.targets`` (or ``ds.labels``) where it has one per sample, else read item by
    item once (each decoded and dropped); the input shape from its first sample."""
    n = _length(ds, what)
    if n == 0:
        raise UsageError(f"{what}: {type(ds).__name__} is empty")
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = getattr(ds, "labels", None)
    if labels is None or isinstance(labels, (str, bytes)) or len(labels) != n:
        labels = [_label(_pair(ds, i, what)[1]) for i in range(n)]
    labels = [_label(v) for v in labels] if not isinstance(labels, (torch.Tensor, np.ndarray)) \
        else labels
    classes = _class_names(getattr(ds, "classes", None), labels)
    targets, names = encode_labels(labels, classes, what)
    if len(names) < 2:
        raise UsageError(f"{what}: needs at least two classes, found {len(names)}")
    first = input_tensor(_pair(ds, 0, what)[0], what)
    return StreamingData(ds, targets, names, tuple(first.shape))


def input_tensor(x: Any, what: str = "dataset") -> torch.Tensor:
    """One streamed sample's input as the model sees it: float, uint8 pixels scaled to
    [0, 1] (a PIL image as ``(C, H, W)``), as :func:`features` reads tensors in memory."""
    t = _sample(x, what)
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


# -- what fits in memory --------------------------------------------------------------------

# in-memory features may take at most this share of the memory available: the split
# copies them once more, and a decode holds a uint8 copy beside the floats
MEMORY_SHARE = 1 / 3


def available_memory() -> int | None:
    """Bytes of memory available now: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else
    ``os.sysconf``'s available pages; None where neither says."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def fits_in_memory(nbytes: int) -> bool:
    """Whether features of ``nbytes`` (as float32) may be held in memory: at most
    :data:`MEMORY_SHARE` of :func:`available_memory` (yes where it is unknown)."""
    available = available_memory()
    return available is None or nbytes <= available * MEMORY_SHARE


def _digest(data: Data | StreamingData) -> str:
    h = hashlib.sha1()
    if isinstance(data, StreamingData):  # not read whole: its labels, size and ends
        parts = [data.targets]
        for part in [data] + ([data.test] if data.test is not None else []):
            h.update(f"{type(part.dataset).__name__}{len(part.targets)}".encode())
            parts += [part.targets, input_tensor(_first(part.dataset, 0)),
                      input_tensor(_first(part.dataset, len(part.targets) - 1))]
    else:
        parts = [data.x, data.y] + (list(data.test) if data.test is not None else [])
    for t in parts:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    h.update("\0".join(data.classes).encode())
    h.update(b"std" if getattr(data, "standardize", False) else b"")
    return h.hexdigest()[:8]


def _first(ds: Any, i: int) -> Any:
    item = ds[i]
    return item[0] if isinstance(item, (tuple, list)) else item


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and \
        hasattr(value[0], "shape") and hasattr(value[1], "__len__")


def is_one_dataset(value: Any) -> bool:
    """Whether ``value`` (an API argument) is one dataset object rather than a list of
    them: a tensor pair ``(x, y)``."""
    return _is_pair(value)


def as_data(value: Any, what: str = "dataset") -> tuple[str, Data | StreamingData]:
    """A dataset object of the Python API and its name: a tensor pair ``(x, y)``
    (``tensors-300x4-<digest>``), a :class:`Data` (``data-...``), a
    :class:`StreamingData` (``stream-...``), a torch ``Dataset`` (``<ClassName>-...``):
    read into memory when its samples, as float32, fit (:func:`fits_in_memory`, judged
    by the first), else streamed. The digest of the contents (of a streamed one: its
    labels and first and last samples) keeps names (and so resume keys) apart for
    different data."""
    from torch.utils.data import Dataset, TensorDataset

    if isinstance(value, Data):
        data, prefix = value, "data"
    elif isinstance(value, StreamingData):
        data, prefix = value, "stream"
    elif _is_pair(value):
        data, prefix = tensors_data(value[0], value[1], what=what), "tensors"
    elif isinstance(value, Dataset):
        n = _length(value, what)
        if isinstance(value, TensorDataset) or n == 0 or fits_in_memory(
                n * 4 * input_tensor(_pair(value, 0, what)[0], what).numel()):
            data = dataset_data(value, what)
        else:
            data = dataset_stream(value, what)
        prefix = re.sub(r"[^A-Za-z0-9_.-]", "", type(value).__name__) or "dataset"
        prefix = prefix if prefix[0].isalpha() else "dataset"
    else:
        raise UsageError(f"{what} {value!r:.80}: give a name, a tensor pair (x, y), a "
                         f"lrlab.Data or a torch Dataset")
    shape = "x".join(str(n) for n in (len(data.y), *data.input_shape))
    return f"{prefix}-{shape}-{_digest(data)}", data


def take_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[idx]`` for an index tensor of any shape (a batch ``(b,)``, or one batch per
    member ``(W, b)``): whole rows copied by ``index_select``, 2-4x faster on CPU than
    advanced indexing, with the same result."""
    rows = x.reshape(x.shape[0], -1).index_select(0, idx.reshape(-1))
    return rows.view(*idx.shape, *x.shape[1:])


def fork_rng(device: torch.device):
    """``torch.random.fork_rng`` for work on ``device``: the CPU generator, and the
    device's own when it is a GPU, are restored afterwards."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


# -- mini-batches on the device -----------------------------------------------------------


def default_workers() -> int:
    """DataLoader worker processes where the sweep says 0: half the CPU cores this
    process may use, 1 to 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus // 2))


class _Inputs(torch.utils.data.Dataset):
    """The inputs of a streamed dataset's items as float tensors, a batch at a time (read
    in the workers): through the dataset's ``read_batch(indices)`` where it has one (a
    memory-mapped array gathers a batch in one step), else item by item."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        return input_tensor(_first(self.dataset, i))

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        read_batch = getattr(self.dataset, "read_batch", None)
        if read_batch is not None:
            return read_batch(indices)
        return torch.stack([self[i] for i in indices])


def _batch(x: torch.Tensor) -> torch.Tensor:
    """The DataLoader's ``collate_fn``: :meth:`_Inputs.__getitems__` stacked the batch."""
    return x


class _Plan:
    """A DataLoader's ``batch_sampler``: the batches of the pass it reads next."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@dataclass
class Feeder:
    """Mini-batches of a split's parts, on ``device``.

    In-memory parts are gathered with :func:`take_rows`. A :class:`Stream` is read by a
    ``DataLoader`` with ``workers`` processes (0: :func:`default_workers`), persistent for
    the feeder's life (one pool per dataset), pinned memory on CUDA; it reads exactly the
    batches asked for, in order, so a streamed run draws the same batches as the
    in-memory run of the same data. :meth:`close` ends the workers.
    """

    device: torch.device
    workers: int = 0
    _loaders: dict[int, tuple[Any, Any, _Plan]] = field(default_factory=dict)

    def batches(self, part: Part, batches: Iterable[torch.Tensor]
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` on the device for each index tensor (positions in ``part``)."""
        if not isinstance(part, Stream):
            x, y = part
            for idx in batches:
                yield take_rows(x, idx), take_rows(y, idx)
            return
        positions = [idx.cpu() for idx in batches]
        loader, plan = self._loader(part.dataset)
        plan.batches = [part.indices[p].tolist() for p in positions]
        for xb, p in zip(loader, positions, strict=True):
            yield (xb.to(self.device, non_blocking=True),
                   part.targets[p].to(self.device, non_blocking=True))

    def in_order(self, part: Part, batch_size: int
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The whole of ``part`` in batches of ``batch_size``, in order (an evaluation)."""
        if not isinstance(part, Stream):
            x, y = part
            for start in range(0, len(y), batch_size):
                yield x[start:start + batch_size], y[start:start + batch_size]
            return
        n = len(part)
        yield from self.batches(part, [torch.arange(s, min(s + batch_size, n))
                                       for s in range(0, n, batch_size)])

    def _loader(self, dataset: Any) -> tuple[Any, _Plan]:
        if id(dataset) not in self._loaders:
            from torch.utils.data import DataLoader

            workers = self.workers if self.workers > 0 else default_workers()
            plan = _Plan()
            # its own generator: the workers' seeds are not drawn from the global one
            # (augmentation and dropout draw from that, as in the in-memory run)
            loader = DataLoader(_Inputs(dataset), batch_sampler=plan, num_workers=workers,
                                collate_fn=_batch, generator=torch.Generator(),
                                pin_memory=torch.device(self.device).type == "cuda",
                                persistent_workers=True)
            self._loaders[id(dataset)] = (dataset, loader, plan)  # the dataset kept: its id
        _, loader, plan = self._loaders[id(dataset)]
        return loader, plan

    def close(self) -> None:
        """End the worker processes now (not when the loaders are collected)."""
        for _, loader, _ in self._loaders.values():
            iterator = getattr(loader, "_iterator", None)
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
        self._loaders.clear()
