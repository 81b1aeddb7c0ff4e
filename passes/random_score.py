"""random: seeded uniform scores, the baseline every criterion must beat."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.registry import register
from graphprune.scoring import ScorePass


@register
class RandomPass(ScorePass):
    name = "random"
    summary = "seeded random scores (baseline)"
    options = {"seed": 0, "groups": "all"}

    def prepare(self, model: ir.Model, groups) -> None:
        self.rng = np.random.default_rng(self.opts["seed"])

    def parts(self, g):
        return [self.rng.random(g.n_units)]
