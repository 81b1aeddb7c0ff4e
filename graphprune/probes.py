"""Inputs for running a model: its declared inputs, random probes that respect them,
and samples read from the user's files (--inputs, --eval, --calib)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.errors import BadInput
from graphprune.runtime import ORT_NUMPY

# Probe inputs are generated in memory; a declared shape beyond this is refused.
PROBE_BUDGET_BYTES = 1 << 30

InputMeta = list[tuple[str, list, str]]  # (name, shape, ONNX Runtime type string) of each input

_ORT_TYPES = {ir.DataType.FLOAT: "float", ir.DataType.DOUBLE: "double", ir.DataType.FLOAT16: "float16",
              ir.DataType.INT64: "int64", ir.DataType.INT32: "int32", ir.DataType.INT8: "int8",
              ir.DataType.UINT8: "uint8", ir.DataType.BOOL: "bool"}


def input_meta(sess) -> InputMeta:
    """The inputs of an ONNX Runtime session."""
    return [(i.name, list(i.shape), i.type) for i in sess.get_inputs()]


def graph_input_meta(model: ir.Model) -> InputMeta:
    """The real inputs (not initializers listed as inputs) of an in-memory model."""
    out = []
    for v in model.graph.inputs:
        if v.name in model.graph.initializers:
            continue
        dims = [d if isinstance(d, int) else (d.value if d is not None else None)
                for d in (v.shape or [])] if v.shape is not None else []
        out.append((v.name, dims, f"tensor({_ORT_TYPES.get(v.dtype, str(v.dtype).lower())})"))
    return out


def index_bounds(path: str) -> dict[str, int]:
    """Graph inputs used as Gather indices into a constant table (token ids, token types):
    input name -> table size, so probes stay inside it. External data is not read."""
    import onnx

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - bounds are a convenience; the loader reports errors
        return {}
    tables = {t.name: list(t.dims) for t in proto.graph.initializer}
    inputs = {i.name for i in proto.graph.input}
    bounds: dict[str, int] = {}
    for node in proto.graph.node:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[1] not in inputs:
            continue
        dims = tables.get(node.input[0])
        if not dims:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        size = int(dims[axis % len(dims)])
        bounds[node.input[1]] = min(bounds.get(node.input[1], size), size)
    return bounds


def _integer(type_: str) -> bool:
    return ORT_NUMPY.get(type_) is not None and np.issubdtype(ORT_NUMPY[type_], np.integer)


def probe_inputs(inputs: InputMeta, batch: int = 2, seed: int = 0, bounds: dict[str, int] | None = None,
                 shapes: dict | None = None, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Random inputs matching the model's declared inputs. Symbolic dims named in `dims`
    take that size (a decoder's cache lengths and head size: cache_io.probe_dims); others
    become `batch` on the first axis, 16 when an integer input (token ids) has them, else
    1, unless `shapes` gives the input's deployment shape (its batch then `batch` too).
    Integers stay below `bounds` (Gather tables: token ids); other integer
    and boolean inputs (attention masks, flags) are all ones: a mask that hides a whole
    row makes models disagree on what softmax of nothing is, which says nothing about
    pruning."""
    if shapes:
        inputs = [(name, [batch if i == 0 and not (isinstance(d, int) and d > 0) else s
                          for i, (d, s) in enumerate(zip(dims, shapes[name]))] if name in shapes else dims, t)
                  for name, dims, t in inputs]
    rng = np.random.default_rng(seed)
    bounds = bounds or {}
    feeds = {}
    total = 0
    named = dims or {}
    token_dims = {d for _, ds, t in inputs if _integer(t) for d in ds[1:] if isinstance(d, str)}
    for name, declared, type_ in inputs:
        shape = [d if isinstance(d, int) and d > 0 else named[d] if d in named else
                 (batch if i == 0 else (16 if _integer(type_) or d in token_dims else 1))
                 for i, d in enumerate(declared)]
        dtype = ORT_NUMPY.get(type_)
        if dtype is None:
            raise BadInput(f"input {name!r} has type {type_}, which probes cannot fill; pass --inputs")
        total += int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
        if total > PROBE_BUDGET_BYTES:
            raise BadInput(f"input {name!r} declares shape {shape}, too large for probe inputs "
                           f"(over {PROBE_BUDGET_BYTES >> 20} MiB); pass --inputs")
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif name in bounds:
            feeds[name] = rng.integers(0, min(bounds[name], 10), size=shape).astype(dtype)
        else:
            feeds[name] = np.ones(shape, dtype=dtype)
    return feeds
