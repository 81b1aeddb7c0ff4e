"""The exactness oracles of the design notes, as helpers the tests share.

- `prune_to_file`: run a pipeline through the public API and verify the result.
- `inert_removal_diff`: choose units in every prunable group, make them inert (zero every
  weight slice, bias and normalization parameter they own), then remove exactly those
  units; the outputs must not change.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.context import Context
from graphprune.loading import load_model
from graphprune.pipeline import Options, prune, run_passes
from graphprune.saving import save_model
from graphprune.probes import index_bounds, input_meta, probe_inputs
from graphprune.runtime import session

INERT_ROLES = ("out", "in", "bias", "bn_scale", "bn_shift", "slope")


def run_model(path: str, feeds=None, optimize=False):
    sess = session(path, optimize=optimize)
    feeds = feeds if feeds is not None else probe_inputs(input_meta(sess), bounds=index_bounds(path))
    return feeds, sess.run(None, feeds)


def prune_to_file(path: str, out: str, passes: list[str]) -> dict:
    return prune(path, Options(passes=passes, output=out))


def make_inert(model: ir.Model, ctx: Context) -> int:
    """Zero every role-carrying constant slice of the planned units; return slices zeroed."""
    analysis = ctx.analysis()
    count = 0
    for gid, units in ctx.plan.items():
        g = analysis.groups[gid]
        for key, role, _ in g.roles:
            if role not in INERT_ROLES:
                continue
            value = model.graph.initializers[key[0]]
            arr = value.const_value.numpy().copy()
            positions = g.positions(key, units)
            index = [slice(None)] * arr.ndim
            index[key[1]] = positions
            arr[tuple(index)] = 0
            value.const_value = ir.tensor(arr, name=key[0])
            count += 1
    return count


def inert_pair(path: str, tmp, ratio: float = 0.5, seed: int = 0, analysis: tuple = (), select: str = ""):
    """(inert model, the same with those units removed, the context): random units of every
    prunable group made inert, written, then removed and written; `analysis` names opt-in
    analysis passes (query-heads) to run first, `select` more options of the selection."""
    model = load_model(path)
    ctx = Context(model)
    run_passes(ctx, ["normalize", *analysis, f"random:seed={seed}", f"select:ratio={ratio},round_to=1{select}"])
    make_inert(model, ctx)
    ref_path, out_path = str(tmp / "inert.onnx"), str(tmp / "removed.onnx")
    save_model(model, ref_path)
    run_passes(ctx, ["remove", "cleanup"])
    save_model(model, out_path)
    return ref_path, out_path, ctx


def inert_removal_diff(path: str, tmp, ratio: float = 0.5, seed: int = 0, analysis: tuple = ()):
    """(max abs diff, groups pruned, units removed) of removing inert units."""
    ref_path, out_path, ctx = inert_pair(path, tmp, ratio, seed, analysis)
    groups, units = len(ctx.removal.plan), sum(len(u) for u in ctx.removal.plan.values())
    feeds, ref = run_model(ref_path)
    _, got = run_model(out_path, feeds)
    assert [a.shape for a in ref] == [b.shape for b in got]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, got))
    scale = max(float(np.max(np.abs(a))) for a in ref)
    return diff / max(scale, 1e-6), groups, units
