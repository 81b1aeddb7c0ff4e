"""Mixture of experts: ONNX Runtime's com.microsoft `MoE` (the onnxruntime-genai builder
writes it for MoE decoders).

Inputs: the tokens (..., hidden), the router's logits (tokens, experts), fc1 weights
(experts, fusion * inter, hidden) and bias (experts, fusion * inter), fc2 (experts, hidden,
inter) and bias (experts, hidden), optionally fc3 (experts, inter, hidden) and bias. With
`activation_type=swiglu` fc1 holds gate and up together (fusion 2): interleaved rows
(2j, 2j+1) with `swiglu_fusion=1`, halves (j, inter + j) otherwise.

Two kinds of unit:
- an expert: its slice of every expert tensor (axis 0) and the router's column for it
  (the logits' last axis, back through the router's MatMul and bias). The op reads the
  number of experts from the shapes; removing experts re-routes the tokens that chose
  them among the rest (exact where an expert is never chosen). At least `k` must stay.
- an MLP neuron of every expert at once (one index of the `inter` axis: the tensors are
  dense, so all experts keep the same width).
The hidden axis passes from the tokens to the output through every expert.
"""

from __future__ import annotations

import numpy as np

from graphprune.analysis.rules.attention import _present, _refuse
from graphprune.analysis.rules.base import identity_all
from graphprune.errors import BadInput


def _layout(node, shape):
    """(experts, inter, fusion, interleaved) or None."""
    s1, s2 = shape(node.inputs[2]), shape(node.inputs[4])
    if s1 is None or s2 is None or len(s1) != 3 or len(s2) != 3 or not all(isinstance(d, int) for d in (*s1, *s2)):
        return None
    experts, inter = s1[0], s2[2]
    if s2[0] != experts or s1[1] % inter:
        return None
    fusion = s1[1] // inter
    attrs = node.attributes
    interleaved = fusion == 2 and (int(attrs["swiglu_fusion"].value) if "swiglu_fusion" in attrs else 1) == 1
    return experts, inter, fusion, interleaved


def ms_moe(node, b) -> None:
    layout = _layout(node, b.shape)
    if layout is None or b.rank(node.inputs[1]) != 2:
        return _refuse_moe(b, node)
    experts, inter, fusion, interleaved = layout
    x, router, fc1, fc2 = node.inputs[0], node.inputs[1], node.inputs[2], node.inputs[4]
    y = node.outputs[0]
    bias1 = node.inputs[3] if _present(node, 3) else None
    bias2 = node.inputs[5] if _present(node, 5) else None
    fc3 = node.inputs[6] if _present(node, 6) else None
    bias3 = node.inputs[7] if _present(node, 7) else None
    rank = b.rank(x)
    identity_all(b, x, y)
    b.carry(router, 0)  # tokens, flattened
    b.routes(router, 1, int(b.attr("k", 1)))
    # Experts: axis 0 of every expert tensor, the router's last axis.
    for t in (fc1, bias1, fc2, bias2, fc3, bias3):
        if t is not None:
            b.tie(router, 1, t, 0)
    # Neurons: one index of `inter` in every expert; fc1's fused rows map onto it.
    rows = np.arange(fusion * inter)
    neuron = rows // 2 if interleaved else rows % inter
    for t in (fc1, bias1):
        if t is not None:
            b.tie(t, 1, fc2, 2, rows, neuron)
    for t in (fc3, bias3):
        if t is not None:
            b.tie(t, 1, fc2, 2)
    b.internal_units(fc2, 2)
    # Hidden: the tokens' features, fc1/fc3 columns, fc2 rows and its bias.
    for t, axis in ((fc1, 2), (fc2, 1), (bias2, 1), (fc3, 2)):
        if t is not None:
            b.tie(x, rank - 1, t, axis)
    for t, axes in ((fc1, (0, 1)), (fc3, (0, 1))):
        if t is not None:
            for a in axes:
                b.role(t, a, "out")
    b.role(fc2, 0, "in")
    b.role(fc2, 2, "in")
    for t, axes in ((bias1, (0, 1)), (bias3, (0, 1)), (bias2, (0,))):
        if t is not None:
            for a in axes:
                b.role(t, a, "bias")
    sx = b.shape(x)
    tokens = int(np.prod([d if isinstance(d, int) else 1 for d in sx[:-1]]))
    k = int(b.attr("k", 1))
    hidden = b.shape(fc2)[1]
    per_neuron = (fusion + 1 + (1 if fc3 is not None else 0)) * hidden
    b.macs(tokens * k * inter * per_neuron, [(fc2, 2), (fc2, 1)])


def _refuse_moe(b, node) -> None:
    _refuse(b, node, "MoE weights of unknown or inconsistent shape")


def ms_moe_rewrite(node, edit) -> None:
    """Nothing to rewrite (the op reads sizes from its weights), but `k` experts must stay."""
    kept = edit.kept(node.inputs[2], 0)
    k = int(node.attributes["k"].value) if "k" in node.attributes else 1
    if kept is not None and len(kept) < k:
        raise BadInput(f"node {node.name or 'MoE'} would keep {len(kept)} experts, fewer than its top-k ({k}): "
                       "prune fewer experts (select's max_ratio, or exclude its router)")
