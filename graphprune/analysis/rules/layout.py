"""Ops that move or select axes: Transpose, Squeeze/Unsqueeze, Slice, Pad, Expand, Tile,
Gather, Shape. (Concat and Split: `concat_split.py`.)"""

from __future__ import annotations

import numpy as np

from graphprune.analysis.rules import routing
from graphprune.analysis.rules.base import Rule, broadcast
from graphprune.analysis.shape_expr import Dim, Lit, entries, escaping_axes, write_literal


def _axes(node, b, attr_input: int):
    """Axes given as an attribute (old opsets) or as a constant input (new opsets)."""
    axes = b.attr("axes")
    if axes is None and len(node.inputs) > attr_input and node.inputs[attr_input] is not None:
        arr = b.const(node.inputs[attr_input])
        if arr is None:
            return "dynamic"
        axes = [int(v) for v in arr.reshape(-1)]
    return axes


def transpose(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    rank = b.rank(x)
    if rank is None:
        return
    perm = b.attr("perm") or list(reversed(range(rank)))
    for out_axis, in_axis in enumerate(perm):
        b.tie(x, int(in_axis), y, out_axis)


def squeeze(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    sx = b.shape(x)
    axes = _axes(node, b, 1)
    if sx is None or axes == "dynamic":
        return
    gone = {a % len(sx) for a in axes} if axes else {a for a, d in enumerate(sx) if d == 1}
    out = 0
    for a in range(len(sx)):
        if a in gone:
            b.carry(x, a)
        else:
            b.tie(x, a, y, out)
            out += 1


def unsqueeze(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    ry = b.rank(y)
    axes = _axes(node, b, 1)
    if ry is None or axes in ("dynamic", None):
        return
    new = {a % ry for a in axes}
    src = 0
    for a in range(ry):
        if a in new:
            b.carry(y, a)
        else:
            b.tie(x, src, y, a)
            src += 1


LITERAL = "its sizes are literals in the module's code (graphprune.torch cannot rewrite them)"


WHOLE = 2**31 - 1  # an end at or past this takes the rest of any axis (INT_MAX, INT64_MAX)


def _slice_params(node, b):
    """Per axis (start, stop, step) after clamping, for the axes the Slice touches."""
    x = node.inputs[0]
    sx = b.shape(x)
    if sx is None:
        return None
    rank = len(sx)
    if len(node.inputs) == 1:  # opset < 10: attributes
        starts, ends = b.attr("starts"), b.attr("ends")
        axes = b.attr("axes") or list(range(len(starts)))
        steps = [1] * len(starts)
    else:
        vals = [b.const(v) if v is not None else None for v in node.inputs[1:5]]
        if vals[0] is None or vals[1] is None:
            return None
        starts, ends = vals[0].tolist(), vals[1].tolist()
        axes = vals[2].tolist() if len(vals) > 2 and vals[2] is not None else list(range(len(starts)))
        steps = vals[3].tolist() if len(vals) > 3 and vals[3] is not None else [1] * len(starts)
    out = {}
    for i, a in enumerate(axes):
        a = int(a) % rank
        if not isinstance(sx[a], int):
            if int(starts[i]) == 0 and int(ends[i]) >= WHOLE and int(steps[i]) == 1:
                continue  # all of an axis of unknown size (x[:, ...] on a dynamic batch): untouched
            return None
        out[a] = (i, *slice(int(starts[i]), int(ends[i]), int(steps[i])).indices(sx[a]))
    return out


def slice_(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    sx = b.shape(x)
    params = _slice_params(node, b)
    if sx is None or params is None:
        return
    for a in range(len(sx)):
        if a not in params:
            b.tie(x, a, y, a)
            continue
        _, start, stop, step = params[a]
        if step <= 0:
            continue  # reversed slices: pinned
        if b.option("literal_sizes") and not (start == 0 and stop >= (sx[a] or 0) and step == 1):
            b.pin(x, a, LITERAL)
            b.pin(y, a, LITERAL)
            continue
        m = len(range(start, stop, step))
        if m == 0:
            continue
        # Positions go in blocks of `step` aligned at 0, and a block is one unit with the
        # position selected in it: what stays selected after removals is still an
        # arithmetic progression, and complementary slices (x[::2], x[1::2]: GPT-OSS's
        # interleaved gate and up) agree on the blocks.
        first = start // step
        p = np.arange(first * step, min((first + m) * step, sx[a]))
        b.tie(x, a, y, a, p, p // step - first)


def slice_rewrite(node, edit) -> None:
    x = node.inputs[0]
    params = _slice_params(node, edit)
    if params is None:
        return
    for a, (i, start, stop, step) in params.items():
        kept = edit.kept(x, a)
        if kept is None:
            continue
        selected = np.arange(start, stop, step)
        selected = selected[np.isin(selected, kept)]
        new_idx = np.searchsorted(kept, selected)
        new_start, new_stop = int(new_idx[0]), int(new_idx[-1]) + 1
        if len(node.inputs) == 1:
            starts, ends = list(node.attributes["starts"].value), list(node.attributes["ends"].value)
            starts[i], ends[i] = new_start, new_stop
            edit.set_attr(node, "starts", starts)
            edit.set_attr(node, "ends", ends)
        else:
            for slot, val in ((1, new_start), (2, new_stop)):
                arr = edit.const(node.inputs[slot]).copy()
                arr[i] = val
                edit.set_input(node, slot, arr)


def _pads(node, b):
    """Per-axis (begin, end) pads, or None when they are not constant."""
    rank = b.rank(node.inputs[0])
    if rank is None:
        return None
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        arr = b.const(node.inputs[1])
        if arr is None:
            return None
        pads = [int(v) for v in arr.reshape(-1)]
    else:
        pads = b.attr("pads") or b.attr("paddings")
        if pads is None:
            return None
    axes = None
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        ax = b.const(node.inputs[3])
        if ax is None:
            return None
        axes = [int(a) % rank for a in ax.reshape(-1)]
    axes = axes if axes is not None else list(range(rank))
    k = len(axes)
    full = {a: (0, 0) for a in range(rank)}
    for i, a in enumerate(axes):
        full[a] = (pads[i], pads[i + k])
    return full, axes


def pad(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    sx = b.shape(x)
    found = _pads(node, b)
    if sx is None or found is None:
        return
    pads, _ = found
    mode = b.attr("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    for a, (begin, end) in pads.items():
        if begin == 0 and end == 0:
            b.tie(x, a, y, a)
        elif b.option("literal_sizes"):
            b.pin(x, a, LITERAL)
            b.pin(y, a, LITERAL)
        elif mode == "constant" and begin >= 0 and end >= 0 and isinstance(sx[a], int):
            # Padded positions are units of their own: removing one just pads less.
            n = sx[a]
            b.tie(x, a, y, a, np.arange(n), begin + np.arange(n))
            b.carry(y, a)


def pad_rewrite(node, edit) -> None:
    x, y = node.inputs[0], node.outputs[0]
    found = _pads(node, edit)
    if found is None:
        return
    pads, axes = found
    changed = False
    for a, (begin, end) in pads.items():
        kept = edit.kept(y, a)
        if kept is None or (begin == 0 and end == 0):
            continue
        n = edit.old_shape(x)[a]
        pads[a] = (int(np.sum(kept < begin)), int(np.sum(kept >= begin + n)))
        changed = True
    if not changed:
        return
    flat = [pads[a][0] for a in axes] + [pads[a][1] for a in axes]
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        edit.set_input(node, 1, np.array(flat, dtype=np.int64))
    else:
        edit.set_attr(node, "pads", flat)


def expand(node, b) -> None:
    y = node.outputs[0]
    broadcast(b, [node.inputs[0]], y)
    if b.const(node.inputs[1]) is not None:
        return
    found = entries(node, 1)
    ry = b.rank(y)
    if found is None or ry is None:
        for a in range(ry or 0):
            b.pin(y, a, "its size is computed at run time")
        return
    shift = ry - len(found)
    for i, e in enumerate(found):
        if isinstance(e, Dim):
            b.tie(e.value, e.axis, y, i + shift)
        elif e is None or (e.value > 1 and e.holder is None):
            b.pin(y, i + shift, "its size is computed at run time")


def expand_rewrite(node, edit) -> None:
    shape = edit.const(node.inputs[1])
    y = node.outputs[0]
    if shape is None:
        found = entries(node, 1) or []
        shift = len(edit.old_shape(y)) - len(found)
        for i, e in enumerate(found):
            if isinstance(e, Lit) and e.value > 1 and e.holder is not None and edit.kept(y, i + shift) is not None:
                write_literal(edit, e, edit.new_size(y, i + shift))
        return
    new = shape.copy()
    shift = len(edit.old_shape(y)) - len(new)
    for i in range(len(new)):
        if new[i] > 1 and edit.kept(y, i + shift) is not None:
            new[i] = edit.new_size(y, i + shift)
    if not np.array_equal(new, shape):
        edit.set_input(node, 1, new)


def tile(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    reps = b.const(node.inputs[1])
    if reps is None:
        return
    for a, r in enumerate(reps.reshape(-1)):
        if r == 1:
            b.tie(x, a, y, a)


def gather(node, b) -> None:
    data, idx = node.inputs
    y = node.outputs[0]
    rd, ri = b.rank(data), b.rank(idx)
    if rd is None or ri is None:
        return
    axis = int(b.attr("axis", 0)) % rd
    for a in range(axis):
        b.tie(data, a, y, a)
    for a in range(ri):
        b.tie(idx, a, y, axis + a)
    for a in range(axis + 1, rd):
        b.tie(data, a, y, a - 1 + ri)
    routing.gather_routed(node, b)  # experts selected by a router's TopK


def shape(node, b) -> None:
    # A size read at run time may only flow into Reshape/Expand targets, whose rules tie
    # it to the axis it was read from; anywhere else it could carry a channel count into
    # arithmetic, so those axes are pinned.
    x = node.inputs[0]
    escaping = escaping_axes(node)
    for a in range(b.rank(x) or 0):
        if escaping is None or a in escaping:
            b.pin(x, a, "its size is read at run time")
        else:
            b.carry(x, a)


RULES = {
    "Transpose": Rule(transpose),
    "Squeeze": Rule(squeeze),
    "Unsqueeze": Rule(unsqueeze),
    "Slice": Rule(slice_, slice_rewrite),
    "Pad": Rule(pad, pad_rewrite),
    "Expand": Rule(expand, expand_rewrite),
    "Tile": Rule(tile),
    "Gather": Rule(gather),
    "Shape": Rule(shape),
}
