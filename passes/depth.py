"""depth: remove whole residual branches (a transformer's attention or MLP sublayers, a
ResNet's blocks), as ShortGPT and BlockPruner do.

Branches are found from the graph (graphprune.analysis.branches): y = a + f(a) becomes
y = a. Each is scored by the angular distance between its input and output, the mean over
tokens (positions) of arccos(cos(a, a + f(a))) / pi: a branch that hardly turns the stream
matters least. Activations come from the calibration data (--calib), else from random
probes (the report says which). The `blocks` lowest-scored branches go (or a `ratio` of
them), optionally only of one `kind` (attention or mlp: branches that read a KV cache or
run attention, and the others).

A removed attention branch takes its KV cache with it: those past inputs and present
outputs leave the interface, and the remaining caches are renumbered without gaps (the
runtime names them by layer index; an onnxruntime-genai config beside the model gets the
new layer count). Verification feeds and compares the remaining tensors under their
original names. Width passes can follow: they see the shallower graph.
"""

from __future__ import annotations

import re

import numpy as np
import onnx_ir as ir

from graphprune.analysis.branches import SKIP_NORMS, Branch, find_branches
from graphprune.analysis.cache_io import cache_pairs, layer_of
from graphprune.errors import BadInput
from graphprune.registry import PrunePass, register


def angular_distances(ctx, branches: list[Branch]) -> tuple[np.ndarray, str]:
    """Mean angular distance (in units of pi) between each branch's input and output."""
    names = list(dict.fromkeys(v.name for b in branches for v in (b.stream, b.branch)))
    if ctx.calibration is not None:
        sess, calib = ctx.calibration.session(ctx.model, names, "depth")
        batches, source = calib.batches(), "calibration"
    else:
        from graphprune.analysis.cache_io import probe_dims
        from graphprune.probes import graph_input_meta, probe_inputs
        from graphprune.runtime import model_session

        sess = model_session(ctx.model, names, "depth")
        meta, dims = graph_input_meta(ctx.model), probe_dims(ctx.model)
        batches = [probe_inputs(meta, batch=8, seed=s, dims=dims) for s in range(4)]
        source = "random probes"

    def rows(x: np.ndarray, axis: int) -> np.ndarray:  # one row of features per position
        return np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])

    total, count = np.zeros(len(branches)), 0
    for feeds in batches:
        outs = dict(zip(names, sess.run(names, feeds)))
        for i, b in enumerate(branches):
            a = rows(outs[b.stream.name], b.feature_axis)
            y = a + rows(outs[b.branch.name], b.feature_axis)
            cos = np.sum(a * y, -1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(y, axis=-1), 1e-12)
            total[i] += float(np.sum(np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi))
        count += int(np.prod(a.shape[:-1]))
    return total / max(count, 1), source


def bypass(graph: ir.Graph, b: Branch) -> None:
    """y = a: the join's sum becomes the stream itself; a fused skip norm becomes the plain
    norm of the stream."""
    node = b.node
    stream = node.inputs[b.stream_at]  # not b.stream: an earlier bypass may have replaced it
    if node.op_type == "Add":
        node.outputs[0].replace_all_uses_with(stream)
        graph.remove(node, safe=True)
        return
    inputs = [stream, node.inputs[2]] + ([node.inputs[3]] if node.op_type == "SkipLayerNormalization"
                                             and len(node.inputs) > 3 and node.inputs[3] is not None else [])
    attrs = {"axis": -1, **({"epsilon": node.attributes["epsilon"].value} if "epsilon" in node.attributes else {})}
    # Both plain norms live in the default domain (ONNX Runtime registers SimplifiedLayerNormalization there).
    norm = ir.node(SKIP_NORMS[node.op_type], inputs, attributes=attrs, name=f"{node.name}_bypassed")
    graph.insert_before(node, norm)
    y = node.outputs[0]
    norm.outputs[0].shape, norm.outputs[0].dtype = y.shape, y.dtype
    y.replace_all_uses_with(norm.outputs[0])
    if len(node.outputs) > 3 and node.outputs[3] is not None:
        node.outputs[3].replace_all_uses_with(stream)
    graph.remove(node, safe=True)


