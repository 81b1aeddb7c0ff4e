"""Reshape and Flatten: axes are matched by aligning the two shapes.

Where one axis splits into several, its positions map in blocks onto the outermost new
axis (a conv channel becomes a head, a channel becomes C blocks of a flattened vector the
other way round); the inner axes are left unmentioned and so pinned. A
Reshape-Transpose-Reshape channel shuffle is recognised as one permutation of channels.
"""

from __future__ import annotations

import math

import numpy as np

from graphprune.analysis.rules import round_trip
from graphprune.analysis.rules.base import Rule, block_map
from graphprune.analysis.shape_expr import Dim, Lit, entries, write_literal
from graphprune.shapes import const_array


def _factor(d):
    """A dimension as (integer coefficient, sorted symbol names), so that symbolic sizes
    such as 'batch*seq' or '4*batch' multiply and compare (a sum is one opaque symbol);
    None when unknown."""
    if isinstance(d, int):
        return d, ()
    if not isinstance(d, str) or not d:
        return None
    if "*" not in d and "/" not in d and not d.replace(" ", "").isidentifier():
        return 1, (d.replace(" ", ""),)  # a sum such as 'past + seq' (a KV cache's length): one symbol
    coef, syms = 1, []
    for part in d.replace(" ", "").split("*"):
        if part.isdigit():
            coef *= int(part)
        elif part.isidentifier():
            syms.append(part)
        else:
            return None  # sums, quotients: opaque
    return coef, tuple(sorted(syms))


def _mul(a, b):
    return a[0] * b[0], tuple(sorted(a[1] + b[1]))


def align(ins, outs) -> list[tuple[list[int], list[int]]] | None:
    """Split two shapes into runs of axes with equal products; None when impossible.
    Symbolic sizes take part as factors ('batch', 'seq' merge into 'batch*seq')."""
    fi, fo = [_factor(d) for d in ins], [_factor(d) for d in outs]
    if None in fi or None in fo:
        return None
    segs, i, j = [], 0, 0
    while i < len(ins) and j < len(outs):
        si, sj = i, j
        pi, pj = fi[i], fo[j]
        i, j = i + 1, j + 1
        for _ in range(len(ins) + len(outs)):
            if pi == pj:
                break
            # Grow the side whose product is "smaller": fewer symbols, then smaller coefficient.
            grow_in = (len(pi[1]), pi[0]) < (len(pj[1]), pj[0])
            if grow_in and i < len(ins):
                pi, i = _mul(pi, fi[i]), i + 1
            elif not grow_in and j < len(outs):
                pj, j = _mul(pj, fo[j]), j + 1
            else:
                return None
        if pi != pj:
            return None
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
        elif not all(isinstance(d, int) for d in (*(sx[a] for a in big_in), *(sy[a] for a in big_out))):
            continue  # a symbolic size split or merged (batch*seq): left pinned
        elif len(big_in) == 1 and len(big_out) == 2 and b.option("head_dims"):
            # `head-dims`: a unit is the j-th position of every head (heads stay).
            inner = sy[big_out[1]]
            flat = np.arange(sx[big_in[0]])
            b.tie(x, big_in[0], y, big_out[1], flat, flat % inner)
            b.pin(y, big_out[0], "heads stay (head-dims)")
        elif len(big_in) == 2 and len(big_out) == 1 and b.option("head_dims") and not _expanded(x, big_in[1]):
            inner = sx[big_in[1]]
            flat = np.arange(sy[big_out[0]])
            b.tie(x, big_in[1], y, big_out[0], flat % inner, flat)
            b.pin(x, big_in[0], "heads stay (head-dims)")
        elif len(big_in) == 1 and len(big_out) > 1:
            inner = math.prod(sy[a] for a in big_out[1:])
            outer_idx, flat = block_map(sy[big_out[0]], inner)
            b.tie(x, big_in[0], y, big_out[0], flat, outer_idx)
        elif len(big_in) == 2 and len(big_out) == 1 and b.option("query_heads") and _expanded(x, big_in[1]):
            # Grouped-query repeat (KV heads, n_rep) -> query heads, with the `query-heads`
            # pass: a unit is the r-th query head of every KV group; KV heads stay.
            n_rep = sx[big_in[1]]
            flat = np.arange(sx[big_in[0]] * n_rep)
            b.tie(x, big_in[1], y, big_out[0], flat % n_rep, flat)
            b.pin(x, big_in[0], "KV heads stay (query-heads)")
        elif len(big_in) > 1 and len(big_out) == 1:
            inner = math.prod(sx[a] for a in big_in[1:])
            outer_idx, flat = block_map(sx[big_in[0]], inner)
            b.tie(x, big_in[0], y, big_out[0], outer_idx, flat)


def _expanded(x, axis: int) -> bool:
    """Whether `axis` of x was made by an Expand from size 1 (a repeat, as in GQA)."""
    from graphprune.shapes import shape_of

    prod = x.producer()
    if prod is None or prod.op_type != "Expand":
        return False
    sx, si = shape_of(x), shape_of(prod.inputs[0])
    if sx is None or si is None:
        return False
    shift = len(sx) - len(si)
    return axis - shift < 0 or si[axis - shift] == 1


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
    if node.op_type == "Flatten":
        couple_reshape_axes(b, x, y)
        return
    found = _target(node)
    if found is None:
        return  # target unknown: nothing can be rewritten, all pinned
    trip = round_trip.start_of(node)
    if trip is not None:
        k, last = trip
        first = found[0]
        if isinstance(first, Lit) and first.value > 0 and first.holder is None:
            return  # the merged size is a shared run-time constant: all pinned
        round_trip.couple_start(b, node, k, last)
        return
    trip = round_trip.end_of(node)
    if trip is None:
        couple_reshape_axes(b, x, y)
    else:
        round_trip.couple_end(b, node, trip[0])
    for i, e in enumerate(found):
        if isinstance(e, Dim):
            # The size is read from that axis at run time: they shrink together.
            b.tie(e.value, e.axis, y, i)
        elif e is None:
            b.pin(y, i, "its size is computed at run time")
        elif e.value > 0 and e.holder is None and b.const(node.inputs[1]) is None:
            b.pin(y, i, "its size comes from a shared run-time constant")


def _target(node):
    """The Reshape target's entries (a constant target is all private literals)."""
    arr = const_array(node.inputs[1])
    if arr is not None:
        return [Lit(int(v), (node, 1, k)) for k, v in enumerate(arr.reshape(-1))]
    return entries(node, 1)


def reshape_rewrite(node, edit) -> None:
    if node.op_type != "Reshape":
        return
    found = _target(node)
    if found is None:
        return
    y = node.outputs[0]
    shuffle = shuffle_of(node)
    trip = round_trip.start_of(node)
    for i, e in enumerate(found):
        if not isinstance(e, Lit) or e.value <= 0 or e.holder is None:
            continue
        if shuffle is not None:
            if i == 2:
                write_literal(edit, e, edit.new_size(node.inputs[0], 1) // shuffle[0])
        elif trip is not None:
            if i == 0:
                k = trip[0]
                write_literal(edit, e, math.prod(edit.new_size(node.inputs[0], a) for a in range(k)))
        elif edit.kept(y, i) is not None:
            write_literal(edit, e, edit.new_size(y, i))


RULES = {
    "Reshape": Rule(reshape, reshape_rewrite),
    "Flatten": Rule(reshape),
}
