"""Parameters and MACs of a model, and what they become when units are removed.

MACs count the multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul; each such
node's MACs are a product of axis sizes, so the cost after removing units is exact.
Parameters count the elements of floating-point initializers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from graphprune.analysis.flow import DimKey, Flow
from graphprune.analysis.groups import Group

_FLOAT = {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE}


@dataclass
class Totals:
    params: float
    macs: float


def stored_params(model: ir.Model) -> int:
    """Elements of the floating-point weights the model holds, each once however many
    nodes read it: copies that normalization made of a shared constant (which share its
    memory) count once, unlike in CostModel's params, which count what pruning can remove
    per reader. Weights a model builds at run time from constants (ConstantOfShape) count
    once folded."""
    inits = model.graph.initializers
    total = 0
    for v in inits.values():
        t = v.const_value
        if t is None or t.dtype not in _FLOAT:
            continue
        source = inits.get(v.meta.get("copy_of", ""))  # unshare's copies (passes/unshare.py)
        if source is not None and source.const_value is not None and tuple(source.const_value.shape) == tuple(t.shape):
            continue
        total += math.prod(t.shape)
    return int(total)


class CostModel:
    def __init__(self, model: ir.Model, flow: Flow, groups: list[Group], mac_terms=None):
        self.sizes = flow.sizes
        self.values: list[tuple[float, list[DimKey]]] = []
        for v in model.graph.initializers.values():
            t = v.const_value
            if t is None or t.dtype not in _FLOAT:
                continue
            numel = float(math.prod(t.shape))
            self.values.append((numel, [(v.name, a) for a in range(len(t.shape))]))
        # MAC terms: the flow's own, or those at the deployment shape (analysis.deploy_shape).
        self.terms = mac_terms if mac_terms is not None else flow.mac_terms
        # For every axis inside a group: how many of its positions each unit owns.
        self.owner: dict[DimKey, tuple[int, np.ndarray]] = {}
        for g in groups:
            for key, units in g.members.items():
                if len(units):
                    self.owner[key] = (g.id, np.bincount(units, minlength=g.n_units).astype(float))
        self._fill_unit_costs(groups)

    def ratio(self, keys: list[DimKey], removed: dict[int, np.ndarray] | None) -> float:
        r = 1.0
        if not removed:
            return r
        for k in keys:
            own = self.owner.get(k)
            if own is None or own[0] not in removed:
                continue
            size = self.sizes[k]
            r *= (size - own[1] @ removed[own[0]]) / size
        return r

    def totals(self, removed: dict[int, np.ndarray] | None = None) -> Totals:
        """Params and MACs after removing units (`removed`: group id -> bool mask)."""
        params = sum(n * self.ratio(keys, removed) for n, keys in self.values)
        macs = sum(t * self.ratio(keys, removed) for _, t, keys in self.terms)
        return Totals(params, macs)

    def _fill_unit_costs(self, groups: list[Group]) -> None:
        by_id = {g.id: g for g in groups}
        for g in groups:
            g.params_per_unit = np.zeros(g.n_units)
            g.macs_per_unit = np.zeros(g.n_units)
        for n, keys in self.values:
            for k in keys:
                if k in self.owner:
                    gid, counts = self.owner[k]
                    by_id[gid].params_per_unit += counts * n / self.sizes[k]
        for _, t, keys in self.terms:
            for k in keys:
                if k in self.owner:
                    gid, counts = self.owner[k]
                    by_id[gid].macs_per_unit += counts * t / self.sizes[k]
