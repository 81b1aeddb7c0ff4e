"""The rescaling-canonical form of a network's weights, for the metanet features.

A unit whose values reach its consumers through positively homogeneous ops only (ReLU,
pooling, layout ops, adds within the group, BatchNorm as part of its producer) computes
the same function when its producer rows (and biases) are multiplied by a > 0 and its
consumer columns by 1/a. Features read from raw weights would change under such a
rescaling, also those of the neighbouring layers (their rows and columns contain the
rescaled unit's entries). So the features read weights in one canonical form: every
rescalable unit gets the factor that balances its producer and consumer strengths
(geometric mean of row norms = geometric mean of column norms), found by a few sweeps
over the groups. The balanced form is the same for every member of a rescaling orbit, so
features read from it are invariant to any rescaling, by any unit, to the sweeps'
tolerance. Units behind normalisation or non-homogeneous activations (LayerNorm, GELU,
softmax) keep factor 1: their scale means something.
"""

from __future__ import annotations

import numpy as np

from graphprune.analysis.groups import Group

HOMOGENEOUS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Sub", "Relu", "MaxPool", "AveragePool",
               "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose", "Concat", "Split",
               "Slice", "Pad", "Squeeze", "Unsqueeze", "Identity", "BatchNormalization", "ReduceMean",
               "ReduceSum", "ReduceMax", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Gather"}
TINY = 1e-12


def rescalable(g: Group, producers: dict) -> bool:
    """Whether every op writing one of the group's values is positively homogeneous in it."""
    if any(role in ("norm_scale", "slope") for _, role, _ in g.roles):
        return False
    for name, _ in g.members:
        node = producers.get(name)
        if node is not None and node.op_type not in HOMOGENEOUS:
            return False
    return any(role == "out" for _, role, _ in g.roles) and any(role == "in" for _, role, _ in g.roles)


