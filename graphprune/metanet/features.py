"""Per-unit features for the metanet criterion, read from the analysis' groups alone.

Nothing here knows an architecture: a unit's features come from the weight slices its
group's roles name (producer rows 'out', consumer columns 'in', BatchNorm-like scales,
LayerNorm-like scales, biases) and from the group's place in the graph. Every feature is
invariant to what does not change the function:

- a positive rescaling of one ReLU unit (producer row and bias times a, consumer columns
  times 1/a): magnitudes enter only as log(out strength) + log(in strength), and biases
  only as bias / out strength;
- folding a BatchNorm into the producer before it: a BatchNorm fed by the group's producer
  counts as part of that producer (|gamma| / sqrt(var + eps) joins the row's strength,
  beta - mean * gamma / sqrt(var + eps) its bias);
- the order of the units (everything is per unit or a statistic over the group).

Per-unit values are standardised within the group, so widths and init scales do not
matter, and the group's own summaries (size, members, kind, depth, fan, share of the MACs)
come as context; none of them tells whether a BatchNorm was folded.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.analysis.groups import Group
from graphprune.metanet.balance import Balanced
from graphprune.metanet.sketch import LONG, Sketch
from graphprune.passes.lamp import lamp_scores
from graphprune.scoring import per_unit, position_norms

UNIT = ("strength", "strength_net", "lamp", "bias_ratio", "redundancy", "out_spread", "in_spread",
        "out_centre", "in_centre", "norm_scale")
GROUP = ("log_units", "n_out", "n_in", "heads", "depth", "log_fan", "mac_share",
         "mean_redundancy", "mean_bias_ratio")
NAMES = tuple(f"{u}_{k}" for u in UNIT for k in ("z", "rank")) + GROUP
TINY = 1e-12
PROJECT = 256


def _rows(arr: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(np.asarray(arr, dtype=np.float32), axis, 0)
    return moved.reshape(moved.shape[0], -1)


def _unit_vectors(g: Group, key, rows: np.ndarray) -> np.ndarray | None:
    """One vector per unit (its positions' rows side by side), or None where units own
    different numbers of positions."""
    ids = g.members[key]
    counts = np.bincount(ids, minlength=g.n_units)
    if counts.min() != counts.max() or counts[0] == 0:
        return None
    if np.all(ids[1:] >= ids[:-1]):  # already in unit order (the usual case): a view where it can be
        return rows.reshape(g.n_units, -1)
    return rows[np.argsort(ids, kind="stable")].reshape(g.n_units, -1)


def _max_cos(vecs: np.ndarray, cap: int = 512) -> np.ndarray:
    """Per unit: max |cos| to another unit (redundancy). Wide groups compare against their
    `cap` strongest rows (chosen by norm, so the choice follows the units when they are
    permuted)."""
    n = len(vecs)
    if n < 2:
        return np.zeros(n)
    norms = np.linalg.norm(vecs, axis=1)
    unit = vecs / np.maximum(norms, TINY)[:, None]
    others = np.arange(n) if n <= cap else np.sort(np.argsort(-norms, kind="stable")[:cap])
    cos = unit @ unit[others].T
    cos[others, np.arange(len(others))] = 0.0  # not against itself
    return np.maximum(cos.max(1), -cos.min(1))  # max |cos| without an |.| copy


def _abs_sums(vecs: np.ndarray) -> np.ndarray:
    """Per row: sum |v|, in 64 MB blocks of rows (never one |.| copy of the whole)."""
    step = max(1, (64 << 20) // max(vecs[:1].nbytes, 1))
    return np.concatenate([np.abs(vecs[i:i + step]).sum(1, dtype=np.float64) for i in range(0, len(vecs), step)]
                          or [np.zeros(0)])


class Slices:
    """The units' slices of one side of a group, block by block as the weights hold them
    (n units x positions each), with each unit's sum of squares over them: the statistics
    below read the blocks in place instead of a copy laid side by side."""

    def __init__(self, n: int):
        self.blocks: list[np.ndarray] = []
        self.sq = np.zeros(n)

    def add(self, block: np.ndarray, sq: np.ndarray) -> None:
        self.blocks.append(block)
        self.sq += sq

    def __len__(self) -> int:
        return sum(b.shape[1] for b in self.blocks)

    def compare(self, redundancy: bool = True):
        """(redundancy or None, centre, spread): the largest |cos| to another unit (slices
        longer than PROJECT through the fixed random projection, applied block by block),
        the cos to the group's mean direction, ||v||_1 / (sqrt(len) ||v||_2)."""
        n, length = len(self.sq), len(self)
        inv = 1.0 / np.maximum(np.sqrt(self.sq), TINY)
        means = [(inv.astype(np.float32) @ b) / max(n, 1) for b in self.blocks]
        dots = sum(b @ m for b, m in zip(self.blocks, means))
        norm = float(np.sqrt(sum(float(m @ m) for m in means)))
        centre = dots * inv / max(norm, TINY)
        spread = sum(_abs_sums(b) for b in self.blocks) * inv / np.sqrt(length)
        red = None
        if redundancy and length > PROJECT:
            proj, start, rows = _projection(length), 0, np.zeros((n, PROJECT), np.float32)
            for b in self.blocks:
                rows += b @ proj[start:start + b.shape[1]]
                start += b.shape[1]
            red = _max_cos(rows)
        elif redundancy:
            red = _max_cos(np.concatenate(self.blocks, axis=1))
        return red, centre, spread


CACHE_BYTES = 32 << 20  # ResNet-50's projections take 12.5 MB
_PROJECTIONS: dict[int, np.ndarray] = {}  # length -> its projection, during one features() call


def _projection(length: int) -> np.ndarray:
    """The fixed random projection of slices of `length` (seeded by the length). Kept for
    the rest of a features() call where it takes at most a quarter of CACHE_BYTES and all
    kept ones at most CACHE_BYTES: a CNN's lengths recur and the draw costs as much as the
    product; a transformer's long head slices would otherwise keep tens of MB each."""
    if length in _PROJECTIONS:
        return _PROJECTIONS[length]
    proj = np.random.default_rng(length).standard_normal((length, PROJECT)).astype(np.float32)
    if proj.nbytes <= CACHE_BYTES // 4 and sum(p.nbytes for p in _PROJECTIONS.values()) + proj.nbytes <= CACHE_BYTES:
        _PROJECTIONS[length] = proj
    return proj


class GraphFacts:
    """What the features need from the model, found once."""

    def __init__(self, model: ir.Model):
        self.inits = model.graph.initializers
        nodes = list(model.graph)
        self.nodes = {n.name: n for n in nodes if n.name}
        self.order = {n.name: i for i, n in enumerate(nodes) if n.name}
        self.n_nodes = max(len(nodes), 1)
        self.producer = {v.name: n for n in nodes for v in n.outputs if v is not None and v.name}

    def array(self, name: str) -> np.ndarray | None:
        init = self.inits.get(name)
        return None if init is None or init.const_value is None else init.const_value.numpy()


def _bn_affine(facts: GraphFacts, node) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) of an inference BatchNormalization: y = scale * x + shift."""
    if node is None or node.op_type != "BatchNormalization" or len(node.inputs) < 5:
        return None
    parts = [facts.array(v.name) if v is not None else None for v in node.inputs[1:5]]
    if any(p is None for p in parts):
        return None
    gamma, beta, mean, var = (p.astype(np.float64) for p in parts)
    eps = node.attributes.get_float("epsilon", 1e-5)
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


def affine_parts(g: Group, facts: GraphFacts, fixed: dict) -> dict[str, np.ndarray]:
    """Per unit: the producers' effective bias ('shift': biases, then the BatchNorms after
    them) and the mean log norm of LayerNorm-like scales. BatchNorm scales go into
    `fixed`, multipliers of the weight axes they act on: after a producer, its rows (as if
    folded into it); before the consumers, their columns."""
    n = g.n_units
    producers = {node for key, role, node in g.roles if role == "out" and key[0] in facts.inits}
    parts = {k: np.zeros(n) for k in ("shift", "norm_scale")}
    n_ns = 0
    for key, role, node_name in g.roles:  # the producers' biases, before a BatchNorm scales them
        if role == "bias" and key[0] in facts.inits and node_name in producers:
            parts["shift"] += per_unit(g, key, facts.array(key[0]).astype(np.float64))
    for key, role, node_name in g.roles:
        node = facts.nodes.get(node_name)
        if role == "bn_scale":
            affine = _bn_affine(facts, node)
            if affine is None:
                continue
            scale, b = (per_unit(g, key, a) / np.maximum(np.bincount(g.members[key], minlength=n), 1) for a in affine)
            fed = node.inputs[0].producer()
            after = fed is not None and fed.name in producers
            if after:
                parts["shift"] = parts["shift"] * scale + b
            for k, r, nn in g.roles:
                if (r == "out" and after and nn == fed.name) or (r == "in" and not after):
                    if k[0] in facts.inits:
                        fixed[k] = fixed.get(k, 1.0) * np.abs(scale[g.members[k]])
        elif role == "norm_scale" and key[0] in facts.inits:
            parts["norm_scale"] += 0.5 * np.log(per_unit(g, key, position_norms(facts.array(key[0]), key[1], 2.0)) + TINY)
            n_ns += 1
    parts["norm_scale"] /= max(n_ns, 1)
    return parts


def _side(g: Group, keys, bal: Balanced) -> tuple[np.ndarray, Slices | Sketch]:
    """Summed log L2 norms per unit over the weight slices of `keys`, and the per-unit
    slices where every unit owns as many positions: their Slices, or their Sketch where
    the side is longer than LONG positions per unit."""
    logs = np.zeros(g.n_units)
    long = sum(bal.weight(key[0]).size for key in keys) > LONG * g.n_units
    vectors = Sketch(g.n_units, PROJECT) if long else Slices(g.n_units)
    for key in keys:
        rows = _rows(bal.weight(key[0]), key[1])  # one float32 array (a view where it can be) serves both
        sq = per_unit(g, key, position_norms(rows, 0, 2.0))
        logs += 0.5 * np.log(sq + TINY)
        v = _unit_vectors(g, key, rows)
        if v is not None:
            vectors.add(v) if long else vectors.add(v, sq)
    return logs, vectors


def _compare(vectors: Slices | Sketch, redundancy: bool = True):
    """(redundancy or None, centre, spread) of the units' slices laid side by side."""
    if isinstance(vectors, Slices):
        return vectors.compare(redundancy)
    sums = vectors.sums.astype(np.float32)  # PROJECT long: compared as they are, as one block
    block = Slices(len(sums))
    block.add(sums, np.square(sums, dtype=np.float64).sum(1))
    red, centre, _ = block.compare(redundancy)
    return red, centre, vectors.spread(TINY)  # the spread of the whole slices, not of the sketch


