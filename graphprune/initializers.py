"""Making and replacing constant tensors in an onnx-ir graph: the one way every pass
adds an initializer (a unique name, shape and type in step with the data) or gives an
existing one new data."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def free_name(taken, base: str, sep: str = "_") -> str:
    """`base`, or `base_1`, `base_2`, ... : the first that `taken` (a set or mapping) lacks."""
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}{sep}{n}"
    return name


def c_order(array) -> np.ndarray:
    """A C-contiguous array of the same shape (np.ascontiguousarray would make a 0-d one 1-d)."""
    return np.require(np.asarray(array), requirements="C")


def new_initializer(graph: ir.Graph, base: str, array: np.ndarray, sep: str = "_") -> ir.Value:
    """Register `array` as a new initializer named `base` (or the first free variant)."""
    array = c_order(array)
    name = free_name(graph.initializers, base, sep)
    value = ir.Value(name=name, shape=ir.Shape(array.shape),
                     type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    return value


def set_data(value: ir.Value, array: np.ndarray) -> None:
    """Give an initializer new data (a new tensor: the old one may be shared, e.g. with a
    snapshot of the dense model); its declared shape follows."""
    array = c_order(array)
    value.const_value = ir.tensor(array, name=value.name)
    value.shape = ir.Shape(array.shape)
