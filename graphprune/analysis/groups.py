"""Coupled channel groups and their prunable units.

A group is a connected component of the dimension-flow graph that holds at least one
parameter axis and one activation axis. Inside a group, positions joined by index maps
form units (a conv channel, a block of flattened features, a channel of every conv
group): removing a unit removes every position of it, in every member axis at once.
A unit is pinned when one of its positions lies on a pinned axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from graphprune.analysis.flow import DimKey, Flow


@dataclass
class Group:
    id: int
    members: dict[DimKey, np.ndarray]  # axis -> unit id of each position
    n_units: int
    pinned: np.ndarray  # bool per unit
    pin_reasons: list[str]
    roles: list[tuple[DimKey, str, str]]
    params_per_unit: np.ndarray = field(default_factory=lambda: np.zeros(0))
    macs_per_unit: np.ndarray = field(default_factory=lambda: np.zeros(0))
    attends: bool = False  # attention treats its units as heads (flow.attention)
    min_units: int = 0  # units that must stay (a router's top-k: flow.experts)

    @property
    def prunable(self) -> np.ndarray:
        return np.flatnonzero(~self.pinned)

    @property
    def kind(self) -> str:
        """'heads' when attention consumes the group's units as heads and a unit is a block
        of consecutive rows of a producing weight (head_dim rows of Q, K and V); 'experts'
        when a router picks among its units (a mixture of experts' experts); else
        'channels' (a conv channel, an MLP neuron, a hidden feature; also a channel-shuffle
        or pixel-shuffle group, whose units are blocks too but no attention reads them)."""
        if self.min_units:
            return "experts"
        if not self.attends:
            return "channels"
        for key, role, _ in self.roles:
            if role != "out":
                continue
            ids = self.members[key]
            if len(ids) < 2:
                continue
            starts = np.flatnonzero(np.diff(ids)) + 1
            runs = np.diff(np.concatenate([[0], starts, [len(ids)]]))
            # Heads own runs of head_dim rows (one run each in Q, K and V, also when they
            # come from one fused QKV weight; a KV group owns its query heads' rows in one
            # longer run); a grouped conv's units own single rows.
            if runs.min() > 1 and not np.any(runs % runs.min()):
                return "heads"
        return "channels"

    def label(self) -> str:
        """A short human name: the first weight axis with an 'out' role, else any member."""
        for (name, axis), role, _ in self.roles:
            if role == "out":
                return f"{name}[{axis}]"
        name, axis = next(iter(self.members))
        return f"{name}[{axis}]"

    def positions(self, key: DimKey, units: np.ndarray) -> np.ndarray:
        """Positions of axis `key` that belong to any of `units`."""
        return np.flatnonzero(np.isin(self.members[key], units))


def _union_find(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components over n points joined by pairs (a[i], b[i]); vectorized."""
    labels = np.arange(n)
    if len(a) == 0:
        return labels
    while True:
        la, lb = labels[a], labels[b]
        low = np.minimum(la, lb)
        new = labels.copy()
        np.minimum.at(new, la, low)
        np.minimum.at(new, lb, low)
        new = new[new]
        while True:  # pointer jumping
            nxt = new[new]
            if np.array_equal(nxt, new):
                break
            new = nxt
        if np.array_equal(new, labels):
            return labels
        labels = new


def _pairs(tie, size_a: int, size_b: int) -> tuple[np.ndarray, np.ndarray]:
    if tie.a_idx is None and tie.b_idx is None:
        return np.arange(size_a), np.arange(size_b)
    return np.asarray(tie.a_idx, dtype=np.int64), np.asarray(tie.b_idx, dtype=np.int64)


def find_groups(flow: Flow) -> list[Group]:
    """Connected components that couple parameters with activations, split into units."""
    ties_by_dim: dict[DimKey, list] = {}
    for t in flow.ties:
        ties_by_dim.setdefault(t.a, []).append(t)
    roles_by_dim: dict[DimKey, list] = {}
    for r in flow.roles:
        roles_by_dim.setdefault(r[0], []).append(r)

    groups: list[Group] = []
    for comp in sorted(nx.connected_components(flow.graph), key=lambda c: min(c)):
        if not any(name in flow.constant for name, _ in comp):
            continue
        if all(name in flow.constant for name, _ in comp) and not any(d in flow.internal for d in comp):
            continue
        if not any(flow.sizes[d] not in (None, 1) for d in comp if d[0] in flow.constant):
            continue
        dims = sorted(comp)
        roles = [r for d in dims for r in roles_by_dim.get(d, [])]
        reasons = sorted({r for d in dims for r in flow.pins.get(d, [])})
        if any(not isinstance(flow.sizes[d], int) for d in dims):
            members = {d: np.zeros(0, dtype=np.int64) for d in dims}
            g = Group(len(groups), members, 0, np.zeros(0, bool),
                      reasons + ["an axis of the group has an unknown size"], roles)
            groups.append(g)
            continue
        offsets, total = {}, 0
        for d in dims:
            offsets[d] = total
            total += flow.sizes[d]
        a_all, b_all = [], []
        for d in dims:
            for t in ties_by_dim.get(d, []):
                ia, ib = _pairs(t, flow.sizes[t.a], flow.sizes[t.b])
                a_all.append(ia + offsets[t.a])
                b_all.append(ib + offsets[t.b])
        a = np.concatenate(a_all) if a_all else np.zeros(0, np.int64)
        b = np.concatenate(b_all) if b_all else np.zeros(0, np.int64)
        labels = _union_find(total, a, b)
        _, unit_of = np.unique(labels, return_inverse=True)
        n_units = int(unit_of.max()) + 1 if total else 0
        members = {d: unit_of[offsets[d]:offsets[d] + flow.sizes[d]] for d in dims}
        pinned = np.zeros(n_units, dtype=bool)
        for d in dims:
            if d in flow.pins:
                pinned[members[d]] = True
        attends = any(d in flow.attention for d in dims)
        floor = max([flow.experts[d] for d in dims if d in flow.experts] + [0])
        groups.append(Group(len(groups), members, n_units, pinned, reasons, roles, attends=attends, min_units=floor))
    return groups
