"""Element-wise ops: activations pass every axis through; n-ary ops broadcast."""

from __future__ import annotations

from graphprune.analysis.rules.base import Rule, broadcast, identity_all


def unary(node, b) -> None:
    x, y = node.inputs[0], node.outputs[0]
    identity_all(b, x, y)
    # Extra outputs (Dropout's mask) have the input's shape too.
    for extra in node.outputs[1:]:
        if extra is not None:
            identity_all(b, x, extra)


def nary(node, b) -> None:
    broadcast(b, [v for v in node.inputs if v is not None], node.outputs[0])


def clip(node, b) -> None:
    # min and max are scalars (rank 0) from opset 11 on: nothing to couple.
    identity_all(b, node.inputs[0], node.outputs[0])
    for v in node.inputs[1:]:
        if v is not None and b.rank(v):
            broadcast(b, [v], node.outputs[0])


def cast_like(node, b) -> None:
    # The second input only gives the type: its axes are not coupled with anything.
    identity_all(b, node.inputs[0], node.outputs[0])
    for axis in range(b.rank(node.inputs[1]) or 0):
        b.carry(node.inputs[1], axis)


def prelu(node, b) -> None:
    # The slope broadcasts onto X (unidirectionally); a per-channel slope (C,1,1) is
    # coupled with the channel axis and sliced with it.
    broadcast(b, list(node.inputs), node.outputs[0])
    b.role(node.inputs[1], 0, "slope")


_UNARY = (
    "Relu", "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "LeakyRelu", "HardSigmoid", "HardSwish",
    "Softplus", "Softsign", "Gelu", "Erf", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal",
    "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Mish", "ThresholdedRelu", "Shrink",
    "Dropout", "Identity", "Cast", "Not", "IsNaN", "IsInf", "Swish",
)
_NARY = (
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Greater",
    "GreaterOrEqual", "Less", "LessOrEqual", "Where", "And", "Or", "Xor", "Mod", "BitShift",
)

RULES = {
    **{op: Rule(unary) for op in _UNARY},
    **{op: Rule(nary) for op in _NARY},
    "Clip": Rule(clip),
    "CastLike": Rule(cast_like),
    "PRelu": Rule(prelu),
}
