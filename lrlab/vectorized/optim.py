"""Functional optimizers batched over a member dimension: SGD, Adam, AdamW, RAdam.

Each parameter tensor holds all ``W`` members' copies, seen here as a chunk ``(W, size)``;
each optimizer updates every member at once with a few ``torch._foreach_*`` calls, with
each member's own learning rate, momentum, betas, eps and weight decay as ``(W, 1)``
columns. The arithmetic follows torch.optim's single-tensor implementations operation by
operation (what CPU uses by default), so a member's trajectory is the one
``torch.optim`` gives it alone: bit for bit on CPU, within rounding elsewhere.

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
    """One optimizer for ``W`` members; each parameter tensor is a chunk ``(W, size)``.

    The parameters are handed in as a list of chunks (views into the members' flat
    parameter rows), the gradients as a matching list; each update is a few
    ``torch._foreach_*`` calls over the chunks, with a member's hyperparameters as a
    ``(W, 1)`` column that broadcasts along its row. The state is kept flat ``(W, P)``
    (chunked the same way), so finished members can be dropped by row, and one
    member's state checkpointed by row (:meth:`row_state`, :meth:`load_rows`).
    """

    def __init__(self, kind: OptimKind, hypers: list[dict[str, float]], sizes: list[int],
                 device: torch.device) -> None:
        self.kind = kind
        self.device = device
        self.steps = 0  # steps taken: the same for every member (they step together)
        self.sizes = sizes
        self.hyper = {k: torch.tensor([[h[k]] for h in hypers], dtype=torch.float64,
                                      device=device) for k in hypers[0]}
        self.state: dict[str, torch.Tensor] = {}  # name -> (W, P)
        self.rectified_once = False  # RAdam: has any member's rho_t passed 5
        self.chunks: dict[str, list[torch.Tensor]] = {}  # name -> views of its chunks
        self._refresh()

    def _refresh(self) -> None:
        """float32 columns of the per-member hyperparameters (torch casts Python floats to
        the parameters' dtype), repeated once per chunk for the foreach calls."""
        cols = {k: v.float() for k, v in self.hyper.items()}
        self.any_decay = bool((self.hyper["weight_decay"] != 0).any())
        if self.kind.name == "sgd":
            self.any_momentum = bool((self.hyper["momentum"] != 0).any())
        else:
            cols["one_minus_beta1"] = (1 - self.hyper["beta1"]).float()
            cols["one_minus_beta2"] = (1 - self.hyper["beta2"]).float()
        self.cols = {k: self.per_chunk(v) for k, v in cols.items()}
        self.chunks = {k: self.split(v) for k, v in self.state.items()}

    def per_chunk(self, column: torch.Tensor) -> list[torch.Tensor]:
        return [column] * len(self.sizes)

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return list(flat.split(self.sizes, dim=1))

    def _state(self, name: str, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
        """The state ``name``, created from ``chunks`` (copied) on first use."""
        if name not in self.state:
            self.state[name] = torch.cat(chunks, dim=1)
            self.chunks[name] = self.split(self.state[name])
        return self.chunks[name]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the members at ``rows`` (in that order)."""
        self.hyper = {k: v[rows] for k, v in self.hyper.items()}
        self.state = {k: v[rows] for k, v in self.state.items()}
        self._refresh()

    def row_state(self, row: int) -> dict[str, torch.Tensor]:
        """One member's state (a copy), to checkpoint it."""
        return {k: v[row].clone() for k, v in self.state.items()}

    def load_rows(self, states: list[dict[str, torch.Tensor]], rows: list[int],
                  steps: int) -> None:
        """Continue from :meth:`row_state` of each member, ``states[i]`` into row
        ``rows[i]``, all ``steps`` steps in; the other rows are zeroed (finished)."""
        names = set(states[0])
        if any(set(r) != names for r in states):
            raise ValueError("the members' optimizer states differ in kind")
        width, total = next(iter(self.hyper.values())).shape[0], sum(self.sizes)
        index = torch.tensor(rows, device=self.device)
        state = {}
        for k in sorted(names):
            values = torch.stack([r[k] for r in states]).to(self.device)
            if values.shape != (len(rows), total):
                raise ValueError("an optimizer state does not fit the members' parameters")
            state[k] = values.new_zeros((width, total))
            state[k][index] = values
        self.state, self.steps = state, steps
        self._refresh()

    def clear(self, rows: torch.Tensor) -> None:
        """Zero the state of finished members (their rows are no longer used)."""
        for v in self.state.values():
            v[rows] = 0

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor],
             lr: torch.Tensor) -> None:
        """Update the chunks ``params`` in place from ``grads`` at learning rates ``lr``
        (a float64 column ``(W, 1)``)."""
        self.steps += 1
        if self.kind.name == "sgd":
            self._sgd(params, grads, lr)
        elif self.kind.name == "adam":
            self._adam(params, grads, lr)
        else:
            self._radam(params, grads, lr)

    def _sgd(self, p, g, lr) -> None:
        cols = self.cols
        if self.any_decay:  # grad.add(param, alpha=weight_decay)
            g = torch._foreach_addcmul(g, p, cols["weight_decay"])
        if self.any_momentum:
            first = "momentum_buffer" not in self.state
            buf = self._state("momentum_buffer", g)  # buf = grad.clone() at the first step
            if not first:  # buf.mul_(momentum).add_(grad)
                torch._foreach_mul_(buf, cols["momentum"])
                torch._foreach_add_(buf, g)
            g = torch._foreach_addcmul(g, buf, cols["momentum"]) if self.kind.nesterov else buf
        torch._foreach_addcmul_(p, g, self.per_chunk((-lr).float()))  # add_(g, alpha=-lr)

    def _moments(self, p, g, lr):
        """Weight decay and the moment updates shared by Adam and RAdam."""
        cols = self.cols
        if self.any_decay:
            if self.kind.decoupled:  # param.mul_(1 - lr * weight_decay)
                torch._foreach_mul_(p, self.per_chunk(
                    (1 - lr * self.hyper["weight_decay"]).float()))
            else:
                g = torch._foreach_addcmul(g, p, cols["weight_decay"])
        exp_avg = self._state("exp_avg", [torch.zeros_like(c) for c in p])
        exp_avg_sq = self._state("exp_avg_sq", [torch.zeros_like(c) for c in p])
        torch._foreach_lerp_(exp_avg, g, cols["one_minus_beta1"])
        # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2), same rounding order
        torch._foreach_mul_(exp_avg_sq, cols["beta2"])
        torch._foreach_addcmul_(exp_avg_sq, torch._foreach_mul(g, cols["one_minus_beta2"]), g)
        return exp_avg, exp_avg_sq

    def _adam(self, p, g, lr) -> None:
        exp_avg, exp_avg_sq = self._moments(p, g, lr)
        h, step = self.hyper, self.steps
        bias_correction1 = 1 - h["beta1"] ** step
        bias_correction2_sqrt = (1 - h["beta2"] ** step) ** 0.5
        step_size = lr / bias_correction1
        # denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, self.per_chunk(bias_correction2_sqrt.float()))
        torch._foreach_add_(denom, self.cols["eps"])
        # param.addcdiv_(exp_avg, denom, value=-step_size) computes value * exp_avg / denom
        update = torch._foreach_mul(exp_avg, self.per_chunk((-step_size).float()))
        torch._foreach_div_(update, denom)
        torch._foreach_add_(p, update)

    def _radam(self, p, g, lr) -> None:
        exp_avg, exp_avg_sq = self._moments(p, g, lr)
        h, step = self.hyper, self.steps
        beta2 = h["beta2"]
        bias_correction1 = (1 - h["beta1"] ** step).float()
        bias_correction2 = 1 - beta2 ** step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
        rectified = rho_t > 5.0
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                / ((rho_inf - 4) * (rho_inf - 2) * rho_t)).clamp(min=0) ** 0.5
        # rho_t only grows with the step: once rectified, always (decided on the host, so
        # a GPU is not synchronized every step)
        if not self.rectified_once:
            self.rectified_once = bool(rectified.any())
        any_rectified = self.rectified_once
        for param, avg, avg_sq in zip(p, exp_avg, exp_avg_sq, strict=True):
            plain = avg / bias_correction1 * lr.float()  # bias-corrected exp_avg * lr
            if any_rectified:
                adaptive = avg_sq.sqrt().add_(self.cols["eps"][0]).reciprocal() \
                    * (bias_correction2 ** 0.5).float()
                plain = torch.where(rectified, plain * adaptive * rect.float(), plain)
            param.sub_(plain)
