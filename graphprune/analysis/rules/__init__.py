"""The dimension-flow rule table: op type -> Rule (how it couples axes, how it is rewritten).

This is the one place that says how an op's channels behave. An op type missing here
pins every axis it touches, and the report names the node.
"""

from graphprune.analysis.rules import (attention, concat_split, conv_linear, decoder_attention, elementwise, layout,
                                       moe, norm_pool, quantized, reshape, routing)
from graphprune.analysis.rules.base import Rule

RULES: dict[str, Rule] = {
    **elementwise.RULES,
    **conv_linear.RULES,
    **norm_pool.RULES,
    **reshape.RULES,
    **layout.RULES,
    **concat_split.RULES,
    **routing.RULES,
    **{op: r for op, r in quantized.RULES.items() if op != "QGemm"},
    "Attention": Rule(attention.onnx_attention, attention.onnx_attention_rewrite),
    "RotaryEmbedding": Rule(decoder_attention.rotary, decoder_attention.rotary_rewrite),
}

# ONNX Runtime's contrib ops, as its transformer optimizer writes them.
CONTRIB_RULES: dict[str, Rule] = {
    "Attention": Rule(attention.ms_attention, attention.ms_attention_rewrite),
    "MultiHeadAttention": Rule(attention.ms_mha, attention.ms_mha_rewrite),
    "GroupQueryAttention": Rule(decoder_attention.ms_gqa, decoder_attention.ms_gqa_rewrite),
    "RotaryEmbedding": Rule(decoder_attention.rotary, decoder_attention.rotary_rewrite),
    "MoE": Rule(moe.ms_moe, moe.ms_moe_rewrite),
    "SkipLayerNormalization": Rule(attention.ms_skip_norm),
    "SkipSimplifiedLayerNormalization": Rule(attention.ms_skip_norm),
    "FastGelu": Rule(elementwise.nary),
    "BiasGelu": Rule(elementwise.nary),
    "Gelu": Rule(elementwise.unary),
    "QuickGelu": Rule(elementwise.unary),
    "BiasAdd": Rule(elementwise.nary),
    **quantized.RULES,
}


def rule_for(node) -> Rule | None:
    """The rule of a node's op in its domain, or None (the op then pins what it touches)."""
    if node.domain in ("", "ai.onnx"):
        return RULES.get(node.op_type)
    if node.domain == "com.microsoft":
        return CONTRIB_RULES.get(node.op_type)
    return None

__all__ = ["CONTRIB_RULES", "RULES", "Rule", "rule_for"]
