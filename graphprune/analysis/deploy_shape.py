"""Costs at the shape a model is deployed at.

A model exported with symbolic sizes (height, width, sequence) has no MAC count of its
own: a convolution's MACs grow with the image. graphprune counts MACs at the deployment
shape: `--shape input=1,3,640,640` (one per graph input), else the shape of the first
sample of the user's data (--calib, --inputs, --eval) with a batch of 1. The analysis of
what is coupled stays on the model's own symbolic shapes (what holds at every size); only
the MAC terms come from a copy with the inputs set to the deployment shape. Sizes still
symbolic are counted as 1, and the report says which they are.
"""

from __future__ import annotations

import onnx_ir as ir

from graphprune.errors import BadInput
from graphprune.shapes import shape_of


def parse_shapes(specs: list[str], model: ir.Model) -> dict[str, list[int]]:
    """`["input=1,3,640,640"]` -> {"input": [1, 3, 640, 640]}, checked against the inputs."""
    inputs = {v.name: v for v in model.graph.inputs if v.name not in model.graph.initializers}
    out = {}
    for spec in specs:
        name, eq, dims = spec.partition("=")
        if not eq:
            raise BadInput(f"--shape {spec!r}: use NAME=D0,D1,... (e.g. input=1,3,640,640)")
        if name not in inputs:
            raise BadInput(f"--shape: the model has no input {name!r} (inputs: {', '.join(inputs)})")
        try:
            values = [int(d) for d in dims.split(",")]
        except ValueError:
            raise BadInput(f"--shape {spec!r}: the sizes must be whole numbers") from None
        declared = shape_of(inputs[name]) or ()
        if len(values) != len(declared) or any(v < 1 for v in values) or any(
                isinstance(d, int) and d != v for d, v in zip(declared, values)):
            raise BadInput(f"--shape {spec!r}: the input is declared {list(declared)}")
        out[name] = values
    return out


def shapes_from_samples(feeds: dict, model: ir.Model) -> dict[str, list[int]]:
    """The deployment shape from one run of real samples, batch 1 where the batch is free."""
    out = {}
    for v in model.graph.inputs:
        if v.name not in feeds or v.name in model.graph.initializers:
            continue
        dims = list(feeds[v.name].shape)
        declared = shape_of(v) or ()
        if len(dims) == len(declared) and declared and not isinstance(declared[0], int) and dims:
            dims[0] = 1
        out[v.name] = dims
    return out


def unresolved(model: ir.Model, shapes: dict[str, list[int]] | None = None) -> list[str]:
    """Names of symbolic input sizes, past the batch axis, that no deployment shape gives."""
    names = []
    for v in model.graph.inputs:
        if v.name in model.graph.initializers or (shapes and v.name in shapes):
            continue
        for d in (shape_of(v) or ())[1:]:
            if not isinstance(d, int) and str(d) not in names:
                names.append(str(d) if d is not None else "?")
    return names


def mac_terms(model: ir.Model, shapes: dict[str, list[int]], options: dict):
    """The MAC terms of the model with its inputs set to `shapes` (None where shape
    inference cannot take them: the symbolic terms are used then)."""
    from graphprune.analysis.flow import build_flow
    from graphprune.shapes import infer_exact_shapes

    copy = model.clone()
    for v in copy.graph.inputs:
        if v.name in shapes:
            v.shape = ir.Shape(shapes[v.name])
    try:
        infer_exact_shapes(copy)
        return build_flow(copy, options).mac_terms
    except Exception:  # noqa: BLE001 - a model ONNX inference cannot size: keep the symbolic costs
        return None
