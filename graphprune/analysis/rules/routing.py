"""Mixture-of-experts routing written out as primitive ops (Hugging Face Mixtral/Qwen-MoE
exports with batched expert weights): a router's logits (tokens, experts), a Softmax over
the experts, a TopK that picks `k` of them, and the picked indices selecting each token's
expert weights from stacked tensors (experts, rows, columns) with Gather or GatherND.

The experts axis is never carried by an activation past the TopK: the *values* of its
indices are positions on that axis. So the TopK ties its input's experts axis straight to
the axis its indices select from, wherever they are used, and those gathers leave the
selected axis unpinned. Removing an expert then removes its router row and its slice of
every stacked tensor, and the indices keep meaning the same experts. The Softmax before it
stops pinning the experts axis: without an expert the probabilities renormalise over the
rest, which is exact for the tokens that did not pick it (top-k renormalised after the
softmax, as Mixtral does, is exact for every such token). An index used any other way (a
one-hot, a graph output, arithmetic) leaves the axis pinned. At least `k` experts stay.
"""

from __future__ import annotations

from graphprune.analysis.rules.base import Rule
from graphprune.errors import BadInput

# Ops that move index values without changing them.
_CARRIERS = ("Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity")


def _axis(node, rank: int) -> int:
    attr = node.attributes.get("axis")
    return (int(attr.value) if attr is not None else (-1 if node.op_type == "TopK" else 0)) % rank


def _selects(node, index_rank) -> int | None:
    """The data axis a Gather/GatherND reading indices at input 1 selects, or None."""
    if node.op_type == "Gather":
        shape = node.inputs[0].shape
        return _axis(node, len(shape)) if shape else None
    if node.op_type == "GatherND":
        batch = node.attributes.get("batch_dims")
        shape = node.inputs[1].shape
        if (batch is not None and int(batch.value)) or shape is None or len(shape) != index_rank or shape[-1] != 1:
            return None
        return 0
    return None


def selections(indices) -> list[tuple] | None:
    """(gather node, data value, axis) for every place the TopK indices `indices` select
    from, following reshapes; None when they are used any other way."""
    found, stack = [], [indices]
    while stack:
        v = stack.pop()
        if v.is_graph_output():
            return None
        for node, i in v.uses():
            if node.domain not in ("", "ai.onnx"):
                return None
            if node.op_type in _CARRIERS and i == 0:
                stack.append(node.outputs[0])
                continue
            rank = len(v.shape) if v.shape is not None else None
            axis = _selects(node, rank) if i == 1 and rank is not None else None
            if axis is None:
                return None
            found.append((node, node.inputs[0], axis))
    return found or None


def _source(indices):
    """The TopK whose indices reach `indices` through reshapes, or None."""
    v = indices
    while v is not None and v.producer() is not None:
        node = v.producer()
        if node.op_type == "TopK" and v is node.outputs[1]:
            return node
        if node.op_type not in _CARRIERS:
            return None
        v = node.inputs[0]
    return None


def routes(node) -> list[tuple] | None:
    """A TopK that routes: a constant `k` and indices used only to select; its selections."""
    if node.op_type != "TopK" or len(node.inputs) < 2 or node.inputs[1] is None:
        return None
    if node.inputs[1].const_value is None or len(node.outputs) < 2 or node.outputs[1] is None:
        return None
    return selections(node.outputs[1])


def routed(node) -> bool:
    """Whether a Gather/GatherND selects with the indices of a routing TopK."""
    topk = _source(node.inputs[1])
    found = routes(topk) if topk is not None else None
    return bool(found) and any(n is node for n, _, _ in found)


def feeds_router(node, axis: int) -> bool:
    """Whether a Softmax's output along `axis` is read only by routing TopKs over that axis."""
    uses = node.outputs[0].uses()
    rank = len(node.outputs[0].shape or ())
    return bool(uses) and not node.outputs[0].is_graph_output() and all(
        i == 0 and n.op_type == "TopK" and _axis(n, rank) == axis and routes(n) for n, i in uses)


def topk(node, b) -> None:
    x, k = node.inputs[0], node.inputs[1]
    rank = b.rank(x)
    if rank is None:
        return
    axis = _axis(node, rank)
    outs = [y for y in node.outputs if y is not None]
    for a in range(rank):
        for y in outs:
            if a == axis:
                b.carry(y, a)
            else:
                b.tie(x, a, y, a)
    b.carry(k, 0)
    found = routes(node)
    for _, data, data_axis in found or ():
        b.tie(x, axis, data, data_axis)
    if found:
        b.routes(x, axis, int(b.const(k).reshape(-1)[0]))


def topk_rewrite(node, edit) -> None:
    """Nothing to rewrite, but `k` experts must stay."""
    rank = edit.rank(node.inputs[0])
    kept = edit.kept(node.inputs[0], _axis(node, rank)) if rank else None
    k = edit.const(node.inputs[1])
    k = None if k is None else int(k.reshape(-1)[0])
    if kept is not None and k is not None and len(kept) < k:
        raise BadInput(f"node {node.name or 'TopK'} would keep {len(kept)} experts, fewer than its top-k "
                       f"({k}): prune fewer experts (select's max_ratio, or exclude its router)")


def _selected(node, b, data, axis: int, out_axes: dict[int, int]) -> None:
    """A routed gather's selected axis is tied at its TopK. Its output is slices of the
    stacked weights: the roles a consumer gives the output's axes (`out_axes`: output axis
    -> data axis) go to the weights, and the experts axis counts as an expert's rows."""
    if routed(node):
        b.carry(data, axis)
        b.role(data, axis, "out")
        for y_axis, data_axis in out_axes.items():
            b.selected_axis(node.outputs[0], y_axis, data, data_axis)


def gather_nd(node, b) -> None:
    data, idx = node.inputs[0], node.inputs[1]
    y = node.outputs[0]
    sd, si = b.shape(data), b.shape(idx)
    if sd is None or si is None or not isinstance(si[-1], int):
        return
    batch = int(b.attr("batch_dims", 0))
    depth = si[-1]
    for a in range(batch):
        b.tie(data, a, idx, a)
        b.tie(idx, a, y, a)
    for a in range(batch, len(si) - 1):
        b.tie(idx, a, y, a)
    b.carry(idx, len(si) - 1)
    trailing = {len(si) - 1 + i: a for i, a in enumerate(range(batch + depth, len(sd)))}
    for y_axis, a in trailing.items():
        b.tie(data, a, y, y_axis)
    if batch == 0 and depth == 1:
        _selected(node, b, data, 0, trailing)


def gather_routed(node, b) -> None:
    """Gather's selected axis, when routed indices select it (`layout.gather` does the rest)."""
    rank, ri = b.rank(node.inputs[0]), b.rank(node.inputs[1])
    if rank and ri is not None:
        axis = _axis(node, rank)
        out_axes = {a if a < axis else a - 1 + ri: a for a in range(rank) if a != axis}
        _selected(node, b, node.inputs[0], axis, out_axes)


RULES = {
    "TopK": Rule(topk, topk_rewrite),
    "GatherND": Rule(gather_nd),
}
