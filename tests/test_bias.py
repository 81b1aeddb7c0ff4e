"""graphprune/bias.py: a per-output-channel delta joins a consumer's bias: in a Conv or
Gemm bias input (created where missing), in the constant of the Add after a MatMul, or in
a new Add (which keeps a graph output's name); deltas are cut to the kept output channels;
out_axis and current_bias read the consumer as it is."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graph_kit import N, build, w
from graphprune.bias import BiasUpdate, apply, current_bias, out_axis
from oracles import run_model


def _model(nodes, inits, y=(1, 4, 4, 4)):
    return ir.from_proto(build(nodes, inits, {"x": [1, 3, 4, 4]}, {"y": list(y)}))


def _node(model, op):
    return next(n for n in model.graph if n.op_type == op)


def test_conv_bias_is_created_then_added_to():
    m = _model([N("Conv", ["x", "w"], ["y"])], {"w": w(4, 3, 1, 1)})
    conv = _node(m, "Conv")
    assert out_axis(conv, conv.inputs[1]) == 0 and current_bias(conv) is None
    apply(m, [BiasUpdate(conv, np.arange(4.0), ("w", 0))], {})
    np.testing.assert_array_equal(current_bias(conv), [0, 1, 2, 3])
    apply(m, [BiasUpdate(conv, np.ones(4), ("w", 0))], {})
    np.testing.assert_array_equal(current_bias(conv), [1, 2, 3, 4])


def test_deltas_are_cut_to_the_kept_outputs():
    m = _model([N("Conv", ["x", "w", "b"], ["y"])], {"w": w(2, 3, 1, 1), "b": np.zeros(2, np.float32)}, (1, 2, 4, 4))
    conv = _node(m, "Conv")
    apply(m, [BiasUpdate(conv, np.array([5.0, 6.0, 7.0, 8.0]), ("w", 0))], {("w", 0): np.array([1, 3])})
    np.testing.assert_array_equal(current_bias(conv), [6, 8])


def test_gemm_trans_b_output_axis():
    m = ir.from_proto(build([N("Gemm", ["x", "w"], ["y"], transB=1)], {"w": w(5, 3)}, {"x": [2, 3]}, {"y": [2, 5]}))
    gemm = _node(m, "Gemm")
    assert out_axis(gemm, gemm.inputs[1]) == 0
    apply(m, [BiasUpdate(gemm, np.arange(5.0), ("w", 0))], {})
    np.testing.assert_array_equal(current_bias(gemm), np.arange(5))


def test_matmul_bias_goes_into_its_add_or_a_new_add_keeping_the_output_name(tmp_path):
    from graphprune.saving import save_model

    m = ir.from_proto(build([N("MatMul", ["x", "w"], ["h"]), N("Add", ["h", "b"], ["y"])],
                            {"w": w(3, 4), "b": np.ones(4, np.float32)}, {"x": [2, 3]}, {"y": [2, 4]}))
    mm = _node(m, "MatMul")
    apply(m, [BiasUpdate(mm, np.arange(4.0), ("w", 1))], {})
    np.testing.assert_array_equal(current_bias(mm), [1, 2, 3, 4])
    assert sum(n.op_type == "Add" for n in m.graph) == 1
    bare = ir.from_proto(build([N("MatMul", ["x", "w"], ["y"])], {"w": w(3, 4)}, {"x": [2, 3]}, {"y": [2, 4]}))
    mm = _node(bare, "MatMul")
    apply(bare, [BiasUpdate(mm, np.arange(4.0), ("w", 1))], {})
    assert [o.name for o in bare.graph.outputs] == ["y"] and _node(bare, "Add").outputs[0].name == "y"
    path = str(tmp_path / "m.onnx")
    save_model(bare, path)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    _, (y,) = run_model(path, {"x": x})
    np.testing.assert_allclose(y, x @ bare.graph.initializers["w"].const_value.numpy() + np.arange(4), rtol=1e-5)
