"""What a shape tensor computed at run time is made of, entry by entry.

Exporters with dynamic axes build Reshape and Expand targets at run time, e.g.
`Concat(Shape(x)[0:2], [4], [16])` for (batch, seq, heads, head_dim). Each entry of such a
target is one of:

- `Lit(value, holder)`: a literal from a constant. `holder = (node, input, flat index)`
  says where it can be rewritten; it is None when the constant reaches other consumers
  too (a rewrite would change them as well).
- `Dim(value, axis)`: the run-time size of an axis of a tensor. Such an entry follows
  that axis when it is pruned, so the two axes must lose the same units.
- None: computed some other way (arithmetic on sizes): nothing is known about it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from graphprune.shapes import const_array, shape_of


@dataclass(frozen=True)
class Lit:
    value: int
    holder: tuple | None  # (node, input index, flat index) of a private constant


@dataclass(frozen=True)
class Dim:
    value: ir.Value
    axis: int


Entry = Lit | Dim | None

# Ops a shape value passes through entry by entry (what `entries` can follow).
SHAPE_OPS = ("Shape", "Concat", "Slice", "Gather", "Squeeze", "Unsqueeze", "Cast", "Identity")


def _length(value: ir.Value) -> int | None:
    s = shape_of(value)
    if s is None or len(s) > 1:
        return None
    n = 1 if len(s) == 0 else s[0]
    return n if isinstance(n, int) else None


def entries(node: ir.Node, index: int, private: bool = True, depth: int = 0) -> list[Entry] | None:
    """The entries of `node.inputs[index]`, a 0-D or 1-D integer tensor; None when even its
    length is unknown."""
    value = node.inputs[index] if index < len(node.inputs) else None
    if value is None:
        return None
    arr = const_array(value)
    if arr is not None:
        if arr.ndim > 1 or arr.dtype.kind not in "iu":
            return None
        # Rewriting gives this node a constant of its own, so other readers of the same
        # constant do not matter; only the path from here to the consumer must be private.
        return [Lit(int(v), (node, index, k) if private else None) for k, v in enumerate(arr.reshape(-1))]
    n = _length(value)
    prod = value.producer()
    if prod is None or depth > 16 or prod.domain not in ("", "ai.onnx") or prod.op_type not in SHAPE_OPS:
        return None if n is None else [None] * n
    # A rewrite may only touch constants that feed this consumer alone.
    private = private and len(list(value.uses())) == 1 and len(prod.outputs) == 1
    found = _through(prod, private, depth)
    if found is None or (n is not None and len(found) != n):
        return None if n is None else [None] * n
    return found


def _through(prod: ir.Node, private: bool, depth: int) -> list[Entry] | None:
    op = prod.op_type
    if op == "Shape":
        x = prod.inputs[0]
        rank = len(shape_of(x) or ()) if shape_of(x) is not None else None
        if rank is None:
            return None
        start = prod.attributes.get_int("start", 0)
        end = prod.attributes.get_int("end", rank)
        axes = range(rank)[slice(start, end)]
        return [Dim(x, a) for a in axes]
    if op == "Concat":
        out: list[Entry] = []
        for i in range(len(prod.inputs)):
            part = entries(prod, i, private, depth + 1)
            if part is None:
                return None
            out.extend(part)
        return out
    src = entries(prod, 0, private, depth + 1)
    if src is None:
        return None
    if op in ("Squeeze", "Unsqueeze", "Cast", "Identity"):
        return src
    if op == "Gather":
        idx = const_array(prod.inputs[1])
        if idx is None or prod.attributes.get_int("axis", 0) != 0:
            return None
        return [src[int(i)] for i in idx.reshape(-1)]
    if op == "Slice":
        params = [const_array(v) if v is not None else None for v in prod.inputs[1:5]]
        if len(prod.inputs) < 3 or params[0] is None or params[1] is None:
            return None
        if any(v is not None and p is None for v, p in zip(prod.inputs[3:5], params[2:4])):
            return None
        step = int(params[3][0]) if len(params) > 3 and params[3] is not None else 1
        return src[slice(int(params[0][0]), int(params[1][0]), step)]
    return None


def write_literal(edit, entry: Lit, new: int) -> None:
    """Rewrite one literal in place (copy-on-write: the constant is private to its node)."""
    node, index, k = entry.holder
    arr = np.array(const_array(node.inputs[index]), copy=True)
    if arr.reshape(-1)[k] == new:
        return
    arr.reshape(-1)[k] = new
    edit.set_input(node, index, arr)


def escaping_axes(shape_node: ir.Node) -> set[int] | None:
    """Axes of a Shape node's input whose run-time size reaches anything but a
    Reshape/Expand target (whose rules tie it); None: all of them."""
    x = shape_node.inputs[0]
    seen, todo, out = set(), [shape_node.outputs[0]], set()
    graph_outputs = {id(v) for v in (shape_node.graph.outputs if shape_node.graph else [])}
    while todo:
        value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if id(value) in graph_outputs:
            return None
        for use in value.uses():
            node, idx = use.node, use.idx
            if node.domain in ("", "ai.onnx") and node.op_type in SHAPE_OPS[1:]:
                todo.extend(o for o in node.outputs if o is not None)
                continue
            if node.domain in ("", "ai.onnx") and node.op_type in ("Reshape", "Expand") and idx == 1:
                continue
            found = entries(node, idx, private=False)
            if found is None or any(e is None for e in found):
                return None
            out.update(e.axis for e in found if isinstance(e, Dim) and e.value is x)
    return out
