"""A latency model of a model in ONNX Runtime, for `select:latency=`: what a plan of
removals costs in milliseconds, predicted from measured kernel times.

The table is measured, not assumed: ONNX Runtime's profiler times every node of the
dense model and of the model pruned to a few uniform widths (kept fractions 0.75, 0.5,
0.25 on the channel block, and one width just off the block, where ORT's blocked
kernels fall back to slower ones). A node's time is then a function of its work ratio
(the product of the kept fractions of the axes its MACs, or its output, run over),
interpolated between the measured points (each capped by those at more work: a point above
a larger one is noise) and toward zero below the smallest, times the node's measured off-block factor
where the plan leaves one of its axes off the block. Nodes ORT adds itself (layout
reorders) scale with the plan's MAC ratio. The prediction is a fraction of the dense
profile, turned into milliseconds with the dense model's measured wall time.

The table depends on the graph's structure and the session settings, not on weights: it
is cached under `$GRAPHPRUNE_CACHE` (default `~/.cache/graphprune`) by a hash of both.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx_ir as ir

from graphprune.shapes import shape_of

FRACTIONS = (0.75, 0.5, 0.25)
VERSION = 2  # 2: points capped by those at more work


@dataclass
class LatencySettings:
    """How latency is measured: the same session settings as `--bench` (CPU provider,
    all graph optimizations, no thread spinning), inputs at the bench batch."""

    feeds: dict[str, np.ndarray]
    threads: int = 0
    repeats: int = 30
    budget_s: float = 60.0
    profile_runs: int = 10
    resource: str | None = None  # a Ray resource: measure on the machine that declares it (graphprune.cluster)

    def describe(self) -> dict:
        import onnxruntime as ort

        out = {"provider": "CPUExecutionProvider", "graph_optimization": "all", "threads": self.threads or "default",
               "inputs": {k: list(v.shape) for k, v in self.feeds.items()}, "onnxruntime": ort.__version__}
        if self.resource:
            out["machine"] = f"the Ray node with resource {self.resource!r}"
        return out

    def measure(self, kind: str, paths: list[str], *args, **kwargs):
        """`measure(kind, ...)` here, or on the machine that declares `resource`."""
        if self.resource:
            from graphprune.cluster import measure_on

            return measure_on(self.resource, kind, paths, *args, **kwargs)
        return measure(kind, paths, *args, **kwargs)

    def latencies(self, paths: list[str], repeats: int | None = None, budget_s: float | None = None) -> list[dict]:
        """graphprune.bench.latencies with these settings."""
        return self.measure("latencies", paths, self.feeds, repeats=repeats or self.repeats, threads=self.threads,
                            budget_s=budget_s or self.budget_s)

    def node_times(self, path: str) -> dict:
        return self.measure("node_times", [path], self.feeds, runs=self.profile_runs, threads=self.threads)


def measure(kind: str, paths: list[str], *args, **kwargs):
    """bench.latencies(paths, ...), profile.node_times(paths[0], ...) or
    bench.bench(paths[0], paths[1], ...), by `kind`."""
    from graphprune import bench, profile

    if kind == "latencies":
        return bench.latencies(paths, *args, **kwargs)
    if kind == "node_times":
        return profile.node_times(paths[0], *args, **kwargs)
    return bench.bench(paths[0], paths[1], *args, **kwargs)


def cache_dir() -> str:
    return os.environ.get("GRAPHPRUNE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "graphprune")


def structure_key(model: ir.Model, settings: LatencySettings, extra: str) -> str:
    """A hash of what latency depends on: ops, attributes and shapes, session settings,
    this machine's CPU; not the weights' values."""
    import platform

    h = hashlib.sha256()
    for node in model.graph:
        h.update(node.op_type.encode())
        h.update(repr(sorted((k, str(a.value)) for k, a in node.attributes.items())).encode())
        for v in node.inputs:
            h.update(repr(None if v is None else shape_of(v)).encode())
    h.update(json.dumps(settings.describe(), sort_keys=True).encode())
    h.update(f"{platform.machine()} {platform.processor()} {os.cpu_count()} {extra} v{VERSION}".encode())
    return h.hexdigest()[:24]


def write_pruned(ctx, plan: dict[int, np.ndarray], path: str) -> None:
    """`ctx.model` with `plan` removed (a copy; the original is untouched), cleaned up and
    written to `path`."""
    from graphprune.context import Context
    from graphprune.pipeline import build_passes
    from graphprune.saving import save_model

    copy = ctx.model.clone()
    sub = Context(copy, flow_options=dict(ctx.flow_options), quiet=True)
    sub.plan = {gid: np.asarray(u) for gid, u in plan.items() if len(u)}
    for p in build_passes(sub, ["remove", "cleanup"]):
        if p.kind == "remove":
            sub._analysis = ctx.analysis()  # the same graph: group ids line up
        p(copy)
    save_model(copy, path)


@dataclass
class LatencyTable:
    nodes: dict[str, dict] = field(default_factory=dict)  # name -> {"points": [[ratio, ms]], "off": factor}
    other: list = field(default_factory=list)  # [MAC ratio, ms] of nodes ORT added (not in the graph)
    dense_profile_ms: float = 1.0  # the dense model's node times, summed
    dense_wall_ms: float = 0.0
    block: int = 1
    cached: bool = False

    # -- prediction ---------------------------------------------------------------------
    def predict_ms(self, plan_info) -> float:
        """Predicted wall milliseconds of the model with a plan (`plan_info`: PlanInfo)."""
        total = _at(self.other, plan_info.mac_ratio) if self.other else 0.0
        for name, entry in self.nodes.items():
            keys = plan_info.node_keys.get(name)
            r = plan_info.ratio(keys) if keys else 1.0
            pts = entry["points"]
            t = _at(pts, r)
            if entry["off"] != 1.0 and keys and plan_info.off_block(keys, self.block):
                t *= entry["off"]
            total += t
        return total / self.dense_profile_ms * self.dense_wall_ms

    def unit_ms(self, analysis, node_keys: dict[str, list]) -> dict[int, np.ndarray]:
        """Group id -> milliseconds each unit's removal saves, linearised at the dense model."""
        out = {g.id: np.zeros(g.n_units) for g in analysis.groups}
        owner = analysis.cost.owner
        for name, entry in self.nodes.items():
            dense = _at(entry["points"], 1.0)
            for key in node_keys.get(name, ()):
                if key in owner:
                    gid, counts = owner[key]
                    out[gid] += counts * dense / analysis.cost.sizes[key]
        # The time of nodes ORT added (or renamed past recognition) follows the MACs.
        other = _at(self.other, 1.0) if self.other else 0.0
        total_macs = analysis.cost.totals().macs
        if other and total_macs:
            for g in analysis.groups:
                out[g.id] += g.macs_per_unit * other / total_macs
        scale = self.dense_wall_ms / self.dense_profile_ms
        return {gid: v * scale for gid, v in out.items()}

    def to_json(self) -> dict:
        return {"version": VERSION, "nodes": self.nodes, "other": self.other,
                "dense_profile_ms": self.dense_profile_ms, "dense_wall_ms": self.dense_wall_ms, "block": self.block}

    @classmethod
    def from_json(cls, d: dict) -> "LatencyTable":
        if d.get("version") != VERSION:
            raise ValueError("another version")
        return cls(d["nodes"], d["other"], d["dense_profile_ms"], d["dense_wall_ms"], d["block"], cached=True)


