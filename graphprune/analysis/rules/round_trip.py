"""A merge round trip: Reshape folds leading axes into one, a few ops act on the other
axes, and a second Reshape splits them back out.

Exporters write `k.transpose(-2, -1)` of a (batch, heads, seq, head_dim) tensor as
Reshape to (batch*heads, seq, head_dim), Transpose, Reshape to (batch, heads, head_dim,
seq). The merged axis mixes batch and heads, so on its own it would pin the heads; seen as
a whole, heads go in and come out unchanged and are tied end to end.
"""

from __future__ import annotations

import math

from graphprune.shapes import const_array, shape_of

# Ops allowed between the two Reshapes: they must leave the merged axis 0 alone.
_PASS = ("Relu", "Sigmoid", "Tanh", "Neg", "Exp", "Erf", "Cast", "Identity", "Softmax",
         "LogSoftmax")
_SCALAR = ("Mul", "Div", "Add", "Sub")


def _same(a, b) -> bool:
    return a is not None and a == b


def _keeps_axis0(node) -> bool:
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Transpose":
        perm = node.attributes.get_ints("perm")
        return perm is not None and int(perm[0]) == 0
    if node.op_type in ("Softmax", "LogSoftmax"):
        rank = len(shape_of(node.inputs[0]) or ())
        axis = node.attributes.get_int("axis")
        return axis is not None and axis % max(rank, 1) != 0
    if node.op_type in _PASS:
        return True
    if node.op_type in _SCALAR and len(node.inputs) == 2:
        other = node.inputs[1]
        arr = const_array(other)
        return arr is not None and arr.size == 1
    return False


def start_of(node):
    """(k, last Reshape) when `node` folds its first k axes into one and a later Reshape
    splits them back; else None."""
    if node.op_type != "Reshape":
        return None
    x, y = node.inputs[0], node.outputs[0]
    sx, sy = shape_of(x), shape_of(y)
    if sx is None or sy is None or len(sy) >= len(sx) or len(sy) < 1:
        return None
    k = len(sx) - len(sy) + 1
    if tuple(sx[k:]) != tuple(sy[1:]) or any(d is None for d in sx):
        return None
    if all(isinstance(d, int) for d in (*sx[:k], sy[0])) and math.prod(sx[:k]) != sy[0]:
        return None
    cur = y
    for _ in range(8):
        uses = list(cur.uses())
        if len(uses) != 1:
            return None
        nxt = uses[0].node
        if nxt.op_type == "Reshape":
            sz = shape_of(nxt.outputs[0])
            si = shape_of(nxt.inputs[0])
            if sz is None or si is None or len(sz) != len(sx) or len(si) != len(sy):
                return None
            if not all(_same(a, b) for a, b in zip(sz[:k], sx[:k])) or not _same(si[0], sy[0]):
                return None
            return k, nxt
        if not _keeps_axis0(nxt) or uses[0].idx != 0:
            return None
        cur = nxt.outputs[0]
    return None


def end_of(node):
    """(k, first Reshape) when `node` is the Reshape that ends a merge round trip."""
    cur = node.inputs[0]
    for _ in range(8):
        prod = cur.producer() if cur is not None else None
        if prod is None:
            return None
        if prod.op_type == "Reshape":
            found = start_of(prod)
            return (found[0], prod) if found is not None and found[1] is node else None
        if not _keeps_axis0(prod):
            return None
        cur = prod.inputs[0]
    return None


def couple_start(b, node, k, last) -> None:
    x, y, z = node.inputs[0], node.outputs[0], last.outputs[0]
    for a in range(k):
        b.tie(x, a, z, a)
    for a in range(k, b.rank(x)):
        b.tie(x, a, y, a - k + 1)
    b.carry(y, 0)


def couple_end(b, node, k) -> None:
    w, z = node.inputs[0], node.outputs[0]
    b.carry(w, 0)
    for a in range(1, b.rank(w)):
        b.tie(w, a, z, a + k - 1)
    for a in range(k):
        b.carry(z, a)
