"""Random transformer-style ONNX graphs: attention blocks (multi-head, or grouped-query
with K/V heads repeated through Unsqueeze-Expand-Reshape), MLPs, residuals and norms,
over an input of shape (1, S, D). Built like random_nets, from a shrinkable recipe."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

seq_block = st.one_of(
    st.tuples(st.just("attention"), st.sampled_from([2, 4]), st.sampled_from([2, 4]), st.sampled_from([1, 2])),
    st.tuples(st.just("mlp"), st.integers(4, 24), st.sampled_from(["Relu", "Gelu", "Sigmoid"])),
    st.tuples(st.just("norm"), st.sampled_from(["LayerNormalization", "none"])),
)
seq_recipes = st.tuples(st.lists(seq_block, min_size=1, max_size=4), st.booleans(), st.integers(0, 2**16))

S, D = 5, 8


class _Seq:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], {}, 0
        self.x = "x"

    def name(self, base):
        self.n += 1
        return f"{base}{self.n}"

    def const(self, arr, base="c"):
        name = self.name(base)
        self.inits[name] = arr
        return name

    def w(self, *shape):
        return self.const((self.rng.standard_normal(shape) * 0.4).astype(np.float32), "w")

    def i64(self, *v):
        return self.const(np.array(v, np.int64), "shape")

    def node(self, op, ins, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [out], name=self.name("n"), **attrs))
        return out

    def linear(self, x, a, b, bias=True):
        y = self.node("MatMul", [x, self.w(a, b)])
        return self.node("Add", [y, self.w(b)]) if bias else y


def _attention(net: _Seq, heads_kv: int, head_dim: int, group: int, bias: bool) -> None:
    x, h = net.x, heads_kv * group
    q = net.linear(x, D, h * head_dim, bias)
    k = net.linear(x, D, heads_kv * head_dim, bias)
    v = net.linear(x, D, heads_kv * head_dim, bias)
    q = net.node("Transpose", [net.node("Reshape", [q, net.i64(1, S, h, head_dim)])], perm=[0, 2, 1, 3])
    k = net.node("Transpose", [net.node("Reshape", [k, net.i64(1, S, heads_kv, head_dim)])], perm=[0, 2, 3, 1])
    v = net.node("Transpose", [net.node("Reshape", [v, net.i64(1, S, heads_kv, head_dim)])], perm=[0, 2, 1, 3])
    if group > 1:  # grouped-query attention: each K/V head serves `group` query heads
        k = net.node("Reshape", [net.node("Expand", [net.node("Unsqueeze", [k, net.i64(2)]),
                                                      net.i64(1, heads_kv, group, head_dim, S)]),
                                 net.i64(1, h, head_dim, S)])
        v = net.node("Reshape", [net.node("Expand", [net.node("Unsqueeze", [v, net.i64(2)]),
                                                      net.i64(1, heads_kv, group, S, head_dim)]),
                                 net.i64(1, h, S, head_dim)])
    scores = net.node("Mul", [net.node("MatMul", [q, k]), net.const(np.array(head_dim ** -0.5, np.float32))])
    mask = np.triu(np.full((S, S), -1e4, np.float32), 1).reshape(1, 1, S, S)
    probs = net.node("Softmax", [net.node("Add", [scores, net.const(mask, "mask")])], axis=-1)
    ctx = net.node("Transpose", [net.node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    merged = net.node("Reshape", [ctx, net.i64(1, S, h * head_dim)])
    net.x = net.node("Add", [x, net.linear(merged, h * head_dim, D, bias)])


def build_seq(recipe) -> onnx.ModelProto:
    blocks, bias, seed = recipe
    net = _Seq(seed)
    for b in blocks:
        if b[0] == "attention":
            _attention(net, b[1], b[2], b[3], bias)
        elif b[0] == "mlp":
            hidden = net.node(b[2], [net.linear(net.x, D, b[1], bias)])
            net.x = net.node("Add", [net.x, net.linear(hidden, b[1], D, bias)])
        elif b[1] == "LayerNormalization":
            net.x = net.node("LayerNormalization", [net.x, net.const(np.ones(D, np.float32)),
                                                    net.const(np.zeros(D, np.float32))], axis=-1)
    if not net.nodes:  # a recipe of only "no norm" blocks: give it one layer
        net.x = net.node("Add", [net.x, net.linear(net.x, D, D, bias)])
    graph = helper.make_graph(net.nodes, "seq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, S, D])],
                              [helper.make_tensor_value_info(net.x, TensorProto.FLOAT, [1, S, D])],
                              [numpy_helper.from_array(v, k) for k, v in net.inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])  # Gelu: opset 20
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model
