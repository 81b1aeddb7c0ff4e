"""act-norm: the L2 norm of each input channel over the calibration data. Needs --calib."""

from __future__ import annotations

from graphprune.passes.activation_base import ActivationCriterion
from graphprune.registry import register


@register
class ActNorm(ActivationCriterion):
    name = "act-norm"
    summary = "L2 norm of the input channel over the calibration data (needs --calib)"

    def per_position(self, st, cols):
        return st.l2
