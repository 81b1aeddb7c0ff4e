"""cleanup: drop dead nodes and initializers, restore topological order, and infer every
intermediate shape again so no stale shape survives (ONNX Runtime's fusions skip layers
with unknown shapes, and refuses models with stale ones)."""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common

from graphprune.registry import PrunePass, register
from graphprune.shapes import infer_exact_shapes


def remove_dead_code(model: ir.Model) -> bool:
    """onnx-ir's unused-node removal, keeping each node's input count: it trims trailing
    empty optional inputs, and some ops (Loop's `cond`) require the empty slot to stay."""
    counts = {id(n): len(n.inputs) for n in model.graph}
    modified = common.RemoveUnusedNodesPass()(model).modified
    for node in model.graph:
        if len(node.inputs) < counts.get(id(node), 0):
            node.resize_inputs(counts[id(node)])
    return modified


@register
class CleanupPass(PrunePass):
    name = "cleanup"
    kind = "cleanup"
    summary = "remove dead code, merge equal constants, sort topologically, re-infer exact shapes"
    options = {}

    def run(self, model: ir.Model) -> bool:
        before = len(model.graph)
        modified = remove_dead_code(model)
        # normalize gave each reader of a small constant its own copy; merge equal ones
        # (vectors of a vocabulary's length included; pruned weights, sliced lazily and far
        # larger, are not read).
        modified |= common.DeduplicateInitializersPass(size_limit=1 << 18)(model).modified
        modified |= common.TopologicalSortPass()(model).modified
        if model.ir_version < 4:
            # IR versions before 4 require every initializer to be a graph input too.
            modified |= common.AddInitializersToInputsPass()(model).modified
        infer_exact_shapes(model)  # annotations only: not a change of what the model computes
        unknown = sum(1 for n in model.graph for v in n.outputs if v.shape is None)
        self.stats = {"nodes_removed": before - len(model.graph), "values_without_shape": unknown}
        return modified
