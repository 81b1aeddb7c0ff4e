"""Reshape and Flatten: axes are matched by aligning the two shapes.

Where one axis splits into several, its positions map in blocks onto the outermost new
axis (a conv channel becomes a head, a channel becomes C blocks of a flattened vector the
other way round); the inner axes are left unmentioned and so pinned. A
Reshape-Transpose-Reshape channel shuffle is recognised as one permutation of channels.
"""

from __future__ import annotations

import math

import numpy as np

from graphprune.analysis.rules.base import Rule, block_map


def align(ins, outs) -> list[tuple[list[int], list[int]]] | None:
    """Split two shapes into runs of axes with equal products; None when impossible."""
    segs, i, j = [], 0, 0
    while i < len(ins) and j < len(outs):
        if not isinstance(ins[i], int) or not isinstance(outs[j], int):
            if ins[i] is not None and ins[i] == outs[j]:
                segs.append(([i], [j]))
                i, j = i + 1, j + 1
                continue
            return None
        si, sj = i, j
        pi, pj = ins[i], outs[j]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj:
                if i >= len(ins) or not isinstance(ins[i], int):
                    return None
                pi *= ins[i]
                i += 1
            else:
                if j >= len(outs) or not isinstance(outs[j], int):
                    return None
                pj *= outs[j]
                j += 1
        segs.append((list(range(si, i)), list(range(sj, j))))
    rest_in, rest_out = list(range(i, len(ins))), list(range(j, len(outs)))
    if any(ins[a] != 1 for a in rest_in) or any(outs[a] != 1 for a in rest_out):
        return None
    if rest_in or rest_out:
        segs.append((rest_in, rest_out))
    return segs


def couple_reshape_axes(b, x, y) -> None:
    sx, sy = b.shape(x), b.shape(y)
    if sx is None or sy is None:
        return
    segs = align(sx, sy)
    if segs is None:
        return
    for seg_in, seg_out in segs:
        for a in seg_in:
            if sx[a] == 1:
                b.carry(x, a)
        for a in seg_out:
            if sy[a] == 1:
                b.carry(y, a)
        big_in = [a for a in seg_in if sx[a] != 1]
        big_out = [a for a in seg_out if sy[a] != 1]
        if len(big_in) == 1 and len(big_out) == 1:
            b.tie(x, big_in[0], y, big_out[0])
        elif len(big_in) == 1 and len(big_out) > 1:
            inner = math.prod(sy[a] for a in big_out[1:])
            outer_idx, flat = block_map(sy[big_out[0]], inner)
            b.tie(x, big_in[0], y, big_out[0], flat, outer_idx)
        elif len(big_in) > 1 and len(big_out) == 1:
            inner = math.prod(sx[a] for a in big_in[1:])
            outer_idx, flat = block_map(sx[big_in[0]], inner)
            b.tie(x, big_in[0], y, big_out[0], outer_idx, flat)


def shuffle_of(node):
    """(groups, per_group, last_reshape) when `node` starts a channel shuffle, else None."""
    x, y = node.inputs[0], node.outputs[0]
    from graphprune.shapes import shape_of

    sx, sy = shape_of(x), shape_of(y)
    if sx is None or sy is None or len(sy) != len(sx) + 1 or len(sx) < 2:
        return None
    if not all(isinstance(d, int) for d in (sx[1], sy[1], sy[2])) or sy[1] * sy[2] != sx[1]:
        return None
    if sy[0] != sx[0] or tuple(sy[3:]) != tuple(sx[2:]):
        return None
    uses = list(y.uses())
    if len(uses) != 1 or uses[0].node.op_type != "Transpose":
        return None
    t = uses[0].node
    perm = list(t.attributes["perm"].value) if "perm" in t.attributes else []
    expect = [0, 2, 1] + list(range(3, len(sy)))
    if perm != expect:
        return None
    t_uses = list(t.outputs[0].uses())
    if len(t_uses) != 1 or t_uses[0].node.op_type != "Reshape":
        return None
    last = t_uses[0].node
    if shape_of(last.outputs[0]) != sx:
        return None
    return sy[1], sy[2], last


def _ends_shuffle(node) -> bool:
    t = node.inputs[0].producer()
    if t is None or t.op_type != "Transpose":
        return False
    first = t.inputs[0].producer()
    if first is None or first.op_type != "Reshape":
        return False
    found = shuffle_of(first)
    return found is not None and found[2] is node


def reshape(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    found = shuffle_of(node)
    if found is not None:
        g, c, last = found
        z = last.outputs[0]
        p = np.arange(g * c)
        # Channel g_i*c + j lands at j*g + g_i; a unit is the j-th channel of every group,
        # so the shuffle stays a shuffle (c shrinks, g stays).
        b.tie(x, 1, z, 1, p, (p % c) * g + p // c)
        b.tie_within(x, 1, p, p % c)
        for axis in range(b.rank(x)):
            if axis != 1:
                b.tie(x, axis, z, axis)
        for axis in range(b.rank(y)):
            b.carry(y, axis)
        return
    if _ends_shuffle(node):
        for v in (x, y):
            for axis in range(b.rank(v) or 0):
                b.carry(v, axis)
        return
    if node.op_type == "Reshape" and b.const(node.inputs[1]) is None:
        return  # target computed at run time: nothing can be rewritten, all pinned
    couple_reshape_axes(b, x, y)


def reshape_rewrite(node, edit) -> None:
    if node.op_type != "Reshape":
        return
    target = edit.const(node.inputs[1])
    if target is None:
        return
    new = target.copy()
    y = node.outputs[0]
    found = shuffle_of(node)
    if found is not None:
        g = found[0]
        if new[2] > 0:
            new[2] = edit.new_size(node.inputs[0], 1) // g
    else:
        for axis in range(len(new)):
            if new[axis] > 0 and edit.kept(y, axis) is not None:
                new[axis] = edit.new_size(y, axis)
    if not np.array_equal(new, target):
        edit.set_input(node, 1, new)


RULES = {
    "Reshape": Rule(reshape, reshape_rewrite),
    "Flatten": Rule(reshape),
}
