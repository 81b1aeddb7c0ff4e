"""Graphs with fused attention, as ONNX Runtime's transformer optimizer writes them and as
opset 23 spells it: com.microsoft Attention / MultiHeadAttention / GroupQueryAttention /
SkipLayerNormalization / BiasGelu, and the standard Attention op (grouped-query)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

B, S, H, HEADS, KV = 2, 8, 64, 4, 2


def _w(rng, name, *shape, scale=0.2):
    return onnx.numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _model(nodes, inits, inputs, out_shape, opset=17, extra=()):
    graph = helper.make_graph(nodes, "fused", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    ops = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1), *extra]
    return helper.make_model(graph, opset_imports=ops, ir_version=9 if opset < 23 else 10)


def _x():
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, H])


def _mlp_tail(rng, nodes, inits, src):
    """src -> SkipLayerNorm(src, x) -> MatMul -> BiasGelu -> MatMul -> y."""
    inits += [_w(rng, "g", H, scale=1.0), _w(rng, "beta", H), _w(rng, "up", H, 96), _w(rng, "up_b", 96),
              _w(rng, "down", 96, H)]
    nodes += [helper.make_node("SkipLayerNormalization", [src, "x", "g", "beta"], ["n"], domain="com.microsoft"),
              helper.make_node("MatMul", ["n", "up"], ["u"]),
              helper.make_node("BiasGelu", ["u", "up_b"], ["a"], domain="com.microsoft"),
              helper.make_node("MatMul", ["a", "down"], ["y"])]


def ms_attention(seed=0):
    rng = np.random.default_rng(seed)
    inits = [_w(rng, "qkv", H, 3 * H), _w(rng, "qkv_b", 3 * H), _w(rng, "o", H, H)]
    nodes = [helper.make_node("Attention", ["x", "qkv", "qkv_b"], ["att"], domain="com.microsoft", num_heads=HEADS),
             helper.make_node("MatMul", ["att", "o"], ["ao"])]
    _mlp_tail(rng, nodes, inits, "ao")
    return _model(nodes, inits, [_x()], [B, S, H])


def ms_mha(seed=0):
    rng = np.random.default_rng(seed)
    inits = [_w(rng, n, H, H) for n in ("wq", "wk", "wv", "o")] + [_w(rng, "qkv_b", 3 * H)]
    nodes = [helper.make_node("MatMul", ["x", w], [w + "_y"]) for w in ("wq", "wk", "wv")]
    nodes += [helper.make_node("MultiHeadAttention", ["wq_y", "wk_y", "wv_y", "qkv_b"], ["att"],
                               domain="com.microsoft", num_heads=HEADS),
              helper.make_node("MatMul", ["att", "o"], ["ao"])]
    _mlp_tail(rng, nodes, inits, "ao")
    return _model(nodes, inits, [_x()], [B, S, H])


def ms_mha_with_bias(seed=0):
    """MultiHeadAttention with an additive attention bias (batch, heads, S, S): refused."""
    m = ms_mha(seed)
    node = next(n for n in m.graph.node if n.op_type == "MultiHeadAttention")
    node.name = "mha_with_bias"
    node.input.extend(["", "att_bias"])
    bias = (np.random.default_rng(seed).standard_normal((1, HEADS, S, S)) * 0.1).astype(np.float32)
    m.graph.initializer.append(onnx.numpy_helper.from_array(bias, "att_bias"))
    return m


def ms_gqa(seed=0):
    rng = np.random.default_rng(seed)
    d = H // HEADS
    inits = [_w(rng, "wq", H, H), _w(rng, "wk", H, KV * d), _w(rng, "wv", H, KV * d), _w(rng, "o", H, H),
             onnx.numpy_helper.from_array(np.full(B, S - 1, np.int32), "seqlens"),
             onnx.numpy_helper.from_array(np.array(S, np.int32), "total")]
    nodes = [helper.make_node("MatMul", ["x", w], [w + "_y"]) for w in ("wq", "wk", "wv")]
    nodes += [helper.make_node("GroupQueryAttention", ["wq_y", "wk_y", "wv_y", "", "", "seqlens", "total"],
                               ["att", "pk", "pv"], domain="com.microsoft", num_heads=HEADS, kv_num_heads=KV),
              helper.make_node("MatMul", ["att", "o"], ["ao"])]
    _mlp_tail(rng, nodes, inits, "ao")
    return _model(nodes, inits, [_x()], [B, S, H])


def onnx_attention(seed=0):
    """Opset 23 Attention, 3-D inputs, grouped-query (4 query heads over 2 KV heads)."""
    rng = np.random.default_rng(seed)
    d = H // HEADS
    inits = [_w(rng, "wq", H, H), _w(rng, "wk", H, KV * d), _w(rng, "wv", H, KV * d), _w(rng, "o", H, H),
             _w(rng, "g", H, scale=1.0), _w(rng, "beta", H), _w(rng, "up", H, 96), _w(rng, "down", 96, H)]
    nodes = [helper.make_node("MatMul", ["x", w], [w + "_y"]) for w in ("wq", "wk", "wv")]
    nodes += [helper.make_node("Attention", ["wq_y", "wk_y", "wv_y"], ["att"], q_num_heads=HEADS,
                               kv_num_heads=KV, is_causal=1),
              helper.make_node("MatMul", ["att", "o"], ["ao"]),
              helper.make_node("Add", ["ao", "x"], ["r"]),
              helper.make_node("LayerNormalization", ["r", "g", "beta"], ["n"], axis=-1),
              helper.make_node("MatMul", ["n", "up"], ["u"]),
              helper.make_node("Relu", ["u"], ["a"]),
              helper.make_node("MatMul", ["a", "down"], ["y"])]
    return _model(nodes, inits, [_x()], [B, S, H], opset=23)


def onnx_attention_rmsnorm(seed=0):
    """The same with the opset-23 RMSNormalization op in place of LayerNormalization."""
    m = onnx_attention(seed)
    for n in m.graph.node:
        if n.op_type == "LayerNormalization":
            n.op_type = "RMSNormalization"
            del n.input[2]
    m.graph.initializer.remove(next(t for t in m.graph.initializer if t.name == "beta"))
    return m


FUSED = {"ms_attention": ms_attention, "ms_mha": ms_mha, "ms_gqa": ms_gqa, "onnx_attention": onnx_attention,
         "onnx_attention_rmsnorm": onnx_attention_rmsnorm}
