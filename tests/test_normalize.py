"""passes/normalize.py (with fold_constants.py and unshare.py): initializers leave the
graph inputs, Constant nodes and constant subgraphs become initializers, Identity and
inference Dropout go, Sum becomes Adds, small shared constants get one copy per reader
and shared run-time shape targets one Concat per Reshape; the model computes exactly
what it computed before."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from graph_kit import N, build, context, i64, save, w
from oracles import run_model


def _ops(ctx):
    return [n.op_type for n in ctx.model.graph]


def test_normalize_folds_drops_and_splits_exactly(tmp_path):
    proto = build([N("Constant", [], ["k"], value=helper.make_tensor("k", TensorProto.FLOAT, [4], [1, 2, 3, 4])),
                   N("ConstantOfShape", ["shp"], ["z"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
                   N("Add", ["z", "k"], ["bias"]),                                  # constant subgraph
                   N("MatMul", ["x", "w1"], ["h"]), N("Identity", ["h"], ["hi"]),
                   N("Dropout", ["hi"], ["hd"]), N("Sum", ["hd", "bias", "bias2", "bias2"], ["y"])],
                  {"w1": w(3, 4), "shp": i64(4), "bias2": w(4)}, {"x": [2, 3]}, {"y": [2, 4]})
    path = save(proto, tmp_path)
    ctx = context(proto)
    ops = _ops(ctx)
    assert "Constant" not in ops and "ConstantOfShape" not in ops and "Identity" not in ops and "Dropout" not in ops
    assert ops.count("Add") == 3 and "Sum" not in ops
    out = str(tmp_path / "n.onnx")
    from graphprune.saving import save_model

    save_model(ctx.model, out)
    feeds, ref = run_model(path)
    _, got = run_model(out, feeds)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    assert [v.name for v in ctx.model.graph.outputs] == ["y"]  # a Sum that was a graph output keeps its name


def test_small_shared_constants_get_a_copy_per_reader():
    proto = build([N("MatMul", ["x", "w1"], ["h"]), N("Add", ["h", "zero"], ["a"]),
                   N("MatMul", ["a", "w2"], ["g"]), N("Add", ["g", "zero"], ["y"])],
                  {"w1": w(4, 4), "w2": w(4, 4), "zero": np.zeros(4, np.float32)}, {"x": [2, 4]}, {"y": [2, 4]})
    ctx = context(proto)
    adds = [n for n in ctx.model.graph if n.op_type == "Add"]
    assert adds[0].inputs[1] is not adds[1].inputs[1]  # one bias per layer: each prunes with its own


def test_initializers_listed_as_inputs_leave_the_inputs():
    proto = build([N("MatMul", ["x", "w1"], ["y"])], {"w1": w(3, 4)}, {"x": [2, 3]}, {"y": [2, 4]})
    proto.graph.input.append(helper.make_tensor_value_info("w1", TensorProto.FLOAT, [3, 4]))
    ctx = context(proto)
    assert [v.name for v in ctx.model.graph.inputs] == ["x"]


def test_a_folded_scalar_stays_a_scalar(tmp_path):
    """Folding Add(2.0, 0.5) gives a rank-0 constant: a rank-1 one would change what a later
    Concat or Unsqueeze sees."""
    proto = build([N("Add", ["two", "half"], ["s"]), N("Unsqueeze", ["s", "ax"], ["u"]),
                   N("Concat", ["u", "v"], ["c"], axis=0), N("Mul", ["x", "c"], ["y"])],
                  {"two": np.array(2.0, np.float32), "half": np.array(0.5, np.float32), "ax": i64(0),
                   "v": np.ones(1, np.float32)}, {"x": [2, 2]}, {"y": [2, 2]})
    ctx = context(proto)
    folded = [v for v in ctx.model.graph.initializers.values() if v.const_value.numpy().size == 2]
    assert folded and all(v.const_value.numpy().shape == (2,) for v in folded)
    feeds, ref = run_model(save(proto, tmp_path))
    from graphprune.saving import save_model

    save_model(ctx.model, str(tmp_path / "n.onnx"))
    _, got = run_model(str(tmp_path / "n.onnx"), feeds)
    np.testing.assert_allclose(got[0], ref[0])
