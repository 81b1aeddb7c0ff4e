"""Where a group's channels are consumed: for each weight axis with the 'in' role, the
node, the activation tensor that feeds those columns, and its channel axis. Activation-
based criteria and compensation read statistics of these tensors.

Supported consumers: Conv and ConvTranspose without groups, Gemm, MatMul with a constant
operand, and ONNX Runtime's packed-QKV Attention. Others (depthwise and grouped convs)
have no per-column activation: the criteria fall back to magnitude there and say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from graphprune.analysis.groups import Group
from graphprune.shapes import shape_of


@dataclass
class Consumer:
    key: tuple[str, int]      # (weight name, its 'in' axis)
    node: ir.Node
    data: ir.Value            # the activation feeding those columns
    axis: int                 # its channel axis (non-negative)

    def columns(self, weight: np.ndarray) -> np.ndarray:
        """The weight as (in positions, everything else)."""
        moved = np.moveaxis(weight, self.key[1], 0)
        return moved.reshape(moved.shape[0], -1)


def _data_input(node: ir.Node, weight_name: str, weight_axis: int):
    ins = node.inputs
    op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
    if op in ("Conv", "ConvTranspose"):
        if ins[1].name != weight_name or node.attributes.get_int("group", 1) != 1:
            return None
        return ins[0], 1
    if op == "Gemm":
        if ins[1].name != weight_name:
            return None
        return ins[0], 0 if node.attributes.get_int("transA", 0) else 1
    if op == "MatMul":
        if ins[1].name == weight_name:
            return ins[0], -1
        if ins[0].name == weight_name:
            return ins[1], -2
        return None
    if op == "com.microsoft::Attention" and ins[1].name == weight_name:
        return ins[0], 2
    return None


def consumers(group: Group, model: ir.Model) -> list[Consumer]:
    by_name = {n.name: n for n in model.graph if n.name}
    out, seen = [], set()
    for key, role, node_name in group.roles:
        if role != "in" or (key, node_name) in seen or node_name not in by_name:
            continue
        seen.add((key, node_name))
        node = by_name[node_name]
        found = _data_input(node, key[0], key[1])
        if found is None:
            continue
        data, axis = found
        s = shape_of(data)
        if s is None or data.name is None:
            continue
        axis %= len(s)
        if (data.name, axis) not in group.members:
            continue  # the activation axis must be a member, position for position
        out.append(Consumer(key, node, data, axis))
    return out
