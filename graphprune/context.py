"""The state every pass reads and writes: model, cached analysis, scores, plan, the edits
waiting for `remove`, what `remove` did, and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from graphprune.analysis.cost import CostModel
from graphprune.analysis.flow import DimKey, Flow, build_flow
from graphprune.analysis.groups import Group, find_groups
from graphprune.edits import PendingEdits
from graphprune.errors import BadInput


@dataclass
class Analysis:
    flow: Flow
    groups: list[Group]
    cost: CostModel

    def group(self, gid: int) -> Group:
        return self.groups[gid]


@dataclass
class Removal:
    """What `remove` did, for the `repair` passes after it: the plan and groups it
    executed, the kept positions of every sliced axis (dense names and sizes), and the
    model as it was just before (tensors shared, not copied; kept only when a repair pass
    follows) with the activation statistics already measured on it."""

    plan: dict[int, np.ndarray]
    groups: list[Group]
    kept: dict[DimKey, np.ndarray]
    dense: ir.Model | None = None
    dense_stats: dict = field(default_factory=dict)


@dataclass
class Context:
    model: ir.Model
    source: str | None = None
    scores: dict[int, np.ndarray] = field(default_factory=dict)
    score_name: str | None = None
    plan: dict[int, np.ndarray] = field(default_factory=dict)  # group id -> units to remove
    report: dict[str, Any] = field(default_factory=dict)
    flow_options: dict[str, Any] = field(default_factory=dict)  # set by "analysis" passes
    calibration: Any = None  # graphprune.calibration.Calibration, from --calib
    pending: PendingEdits = field(default_factory=PendingEdits)  # compensate -> remove
    keep_dense: bool = False  # set by the runner when a repair pass follows remove
    removal: Removal | None = None  # set by remove
    quiet: bool = False
    deploy_shapes: dict[str, list[int]] | None = None  # input -> shape MACs are counted at
    reference: Any = None  # graphprune.verify.Reference: the original's run on the verification inputs
    latency: Any = None  # graphprune.latency.LatencySettings: how select's latency targets are measured
    shared_stats: dict | None = None  # statistics shared between runs (a sweep's points): state key -> stats
    # Graph inputs/outputs that lost units (a KV cache's heads): name -> axis -> kept positions
    # of the original tensor, across every remove so far.
    interface: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    # Graph inputs/outputs renamed by depth pruning (a KV cache renumbered): new name -> original.
    renamed: dict[str, str] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)  # original names of inputs/outputs depth pruning removed
    _analysis: Analysis | None = None
    _stats: dict = field(default_factory=dict)

    def analysis(self) -> Analysis:
        """Dimension flow, groups and cost of the current graph (cached until it changes)."""
        if self._analysis is None:
            flow = build_flow(self.model, self.flow_options)
            groups = find_groups(flow)
            terms = None
            if self.deploy_shapes:
                from graphprune.analysis.deploy_shape import mac_terms

                terms = mac_terms(self.model, self.deploy_shapes, self.flow_options)
            self._analysis = Analysis(flow, groups, CostModel(self.model, flow, groups, terms))
        return self._analysis

    def resize_interface(self, cuts: dict[str, dict[int, np.ndarray]]) -> None:
        """Record what a removal kept of graph inputs/outputs, composed with earlier ones,
        and list it in the report."""
        for name, axes in cuts.items():
            known = self.interface.setdefault(self.renamed.get(name, name), {})
            for axis, positions in axes.items():
                known[axis] = known[axis][positions] if axis in known else positions
        if self.interface:
            self.report["cache_tensors"] = {
                name: {"axis": axis, "kept": [int(i) for i in kept]}
                for name, axes in self.interface.items() for axis, kept in axes.items()}

    def rename_interface(self, renamed: dict[str, str], dropped: set[str] = frozenset()) -> None:
        """Record inputs/outputs dropped and renamed (new -> name before), composed to the
        original names, and mark each input with the name its feeds come under."""
        self.dropped |= {self.renamed.get(n, n) for n in dropped}
        composed = {k: v for k, v in self.renamed.items() if k not in renamed.values()}
        for new, before in renamed.items():
            composed[new] = self.renamed.get(before, before)
        self.renamed = composed
        for v in self.model.graph.inputs:
            if v.name in self.renamed:
                v.meta["source"] = self.renamed[v.name]
        if self.renamed or self.dropped:
            self.report["interface_changes"] = {"renamed": dict(self.renamed), "dropped": sorted(self.dropped)}

    def graph_changed(self) -> None:
        """Forget the analysis; scores, plan and statistics refer to the old graph and go too."""
        self._analysis = None
        self.scores = {}
        self.plan = {}
        self._stats = {}

    def activation_stats(self, requests: dict, who: str, dense: bool = False) -> dict:
        """Statistics of the requested tensors over the calibration data, computed once per
        tensor and graph state (see graphprune.activations). `dense=True` after `remove`
        measures the model as it was before removal (a repair pass's targets)."""
        from graphprune.activations import collect

        self.require_calibration(who)
        model, cache = self.model, self._stats
        if dense and self.removal is not None:
            if self.removal.dense is None:
                raise RuntimeError(f"{who}: the dense model was not kept (no repair pass was planned)")
            model, cache = self.removal.dense, self.removal.dense_stats
        missing = {k: r for k, r in requests.items()
                   if k not in cache or (r.gram and cache[k].gram is None) or
                   any(key not in cache[k].extra for key in [*r.reducers, *r.raw])}
        if missing:
            cache.update(collect(model, missing, self.calibration))
        self.report["calibration"] = self.calibration.describe()
        unmasked = self.report["calibration"].get("unmasked_tensors")
        if unmasked:
            self.warn(f"--calib-mask {self.calibration.mask!r} does not line up with the positions of "
                      f"{len(unmasked)} tensor(s) (e.g. {unmasked[0]!r}): their statistics include padding")
        return {k: cache[k] for k in requests}

    def share_stats(self, key: tuple) -> None:
        """Use the statistics another run measured in the same state (`key`: the model and
        calibration, and what ran before that can change the tensors watched)."""
        if self.shared_stats is not None:
            self._stats = self.shared_stats.setdefault(key, self._stats)

    def require_calibration(self, who: str) -> None:
        if self.calibration is None:
            raise BadInput(f"{who} needs calibration data: pass --calib FILE.npz "
                           "(one array per model input, first axis = samples)")

    def require_removal(self, who: str) -> Removal:
        """What remove did (a repair pass runs after it; the pipeline order guarantees it)."""
        if self.removal is None:
            raise BadInput(f"{who} repairs a pruned model: it runs after remove")
        return self.removal

    def removed_masks(self) -> dict[int, np.ndarray]:
        return unit_masks(self.analysis().groups, self.plan)

    def warn(self, line: str) -> None:
        """A warning for the report (and the CLI's stderr), recorded once."""
        warnings = self.report.setdefault("warnings", [])
        if line not in warnings:
            warnings.append(line)


def unit_masks(groups: list[Group], plan: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """group id -> 0/1 mask over its units (1: removed), the form the cost model takes."""
    masks = {}
    for gid, units in plan.items():
        m = np.zeros(groups[gid].n_units)
        m[units] = 1.0
        masks[gid] = m
    return masks
