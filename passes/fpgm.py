"""fpgm: filter pruning via geometric median (He et al., 2019). A unit whose producer rows
lie close to all the others' (near the layer's geometric median) is the most replaceable:
its score is the sum of Euclidean distances from its row to every row of the same weight,
so the units nearest the median score lowest and go first.

Scored on the producer rows (`roles=out`, the paper's filters) by default; `roles=out+in`
adds the consumers' columns. Several member weights of one group are averaged (`reduce`)
and the group normalized (`normalize`), as for the other criteria. Distances are computed
in blocks of rows, so an LLM-sized MLP matrix never needs an n x n matrix at once.
"""

from __future__ import annotations

import numpy as np

from graphprune.registry import register
from graphprune.scoring import WeightScorePass, per_unit, weight_slices


def distance_sums(arr: np.ndarray, axis: int, block: int = 1024) -> np.ndarray:
    """For each position of `axis`: sum of the Euclidean distances from its slice (all
    other axes flattened) to every position's slice."""
    rows = np.moveaxis(np.asarray(arr, dtype=np.float64), axis, 0).reshape(arr.shape[axis], -1)
    sq = (rows * rows).sum(1)
    out = np.empty(len(rows))
    for s in range(0, len(rows), block):
        part = rows[s:s + block]
        d2 = sq[s:s + block, None] + sq[None, :] - 2.0 * part @ rows.T
        out[s:s + block] = np.sqrt(np.maximum(d2, 0.0)).sum(1)
    return out


@register
class FpgmPass(WeightScorePass):
    name = "fpgm"
    summary = "data-free: distance of each unit's producer rows to the others' (geometric median), FPGM"
    options = {**WeightScorePass.options, "roles": "out"}

    def parts(self, g):
        return [per_unit(g, key, distance_sums(arr, key[1])) for key, arr in weight_slices(g, self.inits, self.roles)]
