"""Ops that join or split along an axis: Concat (position ranges map onto the output's)
and Split (the input's ranges onto each output)."""

from __future__ import annotations

import numpy as np

from graphprune.analysis.rules.base import Rule


def concat(node, b) -> None:
    y = node.outputs[0]
    ry = b.rank(y)
    if ry is None:
        return
    axis = int(b.attr("axis")) % ry
    shapes = [b.shape(x) for x in node.inputs]
    if any(s is None for s in shapes):
        return
    # Along a run-time size (a KV cache's past and new positions) the positions cannot be
    # mapped: that axis stays pinned, the others still pass through.
    mapped = all(isinstance(s[axis], int) for s in shapes)
    offset = 0
    for x, sx in zip(node.inputs, shapes):
        if mapped:
            n = sx[axis]
            b.tie(x, axis, y, axis, np.arange(n), offset + np.arange(n))
            offset += n
        else:
            b.pin(x, axis, "concatenated along a size known at run time")
        for a in range(ry):
            if a != axis:
                b.tie(x, a, y, a)
    if not mapped:
        b.pin(y, axis, "concatenated along a size known at run time")


def split(node, b) -> None:
    x = node.inputs[0]
    rx = b.rank(x)
    if rx is None:
        return
    axis = int(b.attr("axis", 0)) % rx
    offset = 0
    for y in node.outputs:
        sy = b.shape(y)
        if sy is None or not isinstance(sy[axis], int):
            return
        n = sy[axis]
        b.tie(x, axis, y, axis, offset + np.arange(n), np.arange(n))
        offset += n
        for a in range(rx):
            if a != axis:
                b.tie(x, a, y, a)


def split_rewrite(node, edit) -> None:
    x = node.inputs[0]
    axis = int(node.attributes["axis"].value) % len(edit.old_shape(x)) if "axis" in node.attributes else 0
    if edit.kept(x, axis) is None:
        return
    sizes = np.array([edit.new_size(y, axis) for y in node.outputs], dtype=np.int64)
    node.attributes.pop("num_outputs", None)
    if edit.opset >= 13:
        edit.set_input(node, 1, sizes)
    else:
        edit.set_attr(node, "split", [int(s) for s in sizes])


RULES = {
    "Concat": Rule(concat),
    "Split": Rule(split, split_rewrite),
}
