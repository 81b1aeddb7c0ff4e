"""ablate: an output-aware criterion. Each unit is switched off in turn on calibration
samples and scored by how much the model's outputs move:

    score(u) = sum over outputs o of  ||y_o(without u) - y_o||^2 / ||y_o||^2

(y: the unpruned model's outputs). The unit is switched off by zeroing its positions at
the input of every consumer of its group, which for heads and MLP neurons is what removing
it does to the outputs. Unlike activation statistics this sees what follows the layer
(softmax, LayerNorm, pooling, later layers), at the price of one run of the samples per
unit: `groups=heads` (the default) scores only attention heads, and the other groups keep
the scores of an earlier criterion (`--pass amp --pass ablate`). `samples` calibration
samples are used (default 64); with --calib-mask, output positions where the mask is 0
do not count. Needs --calib.

All masks live in one session: a Mul by a graph input is put in front of each consumer,
and the feeds say which unit is off.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.consumers import consumers
from graphprune.errors import BadInput, first_line
from graphprune.progress import Progress
from graphprune.registry import register
from graphprune.runtime import run_on
from graphprune.scoring import ScorePass


@register
class Ablation(ScorePass):
    name = "ablate"
    summary = "output change when each unit is switched off on calibration samples (needs --calib)"
    options = {"groups": "heads", "samples": 64, "max_units": 4096, "normalize": "mean", "fill": "zero"}

    def parts(self, g):
        raw = self.raw.get(g.id)
        return None if raw is None else [raw]

    def prepare(self, model: ir.Model, groups) -> None:
        if int(self.opts["samples"]) < 1:
            raise BadInput(f"ablate: samples must be at least 1, not {self.opts['samples']}")
        self.ctx.require_calibration("ablate")
        mine = switchable(groups, model)
        units = sum(g.n_units for g, _ in mine)
        if units > int(self.opts["max_units"]):
            raise BadInput(f"ablate: {units} units to switch off one at a time (max_units="
                           f"{self.opts['max_units']}); use groups=heads or raise max_units")
        if self.opts["fill"] not in ("zero", "mean"):
            raise BadInput(f"ablate: fill must be zero or mean, not {self.opts['fill']!r}")
        calib = self.ctx.calibration.limited(int(self.opts["samples"]))
        means = channel_means(self.ctx, mine, "ablate") if self.opts["fill"] == "mean" else None
        self.raw = {}
        with SwitchOff(model, mine, calib, "ablate", means) as switch:
            with Progress("ablation", units, switch.calib.quiet or self.ctx.quiet, unit="units") as progress:
                for g, _ in mine:
                    raw = np.zeros(g.n_units)
                    for u in range(g.n_units):
                        raw[u] = switch.change({g.id: np.array([u])})
                        progress.update(1)
                    self.raw[g.id] = raw
        self.stats.update({"units_ablated": units,
                           "samples": sum(len(next(iter(f.values()))) for f in switch.batches)})


def channel_means(ctx, mine, who: str) -> dict[str, np.ndarray]:
    """Per consumer data tensor of the `switchable` groups: its calibration mean per channel."""
    from graphprune.activations import Request

    requests = {c.data.name: Request(c.axis) for _, cons in mine for c in cons}
    return {name: np.asarray(st.mean, np.float64) for name, st in ctx.activation_stats(requests, who).items()}


def switchable(groups, model: ir.Model) -> list:
    """(group, its consumers whose data input has a known shape) for the groups that have
    any: where a unit can be switched off (exact shapes are inferred where some are missing)."""
    found = [(g, consumers(g, model)) for g in groups]
    if any(c.data.shape is None for _, cons in found for c in cons):
        from graphprune.shapes import infer_exact_shapes

        infer_exact_shapes(model)
    mine = [(g, [c for c in cons if c.data.shape is not None]) for g, cons in found]
    return [(g, cons) for g, cons in mine if cons]


class SwitchOff:
    """Units switched off on calibration samples, in one ONNX Runtime session: a Mul by a
    mask input in front of every consumer of the `switchable` groups. `change(off)` is the
    relative squared change of the outputs (summed over outputs; --calib-mask respected)
    with the units `off` ({group id: unit indices}) switched off. With `means` (consumer
    data tensor name -> per-channel mean), a unit switched off takes its mean instead of
    zero. A context manager: the graph is restored on exit."""

    def __init__(self, model: ir.Model, mine, calib, who: str, means: dict | None = None):
        self.model, self.who, self.calib, self.means = model, who, calib, means
        self.pairs = [(g, c) for g, cons in mine for c in cons]

    def __enter__(self):
        inits = self.model.graph.initializers
        self._masked = _masked(self.model, [(c, inits[c.key[0]].const_value.dtype) for _, c in self.pairs],
                               shift=self.means is not None)
        self.names = self._masked.__enter__()
        try:
            self.sess, self.calib = self.calib.session(self.model, who=self.who, optimize=True)
            self.batches = list(self.calib.batches())
            self.ones = {n: np.ones(_mask_shape(c), np.float32) for (_, c), n in zip(self.pairs, self.names)}
            if self.means is not None:
                self.ones.update({n + "_shift": np.zeros(_mask_shape(c), np.float32)
                                  for (_, c), n in zip(self.pairs, self.names)})
            self.dense = [_run(self.sess, {**f, **self.ones}) for f in self.batches]
            self.keeps = [self.calib.keep(f) for f in self.batches]
            self.energy = [sum(_sq(y, 0.0, k) for y, k in zip(ys, self.keeps)) for ys in zip(*self.dense)]
        except BaseException:
            self._masked.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        return self._masked.__exit__(*exc)

    def change(self, off: dict[int, np.ndarray]) -> float:
        feeds = dict(self.ones)
        for (g, c), n in zip(self.pairs, self.names):
            units = off.get(g.id)
            if units is not None and len(units):
                m = np.ones(_mask_shape(c)[0], np.float32)
                m[g.positions(c.key, units)] = 0.0
                feeds[n] = m.reshape(_mask_shape(c))
                if self.means is not None:
                    shift = (1.0 - m) * self.means[c.data.name]
                    feeds[n + "_shift"] = shift.astype(np.float32).reshape(_mask_shape(c))
        total = 0.0
        for f, ref, keep in zip(self.batches, self.dense, self.keeps):
            got = _run(self.sess, {**f, **feeds})
            total += sum(_sq(a, b, keep) / max(e, 1e-30) for a, b, e in zip(got, ref, self.energy))
        return total


def _sq(a, b, keep) -> float:
    """Sum of squares of a - b; with a --calib-mask, over the kept positions only (where
    the output's leading axes are the mask's)."""
    d = np.asarray(a, np.float64) - b
    if keep is not None and d.shape[:keep.ndim] == keep.shape:
        d = d[keep]
    return float((d * d).sum())


def _mask_shape(c) -> tuple[int, ...]:
    rank = len(c.data.shape)
    return (int(c.data.shape[c.axis]),) + (1,) * (rank - c.axis - 1)


def _run(sess, feeds):
    try:
        return run_on(sess, feeds)
    except Exception as e:  # noqa: BLE001 - ORT raises several types
        raise BadInput(f"ablate: ONNX Runtime cannot run the model on the calibration data ({first_line(e)})") from None


class _masked:
    """The model with a Mul by a new graph input in front of each (group, consumer) (and,
    with `shift`, an Add of a second input NAME + "_shift" after it); the graph is
    restored on exit. Yields the mask input names."""

    def __init__(self, model: ir.Model, items, shift: bool = False):
        self.model, self.items, self.shift = model, items, shift

    def __enter__(self):
        graph = self.model.graph
        self.undo, names = [], []
        try:
            for k, (c, dtype) in enumerate(self.items):
                if not isinstance(c.data.shape[c.axis], int):
                    raise BadInput(f"ablate: the channel axis of {c.data.name!r} has no fixed size")
                data = c.data
                mul = ir.node("Mul", [data, self._input(f"graphprune_ablate_{k}", c, dtype)])
                mul.outputs[0].name = f"graphprune_ablate_{k}_out"
                graph.insert_before(c.node, mul)
                self.undo.append(("node", mul))
                out = mul.outputs[0]
                if self.shift:
                    add = ir.node("Add", [out, self._input(f"graphprune_ablate_{k}_shift", c, dtype)])
                    add.outputs[0].name = f"graphprune_ablate_{k}_filled"
                    graph.insert_before(c.node, add)
                    self.undo.append(("node", add))
                    out = add.outputs[0]
                index = list(c.node.inputs).index(data)
                c.node.replace_input_with(index, out)
                self.undo.append(("rewire", (c.node, index, data)))
                names.append(f"graphprune_ablate_{k}")
        except BaseException:
            self._restore()
            raise
        return names

    def _input(self, name: str, c, dtype) -> ir.Value:
        """A new float graph input of the mask's shape, cast to `dtype` in front of c.node."""
        graph = self.model.graph
        value = ir.Value(name=name, type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(_mask_shape(c)))
        graph.inputs.append(value)
        self.undo.append(("input", value))
        if dtype is None or dtype == ir.DataType.FLOAT:
            return value
        cast = ir.node("Cast", [value], attributes={"to": dtype})
        graph.insert_before(c.node, cast)
        self.undo.append(("node", cast))
        return cast.outputs[0]

    def __exit__(self, *exc):
        self._restore()
        return False

    def _restore(self):
        graph = self.model.graph
        for kind, item in reversed(self.undo):
            if kind == "rewire":
                node, index, data = item
                node.replace_input_with(index, data)
            elif kind == "node":
                graph.remove(item, safe=True)
            else:
                graph.inputs.remove(item)
        self.undo = []
