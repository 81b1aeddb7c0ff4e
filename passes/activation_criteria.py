"""Calibration-aware criteria: scores from activation statistics at the consumer side of
each group, combined over the group's consumers as the magnitude criteria are.

For input channel j of a consumer with weight columns W[:, j] (everything the channel
feeds) and activation x_j over the calibration data:

- `ifv`      var(x_j)                                   (FLAP's input feature variance)
- `wifv`     var(x_j) * sum W[:, j]^2                   (FLAP's fluctuation metric)
- `wifn`     mean |W[:, j]| * sqrt(mean x_j^2)          (FLAP's weighted input feature norm)
- `wanda-sp` sum |W[:, j]| * ||x_j||_2                  (Wanda, structured)
- `act-norm` ||x_j||_2
- `amp`      mean over positions of || x_U W[U, :] ||_1  (a unit's contribution through the
             consumer, AMP's projection score for heads; U = the unit's columns)

Groups without a supported consumer (depthwise convs) are scored by L1 magnitude, and
counted in the pass's stats. Needs calibration data (--calib).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.activations import Request
from graphprune.consumers import consumers
from graphprune.registry import PrunePass, register
from graphprune.scoring import combine, normalize, per_unit, position_norms, weight_slices


class _ActivationCriterion(PrunePass):
    kind = "score"
    options = {"reduce": "mean", "normalize": "mean"}
    needs_reducer = False

    def per_position(self, stats, cols: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, model: ir.Model) -> bool:
        analysis = self.ctx.analysis()
        inits = model.graph.initializers
        found = {g.id: consumers(g, model) for g in analysis.groups if g.n_units}
        requests = {}
        for gid, cons in found.items():
            for c in cons:
                req = requests.setdefault(c.data.name, Request(c.axis))
                if self.needs_reducer:
                    self.add_reducer(req, analysis.groups[gid], c, inits)
        stats = self.ctx.activation_stats(requests, self.name)
        fallback = 0
        for g in analysis.groups:
            if not g.n_units:
                continue
            parts = []
            for c in found.get(g.id, []):
                cols = c.columns(inits[c.key[0]].const_value.numpy())
                parts.append(self.unit_scores(g, c, stats[c.data.name], cols))
            if not parts:
                fallback += 1
                parts = [per_unit(g, key, position_norms(arr, key[1], 1.0))
                         for key, arr in weight_slices(g, inits, ("out", "in"))]
            raw = combine(parts, self.opts["reduce"], g.n_units)
            self.ctx.scores[g.id] = normalize(raw, self.opts["normalize"])
        self.ctx.score_name = self.name
        self.stats = {"groups_scored": len(self.ctx.scores), "groups_magnitude_fallback": fallback,
                      "tensors_watched": len(requests)}
        return False

    def unit_scores(self, g, c, st, cols) -> np.ndarray:
        return per_unit(g, c.key, self.per_position(st, cols))

    def add_reducer(self, req, g, c, inits) -> None:
        pass


@register
class IFV(_ActivationCriterion):
    name = "ifv"
    summary = "input feature variance at the consumers (FLAP's IFV; needs --calib)"

    def per_position(self, st, cols):
        return st.var


@register
class WIFV(_ActivationCriterion):
    name = "wifv"
    summary = "fluctuation: input variance x squared weight column norm (FLAP's WIFV; needs --calib)"

    def per_position(self, st, cols):
        return st.var * (cols.astype(np.float64) ** 2).sum(1)


@register
class WIFN(_ActivationCriterion):
    name = "wifn"
    summary = "mean |weight column| x RMS of the input (FLAP's WIFN; needs --calib)"

    def per_position(self, st, cols):
        return np.abs(cols).mean(1) * np.sqrt(st.sq_sum / max(st.count, 1.0))


@register
class WandaSP(_ActivationCriterion):
    name = "wanda-sp"
    summary = "sum |weight column| x L2 norm of the input (structured Wanda; needs --calib)"

    def per_position(self, st, cols):
        return np.abs(cols).sum(1) * st.l2


@register
class ActNorm(_ActivationCriterion):
    name = "act-norm"
    summary = "L2 norm of the input channel over the calibration data (needs --calib)"

    def per_position(self, st, cols):
        return st.l2


@register
class AMP(_ActivationCriterion):
    name = "amp"
    summary = "mean L1 norm of each unit's contribution through its consumer (AMP; needs --calib)"
    needs_reducer = True

    def add_reducer(self, req, g, c, inits):
        if c.node.op_type not in ("MatMul", "Gemm"):
            return
        cols = c.columns(inits[c.key[0]].const_value.numpy()).astype(np.float64)
        ids = g.members[c.key]
        units = [np.flatnonzero(ids == u) for u in range(g.n_units)]
        key = f"amp:{g.id}:{c.key[0]}"

        def reduce(rows, units=units, cols=cols):
            return np.array([np.abs(rows[:, p] @ cols[p]).sum() if len(p) else 0.0 for p in units])

        req.reducers[key] = reduce

    def unit_scores(self, g, c, st, cols):
        total = st.extra.get(f"amp:{g.id}:{c.key[0]}")
        if total is None:  # a conv consumer: |x_j| times the column's L1 norm
            return per_unit(g, c.key, st.mean_abs * np.abs(cols).sum(1))
        return total / max(st.count, 1.0)
