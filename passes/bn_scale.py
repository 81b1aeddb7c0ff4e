"""bn-scale: a unit's score is |gamma| of the normalization layers in its group (the
network-slimming criterion). Groups without a BatchNorm/InstanceNorm/GroupNorm scale are
scored by L1 magnitude instead, and the pass counts them in its statistics.
"""

from __future__ import annotations

import onnx_ir as ir

from graphprune.registry import PrunePass, register
from graphprune.scoring import combine, magnitude_parts, normalize


@register
class BNScalePass(PrunePass):
    name = "bn-scale"
    kind = "score"
    summary = "|gamma| of the BatchNorm scales in each group (L1 where a group has none)"
    options = {"reduce": "mean", "normalize": "mean"}

    def run(self, model: ir.Model) -> bool:
        analysis = self.ctx.analysis()
        inits = model.graph.initializers
        fallback = 0
        for g in analysis.groups:
            if g.n_units == 0:
                continue
            parts = magnitude_parts(g, inits, ("bn_scale",))
            if not parts:
                fallback += 1
                parts = magnitude_parts(g, inits)
            raw = combine(parts, self.opts["reduce"], g.n_units)
            self.ctx.scores[g.id] = normalize(raw, self.opts["normalize"])
        self.ctx.score_name = self.name
        self.stats = {"groups_scored": len(self.ctx.scores), "groups_without_bn": fallback}
        return False
