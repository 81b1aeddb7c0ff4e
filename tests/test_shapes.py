"""graphprune/shapes.py: static shapes with names for symbolic dims, constant arrays,
attribute values, and exact shape inference that forgets stale intermediate shapes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graph_kit import N, build, i64, w
from graphprune.shapes import attr_value, const_array, infer_exact_shapes, int_list, opset_of, shape_of


def test_readers():
    m = ir.from_proto(build([N("Conv", ["x", "k"], ["y"], pads=[1, 1, 1, 1]), N("Reshape", ["y", "t"], ["z"])],
                            {"k": w(4, 3, 3, 3), "t": i64(0, -1)}, {"x": ["n", 3, 5, 5]}, {"z": ["n", 100]}))
    conv = next(iter(m.graph))
    assert shape_of(m.graph.inputs[0]) == ("n", 3, 5, 5) and shape_of(None) is None
    assert const_array(m.graph.initializers["k"]).shape == (4, 3, 3, 3) and const_array(m.graph.inputs[0]) is None
    assert int_list(m.graph.initializers["t"]) == [0, -1]
    assert list(attr_value(conv, "pads")) == [1, 1, 1, 1] and attr_value(conv, "group", 1) == 1
    assert opset_of(m) == 17


def test_exact_shapes_replace_stale_ones():
    m = ir.from_proto(build([N("MatMul", ["x", "w1"], ["h"]), N("Relu", ["h"], ["y"])], {"w1": w(3, 4)},
                            {"x": [2, 3]}, {"y": [2, 4]}))
    infer_exact_shapes(m)
    h = next(iter(m.graph)).outputs[0]
    assert shape_of(h) == (2, 4)
    m.graph.initializers["w1"].const_value = ir.tensor(np.zeros((3, 2), np.float32), name="w1")
    m.graph.initializers["w1"].shape = ir.Shape([3, 2])
    infer_exact_shapes(m)
    assert shape_of(h) == (2, 2)  # graph outputs keep their declared shapes: pruning never changes them
