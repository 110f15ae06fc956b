"""Many copies of one architecture, trained and evaluated together with torch.func.

Each parameter of the architecture is one tensor ``(W, *shape)`` holding all ``W``
members' copies (contiguous: batched matmuls run markedly slower on strided slices of
one flat buffer). A training step computes every member's gradient on its own batch
with ``vmap(grad(loss))`` over ``functional_call`` of a template module; the function is
traced once per batch shape into a graph of plain aten ops (``make_fx``), so a step
costs the batched kernels and little Python. Clean evaluation runs every member on the
same inputs in large batches under ``torch.inference_mode()``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.utils._pytree import tree_leaves

from lrlab.data import fork_rng
from lrlab.vectorized.graph import simplify

Params = dict[str, torch.Tensor]  # parameter (or buffer) name -> (W, *shape)


class StackedModel:
    """``W`` members of one architecture: stacked parameters and a template module."""

    def __init__(self, models: list[nn.Module], loss_fn: Callable, *, stochastic: bool = False,
                 amp: bool = False, compile: bool = False) -> None:
        self.template = models[0].train()  # training mode, except inside evaluate()
        self.loss_fn = loss_fn
        self.names = [n for n, _ in self.template.named_parameters()]
        with torch.no_grad():
            self.params = self._stack([dict(m.named_parameters()) for m in models])
            self.buffers = self._stack([dict(m.named_buffers()) for m in models])
        self.sizes = [p[0].numel() for p in self.params.values()]
        self.randomness = "different" if stochastic else "error"
        self.amp = amp and self.device.type == "cuda"
        self.compile = compile
        self._traces: dict[tuple, Callable] = {}

    @staticmethod
    def _stack(states: list[dict[str, torch.Tensor]]) -> Params:
        return {n: torch.stack([s[n].detach() for s in states]) for n in states[0]}

    @property
    def device(self) -> torch.device:
        """Where the members' parameters live."""
        return next(iter(self.params.values())).device

    @property
    def width(self) -> int:
        """How many members (rows) the tensors hold, finished ones included."""
        return next(iter(self.params.values())).shape[0]

    @property
    def chunks(self) -> list[torch.Tensor]:
        """Each parameter as a ``(W, size)`` view, in the order of :meth:`grads`."""
        return [p.view(p.shape[0], -1) for p in self.params.values()]

    def snapshot(self, index: int) -> Params:
        """A copy of one member's parameters."""
        return {n: p[index].clone() for n, p in self.params.items()}

    def take(self, rows: torch.Tensor) -> tuple[Params, Params]:
        """The parameters and buffers of the members at ``rows`` (copies)."""
        return ({n: p[rows] for n, p in self.params.items()},
                {n: b[rows] for n, b in self.buffers.items()})

    @torch.no_grad()
    def state_dicts(self, params: Params, buffers: Params) -> list[dict[str, torch.Tensor]]:
        """Each row of ``params`` and ``buffers`` (as :meth:`take` gives them) as its
        member's ``state_dict``, CPU copies under the keys ``nn.Module.state_dict`` writes
        for the architecture: a shared parameter under each of its names, non-persistent
        buffers left out, a module's extra state as the template holds it."""
        stacked = {**params, **buffers}
        owner = {id(t): n for n, t in (*self.template.named_parameters(),
                                       *self.template.named_buffers())}
        template = self.template.state_dict(keep_vars=True)
        width = next(iter(params.values())).shape[0]
        out = []
        for row in range(width):
            state: dict[str, torch.Tensor] = {}
            for key, value in template.items():
                name = owner.get(id(value)) if isinstance(value, torch.Tensor) else None
                state[key] = stacked[name][row].detach().to("cpu", copy=True) \
                    if name in stacked else value
            out.append(state)
        return out

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the members at ``rows`` (in that order)."""
        self.params, self.buffers = self.take(rows)

    @torch.no_grad()
    def spread(self, rows: list[int], width: int) -> None:
        """Move the members to ``rows`` of ``width`` rows (a checkpoint's layout); the
        other rows hold zero parameters and the first member's buffers, as finished rows
        do until the next :meth:`select`."""
        index = torch.tensor(rows, device=self.device)

        def wide(t: torch.Tensor, fill: torch.Tensor | None) -> torch.Tensor:
            out = t.new_zeros((width, *t.shape[1:])) if fill is None else \
                fill.expand(width, *t.shape[1:]).clone()
            out[index] = t
            return out

        self.params = {n: wide(p, None) for n, p in self.params.items()}
        self.buffers = {n: wide(b, b[:1]) for n, b in self.buffers.items()}

    @torch.no_grad()
    def zero(self, rows: torch.Tensor) -> None:
        """Zero the parameters of finished members (kept only until the next select)."""
        for p in self.params.values():
            p[rows] = 0

    # -- training --------------------------------------------------------------------------

    def _loss(self, params, buffers, x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            logits = functional_call(self.template, (params, buffers), (x,))
        return self.loss_fn(logits.float(), y)

    def _grads(self, params, buffers, x, y):
        grads, losses = vmap(grad_and_value(self._loss), randomness=self.randomness)(
            params, buffers, x, y)
        return [grads[n].reshape(x.shape[0], -1) for n in self.names], losses

    def _run(self, fn: Callable, args: tuple, trace: bool):
        """``fn(*args)``, through a graph of aten ops traced by make_fx and cached per input
        shapes when ``trace`` says it is called often enough to repay the tracing."""
        key = (fn.__name__, *(tuple(a.shape) for a in tree_leaves(args)))
        traced = self._traces.get(key)
        if traced is None and trace:
            from torch.fx.experimental.proxy_tensor import make_fx

            def plain(*inputs):  # make_fx wants a plain function
                return fn(*inputs)

            try:
                traced = simplify(make_fx(plain, tracing_mode="fake")(*args))
            except Exception:  # a model make_fx cannot trace still runs under eager vmap
                traced = fn
            if self.compile:
                traced = torch.compile(traced, dynamic=False)
            self._traces[key] = traced
        return (fn if traced is None else traced)(*args)

    def grads(self, x: torch.Tensor, y: torch.Tensor,
              trace: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every member's gradient of its mean loss on its batch ``x[w], y[w]``, one
        ``(W, size)`` tensor per parameter (the layout of :attr:`chunks`), and the losses
        ``(W,)``."""
        return self._run(self._grads, (self.params, self.buffers, x, y), trace)

    # -- evaluation ------------------------------------------------------------------------

    def _logits(self, params, buffers, x):
        def one(p, b, xb):
            return functional_call(self.template, (p, b), (xb,))

        return vmap(one, in_dims=(0, 0, None))(params, buffers, x)

    @torch.inference_mode()
    def evaluate(self, params: Params, buffers: Params, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int) -> tuple[list[float], list[float]]:
        """Mean loss and accuracy of each member in ``params`` on ``(x, y)``, in eval mode, in
        batches of ``batch_size`` samples. Eager vmap: a traced graph measured no faster
        here, the batched matmuls and the loss dominate."""
        self.template.eval()
        width = next(iter(params.values())).shape[0]
        losses = vmap(self.loss_fn, in_dims=(0, None))
        total = torch.zeros(width, device=x.device, dtype=torch.float64)
        correct = torch.zeros(width, device=x.device, dtype=torch.long)
        try:
            for start in range(0, len(y), batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                logits = self._logits(params, buffers, xb).float()
                total += losses(logits, yb).double() * len(yb)
                correct += (logits.argmax(-1) == yb).sum(-1)
        finally:
            self.template.train()
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
    with torch.no_grad(), fork_rng(x.device):
        torch.manual_seed(0)
        first = probe(x)
        updates = any(not _same(before[n], b) for n, b in probe.named_buffers())
        torch.manual_seed(1)
        second = probe(x)
    return updates, not _same(first, second)


def forward_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one forward pass of ``model`` on the batch ``x``, as torch's flop
    counter counts them (matmuls and convolutions); parameters x batch size (what they
    are for an MLP) where counting fails."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.no_grad(), fork_rng(x.device), FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() // 2
    except Exception:  # a model the counter cannot follow
        return len(x) * sum(p.numel() for p in model.parameters())


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal, NaN in the same places counting as equal (data with NaN features is not
    randomness)."""
    return a.shape == b.shape and bool(torch.isclose(a, b, rtol=0, atol=0,
                                                     equal_nan=True).all())


def check_vmap(model: nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor,
               stochastic: bool) -> str | None:
    """Why ``vmap`` cannot train or evaluate ``model`` (None when it can), tried eagerly on
    two copies and a small batch before any run of the group starts."""
    stacked = StackedModel([model, copy.deepcopy(model)], loss_fn, stochastic=stochastic)
    xb, yb = torch.stack([x, x]), torch.stack([y, y])
    try:
        with fork_rng(x.device):
            stacked.template.train()
            stacked._grads(stacked.params, stacked.buffers, xb, yb)
            stacked.evaluate(stacked.params, stacked.buffers, x, y, len(y))
    except Exception as exc:  # any failure means: train this group one run at a time
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"vmap cannot run the model ({type(exc).__name__}: {text[:120]})"
    return None

