"""Hand-built decoder layers with a KV cache as graph inputs and outputs (batch, heads,
length, head size), spelled with fused ops: com.microsoft MultiHeadAttention with past and
present and com.microsoft RotaryEmbedding; the opset-23 Attention (grouped-query) with past
and present and the opset-23 RotaryEmbedding. Symbolic batch, sequence and cache lengths."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

H, HEADS, KV, MAXPOS = 64, 4, 2, 64
D = H // HEADS


def _w(rng, name, *shape, scale=0.3):
    return onnx.numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _tables():
    inv = 1.0 / (10000 ** (np.arange(0, D, 2) / D))
    ang = np.outer(np.arange(MAXPOS), inv).astype(np.float32)
    return [onnx.numpy_helper.from_array(np.cos(ang), "cos"), onnx.numpy_helper.from_array(np.sin(ang), "sin")]


def _io(kv_heads):
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", f, ["batch", "seq", H]),
              helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"])]
    inputs += [helper.make_tensor_value_info(f"past_key_values.0.{k}", f, ["batch", kv_heads, "past", D])
               for k in ("key", "value")]
    outputs = [helper.make_tensor_value_info("y", f, ["batch", "seq", H])]
    outputs += [helper.make_tensor_value_info(f"present.0.{k}", f, ["batch", kv_heads, "total", D])
                for k in ("key", "value")]
    return inputs, outputs


def _layer(rng, attention, rotary, kv_heads, opset, domain):
    inits = [_w(rng, "wq", H, H), _w(rng, "wk", H, kv_heads * D), _w(rng, "wv", H, kv_heads * D),
             _w(rng, "o", H, H), _w(rng, "up", H, 96), _w(rng, "down", 96, H, scale=0.1), *_tables()]
    nodes = [helper.make_node("MatMul", ["x", w], [w + "_y"]) for w in ("wq", "wk", "wv")]
    nodes += [rotary("wq_y", "q_rot", HEADS), rotary("wk_y", "k_rot", kv_heads), attention,
              helper.make_node("MatMul", ["att", "o"], ["ao"]),
              helper.make_node("Add", ["ao", "x"], ["r"]),
              helper.make_node("MatMul", ["r", "up"], ["u"]),
              helper.make_node("Relu", ["u"], ["a"]),
              helper.make_node("MatMul", ["a", "down"], ["m"]),
              helper.make_node("Add", ["m", "r"], ["y"])]
    inputs, outputs = _io(kv_heads)
    graph = helper.make_graph(nodes, "decoder_layer", inputs, outputs, inits)
    ops = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=ops, ir_version=9 if opset < 23 else 10)


def ms_mha_cache(seed=0):
    """com.microsoft RotaryEmbedding + MultiHeadAttention (causal) with past/present."""
    def rotary(src, dst, heads):
        return helper.make_node("RotaryEmbedding", [src, "position_ids", "cos", "sin"], [dst],
                                domain="com.microsoft", num_heads=heads)
    att = helper.make_node("MultiHeadAttention", ["q_rot", "k_rot", "wv_y", "", "", "", "past_key_values.0.key",
                                                  "past_key_values.0.value"],
                           ["att", "present.0.key", "present.0.value"], domain="com.microsoft",
                           num_heads=HEADS, unidirectional=1)
    return _layer(np.random.default_rng(seed), att, rotary, HEADS, 17, "com.microsoft")


def onnx_attention_cache(seed=0):
    """Opset-23 RotaryEmbedding + Attention (grouped-query, causal) with past/present."""
    def rotary(src, dst, heads):
        return helper.make_node("RotaryEmbedding", [src, "cos", "sin", "position_ids"], [dst], num_heads=heads)
    att = helper.make_node("Attention", ["q_rot", "k_rot", "wv_y", "", "past_key_values.0.key",
                                         "past_key_values.0.value"],
                           ["att", "present.0.key", "present.0.value"], q_num_heads=HEADS, kv_num_heads=KV,
                           is_causal=1)
    return _layer(np.random.default_rng(seed), att, rotary, KV, 23, "")


CACHE_NETS = {"ms_mha_cache": ms_mha_cache, "onnx_attention_cache": onnx_attention_cache}


def run_steps(path: str, x: np.ndarray, split: int) -> tuple[np.ndarray, np.ndarray]:
    """(the whole sequence at once, the same in two calls: `split` positions, then the
    rest with the first call's present as past), outputs `y` of batch 1."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path)
    heads = {i.name: i.shape[1] for i in sess.get_inputs() if i.name.startswith("past")}

    def call(chunk, start, past):
        pos = np.arange(start, start + chunk.shape[1], dtype=np.int64)[None]
        y, k, v = sess.run(["y", "present.0.key", "present.0.value"],
                           {"x": chunk, "position_ids": pos, **past})
        return y, {"past_key_values.0.key": k, "past_key_values.0.value": v}

    empty = {n: np.zeros((1, h, 0, D), np.float32) for n, h in heads.items()}
    whole, _ = call(x, 0, empty)
    first, past = call(x[:, :split], 0, empty)
    second, _ = call(x[:, split:], split, past)
    return whole, np.concatenate([first, second], axis=1)
