"""Constant folding: replace nodes whose inputs are all constant by initializers.

Old model-zoo files build their weights at run time (ConstantOfShape, Reshape of a
constant); exported graphs compute reshape targets from the shapes of static tensors.
Folding turns both into plain initializers that the analysis can read. Common ops are
folded with NumPy; the rest go through ONNX's reference evaluator.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator

from graphprune.initializers import new_initializer
from graphprune.shapes import attr_value, opset_of, shape_of

# Refuse to materialize constants larger than this many elements.
MAX_FOLD_ELEMENTS = 1 << 29


def _numpy_fold(node: ir.Node, args: list[np.ndarray | None]):
    op = node.op_type
    if op == "ConstantOfShape":
        value = attr_value(node, "value")
        fill = value.numpy().reshape(-1)[0] if value is not None else np.float32(0)
        return [np.full([int(d) for d in args[0]], fill, dtype=np.asarray(fill).dtype)]
    if op == "Shape":
        return None  # handled before: needs the input's static shape, not its value
    if op == "Identity":
        return [args[0]]
    if op == "Cast":
        to = ir.DataType(attr_value(node, "to")).numpy()
        return [args[0].astype(to)]
    if op == "Unsqueeze":
        axes = attr_value(node, "axes") if len(args) == 1 else [int(a) for a in args[1].reshape(-1)]
        out = args[0]
        rank = out.ndim + len(axes)
        for a in sorted(x % rank for x in axes):
            out = np.expand_dims(out, a)
        return [out]
    if op == "Concat":
        return [np.concatenate(args, axis=attr_value(node, "axis"))]
    if op == "Gather" and args[1].dtype.kind in "iu":
        return [np.take(args[0], args[1], axis=attr_value(node, "axis", 0))]
    if op == "Reshape" and len(args) == 2:
        target = [int(d) for d in args[1]]
        if not attr_value(node, "allowzero", 0):
            target = [args[0].shape[i] if d == 0 else d for i, d in enumerate(target)]
        return [args[0].reshape(target)]
    if op == "Transpose":
        return [np.transpose(args[0], attr_value(node, "perm"))]
    return None


def _reference_fold(node: ir.Node, args: list[np.ndarray | None], opset: int):
    proto = ir.serde.serialize_node(node)
    names = [f"in{i}" if a is not None else "" for i, a in enumerate(args)]
    del proto.input[:]
    proto.input.extend(names)
    outs = [f"out{i}" for i in range(len(node.outputs))]
    del proto.output[:]
    proto.output.extend(outs)
    inputs = [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
              for n, a in zip(names, args) if a is not None]
    graph = onnx.helper.make_graph([proto], "fold", inputs,
                                   [onnx.helper.make_empty_tensor_value_info(o) for o in outs])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    feeds = {n: a for n, a in zip(names, args) if a is not None}
    return ReferenceEvaluator(model).run(None, feeds)


# Quantization ops are the model's numerics, not weight construction: folding a
# DequantizeLinear of constant int8 weights would silently turn a quantized model float.
_NEVER_FOLD = {"Constant", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def _foldable(node: ir.Node) -> bool:
    if node.domain not in ("", "ai.onnx") or node.op_type in _NEVER_FOLD:
        return False
    if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
        return False
    # Random ops are not constants even with constant inputs.
    return not node.op_type.startswith("Random") and node.op_type not in ("Multinomial", "Bernoulli")


def _copies_shared_weights(node: ir.Node, results) -> bool:
    """Folding would store a second version of a weight another node also reads (the
    transposed embedding of a tied LM head): the model would grow, so the node stays.
    (A Shape of the weight or a small result is no copy.)"""
    big = any(np.asarray(r).dtype.kind == "f" and np.asarray(r).size >= 64 for r in results)
    for v in node.inputs:
        t = v.const_value if v is not None else None
        if big and t is not None and t.dtype.is_floating_point() and t.size > 1 and len(list(v.uses())) > 1:
            return True
    return False


def fold_constants(model: ir.Model) -> int:
    """Fold in place; return the number of nodes folded."""
    graph = model.graph
    opset = opset_of(model)
    outputs = {id(v) for v in graph.outputs}
    folded = 0
    for node in list(graph):
        if not _foldable(node) or any(id(o) in outputs for o in node.outputs):
            continue
        if node.op_type == "Shape":
            s = shape_of(node.inputs[0])
            if s is None or not all(isinstance(d, int) for d in s):
                continue
            start = attr_value(node, "start", 0)
            end = attr_value(node, "end", None)
            results = [np.array(s[slice(start, end)], dtype=np.int64)]
        elif node.op_type == "CastLike" and node.inputs[0].const_value is not None and node.inputs[1].dtype is not None:
            # Only the type of the second input matters (exporters cast a constant like the input).
            results = [node.inputs[0].const_value.numpy().astype(node.inputs[1].dtype.numpy())]
        else:
            args = [v.const_value.numpy() if v is not None and v.const_value is not None else None
                    for v in node.inputs]
            if any(v is not None and a is None for v, a in zip(node.inputs, args)) or not node.inputs:
                continue
            if node.op_type == "ConstantOfShape" and math.prod(int(d) for d in args[0]) > MAX_FOLD_ELEMENTS:
                continue
            try:
                results = _numpy_fold(node, args)
                if results is None:
                    results = _reference_fold(node, args, opset)
            except Exception:  # noqa: BLE001 - an op we cannot evaluate stays in the graph
                continue
        if _copies_shared_weights(node, results):
            continue
        _replace_with_constants(graph, node, results)
        folded += 1
    return folded


def derived_from(value: ir.Value) -> tuple[str, list[int]] | None:
    """(name of the initializer a folded constant was transposed from, axis of it for each
    of this one's axes), following folds and normalization's copies; None for a constant
    that is not a transposed or copied initializer. The PyTorch frontend maps what pruning
    cut from a folded weight back to the module's parameter with it."""
    origin = value.meta.get("derived_from")
    if origin is not None:
        return origin
    source = value.meta.get("copy_of")
    return (source, list(range(len(value.shape or ())))) if source else None


def _provenance(node: ir.Node) -> tuple[str, list[int]] | None:
    """A Transpose (or Identity) of a named initializer keeps track of it."""
    src = node.inputs[0] if node.inputs else None
    if node.op_type not in ("Transpose", "Identity") or src is None or src.const_value is None or not src.name:
        return None
    rank = len(src.const_value.shape)
    perm = list(attr_value(node, "perm", list(reversed(range(rank))))) if node.op_type == "Transpose" \
        else list(range(rank))
    inner = derived_from(src)
    base, axes = inner if inner is not None else (src.name, list(range(rank)))
    return base, [axes[p] for p in perm]


def _replace_with_constants(graph: ir.Graph, node: ir.Node, results) -> None:
    origin = _provenance(node)
    for out, arr in zip(node.outputs, results):
        arr = np.asarray(arr)
        if out.dtype is not None and out.dtype.numpy() != arr.dtype:
            arr = arr.astype(out.dtype.numpy())
        name, out.name = out.name, None
        const = new_initializer(graph, name or "folded", arr)
        if origin is not None:
            const.meta["derived_from"] = origin
        out.replace_all_uses_with(const)
    graph.remove(node, safe=True)
