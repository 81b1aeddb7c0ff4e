"""passes/cleanup.py: dead nodes and constants go, equal constants merge, the graph is
sorted, IR < 4 gets its initializers listed as inputs again; it says when it changed
nothing."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graph_kit import N, build, context, w
from graphprune.pipeline import run_passes


def test_dead_code_and_equal_constants():
    proto = build([N("MatMul", ["x", "w1"], ["h"]), N("Add", ["h", "b1"], ["y"]), N("Relu", ["h"], ["dead"])],
                  {"w1": w(3, 4), "b1": np.ones(4, np.float32), "b2": np.ones(4, np.float32)}, {"x": [2, 3]},
                  {"y": [2, 4]})
    ctx = context(proto, passes=())
    records = run_passes(ctx, ["cleanup"])
    assert records[0]["modified"] and "Relu" not in [n.op_type for n in ctx.model.graph]
    assert "b2" not in ctx.model.graph.initializers
    assert run_passes(ctx, ["cleanup"])[0]["modified"] is False


def test_ir3_initializers_are_inputs_again():
    proto = build([N("MatMul", ["x", "w1"], ["y"])], {"w1": w(3, 4)}, {"x": [2, 3]}, {"y": [2, 4]})
    proto.ir_version = 3
    ctx = context(proto, passes=("normalize",))
    assert [v.name for v in ctx.model.graph.inputs] == ["x"]
    run_passes(ctx, ["cleanup"])
    assert {v.name for v in ctx.model.graph.inputs} == {"x", "w1"}
