"""lrlab-classic: LeNet-5 and focal loss, registered through lrlab's hooks."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

import lrlab

__version__ = "0.1.0"


class LeNet5(nn.Module):
    """LeNet-5 on 32x32 inputs; smaller inputs are padded (28x28) or resized."""

    def __init__(self, channels: int, size: tuple[int, int], num_classes: int,
                 activation: str, pool: str) -> None:
        super().__init__()
        act = nn.Tanh if activation == "tanh" else nn.ReLU
        sub = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
        self.size = size
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5), act(), sub(2),  # C1 -> 6@28x28, S2 -> 6@14x14
            nn.Conv2d(6, 16, 5), act(), sub(2),  # C3 -> 16@10x10, S4 -> 16@5x5
            nn.Conv2d(16, 120, 5), act(),  # C5 -> 120@1x1
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(120, 84), act(),
                                        nn.Linear(84, num_classes))  # F6, output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size == (28, 28):
            x = F.pad(x, (2, 2, 2, 2))  # the paper's 28x28 digits centred in 32x32
        elif self.size != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        return self.classifier(self.features(x))


def lenet5(input_shape: tuple[int, ...], num_classes: int, *,
           activation: Literal["tanh", "relu"] = "tanh",
           pool: Literal["avg", "max"] = "avg") -> nn.Module:
    """LeNet-5 (LeCun et al. 1998): conv 6@5x5, pool, conv 16@5x5, pool, 120, 84, out."""
    channels, height, width = input_shape
    return LeNet5(channels, (height, width), num_classes, activation, pool)


def focal(num_classes: int, *, gamma: float = 2.0, alpha: float = 1.0):
    """Focal loss (Lin et al. 2017): cross-entropy down-weighted by (1 - p_t)^gamma."""
    if gamma < 0 or alpha <= 0:
        raise lrlab.UsageError(f"focal: gamma must be >= 0 and alpha > 0, got "
                               f"gamma={gamma}, alpha={alpha}")

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
        weight = (1 - log_p.exp()).clamp(min=0) ** gamma
        return -(alpha * weight * log_p).mean()

    return loss


@lrlab.hookimpl
def lrlab_register_models(register):
    register("lenet5", lenet5)


@lrlab.hookimpl
def lrlab_register_losses(register):
    register("focal", focal)
