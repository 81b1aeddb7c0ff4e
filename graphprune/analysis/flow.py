"""Dimension flow: which axes of which tensors must lose the same indices together.

Every axis of every tensor of known rank is a node `(value_name, axis)` of a networkx
graph. Each op's rule (see `rules/`) joins axes of its inputs and outputs with index maps
("position i here is the same unit as position j there") and may pin axes it mixes.
An axis of a node's inputs or outputs that its rule does not mention is pinned: an op
is never guessed to pass an axis through. Ops without a rule pin everything they touch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import onnx_ir as ir

from graphprune.analysis.cache_io import cache_pairs
from graphprune.analysis.rules import rule_for
from graphprune.shapes import Dim, attr_value, const_array, shape_of

DimKey = tuple[str, int]


@dataclass
class Tie:
    """Positions `a_idx` of axis `a` are the same units as positions `b_idx` of axis `b`."""

    a: DimKey
    b: DimKey
    a_idx: np.ndarray | None  # None: identity over the whole axis
    b_idx: np.ndarray | None


@dataclass
class Flow:
    graph: nx.Graph
    sizes: dict[DimKey, Dim]
    constant: set[str]
    ties: list[Tie]
    pins: dict[DimKey, list[str]]
    roles: list[tuple[DimKey, str, str]]  # (axis, role, node name)
    mac_terms: list[tuple[str, float, list[DimKey]]] = field(default_factory=list)
    attention: set[DimKey] = field(default_factory=set)  # axes whose units attention mixes as heads
    internal: set[DimKey] = field(default_factory=set)  # weight axes whose units live inside a fused op
    experts: dict[DimKey, int] = field(default_factory=dict)  # axes of experts a router picks k of -> k


class FlowBuilder:
    """What a rule sees: shapes and constants, and the calls that record ties and pins."""

    def __init__(self, model: ir.Model, options: dict | None = None):
        self.model = model
        self.options = dict(options or {})
        self.sizes: dict[DimKey, Dim] = {}
        self.constant: set[str] = set()
        self.ties: list[Tie] = []
        self.pins: dict[DimKey, list[str]] = {}
        self.roles: list[tuple[DimKey, str, str]] = []
        self.mac_terms: list[tuple[str, float, list[DimKey]]] = []
        self.attention: set[DimKey] = set()
        self.internal: set[DimKey] = set()
        self.experts: dict[DimKey, int] = {}
        self.graph = nx.Graph()
        self.node: ir.Node | None = None
        self._mentioned: set[DimKey] = set()
        self._slices: dict[DimKey, tuple[ir.Value, int]] = {}  # gathered weight slices (rules/routing.py)

    # -- what rules read -------------------------------------------------------------
    def shape(self, value: ir.Value | None) -> tuple[Dim, ...] | None:
        return shape_of(value)

    def rank(self, value: ir.Value | None) -> int | None:
        s = shape_of(value)
        return None if s is None else len(s)

    def const(self, value: ir.Value | None) -> np.ndarray | None:
        return const_array(value)

    def attr(self, name: str, default=None):
        return attr_value(self.node, name, default)

    def option(self, name: str) -> bool:
        """An analysis option a pass turned on (e.g. `through_norms` from `hidden`)."""
        return bool(self.options.get(name))

    # -- what rules record -----------------------------------------------------------
    def tie(self, a: ir.Value, a_axis: int, b: ir.Value, b_axis: int,
            a_idx: np.ndarray | None = None, b_idx: np.ndarray | None = None) -> None:
        ka, kb = self._key(a, a_axis), self._key(b, b_axis)
        if ka is None or kb is None:
            return
        self._mentioned.update((ka, kb))
        if a_idx is None and b_idx is None and self.sizes.get(ka) != self.sizes.get(kb):
            self._pin_key(ka, f"{self._label()} joins axes of different sizes")
            self._pin_key(kb, f"{self._label()} joins axes of different sizes")
            return
        self.ties.append(Tie(ka, kb, a_idx, b_idx))
        self.graph.add_edge(ka, kb)

    def tie_within(self, value: ir.Value, axis: int, a_idx: np.ndarray, b_idx: np.ndarray) -> None:
        """Make positions of one axis the same unit (e.g. the k-th channel of every group)."""
        k = self._key(value, axis)
        if k is not None:
            self._mentioned.add(k)
            self.ties.append(Tie(k, k, a_idx, b_idx))

    def carry(self, value: ir.Value | None, axis: int) -> None:
        """Mention an axis the op handles without coupling it (e.g. a broadcast size-1 axis)."""
        k = self._key(value, axis)
        if k is not None:
            self._mentioned.add(k)

    def pin(self, value: ir.Value | None, axis: int, reason: str) -> None:
        k = self._key(value, axis)
        if k is not None:
            self._mentioned.add(k)
            self._pin_key(k, f"{self._label()}: {reason}")

    def role(self, value: ir.Value | None, axis: int, role: str) -> None:
        k = self._key(value, axis)
        if k is not None and k in self._slices:  # a routed gather's slice of stacked weights
            value, axis = self._slices[k]
            k = self._key(value, axis)
        if k is not None and value.name in self.constant:
            self.roles.append((k, role, self.node.name or ""))

    def selected_axis(self, value: ir.Value, axis: int, weight: ir.Value, weight_axis: int) -> None:
        """Record that an axis of a gathered value is an axis of the weight it was selected
        from, so that the roles its consumers give it are the weight's."""
        k = self._key(value, axis)
        if k is not None:
            self._slices[k] = (weight, weight_axis)

    def attends(self, value: ir.Value | None, axis: int) -> None:
        """Record that attention treats the units of this axis as heads (a batch axis of
        Q·Kᵀ or of the weights·V, a head axis of a fused attention op): a group through
        it is of kind 'heads'."""
        k = self._key(value, axis)
        if k is not None:
            self.attention.add(k)

    def internal_units(self, value: ir.Value | None, axis: int) -> None:
        """Record that a fused op computes this weight axis's units inside itself (MoE
        neurons): a group of weights alone, which no activation tensor carries."""
        k = self._key(value, axis)
        if k is not None:
            self.internal.add(k)

    def routes(self, value: ir.Value | None, axis: int, k: int) -> None:
        """Record that the units of this axis are experts a router picks `k` of per token:
        a group through it is of kind 'experts' and keeps at least `k` units."""
        key = self._key(value, axis)
        if key is not None:
            self.experts[key] = max(int(k), self.experts.get(key, 0))

    def macs(self, total: float, factors: list[tuple[ir.Value, int]]) -> None:
        """Record that this node's MACs scale with the sizes of the given axes."""
        keys = [k for k in (self._key(v, a) for v, a in factors) if k is not None]
        self.mac_terms.append((self.node.name or "", float(total), keys))

    # -- internals -----------------------------------------------------------------------
    def _label(self) -> str:
        n = self.node
        return f"node {n.name or '?'} (op {n.op_type})" if n is not None else "graph"

    def _key(self, value: ir.Value | None, axis: int) -> DimKey | None:
        if value is None or value.name is None:
            return None
        s = shape_of(value)
        if s is None:
            return None
        if axis < 0:
            axis += len(s)
        if not 0 <= axis < len(s):
            return None
        return (value.name, axis)

    def _pin_key(self, key: DimKey, reason: str) -> None:
        reasons = self.pins.setdefault(key, [])
        if reason not in reasons:
            reasons.append(reason)

    def add_value(self, value: ir.Value) -> None:
        s = shape_of(value)
        if value.name is None or s is None:
            return
        if value.const_value is not None:
            self.constant.add(value.name)
        for axis, d in enumerate(s):
            key = (value.name, axis)
            self.sizes[key] = d
            self.graph.add_node(key)

    def pin_value(self, value: ir.Value | None, reason: str, free: set[DimKey] = frozenset()) -> None:
        """Pin every axis of a value but those in `free`."""
        s = shape_of(value)
        if value is None or s is None:
            return
        for axis in range(len(s)):
            if (value.name, axis) not in free:
                self.pin(value, axis, reason)

    def run_node(self, node: ir.Node) -> None:
        self.node = node
        self._mentioned = set()
        # An output nobody reads (GroupQueryAttention's present key/value in a model without
        # a cache) constrains nothing, also when its shape is unknown.
        outputs = [v for v in node.outputs if v is not None and (v.uses() or v.is_graph_output())]
        values = [v for v in node.inputs if v is not None] + outputs
        rule = rule_for(node)
        unknown = [v.name for v in values if shape_of(v) is None]
        if rule is None:
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            for v in values:
                self.pin_value(v, f"no channel rule for {op}")
        elif unknown:
            # A rule cannot couple axes it cannot see; pin everything rather than guess.
            for v in values:
                self.pin_value(v, f"shape of {unknown[0]} is unknown")
        else:
            rule.couple(node, self)
            for v in values:
                s = shape_of(v)
                for axis in range(len(s) if s is not None else 0):
                    if (v.name, axis) not in self._mentioned:
                        self.pin(v, axis, f"mixes or drops axis {axis}")
        self.node = None

    def build(self) -> Flow:
        return Flow(self.graph, self.sizes, self.constant, self.ties, self.pins, self.roles,
                    self.mac_terms, self.attention, self.internal, self.experts)


