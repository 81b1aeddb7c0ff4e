"""Mixture-of-experts layers as ONNX Runtime's com.microsoft MoE op spells them (the
onnxruntime-genai builder's form): a router MatMul + bias whose logits, reshaped to
(tokens, experts), pick `k` experts per token; expert weights stacked (experts, rows,
columns). Variants: SwiGLU with gate and up interleaved in fc1 (`swiglu_fusion=1`, as the
builder writes GPT-OSS), gate and up as halves (`swiglu_fusion=2`), ReLU, and SiLU-gated
with a separate fc3 (Mixtral's w1/w3)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

H, E, F, K = 16, 4, 12, 2


def moe_layer(variant: str = "swiglu", seed: int = 0, never: int | None = None):
    """x (batch, seq, H) -> x + MoE(x). `never`: an expert the router never picks (its
    logit bias -1e4)."""
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    fusion = 2 if variant.startswith("swiglu") else 1
    router_b = w(E)
    if never is not None:
        router_b[never] = -1e4
    arrays = {"router": w(H, E), "router_b": router_b, "fc1": w(E, fusion * F, H), "b1": w(E, fusion * F),
              "fc2": w(E, H, F), "b2": w(E, H), "shape": np.array([-1, E], np.int64)}
    moe_in = ["x", "probs", "fc1", "b1", "fc2", "b2"]
    attrs = dict(k=K, normalize_routing_weights=1)
    if variant.startswith("swiglu"):
        attrs.update(activation_type="swiglu", swiglu_fusion=1 if variant == "swiglu" else 2,
                     activation_alpha=1.702, activation_beta=1.0, swiglu_limit=7.0)
    elif variant == "silu_fc3":
        attrs.update(activation_type="silu")
        arrays.update(fc3=w(E, F, H), b3=w(E, F))
        moe_in += ["fc3", "b3"]
    else:
        attrs.update(activation_type=variant)
    nodes = [helper.make_node("MatMul", ["x", "router"], ["logits0"]),
             helper.make_node("Add", ["logits0", "router_b"], ["logits1"]),
             helper.make_node("Reshape", ["logits1", "shape"], ["probs"]),
             helper.make_node("MoE", moe_in, ["m"], domain="com.microsoft", name="moe", **attrs),
             helper.make_node("Add", ["m", "x"], ["y"])]
    graph = helper.make_graph(nodes, "moe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", H])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", H])],
                              [numpy_helper.from_array(a, n) for n, a in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                             ir_version=9)


VARIANTS = ("swiglu", "swiglu_halves", "relu", "silu_fc3")
RUNNABLE = ("swiglu", "relu")  # ONNX Runtime's CPU MoE: interleaved SwiGLU only, no fc3
