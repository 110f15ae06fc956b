"""Built-in datasets: scikit-learn's digits (embedded), and MNIST, Fashion-MNIST, CIFAR-10
through torchvision from a data root (downloaded only when asked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lrlab.data import Data
from lrlab.errors import UsageError
from lrlab.markers import hookimpl


def digits(root: str) -> Data:
    """scikit-learn's 1,797 8x8 handwritten digits, bundled with it: no download."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    return Data(x, y, [str(c) for c in bunch.target_names])


def stratified_subset(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0):
    """``n`` samples drawn per class in the classes' proportions (0 keeps all).

    Each class gets its share ``n * count / total`` rounded down, and the samples left
    over go to the classes with the largest remainders, so every class is within one
    sample of its exact share. Same seed, same subset; the original order is kept.
    """
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
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    where = Path(root) / folder
    parts = []
    for train in (True, False):
        try:
            ds = cls(root=root, train=train, download=download)
        except RuntimeError as exc:
            if download:
                raise UsageError(f"{cls_name} could not be downloaded to {where}: "
                                 f"{_one_line(exc)}") from None
            raise UsageError(f"{cls_name} files not found (or not intact) in {where}: pass "
                             f"--download to fetch them, or --data-root to point at the "
                             f"folder that holds {folder}") from None
        except (AssertionError, OSError, ValueError, EOFError) as exc:
            raise UsageError(f"{cls_name} files in {where} could not be read: "
                             f"{_one_line(exc) or type(exc).__name__}") from None
        data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
        y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
        parts.append((data, y, list(ds.classes)))  # still uint8: subset first, then convert
    (x, y, classes), (xt, yt, _) = parts
    if subset:  # the test split shrinks in the same ratio as the training set
        n_test = max(len(classes), round(subset * len(yt) / len(y)))
        x, y = stratified_subset(x, y, subset)
        xt, yt = stratified_subset(xt, yt, n_test)
    return Data(_images(x), y, [str(c) for c in classes], test=(_images(xt), yt))


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


@hookimpl
def lrlab_register_datasets(register):
    register("digits", digits)
    register("mnist", mnist)
    register("fashion-mnist", fashion_mnist)
    register("cifar10", cifar10)
