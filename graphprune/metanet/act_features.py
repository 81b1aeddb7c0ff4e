"""Activation features for the metanet criterion, where calibration data is given
(`metanet:features=activations`).

A unit's contribution through its consumers on the calibration samples is what the
weights alone cannot give on deep BatchNorm networks: BatchNorm makes a filter's norm
meaningless, and folding it in (which the weight features must ignore) erases the running
statistics that told how large the unit's output is. The score is AMP's for single
columns (passes/amp.py): per consumer, the unit's mean |activation| times the L1 norm of
its consumer column, summed over the unit's positions and averaged over its consumers;
the columns are read in the weight features' canonical form (graphprune/metanet/
balance.py: BatchNorms after the consumer folded in, the consumer's own units balanced),
with the unit's own factor left out because the activation carries the unit's scale. So
the score does not change when a BatchNorm is folded (the activations stay the same) or
when any ReLU unit is rescaled (the unit's: activation times a, column over a; a
consumer's: the canonical form absorbs it), as the weight features.

Columns: the log score standardised within the group (z, rank) and across the network's
groups (z, rank), as the weight features' strength and strength_net. A group without a
consumer these statistics can read (a depthwise conv, see graphprune/consumers.py) is
ordered within itself by its balanced weight strength and sits at the network's median
in the network columns.
"""

from __future__ import annotations

import numpy as np

from graphprune.activations import Request
from graphprune.consumers import consumers
from graphprune.metanet.features import _rank, _standardise
from graphprune.scoring import per_unit

ACT = ("act_z", "act_rank", "act_net_z", "act_net_rank")
TINY = 1e-12


def activation_scores(ctx, model, groups, bal) -> dict[int, np.ndarray]:
    """group id -> per-unit contribution scores, for the groups with a readable consumer."""
    found = {g.id: consumers(g, model) for g in groups}
    requests = {c.data.name: Request(c.axis) for cs in found.values() for c in cs}
    stats = ctx.activation_stats(requests, "metanet") if requests else {}
    scores = {}
    for g in groups:
        parts = []
        for c in found[g.id]:
            # the balanced columns times the unit's own factor: the balance divided them by it
            # (a factor of 1 where the group is not rescalable), and the activation keeps it
            cols = np.abs(c.columns(bal.weight(c.key[0]))).sum(1, dtype=np.float64) * bal.factor[g.id][g.members[c.key]]
            parts.append(per_unit(g, c.key, stats[c.data.name].mean_abs * cols))
        if parts:
            scores[g.id] = np.mean(parts, axis=0)
    return scores


def act_columns(scores: dict[int, np.ndarray], strengths: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """group id -> (n_units, len(ACT)) columns, from the scores where a group has them and
    from its log weight strength (`strengths`) where not."""
    logs = {gid: np.log(np.maximum(s, 0) + TINY) for gid, s in scores.items()}
    net = np.concatenate(list(logs.values())) if logs else np.zeros(1)
    mid, std, ranked = np.median(net), max(net.std(), 1e-9), np.sort(net)
    out = {}
    for gid, strength in strengths.items():
        n = len(strength)
        if gid in logs:
            v = logs[gid]
            cols = [*_standardise(v), np.clip((v - mid) / std, -6, 6), _rank(ranked, v)]
        else:
            cols = [*_standardise(strength), np.zeros(n), np.full(n, 0.5)]
        out[gid] = np.stack(cols, axis=1)
    return out
