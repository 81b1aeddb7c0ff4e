"""amp: AMP's projection score, the mean L1 norm of a unit's contribution through its
consumer (for heads: through the output projection). Needs --calib."""

from __future__ import annotations

import numpy as np

from graphprune.passes.activation_base import ActivationCriterion
from graphprune.scoring import per_unit
from graphprune.registry import register


@register
class AMP(ActivationCriterion):
    name = "amp"
    summary = "mean L1 norm of each unit's contribution through its consumer (AMP; needs --calib)"
    needs_reducer = True

    def add_reducer(self, req, g, c, inits):
        if c.node.op_type not in ("MatMul", "Gemm"):
            return
        cols = c.columns(inits[c.key[0]].const_value.numpy()).astype(np.float64)
        ids = g.members[c.key]
        sizes = np.bincount(ids, minlength=g.n_units)
        blocks = [(u, np.flatnonzero(ids == u)) for u in np.flatnonzero(sizes > 1)]
        single = np.flatnonzero(sizes[ids] == 1)           # positions that are a unit alone
        col_l1 = np.abs(cols[single]).sum(1)
        key = f"amp:{g.id}:{c.key[0]}"

        def reduce(rows, cols=cols):
            out = np.zeros(g.n_units)
            # A one-column unit's contribution x_j W[j, :] has L1 norm |x_j| * ||W[j, :]||_1.
            np.add.at(out, ids[single], np.abs(rows[:, single]).sum(0) * col_l1)
            for u, p in blocks:  # heads: the block's product, then its L1 norm
                out[u] += np.abs(rows[:, p] @ cols[p]).sum()
            return out

        req.reducers[key] = reduce

    def unit_scores(self, g, c, st, cols):
        total = st.extra.get(f"amp:{g.id}:{c.key[0]}")
        if total is None:  # a conv consumer: |x_j| times the column's L1 norm
            return per_unit(g, c.key, st.mean_abs * np.abs(cols).sum(1))
        return total / max(st.count, 1.0)
