"""compensate: put back what the removed input channels contributed to their consumers.

method=bias (FLAP, the default): the mean contribution of every removed input channel.

For each consumer of a pruned group and each removed input channel j, W[:, j] * mean(x_j)
(mean over the calibration data) is added to the consumer's bias, which is created where
there is none (a Conv or Gemm bias input; a MatMul's following Add, or a new Add). The
result is exact when the removed channel is constant on the data. For a convolution the
added value is the full kernel sum, which is what an interior pixel loses; at a border
with zero padding part of the kernel sees padding, so there the correction is too large
by the padded taps (exact for convolutions without padding).

method=lsq: refit each consumer's kept weights and bias so that its outputs on the
calibration data match the dense ones in the least-squares sense, from the Gram matrix of
[x, 1] (the classic channel-pruning reconstruction; exact when a removed channel is an
affine combination of kept ones). MatMul/Gemm use the activation rows; a 2-D convolution
(no groups) uses its input patches at `patches` sampled output positions per sample
(graphprune.patches), zero padding included, so it is exact there too when a removed
channel is a linear combination of kept ones. Consumers with more than `max_channels`
inputs (times the kernel size for a convolution), and others, get the bias method.

method=scale: the same fit with far fewer unknowns: one scale per kept input channel (all
of a convolution channel's taps share it) and the bias, so that the consumer's outputs
match the dense ones in the least-squares sense (the "mask tuning" of post-training
transformer pruning). A full refit has kept x outputs unknowns and overfits a few
thousand tokens; this has kept ones. Exact where a removed channel's contribution is a
multiple of a kept one's plus a constant, and where it is a constant (all scales 1).
Needs --calib. Nothing changes here: the new weights and bias deltas wait in
`ctx.pending` (graphprune.edits) until `remove` applies them, so the model stays dense
for every pass before it.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.activations import Request
from graphprune.bias import out_axis
from graphprune.consumers import consumers
from graphprune.errors import BadInput
from graphprune.lstsq import ridge_solve
from graphprune.patches import conv_geometry, patch_gram
from graphprune.registry import PrunePass, register


@register
class BiasCompensationPass(PrunePass):
    name = "compensate"
    kind = "compensate"
    summary = "add removed channels' mean contribution to the consumers' biases (FLAP; needs --calib)"
    options = {"method": "bias", "max_channels": 2048, "ridge": 1e-6, "patches": 64}

    def run(self, model: ir.Model) -> bool:
        if self.opts["method"] not in ("bias", "lsq", "scale"):
            raise BadInput(f"compensate: method must be bias, lsq or scale, not {self.opts['method']!r}")
        if int(self.opts["patches"]) < 1:
            raise BadInput(f"compensate: patches must be at least 1, not {self.opts['patches']}")
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
        lsq = self.opts["method"] in ("lsq", "scale")

        def fits(c):
            return (lsq and c.node.op_type in ("MatMul", "Gemm") and c.axis == len(c.data.shape) - 1
                    and c.data.shape[c.axis] <= self.opts["max_channels"])

        def conv_fits(c):
            if not lsq or c.key[1] != 1:
                return None
            geo = conv_geometry(c.node, inits[c.key[0]].const_value.shape)
            width = inits[c.key[0]].const_value.shape[1] * geo.kernel[0] * geo.kernel[1] if geo else 0
            return geo if geo is not None and width <= self.opts["max_channels"] else None

        requests = {}
        for _, _, c, _ in todo:
            req = requests.setdefault(c.data.name, Request(c.axis))
            req.gram = req.gram or fits(c)
            geo = conv_fits(c)
            if geo is not None:
                req.raw[f"patches:{c.node.name}"] = patch_gram(geo, int(self.opts["patches"]))
        stats = self.ctx.activation_stats(requests, f"compensate:{self.opts['method']}")
        pending, deltas, refits = self.ctx.pending, [], 0
        for g, units, c, axis in todo:
            rows = g.positions(c.key, units)
            gram = stats[c.data.name].gram if fits(c) else stats[c.data.name].extra.get(f"patches:{c.node.name}")
            if gram is not None:  # a patch Gram exists only where conv_fits asked for one
                delta = self._refit(model, c, axis, rows, gram)
                if delta is not None:
                    pending.add_bias(c.node, delta, (c.key[0], axis))
                    deltas.append(delta)
                    refits += 1
                    continue
            w = inits[c.key[0]].const_value.numpy().astype(np.float64)
            cols = c.columns(w)[rows]                       # (removed inputs, everything else)
            contrib = stats[c.data.name].mean[rows] @ cols  # summed over removed inputs
            moved = np.moveaxis(w, c.key[1], 0).shape[1:]   # weight shape without the in axis
            out_pos = axis if axis < c.key[1] else axis - 1
            delta = np.moveaxis(contrib.reshape(moved), out_pos, 0).reshape(moved[out_pos], -1).sum(1)
            pending.add_bias(c.node, delta, (c.key[0], axis))
            deltas.append(delta)
        self.stats = {"consumers_compensated": len(deltas), "least_squares_refits": refits}
        report = self.ctx.report.setdefault("compensation", [])
        report.append({"method": self.opts["method"], "consumers": len(deltas), "refits": refits,
                       "max_abs_delta": float(max((np.abs(d).max() for d in deltas), default=0.0))})
        return False

    def _refit(self, model, c, axis, removed, gram):
        """Refit the kept inputs of a (in, out) weight, or of a (O, C, kh, kw) kernel over
        its flattened C*kh*kw patch, and the bias; returns the bias delta. method=scale
        fits one factor per kept input channel instead of its whole column."""
        value = model.graph.initializers[c.key[0]]
        w = value.const_value.numpy()
        if len(list(value.uses())) != 1:
            return None
        if w.ndim == 2 and axis == 1 - c.key[1]:
            cols = c.columns(w).astype(np.float64)             # (in, out)
            flat_removed, taps = np.asarray(removed), 1
        elif w.ndim == 4 and c.key[1] == 1 and axis == 0:
            cols = w.reshape(w.shape[0], -1).T.astype(np.float64)  # (C*kh*kw, O)
            taps = w.shape[2] * w.shape[3]
            flat_removed = (np.asarray(removed)[:, None] * taps + np.arange(taps)).reshape(-1)
        else:
            return None
        if cols.shape[0] != gram.shape[0] - 1 or gram[-1, -1] < 1:  # no rows seen: nothing to fit
            return None
        n_in = cols.shape[0]
        keep = np.setdiff1d(np.arange(n_in), flat_removed)
        if self.opts["method"] == "scale":
            new_cols, delta = self._scales(cols, keep, taps, gram)
        else:
            new_cols, delta = self._columns(cols, keep, gram)
        if w.ndim == 4:
            new = new_cols.T.reshape(w.shape)
        else:
            new = np.moveaxis(new_cols.reshape(np.moveaxis(w, c.key[1], 0).shape), 0, c.key[1])
        self.ctx.pending.set_weight(value, new)
        return delta

    def _columns(self, cols, keep, gram):
        """Least squares over the kept rows of `cols` (in, out) and the bias."""
        n_in = cols.shape[0]
        idx = np.concatenate([keep, [n_in]])                   # kept inputs and the constant column
        full = np.vstack([cols, np.zeros((1, cols.shape[1]))])  # the bias is added after: target x W
        sol = ridge_solve(gram[np.ix_(idx, idx)], gram[idx] @ full, self.opts["ridge"])  # (kept + 1, out)
        new_cols = cols.copy()
        new_cols[keep] = sol[:-1]
        return new_cols, sol[-1]

    def _scales(self, cols, keep, taps, gram):
        """One factor s per kept input channel (its `taps` consecutive rows of `cols`).
        With C the input covariance and P = (cols colsᵀ) ⊙ C, the output error of the
        centred data is rᵀ P r with r = E s - 1 (E maps kept rows to their channel, zero
        on removed rows): the normal equations are EᵀPE s = EᵀP 1. The bias then puts
        back the mean: delta = colsᵀ (mean ⊙ (1 - E s))."""
        n = gram[-1, -1]
        mean = gram[:-1, -1] / n
        cov = gram[:-1, :-1] / n - np.outer(mean, mean)
        p = (cols @ cols.T) * cov
        channels = keep[::taps] // taps if taps > 1 else keep
        e = np.zeros((cols.shape[0], len(channels)))
        e[keep, np.repeat(np.arange(len(channels)), taps)] = 1.0
        s = ridge_solve(e.T @ p @ e, e.T @ p.sum(1), self.opts["ridge"], prior=1.0)  # shrunk towards 1
        factor = e @ s
        new_cols = cols * factor[:, None]
        return new_cols, cols.T @ (mean * (1.0 - factor))
