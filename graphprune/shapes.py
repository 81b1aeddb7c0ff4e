"""Small helpers over onnx-ir values and nodes: static shapes, constant arrays, attribute
values, exact shape inference."""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

Dim = int | str | None

# When ONNX shape inference fails, onnx-ir logs the exception with its traceback. Failure
# is visible to us as values without shapes (which pin the nodes that touch them), so keep
# the traceback off the user's terminal.
logging.getLogger("onnx_ir.passes.common.shape_inference").setLevel(logging.CRITICAL)


def shape_of(value: ir.Value | None) -> tuple[Dim, ...] | None:
    """The value's shape with ints for static dims, names for symbolic ones, None for unknown."""
    if value is None:
        return None
    if value.const_value is not None:
        return tuple(int(d) for d in value.const_value.shape)
    if value.shape is None:
        return None
    dims: list[Dim] = []
    for d in value.shape:
        if isinstance(d, int):
            dims.append(d)
        elif isinstance(d, ir.SymbolicDim) and d.value is not None:
            dims.append(str(d.value))
        else:
            dims.append(None)
    return tuple(dims)


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The constant content of a value (initializer), or None."""
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def attr_value(node: ir.Node, name: str, default=None):
    """The Python value of a node's attribute (int, float, string, list, tensor), or
    `default` where the node does not set it."""
    a = node.attributes.get(name)
    return default if a is None else a.value


def int_list(value: ir.Value | None) -> list[int] | None:
    arr = const_array(value)
    return None if arr is None else [int(x) for x in arr.reshape(-1)]


def opset_of(model: ir.Model) -> int:
    return int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1)))


def infer_exact_shapes(model: ir.Model) -> None:
    """Forget intermediate shapes and infer them again, so no stale shape survives pruning."""
    graph = model.graph
    keep = {id(v) for v in graph.inputs} | {id(v) for v in graph.outputs}
    for node in graph:
        for out in node.outputs:
            if id(out) not in keep:
                out.shape = None
    for init in graph.initializers.values():
        if init.const_value is not None:
            init.shape = ir.Shape(init.const_value.shape)
            init.dtype = init.const_value.dtype
    for _ in range(4):
        ShapeInferencePass(strict_mode=False, data_prop=True)(model)
        # ONNX's inference stops at ops it does not know; where we know the shape, fill it
        # in and infer again so it flows on past them.
        if not _fill_shape_preserving(graph):
            break
    _refine_symbolic(model)


# Ops whose first output has the shape of their first input; ONNX's inference misses some
# (function ops such as GroupNormalization), and an unknown shape pins the whole node.
SHAPE_PRESERVING = {
    "GroupNormalization", "LayerNormalization", "InstanceNormalization", "BatchNormalization",
    "RMSNormalization", "LRN", "Softmax", "LogSoftmax", "Relu", "Gelu", "Mish", "HardSwish",
    "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "LeakyRelu", "PRelu", "Softplus", "Swish",
}


# ONNX Runtime's contrib ops of the same kind (unknown to ONNX's inference); fused
# attention over separate Q, K, V returns the query's shape.
SHAPE_PRESERVING_CONTRIB = {"Gelu", "FastGelu", "BiasGelu", "QuickGelu", "BiasSoftmax",
                            "GroupQueryAttention", "MultiHeadAttention", "SkipLayerNormalization", "MoE",
                            "SkipSimplifiedLayerNormalization", "Inverse"}


def _preserved_shape(node: ir.Node, dims: list) -> list:
    """The first output's shape: the first input's, but for GroupQueryAttention with packed
    Q/K/V only the query heads come out."""
    if node.op_type == "GroupQueryAttention":
        from graphprune.analysis.rules.decoder_attention import gqa_layout

        layout = gqa_layout(node, shape_of)
        if layout is not None:
            heads, _, size, _ = layout
            dims[-1] = heads * size
    return dims


def _fill_shape_preserving(graph: ir.Graph) -> int:
    filled = 0
    for node in graph:
        known = (node.op_type in SHAPE_PRESERVING and node.domain in ("", "ai.onnx")) or (
            node.op_type in SHAPE_PRESERVING_CONTRIB and node.domain == "com.microsoft")
        if not known or not node.inputs:
            continue
        x, y = node.inputs[0], node.outputs[0]
        if y.shape is None and x is not None and x.shape is not None:
            y.shape = ir.Shape(_preserved_shape(node, list(x.shape)))
            if y.dtype is None:
                y.dtype = x.dtype
            filled += 1
    return filled



def _dynamic(model: ir.Model) -> bool:
    return any(shape_of(v) is not None and not all(isinstance(d, int) for d in shape_of(v))
               for v in model.graph.inputs)


def _shape_proto(model: ir.Model):
    """The model as a proto for shape inference, without reading or copying weights: an
    initializer over 4096 elements goes in as a graph input of its shape and type (a
    pruned weight may be a lazy slice of a memory-mapped file: serializing it would
    materialize gigabytes); smaller ones, which shape computations read, are inlined."""
    import onnx

    graph = model.graph
    order = list(graph.initializers.values())
    big = [v for v in order if v.const_value is not None and v.const_value.size > 4096]
    tensors = {v.name: v.const_value for v in big}
    inputs = len(graph.inputs)
    for v in big:
        v.shape, v.dtype = v.shape or v.const_value.shape, v.dtype or v.const_value.dtype
        if v not in graph.inputs:
            graph.inputs.append(v)
        v.const_value = None
        graph.initializers.pop(v.name)
    try:
        proto = ir.serde.serialize_model(model)
    finally:
        while len(graph.inputs) > inputs:
            graph.inputs.pop()
        for v in big:
            v.const_value = tensors[v.name]
        graph.initializers.clear()
        for v in order:
            graph.register_initializer(v)
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            init.CopyFrom(onnx.numpy_helper.from_array(graph.initializers[init.name].const_value.numpy(), init.name))
    return proto


_SYMBOLIC = []


def _symbolic_class():
    """ONNX Runtime's SymbolicShapeInference, loaded from its file. Importing it as
    `onnxruntime.tools.symbolic_shape_infer` runs the package's __init__, which imports
    torch whenever torch is installed: over a second per run for nothing."""
    if not _SYMBOLIC:
        import importlib.util
        import os

        spec = importlib.util.find_spec("onnxruntime")
        dirs = list(spec.submodule_search_locations or []) if spec else []
        path = next((os.path.join(d, "tools", "symbolic_shape_infer.py") for d in dirs
                     if os.path.isfile(os.path.join(d, "tools", "symbolic_shape_infer.py"))), None)
        if path is None:
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference as cls
        else:
            file_spec = importlib.util.spec_from_file_location("graphprune._ort_symbolic_shape_infer", path)
            module = importlib.util.module_from_spec(file_spec)
            file_spec.loader.exec_module(module)
            cls = module.SymbolicShapeInference
        _SYMBOLIC.append(cls)
    return _SYMBOLIC[0]


def _ort_symbolic(proto):
    """ONNX Runtime's symbolic inference, or None where it is incomplete. Its public
    `infer_shapes` then dumps the model (and its weights) into the working directory;
    this runs the same steps without that. Where the steps are not there (another ONNX
    Runtime), the public call runs inside a temporary directory."""
    SymbolicShapeInference = _symbolic_class()
    steps = ("_preprocess", "_infer_impl", "_update_output_from_vi")
    if not all(hasattr(SymbolicShapeInference, s) for s in steps):
        import contextlib
        import tempfile

        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
            return SymbolicShapeInference.infer_shapes(proto, auto_merge=True)
    ssi = SymbolicShapeInference(2**31 - 1, True, False, 0)
    ssi._preprocess(proto)
    complete = False
    while ssi.run_:
        complete = ssi._infer_impl()
    ssi._update_output_from_vi()
    return ssi.out_mp_ if complete else None


def _refine_symbolic(model: ir.Model) -> None:
    """ONNX's inference does not know ONNX Runtime's contrib ops (fused attention), and
    dynamic-axis exports build Reshape targets at run time, and ONNX's inference then
    loses sizes (heads come out as 'unk__3', batch under several names). ONNX Runtime's
    symbolic inference (sympy) computes them: take its shapes where it knows more."""
    unknown = any(v.shape is None for node in model.graph for v in node.outputs if v is not None)
    if not _dynamic(model) and not unknown:
        return
    try:
        inferred = _ort_symbolic(_shape_proto(model))
    except Exception:  # noqa: BLE001 - optional refinement; ONNX's shapes stay
        return
    if inferred is None:
        return
    found, types = {}, {}
    for vi in inferred.graph.value_info:
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in vi.type.tensor_type.shape.dim]
        found[vi.name] = dims
        types[vi.name] = vi.type.tensor_type.elem_type
    keep = {id(v) for v in model.graph.outputs}
    for node in model.graph:
        for out in node.outputs:
            dims = found.get(out.name)
            if dims is None or id(out) in keep or None in dims:
                continue
            old = shape_of(out)
            if old is not None and len(old) != len(dims):
                continue
            out.shape = ir.Shape(dims)
            if out.dtype is None and types.get(out.name):
                out.dtype = ir.DataType(types[out.name])
