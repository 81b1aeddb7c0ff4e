"""The dimension-flow rule table: which axes couple, which units form, what pins."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphprune.analysis.rules.reshape import align
from graphprune.context import Context
from graphprune.loading import load_model
from graphprune.pipeline import run_passes


def analyse(path):
    ctx = Context(load_model(path))
    run_passes(ctx, ["normalize"])
    return ctx.analysis()


def group_with(analysis, value_name, axis):
    for g in analysis.groups:
        if (value_name, axis) in g.members:
            return g
    raise AssertionError(f"no group holds {value_name}[{axis}]")


def test_align_shapes():
    assert align((1, 16, 4, 4), (1, 256)) == [([0], [0]), ([1, 2, 3], [1])]
    assert align((2, 8, 64), (2, 8, 4, 16)) == [([0], [0]), ([1], [1]), ([2], [2, 3])]
    assert align((1, 16, 1, 1), (1, 16)) == [([0], [0]), ([1], [1]), ([2, 3], [])]
    assert align((6, 4), (4, 6)) is None or align((6, 4), (4, 6)) != [([0], [0]), ([1], [1])]
    assert align(("N", 8), ("N", 2, 4)) == [([0], [0]), ([1], [1, 2])]


def test_option_a_shortcut_couples_stages_through_slice_and_pad(zoo):
    # Every Pad output axis 1 belongs to a prunable group joined with the previous stage.
    model = load_model(zoo["cifar_resnet20"])
    ctx = Context(model)
    run_passes(ctx, ["normalize"])
    pad_nodes = [n for n in model.graph if n.op_type == "Pad"]
    assert len(pad_nodes) == 2
    for node in pad_nodes:
        g = group_with(ctx.analysis(), node.outputs[0].name, 1)
        assert not g.pinned.all()
        assert (node.inputs[0].name, 1) in g.members  # the previous stage is in the same group
        units_in = set(g.members[(node.inputs[0].name, 1)].tolist())
        units_out = g.members[(node.outputs[0].name, 1)]
        padded = [u for u in units_out.tolist() if u not in units_in]
        assert len(padded) == len(units_out) // 2  # planes//4 zero channels on each side


def test_grouped_conv_units_are_one_channel_of_every_group(zoo):
    model = load_model(zoo["grouped_shuffle"])
    ctx = Context(model)
    run_passes(ctx, ["normalize"])
    an = ctx.analysis()
    convs = [n for n in model.graph if n.op_type == "Conv"]
    # The second grouped conv (with bias) feeds the residual Add; the first is followed by
    # the channel shuffle, which couples its units further.
    g1 = next(n for n in convs if n.attributes["group"].value == 4 and len(n.inputs) == 3)
    g = group_with(an, g1.inputs[1].name, 0)
    units = g.members[(g1.inputs[1].name, 0)]
    # 32 outputs in 4 groups of 8: unit of channel k equals unit of channel k + 8.
    assert len(set(units.tolist())) == 8
    assert np.array_equal(units[:8], units[8:16])
    assert not g.pinned.all()


def test_depthwise_conv_rewrites_group(zoo, tmp_path):
    from oracles import prune_to_file

    out = str(tmp_path / "m.onnx")
    prune_to_file(zoo["mobilenetish"], out, ["l1", "select:ratio=0.5"])
    m = onnx.load(out)
    for node in m.graph.node:
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            w = next(t for t in m.graph.initializer if t.name == node.input[1])
            if group > 1:
                assert w.dims[1] == 1 and w.dims[0] % group == 0
                assert group < 48  # the depthwise convs lost channels


def _tiny(nodes, inits, x_shape, y_shape, opset=17):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_unknown_op_pins_and_is_named(tmp_path):
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((8, 3, 1, 1)).astype(np.float32),
             "w2": rng.standard_normal((4, 2, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]),
             helper.make_node("DepthToSpace", ["a"], ["b"], blocksize=2, name="d2s"),
             helper.make_node("Conv", ["b", "w2"], ["y"])]
    path = str(tmp_path / "m.onnx")
    onnx.save(_tiny(nodes, inits, [1, 3, 4, 4], [1, 4, 8, 8]), path)
    an = analyse(path)
    g = group_with(an, "w1", 0)
    assert g.pinned.all()
    assert any("d2s" in r and "no channel rule for DepthToSpace" in r for r in g.pin_reasons)


def test_lrn_and_softmax_pin_the_axis_they_mix(tmp_path):
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((8, 3, 1, 1)).astype(np.float32),
             "w2": rng.standard_normal((6, 8, 1, 1)).astype(np.float32),
             "w3": rng.standard_normal((4, 6, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]),
             helper.make_node("LRN", ["a"], ["b"], size=3, name="lrn"),
             helper.make_node("Conv", ["b", "w2"], ["c"]),
             helper.make_node("Softmax", ["c"], ["d"], axis=1, name="sm"),
             helper.make_node("Conv", ["d", "w3"], ["y"])]
    path = str(tmp_path / "m.onnx")
    onnx.save(_tiny(nodes, inits, [1, 3, 4, 4], [1, 4, 4, 4]), path)
    an = analyse(path)
    assert any("lrn" in r for r in group_with(an, "w1", 0).pin_reasons)
    assert group_with(an, "w1", 0).pinned.all()
    assert any("sm" in r for r in group_with(an, "w2", 0).pin_reasons)


def test_group_norm_units_are_whole_groups(tmp_path):
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((8, 3, 1, 1)).astype(np.float32),
             "s": rng.standard_normal(8).astype(np.float32), "b": rng.standard_normal(8).astype(np.float32),
             "w2": rng.standard_normal((4, 8, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]),
             helper.make_node("GroupNormalization", ["a", "s", "b"], ["n"], num_groups=4),
             helper.make_node("Conv", ["n", "w2"], ["y"])]
    path = str(tmp_path / "m.onnx")
    onnx.save(_tiny(nodes, inits, [1, 3, 4, 4], [1, 4, 4, 4], opset=21), path)
    g = group_with(analyse(path), "w1", 0)
    assert g.n_units == 4 and not g.pinned.any()
    from oracles import inert_removal_diff

    diff, groups, units = inert_removal_diff(path, tmp_path)
    assert groups == 1 and units == 2 and diff < 1e-5


def test_flatten_to_linear_units_own_spatial_blocks(zoo):
    model = load_model(zoo["simple_cnn"])
    ctx = Context(model)
    run_passes(ctx, ["normalize"])
    gemm = next(n for n in model.graph if n.op_type == "Gemm")
    g = group_with(ctx.analysis(), gemm.inputs[1].name, 1)
    units = g.members[(gemm.inputs[1].name, 1)]
    assert g.n_units == 24 and len(units) == 24 * 16
    assert np.array_equal(units, np.repeat(units[::16], 16))


def test_nhwc_graph_prunes_through_transposes(zoo):
    an = analyse(zoo["nhwc_keras_style"])
    g = group_with(an, "w1", 0)
    assert ("scale", 0) in g.members and ("w2", 1) in g.members
    assert not g.pinned.any()


@pytest.mark.parametrize("name", ["grouped_shuffle", "inceptionish", "misc_ops", "unetish", "old_opset7", "opset11_mix"])
def test_most_groups_are_prunable(zoo, name):
    an = analyse(zoo[name])
    prunable = [g for g in an.groups if not g.pinned.all()]
    assert len(prunable) >= 2


@pytest.mark.parametrize("opset,attrs", [(13, {}), (18, {"num_outputs": 2})])
def test_equal_split_becomes_explicit_after_pruning(tmp_path, opset, attrs):
    """A Split without sizes (equal halves) gets explicit sizes once its halves differ."""
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((8, 3, 1, 1)).astype(np.float32),
             "wa": rng.standard_normal((4, 4, 1, 1)).astype(np.float32),
             "wb": rng.standard_normal((4, 4, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]),
             helper.make_node("Split", ["a"], ["p", "q"], axis=1, **attrs),
             helper.make_node("Conv", ["p", "wa"], ["pa"]),
             helper.make_node("Conv", ["q", "wb"], ["qb"]),
             helper.make_node("Add", ["pa", "qb"], ["y"])]
    path = str(tmp_path / "m.onnx")
    onnx.save(_tiny(nodes, inits, [1, 3, 4, 4], [1, 4, 4, 4], opset=opset), path)
    from oracles import inert_removal_diff, prune_to_file

    for seed in range(3):
        diff, groups, units = inert_removal_diff(path, tmp_path, ratio=0.4, seed=seed)
        assert groups >= 1 and diff < 1e-5
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["random:seed=1", "select:ratio=0.4"])
    assert report["verification"]["checker"] == "passed"
