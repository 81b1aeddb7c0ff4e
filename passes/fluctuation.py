"""FLAP's fluctuation criteria: ifv (input feature variance), wifv (variance x squared
weight column norm) and wifn (mean |weight column| x input RMS). Needs --calib."""

from __future__ import annotations

import numpy as np

from graphprune.passes.activation_base import ActivationCriterion
from graphprune.registry import register
from graphprune.scoring import position_norms


@register
class IFV(ActivationCriterion):
    name = "ifv"
    summary = "input feature variance at the consumers (FLAP's IFV; needs --calib)"

    def per_position(self, st, cols):
        return st.var


@register
class WIFV(ActivationCriterion):
    name = "wifv"
    summary = "fluctuation: input variance x squared weight column norm (FLAP's WIFV; needs --calib)"

    def per_position(self, st, cols):
        # In slices: a consumer can be a gigabyte LM head, memory-mapped.
        return st.var * position_norms(cols, 0, 2.0)


@register
class WIFN(ActivationCriterion):
    name = "wifn"
    summary = "mean |weight column| x RMS of the input (FLAP's WIFN; needs --calib)"

    def per_position(self, st, cols):
        return position_norms(cols, 0, 1.0) / max(cols.shape[1], 1) * np.sqrt(st.sq_sum / max(st.count, 1.0))