def _renumber(name: str, old: str, new: int) -> str:
    """The name with its layer index `old` replaced by `new` (the first such number)."""
    return re.sub(rf"(?<![0-9]){old}(?![0-9])", str(new), name, count=1)


def drop_caches(model: ir.Model, pairs, pasts: set[str]) -> tuple[dict[str, str], set[str]]:
    """Drop the KV-cache pairs (of `pairs`) whose past is in `pasts`; renumber the others
    from 0. Returns ({new name: name before} of the renamed inputs and outputs, the names
    dropped)."""
    graph = model.graph
    keep = [p for p in pairs if p.past not in pasts]
    gone = {n for p in pairs if p.past in pasts for n in (p.past, p.present)}
    for v in [v for v in graph.inputs if v.name in gone]:
        graph.inputs.remove(v)
    for v in [v for v in graph.outputs if v.name in gone]:
        graph.outputs.remove(v)
    layers = sorted({layer_of(p) for p in keep}, key=int)
    renamed = {}
    values = {v.name: v for v in (*graph.inputs, *graph.outputs)}
    for p in keep:
        old = layer_of(p)
        new = layers.index(old)
        if str(new) == old:
            continue
        for name in (p.past, p.present):
            target = _renumber(name, old, new)
            values[name].name = target
            renamed[target] = name
    return renamed, gone


@register
class DepthPass(PrunePass):
    name = "depth"
    kind = "depth"
    summary = "remove whole residual branches (attention / MLP sublayers, residual blocks) by angular distance"
    options = {"blocks": 0, "ratio": None, "kind": "all", "score": "angular"}

    def run(self, model: ir.Model) -> bool:
        from graphprune.passes.cleanup import remove_dead_code

        o = self.opts
        if o["kind"] not in ("all", "attention", "mlp"):
            raise BadInput(f"depth: kind must be all, attention or mlp, not {o['kind']!r}")
        if o["score"] != "angular":
            raise BadInput(f"depth: score must be angular, not {o['score']!r}")
        pairs = cache_pairs(model)
        pasts = {p.past for p in pairs}
        branches = [b for b in find_branches(model, pasts)
                    if o["kind"] == "all" or b.attention == (o["kind"] == "attention")]
        if not branches:
            raise BadInput("depth: the model has no residual branch (y = a + f(a) through a weight) to remove")
        if o["ratio"] is not None:
            if not isinstance(o["ratio"], float) or not 0.0 <= o["ratio"] < 1.0:
                raise BadInput(f"depth: ratio must be a number in [0, 1), not {o['ratio']!r}")
            n = int(round(o["ratio"] * len(branches)))
        else:
            n = o["blocks"]
            if not isinstance(n, int) or not 0 <= n <= len(branches):
                raise BadInput(f"depth: blocks must be a whole number up to the {len(branches)} branches found, "
                               f"not {n!r}")
        scores, source = angular_distances(self.ctx, branches)
        order = np.argsort(scores, kind="stable")[:n]
        chosen = [branches[i] for i in sorted(order)]
        for b in chosen:
            bypass(model.graph, b)
        renamed, dropped = drop_caches(model, pairs, {p for b in chosen for p in b.pasts})
        remove_dead_code(model)
        self.ctx.rename_interface(renamed, dropped)
        self.ctx.report["depth"] = {
            "score": "angular distance (mean over positions, units of pi)", "data": source,
            "branches": [{"at": b.node.name, "attention": b.attention, "score": round(float(s), 6),
                          "removed": b in chosen, "caches": b.pasts} for b, s in zip(branches, scores)]}
        self.stats = {"branches": len(branches), "removed": len(chosen), "caches_dropped": 2 * sum(
            len(b.pasts) for b in chosen)}
        if chosen:
            self.ctx.graph_changed()
        else:
            self.ctx.warn(f"{self.spec()} removed nothing: give blocks=N or ratio=R "
                          f"({len(branches)} residual branches found)")
        return bool(chosen)
