"""Random but valid CNN-style ONNX graphs from a recipe (a list of blocks) that
hypothesis can generate and shrink.

A recipe is a list of tuples; `build(recipe)` turns it into a checked ONNX model whose
input is (1, C, 8, 8). Blocks adapt to the current shape (a grouped conv needs divisible
channels, a pool needs room), so every recipe builds.
"""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

ACTS = ("Relu", "LeakyRelu", "Sigmoid", "HardSwish", "Tanh", "Clip", "PRelu", "Softplus")

block = st.one_of(
    st.tuples(st.just("conv"), st.integers(2, 12), st.sampled_from([1, 3]), st.sampled_from(["plain", "depthwise", "grouped"])),
    st.tuples(st.just("bn")),
    # GroupNormalization is tested in test_rules: ONNX's own shape inference cannot type it.
    st.tuples(st.just("norm"), st.just("InstanceNormalization")),
    st.tuples(st.just("act"), st.sampled_from(ACTS)),
    st.tuples(st.just("residual"), st.sampled_from([1, 3])),
    st.tuples(st.just("gate")),
    st.tuples(st.just("concat"), st.integers(2, 8), st.integers(2, 8)),
    st.tuples(st.just("split"), st.sampled_from(["add", "concat"])),
    st.tuples(st.just("slice"), st.integers(0, 3), st.sampled_from([1, 2])),
    st.tuples(st.just("pad"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("pool"), st.sampled_from(["MaxPool", "AveragePool", "same"])),
    st.tuples(st.just("nhwc_linear"), st.integers(2, 10)),
    st.tuples(st.just("reshape_roundtrip")),
    st.tuples(st.just("shuffle"), st.sampled_from([2, 3])),
)
recipes = st.tuples(
    st.integers(1, 4),
    st.lists(block, min_size=1, max_size=8),
    st.sampled_from(["gap_gemm", "flatten_gemm", "conv_out", "gap_matmul"]),
    st.integers(0, 2**16),
)


class _Net:
    def __init__(self, cin: int, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], {}, 0
        self.x, self.c, self.h = "x", cin, 8

    def name(self, base):
        self.n += 1
        return f"{base}{self.n}"

    def const(self, base, arr):
        name = self.name(base)
        self.inits[name] = arr
        return name

    def weight(self, *shape):
        return self.const("w", (self.rng.standard_normal(shape) * 0.4).astype(np.float32))

    def node(self, op, ins, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [out], name=self.name("n"), **attrs))
        return out

    def conv(self, x, cin, cout, k=1, groups=1, bias=True):
        ins = [x, self.weight(cout, cin // groups, k, k)]
        if bias:
            ins.append(self.weight(cout))
        return self.node("Conv", ins, pads=[k // 2] * 4, group=groups)


def build(recipe) -> onnx.ModelProto:
    cin, blocks, head, seed = recipe
    net = _Net(cin, seed)
    for b in blocks:
        _apply(net, b)
    _head(net, head)
    graph = helper.make_graph(
        net.nodes, "random", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 8, 8])],
        [helper.make_tensor_value_info(net.x, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in net.inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    model.graph.output[0].CopyFrom(inferred.graph.output[0])
    onnx.checker.check_model(model, full_check=True)
    return model


def _apply(net: _Net, b) -> None:
    kind, x, c = b[0], net.x, net.c
    if kind == "conv":
        _, cout, k, mode = b
        if mode == "depthwise":
            net.x, net.c = net.conv(x, c, c * (1 + cout % 2), k, groups=c), c * (1 + cout % 2)
        elif mode == "grouped" and c % 2 == 0:
            cout += cout % 2
            net.x, net.c = net.conv(x, c, cout, k, groups=2), cout
        else:
            net.x, net.c = net.conv(x, c, cout, k), cout
    elif kind == "bn":
        p = [net.const("bn", v.astype(np.float32)) for v in (
            net.rng.standard_normal(c) + 1, net.rng.standard_normal(c) * 0.1,
            net.rng.standard_normal(c) * 0.1, net.rng.random(c) + 0.5)]
        net.x = net.node("BatchNormalization", [x, *p])
    elif kind == "norm":
        scale = net.const("ns", (net.rng.standard_normal(c) + 1).astype(np.float32))
        shift = net.const("nb", (net.rng.standard_normal(c) * 0.1).astype(np.float32))
        net.x = net.node("InstanceNormalization", [x, scale, shift])
    elif kind == "act":
        act = b[1]
        if act == "LeakyRelu":
            net.x = net.node(act, [x], alpha=0.1)
        elif act == "Clip":
            lo, hi = net.const("lo", np.array(0, np.float32)), net.const("hi", np.array(6, np.float32))
            net.x = net.node(act, [x, lo, hi])
        elif act == "PRelu":
            net.x = net.node(act, [x, net.const("slope", (net.rng.random((c, 1, 1)) * 0.3).astype(np.float32))])
        else:
            net.x = net.node(act, [x])
    elif kind == "residual":
        net.x = net.node("Add", [x, net.conv(net.node("Relu", [x]), c, c, b[1])])
    elif kind == "gate":
        pooled = net.node("GlobalAveragePool", [x])
        gate = net.node("Sigmoid", [net.conv(net.node("Relu", [net.conv(pooled, c, 4)]), 4, c)])
        net.x = net.node("Mul", [x, gate])
    elif kind == "concat":
        net.x = net.node("Concat", [net.conv(x, c, b[1]), net.conv(x, c, b[2], 3)], axis=1)
        net.c = b[1] + b[2]
    elif kind == "split" and c % 2 == 0 and c >= 2:
        h = c // 2
        a_name, b_name = net.name("half"), net.name("half")
        net.nodes.append(helper.make_node("Split", [x, net.const("sizes", np.array([h, h], np.int64))],
                                          [a_name, b_name], axis=1, name=net.name("n")))
        pa, pb = net.conv(a_name, h, 6), net.conv(b_name, h, 6, 3)
        if b[1] == "add":
            net.x, net.c = net.node("Add", [pa, pb]), 6
        else:
            net.x, net.c = net.node("Concat", [pa, pb], axis=1), 12
    elif kind == "slice" and c > 2:
        start, step = min(b[1], c - 2), b[2]
        ins = [x] + [net.const("s", np.array([v], np.int64)) for v in (start, c, 1, step)]
        net.x, net.c = net.node("Slice", ins), len(range(start, c, step))
    elif kind == "pad":
        pads = np.array([0, b[1], 0, 0, 0, b[2], 0, 0], np.int64)
        net.x, net.c = net.node("Pad", [x, net.const("pads", pads)], mode="constant"), c + b[1] + b[2]
    elif kind == "pool":
        if b[1] == "same":
            net.x = net.node("MaxPool", [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        elif net.h >= 4:
            net.x, net.h = net.node(b[1], [x], kernel_shape=[2, 2], strides=[2, 2]), net.h // 2
    elif kind == "nhwc_linear":
        t = net.node("Transpose", [x], perm=[0, 2, 3, 1])
        m = net.node("Add", [net.node("MatMul", [t, net.weight(c, b[1])]), net.weight(b[1])])
        net.x, net.c = net.node("Transpose", [m], perm=[0, 3, 1, 2]), b[1]
    elif kind == "reshape_roundtrip":
        flat = net.node("Reshape", [x, net.const("shape", np.array([1, c, net.h * net.h], np.int64))])
        back = net.node("Reshape", [net.node("Relu", [flat]), net.const("shape", np.array([1, c, net.h, net.h], np.int64))])
        net.x = back
    elif kind == "shuffle" and c % b[1] == 0 and c > b[1]:
        g = b[1]
        r = net.node("Reshape", [x, net.const("shape", np.array([1, g, c // g, net.h, net.h], np.int64))])
        t = net.node("Transpose", [r], perm=[0, 2, 1, 3, 4])
        net.x = net.node("Reshape", [t, net.const("shape", np.array([1, c, net.h, net.h], np.int64))])


def _head(net: _Net, head: str) -> None:
    x, c = net.x, net.c
    if head == "conv_out":
        net.x = net.conv(x, c, 3)
        return
    if head == "flatten_gemm":
        flat = net.node("Flatten", [x], axis=1)
        net.x = net.node("Gemm", [flat, net.weight(5, c * net.h * net.h), net.weight(5)], transB=1)
        return
    pooled = net.node("Flatten", [net.node("GlobalAveragePool", [x])], axis=1)
    if head == "gap_gemm":
        net.x = net.node("Gemm", [pooled, net.weight(c, 5), net.weight(5)])
    else:
        net.x = net.node("Add", [net.node("MatMul", [pooled, net.weight(c, 5)]), net.weight(5)])
