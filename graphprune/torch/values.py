"""The pruned ONNX model's values, written back onto the sliced module.

Slicing alone gives the pruned module only where pruning removed channels and changed
nothing else. Compensation and repair passes change the values that stay (refit solves
next-layer weights, compensate adds bias deltas, restore-stats rewrites normalization
statistics), so after slicing every parameter and buffer takes its value from the pruned
ONNX initializer that holds it: the initializer of the same name, or a transposed copy
normalization made of it (read back through its axes). Where compensation gave a bias to
a consumer whose module has none (a Conv or Linear built with bias=False), the module
gains a bias parameter; the plan lists it under "added" so apply_plan can build it too.
"""

from __future__ import annotations

import numpy as np
import torch

from graphprune.torch.plan import PlanError


def _source(value, names: set[str]) -> tuple[str, list[int]] | None:
    """(module tensor name, its axis for each of this initializer's axes), or None."""
    from graphprune.passes.fold_constants import derived_from

    name, axes = value.name, list(range(len(value.shape or ())))
    inits = value.graph.initializers if value.graph is not None else {}
    seen = 0
    while name not in names and seen < 16:
        origin = derived_from(value)
        if origin is None:
            return None
        base, inner = origin
        name, axes = base, [inner[a] for a in axes] if len(inner) == len(axes) else inner
        value = inits.get(base)
        seen += 1
        if value is None:
            break
    return (name, axes) if name in names else None


def onnx_values(model, names: set[str]) -> dict[str, np.ndarray]:
    """Module tensor name -> its value in the pruned ONNX model (module layout)."""
    out: dict[str, np.ndarray] = {}
    for value in model.graph.initializers.values():
        if value.const_value is None:
            continue
        found = _source(value, names)
        if found is None:
            continue
        name, axes = found
        arr = value.const_value.numpy()
        if sorted(axes) != list(range(arr.ndim)):
            continue
        arr = np.transpose(arr, np.argsort(axes))
        prev = out.get(name)
        if prev is not None and (prev.shape != arr.shape or not np.array_equal(prev, arr)):
            raise PlanError(f"graphprune.torch: parameter {name!r} is read in two places that pruning changed "
                            "differently; the module cannot hold both")
        out[name] = arr
    return out


def added_biases(model, names: set[str], module: torch.nn.Module) -> dict[str, np.ndarray]:
    """'<module>.bias' -> value, for consumers of a module weight whose ONNX bias holds no
    module tensor (compensation made it) while the module has no bias."""
    from graphprune.bias import current_bias

    out: dict[str, np.ndarray] = {}
    for node in model.graph:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2 or node.inputs[1] is None:
            continue
        weight = node.inputs[1]
        if weight.const_value is None:
            continue
        found = _source(weight, names)
        if found is None or not found[0].endswith(".weight"):
            continue
        owner = found[0][: -len(".weight")]
        if f"{owner}.bias" in names:
            continue
        b = current_bias(node)
        sub = module.get_submodule(owner)
        if b is None or not hasattr(sub, "bias") or getattr(sub, "bias") is not None:
            continue
        if not np.any(b):
            continue  # the exporter's zero bias, unchanged
        out[f"{owner}.bias"] = np.asarray(b, np.float32).reshape(-1)
    return out


def add_biases(module: torch.nn.Module, shapes: dict[str, list[int]]) -> None:
    """Give modules the bias parameters the plan added (zeros until a state_dict fills them)."""
    for name, shape in shapes.items():
        owner = module.get_submodule(name.rpartition(".")[0])
        weight = owner.weight
        owner.bias = torch.nn.Parameter(torch.zeros(tuple(shape), dtype=weight.dtype, device=weight.device))


def write_values(module: torch.nn.Module, values: dict[str, np.ndarray], added: dict[str, np.ndarray]) -> None:
    """Copy the pruned ONNX values onto the (sliced) module's tensors."""
    add_biases(module, {name: list(arr.shape) for name, arr in added.items()})
    state = module.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, arr in {**values, **added}.items():
            t = state.get(name)
            if t is None or tuple(t.shape) != arr.shape:
                continue  # the check against the ONNX model names what could not follow
            t.copy_(torch.from_numpy(np.array(arr)).to(t.dtype))
