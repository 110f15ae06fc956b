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
        self._traces: dict[tuple, Callable] = {}
        self.traced: bool | None = None  # whether make_fx could trace (None: not tried)

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

    @property
    def flat(self) -> torch.Tensor:
        """The parameters: one row of ``P`` numbers per member."""
        return self._flat

    @flat.setter
    def flat(self, value: torch.Tensor) -> None:
        self._flat = value
        self.chunks = list(value.split(self.sizes, dim=1))  # (W, size) per parameter

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the members at ``rows`` (in that order)."""
        self.flat = self.flat[rows]
        self.buffers = {n: b[rows] for n, b in self.buffers.items()}

    # -- training --------------------------------------------------------------------------

    def _loss(self, params, buffers, x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            logits = functional_call(self.template, (params, buffers), (x,))
        return self.loss_fn(logits.float(), y)

    def _grads(self, flat, buffers, x, y):
        grads = vmap(grad(self._loss), randomness=self.randomness)(self.views(flat), buffers,
                                                                    x, y)
        return [grads[n].reshape(flat.shape[0], -1) for n in self.names]

    def _run(self, kind: str, fn: Callable, args: tuple, trace: bool):
        """``fn(*args)``, through a graph of aten ops traced by make_fx and cached per input
        shapes when ``trace`` says it is called often enough to repay the tracing."""
        key = (kind, *(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)))
        traced = self._traces.get(key)
        if traced is None and trace:
            from torch.fx.experimental.proxy_tensor import make_fx

            def plain(*inputs):  # make_fx wants a plain function
                return fn(*inputs)

            try:
                traced = simplify(make_fx(plain, tracing_mode="fake")(*args))
                self.traced = True
            except Exception:  # a model make_fx cannot trace still runs under eager vmap
                traced, self.traced = fn, False
            if self.compile:
                traced = torch.compile(traced, dynamic=False)
            self._traces[key] = traced
        return (fn if traced is None else traced)(*args)

    def grads(self, x: torch.Tensor, y: torch.Tensor, trace: bool = True) -> list[torch.Tensor]:
        """Every member's gradient of its mean loss on its batch ``x[w], y[w]``, one
        ``(W, size)`` tensor per parameter (the layout of :attr:`chunks`)."""
        self.template.train()
        return self._run("train", self._grads, (self.flat, self.buffers, x, y), trace)

    # -- evaluation ------------------------------------------------------------------------

    def _logits(self, flat, buffers, x):
        def one(p, b, xb):
            return functional_call(self.template, (p, b), (xb,))

        return vmap(one, in_dims=(0, 0, None))(self.views(flat), buffers, x)

    @torch.inference_mode()
    def evaluate(self, flat: torch.Tensor, buffers: dict[str, torch.Tensor], x: torch.Tensor,
                 y: torch.Tensor, batch_size: int) -> tuple[list[float], list[float]]:
        """Mean loss and accuracy of each row of ``flat`` on ``(x, y)``, in eval mode, in
        batches of ``batch_size`` samples (eager vmap: tracing it gains nothing measurable,
        the batched matmuls dominate)."""
        self.template.eval()
        width = flat.shape[0]
        losses = vmap(self.loss_fn, in_dims=(0, None))
        total = torch.zeros(width, device=x.device, dtype=torch.float64)
        correct = torch.zeros(width, device=x.device, dtype=torch.long)
        for start in range(0, len(y), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            logits = self._logits(flat, buffers, xb).float()
            total += losses(logits, yb).double() * len(yb)
            correct += (logits.argmax(-1) == yb).sum(-1)
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
            stacked._grads(stacked.flat, stacked.buffers, xb, yb)
            stacked.evaluate(stacked.flat, stacked.buffers, x, y, len(y))
    except Exception as exc:  # any failure means: train this group one run at a time
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"vmap cannot run the model ({type(exc).__name__}: {text[:120]})"
    return None


VIEWS = ("view.default", "_unsafe_view.default", "expand.default", "alias.default",
         "transpose.int", "unsqueeze.default", "squeeze.dims", "squeeze.dim", "t.default")


def simplify(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Drop the no-op nodes of a traced graph: a chain of views that ends where it began
    (same shape, strides and offset: ``view`` to the same shape, ``expand`` to the same
    size, a transpose undone) and ``x * 1``. Each node costs a dispatch per step."""
    if any(n.op == "call_function" and str(n.target).split(".")[-2].endswith("_")
           for n in gm.graph.nodes if "." in str(n.target)):
        return gm  # in-place ops: aliasing matters, leave the graph as traced

    def layout(node):
        val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
        if not isinstance(val, torch.Tensor):
            return None
        return tuple(val.shape), val.stride(), val.storage_offset(), val.dtype

    def is_view(node):
        return node.op == "call_function" and str(node.target).removeprefix("aten.") in VIEWS

    for node in list(gm.graph.nodes):
        if node.op != "call_function" or not node.args:
            continue
        mine = layout(node)
        if mine is None:
            continue
        if str(node.target) == "aten.mul.Scalar" and node.args[1] == 1 \
                and layout(node.args[0]) is not None \
                and layout(node.args[0])[0] == mine[0] and layout(node.args[0])[3] == mine[3]:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            continue
        source = node
        while is_view(source) and isinstance(source.args[0], torch.fx.Node):
            source = source.args[0]
            if layout(source) == mine:
                node.replace_all_uses_with(source)
                gm.graph.erase_node(node)
                break
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm
