"""Adding a per-output-channel vector to a consumer's bias, creating the bias where the
consumer has none (Conv and Gemm bias inputs; a MatMul's following Add, or a new Add).

Compensation passes record updates before `remove` (graphprune.edits: they need the
dense weights and the plan); `remove` applies them after slicing, cutting each vector to
the output channels that stayed. Repair passes apply theirs directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from graphprune.initializers import new_initializer, set_data
from graphprune.shapes import const_array, shape_of


@dataclass
class BiasUpdate:
    node: ir.Node
    delta: np.ndarray             # one value per output channel of the dense consumer
    out_key: tuple[str, int]      # weight axis of the output channels (slices the delta)


def _add_to_input(graph: ir.Graph, node: ir.Node, index: int, delta: np.ndarray) -> None:
    old = node.inputs[index] if index < len(node.inputs) else None
    arr = const_array(old) if old is not None else None
    if old is not None and arr is None:
        raise ValueError("bias is not a constant")
    base = np.zeros(delta.shape, np.float32) if arr is None else arr
    new = (np.broadcast_to(base, np.broadcast_shapes(base.shape, delta.shape)) +
           delta.reshape((1,) * (base.ndim - 1) + (-1,)) if base.ndim else base + delta).astype(base.dtype)
    if old is not None and len(list(old.uses())) == 1 and old.name in graph.initializers and new.shape == arr.shape:
        set_data(old, new)
        return
    value = new_initializer(graph, f"{node.name or 'node'}_bias", new)
    if len(node.inputs) <= index:
        node.resize_inputs(index + 1)
    node.replace_input_with(index, value)


def _matmul_bias(graph: ir.Graph, node: ir.Node, delta: np.ndarray) -> None:
    y = node.outputs[0]
    uses = list(y.uses())
    if len(uses) == 1 and uses[0].node.op_type == "Add" and not y.is_graph_output():
        add = uses[0].node
        other = 1 - uses[0].idx
        arr = const_array(add.inputs[other])
        if arr is not None and arr.shape[-1:] == delta.shape and all(d == 1 for d in arr.shape[:-1]):
            _add_to_input(graph, add, other, delta.astype(arr.dtype))
            return
    c = new_initializer(graph, f"{node.name or 'matmul'}_bias", delta.astype(np.float32))
    add = ir.node("Add", [y, c], name=f"{node.name or 'matmul'}/bias")
    graph.insert_after(node, add)
    out = add.outputs[0]
    out.shape, out.dtype = y.shape, y.dtype
    for use in uses:
        use.node.replace_input_with(use.idx, out)
    if y.is_graph_output():
        name = y.name
        y.name = f"{name}_before_bias"
        out.name = name
        graph.outputs[graph.outputs.index(y)] = out
    else:
        out.name = f"{y.name}_biased"


def apply(model: ir.Model, updates: list[BiasUpdate], kept: dict) -> int:
    """Add each update's delta (cut to the output channels in `kept`, if sliced) to its
    consumer's bias; returns how many were applied."""
    graph = model.graph
    done = 0
    for u in updates:
        delta = u.delta
        positions = kept.get(u.out_key)
        if positions is not None:
            delta = delta[positions]
        node = u.node
        op = node.op_type
        if op in ("Conv", "Gemm") or (op == "Attention" and node.domain == "com.microsoft"):
            _add_to_input(graph, node, 2, delta.astype(np.float32))
        elif op == "MatMul":
            _matmul_bias(graph, node, delta)
        else:
            continue
        done += 1
    return done


def out_axis(node: ir.Node, weight: ir.Value) -> int | None:
    """The weight axis of a consumer's output channels."""
    op = node.op_type
    rank = len(shape_of(weight) or ())
    if op == "Conv":
        return 0
    if op == "Gemm":
        return 0 if node.attributes.get_int("transB", 0) else 1
    if op == "MatMul" and node.inputs[1] is weight:
        return rank - 1
    if op == "Attention" and node.domain == "com.microsoft":
        return 1
    return None


def current_bias(node: ir.Node) -> np.ndarray | None:
    """The per-output-channel bias a consumer has now: its Conv/Gemm bias input, or the
    constant of the Add that follows a MatMul; None where there is none."""
    if node.op_type in ("Conv", "Gemm") and len(node.inputs) > 2 and node.inputs[2] is not None:
        b = const_array(node.inputs[2])
        return None if b is None else np.broadcast_to(b, b.shape).reshape(-1)
    if node.op_type == "MatMul":
        uses = list(node.outputs[0].uses())
        if len(uses) == 1 and uses[0].node.op_type == "Add":
            b = const_array(uses[0].node.inputs[1 - uses[0].idx])
            if b is not None and all(d == 1 for d in b.shape[:-1]):
                return b.reshape(-1)
    return None