def unit_raw(g: Group, facts: GraphFacts, bal: Balanced, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw per-unit values of group g (before standardisation), read from the balanced weights."""
    # in role order (not a set): the slices are laid side by side in this order
    out_keys = list(dict.fromkeys(key for key, role, _ in g.roles if role == "out" and key[0] in facts.inits))
    in_keys = list(dict.fromkeys(key for key, role, _ in g.roles if role == "in" and key[0] in facts.inits))
    shift = parts["shift"] * bal.factor.get(g.id, 1.0)
    log_out, vectors = _side(g, out_keys, bal)
    log_in, in_vecs = _side(g, in_keys, bal)
    k_out, k_in = max(len(out_keys), 1), max(len(in_keys), 1)
    strength = log_out / k_out + log_in / k_in
    raw = {"strength": strength, "norm_scale": parts["norm_scale"],
           "bias_ratio": np.tanh(shift / np.maximum(np.exp(log_out / k_out), TINY) / k_out)}
    if len(vectors):  # a list of blocks, or a Sketch of its positions
        red, cen, spread = _compare(vectors)
        raw.update(redundancy=red, out_centre=cen, out_spread=spread)
    if len(in_vecs):
        raw.update(zip(("in_centre", "in_spread"), _compare(in_vecs, redundancy=False)[1:]))
    fan = sum(facts.array(k[0]).size / max(len(g.members[k]), 1) for k in (*out_keys, *in_keys))
    raw["_context"] = np.array([len(out_keys), len(in_keys), fan])
    return raw


def _rank(ranked: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Rank in [0, 1] of each x among the sorted values `ranked` (ties share their mean rank)."""
    return (np.searchsorted(ranked, x, "left") + np.searchsorted(ranked, x, "right") - 1) / (2 * max(len(ranked) - 1, 1))


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-score and rank in [0, 1] within the group."""
    std = x.std()
    if std <= 1e-9:
        return np.zeros(len(x)), np.full(len(x), 0.5)
    return np.clip((x - x.mean()) / std, -6, 6), _rank(np.sort(x), x)


def features(groups: list[Group], model: ir.Model, ctx=None) -> dict[int, np.ndarray]:
    """group id -> (n_units, len(NAMES)) feature matrix; with `ctx` (a Context holding
    calibration data), followed by the activation columns (act_features.ACT)."""
    try:
        return _features(groups, model, ctx)
    finally:
        _PROJECTIONS.clear()


def _features(groups: list[Group], model: ir.Model, ctx=None) -> dict[int, np.ndarray]:
    facts = GraphFacts(model)
    # depth: the place of the group's first producer among the weighted layers (a BatchNorm
    # folded or not does not move it)
    layers = sorted({node for g in groups for _, role, node in g.roles if role == "out"},
                    key=lambda name: facts.order.get(name, facts.n_nodes))
    layer_index = {name: i for i, name in enumerate(layers)}
    fixed: dict = {}
    parts = {g.id: affine_parts(g, facts, fixed) for g in groups}
    bal = Balanced(groups, facts.array, facts.producer, fixed)
    raws = {g.id: unit_raw(g, facts, bal, parts[g.id]) for g in groups}
    for raw in raws.values():  # LAMP on the balanced strengths: a unit's share of the mass above it
        raw["lamp"] = np.log(lamp_scores(np.exp(2 * (raw["strength"] - raw["strength"].max()))) + TINY)
    all_strength = np.concatenate([r["strength"] for r in raws.values()]) if raws else np.zeros(1)
    net_mid, net_std = np.median(all_strength), max(all_strength.std(), 1e-9)
    ranked = {k: np.sort(np.concatenate([r[k] for r in raws.values()])) if raws else np.zeros(1)
              for k in ("strength", "lamp")}
    total_macs = sum(float(np.sum(g.macs_per_unit)) for g in groups if len(g.macs_per_unit)) or 1.0
    out = {}
    for g in groups:
        raw, n = raws[g.id], g.n_units
        cols = []
        for name in UNIT:
            if name == "strength_net":  # on the network's scale: what ranks groups against each other
                cols += [np.clip((raw["strength"] - net_mid) / net_std, -6, 6), _rank(ranked["strength"], raw["strength"])]
            elif name == "lamp":
                cols += [np.clip(raw["lamp"], -12, 0), _rank(ranked["lamp"], raw["lamp"])]
            else:
                cols += _standardise(raw.get(name, np.zeros(n)))
        k_out, k_in, fan = raw["_context"]
        first = min((layer_index.get(node, len(layers)) for _, role, node in g.roles if role == "out"),
                    default=len(layers))
        macs = float(np.sum(g.macs_per_unit)) if len(g.macs_per_unit) else 0.0
        context = [np.log(n), min(k_out, 8) / 8, min(k_in, 8) / 8, float(g.kind == "heads"),
                   first / max(len(layers), 1), np.log1p(fan) / 10, macs / total_macs,
                   float(np.mean(raw.get("redundancy", 0.0))), float(np.mean(raw["bias_ratio"]))]
        cols += [np.full(n, c, dtype=np.float64) for c in context]
        out[g.id] = np.stack(cols, axis=1)
    if ctx is not None:
        from graphprune.metanet.act_features import act_columns, activation_scores

        act = act_columns(activation_scores(ctx, model, groups, bal), {gid: raw["strength"] for gid, raw in raws.items()})
        out = {gid: np.concatenate([f, act[gid]], axis=1) for gid, f in out.items()}
    return out
