"""graphprune/consumers.py: where a group's channels are consumed, with the activation
that feeds those columns and its channel axis: Conv (not grouped), Gemm (transA too),
MatMul with the constant on either side; a depthwise conv has no per-column activation."""

from __future__ import annotations

from graph_kit import N, build, context, group_of, w
from graphprune.consumers import consumers


def _found(proto, name, axis):
    ctx = context(proto)
    g = group_of(ctx.analysis(), name, axis)
    return {(c.node.op_type, c.data.name, c.axis, c.key) for c in consumers(g, ctx.model)}


def test_conv_and_gemm_consumers():
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Relu", ["a"], ["r"]), N("Conv", ["r", "w2"], ["c"]),
                   N("GlobalAveragePool", ["c"], ["p"]), N("Flatten", ["p"], ["f"]),
                   N("Gemm", ["f", "g"], ["y"], transB=1)],
                  {"w1": w(6, 3, 1, 1), "w2": w(5, 6, 1, 1), "g": w(4, 5)}, {"x": [1, 3, 4, 4]}, {"y": [1, 4]})
    assert _found(proto, "w1", 0) == {("Conv", "r", 1, ("w2", 1))}
    assert _found(proto, "w2", 0) == {("Gemm", "f", 1, ("g", 1))}


def test_matmul_constant_on_either_side_and_trans_a():
    proto = build([N("MatMul", ["x", "w1"], ["h"]), N("Relu", ["h"], ["r"]), N("MatMul", ["r", "w2"], ["y"])],
                  {"w1": w(3, 6), "w2": w(6, 2)}, {"x": [5, 3]}, {"y": [5, 2]})
    assert _found(proto, "w1", 1) == {("MatMul", "r", 1, ("w2", 0))}
    proto = build([N("MatMul", ["w1", "x"], ["h"]), N("Relu", ["h"], ["r"]), N("MatMul", ["w2", "r"], ["y"])],
                  {"w1": w(6, 3), "w2": w(2, 6)}, {"x": [3, 5]}, {"y": [2, 5]})
    assert _found(proto, "w1", 0) == {("MatMul", "r", 0, ("w2", 1))}
    proto = build([N("Gemm", ["x", "w1"], ["h"], transB=1), N("Transpose", ["h"], ["t"]),
                   N("Gemm", ["t", "w2"], ["y"], transA=1)],
                  {"w1": w(6, 3), "w2": w(6, 2)}, {"x": [5, 3]}, {"y": [5, 2]})
    assert _found(proto, "w1", 0) == {("Gemm", "t", 0, ("w2", 0))}


def test_depthwise_conv_is_no_consumer():
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Conv", ["a", "dw"], ["y"], group=6)],
                  {"w1": w(6, 3, 1, 1), "dw": w(6, 1, 3, 3)}, {"x": [1, 3, 5, 5]}, {"y": [1, 6, 3, 3]})
    ctx = context(proto)
    g = group_of(ctx.analysis(), "w1", 0)
    assert consumers(g, ctx.model) == []
