"""The base of the calibration-aware criteria (fluctuation.py, wanda_sp.py, act_norm.py,
amp.py): scores from activation statistics at the consumer side of each group, combined
over the group's consumers as the magnitude criteria are.

For input channel j of a consumer with weight columns W[:, j] (everything the channel
feeds) and activation x_j over the calibration data:

- `ifv`      var(x_j)                                   (FLAP's input feature variance)
- `wifv`     var(x_j) * sum W[:, j]^2                   (FLAP's fluctuation metric)
- `wifn`     mean |W[:, j]| * sqrt(mean x_j^2)          (FLAP's weighted input feature norm)
- `wanda-sp` sum |W[:, j]| * ||x_j||_2                  (Wanda, structured)
- `act-norm` ||x_j||_2
- `amp`      mean over positions of || x_U W[U, :] ||_1  (a unit's contribution through the
             consumer, AMP's projection score for heads; U = the unit's columns)

Groups without a supported consumer (depthwise convs) are scored by L1 magnitude, and
counted in the pass's stats. `groups=heads` (or `channels`) scores only the groups of that
kind and leaves the others' scores as they are, so two criteria can share the work:
`--pass amp:groups=heads --pass wifv:groups=channels`. Needs calibration data (--calib).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.activations import Request
from graphprune.consumers import consumers
from graphprune.registry import PrunePass
from graphprune.scoring import combine, magnitude_parts, normalize, per_unit


def check_groups(name: str, which: str) -> str:
    """The `groups=` option of a criterion: all, heads or channels."""
    if which not in ("all", "heads", "channels"):
        from graphprune.errors import BadInput

        raise BadInput(f"{name}: groups must be all, heads or channels, not {which!r}")
    return which


def name_scores(ctx, name: str, which: str) -> None:
    """Record who scored: a criterion for one kind of group joins the earlier one's name."""
    prev = ctx.score_name
    ctx.score_name = name if which == "all" or not prev else f"{prev}+{name}"


class _ActivationCriterion(PrunePass):
    kind = "score"
    options = {"reduce": "mean", "normalize": "mean", "groups": "all"}
    needs_reducer = False

    def per_position(self, stats, cols: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, model: ir.Model) -> bool:
        analysis = self.ctx.analysis()
        inits = model.graph.initializers
        which = check_groups(self.name, self.opts["groups"])
        mine = [g for g in analysis.groups if g.n_units and which in ("all", g.kind)]
        found = {g.id: consumers(g, model) for g in mine}
        requests = {}
        for gid, cons in found.items():
            for c in cons:
                req = requests.setdefault(c.data.name, Request(c.axis))
                if self.needs_reducer:
                    self.add_reducer(req, analysis.groups[gid], c, inits)
        stats = self.ctx.activation_stats(requests, self.name)
        fallback = 0
        for g in mine:
            parts = []
            for c in found.get(g.id, []):
                cols = c.columns(inits[c.key[0]].const_value.numpy())
                parts.append(self.unit_scores(g, c, stats[c.data.name], cols))
            if not parts:
                fallback += 1
                parts = magnitude_parts(g, inits)
            raw = combine(parts, self.opts["reduce"], g.n_units)
            self.ctx.scores[g.id] = normalize(raw, self.opts["normalize"])
        name_scores(self.ctx, self.name, which)
        self.stats = {"groups_scored": len(mine), "groups_magnitude_fallback": fallback,
                      "tensors_watched": len(requests)}
        return False

    def unit_scores(self, g, c, st, cols) -> np.ndarray:
        return per_unit(g, c.key, self.per_position(st, cols))

    def add_reducer(self, req, g, c, inits) -> None:
        pass
