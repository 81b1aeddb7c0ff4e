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
from graphprune.scoring import ScorePass, magnitude_parts, per_unit


class ActivationCriterion(ScorePass):
    needs_reducer = False

    def per_position(self, stats, cols: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, model: ir.Model, groups) -> None:
        self.inits = model.graph.initializers
        self.found = {g.id: consumers(g, model) for g in groups}
        requests = {}
        for g in groups:
            for c in self.found[g.id]:
                req = requests.setdefault(c.data.name, Request(c.axis))
                if self.needs_reducer:
                    self.add_reducer(req, g, c, self.inits)
        self.act = self.ctx.activation_stats(requests, self.name)
        self.stats.update({"groups_magnitude_fallback": 0, "tensors_watched": len(requests)})

    def parts(self, g):
        parts = [self.unit_scores(g, c, self.act[c.data.name], c.columns(self.inits[c.key[0]].const_value.numpy()))
                 for c in self.found[g.id]]
        if not parts:
            self.stats["groups_magnitude_fallback"] += 1
            parts = magnitude_parts(g, self.inits)
        return parts

    def unit_scores(self, g, c, st, cols) -> np.ndarray:
        return per_unit(g, c.key, self.per_position(st, cols))

    def add_reducer(self, req, g, c, inits) -> None:
        pass