def _capped(points: list[list[float]]) -> list[list[float]]:
    """[ratio, ms] points in order of the ratio, each time capped as `_non_decreasing` says."""
    return [[r, t] for (r, _), t in zip(points, _non_decreasing([t for _, t in points]))]


def _non_decreasing(ys: list[float]) -> list[float]:
    """Each time capped by every time at more work (ys in order of the work): a kernel does
    not get slower with less work, so a point above a larger one is noise. The dense point,
    the last, stays as measured."""
    return [float(v) for v in np.minimum.accumulate(np.asarray(ys, float)[::-1])[::-1]]


def _at(points: list[list[float]], ratio: float) -> float:
    """A node's milliseconds at a work ratio: linear between measured points, toward zero
    below the smallest (a layer cut to a few channels costs less than at a quarter)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if ratio < xs[0] and xs[0] > 0:
        return float(ys[0] * max(ratio, 0.0) / xs[0])
    return float(np.interp(ratio, xs, ys))


class PlanInfo:
    """The kept fraction of every grouped axis under a plan, as the table reads it."""

    def __init__(self, analysis, node_keys: dict[str, list], masks: dict[int, np.ndarray]):
        self.analysis, self.node_keys, self.masks = analysis, node_keys, masks
        cost = analysis.cost
        self.mac_ratio = cost.totals(masks).macs / max(cost.totals().macs, 1e-9)

    def ratio(self, keys) -> float:
        return self.analysis.cost.ratio(keys, self.masks)

    def off_block(self, keys, block: int) -> bool:
        owner, sizes = self.analysis.cost.owner, self.analysis.cost.sizes
        for k in keys:
            own = owner.get(k)
            if own is None or own[0] not in self.masks or sizes[k] % block:
                continue
            kept = sizes[k] - own[1] @ self.masks[own[0]]
            if round(kept) % block:
                return True
        return False


def node_keys(model: ir.Model, analysis) -> dict[str, list]:
    """ONNX Runtime node name -> the axes its time runs over: a MAC node's MAC axes, any
    other node's first output axes. ORT keeps node names, except that its NCHWc layout
    names a node after its output (`<output>_nchwc`); a fused activation or Add then
    stands for the convolution it ends, whose axes it takes."""
    macs: dict[str, list] = {}
    for name, _, ks in analysis.cost.terms:
        if name:
            macs.setdefault(name, []).extend(ks)
    producer = {v.name: n for n in model.graph for v in n.outputs if v.name}

    def own(node) -> list:
        if node.name in macs:
            return macs[node.name]
        out = node.outputs[0] if node.outputs else None
        rank = len(shape_of(out) or ()) if out is not None else 0
        return [(out.name, a) for a in range(rank)] if out is not None and out.name else []

    def fused(node) -> list:
        n = node
        for _ in range(4):  # Conv -> BatchNormalization/Add -> Relu: what ORT fuses
            if n.name in macs:
                return macs[n.name]
            src = n.inputs[0] if n.inputs else None
            n = producer.get(src.name) if src is not None and src.name else None
            if n is None:
                break
        return own(node)

    keys: dict[str, list] = {}
    for node in model.graph:
        if node.name:
            keys[node.name] = own(node)
        for out in node.outputs:
            if out.name:
                keys.setdefault(f"{out.name}_nchwc", fused(node))
    return keys


def measure_table(ctx, settings: LatencySettings, uniform: Callable[[float, bool], dict], block: int,
                  key_extra: str = "", progress: Callable[[str], None] | None = None) -> LatencyTable:
    """The table for `ctx.model` (cached). `uniform(kept_fraction, off_block)` gives the
    plan that keeps that fraction of every candidate group (on the block, or one unit off
    it)."""
    from graphprune.context import unit_masks

    analysis = ctx.analysis()
    key = structure_key(ctx.model, settings, f"{key_extra} block={block}")
    path = os.path.join(cache_dir(), "latency", f"{key}.json")
    try:
        with open(path, encoding="utf-8") as f:
            return LatencyTable.from_json(json.load(f))
    except (OSError, ValueError, KeyError):
        pass
    keys = node_keys(ctx.model, analysis)
    points: dict[str, list] = {}
    other: list[list[float]] = []  # [MAC ratio, ms] of the nodes ORT added (layout reorders)
    dense_profile = 0.0
    off_times: dict[str, float] = {}
    off_ratio: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dense_path = os.path.join(tmp, "dense.onnx")
        write_pruned(ctx, {}, dense_path)
        wall = settings.latencies([dense_path], max(5, settings.repeats // 2), settings.budget_s / 4)[0]["median"]
        for frac, off in [(1.0, False), *[(f, False) for f in FRACTIONS], (0.5, True)]:
            if progress:
                progress(f"latency table: profiling kept={frac:g}{' off-block' if off else ''}")
            plan = uniform(frac, off) if frac < 1.0 else {}
            info = PlanInfo(analysis, keys, unit_masks(analysis.groups, plan))
            p = os.path.join(tmp, "profiled.onnx")
            if frac < 1.0:
                write_pruned(ctx, plan, p)
            times = settings.node_times(dense_path if frac == 1.0 else p)
            if frac == 1.0:
                dense_profile = sum(t["ms"] for t in times.values())
            if not off:
                other.append([info.mac_ratio, sum(t["ms"] for name, t in times.items() if name not in keys)])
            for name, t in times.items():
                if name not in keys:
                    continue
                r = info.ratio(keys[name])
                if off:
                    off_times[name], off_ratio[name] = t["ms"], r
                else:
                    points.setdefault(name, []).append([r, t["ms"]])
    nodes = {}
    for name, pts in points.items():
        pts = sorted(pts)
        merged: list[list[float]] = []  # equal ratios (a node no plan touches): their median
        for r, t in pts:
            if merged and abs(merged[-1][0] - r) < 1e-9:
                merged[-1][1].append(t)
            else:
                merged.append([r, [t]])
        pts = _capped([[r, float(np.median(ts))] for r, ts in merged])
        off = 1.0
        if name in off_times:
            base = _at(pts, off_ratio[name])
            if base > 0:
                off = float(np.clip(off_times[name] / base, 0.5, 4.0))
        nodes[name] = {"points": pts, "off": off}
    table = LatencyTable(nodes, _capped(sorted(other)), dense_profile or 1e-9, wall * 1e3, block)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(table.to_json(), f)
        os.replace(tmp_path, path)
    except OSError:
        pass  # a cache that cannot be written is only slower next time
    return table
