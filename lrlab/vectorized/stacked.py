"""Many copies of one architecture as one tensor, trained and evaluated with torch.func.

The parameters of ``W`` members are the rows of one flat ``(W, P)`` tensor. A training
step computes every member's gradient on its own batch with ``vmap(grad(loss))`` over
``functional_call`` of a template module; the function is traced once per batch shape
into a graph of plain aten ops (``make_fx``), so a step costs the batched kernels and
little Python. Clean evaluation runs every member on the same inputs in large batches
under ``torch.inference_mode()``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap


class StackedModel:
    """``W`` members of one architecture: a flat parameter tensor and a template module."""

    def __init__(self, models: list[nn.Module], loss_fn: Callable, *, stochastic: bool = False,
                 amp: bool = False, compile: bool = False) -> None:
        self.template = models[0]
        self.loss_fn = loss_fn
        named = list(self.template.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.sizes = [math.prod(s) for s in self.shapes]
        with torch.no_grad():
            self.flat = torch.stack([torch.cat([p.detach().reshape(-1)
                                                for p in m.parameters()]) for m in models])
            self.buffers = {n: torch.stack([dict(m.named_buffers())[n].detach() for m in models])
                            for n, _ in self.template.named_buffers()}
        self.randomness = "different" if stochastic else "error"
        self.amp = amp and self.flat.device.type == "cuda"
        self.compile = compile
        self._steps: dict[tuple[int, ...], Callable] = {}
        self.traced: bool | None = None  # whether make_fx traced the step (None: not yet)

    @property
    def width(self) -> int:
        return self.flat.shape[0]

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each parameter as a ``(W, *shape)`` view into ``flat``."""
        out, start = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes, strict=True):
            out[name] = flat[:, start:start + size].view(flat.shape[0], *shape)
            start += size
        return out

    def row(self, index: int) -> dict[str, torch.Tensor]:
        """One member's parameters and buffers, as a state dict of the template."""
        state = {n: v[0] for n, v in self.views(self.flat[index:index + 1]).items()}
        state.update({n: b[index] for n, b in self.buffers.items()})
        return state

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the members at ``rows`` (in that order)."""
        self.flat = self.flat[rows]
        self.buffers = {n: b[rows] for n, b in self.buffers.items()}

    # -- training --------------------------------------------------------------------------

    def _loss(self, params, buffers, x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            logits = functional_call(self.template, (params, buffers), (x,))
        return self.loss_fn(logits.float(), y)

    def _flat_grads(self, flat, buffers, x, y):
        grads = vmap(grad(self._loss), randomness=self.randomness)(self.views(flat), buffers,
                                                                    x, y)
        return torch.cat([grads[n].reshape(flat.shape[0], -1) for n in self.names], dim=1)

    def _step_fn(self, x: torch.Tensor, y: torch.Tensor) -> Callable:
        """The gradient function for this batch shape, traced on first use."""
        key = (self.width, *x.shape[1:])
        fn = self._steps.get(key)
        if fn is None:
            from torch.fx.experimental.proxy_tensor import make_fx

            self.template.train()
            try:
                def step(flat, buffers, xb, yb):  # make_fx wants a plain function
                    return self._flat_grads(flat, buffers, xb, yb)

                fn = make_fx(step, tracing_mode="fake")(self.flat, self.buffers, x, y)
                self.traced = True
            except Exception:  # a model make_fx cannot trace still runs under eager vmap
                fn, self.traced = self._flat_grads, False
            if self.compile:
                fn = torch.compile(fn, dynamic=False)
            self._steps[key] = fn
        return fn

    def grads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Every member's gradient ``(W, P)`` of its mean loss on its batch ``x[w], y[w]``."""
        return self._step_fn(x, y)(self.flat, self.buffers, x, y)

    # -- evaluation ------------------------------------------------------------------------

    @torch.inference_mode()
    def evaluate(self, flat: torch.Tensor, buffers: dict[str, torch.Tensor], x: torch.Tensor,
                 y: torch.Tensor, batch_size: int) -> tuple[list[float], list[float]]:
        """Mean loss and accuracy of each row of ``flat`` on ``(x, y)``, in eval mode."""
        was_training = self.template.training
        self.template.eval()
        width = flat.shape[0]
        params = self.views(flat)

        def logits_of(p, b, xb):
            return functional_call(self.template, (p, b), (xb,))

        forward = vmap(logits_of, in_dims=(0, 0, None))
        losses = vmap(self.loss_fn, in_dims=(0, None))
        total = torch.zeros(width, device=x.device, dtype=torch.float64)
        correct = torch.zeros(width, device=x.device, dtype=torch.long)
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            logits = forward(params, buffers, xb).float()
            total += losses(logits, yb).double() * len(yb)
            correct += (logits.argmax(-1) == yb).sum(-1)
        self.template.train(was_training)
        n = len(y)
        return (total / n).tolist(), [c / n for c in correct.tolist()]


def inspect_model(model: nn.Module, x: torch.Tensor) -> tuple[bool, bool]:
    """``(updates_buffers, stochastic)`` of ``model`` in training mode on the batch ``x``.

    A model that changes its buffers in a training forward pass (BatchNorm's running
    statistics) cannot be vmapped; one whose output varies between two passes over the
    same batch (dropout) draws randomness the local executor draws differently.
    """
    probe = copy.deepcopy(model).train()
    before = {n: b.clone() for n, b in probe.named_buffers()}
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        first = probe(x)
        updates = any(not torch.equal(before[n], b) for n, b in probe.named_buffers())
        torch.manual_seed(1)
        second = probe(x)
    return updates, not torch.equal(first, second)


def check_vmap(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor,
               stochastic: bool) -> str | None:
    """Why ``vmap`` cannot train or evaluate ``model`` (None when it can), tried eagerly on
    two copies and a small batch before any run of the group starts."""
    stacked = StackedModel([model, copy.deepcopy(model)], loss_fn, stochastic=stochastic)
    xb, yb = torch.stack([x, x]), torch.stack([y, y])
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            stacked.template.train()
            stacked._flat_grads(stacked.flat, stacked.buffers, xb, yb)
            stacked.evaluate(stacked.flat, stacked.buffers, x, y, len(y))
    except Exception as exc:  # any failure means: train this group one run at a time
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"vmap cannot run the model ({type(exc).__name__}: {text[:120]})"
    return None
