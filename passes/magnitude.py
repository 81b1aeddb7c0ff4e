"""l1 / l2: magnitude criteria. A unit's score is the sum over its weight slices of
|w|^p (p = 1 or 2), combined over the group's member layers and normalized per group.

By default the producer's rows ('out'), the consumers' columns ('in') and the scales of
BatchNorm-like layers ('bn_scale', |gamma|^p) count, averaged over the members, as in
Torch-Pruning's group magnitude importance; `roles=out` scores the producer alone.
"""

from __future__ import annotations

from graphprune.registry import register
from graphprune.scoring import WeightScorePass, magnitude_parts


class _Magnitude(WeightScorePass):
    p = 1.0

    def parts(self, g):
        return magnitude_parts(g, self.inits, self.roles, self.p)


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
