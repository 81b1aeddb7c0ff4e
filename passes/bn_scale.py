"""bn-scale: a unit's score is |gamma| of the normalization layers in its group (the
network-slimming criterion). Groups without a BatchNorm/InstanceNorm/GroupNorm scale are
scored by L1 magnitude instead, and the pass counts them in its statistics.
"""

from __future__ import annotations

import onnx_ir as ir

from graphprune.registry import register
from graphprune.scoring import ScorePass, magnitude_parts


@register
class BNScalePass(ScorePass):
    name = "bn-scale"
    summary = "|gamma| of the BatchNorm scales in each group (L1 where a group has none)"

    def prepare(self, model: ir.Model, groups) -> None:
        self.inits = model.graph.initializers
        self.stats["groups_without_bn"] = 0

    def parts(self, g):
        parts = magnitude_parts(g, self.inits, ("bn_scale",))
        if not parts:
            self.stats["groups_without_bn"] += 1
            parts = magnitude_parts(g, self.inits)
        return parts
