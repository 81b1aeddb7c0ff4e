"""graphprune/analysis/flow.py: axes of tensors joined by the rules' ties; everything a
rule does not mention is pinned, an op without a rule pins what it touches and is named,
a value of unknown shape pins its node, graph inputs/outputs and subgraph reads pin."""

from __future__ import annotations

import onnx_ir as ir
from onnx import helper, TensorProto

from graph_kit import N, analyse, build, connected, group_of, pins, w
from graphprune.analysis.flow import FlowBuilder, build_flow


def _model(mid, inits=None):
    return build([N("Conv", ["x", "w1"], ["a"]), *mid, N("Conv", ["m", "w2"], ["y"])],
                 {"w1": w(6, 3, 1, 1), "w2": w(4, 6, 1, 1), **(inits or {})}, {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4]})


def test_every_axis_of_known_rank_is_a_node_and_ties_are_edges():
    a = analyse(_model([N("Relu", ["a"], ["m"])]))
    assert ("a", 3) in a.flow.graph and a.flow.sizes[("w1", 0)] == 6
    assert connected(a, ("a", 1), ("m", 1)) and not connected(a, ("a", 1), ("a", 2))
    assert "w1" in a.flow.constant and "a" not in a.flow.constant


def test_an_op_without_a_rule_pins_what_it_touches_and_says_so():
    a = analyse(_model([N("DepthToSpace", ["a"], ["d"], blocksize=1), N("Relu", ["d"], ["m"])]))
    assert any("no channel rule for DepthToSpace" in r for r in pins(a, "a", 1))
    assert group_of(a, "w1", 0).pinned.all() and group_of(a, "w2", 1).pinned.all()


def test_graph_inputs_and_outputs_pin_their_axes():
    a = analyse(_model([N("Relu", ["a"], ["m"])]))
    assert any("graph input" in r for r in pins(a, "x", 1))
    assert any("graph output" in r for r in pins(a, "y", 1))
    assert not group_of(a, "w1", 0).pinned.any()


def test_an_axis_a_rule_does_not_mention_is_pinned():
    """Softmax over the channels leaves axis 1 unmentioned: 'mixes or drops'."""
    a = analyse(_model([N("Softmax", ["a"], ["m"], axis=1)]))
    assert any("mixes or drops axis 1" in r for r in pins(a, "a", 1))


def test_a_value_of_unknown_shape_pins_its_node():
    from graphprune.shapes import infer_exact_shapes

    g = ir.from_proto(_model([N("Relu", ["a"], ["m"])]))
    infer_exact_shapes(g)
    relu = next(n for n in g.graph if n.op_type == "Relu")
    relu.outputs[0].shape = None
    flow = build_flow(g)
    assert any("shape of m is unknown" in r for r in flow.pins.get(("a", 1), []))


def test_tying_axes_of_different_sizes_pins_both():
    proto = _model([N("Relu", ["a"], ["m"])])
    model = ir.from_proto(proto)
    b = FlowBuilder(model)
    for v in list(model.graph.inputs) + list(model.graph.initializers.values()):
        b.add_value(v)
    b.node = next(iter(model.graph))
    b.tie(model.graph.initializers["w1"], 0, model.graph.initializers["w2"], 0)  # 6 vs 4
    assert all(any("different sizes" in r for r in b.pins[k]) for k in [("w1", 0), ("w2", 0)])


def test_values_read_inside_a_subgraph_are_pinned():
    then = helper.make_graph([N("Relu", ["a"], ["t"])], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 6, 4, 4])])
    other = helper.make_graph([N("Neg", ["a"], ["e"])], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 6, 4, 4])])
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("If", ["c"], ["m"], then_branch=then, else_branch=other),
                   N("Conv", ["m", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "w2": w(4, 6, 1, 1)}, {"x": [1, 3, 4, 4], "c": ([], TensorProto.BOOL)},
                  {"y": [1, 4, 4, 4]})
    a = analyse(proto)
    assert any("subgraph" in r for r in pins(a, "a", 1))
