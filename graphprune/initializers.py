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


def take_positions(array: np.ndarray, cuts) -> np.ndarray:
    """The array keeping, along each axis of `cuts` ((axis, kept positions) pairs, or a
    mapping axis -> kept positions), only those positions."""
    for axis, positions in (cuts.items() if isinstance(cuts, dict) else cuts):
        array = np.take(array, positions, axis=axis)
    return array


# Weights over this many elements are sliced lazily (`set_lazy_slice`).
LAZY_ELEMENTS = 1 << 20


def set_lazy_slice(value: ir.Value, cuts: list[tuple[int, np.ndarray]]) -> None:
    """Give an initializer the slice `cuts` ((axis, kept positions) each) of its current
    data, computed when something reads it (saving streams it out tensor by tensor): a
    pruned model of gigabytes never holds all its sliced weights in memory at once, and a
    memory-mapped source is read, not copied, until then."""
    source = value.const_value
    shape = list(source.shape)
    for axis, positions in cuts:
        shape[axis] = len(positions)

    def materialize():
        return ir.tensor(c_order(take_positions(source.numpy(), cuts)), name=value.name)

    value.const_value = ir.LazyTensor(materialize, dtype=source.dtype, shape=ir.Shape(shape), name=value.name)
    value.shape = ir.Shape(shape)
