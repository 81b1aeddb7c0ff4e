"""Ops with weights: Conv, ConvTranspose, Gemm, MatMul.

Roles name what a weight axis is ('out' rows, 'in' columns, 'bias'), so scoring passes can
pick the slices they read without knowing op types.
"""

from __future__ import annotations

import math

import numpy as np

from graphprune.analysis.rules.base import Rule, broadcast


def _n(d) -> int:
    return d if isinstance(d, int) else 1


def conv(node, b) -> None:
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    y = node.outputs[0]
    sw, sx, sy = b.shape(w), b.shape(x), b.shape(y)
    if sw is None or sx is None or sy is None or not all(isinstance(d, int) for d in sw):
        return
    g = int(b.attr("group", 1))
    cout, m = sw[0], sw[1]
    cin = sx[1] if isinstance(sx[1], int) else m * g
    n = cout // g
    b.tie(x, 0, y, 0)
    if g == 1:
        b.tie(x, 1, w, 1)
    elif m == 1:
        # Depthwise (with channel multiplier n): input channel c feeds outputs c*n .. c*n+n-1;
        # removing it removes its whole conv group.
        b.tie(x, 1, w, 0, np.repeat(np.arange(g), n), np.arange(cout))
        b.carry(w, 1)
    else:
        # Grouped: the j-th input of every group shares weight column j, and the k-th
        # output of every group must go together to keep the groups equal in size.
        b.tie(x, 1, w, 1, np.arange(cin), np.arange(cin) % m)
        b.tie_within(w, 0, np.arange(cout), np.arange(cout) % n)
    b.tie(y, 1, w, 0)
    if bias is not None:
        b.tie(bias, 0, w, 0)
        b.role(bias, 0, "bias")
    b.role(w, 0, "out")
    b.role(w, 1, "in")
    spatial = math.prod(_n(d) for d in sy[2:]) * _n(sy[0])
    b.macs(math.prod(sw) * spatial, [(w, 0), (w, 1)])


def conv_rewrite(node, edit) -> None:
    g = int(node.attributes["group"].value) if "group" in node.attributes else 1
    w = node.inputs[1]
    if g > 1 and edit.old_shape(w)[1] == 1:
        edit.set_attr(node, "group", edit.new_size(node.inputs[0], 1))


def conv_transpose(node, b) -> None:
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    y = node.outputs[0]
    sw, sx, sy = b.shape(w), b.shape(x), b.shape(y)
    if sw is None or sx is None or sy is None or not all(isinstance(d, int) for d in sw):
        return
    g = int(b.attr("group", 1))
    b.tie(x, 0, y, 0)
    if g == 1:
        b.tie(x, 1, w, 0)
        b.tie(y, 1, w, 1)
        out_axis = 1
    elif sw[1] == 1 and sw[0] == g:
        b.tie(x, 1, w, 0)
        b.tie(y, 1, w, 0)
        b.carry(w, 1)
        out_axis = 0
    else:
        return  # grouped transposed conv with several channels per group: pinned
    if bias is not None:
        b.tie(bias, 0, y, 1)
        b.role(bias, 0, "bias")
    b.role(w, out_axis, "out")
    b.role(w, 0 if out_axis == 1 else 1, "in")
    spatial = math.prod(_n(d) for d in sx[2:]) * _n(sx[0])
    b.macs(math.prod(sw) * spatial, [(w, 0), (w, 1)])


def gemm(node, b) -> None:
    a, w = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    y = node.outputs[0]
    ta, tb = int(b.attr("transA", 0)), int(b.attr("transB", 0))
    a_k, w_k = (0 if ta else 1), (1 if tb else 0)
    a_m, w_n = 1 - a_k, 1 - w_k
    b.tie(a, a_k, w, w_k)
    b.tie(a, a_m, y, 0)
    b.tie(w, w_n, y, 1)
    if c is not None:
        broadcast(b, [c], y)
        if b.rank(c):
            b.role(c, b.rank(c) - 1, "bias")
    b.role(w, w_n, "out")
    b.role(w, w_k, "in")
    sa, sw = b.shape(a), b.shape(w)
    if sa is not None and sw is not None:
        b.macs(_n(sa[a_m]) * _n(sw[0]) * _n(sw[1]), [(a, a_m), (w, 0), (w, 1)])


def matmul(node, b) -> None:
    a, w = node.inputs
    y = node.outputs[0]
    sa, sw, sy = b.shape(a), b.shape(w), b.shape(y)
    if sa is None or sw is None or sy is None:
        return
    ra, rw, ry = len(sa), len(sw), len(sy)
    if ra == 1 or rw == 1:
        if ra >= 1 and rw >= 1:
            b.tie(a, ra - 1, w, max(rw - 2, 0))
        # With a vector operand the remaining axes map straight through.
        if rw == 1:
            for axis in range(ra - 1):
                b.tie(a, axis, y, axis)
        else:
            b.tie(w, rw - 1, y, ry - 1)
            for axis in range(rw - 2):
                b.tie(w, axis, y, axis)
        return
    b.tie(a, ra - 1, w, rw - 2)  # contraction axis
    b.tie(a, ra - 2, y, ry - 2)
    b.tie(w, rw - 1, y, ry - 1)
    if b.const(a) is None and b.const(w) is None:  # activation x activation: Q·Kᵀ, weights·V
        for x, r in ((a, ra), (w, rw), (y, ry)):
            for axis in range(r - 2):
                b.attends(x, axis)
    for x, sx in ((a, sa), (w, sw)):  # batch axes broadcast
        shift = ry - len(sx)
        for axis in range(len(sx) - 2):
            if sx[axis] == sy[axis + shift] and sx[axis] is not None:
                b.tie(x, axis, y, axis + shift)
            elif sx[axis] == 1:
                b.carry(x, axis)
    b.role(w, rw - 2, "in")
    b.role(w, rw - 1, "out")
    b.role(a, ra - 1, "in")
    b.role(a, ra - 2, "out")
    factors = [(y, ax) for ax in range(ry)] + [(a, ra - 1)]
    b.macs(math.prod(_n(d) for d in sy) * _n(sa[-1]), factors)


RULES = {
    "Conv": Rule(conv, conv_rewrite),
    "ConvTranspose": Rule(conv_transpose, conv_rewrite),
    "Gemm": Rule(gemm),
    "MatMul": Rule(matmul),
}
