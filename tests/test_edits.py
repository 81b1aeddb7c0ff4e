"""graphprune/edits.py: compensation's edits wait in one typed place, in dense
coordinates; a pending weight must keep its dense shape; remove writes the weights
before slicing and adds the bias deltas after (tested end to end in test_remove.py)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from graph_kit import N, build, w
from graphprune.edits import PendingEdits


def _model():
    return ir.from_proto(build([N("MatMul", ["x", "w1"], ["y"])], {"w1": w(3, 4)}, {"x": [2, 3]}, {"y": [2, 4]}))


def test_weights_keep_their_dense_shape_and_dtype():
    m = _model()
    p = PendingEdits()
    assert not p
    v = m.graph.initializers["w1"]
    with pytest.raises(ValueError, match="dense shape"):
        p.set_weight(v, np.zeros((3, 3)))
    p.set_weight(v, np.ones((3, 4), np.float64))
    assert p and p.weights["w1"].dtype == np.float32
    assert v.const_value.numpy().shape == (3, 4) and not np.all(v.const_value.numpy() == 1)  # not written yet
    assert p.write_weights(m) == 1 and np.all(v.const_value.numpy() == 1)


def test_bias_deltas_are_cut_and_added():
    m = _model()
    node = next(iter(m.graph))
    p = PendingEdits()
    p.add_bias(node, np.array([1.0, 2.0, 3.0, 4.0]), ("w1", 1))
    assert p.add_biases(m, {("w1", 1): np.array([0, 2])}) == 1
    add = next(n for n in m.graph if n.op_type == "Add")
    np.testing.assert_array_equal(add.inputs[1].const_value.numpy(), [1, 3])
