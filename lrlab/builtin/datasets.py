"""Built-in datasets: scikit-learn's digits (embedded), and MNIST, Fashion-MNIST, CIFAR-10
through torchvision from a data root (downloaded only when asked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lrlab import hookimpl
from lrlab.data import Data
from lrlab.errors import UsageError


def digits(root: str) -> Data:
    """scikit-learn's 1,797 8x8 handwritten digits, bundled with it: no download."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.long)
    return Data(x, y, [str(c) for c in bunch.target_names])


def _subset(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0):
    """A stratified subset of ``n`` samples (0 keeps all)."""
    if n <= 0 or n >= len(y):
        return x, y
    gen = torch.Generator().manual_seed(seed)
    picks = []
    classes = torch.unique(y)
    for i, c in enumerate(classes.tolist()):
        idx = torch.nonzero(y == c).flatten()
        share = n // len(classes) + (1 if i < n % len(classes) else 0)
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:share]])
    ix = torch.cat(picks).sort().values
    return x[ix], y[ix]


def _torchvision(cls_name: str, folder: str, root: str, download: bool, subset: int) -> Data:
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    parts = []
    for train in (True, False):
        try:
            ds = cls(root=root, train=train, download=download)
        except RuntimeError as exc:
            where = Path(root) / folder
            raise UsageError(f"{cls_name} files not found under {where} ({exc}); pass "
                             f"--download to fetch them or --data-root to point at them") from None
        data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
        x = data.float() / 255.0
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
        y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
        parts.append((x, y, list(ds.classes)))
    (x, y, classes), (xt, yt, _) = parts
    x, y = _subset(x, y, subset)
    xt, yt = _subset(xt, yt, subset // 6 if subset else 0)
    return Data(x, y, [str(c) for c in classes], test=(xt, yt))


def mnist(root: str, *, download: bool = False, subset: int = 0) -> Data:
    """MNIST handwritten digits, 28x28 (torchvision): 60k train + its own 10k test split."""
    return _torchvision("MNIST", "MNIST/raw", root, download, subset)


def fashion_mnist(root: str, *, download: bool = False, subset: int = 0) -> Data:
    """Fashion-MNIST clothing images, 28x28 (torchvision): 60k train + its own 10k test."""
    return _torchvision("FashionMNIST", "FashionMNIST/raw", root, download, subset)


def cifar10(root: str, *, download: bool = False, subset: int = 0) -> Data:
    """CIFAR-10 colour images, 3x32x32 (torchvision): 50k train + its own 10k test."""
    return _torchvision("CIFAR10", "cifar-10-batches-py", root, download, subset)


@hookimpl
def lrlab_register_datasets(register):
    register("digits", digits)
    register("mnist", mnist)
    register("fashion-mnist", fashion_mnist)
    register("cifar10", cifar10)
