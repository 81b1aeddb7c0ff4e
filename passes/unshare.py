"""Undo sharing that couples what the model does not couple.

Exporters deduplicate equal constants: a freshly initialised transformer has every bias
at zero and every LayerNorm scale at one, and one initializer then feeds all of them.
Through that constant every bias axis would be one group, and heads could not be pruned
per layer. Small constants (vectors and scalars, and matrices of at most SMALL elements)
get one copy per reader; a bigger shared matrix is real weight sharing (an embedding used
as the output head, a recurrent weight read in every step) and stays shared: copying it
would multiply the model's size and its parameter counts.
`cleanup` merges equal constants again at the end.

Shape targets built at run time (`Concat(Shape(x)[0:2], [4], [16])`) shared by several
Reshapes get one Concat each, so a rewrite of one Reshape's head count is its own.
"""

from __future__ import annotations

import onnx_ir as ir

from graphprune.initializers import free_name, new_initializer

SMALL = 1 << 12  # elements of a shared matrix that is copied; vectors of any length are


def unshare_constants(graph: ir.Graph) -> int:
    copies = 0
    for value in list(graph.initializers.values()):
        arr = value.const_value
        if arr is None or value in graph.inputs or value in graph.outputs:
            continue
        uses = list(value.uses())
        if len(uses) < 2 or (len(arr.shape) > 1 and arr.size > SMALL):
            continue
        for n, use in enumerate(uses[1:], start=1):
            copy = new_initializer(graph, f"{value.name}_use{n}", arr.numpy())
            copy.meta["copy_of"] = value.name  # stored once: analysis.cost.stored_params
            use.node.replace_input_with(use.idx, copy)
            copies += 1
    return copies


def privatize_shape_targets(graph: ir.Graph) -> int:
    """Give each Reshape/Expand its own Concat when a computed target is shared."""
    clones = 0
    taken = {v.name for node in graph for v in node.outputs} | set(graph.initializers)
    for node in list(graph):
        if node.op_type not in ("Reshape", "Expand") or len(node.inputs) < 2:
            continue
        target = node.inputs[1]
        prod = target.producer() if target is not None else None
        if prod is None or prod.op_type != "Concat" or len(list(target.uses())) < 2:
            continue
        clone = ir.node("Concat", list(prod.inputs), attributes={"axis": 0},
                        name=f"{prod.name}_for_{node.name}")
        graph.insert_after(prod, clone)
        clone.outputs[0].name = free_name(taken, f"{target.name}_for_{node.name}")
        taken.add(clone.outputs[0].name)
        clone.outputs[0].shape = target.shape
        clone.outputs[0].dtype = target.dtype
        node.replace_input_with(1, clone.outputs[0])
        clones += 1
    return clones

