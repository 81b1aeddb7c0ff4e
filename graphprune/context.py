"""The state every pass reads and writes: model, cached analysis, scores, plan, report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from graphprune.analysis.cost import CostModel
from graphprune.analysis.flow import Flow, build_flow
from graphprune.analysis.groups import Group, find_groups


@dataclass
class Analysis:
    flow: Flow
    groups: list[Group]
    cost: CostModel

    def group(self, gid: int) -> Group:
        return self.groups[gid]


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
    bias_updates: list = field(default_factory=list)  # from compensate passes, applied by remove
    # (initializer, new array) from compensate passes, written by remove before it slices:
    # until then the model stays dense, so later passes measure the dense model.
    weight_updates: list = field(default_factory=list)
    after_remove: list = field(default_factory=list)  # callables (model, kept) run by remove
    _analysis: Analysis | None = None
    _stats: dict = field(default_factory=dict)

    def analysis(self) -> Analysis:
        """Dimension flow, groups and cost of the current graph (cached until it changes)."""
        if self._analysis is None:
            flow = build_flow(self.model, self.flow_options)
            groups = find_groups(flow)
            self._analysis = Analysis(flow, groups, CostModel(self.model, flow, groups))
        return self._analysis

    def graph_changed(self) -> None:
        """Forget the analysis; scores and plan refer to the old groups and go too."""
        self._analysis = None
        self.scores = {}
        self.plan = {}
        self._stats = {}

    def activation_stats(self, requests: dict, who: str) -> dict:
        """Statistics of the requested tensors over the calibration data, computed once per
        tensor and graph state (see graphprune.activations)."""
        from graphprune.activations import collect

        self.require_calibration(who)
        missing = {k: r for k, r in requests.items()
                   if k not in self._stats or (r.gram and self._stats[k].gram is None) or
                   any(key not in self._stats[k].extra for key in [*r.reducers, *r.raw])}
        if missing:
            self._stats.update(collect(self.model, missing, self.calibration))
            self.report["calibration"] = self.calibration.describe()
            unmasked = self.report["calibration"].get("unmasked_tensors")
            if unmasked:
                line = (f"--calib-mask {self.calibration.mask!r} does not line up with the positions of "
                        f"{len(unmasked)} tensor(s) (e.g. {unmasked[0]!r}): their statistics include padding")
                warnings = self.report.setdefault("warnings", [])
                if line not in warnings:
                    warnings.append(line)
        return {k: self._stats[k] for k in requests}

    def require_calibration(self, who: str) -> None:
        from graphprune.errors import BadInput

        if self.calibration is None:
            raise BadInput(f"{who} needs calibration data: pass --calib FILE.npz "
                           "(one array per model input, first axis = samples)")

    def removed_masks(self) -> dict[int, np.ndarray]:
        return unit_masks(self.analysis().groups, self.plan)


def unit_masks(groups: list[Group], plan: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """group id -> 0/1 mask over its units (1: removed), the form the cost model takes."""
    masks = {}
    for gid, units in plan.items():
        m = np.zeros(groups[gid].n_units)
        m[units] = 1.0
        masks[gid] = m
    return masks
