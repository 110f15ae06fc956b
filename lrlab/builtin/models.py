"""Built-in models: linear, mlp, cnn, resnet18.

torch is imported inside each factory, when a model is built: registering them (``lrlab
list``, ``lrlab plugins``) reads only their signatures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lrlab.errors import UsageError
from lrlab.markers import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def linear(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Logistic regression: one linear layer on the flattened input."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


def mlp(input_shape: tuple[int, ...], num_classes: int, *, width: int = 128,
        depth: int = 2, dropout: float = 0.0) -> nn.Module:
    """Multi-layer perceptron: `depth` hidden ReLU layers of `width` units."""
    from torch import nn

    if width < 1 or depth < 0 or not 0 <= dropout < 1:
        raise UsageError(f"model mlp: needs width >= 1, depth >= 0, 0 <= dropout < 1; got "
                         f"width={width}, depth={depth}, dropout={dropout}")
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


def cnn(input_shape: tuple[int, ...], num_classes: int, *, channels: int = 32,
        dropout: float = 0.0) -> nn.Module:
    """Small conv net: two 3x3 conv blocks (c, 2c channels), global pooling, a linear head."""
    from torch import nn

    if channels < 1 or not 0 <= dropout < 1:
        raise UsageError(f"model cnn: needs channels >= 1 and 0 <= dropout < 1; got "
                         f"channels={channels}, dropout={dropout}")
    c = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(2 * channels, num_classes))


def resnet18(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """torchvision ResNet-18, random init, stem adapted to small images (3x3 conv, no max-pool)."""
    from torch import nn
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1,
                            bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


@hookimpl
def lrlab_register_models(register):
    register("linear", linear)
    register("mlp", mlp)
    register("cnn", cnn)
    register("resnet18", resnet18)

