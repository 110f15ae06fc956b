"""Built-in augmentations, batched and on the device, fresh randomness per sample.

Each takes a batch ``(N, C, H, W)`` and draws its random numbers from torch's global
generator (seeded per run), so a run's augmentations repeat with its seed. torch is
imported inside each factory, when an augmentation is built: registering them (``lrlab
list``, ``lrlab plugins``) reads only their signatures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lrlab.errors import UsageError
from lrlab.markers import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(f"augmentation {message}")


def _per_sample(x: torch.Tensor, p: float) -> torch.Tensor:
    """A boolean mask ``(N, 1, 1, 1)``: which samples the transform applies to."""
    import torch

    return (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p)


def none(input_shape: tuple[int, ...]):
    """No augmentation."""
    return lambda x: x


def flip(input_shape: tuple[int, ...], *, p: float = 0.5):
    """Mirror each image left-right with probability `p`."""
    _check(0 <= p <= 1, f"flip: p must be in [0, 1], got {p}")
    import torch

    def apply(x: torch.Tensor) -> torch.Tensor:
        return torch.where(_per_sample(x, p), x.flip(-1), x)

    return apply


def crop(input_shape: tuple[int, ...], *, padding: int = 2):
    """Pad by `padding` pixels (zeros), then crop back at a random offset per image."""
    _check(padding >= 0, f"crop: padding must be >= 0, got {padding}")
    import torch
    from torchvision.transforms import v2  # imported here: torchvision loads slowly

    def apply(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        padded = v2.functional.pad(x, [padding] * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (n, h)
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (n, w)
        # two gathers (rows, then columns): 2-3x faster than one four-tensor index
        out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
        return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))

    return apply


def rotate(input_shape: tuple[int, ...], *, degrees: float = 15.0):
    """Rotate each image by a random angle in [-degrees, degrees] (bilinear, zero fill)."""
    _check(degrees >= 0, f"rotate: degrees must be >= 0, got {degrees}")
    import torch
    import torch.nn.functional as F

    def apply(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        angle = (torch.rand(n, device=x.device) * 2 - 1) * math.radians(degrees)
        cos, sin = angle.cos(), angle.sin()
        zero = torch.zeros_like(cos)
        # a rotation in pixels, written in affine_grid's [-1, 1] coordinates (w != h too);
        # positive angles turn counter-clockwise, as torchvision's rotate does
        theta = torch.stack([torch.stack([cos, -sin * (h / w), zero], 1),
                             torch.stack([sin * (w / h), cos, zero], 1)], 1).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)

    return apply


def noise(input_shape: tuple[int, ...], *, std: float = 0.1):
    """Add Gaussian noise of standard deviation `std` to every pixel."""
    _check(std >= 0, f"noise: std must be >= 0, got {std}")
    import torch

    def apply(x: torch.Tensor) -> torch.Tensor:
        return x + std * torch.randn_like(x)

    return apply


def erase(input_shape: tuple[int, ...], *, p: float = 0.5, scale: float = 0.2):
    """Random erasing: with probability `p`, zero a random square of `scale` of the image area."""
    _check(0 <= p <= 1, f"erase: p must be in [0, 1], got {p}")
    _check(0 < scale <= 1, f"erase: scale must be in (0, 1], got {scale}")
    import torch

    def apply(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        side_h = max(1, round(h * math.sqrt(scale)))
        side_w = max(1, round(w * math.sqrt(scale)))
        top = torch.randint(0, h - side_h + 1, (n, 1, 1, 1), device=x.device)
        left = torch.randint(0, w - side_w + 1, (n, 1, 1, 1), device=x.device)
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        box = (rows >= top) & (rows < top + side_h) & (cols >= left) & (cols < left + side_w)
        return torch.where(box & _per_sample(x, p), torch.zeros_like(x), x)

    return apply


@hookimpl
def lrlab_register_augmentations(register):
    register("none", none)
    register("flip", flip)
    register("crop", crop)
    register("rotate", rotate)
    register("noise", noise)
    register("erase", erase)
