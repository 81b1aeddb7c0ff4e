"""ONNX graphs built by hand for what the PyTorch exporters do not produce: old opsets
(attribute-style Pad/Slice/Split, Upsample, Sum, explicit BatchNormalization, Dropout,
LRN, ConstantOfShape weights), and an NHWC graph laid out as tf2onnx/Keras do."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_rng = np.random.default_rng(0)


def _w(*shape, scale=0.3):
    return (_rng.standard_normal(shape) * scale).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset, ir_version=None):
    if ir_version is not None and ir_version < 4:  # old IR: initializers are inputs too
        inputs = inputs + [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                           for k, v in inits.items()]
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version or min(m.ir_version, 8)
    onnx.checker.check_model(m)
    return m


def _io(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def nhwc_keras_style() -> onnx.ModelProto:
    """Input NHWC; Transpose to NCHW around each Conv; per-channel Mul/Add on NHWC."""
    inits = {"w1": _w(8, 3, 3, 3), "b1": _w(8), "scale": _w(8) + 1, "shift": _w(8),
             "w2": _w(12, 8, 3, 3), "b2": _w(12), "fc": _w(12, 10), "fcb": _w(10),
             "axes": np.array([1, 2], dtype=np.int64)}
    n = [
        helper.make_node("Transpose", ["x"], ["t0"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c1"], ["h1"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["h1", "scale"], ["m1"]),
        helper.make_node("Add", ["m1", "shift"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("Transpose", ["r1"], ["t1"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Transpose", ["c2"], ["h2"], perm=[0, 2, 3, 1]),
        helper.make_node("Relu", ["h2"], ["r2"]),
        helper.make_node("ReduceMean", ["r2", "axes"], ["p"], keepdims=0),
        helper.make_node("MatMul", ["p", "fc"], ["mm"]),
        helper.make_node("Add", ["mm", "fcb"], ["y"]),
    ]
    return _model(n, [_io("x", [1, 8, 8, 3])], [_io("y", [1, 10])], inits, 18)


def old_opset7() -> onnx.ModelProto:
    """Opset 7: attribute Pad on the channel axis, attribute Slice, Upsample, 3-input Sum,
    explicit BatchNormalization, Dropout, LRN, weights built by Reshape of a constant."""
    inits = {"w1": _w(8, 3, 3, 3), "b1": _w(8),
             "bn_s": _w(8) + 1, "bn_b": _w(8), "bn_m": _w(8) * 0.1, "bn_v": np.abs(_w(8)) + 0.5,
             "w2flat": _w(12 * 8), "w2shape": np.array([12, 8, 1, 1], dtype=np.int64),
             "w3": _w(12, 12, 3, 3), "w4": _w(12, 12, 1, 1), "w5": _w(12, 12, 1, 1),
             "wl": _w(6, 12, 1, 1), "fc": _w(10, 18), "fcb": _w(10)}
    n = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn1"]),
        helper.make_node("Relu", ["bn1"], ["r1"]),
        helper.make_node("Reshape", ["w2flat", "w2shape"], ["w2"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
        helper.make_node("Upsample", ["c2"], ["u"], scales=[1.0, 1.0, 2.0, 2.0], mode="nearest"),
        helper.make_node("Conv", ["u", "w3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["u", "w4"], ["c4"]),
        helper.make_node("Conv", ["u", "w5"], ["c5"]),
        helper.make_node("Sum", ["c3", "c4", "c5"], ["s"]),
        helper.make_node("Dropout", ["s"], ["d"], ratio=0.5),
        helper.make_node("Relu", ["d"], ["r2"]),
        # Option-A style shortcut on channels: slice 8 channels, pad 2 zeros each side.
        helper.make_node("Slice", ["r2"], ["sl"], starts=[2], ends=[10], axes=[1]),
        helper.make_node("Pad", ["sl"], ["pd"], pads=[0, 2, 0, 0, 0, 2, 0, 0], mode="constant"),
        helper.make_node("Conv", ["r2", "wl"], ["cl"]),
        helper.make_node("LRN", ["cl"], ["lrn"], size=3),
        helper.make_node("GlobalMaxPool", ["pd"], ["g1"]),
        helper.make_node("GlobalAveragePool", ["lrn"], ["g2"]),
        helper.make_node("Concat", ["g1", "g2"], ["g"], axis=1),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], transB=1),
    ]
    return _model(n, [_io("x", [1, 3, 8, 8])], [_io("y", [1, 10])], inits, 7, ir_version=3)


def opset11_mix() -> onnx.ModelProto:
    """Opset 11: Split with a split attribute, Clip with inputs, Squeeze/Unsqueeze with
    attributes, a ConstantOfShape weight, Identity, and a Pad input on the channel axis."""
    inits = {"w1": _w(16, 3, 3, 3), "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32),
             "shape2": np.array([6, 10, 1, 1], dtype=np.int64), "wb": _w(6, 6, 3, 3),
             "pads": np.array([0, 1, 0, 0, 0, 3, 0, 0], dtype=np.int64), "wc": _w(4, 10, 1, 1),
             "fc": _w(4, 7)}
    n = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
        helper.make_node("Split", ["r1"], ["a", "b"], axis=1, split=[10, 6]),
        helper.make_node("ConstantOfShape", ["shape2"], ["w2"],
                         value=numpy_helper.from_array(np.array([0.05], np.float32))),
        helper.make_node("Conv", ["a", "w2"], ["ca"]),
        helper.make_node("Identity", ["b"], ["bi"]),
        helper.make_node("Conv", ["bi", "wb"], ["cb"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["ca", "cb"], ["s"]),
        helper.make_node("Pad", ["s", "pads"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "wc"], ["cc"]),
        helper.make_node("GlobalAveragePool", ["cc"], ["gp"]),
        helper.make_node("Squeeze", ["gp"], ["sq"], axes=[2, 3]),
        helper.make_node("Unsqueeze", ["sq"], ["us"], axes=[1]),
        helper.make_node("Squeeze", ["us"], ["sq2"], axes=[1]),
        helper.make_node("MatMul", ["sq2", "fc"], ["y"]),
    ]
    return _model(n, [_io("x", [1, 3, 8, 8])], [_io("y", [1, 7])], inits, 11)


HANDMADE = {
    "nhwc_keras_style": nhwc_keras_style,
    "old_opset7": old_opset7,
    "opset11_mix": opset11_mix,
}
