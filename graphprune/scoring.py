"""Shared by the scoring passes: per-position scores of member axes are summed into
units, combined over a group's members, and normalized so groups can be ranked together.

The reduce and normalize choices are the ones Torch-Pruning users know:
reduce = sum | mean | max | prod over the member slices (prod: the geometric mean, so a
unit scores high only when every slice it owns is large: a neuron's input row and its
output column, a head's query, key, value and output slices); normalize = none | mean | max | sum |
standardize over the units of a group.
"""

from __future__ import annotations

import numpy as np

import onnx_ir as ir

from graphprune.analysis.groups import Group
from graphprune.errors import BadInput
from graphprune.registry import PrunePass

REDUCE = ("sum", "mean", "max", "prod")
NORMALIZE = ("none", "mean", "max", "sum", "standardize")
GROUPS = ("all", "heads", "channels", "experts")


class ScorePass(PrunePass):
    """The base of every criterion: for each group of the kind asked (`groups=all`, `heads`,
    `channels` or `experts`), the per-unit parts that `parts(g)` returns (one array per weight slice
    or consumer) are combined (`reduce`) and normalized within the group (`normalize`).
    A criterion for one kind of group leaves the other groups' scores as an earlier
    criterion set them, so two criteria can share the work (`--pass amp:groups=heads
    --pass wifv:groups=channels`)."""

    kind = "score"
    options = {"reduce": "mean", "normalize": "mean", "groups": "all"}

    def prepare(self, model: ir.Model, groups: list[Group]) -> None:
        """Work shared by all groups (e.g. activation statistics), before `parts`."""

    def parts(self, g: Group) -> list[np.ndarray] | None:
        """Per-unit scores of `g`, one array per slice or consumer; None leaves the group's
        score as it was (a criterion that cannot score it)."""
        raise NotImplementedError

    def run(self, model: ir.Model) -> bool:
        which = self.opts.get("groups", "all")
        if which not in GROUPS:
            raise BadInput(f"{self.name}: groups must be all, heads or channels, not {which!r}")
        mine = [g for g in self.ctx.analysis().groups if g.n_units and which in ("all", g.kind)]
        self.stats = {}
        self.prepare(model, mine)
        scored = 0
        for g in mine:
            parts = self.parts(g)
            if parts is None:
                continue
            raw = combine(parts, self.opts.get("reduce", "sum"), g.n_units)
            self.ctx.scores[g.id] = normalize(raw, self.opts.get("normalize", "none"))
            scored += 1
        prev = self.ctx.score_name  # a criterion for one kind of group joins the earlier one's name
        self.ctx.score_name = self.name if which == "all" or not prev else f"{prev}+{self.name}"
        self.stats = {"groups_scored": scored, **self.stats}
        return False


class WeightScorePass(ScorePass):
    """A data-free criterion read from the group's weight slices with one of `roles`
    (producer rows 'out', consumer columns 'in', norm scales 'bn_scale')."""

    options = {**ScorePass.options, "roles": "out+in+bn_scale"}

    def prepare(self, model: ir.Model, groups: list[Group]) -> None:
        self.inits = model.graph.initializers
        self.roles = tuple(self.opts["roles"].split("+"))


def per_unit(group: Group, key, per_position: np.ndarray) -> np.ndarray:
    """Sum per-position scores of one member axis into the group's units."""
    return np.bincount(group.members[key], weights=per_position, minlength=group.n_units)


def combine(parts: list[np.ndarray], how: str, n_units: int) -> np.ndarray:
    if not parts:
        return np.zeros(n_units)
    stack = np.stack(parts)
    if how == "sum":
        return stack.sum(0)
    if how == "mean":
        return stack.mean(0)
    if how == "max":
        return stack.max(0)
    if how == "prod":
        return np.exp(np.log(np.maximum(stack, 1e-30)).mean(0))
    raise BadInput(f"reduce must be one of {', '.join(REDUCE)}, not {how!r}")


def normalize(scores: np.ndarray, how: str) -> np.ndarray:
    scores = scores.astype(np.float64)
    if how == "none" or scores.size == 0:
        return scores
    if how == "mean":
        d = scores.mean()
    elif how == "max":
        d = scores.max()
    elif how == "sum":
        d = scores.sum()
    elif how == "standardize":
        std = scores.std()
        return (scores - scores.mean()) / (std if std > 0 else 1.0)
    else:
        raise BadInput(f"normalize must be one of {', '.join(NORMALIZE)}, not {how!r}")
    return scores / d if d > 0 else scores


def weight_slices(group: Group, initializers, roles: tuple[str, ...]):
    """(key, array) for every member axis of the group that has one of `roles`."""
    seen = set()
    for key, role, _ in group.roles:
        if role in roles and key not in seen and key[0] in initializers:
            seen.add(key)
            yield key, initializers[key[0]].const_value.numpy()


def position_norms(arr: np.ndarray, axis: int, p: float, chunk_bytes: int = 1 << 26) -> np.ndarray:
    """sum |w|^p over every axis but `axis`, per position of `axis`.

    Works through the tensor in slices of about `chunk_bytes`, so a memory-mapped weight
    of gigabytes never gets a full-size temporary copy."""
    moved = np.moveaxis(arr, axis, 0)
    n = moved.shape[0]
    per_row = max(moved[0].nbytes if n else 1, 1)
    step = max(1, chunk_bytes // per_row)
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, step):
        block = np.asarray(moved[s:s + step], dtype=np.float32).reshape(min(step, n - s), -1)
        if p == 2:  # no |.| and no float64 copy before squaring: the same sums, fewer temporaries
            out[s:s + step] = np.square(block, dtype=np.float64).sum(1)
            continue
        block = np.abs(block)
        out[s:s + step] = (block.astype(np.float64) ** p).sum(1) if p != 1 else block.sum(1, dtype=np.float64)
    return out


def magnitude_parts(group: Group, initializers, roles: tuple[str, ...] = ("out", "in"), p: float = 1.0):
    """Per-unit sum of |w|^p of each weight slice with one of `roles` (the L1 fallback of
    criteria that cannot score a group their own way)."""
    return [per_unit(group, key, position_norms(arr, key[1], p)) for key, arr in weight_slices(group, initializers, roles)]
