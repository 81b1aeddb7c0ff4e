"""Normalizations, pooling, reductions, softmax and resizing.

Per-channel ops (BatchNorm, InstanceNorm, pooling) pass the channel axis through. Ops that
mix along an axis (LRN across channels, Softmax and LayerNorm over their axes, reductions)
leave that axis unmentioned, which pins it; a Softmax whose probabilities only feed a
mixture-of-experts router's TopK is the exception (rules/routing.py).
"""

from __future__ import annotations

import numpy as np

from graphprune.analysis.rules import routing
from graphprune.analysis.rules.base import Rule


def _batch_channel(b, x, y) -> None:
    b.tie(x, 0, y, 0)
    b.tie(x, 1, y, 1)


def batch_norm(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    rank = b.rank(x)
    if rank is None:
        return
    for axis in range(rank):
        b.tie(x, axis, y, axis)  # per-channel affine: every axis passes through
    for p in node.inputs[1:]:
        b.tie(p, 0, x, 1)
    for extra in node.outputs[1:]:  # training-mode running statistics
        if extra is not None:
            b.tie(extra, 0, x, 1)
    b.role(node.inputs[1], 0, "bn_scale")
    b.role(node.inputs[2], 0, "bn_shift")


def instance_norm(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    _batch_channel(b, x, y)  # spatial axes are normalized together: unmentioned, pinned
    for p in node.inputs[1:]:
        b.tie(p, 0, x, 1)
    b.role(node.inputs[1], 0, "bn_scale")


def group_norm(node, b) -> None:
    # Channels are normalized in groups, so a unit is a whole group of C/G channels.
    x, y = node.inputs[0], node.outputs[0]
    sx = b.shape(x)
    groups = int(b.attr("num_groups", 1))
    if sx is None or not isinstance(sx[1], int) or groups <= 1:
        return
    c = sx[1]
    per = c // groups
    _batch_channel(b, x, y)
    b.tie_within(x, 1, np.arange(c), np.arange(c) // per * per)
    for p in node.inputs[1:]:
        size = b.shape(p)[0] if b.shape(p) else None
        if size == c:
            b.tie(p, 0, x, 1)
        elif size == groups:
            b.tie(p, 0, x, 1, np.arange(c) // per, np.arange(c))
    b.role(node.inputs[1], 0, "bn_scale")


def group_norm_rewrite(node, edit) -> None:
    x = node.inputs[0]
    old_c = edit.old_shape(x)[1]
    per = old_c // int(node.attributes["num_groups"].value)
    edit.set_attr(node, "num_groups", edit.new_size(x, 1) // per)


def layer_norm(node, b) -> None:
    """LayerNormalization / RMSNormalization: rows pass; the normalized axes are mixed and
    pinned, unless the `hidden` pass asked to prune through norms (inexact: the statistics
    then run over fewer features), where the last axis, its scale and bias are one axis."""
    x, y = node.inputs[0], node.outputs[0]
    rank = b.rank(x)
    if rank is None:
        return
    axis = int(b.attr("axis", -1)) % rank
    for a in range(axis):  # axes before `axis` are independent rows
        b.tie(x, a, y, a)
        for extra in node.outputs[1:]:
            if extra is not None and b.rank(extra) == rank:
                b.tie(x, a, extra, a)
    if b.option("through_norms") and axis == rank - 1:
        b.tie(x, axis, y, axis)
        for p in node.inputs[1:3]:
            if p is not None and b.rank(p) == 1:
                b.tie(p, 0, x, axis)
                b.role(p, 0, "norm_scale" if p is node.inputs[1] else "bias")
        for extra in node.outputs[1:]:
            if extra is not None and b.rank(extra) == rank:
                b.carry(extra, axis)


def per_position(node, b) -> None:
    """Batch and channel pass through; spatial axes are mixed (pools) or normalized (LRN)."""
    x = node.inputs[0]
    for y in node.outputs:
        if y is not None:
            _batch_channel(b, x, y)


def lrn(node, b) -> None:
    # LRN sums squares over neighbouring channels: removing one shifts every window, so
    # the channel axis is left unmentioned (pinned). Spatial positions are independent.
    x, y = node.inputs[0], node.outputs[0]
    rank = b.rank(x)
    if rank is None:
        return
    for axis in range(rank):
        if axis != 1:
            b.tie(x, axis, y, axis)


def softmax(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    rank = b.rank(x)
    if rank is None:
        return
    default = -1 if b.model.opset_imports.get("", 13) >= 13 else 1
    axis = int(b.attr("axis", default)) % rank
    mixed = {axis} if b.model.opset_imports.get("", 13) >= 13 else set(range(axis, rank))
    if mixed == {axis} and routing.feeds_router(node, axis):  # router probabilities over experts
        mixed = set()
    for a in range(rank):
        if a not in mixed:
            b.tie(x, a, y, a)


def reduce(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    rank = b.rank(x)
    if rank is None:
        return
    axes = b.attr("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1] is not None:
        arr = b.const(node.inputs[1])
        if arr is None:
            return  # axes computed at run time: everything pinned
        axes = [int(v) for v in arr.reshape(-1)]
    if not axes:
        if int(b.attr("noop_with_empty_axes", 0)):
            for a in range(rank):
                b.tie(x, a, y, a)
        return
    axes = {a % rank for a in axes}
    keep = int(b.attr("keepdims", 1))
    # With `hidden`, a mean over the last axis (RMSNorm and LayerNorm written out as
    # primitive ops) lets that axis be pruned: the statistic then covers fewer features.
    # With `channel-norms`, so does a mean over the channels of one value per channel and
    # sample (ConvNeXt-V2's global response normalization divides by it).
    through = node.op_type == "ReduceMean" and keep and (
        (b.option("through_norms") and axes == {rank - 1}) or
        (b.option("channel_stats") and _per_channel_statistic(b.shape(x), axes)))
    out = 0
    for a in range(rank):
        if a in axes:
            if through:
                b.carry(x, a)
            if keep:
                b.carry(y, out)
                out += 1
            continue
        b.tie(x, a, y, out)
        out += 1


def _per_channel_statistic(shape, axes: set[int]) -> bool:
    """One reduced axis of a tensor whose other axes (batch aside) have size 1."""
    return len(axes) == 1 and 0 not in axes and all(d == 1 for a, d in enumerate(shape) if a not in axes and a != 0)


def resize(node, b) -> None:
    # Resize/Upsample scale spatial axes; a scale of 1 on an axis passes it through.
    x, y = node.inputs[0], node.outputs[0]
    sx, sy = b.shape(x), b.shape(y)
    if sx is None or sy is None:
        return
    for a in range(len(sx)):
        if sx[a] == sy[a] and sx[a] is not None:
            b.tie(x, a, y, a)


def resize_rewrite(node, edit) -> None:
    # A `sizes` input spells out the channel count; write the new one.
    if len(node.inputs) < 4 or node.inputs[3] is None:
        return
    sizes = edit.const(node.inputs[3])
    if sizes is None or sizes.size == 0:
        return
    new = sizes.copy()
    y = node.outputs[0]
    for a in range(len(new)):
        new[a] = edit.new_size(y, a) if edit.kept(y, a) is not None else new[a]
    edit.set_input(node, 3, new)


_POOLS = ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
          "GlobalLpPool")
_REDUCE = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
           "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")

RULES = {
    "BatchNormalization": Rule(batch_norm),
    "InstanceNormalization": Rule(instance_norm),
    "GroupNormalization": Rule(group_norm, group_norm_rewrite),
    "LayerNormalization": Rule(layer_norm),
    "RMSNormalization": Rule(layer_norm),
    "SimplifiedLayerNormalization": Rule(layer_norm),  # ONNX Runtime's RMSNorm
    "LRN": Rule(lrn),
    "Softmax": Rule(softmax),
    "LogSoftmax": Rule(softmax),
    "Hardmax": Rule(softmax),
    **{op: Rule(per_position) for op in _POOLS},
    **{op: Rule(reduce) for op in _REDUCE},
    "Resize": Rule(resize, resize_rewrite),
    "Upsample": Rule(resize),
}
