"""graphprune/initializers.py: new initializers get free names and matching shape and
type; new data replaces a tensor (never mutates it, so a snapshot sharing it is safe)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graph_kit import N, build, w
from graphprune.initializers import free_name, new_initializer, set_data


def test_free_names():
    assert free_name({"a"}, "b") == "b"
    assert free_name({"a", "a_1"}, "a") == "a_2"
    assert free_name({"a"}, "a", sep="") == "a1"


def test_new_initializer_and_set_data():
    m = ir.from_proto(build([N("MatMul", ["x", "w1"], ["y"])], {"w1": w(3, 4)}, {"x": [2, 3]}, {"y": [2, 4]}))
    v = new_initializer(m.graph, "w1", np.arange(6, dtype=np.int64).reshape(2, 3))
    assert v.name == "w1_1" and m.graph.initializers["w1_1"] is v
    assert v.dtype == ir.DataType.INT64 and list(v.shape) == [2, 3]
    old = m.graph.initializers["w1"].const_value
    snapshot = m.clone()
    set_data(m.graph.initializers["w1"], np.zeros((3, 2), np.float32))
    assert list(m.graph.initializers["w1"].shape) == [3, 2]
    assert snapshot.graph.initializers["w1"].const_value is old and old.numpy().shape == (3, 4)


def test_scalars_stay_scalars():
    m = ir.from_proto(build([N("MatMul", ["x", "w1"], ["y"])], {"w1": w(3, 4)}, {"x": [2, 3]}, {"y": [2, 4]}))
    v = new_initializer(m.graph, "s", np.array(2.5, np.float32))
    assert v.const_value.numpy().shape == () and list(v.shape) == []
    set_data(v, np.array(3.0, np.float32))
    assert v.const_value.numpy().shape == ()
