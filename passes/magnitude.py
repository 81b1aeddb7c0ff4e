"""l1 / l2: magnitude criteria. A unit's score is the sum over its weight slices of
|w|^p (p = 1 or 2), combined over the group's member layers and normalized per group.

By default the producer's rows ('out'), the consumers' columns ('in') and the scales of
BatchNorm-like layers ('bn_scale', |gamma|^p) count, averaged over the members, as in
Torch-Pruning's group magnitude importance; `roles=out` scores the producer alone.
"""

from __future__ import annotations

import onnx_ir as ir

from graphprune.registry import PrunePass, register
from graphprune.scoring import combine, normalize, per_unit, position_norms, weight_slices


class _Magnitude(PrunePass):
    kind = "score"
    p = 1.0
    options = {"reduce": "mean", "normalize": "mean", "roles": "out+in+bn_scale"}

    def run(self, model: ir.Model) -> bool:
        analysis = self.ctx.analysis()
        roles = tuple(self.opts["roles"].split("+"))
        inits = model.graph.initializers
        for g in analysis.groups:
            if g.n_units == 0:
                continue
            parts = [per_unit(g, key, position_norms(arr, key[1], self.p))
                     for key, arr in weight_slices(g, inits, roles)]
            raw = combine(parts, self.opts["reduce"], g.n_units)
            self.ctx.scores[g.id] = normalize(raw, self.opts["normalize"])
        self.ctx.score_name = self.name
        self.stats = {"groups_scored": len(self.ctx.scores)}
        return False


@register
class L1Pass(_Magnitude):
    name = "l1"
    summary = "magnitude criterion, sum of |w| over each unit's weight slices"
    p = 1.0


@register
class L2Pass(_Magnitude):
    name = "l2"
    summary = "magnitude criterion, sum of w^2 over each unit's weight slices"
    p = 2.0
