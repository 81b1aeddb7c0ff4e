"""A PyTorch module (or an ExportedProgram) to ONNX, so that every weight stays traceable.

The dynamo exporter (torch.export's FX graph, then ONNX) names initializers after the
parameters and buffers they hold (`layer1.0.conv1.weight`). Its ONNX optimizer would fold
BatchNorm into convolutions and rename what it rewrites, so it is off: graphprune's own
normalization folds what the analysis needs and records where each folded weight came from
(passes/fold_constants.derived_from)."""

from __future__ import annotations

import warnings

import torch


def as_tuple(example_inputs) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    return tuple(example_inputs)


def auto_shapes(args: tuple) -> tuple:
    """The batch axis (axis 0) of every tensor argument dynamic where the module allows it
    (torch.export's Dim.AUTO): calibration and evaluation batches then need not match the
    example's batch size. Other axes stay as the example has them: a sequence length left
    symbolic turns head reshapes into computed shapes, which pins heads, so token inputs
    keep the example's length (the pruned nn.Module itself takes any length)."""
    auto = torch.export.Dim.AUTO
    return tuple({0: auto} if isinstance(a, torch.Tensor) and a.ndim else None for a in args)


def export(module, example_inputs, path: str, dynamic_shapes=None) -> list[str]:
    """Write `module` (nn.Module or ExportedProgram) called on `example_inputs` to `path`;
    returns the ONNX input names, in the order of the module's arguments. `dynamic_shapes`
    as torch.export takes it; "auto" makes the batch axis dynamic (auto_shapes)."""
    import logging

    import onnx

    args = as_tuple(example_inputs)
    if isinstance(dynamic_shapes, str) and dynamic_shapes == "auto":
        dynamic_shapes = None if isinstance(module, torch.export.ExportedProgram) else auto_shapes(args)
    logging.getLogger("torch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, dynamo=True, optimize=False, verbose=False,
                          dynamic_shapes=dynamic_shapes)
    proto = onnx.load(path, load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    return [i.name for i in proto.graph.input if i.name not in inits]
