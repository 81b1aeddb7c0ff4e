"""Control flow, custom domains and quantized sections: what cannot be pruned safely is
pinned and reported, the rest of the model is pruned, and the result is verified."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphprune.context import Context
from graphprune.loading import load_model
from graphprune.pipeline import run_passes
from oracles import inert_removal_diff, prune_to_file

R = np.random.default_rng(0)


def w(*shape):
    return (R.standard_normal(shape) * 0.5).astype(np.float32)


def _save(nodes, inits, path, y_shape, opsets=(("", 17),), extra_inputs=()):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6]), *extra_inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def _groups(path):
    ctx = Context(load_model(path))
    run_passes(ctx, ["normalize"])
    return {k: g for g in ctx.analysis().groups for k in g.members}


def test_if_subgraph_pins_what_it_reads_and_the_rest_prunes(tmp_path):
    then_g = helper.make_graph([helper.make_node("Relu", ["b"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Sigmoid", ["b"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "w2"], ["b"]),
             helper.make_node("If", ["cond"], ["c"], then_branch=then_g, else_branch=else_g, name="branch"),
             helper.make_node("Conv", ["c", "w3"], ["y"])]
    inits = {"w1": w(8, 3, 1, 1), "w2": w(6, 8, 1, 1), "w3": w(4, 6, 1, 1), "cond": np.array(True)}
    path = _save(nodes, inits, tmp_path / "m.onnx", [1, 4, 6, 6])
    groups = _groups(path)
    assert groups[("b", 1)].pinned.all()
    assert any("branch" in r for r in groups[("b", 1)].pin_reasons)
    assert not groups[("w1", 0)].pinned.any()  # the conv before the If still prunes
    diff, n_groups, _ = inert_removal_diff(path, tmp_path)
    assert n_groups == 1 and diff < 1e-5
    assert prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.5"])["verification"]["checker"] == "passed"


def test_custom_domain_op_is_pinned_and_named(tmp_path):
    pytest.importorskip("onnxruntime")
    # com.microsoft Inverse (per-channel 6x6 matrix inverses) runs in ONNX Runtime;
    # graphprune has no rule for it.
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]),
             helper.make_node("Inverse", ["a"], ["g"], domain="com.microsoft", name="msinv"),
             helper.make_node("Conv", ["g", "w2"], ["b"]), helper.make_node("Relu", ["b"], ["br"]),
             helper.make_node("Conv", ["br", "w3"], ["y"])]
    inits = {"w1": w(8, 3, 1, 1), "w2": w(6, 8, 1, 1), "w3": w(4, 6, 1, 1)}
    path = _save(nodes, inits, tmp_path / "m.onnx", [1, 4, 6, 6], opsets=(("", 17), ("com.microsoft", 1)))
    groups = _groups(path)
    assert groups[("w1", 0)].pinned.all()
    assert any("msinv" in r and "com.microsoft::Inverse" in r for r in groups[("w1", 0)].pin_reasons)
    assert not groups[("w2", 0)].pinned.any()
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.5"])
    assert report["after"]["macs"] < report["before"]["macs"]


def test_qdq_section_is_pinned_not_dequantized(tmp_path):
    wq = np.clip(np.round(w(8, 3, 1, 1) * 50), -127, 127).astype(np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd"], ["a"]), helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "w2"], ["b"]), helper.make_node("Relu", ["b"], ["br"]),
             helper.make_node("Conv", ["br", "w3"], ["y"])]
    inits = {"xs": np.array(0.05, np.float32), "xz": np.array(0, np.int8), "wq": wq,
             "ws": np.array(0.02, np.float32), "wz": np.array(0, np.int8), "w2": w(6, 8, 1, 1), "w3": w(4, 6, 1, 1)}
    path = _save(nodes, inits, tmp_path / "m.onnx", [1, 4, 6, 6])
    out = str(tmp_path / "p.onnx")
    report = prune_to_file(path, out, ["l1", "select:ratio=0.5"])
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert ops.count("DequantizeLinear") == 2 and "QuantizeLinear" in ops  # still quantized
    groups = _groups(path)
    assert groups[("w2", 1)].pinned.all()  # the dequantized conv's outputs feed w2
    assert not groups[("w2", 0)].pinned.any()
    assert report["after"]["macs"] < report["before"]["macs"]


def test_qlinear_conv_is_pinned(tmp_path):
    wq = np.clip(np.round(w(8, 3, 1, 1) * 50), -127, 127).astype(np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("QLinearConv", ["xq", "xs", "xz", "wq", "ws", "wz", "ys", "yz"], ["aq"], name="qconv"),
             helper.make_node("DequantizeLinear", ["aq", "ys", "yz"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["b"]), helper.make_node("Relu", ["b"], ["br"]),
             helper.make_node("Conv", ["br", "w3"], ["y"])]
    inits = {"xs": np.array(0.05, np.float32), "xz": np.array(0, np.int8), "wq": wq,
             "ws": np.array(0.02, np.float32), "wz": np.array(0, np.int8),
             "ys": np.array(0.1, np.float32), "yz": np.array(0, np.int8), "w2": w(6, 8, 1, 1), "w3": w(4, 6, 1, 1)}
    path = _save(nodes, inits, tmp_path / "m.onnx", [1, 4, 6, 6])
    groups = _groups(path)
    assert groups[("w2", 1)].pinned.all()
    assert any("DequantizeLinear" in r or "QLinearConv" in r for r in groups[("w2", 1)].pin_reasons)
    assert not groups[("w2", 0)].pinned.any()
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.5"])
    assert report["after"]["macs"] < report["before"]["macs"]
