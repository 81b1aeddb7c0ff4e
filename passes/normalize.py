"""normalize: bring any exporter's graph into the one form the analysis expects.

Guarantees afterwards: initializers are not graph inputs; Constant nodes are initializers;
constant subgraphs are folded; no Identity and no inference-time Dropout remain; Sum has
at most two inputs (a chain of Adds); every value has a name; nodes are in topological
order; shapes are freshly inferred. The model computes exactly what it computed before.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common

from graphprune.initializers import new_initializer

from graphprune.registry import PrunePass, register
from graphprune.shapes import const_array, infer_exact_shapes, opset_of, shape_of
from graphprune.passes.cleanup import remove_dead_code
from graphprune.passes.fold_constants import fold_constants
from graphprune.passes.unshare import privatize_shape_targets, unshare_constants


def drop_identity(graph: ir.Graph) -> int:
    """Remove Identity nodes of the main graph whose output is not a graph output.
    (Identity inside subgraphs stays: it has a rule, and rewiring there is not needed.)"""
    count = 0
    outputs = {id(v) for v in graph.outputs}
    for node in list(graph):
        if node.op_type != "Identity" or node.domain not in ("", "ai.onnx") or id(node.outputs[0]) in outputs:
            continue
        node.outputs[0].replace_all_uses_with(node.inputs[0])
        graph.remove(node, safe=True)
        count += 1
    return count


def drop_dropout(graph: ir.Graph) -> int:
    """Inference-time Dropout is the identity on its first output; drop it when its mask
    is unused and training_mode is not set."""
    count = 0
    outputs = {id(v) for v in graph.outputs}
    for node in list(graph):
        if node.op_type != "Dropout" or node.domain not in ("", "ai.onnx"):
            continue
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            mode = node.inputs[2].const_value
            if mode is None or bool(mode.numpy()):
                continue
        if any(o is not None and (o.uses() or id(o) in outputs) for o in node.outputs[1:]):
            continue
        y = node.outputs[0]
        if id(y) in outputs:
            continue
        y.replace_all_uses_with(node.inputs[0])
        graph.remove(node, safe=True)
        count += 1
    return count


def split_sum(graph: ir.Graph) -> int:
    """Sum(a, b, c, ...) -> Add(Add(a, b), c) ...; Sum(a, b) -> Add(a, b)."""
    count = 0
    for node in list(graph):
        if node.op_type != "Sum" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
            continue
        acc = node.inputs[0]
        base = node.name or "sum"
        for i, x in enumerate(node.inputs[1:]):
            last = i == len(node.inputs) - 2
            add = ir.node("Add", [acc, x], name=f"{base}/add{i}")
            graph.insert_before(node, add)
            acc = add.outputs[0]
            if last:
                acc.name = None
        y = node.outputs[0]
        name = y.name
        y.replace_all_uses_with(acc, replace_graph_outputs=True)
        graph.remove(node, safe=True)
        acc.name = name
        count += 1
    return count


def split_sequences(graph: ir.Graph) -> int:
    """SplitToSequence read only by SequenceAt with constant indices (how the dynamo
    exporter, unoptimized, writes torch.split) -> one Split (opset 13+: sizes as an input),
    whose rule the analysis has."""
    count = 0
    for node in list(graph):
        if node.op_type != "SplitToSequence" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
            continue
        x, sizes = node.inputs[0], const_array(node.inputs[1])
        uses = list(node.outputs[0].uses())
        idx = [const_array(u.node.inputs[1]) if u.node.op_type == "SequenceAt" and len(u.node.inputs) > 1 else None
               for u in uses]
        s = shape_of(x)
        if sizes is None or s is None or not uses or any(i is None or i.size != 1 for i in idx):
            continue
        axis = node.attributes.get_int("axis", 0) % len(s)
        if sizes.ndim == 0:  # a chunk size: equal chunks, the last one shorter
            if not isinstance(s[axis], int):
                continue
            full, rest = divmod(s[axis], int(sizes))
            sizes = np.array([int(sizes)] * full + ([rest] if rest else []), dtype=np.int64)
        base = node.name or "split"
        split = ir.node("Split", [x, new_initializer(graph, f"{base}_sizes", sizes.astype(np.int64))],
                        attributes={"axis": axis}, num_outputs=len(sizes), name=f"{base}/split")
        graph.insert_before(node, split)
        for use, i in zip(uses, idx):
            out, old = split.outputs[int(i.reshape(-1)[0]) % len(sizes)], use.node.outputs[0]
            name = old.name
            old.replace_all_uses_with(out, replace_graph_outputs=True)
            graph.remove(use.node, safe=True)
            out.name = out.name or name
        graph.remove(node, safe=True)
        count += 1
    return count


@register
class NormalizePass(PrunePass):
    name = "normalize"
    kind = "normalize"
    summary = ("fold constants, drop Identity/Dropout, split Sum, unshare small constants, "
               "name values, sort, infer shapes")
    options = {"fold": True}

    def run(self, model: ir.Model) -> bool:
        graph = model.graph
        common.RemoveInitializersFromInputsPass()(model)
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        common.NameFixPass()(model)
        infer_exact_shapes(model)
        folded = fold_constants(model) if self.opts["fold"] else 0
        identities = drop_identity(graph)
        dropouts = drop_dropout(graph)
        sums = split_sum(graph)
        sequences = split_sequences(graph) if opset_of(model) >= 13 else 0
        remove_dead_code(model)
        unshared = unshare_constants(graph)
        privatized = privatize_shape_targets(graph)
        common.TopologicalSortPass()(model)
        infer_exact_shapes(model)
        self.stats = {"folded": folded, "dropout_removed": dropouts, "sum_split": sums,
                      "identity_removed": identities, "constants_unshared": unshared,
                      "shape_targets_privatized": privatized, "sequence_splits": sequences}
        return True
