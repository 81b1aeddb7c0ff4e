"""restore-stats: after pruning, give every affected layer back its dense output statistics.

The consumers of pruned channels see fewer inputs, so their outputs drift. With the
calibration data, this pass measures each such output per channel on the dense model
(as `remove` kept it) and again on the pruned one, then:

- where a BatchNormalization reads that output, re-estimates its running mean and
  variance (adaptive BN): the BN then normalizes the pruned distribution as it did the
  dense one;
- elsewhere (BN folded into the convolution, or none), folds a per-channel scale and
  shift into the consumer's weights and bias so the pruned output has the dense mean and
  standard deviation (`rescale=false` leaves these layers alone: adaptive BN only).

Layers are corrected one at a time in graph order, each measured after the ones before it
(so the corrections do not fight): one pass over `samples` calibration samples (default
256; 0 = all) per layer. Needs --calib; the calibration data is read more than once (an
.npz, a list or a function that returns an iterable). A `repair` pass: it runs after
`remove` (and after `refit`, where both are asked for).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.activations import Request, collect
from graphprune.bias import BiasUpdate, apply as apply_bias, current_bias, out_axis
from graphprune.consumers import consumers
from graphprune.initializers import new_initializer, set_data
from graphprune.progress import Progress
from graphprune.registry import PrunePass, register
from graphprune.shapes import shape_of


def _channel_axis(node: ir.Node) -> int | None:
    y = node.outputs[0]
    rank = len(shape_of(y) or ())
    if node.op_type == "Conv":
        return 1
    if node.op_type in ("MatMul", "Gemm"):
        return rank - 1
    return None


def _bn_reader(y: ir.Value) -> ir.Node | None:
    uses = list(y.uses())
    if len(uses) == 1 and uses[0].node.op_type == "BatchNormalization" and uses[0].idx == 0:
        return uses[0].node
    return None


@register
class RestoreStatsPass(PrunePass):
    name = "restore-stats"
    kind = "repair"
    summary = "re-estimate BatchNorm statistics / restore dense per-channel output mean and std (needs --calib)"
    options = {"eps": 1e-6, "samples": 256, "rescale": True}

    def run(self, model: ir.Model) -> bool:
        self.ctx.require_calibration("restore-stats")
        removal = self.ctx.require_removal("restore-stats")
        targets = {}  # output tensor -> (consumer node name, channel axis, dense output-channel key)
        for gid in removal.plan:
            for c in consumers(removal.groups[gid], removal.dense):
                axis = _channel_axis(c.node)
                w = c.node.inputs[1]
                if axis is None or w is None or w.name != c.key[0] or out_axis(c.node, w) is None:
                    continue
                targets[c.node.outputs[0].name] = (c.node.name, axis, (w.name, out_axis(c.node, w)))
        order = {n.name: (i, n) for i, n in enumerate(model.graph)}
        live = sorted(((y, *t) for y, t in targets.items() if t[0] in order), key=lambda t: order[t[1]][0])
        if not self.opts["rescale"]:
            live = [t for t in live if _bn_reader(order[t[1]][1].outputs[0]) is not None]
        self.stats = {"layers": len(targets), "bn_reestimated": 0, "layers_rescaled": 0}
        if not live:
            return False
        dense = self.ctx.activation_stats({y: Request(axis) for y, _, axis, _ in live}, "restore-stats", dense=True)
        eps = float(self.opts["eps"])
        calib = self.ctx.calibration.limited(int(self.opts["samples"]) or None)
        # One layer at a time, in graph order: each is measured after the layers before it
        # were corrected, so the corrections do not fight each other.
        with Progress(f"restore-stats ({len(live)} layers)", len(live), self.ctx.quiet, unit="layers") as progress:
            for y, node_name, axis, out_key in live:
                node = order[node_name][1]
                pruned = collect(model, {y: Request(axis)}, calib, quiet=True)[y]
                progress.update(1)
                mu_d, sd_d = dense[y].mean, np.sqrt(dense[y].var)
                positions = removal.kept.get(out_key)
                if positions is not None:
                    mu_d, sd_d = mu_d[positions], sd_d[positions]
                bn = _bn_reader(node.outputs[0])
                if bn is not None:
                    # Adaptive BN: the BN's statistics become those of its (pruned) input.
                    for index, arr in ((3, pruned.mean), (4, pruned.var)):
                        v = bn.inputs[index]
                        set_data(v, arr.astype(v.const_value.numpy().dtype))
                    self.stats["bn_reestimated"] += 1
                    continue
                sd_p = np.sqrt(pruned.var)
                scale = np.where(sd_p > eps, sd_d / np.maximum(sd_p, eps), 1.0)
                self._fold(model, node, scale, mu_d - scale * pruned.mean)
                self.stats["layers_rescaled"] += 1
        self.ctx.graph_changed()
        return True

    @staticmethod
    def _fold(model: ir.Model, node: ir.Node, scale: np.ndarray, shift: np.ndarray) -> None:
        """y -> scale * y + shift per output channel, folded into weights and bias."""
        w = node.inputs[1]
        axis = out_axis(node, w)
        arr = w.const_value.numpy()
        shape = [1] * arr.ndim
        shape[axis] = -1
        new = (arr * scale.reshape(shape)).astype(arr.dtype)
        if len(list(w.uses())) == 1:
            set_data(w, new)
        else:
            node.replace_input_with(1, new_initializer(model.graph, f"{w.name}_rescaled", new))
        # The existing bias is scaled too: b -> scale * b + shift.
        bias = current_bias(node)
        delta = shift + (scale - 1.0) * bias if bias is not None else shift
        apply_bias(model, [BiasUpdate(node, delta, ("", -1))], {})
