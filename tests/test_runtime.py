"""graphprune/runtime.py: sessions of files and of in-memory models; intermediate tensors
exposed as outputs without changing the model; extra feeds are dropped."""

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
    assert [o.name for o in sess.get_outputs()] == ["y", "h"] and [o.name for o in m.graph.outputs] == ["y"]
    h, = run_on(sess, {"x": np.ones((2, 3), np.float32), "unused": np.zeros(1)}, ["h"])
    np.testing.assert_allclose(h, np.ones((2, 3)) @ m.graph.initializers["w1"].const_value.numpy(), rtol=1e-5)
    with pytest.raises(BadInput, match="refit: no tensor named 'nope'"):
        model_session(m, ["nope"], "refit")
