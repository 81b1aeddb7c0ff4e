"""wanda-sp: structured Wanda, sum |weight column| x L2 norm of the input. Needs --calib."""

from __future__ import annotations

import numpy as np

from graphprune.passes.activation_base import ActivationCriterion
from graphprune.registry import register


@register
class WandaSP(ActivationCriterion):
    name = "wanda-sp"
    summary = "sum |weight column| x L2 norm of the input (structured Wanda; needs --calib)"

    def per_position(self, st, cols):
        return np.abs(cols).sum(1) * st.l2
