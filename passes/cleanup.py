"""cleanup: drop dead nodes and initializers, restore topological order, and infer every
intermediate shape again so no stale shape survives (ONNX Runtime's fusions skip layers
with unknown shapes, and refuses models with stale ones)."""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common

from graphprune.registry import PrunePass, register
from graphprune.shapes import infer_exact_shapes


@register
class CleanupPass(PrunePass):
    name = "cleanup"
    kind = "cleanup"
    summary = "remove dead code, sort topologically, re-infer exact shapes"
    options = {}

    def run(self, model: ir.Model) -> bool:
        before = len(model.graph)
        common.RemoveUnusedNodesPass()(model)
        common.TopologicalSortPass()(model)
        if model.ir_version < 4:
            # IR versions before 4 require every initializer to be a graph input too.
            common.AddInitializersToInputsPass()(model)
        infer_exact_shapes(model)
        unknown = sum(1 for n in model.graph for v in n.outputs if v.shape is None)
        self.stats = {"nodes_removed": before - len(model.graph), "values_without_shape": unknown}
        return True
