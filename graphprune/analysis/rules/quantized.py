"""Quantized ops (QDQ's QuantizeLinear/DequantizeLinear, QOperator's QLinear* and *Integer
ops, ONNX Runtime's QGemm and friends): graphprune prunes float models, so a quantized
section is pinned with that reason, and its convolutions and matrix products still count
their MACs (a quantized model is not free). Prune the float model, then quantize again."""

from __future__ import annotations

import math

from graphprune.analysis.rules.base import Rule

REASON = "quantized op: prune the float model before quantizing it"


def _n(d) -> int:
    return d if isinstance(d, int) else 1


def pin_all(node, b) -> None:
    for v in [*node.inputs, *node.outputs]:
        if v is not None:
            for axis in range(b.rank(v) or 0):
                b.pin(v, axis, REASON)


def _conv_like(x_index: int, w_index: int):
    def couple(node, b) -> None:
        pin_all(node, b)
        sw, sy = b.shape(node.inputs[w_index]), b.shape(node.outputs[0])
        if sw is not None and sy is not None:
            b.macs(math.prod(_n(d) for d in sw) * math.prod(_n(d) for d in sy[2:]) * _n(sy[0]), [])
    return couple


def _matmul_like(a_index: int, b_index: int):
    def couple(node, b) -> None:
        pin_all(node, b)
        sa, sy = b.shape(node.inputs[a_index]), b.shape(node.outputs[0])
        if sa is not None and sy is not None:
            b.macs(math.prod(_n(d) for d in sy) * _n(sa[-1]), [])
    return couple


_PINNED = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul",
           "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat", "QLinearGlobalAveragePool",
           "QLinearAveragePool", "QLinearSoftmax", "QLinearReduceMean", "QLinearWhere", "DynamicQuantizeMatMul")

RULES = {
    **{op: Rule(pin_all) for op in _PINNED},
    "QLinearConv": Rule(_conv_like(0, 3)),
    "ConvInteger": Rule(_conv_like(0, 1)),
    "QLinearMatMul": Rule(_matmul_like(0, 3)),
    "MatMulInteger": Rule(_matmul_like(0, 1)),
    "QGemm": Rule(_matmul_like(0, 3)),
}
QUANTIZED_OPS = frozenset(RULES)
