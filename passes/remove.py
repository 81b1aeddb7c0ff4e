"""remove: delete the planned units from every member tensor at once.

Every constant member axis (weights, biases, BatchNorm parameters, PRelu slopes) is
sliced to its kept positions; then each node whose rule has a rewrite updates the
attributes and shape-carrying constants that spell out sizes (conv `group`, Reshape
targets, Pad pads, Slice bounds, Split sizes, Resize sizes). Constants shared with other
nodes are never edited in place: a rewritten one gets a new initializer.

A KV cache's past/present tensors that lost heads get their new declared shapes; the
context keeps their kept positions (`ctx.interface`) so verification can feed and compare
them.

Edits that compensation passes decided on the dense model (`ctx.pending`) are applied
here: new weights before slicing, bias deltas after. What was removed is recorded in
`ctx.removal` (kept positions per axis, the plan, and the dense model when a repair pass
follows) for the repair passes.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.analysis.flow import DimKey
from graphprune.analysis.rules import rule_for
from graphprune.context import Removal
from graphprune.edits import PendingEdits
from graphprune.initializers import LAZY_ELEMENTS, new_initializer, set_data, set_lazy_slice, take_positions
from graphprune.registry import PrunePass, register
from graphprune.shapes import attr_value, const_array, infer_exact_shapes, opset_of, shape_of


class Edit:
    """What a rule's rewrite sees: the kept positions of each axis and old shapes."""

    def __init__(self, model: ir.Model, kept: dict[DimKey, np.ndarray]):
        self.model = model
        self.opset = opset_of(model)
        self._kept = kept
        self.node: ir.Node | None = None
        self.rewritten = 0

    def kept(self, value: ir.Value | None, axis: int) -> np.ndarray | None:
        if value is None or value.name is None:
            return None
        rank = len(shape_of(value) or ())
        return self._kept.get((value.name, axis % rank if rank else axis))

    def new_size(self, value: ir.Value, axis: int) -> int:
        k = self.kept(value, axis)
        return int(len(k)) if k is not None else int(shape_of(value)[axis])

    def old_shape(self, value: ir.Value):
        return shape_of(value)

    # The same reading interface as the FlowBuilder, so rules can share parsing helpers.
    shape = old_shape

    def rank(self, value):
        s = shape_of(value)
        return None if s is None else len(s)

    def const(self, value):
        return const_array(value)

    def attr(self, name: str, default=None):
        return attr_value(self.node, name, default)

    def set_attr(self, node: ir.Node, name: str, value) -> None:
        if isinstance(value, (list, tuple)):
            attr = ir.AttrInt64s(name, [int(v) for v in value])
        elif isinstance(value, float):
            attr = ir.AttrFloat32(name, value)
        else:
            attr = ir.AttrInt64(name, int(value))
        node.attributes[name] = attr
        self.rewritten += 1

    def set_input(self, node: ir.Node, index: int, array: np.ndarray) -> None:
        old = node.inputs[index] if index < len(node.inputs) else None
        base = (old.name if old is not None and old.name else f"{node.name}_in{index}") + "_pruned"
        value = new_initializer(self.model.graph, base, np.asarray(array))
        if len(node.inputs) <= index:  # an optional input the node did not have yet
            node.resize_inputs(index + 1)
        node.replace_input_with(index, value)
        self.rewritten += 1


def kept_positions(analysis, plan: dict[int, np.ndarray]) -> dict[DimKey, np.ndarray]:
    kept = {}
    for gid, units in plan.items():
        g = analysis.groups[gid]
        for key, unit_of in g.members.items():
            mask = ~np.isin(unit_of, units)
            if not mask.all():
                kept[key] = np.flatnonzero(mask)
    return kept


@register
class RemovePass(PrunePass):
    name = "remove"
    kind = "remove"
    summary = "slice every member tensor of the planned units and rewrite size-carrying ops"
    options = {}

    def run(self, model: ir.Model) -> bool:
        ctx = self.ctx
        pending, ctx.pending = ctx.pending, PendingEdits()
        analysis = ctx.analysis()
        plan = dict(ctx.plan)
        kept = kept_positions(analysis, plan)
        # The dense model for the repair passes: a structural copy sharing the tensors,
        # which every edit below replaces rather than mutates.
        dense = model.clone() if ctx.keep_dense else None
        ctx.removal = Removal(plan, analysis.groups, kept, dense, ctx._stats if dense is not None else {})
        if not plan:
            self.stats = {"units_removed": 0}
            return False
        written = pending.write_weights(model)  # refit weights (compensate:lsq/scale), dense size
        edit = Edit(model, kept)
        for node in list(model.graph):
            rule = rule_for(node)
            if rule is not None and rule.rewrite is not None:
                edit.node = node
                rule.rewrite(node, edit)
        sliced = self._slice_constants(model, kept)
        compensated = pending.add_biases(model, kept)
        resized = self._resize_interface(model, kept)
        ctx.resize_interface(resized)
        for v in model.graph.inputs:  # what calibration sessions of this model cut their feeds to
            if ctx.renamed.get(v.name, v.name) in ctx.interface:
                v.meta["kept"] = ctx.interface[ctx.renamed.get(v.name, v.name)]
        infer_exact_shapes(model)
        self.stats = {
            "units_removed": int(sum(len(u) for u in plan.values())),
            "tensors_sliced": sliced,
            "cache_tensors_resized": len(resized),
            "rewrites": edit.rewritten,
            "weights_refit": written,
            "biases_compensated": compensated,
        }
        ctx.graph_changed()
        return True

    @staticmethod
    def _resize_interface(model: ir.Model, kept: dict[DimKey, np.ndarray]) -> dict[str, dict[int, np.ndarray]]:
        """Declare the new sizes of graph inputs and outputs that lost units (only a KV
        cache's head axis can: every other interface axis is pinned)."""
        graph = model.graph
        names = {v.name for v in (*graph.inputs, *graph.outputs)} - set(graph.initializers)
        cuts: dict[str, dict[int, np.ndarray]] = {}
        for (name, axis), positions in kept.items():
            if name in names:
                cuts.setdefault(name, {})[axis] = positions
        for v in (*graph.inputs, *graph.outputs):
            if v.name in cuts and v.shape is not None:
                dims = list(v.shape)
                for axis, positions in cuts[v.name].items():
                    dims[axis] = len(positions)
                v.shape = ir.Shape(dims)
        return cuts

    @staticmethod
    def _slice_constants(model: ir.Model, kept: dict[DimKey, np.ndarray]) -> int:
        by_value: dict[str, list[tuple[int, np.ndarray]]] = {}
        for (name, axis), positions in kept.items():
            by_value.setdefault(name, []).append((axis, positions))
        count = 0
        for name, cuts in by_value.items():
            value = model.graph.initializers.get(name)
            if value is None or value.const_value is None:
                continue
            if value.const_value.size > LAZY_ELEMENTS:
                set_lazy_slice(value, cuts)
            else:
                set_data(value, take_positions(value.const_value.numpy(), cuts))
            count += 1
        return count
