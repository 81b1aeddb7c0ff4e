"""compensate:bias (FLAP): put back the mean contribution of every removed input channel.

For each consumer of a pruned group and each removed input channel j, W[:, j] * mean(x_j)
(mean over the calibration data) is added to the consumer's bias, which is created where
there is none (a Conv or Gemm bias input; a MatMul's following Add, or a new Add). The
result is exact when the removed channel is constant on the data. For a convolution the
added value is the full kernel sum, which is what an interior pixel loses; at a border
with zero padding part of the kernel sees padding, so there the correction is too large
by the padded taps (exact for convolutions without padding). Needs --calib.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.activations import Request
from graphprune.bias import BiasUpdate, out_axis
from graphprune.consumers import consumers
from graphprune.registry import PrunePass, register


@register
class BiasCompensationPass(PrunePass):
    name = "compensate"
    kind = "compensate"
    summary = "add removed channels' mean contribution to the consumers' biases (FLAP; needs --calib)"
    options = {"method": "bias"}

    def run(self, model: ir.Model) -> bool:
        if self.opts["method"] != "bias":
            from graphprune.errors import BadInput

            raise BadInput(f"compensate: method must be bias, not {self.opts['method']!r}")
        analysis = self.ctx.analysis()
        inits = model.graph.initializers
        todo = []
        for gid, units in self.ctx.plan.items():
            g = analysis.groups[gid]
            for c in consumers(g, model):
                weight = c.node.inputs[1] if c.node.inputs[1].name == c.key[0] else None
                axis = out_axis(c.node, weight) if weight is not None else None
                if axis is None:
                    continue
                todo.append((g, units, c, axis))
        stats = self.ctx.activation_stats({c.data.name: Request(c.axis) for _, _, c, _ in todo}, "compensate:bias")
        updates = []
        for g, units, c, axis in todo:
            rows = g.positions(c.key, units)
            w = inits[c.key[0]].const_value.numpy().astype(np.float64)
            cols = c.columns(w)[rows]                       # (removed inputs, everything else)
            contrib = stats[c.data.name].mean[rows] @ cols  # summed over removed inputs
            moved = np.moveaxis(w, c.key[1], 0).shape[1:]   # weight shape without the in axis
            out_pos = axis if axis < c.key[1] else axis - 1
            delta = np.moveaxis(contrib.reshape(moved), out_pos, 0).reshape(moved[out_pos], -1).sum(1)
            updates.append(BiasUpdate(c.node, delta, (c.key[0], axis)))
        self.ctx.bias_updates.extend(updates)
        self.stats = {"consumers_compensated": len(updates)}
        report = self.ctx.report.setdefault("compensation", [])
        report.append({"method": "bias", "consumers": len(updates),
                       "max_abs_delta": float(max((np.abs(u.delta).max() for u in updates), default=0.0))})
        return False
