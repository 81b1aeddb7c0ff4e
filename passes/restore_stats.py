"""restore-stats: after pruning, give every affected layer back its dense output statistics.

The consumers of pruned channels see fewer inputs, so their outputs drift. With the
calibration data, this pass measures each such output per channel on the dense model
(before `remove`) and again on the pruned one (after), then:

- where a BatchNormalization reads that output, re-estimates its running mean and
  variance (adaptive BN): the BN then normalizes the pruned distribution as it did the
  dense one;
- elsewhere (BN folded into the convolution, or none), folds a per-channel scale and
  shift into the consumer's weights and bias so the pruned output has the dense mean and
  standard deviation.

Layers are corrected one at a time in graph order, each measured after the ones before it
(so the corrections do not fight): one pass over `samples` calibration samples (default
256; 0 = all) per layer. Needs --calib; the calibration data is read more than once (an
.npz, a list or a function that returns an iterable).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.activations import Request, collect
from graphprune.bias import current_bias, out_axis
from graphprune.consumers import consumers
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
    kind = "compensate"
    summary = "re-estimate BatchNorm statistics / restore dense per-channel output mean and std (needs --calib)"
    options = {"eps": 1e-6, "samples": 256}

    def run(self, model: ir.Model) -> bool:
        analysis = self.ctx.analysis()
        targets = {}
        for gid in self.ctx.plan:
            for c in consumers(analysis.groups[gid], model):
                axis = _channel_axis(c.node)
                w = c.node.inputs[1]
                if axis is None or w is None or w.name != c.key[0] or out_axis(c.node, w) is None:
                    continue
                targets[c.node.outputs[0].name] = (c.node, axis)
        dense = self.ctx.activation_stats({n: Request(a) for n, (_, a) in targets.items()}, "restore-stats")
        dense = {n: (s.mean.copy(), np.sqrt(s.var)) for n, s in dense.items()}
        names = {n: (node.name, axis) for n, (node, axis) in targets.items()}
        self.ctx.after_remove.append(lambda m, kept: self._restore(m, kept, names, dense))
        self.stats = {"layers": len(targets)}
        return False

    def _restore(self, model: ir.Model, kept, names, dense) -> dict:
        order = {n.name: i for i, n in enumerate(model.graph)}
        live = sorted(((y, nn, axis) for y, (nn, axis) in names.items() if nn in order), key=lambda t: order[t[1]])
        eps = float(self.opts["eps"])
        calib = self.ctx.calibration.limited(int(self.opts["samples"]) or None)
        bn_done = folded = 0
        # One layer at a time, in graph order: each is measured after the layers before it
        # were corrected, so the corrections do not fight each other.
        for y, node_name, axis in live:
            node = next(n for n in model.graph if n.name == node_name)
            pruned = collect(model, {y: Request(axis)}, calib)
            w = node.inputs[1]
            mu_d, sd_d = dense[y]
            positions = kept.get((w.name, out_axis(node, w)))
            if positions is not None:
                mu_d, sd_d = mu_d[positions], sd_d[positions]
            mu_p, sd_p = pruned[y].mean, np.sqrt(pruned[y].var)
            bn = _bn_reader(node.outputs[0])
            if bn is not None:
                # Adaptive BN: the BN's statistics become those of its (pruned) input.
                for index, arr in ((3, mu_p), (4, pruned[y].var)):
                    v = bn.inputs[index]
                    v.const_value = ir.tensor(arr.astype(v.const_value.numpy().dtype), name=v.name)
                bn_done += 1
                continue
            scale = np.where(sd_p > eps, sd_d / np.maximum(sd_p, eps), 1.0)
            shift = mu_d - scale * mu_p
            self._fold(model, node, scale, shift)
            folded += 1
        return {"bn_reestimated": bn_done, "layers_rescaled": folded}

    @staticmethod
    def _fold(model: ir.Model, node: ir.Node, scale: np.ndarray, shift: np.ndarray) -> None:
        """y -> scale * y + shift per output channel, folded into weights and bias."""
        from graphprune.bias import apply as apply_bias, BiasUpdate

        w = node.inputs[1]
        axis = out_axis(node, w)
        arr = w.const_value.numpy()
        shape = [1] * arr.ndim
        shape[axis] = -1
        new = (arr * scale.reshape(shape)).astype(arr.dtype)
        if len(list(w.uses())) == 1:
            w.const_value = ir.tensor(new, name=w.name)
        else:
            from graphprune.bias import _new_const

            node.replace_input_with(1, _new_const(model.graph, f"{w.name}_rescaled", new))
        # The existing bias is scaled too: b -> scale * b + shift.
        bias = current_bias(node)
        delta = shift + (scale - 1.0) * bias if bias is not None else shift
        apply_bias(model, [BiasUpdate(node, delta, ("", -1))], {})
