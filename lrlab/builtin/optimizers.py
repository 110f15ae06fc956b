"""Built-in optimizers: sgd, adam, adamw, radam (torch.optim).

torch is imported inside each factory, when an optimizer is built: registering them
(``lrlab list``, ``lrlab plugins``) reads only their signatures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lrlab.errors import UsageError
from lrlab.markers import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    import torch


def sgd(params, lr: float, *, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Stochastic gradient descent, with optional (Nesterov) momentum and L2 weight decay."""
    import torch

    if nesterov and momentum <= 0:
        raise UsageError("optimizer sgd: nesterov=True needs a momentum > 0")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov,
                           weight_decay=weight_decay)


def adam(params, lr: float, *, beta1: float = 0.9, beta2: float = 0.999,
         eps: float = 1e-8, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba 2015): adaptive moments; weight decay added to the gradient."""
    import torch

    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps,
                            weight_decay=weight_decay)


def adamw(params, lr: float, *, beta1: float = 0.9, beta2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 0.01) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay."""
    import torch

    return torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps,
                             weight_decay=weight_decay)


def radam(params, lr: float, *, beta1: float = 0.9, beta2: float = 0.999,
          eps: float = 1e-8, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """RAdam (Liu et al. 2020): Adam with the variance of the adaptive rate rectified."""
    import torch

    return torch.optim.RAdam(params, lr=lr, betas=(beta1, beta2), eps=eps,
                             weight_decay=weight_decay)


@hookimpl
def lrlab_register_optimizers(register):
    register("sgd", sgd)
    register("adam", adam)
    register("adamw", adamw)
    register("radam", radam)
