"""passes/remove.py: every member tensor is sliced at once, size-carrying constants are
rewritten copy-on-write (a constant shared with another node gets a new initializer), the
edits compensation left in ctx.pending are applied (weights before slicing, biases after),
and what was removed is recorded for the repair passes; an empty plan changes nothing."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graph_kit import N, build, context, group_of, i64, w
from graphprune.pipeline import run_passes
from graphprune.passes.remove import kept_positions


def _model():
    return build([N("Conv", ["x", "w1", "b1"], ["a"]), N("Relu", ["a"], ["r"]), N("Conv", ["r", "w2"], ["y"])],
                 {"w1": w(6, 3, 1, 1), "b1": w(6), "w2": w(4, 6, 1, 1)}, {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4]})


def _planned(units=(1, 4)):
    ctx = context(_model(), passes=("normalize", "l1"))
    g = group_of(ctx.analysis(), "w1", 0)
    ctx.plan = {g.id: np.array(units)}
    return ctx, g


def test_kept_positions_and_slicing():
    ctx, g = _planned()
    dense = ctx.model.graph.initializers["w1"].const_value.numpy().copy()
    kept = kept_positions(ctx.analysis(), ctx.plan)
    np.testing.assert_array_equal(kept[("w1", 0)], [0, 2, 3, 5])
    run_passes(ctx, ["remove"])
    inits = ctx.model.graph.initializers
    np.testing.assert_array_equal(inits["w1"].const_value.numpy(), dense[[0, 2, 3, 5]])
    assert inits["b1"].const_value.shape == (4,) and inits["w2"].const_value.shape == (4, 4, 1, 1)
    assert ctx.removal.kept[("w1", 0)].tolist() == [0, 2, 3, 5] and ctx.removal.dense is None


def test_the_dense_model_is_kept_for_repair_passes_and_untouched():
    ctx, _ = _planned()
    ctx.keep_dense = True
    run_passes(ctx, ["remove"])
    dense = ctx.removal.dense
    assert dense.graph.initializers["w1"].const_value.shape == (6, 3, 1, 1)
    assert ctx.model.graph.initializers["w1"].const_value.shape == (4, 3, 1, 1)


def test_pending_edits_are_applied_weights_before_slicing_biases_after():
    ctx, _ = _planned()
    inits = ctx.model.graph.initializers
    new_w2 = np.arange(24, dtype=np.float32).reshape(4, 6, 1, 1)
    ctx.pending.set_weight(inits["w2"], new_w2)
    conv2 = next(n for n in ctx.model.graph if n.op_type == "Conv" and n.inputs[1] is inits["w2"])
    ctx.pending.add_bias(conv2, np.array([1.0, 2.0, 3.0, 4.0]), ("w2", 0))
    run_passes(ctx, ["remove"])
    np.testing.assert_array_equal(inits["w2"].const_value.numpy(), new_w2[:, [0, 2, 3, 5]])
    np.testing.assert_array_equal(conv2.inputs[2].const_value.numpy(), [1, 2, 3, 4])
    assert not ctx.pending


def test_an_empty_plan_changes_nothing():
    ctx = context(_model(), passes=("normalize", "l1"))
    before = ir.to_proto(ctx.model).SerializeToString()
    records = run_passes(ctx, ["remove"])
    assert records[0]["modified"] is False and ir.to_proto(ctx.model).SerializeToString() == before


def test_a_rewritten_target_is_a_new_initializer_and_others_stay():
    proto = build([N("MatMul", ["x", "wq"], ["q"]), N("Reshape", ["q", "t"], ["h"]), N("Relu", ["h"], ["r"]),
                   N("Reshape", ["r", "back"], ["m"]), N("MatMul", ["m", "wo"], ["y"]),
                   N("Reshape", ["x", "t2"], ["z"])],
                  {"wq": w(8, 12), "t": i64(2, 5, 3, 4), "back": i64(2, 5, 12), "wo": w(12, 8), "t2": i64(2, 5, 2, 4)},
                  {"x": [2, 5, 8]}, {"y": [2, 5, 8], "z": [2, 5, 2, 4]})
    ctx = context(proto, passes=("normalize", "l1", "select:ratio=0.3", "remove"))
    reshape = next(n for n in ctx.model.graph if n.op_type == "Reshape" and n.inputs[0].name == "q")
    assert reshape.inputs[1].const_value.numpy().tolist() == [2, 5, 2, 4] and reshape.inputs[1].name != "t"
    other = next(n for n in ctx.model.graph if n.op_type == "Reshape" and n.inputs[0].name == "x")
    assert other.inputs[1].const_value.numpy().tolist() == [2, 5, 2, 4] and other.inputs[1] is not reshape.inputs[1]
