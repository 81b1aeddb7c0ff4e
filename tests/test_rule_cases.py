"""Small graphs for rule paths the exported models do not reach; each must satisfy the
inert-removal oracle for several random selections and prune into a valid model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from oracles import inert_removal_diff, prune_to_file

R = np.random.default_rng(0)


def w(*shape):
    return (R.standard_normal(shape) * 0.5).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


def N(op, ins, outs, **kw):
    return helper.make_node(op, ins, outs, **kw)


# name: (nodes, initializers, x shape, y shape, opset)
CASES = {
    "slice_step2_on_channels": (
        [N("Conv", ["x", "w1"], ["a"]), N("Slice", ["a", "st", "en", "ax", "sp"], ["s"]),
         N("Conv", ["s", "w2"], ["y"])],
        {"w1": w(12, 3, 1, 1), "st": i64(1), "en": i64(11), "ax": i64(1), "sp": i64(2), "w2": w(4, 5, 1, 1)},
        [1, 3, 4, 4], [1, 4, 4, 4], 13),
    "pad_opset18_axes_input": (
        [N("Conv", ["x", "w1"], ["a"]), N("Pad", ["a", "pads", "", "axes"], ["p"]),
         N("Conv", ["p", "w2"], ["y"])],
        {"w1": w(6, 3, 1, 1), "pads": i64(2, 1), "axes": i64(1), "w2": w(4, 9, 1, 1)},
        [1, 3, 4, 4], [1, 4, 4, 4], 18),
    "resize_with_sizes": (
        [N("Conv", ["x", "w1"], ["a"]), N("Resize", ["a", "", "", "sizes"], ["r"], mode="nearest"),
         N("Conv", ["r", "w2"], ["y"])],
        {"w1": w(6, 3, 1, 1), "sizes": i64(1, 6, 8, 8), "w2": w(4, 6, 1, 1)},
        [1, 3, 4, 4], [1, 4, 8, 8], 13),
    "expand_channels": (
        [N("Conv", ["x", "w1"], ["a"]), N("GlobalAveragePool", ["a"], ["g"]),
         N("Expand", ["g", "shape"], ["e"]), N("Mul", ["a", "e"], ["m"]), N("Conv", ["m", "w2"], ["y"])],
        {"w1": w(6, 3, 1, 1), "shape": i64(1, 6, 4, 4), "w2": w(4, 6, 1, 1)},
        [1, 3, 4, 4], [1, 4, 4, 4], 13),
    "tile_spatial_only": (
        [N("Conv", ["x", "w1"], ["a"]), N("Tile", ["a", "reps"], ["t"]), N("Conv", ["t", "w2"], ["y"])],
        {"w1": w(6, 3, 1, 1), "reps": i64(1, 1, 2, 1), "w2": w(4, 6, 1, 1)},
        [1, 3, 4, 4], [1, 4, 8, 4], 13),
    "channels_last_matmul": (
        [N("Conv", ["x", "w1"], ["a"]), N("Transpose", ["a"], ["t"], perm=[0, 2, 3, 1]),
         N("MatMul", ["t", "m1"], ["h"]), N("Add", ["h", "b1"], ["hb"]), N("Relu", ["hb"], ["r"]),
         N("MatMul", ["r", "m2"], ["z"]), N("Transpose", ["z"], ["y"], perm=[0, 3, 1, 2])],
        {"w1": w(6, 3, 1, 1), "m1": w(6, 10), "b1": w(10), "m2": w(10, 4)},
        [1, 3, 4, 4], [1, 4, 4, 4], 13),
    "concat_with_itself_and_se_constant": (
        [N("Conv", ["x", "w1"], ["a"]), N("Mul", ["a", "scale"], ["s"]), N("Concat", ["s", "s"], ["c"], axis=1),
         N("Sigmoid", ["c"], ["g"]), N("Conv", ["g", "w2"], ["y"])],
        {"w1": w(6, 3, 1, 1), "scale": w(6, 1, 1), "w2": w(4, 12, 1, 1)},
        [1, 3, 4, 4], [1, 4, 4, 4], 13),
    "reduce_keepdims0_then_gemm": (
        [N("Conv", ["x", "w1"], ["a"]), N("ReduceMax", ["a"], ["r"], axes=[2, 3], keepdims=0),
         N("Gemm", ["r", "g", "gb"], ["y"], transB=1)],
        {"w1": w(6, 3, 1, 1), "g": w(5, 6), "gb": w(5)},
        [2, 3, 4, 4], [2, 5], 13),
    "grouped_conv_transpose_depthwise": (
        [N("Conv", ["x", "w1"], ["a"]), N("ConvTranspose", ["a", "wt"], ["u"], group=6, strides=[2, 2],
                                          kernel_shape=[2, 2]),
         N("Conv", ["u", "w2"], ["y"])],
        {"w1": w(6, 3, 1, 1), "wt": w(6, 1, 2, 2), "w2": w(4, 6, 1, 1)},
        [1, 3, 4, 4], [1, 4, 8, 8], 13),
}


def build(name, tmp_path):
    nodes, inits, xs, ys, opset = CASES[name]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ys)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    path = str(tmp_path / f"{name}.onnx")
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_inert_removal_is_exact(tmp_path, name):
    path = build(name, tmp_path)
    for seed in range(4):
        diff, groups, units = inert_removal_diff(path, tmp_path, ratio=0.5, seed=seed)
        assert groups >= 1 and units >= 1, "nothing prunable"
        assert diff < 1e-5, f"seed {seed}: relative diff {diff}"


@pytest.mark.parametrize("name", list(CASES))
def test_prunes_to_a_valid_model(tmp_path, name):
    path = build(name, tmp_path)
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["l2", "select:ratio=0.4"])
    assert report["verification"]["checker"] == "passed"
    assert report["after"]["params"] < report["before"]["params"]
