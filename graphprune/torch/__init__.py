"""PyTorch in, PyTorch out.

    import graphprune.torch as gpt
    result = gpt.prune(model, example_inputs, calib=batches, passes=["select:macs=0.5"])
    small = result.module                      # a new, smaller nn.Module; `model` is untouched
    gpt.distill(small, model, batches)          # recover accuracy (knowledge distillation)
    gpt.export(small, example_inputs, "small.onnx")
    torch.save({"state_dict": small.state_dict(), "plan": result.plan}, "small.pt")
    fresh = gpt.apply_plan(build_model(), plan); fresh.load_state_dict(state_dict)

The module is exported with the dynamo exporter (parameter names kept), pruned as ONNX by
the normal pipeline (verification included), and the plan (kept indices per parameter
and buffer axis, the size attributes modules carry, biases compensation added) is written
back onto a copy of it, with the values the pruned ONNX model holds (compensation and
repair passes change them). The pruned module must compute what the pruned ONNX model computes on the
verification inputs; where it does not, prune() refuses, naming the modules whose size
attributes it could not make consistent. torch is an optional dependency of graphprune:
only this package imports it.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from graphprune.torch.batches import calibration
from graphprune.torch.apply import apply_plan, module_sizes, set_attributes, size_attributes, slice_tensors
from graphprune.torch.distill import distill
from graphprune.torch.exporting import as_tuple, export as _export_onnx
from graphprune.torch.plan import FORMAT, PlanError, tensor_plan
from graphprune.torch.values import added_biases, onnx_values, write_values

__all__ = ["PruneResult", "PlanError", "apply_plan", "distill", "export", "prune"]


@dataclass
class PruneResult:
    module: torch.nn.Module      # the pruned module (a new one)
    onnx: str                    # path of the pruned ONNX model
    report: dict[str, Any]
    plan: dict[str, Any]


def export(module, example_inputs, path: str, dynamic_shapes="auto") -> str:
    """The deployable ONNX of a (pruned, distilled) module, with the dynamo exporter; by
    default its batch axis is dynamic where the module allows it (`dynamic_shapes="auto"`).
    prune() exports with the example's shapes by default: a symbolic batch or sequence turns
    head reshapes into computed shapes, which pins heads (calibration batches of another
    batch size are re-batched to the model's fixed one)."""
    _export_onnx(module, example_inputs, path, dynamic_shapes)
    return path


def _batch(example_inputs, dynamic_shapes) -> int | None:
    """The batch size calibration is re-cut to: the example's, when shapes are static."""
    if dynamic_shapes is not None:
        return None
    first = next((a for a in as_tuple(example_inputs) if isinstance(a, torch.Tensor) and a.ndim), None)
    return int(first.shape[0]) if first is not None else None


def prune(module, example_inputs, passes: list[str] | None = None, calib=None, dynamic_shapes=None,
          output: str | None = None, atol: float = 1e-4, **options) -> PruneResult:
    """Prune a torch module (or an ExportedProgram) through its exported graph; see the
    module docstring. `options` are graphprune.Options fields (eval_data, tolerance, ...);
    `output` keeps the pruned ONNX (default: a temporary file, removed when the result is
    garbage-collected or the process ends)."""
    program = isinstance(module, torch.export.ExportedProgram)
    source = module.module() if program else module
    modes = {name: m.training for name, m in source.named_modules()}  # each submodule's own mode
    if not program:  # an exported program's module is fixed in the mode it was traced in
        source.eval()
    folder = tempfile.mkdtemp(prefix="graphprune-torch-")
    try:
        result = _prune(module, source, example_inputs, passes, calib, dynamic_shapes, output, atol, folder, options)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        if not program:
            _set_modes(source, modes)
    if not program:
        _set_modes(result.module, modes)
    if output:  # the folder held only the dense export
        shutil.rmtree(folder, ignore_errors=True)
    else:  # the pruned ONNX lives as long as the result does
        weakref.finalize(result, shutil.rmtree, folder, True)
    return result


def _set_modes(module, modes: dict[str, bool]) -> None:
    """Every submodule back in the train/eval mode it had (`.train()` would set them all:
    a wrapper in train mode around a model in eval mode would wake its dropout)."""
    for name, m in module.named_modules():
        if name in modes:
            m.training = modes[name]


def _prune(module, source, example_inputs, passes, calib, dynamic_shapes, output, atol, folder, options):
    from graphprune.pipeline import Options, run

    dense_path = os.path.join(folder, "dense.onnx")
    names = _export_onnx(module, example_inputs, dense_path, dynamic_shapes)
    out = output or os.path.join(folder, "pruned.onnx")
    opts = dataclasses.replace(Options(), passes=["torch-sizes", *(passes or [])], output=out, keep_dense=True,
                               calib=calibration(calib, names, _batch(example_inputs, dynamic_shapes)), **options)
    ctx = run(dense_path, opts)
    state = source.state_dict(keep_vars=True)
    plan = {"format": FORMAT, "tensors": tensor_plan(ctx, set(state)), "attributes": {}, "added": {}}
    pruned = copy.deepcopy(source)
    before = module_sizes(pruned)
    slice_tensors(pruned, plan["tensors"])
    added = added_biases(ctx.model, set(state), pruned)
    write_values(pruned, onnx_values(ctx.model, set(state)), added)
    plan["added"] = {name: list(arr.shape) for name, arr in added.items()}
    plan["attributes"] = size_attributes(pruned, before)
    set_attributes(pruned, plan["attributes"])
    old = {name: tuple(t.shape) for name, t in state.items()}
    _check_against_onnx(pruned, out, ctx, names, atol, plan, before, old)
    return PruneResult(pruned, out, ctx.report, plan)


def _check_against_onnx(pruned, onnx_path: str, ctx, names, atol: float, plan, before, old_shapes) -> None:
    """The pruned module must give what the pruned ONNX model gives on the verification
    inputs; else name the modules whose size attributes could not be made consistent."""
    from graphprune.runtime import session

    feeds = _verification_feeds(ctx, names)
    sess = session(onnx_path)
    want = sess.run(None, feeds)
    try:
        with torch.no_grad():
            got = pruned(*[torch.from_numpy(np.asarray(feeds[n])) for n in names])
    except Exception as e:  # noqa: BLE001 - the module's own code meets the cut
        raise PlanError(f"graphprune.torch: the pruned module fails to run ({type(e).__name__}: {e}); "
                        "a size its code computes could not follow the cut") from None
    got = [g.detach().cpu().numpy() for g in _flatten(got)]
    worst = 0.0
    for a, b in zip(want, got):
        if a.shape != b.shape:
            worst = float("inf")
            break
        scale = max(1.0, float(np.abs(a).max()) if a.size else 1.0)
        worst = max(worst, float(np.abs(a - b).max()) / scale if a.size else 0.0)
    if worst > atol:
        raise PlanError("graphprune.torch: the pruned module does not compute what the pruned ONNX model computes "
                        f"(relative difference {worst:.3g}); size attributes that may not follow the cut: "
                        f"{', '.join(_suspects(pruned, plan, before, old_shapes, ctx.report)) or 'none found (a size the module computes)'}")


def _suspects(pruned, plan, before, old_shapes, report) -> list[str]:
    """Integer attributes of modules that still hold a size the cut changed (a head count,
    a width) and that graphprune did not update: 'module.attr (is N)'."""
    changed = {before.get(name, {}).get(key) for name, attrs in plan["attributes"].items() for key in attrs}
    changed |= {old_shapes[name][int(axis)] for name, axes in plan["tensors"].items() for axis in axes}
    changed |= {g["units"] for g in report.get("groups", []) if g["removed"] and g["kind"] == "heads"}
    changed = {c for c in changed if isinstance(c, int) and c > 1}
    out = []
    for name, m in pruned.named_modules():
        patched = plan["attributes"].get(name, {})
        for key, value in vars(m).items():
            if key.startswith("_") or key in patched or isinstance(value, bool) or not isinstance(value, int):
                continue
            if value in changed and key not in ("in_channels", "out_channels", "in_features", "out_features"):
                out.append(f"{name or '<root>'}.{key} (is {value})")
    return out[:8]


def _flatten(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if hasattr(out, "to_tuple"):
        return _flatten(out.to_tuple())
    return []


def _verification_feeds(ctx, names) -> dict:
    """The verification runs' first feeds (real samples where the user gave any)."""
    from graphprune.probes import graph_input_meta, index_bounds, probe_inputs

    if ctx.reference is not None:
        return ctx.reference.runs[0]
    return probe_inputs(graph_input_meta(ctx.model), batch=2, bounds=index_bounds(ctx.report["output"]))
