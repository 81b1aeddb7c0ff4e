"""lamp: layer-adaptive magnitude (Lee et al., 2021), at the granularity of units. The
group's l2 magnitude s (producer rows, consumer columns, norm scales, as `l2` takes them)
is rescaled so that units of different layers can be ranked together: with the units
sorted by s ascending, a unit's score is s_u / (sum of s_v over the units v not smaller
than u). The largest unit of every group scores 1; within a group the order is l2's, so
LAMP differs from l2 only where groups are ranked against each other (`select:scope=global`).
"""

from __future__ import annotations

import numpy as np

from graphprune.registry import register
from graphprune.scoring import WeightScorePass, combine, magnitude_parts


def lamp_scores(s: np.ndarray) -> np.ndarray:
    order = np.argsort(s, kind="stable")
    ranked = s[order]
    tail = np.cumsum(ranked[::-1])[::-1]  # sum over this unit and every larger one
    out = np.empty_like(ranked, dtype=np.float64)
    out[order] = np.divide(ranked, tail, out=np.zeros(len(ranked)), where=tail > 0)
    return out


@register
class LampPass(WeightScorePass):
    name = "lamp"
    summary = "data-free: l2 magnitude rescaled per group by the mass above it (LAMP), for global ranking"
    options = {**WeightScorePass.options, "normalize": "none"}

    def parts(self, g):
        magnitude = combine(magnitude_parts(g, self.inits, self.roles, 2.0), self.opts.get("reduce", "mean"), g.n_units)
        return [lamp_scores(magnitude)]
