"""Functional optimizers batched over a member dimension: SGD, Adam, AdamW, RAdam.

Every member's parameters are one row of a flat ``(W, P)`` tensor; each optimizer
updates all rows at once, with each member's own learning rate, momentum, betas, eps and
weight decay as ``(W, 1)`` columns. The arithmetic follows torch.optim's single-tensor
implementations operation by operation (the one CPU uses by default), so a member's
trajectory matches what ``torch.optim`` gives it alone, within floating-point rounding.

:func:`describe` reads which optimizer a run asked for from the optimizer its factory
built (on a dummy parameter), so the hyperparameters are the ones torch would use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# what torch.optim would do that these batched versions do not
UNSUPPORTED_FLAGS = ("maximize", "differentiable", "amsgrad")


@dataclass(frozen=True)
class OptimKind:
    """The structural part of an optimizer: the same for every member of a group."""

    name: str  # "sgd", "adam" or "radam"
    nesterov: bool = False  # sgd only
    decoupled: bool = False  # adam/radam: weight decay applied to the weights (AdamW)


def describe(optimizer: torch.optim.Optimizer) -> tuple[OptimKind, dict[str, float]] | str:
    """``(kind, per-member hyperparameters)`` of a torch optimizer, or why it is unsupported."""
    if len(optimizer.param_groups) != 1:
        return f"{type(optimizer).__name__} with several parameter groups"
    group = optimizer.param_groups[0]
    for flag in UNSUPPORTED_FLAGS:
        if group.get(flag):
            return f"{type(optimizer).__name__}({flag}=True)"
    cls = type(optimizer)
    if cls is torch.optim.SGD:
        if group["dampening"] != 0:
            return "SGD with dampening"
        return (OptimKind("sgd", nesterov=bool(group["nesterov"])),
                {"momentum": float(group["momentum"]),
                 "weight_decay": float(group["weight_decay"])})
    if cls in (torch.optim.Adam, torch.optim.AdamW, torch.optim.RAdam):
        beta1, beta2 = group["betas"]
        name = "radam" if cls is torch.optim.RAdam else "adam"
        decoupled = bool(group.get("decoupled_weight_decay", cls is torch.optim.AdamW))
        return (OptimKind(name, decoupled=decoupled),
                {"beta1": float(beta1), "beta2": float(beta2), "eps": float(group["eps"]),
                 "weight_decay": float(group["weight_decay"])})
    return f"optimizer {cls.__module__}.{cls.__name__}"


class BatchedOptimizer:
    """One optimizer for ``W`` members, each a row of the flat parameter tensor."""

    def __init__(self, kind: OptimKind, hypers: list[dict[str, float]],
                 device: torch.device) -> None:
        self.kind = kind
        self.steps = 0  # steps taken: the same for every member (they step together)
        self.hyper = {k: torch.tensor([[h[k]] for h in hypers], dtype=torch.float64,
                                      device=device) for k in hypers[0]}
        self.state: dict[str, torch.Tensor] = {}
        self._cols: dict[str, torch.Tensor] = {}
        self._refresh()

    def _refresh(self) -> None:
        """float32 copies of the per-member hyperparameters, as torch casts Python floats."""
        self._cols = {k: v.float() for k, v in self.hyper.items()}
        self.any_decay = bool((self.hyper["weight_decay"] != 0).any())
        if self.kind.name == "sgd":
            self.any_momentum = bool((self.hyper["momentum"] != 0).any())
        else:
            self._cols["one_minus_beta1"] = (1 - self.hyper["beta1"]).float()
            self._cols["one_minus_beta2"] = (1 - self.hyper["beta2"]).float()

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the members at ``rows`` (in that order)."""
        self.hyper = {k: v[rows] for k, v in self.hyper.items()}
        self.state = {k: v[rows] for k, v in self.state.items()}
        self._refresh()

    def clear(self, rows: torch.Tensor) -> None:
        """Zero the state of finished members (their rows are no longer used)."""
        for v in self.state.values():
            v[rows] = 0

    @torch.no_grad()
    def step(self, params: torch.Tensor, grads: torch.Tensor, lr: torch.Tensor) -> None:
        """Update ``params`` (W, P) in place from ``grads`` (W, P) at learning rates ``lr``
        (W, 1) float64."""
        self.steps += 1
        if self.kind.name == "sgd":
            self._sgd(params, grads, lr)
        elif self.kind.name == "adam":
            self._adam(params, grads, lr)
        else:
            self._radam(params, grads, lr)

    def _sgd(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> None:
        cols = self._cols
        if self.any_decay:
            g = torch.addcmul(g, p, cols["weight_decay"])  # grad.add(param, alpha=wd)
        if self.any_momentum:
            buf = self.state.get("momentum_buffer")
            if buf is None:
                buf = self.state["momentum_buffer"] = g.detach().clone()
            else:
                buf.mul_(cols["momentum"]).add_(g)
            g = torch.addcmul(g, buf, cols["momentum"]) if self.kind.nesterov else buf
        p.addcmul_(g, (-lr).float())  # param.add_(grad, alpha=-lr)

    def _moments(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """Weight decay and the two moment updates shared by Adam and RAdam; returns the
        gradient as used."""
        cols = self._cols
        if self.any_decay:
            if self.kind.decoupled:
                p.mul_((1 - lr * self.hyper["weight_decay"]).float())
            else:
                g = torch.addcmul(g, p, cols["weight_decay"])
        if "exp_avg" not in self.state:
            self.state["exp_avg"] = torch.zeros_like(p)
            self.state["exp_avg_sq"] = torch.zeros_like(p)
        self.state["exp_avg"].lerp_(g, cols["one_minus_beta1"])
        # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2), same rounding order
        self.state["exp_avg_sq"].mul_(cols["beta2"]).addcmul_(g * cols["one_minus_beta2"], g)
        return g

    def _adam(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> None:
        self._moments(p, g, lr)
        h, step = self.hyper, self.steps
        bias_correction1 = 1 - h["beta1"] ** step
        bias_correction2_sqrt = (1 - h["beta2"] ** step) ** 0.5
        step_size = lr / bias_correction1
        denom = (self.state["exp_avg_sq"].sqrt() / bias_correction2_sqrt.float()) \
            .add_(self._cols["eps"])
        # param.addcdiv_(exp_avg, denom, value=-step_size): value * exp_avg / denom
        p.add_(self.state["exp_avg"] * (-step_size).float() / denom)

    def _radam(self, p: torch.Tensor, g: torch.Tensor, lr: torch.Tensor) -> None:
        self._moments(p, g, lr)
        h, step = self.hyper, self.steps
        beta2 = h["beta2"]
        bias_correction1 = 1 - h["beta1"] ** step
        bias_correction2 = 1 - beta2 ** step
        corrected = self.state["exp_avg"] / bias_correction1.float()
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
        plain = corrected * lr.float()
        rectified = rho_t > 5.0
        if bool(rectified.any()):
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)).clamp(min=0) ** 0.5
            adaptive = self.state["exp_avg_sq"].sqrt().add_(self._cols["eps"]).reciprocal() \
                * (bias_correction2 ** 0.5).float()
            update = torch.where(rectified, plain * adaptive * rect.float(), plain)
        else:
            update = plain
        p.sub_(update)

