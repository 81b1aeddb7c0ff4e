"""The plan: what pruning kept of each parameter and buffer of a PyTorch module, and the
size attributes its modules must carry, as a JSON-serialisable dict:

    {"format": "graphprune-plan/1",
     "tensors": {"layer1.0.conv1.weight": {"0": [0, 2, 3, ...]}, ...},   # kept indices per axis
     "attributes": {"layer1.0.conv1": {"out_channels": 12}, ...},
     "added": {"layer1.0.conv2.bias": [16]}}                            # biases compensation gave

It is built from what `remove` did to the ONNX model (ctx.removal.kept: positions kept of
each sliced axis of each initializer), each initializer traced back to the parameter or
buffer it holds, directly by name or through the transposes and copies normalization
made of it. A sliced initializer that traces back to none is refused, naming it: the torch
module could not follow that cut."""

from __future__ import annotations

import numpy as np

from graphprune.errors import GraphpruneError

FORMAT = "graphprune-plan/1"


def _uniform(arr: np.ndarray) -> bool:
    return arr.size == 0 or bool(np.all(arr == arr.reshape(-1)[0]))


class PlanError(GraphpruneError):
    """The pruned ONNX model cannot be written back onto the PyTorch module."""


def tensor_plan(ctx, names: set[str]) -> dict[str, dict[str, list[int]]]:
    """name -> {axis: kept indices} for the module's tensors `names` (its state_dict)."""
    from graphprune.passes.fold_constants import derived_from

    removal = ctx.removal
    if removal is None or not removal.kept:
        return {}
    inits = (removal.dense or ctx.model).graph.initializers  # names and provenance before removal
    out: dict[str, dict[str, list[int]]] = {}
    for (name, axis), kept in sorted(removal.kept.items()):
        value = inits.get(name)
        if value is None:
            continue  # an activation: it follows from the sliced weights
        source, src_axis = name, axis
        origin = derived_from(value) if value is not None else None
        while origin is not None and source not in names:
            base, axes = origin
            source, src_axis = base, axes[src_axis]
            value = inits.get(base)
            origin = derived_from(value) if value is not None else None
        if source not in names:
            if value is not None and value.const_value is not None and _uniform(value.const_value.numpy()):
                continue  # a constant the exporter made (a zero bias): any cut of it is what the module computes
            raise PlanError(f"graphprune.torch: pruned tensor {name!r} (axis {axis}) is no parameter or buffer "
                            "of the module; the module cannot follow this cut")
        kept_list = [int(i) for i in np.asarray(kept)]
        prev = out.setdefault(source, {}).get(str(src_axis))
        if prev is not None and prev != kept_list:
            raise PlanError(f"graphprune.torch: parameter {source!r} is read in two places that keep different "
                            f"indices of its axis {src_axis}; the module cannot hold both")
        out[source][str(src_axis)] = kept_list
    return out
