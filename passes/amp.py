"""amp: AMP's projection score, the mean L1 norm of a unit's contribution through its
consumer (for heads: through the output projection). Needs --calib."""

from __future__ import annotations

import numpy as np

from graphprune.passes.activation_base import _ActivationCriterion
from graphprune.scoring import per_unit
from graphprune.registry import register


@register
class AMP(_ActivationCriterion):
    name = "amp"
    summary = "mean L1 norm of each unit's contribution through its consumer (AMP; needs --calib)"
    needs_reducer = True

    def add_reducer(self, req, g, c, inits):
        if c.node.op_type not in ("MatMul", "Gemm"):
            return
        cols = c.columns(inits[c.key[0]].const_value.numpy()).astype(np.float64)
        ids = g.members[c.key]
        units = [np.flatnonzero(ids == u) for u in range(g.n_units)]
        key = f"amp:{g.id}:{c.key[0]}"

        def reduce(rows, units=units, cols=cols):
            return np.array([np.abs(rows[:, p] @ cols[p]).sum() if len(p) else 0.0 for p in units])

        req.reducers[key] = reduce

    def unit_scores(self, g, c, st, cols):
        total = st.extra.get(f"amp:{g.id}:{c.key[0]}")
        if total is None:  # a conv consumer: |x_j| times the column's L1 norm
            return per_unit(g, c.key, st.mean_abs * np.abs(cols).sum(1))
        return total / max(st.count, 1.0)
