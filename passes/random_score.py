"""random: seeded uniform scores, the baseline every criterion must beat."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.registry import PrunePass, register


@register
class RandomPass(PrunePass):
    name = "random"
    kind = "score"
    summary = "seeded random scores (baseline)"
    options = {"seed": 0}

    def run(self, model: ir.Model) -> bool:
        rng = np.random.default_rng(self.opts["seed"])
        for g in self.ctx.analysis().groups:
            self.ctx.scores[g.id] = rng.random(g.n_units)
        self.ctx.score_name = self.name
        self.stats = {"groups_scored": len(self.ctx.scores)}
        return False
