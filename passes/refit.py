"""refit: sequential least-squares reconstruction, after removal.

`compensate:method=lsq` fits each consumer on the dense model's inputs, as if the layers
before it were not pruned. Here the consumers are refit one at a time in graph order, on
the inputs they get in the pruned model (with every earlier layer already refit), to
reproduce the outputs they had in the dense model:

    min over W', c of  sum over calibration positions || x' W' + c - x W ||^2  (+ ridge)

x: the consumer's input in the dense model, W its dense weight; x': the same tensor in
the pruned model, W' the kept weight. The solution needs only [x', 1]^T [x', 1] and
[x', 1]^T (x W), accumulated batch by batch from the two models run side by side on the
same data, so errors of earlier layers are corrected rather than compounded (the classic
channel-pruning reconstruction). MatMul/Gemm use the activation rows; a 2-D convolution
uses patches at `patches` sampled output positions per image, the same positions in both
models. Consumers wider than `max_channels` (times the kernel size) are left as they are.
One pass over `samples` calibration samples per layer (default 0: all of them; a fit on few
rows overfits, and with text batched by length the first samples are the shortest).
Needs --calib. A `repair` pass: it runs after `remove`, on the pruned model, against the
dense model that `remove` kept (graphprune.context.Removal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from graphprune.bias import BiasUpdate, apply as apply_bias, current_bias, out_axis
from graphprune.consumers import consumers
from graphprune.errors import BadInput
from graphprune.initializers import set_data
from graphprune.lstsq import ridge_solve
from graphprune.patches import ConvGeometry, conv_geometry, patches_at, sample_positions
from graphprune.progress import Progress
from graphprune.registry import PrunePass, register
from graphprune.runtime import run_on


@dataclass
class _Layer:
    node: str                  # consumer node name
    data: str                  # its input activation
    axis: int                  # the activation's channel axis
    out_key: tuple[str, int]   # weight axis of the output channels (dense names)
    dense_cols: np.ndarray     # (inputs [x taps], outputs) of the dense weight
    dense_bias: np.ndarray     # (outputs,), zeros where there is none
    geo: ConvGeometry | None


@register
class RefitPass(PrunePass):
    name = "refit"
    kind = "repair"
    summary = ("refit each pruned consumer in graph order on the pruned model's own inputs "
               "to give its dense outputs (sequential least squares; needs --calib)")
    options = {"ridge": 1e-4, "samples": 0, "patches": 64, "max_channels": 2048}

    def run(self, model: ir.Model) -> bool:
        if int(self.opts["patches"]) < 1:
            raise BadInput(f"refit: patches must be at least 1, not {self.opts['patches']}")
        self.ctx.require_calibration("refit")
        removal = self.ctx.require_removal("refit")
        layers = self._layers(removal)
        order = {n.name: (i, n) for i, n in enumerate(model.graph)}
        live = sorted((lay for lay in layers.values() if lay.node in order), key=lambda lay: order[lay.node][0])
        self.stats = {"layers": len(layers), "layers_refit": 0}
        if not live:
            return False
        inputs = {v.name for v in removal.dense.graph.inputs}
        computed = sorted({lay.data for lay in live} - inputs)
        calib = self.ctx.calibration.limited(int(self.opts["samples"]) or None)
        dense, calib = calib.session(removal.dense, computed, "refit") if computed else (None, calib)
        done = 0
        with Progress(f"refit ({len(live)} layers)", len(live), self.ctx.quiet, unit="layers") as progress:
            for lay in live:
                node = order[lay.node][1]
                outs = removal.kept.get(lay.out_key)
                target = lay.dense_cols if outs is None else lay.dense_cols[:, outs]
                a, b = self._moments(model, lay, target, calib, dense)
                progress.update(1)
                if a is None:
                    continue
                sol = ridge_solve(a, b, self.opts["ridge"])      # (kept inputs + 1, outputs)
                self._write(node, lay, sol[:-1])
                dense_bias = lay.dense_bias if outs is None else lay.dense_bias[outs]
                now = _bias(node, len(dense_bias))
                apply_bias(model, [BiasUpdate(node, sol[-1] + dense_bias - now, ("", -1))], {})
                done += 1
        self.stats["layers_refit"] = done
        if done:
            self.ctx.graph_changed()
        return done > 0

    def _layers(self, removal) -> dict[str, _Layer]:
        """The consumers of the removed units, with their dense weights (from the dense model)."""
        dense = removal.dense
        inits = dense.graph.initializers
        layers = {}
        for gid in removal.plan:
            for c in consumers(removal.groups[gid], dense):
                w = inits.get(c.key[0])
                if w is None or c.node.inputs[1] is not w or len(list(w.uses())) != 1:
                    continue
                arr = w.const_value.numpy()
                axis = out_axis(c.node, w)
                geo = conv_geometry(c.node, arr.shape) if c.node.op_type == "Conv" else None
                if arr.ndim == 2 and axis == 1 - c.key[1] and c.node.op_type in ("MatMul", "Gemm"):
                    cols = c.columns(arr)
                elif geo is not None and c.key[1] == 1 and axis == 0:
                    cols = arr.reshape(arr.shape[0], -1).T
                else:
                    continue
                if cols.shape[0] > int(self.opts["max_channels"]) or c.node.name in layers:
                    continue
                layers[c.node.name] = _Layer(c.node.name, c.data.name, c.axis, (w.name, axis),
                                             cols.astype(np.float64), _bias(c.node, cols.shape[1]), geo)
        return layers

    def _moments(self, model, lay, target, calib, dense):
        """[x', 1]^T [x', 1] and [x', 1]^T (x W) over the calibration data."""
        inputs = {v.name for v in model.graph.inputs}
        pruned = None
        if lay.data not in inputs:
            pruned, alone = calib.session(model, [lay.data], "refit")
            calib = alone if alone.batch < calib.batch else calib  # both sessions take batches of 1
        rng = np.random.default_rng(0)
        a = b = None
        for feeds in calib.batches():
            x_d = _fetch(dense, lay.data, feeds)
            x_p = _fetch(pruned, lay.data, feeds)
            if lay.geo is not None:
                pos = sample_positions(x_d.shape[0], lay.geo.out_size(*x_d.shape[2:]), int(self.opts["patches"]), rng)
                r_d, r_p = patches_at(x_d, lay.geo, pos), patches_at(x_p, lay.geo, pos)
            else:
                r_d, r_p = (np.moveaxis(x, lay.axis, -1) for x in (x_d, x_p))
                keep = calib.keep(feeds)
                if keep is not None and r_d.shape[:-1] == keep.shape:
                    r_d, r_p = r_d[keep], r_p[keep]
                r_d, r_p = r_d.reshape(-1, r_d.shape[-1]), r_p.reshape(-1, r_p.shape[-1])
            if r_d.shape[1] != target.shape[0]:
                return None, None
            ones = np.ones((len(r_p), 1), np.float32)
            xp1 = np.hstack([r_p.astype(np.float32), ones])
            y = r_d.astype(np.float32) @ target.astype(np.float32)
            da, db = (xp1.T @ xp1).astype(np.float64), (xp1.T @ y).astype(np.float64)
            a, b = (da, db) if a is None else (a + da, b + db)
        return a, b

    @staticmethod
    def _write(node, lay, cols):
        w = node.inputs[1]
        arr = w.const_value.numpy()
        if lay.geo is not None:
            new = cols.T.reshape(arr.shape)
        else:
            in_axis = 1 - lay.out_key[1]
            new = np.moveaxis(cols.reshape(np.moveaxis(arr, in_axis, 0).shape), 0, in_axis)
        set_data(w, new.astype(arr.dtype))


def _bias(node, n: int) -> np.ndarray:
    """The consumer's bias now (in the node, or its Add for a MatMul); zeros where none."""
    b = current_bias(node)
    return np.zeros(n) if b is None else b.astype(np.float64)


def _fetch(sess, name, feeds) -> np.ndarray:
    if name in feeds:  # a graph input
        return np.asarray(feeds[name])
    return run_on(sess, feeds, [name])[0]
