"""graphprune/runtime.py: sessions of files and of in-memory models; intermediate tensors
exposed as the only outputs (the nodes past them dropped from the session's file) without
changing the model; extra feeds are dropped."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from graph_kit import N, build, save, w
from graphprune.errors import BadInput
from graphprune.runtime import model_session, run_on, session


def _proto():
    return build([N("MatMul", ["x", "w1"], ["h"]), N("Relu", ["h"], ["y"])], {"w1": w(3, 4)}, {"x": [2, 3]}, {"y": [2, 4]})


def test_file_sessions(tmp_path):
    path = save(_proto(), tmp_path)
    x = np.ones((2, 3), np.float32)
    plain, fast = session(path), session(path, optimize=True, threads=1, spinning=False, lean=True)
    np.testing.assert_allclose(plain.run(None, {"x": x})[0], fast.run(None, {"x": x})[0], rtol=1e-6)


def test_model_session_exposes_tensors_and_restores_the_outputs():
    m = ir.from_proto(_proto())
    from graphprune.shapes import infer_exact_shapes

    infer_exact_shapes(m)
    sess = model_session(m, ["h"])
    assert [o.name for o in sess.get_outputs()] == ["h"] and [o.name for o in m.graph.outputs] == ["y"]
    assert [o.name for o in model_session(m).get_outputs()] == ["y"] and len(list(m.graph)) == 2
    h, = run_on(sess, {"x": np.ones((2, 3), np.float32), "unused": np.zeros(1)}, ["h"])
    np.testing.assert_allclose(h, np.ones((2, 3)) @ m.graph.initializers["w1"].const_value.numpy(), rtol=1e-5)
    with pytest.raises(BadInput, match="refit: no tensor named 'nope'"):
        model_session(m, ["nope"], "refit")


def test_a_session_of_exposed_tensors_computes_only_what_they_need(tmp_path):
    """ONNX Runtime runs every node of a file whatever a run asks for: the file written
    for exposed tensors holds only the nodes (and initializers, and If-branch reads) they need."""
    import onnx
    from onnx import helper

    from graphprune.runtime import write_exposed

    then = helper.make_graph([N("Add", ["h", "c"], ["t"])], "then", [], [helper.make_tensor_value_info("t", 1, None)])
    other = helper.make_graph([N("Sub", ["h", "c"], ["e"])], "else", [], [helper.make_tensor_value_info("e", 1, None)])
    proto = build([N("MatMul", ["x", "w1"], ["h"]), N("ReduceSum", ["h"], ["s"], keepdims=0),
                   N("Greater", ["s", "zero"], ["cond"]), N("If", ["cond"], ["z"], then_branch=then, else_branch=other),
                   N("MatMul", ["h", "w2"], ["y"])],
                  {"w1": w(3, 4), "w2": w(4, 5), "c": w(4), "zero": np.float32(0)}, {"x": [2, 3]}, {"y": [2, 5]})
    m = ir.from_proto(proto)
    from graphprune.shapes import infer_exact_shapes

    infer_exact_shapes(m)
    written = onnx.load(write_exposed(m, ["z"], "test", False, str(tmp_path)))
    assert [n.op_type for n in written.graph.node] == ["MatMul", "ReduceSum", "Greater", "If"]
    assert {t.name for t in written.graph.initializer} == {"w1", "c", "zero"}
    assert [o.name for o in written.graph.output] == ["z"] and [i.name for i in written.graph.input] == ["x"]
    x = np.ones((2, 3), np.float32)
    z, = session(str(tmp_path / "model.onnx")).run(None, {"x": x})
    h = x @ m.graph.initializers["w1"].const_value.numpy()
    c = m.graph.initializers["c"].const_value.numpy()
    np.testing.assert_allclose(z, h + c if h.sum() > 0 else h - c, rtol=1e-5)