def _on_axis(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A per-position vector shaped to broadcast along `axis` of an ndim-array."""
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


class Balanced:
    """Effective weights: each tensor's axes scaled by their groups' unit factors (times the
    factor along 'out' axes, divided along 'in' axes; biases are the caller's to scale).
    `fixed` multiplies weight axes by the BatchNorm scales that act on them, as if folded.

    The sweeps work on each tensor's squares summed over its other axes (a matrix of
    producer positions x consumer positions at most), so they cost little next to reading
    the weights once."""

    def __init__(self, groups: list[Group], arrays, producers: dict, fixed: dict, rounds: int = 12, sweeps: int = 2, tolerance: float = 1e-6):
        self.arrays = arrays  # name -> numpy array (initializers)
        self.fixed = {}  # tensor -> [(axis, per-position multiplier)]: BatchNorms folded in
        for (name, axis), mult in fixed.items():
            self.fixed.setdefault(name, []).append((axis, mult))
        self.factor: dict[int, np.ndarray] = {g.id: np.ones(g.n_units) for g in groups}
        self.axes: dict[str, list] = {}  # tensor -> [(axis, group, sign)]
        sign = {"out": 1.0, "in": -1.0}
        self.movable = movable = [g for g in groups if rescalable(g, producers)]
        for g in movable:
            for key, role, _ in g.roles:
                if role in sign and arrays(key[0]) is not None:
                    self.axes.setdefault(key[0], []).append((key[1], g, sign[role]))
        self.reduced = {}  # tensor -> squares summed over every axis no movable group holds
        for name, entries in self.axes.items():
            arr = self._folded(name)
            kept = sorted({a for a, _, _ in entries})
            sq = np.square(arr).sum(axis=tuple(a for a in range(arr.ndim) if a not in kept), dtype=np.float32)
            self.reduced[name] = (sq, kept)
        self._cache: dict[str, np.ndarray] = {}
        self.index = {g.id: i for i, g in enumerate(movable)}
        for _ in range(rounds if movable else 0):  # coarse: whole groups, then units
            self._coarse()
            largest = 0.0
            for _ in range(sweeps):
                for g in movable:
                    out, inn = self._log_strengths(g)
                    step = np.clip(0.5 * (inn - out), -7.0, 7.0)
                    self.factor[g.id] = self.factor[g.id] * np.exp(step)
                    largest = max(largest, float(np.abs(step).max(initial=0.0)))
            if largest < tolerance:
                break

    def _coarse(self) -> None:
        """Balance the groups' mean log factors exactly: scaling a whole group shifts every
        log norm it touches by the same amount, so this is a linear system, one unknown per
        group (the slow, depth-long mode of unit-wise sweeps)."""
        n = len(self.movable)
        m, r = np.zeros((n, n)), np.zeros(n)
        for g in self.movable:
            i = self.index[g.id]
            out, inn = self._log_strengths(g)
            r[i] = float(np.mean(out - inn))
            for role, other in (("out", -1.0), ("in", 1.0)):  # the sign of the tensor's other axis
                keys = [k for k, rl, _ in g.roles if rl == role and k[0] in self.axes]
                for name, _ in keys:
                    m[i, i] += 1.0 / len(keys)
                    for _, h, s in self.axes[name]:
                        if s == other and h.id != g.id:
                            m[i, self.index[h.id]] -= 1.0 / len(keys)
        shift = np.linalg.lstsq(2 * m, -r, rcond=None)[0] if n else r
        for g in self.movable:
            self.factor[g.id] = self.factor[g.id] * np.exp(np.clip(shift[self.index[g.id]], -30, 30))

    def weight(self, name: str) -> np.ndarray | None:
        arr = self.arrays(name)
        if arr is None or (name not in self.axes and name not in self.fixed):
            return arr
        if name not in self._cache:
            eff = self._folded(name)
            for axis, g, s in self.axes.get(name, ()):
                eff = eff * _on_axis(self.factor[g.id][g.members[(name, axis)]] ** s, axis, eff.ndim).astype(np.float32)
            self._cache[name] = eff
        return self._cache[name]

    def _folded(self, name: str) -> np.ndarray:
        eff = np.asarray(self.arrays(name), dtype=np.float32)
        for axis, mult in self.fixed.get(name, ()):
            eff = eff * _on_axis(mult, axis, eff.ndim)
        return eff

    def _position_squares(self, name: str, axis: int) -> np.ndarray:
        """Per position of `axis`: the sum of squares of the effective tensor's slice."""
        sq, kept = self.reduced[name]
        f2 = {a: (self.factor[g.id][g.members[(name, a)]] ** (2 * s)).astype(np.float32) for a, g, s in self.axes[name]}
        if len(kept) == 2:  # a matrix: one matrix-vector product
            other = kept[1 - kept.index(axis)]
            vec = f2.get(other, np.ones(sq.shape[1 - kept.index(axis)]))
            sums = sq @ vec if kept.index(axis) == 0 else vec @ sq
            return sums.astype(np.float64) * f2.get(axis, 1.0)
        for a, f in f2.items():
            sq = sq * _on_axis(f, kept.index(a), len(kept))
        i = kept.index(axis)
        return sq.sum(axis=tuple(j for j in range(len(kept)) if j != i))

    def _log_strengths(self, g: Group) -> tuple[np.ndarray, np.ndarray]:
        """Mean over the group's producer rows (and its consumer columns) of log L2 norm per unit."""
        sums = {"out": np.zeros(g.n_units), "in": np.zeros(g.n_units)}
        counts = {"out": 0, "in": 0}
        for key, role, _ in g.roles:
            if role not in sums or key[0] not in self.axes:
                continue
            sq = np.bincount(g.members[key], weights=self._position_squares(*key), minlength=g.n_units)
            sums[role] += 0.5 * np.log(sq + TINY)
            counts[role] += 1
        return sums["out"] / max(counts["out"], 1), sums["in"] / max(counts["in"], 1)