def build_flow(model: ir.Model, options: dict | None = None) -> Flow:
    """Run every node's rule over the main graph and return the dimension-flow graph."""
    graph = model.graph
    b = FlowBuilder(model, options)
    for v in graph.inputs:
        b.add_value(v)
    for v in graph.initializers.values():
        b.add_value(v)
    for node in graph:
        for v in node.outputs:
            b.add_value(v)
    # A KV cache's head axis is state, not interface (cache_io): a past and its present
    # lose the same heads. `keep_io` (--keep-io) keeps every graph input and output whole.
    pairs = [] if b.option("keep_io") else cache_pairs(model)
    free = {(n, p.axis) for p in pairs for n in (p.past, p.present)}
    for v in graph.inputs:
        if v.name not in graph.initializers:
            b.pin_value(v, "reaches a graph input", free)
    for v in graph.outputs:
        b.pin_value(v, "reaches a graph output", free)
    values = {v.name: v for v in (*graph.inputs, *graph.outputs)}
    for p in pairs:
        b.tie(values[p.past], p.axis, values[p.present], p.axis)
    outer = {name for name, _ in b.sizes}
    for node in graph:
        b.run_node(node)
        for inner in _subgraph_reads(node, outer):
            b.pin_value(inner, f"read inside a subgraph of {node.name or node.op_type}")
    return b.build()


def _subgraph_reads(node: ir.Node, outer: set[str]) -> list[ir.Value]:
    """Outer-scope values read by nodes in the node's subgraphs (If/Loop/Scan bodies)."""
    found = []
    for attr in node.attributes.values():
        if attr.type not in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
            continue
        graphs = [attr.value] if attr.type == ir.AttributeType.GRAPH else list(attr.value)
        for g in graphs:
            for inner in ir.traversal.RecursiveGraphIterator(g):
                found.extend(v for v in inner.inputs if v is not None and v.name in outer)
    return found
