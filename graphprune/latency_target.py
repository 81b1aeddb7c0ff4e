"""select's latency targets (`latency=0.5`: a fraction of the dense model's latency;
`latency_ms=`): widths chosen on the measured latency table (graphprune.latency), then
the pruned model measured in ONNX Runtime beside the dense one and the goal corrected.

Global scope removes units in order of their score (`ms_power=0`, the default: the order
of a `macs=` target) or of importance per millisecond (the score, shifted to be
non-negative, over the milliseconds the unit's removal saves, linearised at the dense
model, to the power `ms_power`), local scope one uniform ratio; either way the count is
bisected on the table's prediction. Per millisecond is not the default: with scores
normalised per layer the milliseconds decide alone, and on a trained MobileNetV2-shaped
CNN it cut the costly high-resolution layers to their floor and lost 2.6-3.7 points of
top-1 on held-out training images (tools/README.md). Each round then measures the pruned
model and the dense one, interleaved, and moves the goal (graphprune.latency_target.next_goal: by the error, then between the
rounds that bracket the target); the plan whose measurement lands closest to
the target is kept (`rounds`, default 5; a round within `tolerance`, default 3%, stops).
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

from graphprune.context import unit_masks
from graphprune.errors import BadInput
from graphprune.latency import LatencySettings, PlanInfo, measure_table, node_keys, write_pruned


def default_settings(ctx) -> LatencySettings:
    """Random inputs at batch 16 where the pipeline gave none (run_passes on its own)."""
    from graphprune.analysis.cache_io import probe_dims
    from graphprune.probes import graph_input_meta, probe_inputs

    return LatencySettings(probe_inputs(graph_input_meta(ctx.model), batch=16, shapes=ctx.deploy_shapes,
                                        dims=probe_dims(ctx.model)))


def next_goal(tried: list[tuple[float, float]]) -> float:
    """The next predicted-ms goal from the rounds so far ((goal, measured / target) each):
    between the two nearest rounds on either side of the target where there are such,
    else through the last two (a secant), else scaled by the last error; never more than
    a factor of 2 from the last goal."""
    goal, ratio = tried[-1]
    below = [t for t in tried if t[1] < 1.0]
    above = [t for t in tried if t[1] >= 1.0]
    if below and above:
        (g0, r0), (g1, r1) = max(below, key=lambda t: t[1]), min(above, key=lambda t: t[1])
    elif len(tried) >= 2 and (tried[-1][1] - tried[-2][1]) * (tried[-1][0] - tried[-2][0]) > 1e-12:
        (g0, r0), (g1, r1) = tried[-2], tried[-1]  # a secant only where a larger goal measured slower
    else:
        return goal / ratio
    new = g0 + (1.0 - r0) * (g1 - g0) / (r1 - r0)
    return float(np.clip(new, goal / 2, goal * 2))


class LatencyTarget:
    def __init__(self, sel, fraction: float | None, ms: float | None):
        from graphprune.passes.select import ort_channel_block

        self.sel, self.fraction, self.ms = sel, fraction, ms
        ctx = sel.ctx
        self.settings = getattr(ctx, "latency", None) or default_settings(ctx)
        self.analysis = ctx.analysis()
        self.keys = node_keys(ctx.model, self.analysis)
        say = None if ctx.quiet else (lambda line: print(f"graphprune: {line}", file=sys.stderr, flush=True))
        extra = f"cands={sorted(sel.cands)} round_to={sel.round_to} min_keep={sel.opts['min_keep']}"
        self.table = measure_table(ctx, self.settings, self._uniform, ort_channel_block(), extra, say)

    # -- plans --------------------------------------------------------------------------
    def _plan(self, counts: dict[int, int]) -> dict:
        return {gid: self.sel._lowest(gid, k) for gid, k in counts.items() if k > 0}

    def _uniform(self, kept: float, off: bool) -> dict:
        counts = self.sel._local(1.0 - kept)
        if off:  # one unit more, so the kept width leaves the block
            groups = self.analysis.groups
            counts = {gid: k + 1 if k + 1 <= self.sel._cap(gid) and groups[gid].n_units - k > 1 else k
                      for gid, k in counts.items()}
        return self._plan(counts)

    def predict(self, counts: dict[int, int]) -> float:
        masks = unit_masks(self.analysis.groups, self._plan(counts))
        return self.table.predict_ms(PlanInfo(self.analysis, self.keys, masks))

    def _order(self) -> list[int]:
        scores = self.sel.ctx.scores
        floor = min(float(np.min(scores[g][u])) for g, u in self.sel.cands.items())
        saved = self.table.unit_ms(self.analysis, self.keys)
        tiny = 1e-12 * max(float(np.max(v)) for v in saved.values()) + 1e-30
        power = float(self.sel.opts["ms_power"])
        return self.sel._global_order({g: (scores[g] - floor) / np.maximum(saved[g], tiny) ** power
                                       for g in self.sel.cands})

    def solve(self, goal_ms: float) -> dict[int, int]:
        """The counts whose predicted latency is at most goal_ms (or the fewest it allows)."""
        sel = self.sel
        if sel.opts["scope"] == "local":
            lo, hi = 0.0, 1.0
            for _ in range(25):
                mid = (lo + hi) / 2
                lo, hi = (lo, mid) if self.predict(sel._local(mid)) <= goal_ms else (mid, hi)
            return sel._local(hi)
        order = self._order()
        lo, hi = 0, len(order)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.predict(sel._counts_from(order, mid)) <= goal_ms:
                hi = mid
            else:
                lo = mid + 1
        return sel._counts_from(order, lo)

    # -- measured rounds ----------------------------------------------------------------
    def measure(self, counts: dict[int, int], tmp: str) -> tuple[float, float]:
        """(dense ms, pruned ms): medians of interleaved runs, averaged over two session pairs."""
        dense, pruned = os.path.join(tmp, "dense.onnx"), os.path.join(tmp, "pruned.onnx")
        if not os.path.exists(dense):
            write_pruned(self.sel.ctx, {}, dense)
        write_pruned(self.sel.ctx, self._plan(counts), pruned)
        # Two pairs of fresh sessions: the same two files measure a few percent apart from one
        # pair of sessions to the next (memory placement), more than within one pair's runs.
        pairs = [self.settings.latencies([dense, pruned]) for _ in range(2)]
        return (float(np.mean([a["median"] for a, _ in pairs])) * 1e3,
                float(np.mean([b["median"] for _, b in pairs])) * 1e3)

    def reach(self, rounds: int, tolerance: float) -> tuple[dict[int, int], dict]:
        wall = self.table.dense_wall_ms
        goal = self.fraction * wall if self.fraction is not None else self.ms
        floor_ms = self.predict(self.sel._local(1.0))
        record = {"target": {"fraction": self.fraction, "ms": self.ms}, "settings": self.settings.describe(),
                  "table": {"cached": self.table.cached, "nodes": len(self.table.nodes), "dense_ms": round(wall, 4),
                            "block": self.table.block}, "rounds": []}
        best, best_err, tried, at_floor = None, None, [], False
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(max(1, rounds)):
                counts = self.solve(goal)
                predicted = self.predict(counts)
                dense_ms, pruned_ms = self.measure(counts, tmp)
                target_ms = self.ms if self.ms is not None else self.fraction * dense_ms
                err = pruned_ms / target_ms - 1.0
                record["rounds"].append({"goal_ms": round(goal, 4), "predicted_ms": round(predicted, 4),
                                         "dense_ms": round(dense_ms, 4), "measured_ms": round(pruned_ms, 4),
                                         "measured_fraction": round(pruned_ms / dense_ms, 4)})
                if best_err is None or abs(err) < abs(best_err):
                    best, best_err = counts, err
                    record["chosen_round"] = len(record["rounds"]) - 1
                at_floor = predicted <= floor_ms * 1.001 and err > tolerance
                if abs(err) <= tolerance or at_floor or not any(counts.values()) and err < 0:
                    break  # within tolerance, or as far as the constraints go
                tried.append((goal, pruned_ms / target_ms))
                goal = next_goal(tried)
        record["measured_error"] = round(best_err, 4)
        record["groups"] = self._group_lines(best)
        if at_floor:
            line = (f"select: cannot reach the latency target; the smallest these constraints allow measures "
                    f"{record['rounds'][-1]['measured_fraction']:.3f} of the dense model")
            if self.sel.opts["strict"]:
                raise BadInput(line)
            self.sel.ctx.warn(line + ", which was taken")
        elif abs(best_err) > tolerance and any(best.values()):
            chosen = record["rounds"][record["chosen_round"]]
            self.sel.ctx.warn(f"select: the latency target was missed by {best_err:+.1%} after "
                              f"{len(record['rounds'])} measured rounds (the closest measured "
                              f"{chosen['measured_fraction']:.3f} of the dense model, taken): this model's latency "
                              "moves in steps this large, or its timings are this noisy")
        return best, record

    def _group_lines(self, counts: dict[int, int], top: int = 10) -> list[dict]:
        """The groups that cost most, with their dense ms per unit and kept width."""
        saved = self.table.unit_ms(self.analysis, self.keys)
        from graphprune.passes.select import producer_names

        rows = []
        for gid in self.sel.cands:
            g = self.analysis.groups[gid]
            rows.append({"group": gid, "name": sorted(producer_names(g))[0], "units": g.n_units,
                         "kept": g.n_units - counts.get(gid, 0), "ms_per_unit": round(float(saved[gid].mean()), 5)})
        rows.sort(key=lambda r: -r["ms_per_unit"] * r["units"])
        return rows[:top]
