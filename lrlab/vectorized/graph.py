"""Tidying a graph traced by make_fx, so each step dispatches fewer and cheaper ops.

A traced ``vmap(grad(...))`` graph holds many no-op nodes (a view to the same shape, an
expand to the same size, a transpose undone, ``x * 1``), and vmap turns every
``Linear`` into a batched matmul followed by a separate bias addition. :func:`simplify`
drops the former and fuses the latter into ``baddbmm`` (bias added inside the matmul, as
``nn.Linear``'s own ``addmm`` does), and applies a ReLU in place when nothing else reads
its input. Every rewrite keeps the values (up to the rounding of a fused addition).
"""

from __future__ import annotations

import torch

aten = torch.ops.aten


VIEWS = {aten.view.default, aten._unsafe_view.default, aten.expand.default,
         aten.alias.default, aten.transpose.int, aten.unsqueeze.default, aten.squeeze.dims,
         aten.squeeze.dim, aten.t.default}
# ops whose fresh output a ReLU may overwrite when nothing else reads it
FRESH = {aten.baddbmm.default, aten.bmm.default, aten.add.Tensor, aten.addmm.default}


def simplify(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Drop no-op nodes, fuse bias additions into batched matmuls, ReLU in place."""
    graph = gm.graph
    if any(n.op == "call_function" and getattr(n.target, "_schema", None) is not None
           and n.target._schema.is_mutable for n in graph.nodes):
        return gm  # the trace mutates something: aliasing matters, leave it as traced
    for node in list(graph.nodes):
        if node.op != "call_function" or not node.args:
            continue
        same = _noop_source(node)
        if same is not None:
            node.replace_all_uses_with(same)
            graph.erase_node(node)
    graph.eliminate_dead_code()
    for node in list(graph.nodes):
        if node.target is aten.add.Tensor and node.kwargs.get("alpha", 1) == 1:
            _fuse_bias(graph, node)
    for node in graph.nodes:
        source = node.args[0] if node.args else None
        if node.target is aten.relu.default and isinstance(source, torch.fx.Node) \
                and source.target in FRESH and len(source.users) == 1:
            node.target = aten.relu_.default
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    return gm


def _layout(node):
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    if not isinstance(val, torch.Tensor):
        return None
    return tuple(val.shape), val.stride(), val.storage_offset(), val.dtype


def _noop_source(node: torch.fx.Node) -> torch.fx.Node | None:
    """The node ``node`` merely repeats, if any: the start of a chain of views that ends
    with the same layout, or ``x`` of ``x * 1``."""
    mine = _layout(node)
    if mine is None:
        return None
    if node.target is aten.mul.Scalar and node.args[1] == 1:
        source = _layout(node.args[0])
        return node.args[0] if source is not None and source[0] == mine[0] \
            and source[3] == mine[3] else None
    source = node
    while source.target in VIEWS and isinstance(source.args[0], torch.fx.Node):
        source = source.args[0]
        if _layout(source) == mine:
            return source
    return None


def _fuse_bias(graph: torch.fx.Graph, node: torch.fx.Node) -> None:
    """``add(bias, bmm(a, b))`` -> ``baddbmm(bias, a, b)`` when the sum has the matmul's
    shape (so the bias broadcasts into it) and nothing else reads the matmul."""
    for mm, bias in ((node.args[1], node.args[0]), (node.args[0], node.args[1])):
        bias_val = bias.meta.get("val") if isinstance(bias, torch.fx.Node) else None
        if not (isinstance(bias_val, torch.Tensor)  # a tensor, not a Python number
                and isinstance(mm, torch.fx.Node) and mm.target is aten.bmm.default
                and len(mm.users) == 1 and _layout(mm) is not None
                and _layout(node) is not None
                and _layout(mm)[0] == _layout(node)[0] and _layout(mm)[3] == _layout(node)[3]
                and bias_val.dtype == _layout(mm)[3]):  # baddbmm does not promote dtypes
            continue
        with graph.inserting_before(node):
            fused = graph.call_function(aten.baddbmm.default, (bias, *mm.args))
        fused.meta["val"] = node.meta.get("val")
        node.replace_all_uses_with(fused)
        graph.erase_node(node)
        graph.erase_node(mm)
        return
