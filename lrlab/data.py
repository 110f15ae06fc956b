"""Datasets as tensors, and the deterministic stratified train/val/test split."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lrlab.errors import UsageError


@dataclass
class Data:
    """What a dataset factory returns.

    ``x``: float tensor ``(N, C, H, W)`` scaled to about [0, 1]; ``y``: int64 class
    indices ``(N,)``; ``classes``: a name per class. ``test`` optionally holds the
    dataset's own test split ``(x, y)`` (MNIST's 10,000 images, say): then the split's
    test fraction is not taken from ``x``.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    test: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class Split:
    """Train, validation and test tensors, on one device."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    classes: list[str]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> Split:
        def mv(pair):
            return pair[0].to(device), pair[1].to(device)

        return Split(mv(self.train), mv(self.val), mv(self.test), self.classes)

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train[1]), len(self.val[1]), len(self.test[1])


def check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f <= 0 for f in fractions):
        raise UsageError(f"split must be three positive fractions train,val,test; "
                         f"got {fractions!r}")
    total = sum(fractions)
    if abs(total - 1.0) > 1e-6:
        raise UsageError(f"split fractions must add up to 1; got {fractions!r} (sum {total:g})")
    return tuple(float(f) for f in fractions)  # type: ignore[return-value]


def check_finite(data: Data, name: str) -> None:
    """Refuse a dataset whose features hold NaN or infinities (one line, their count):
    every run on it would only diverge."""
    parts = [data.x] + ([data.test[0]] if data.test is not None else [])
    bad = sum(int((~torch.isfinite(x)).sum()) for x in parts
              if isinstance(x, torch.Tensor) and x.is_floating_point())
    if bad:
        samples = sum(int((~torch.isfinite(x.reshape(len(x), -1))).any(1).sum())
                      for x in parts if isinstance(x, torch.Tensor) and x.is_floating_point())
        raise UsageError(f"dataset '{name}' has {bad} non-finite feature value(s) (NaN or "
                         f"infinity) in {samples} sample(s): every run on it would diverge; "
                         f"clean or impute them first")


def stratified_split(data: Data, fractions: tuple[float, float, float],
                     seed: int = 0) -> Split:
    """Split per class, so each split keeps the class proportions; same seed, same split.

    Within each class the samples are shuffled with ``seed`` and cut at the fractions;
    the parts are concatenated in class order and then shuffled once more.
    """
    train_f, val_f, test_f = check_fractions(fractions)
    if data.test is not None:  # the dataset brings its own test split
        train_f, val_f, test_f = train_f / (train_f + val_f), val_f / (train_f + val_f), 0.0
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[], [], []]
    y = data.y.cpu()
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

    def take(ix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return data.x[ix], data.y[ix]

    test = data.test if data.test is not None else take(picks[2])
    split = Split(take(picks[0]), take(picks[1]), test, list(data.classes))
    if min(split.sizes()) == 0:
        raise UsageError(f"split {fractions!r} leaves an empty part on {len(y)} samples")
    return split


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
