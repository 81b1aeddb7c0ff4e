"""graphprune/analysis/cost.py: params count floating-point initializers, MACs the
Conv/Gemm/MatMul products; the cost after a removal plan equals the cost of the model
really pruned that way, and per-unit costs add up to what a unit frees."""

from __future__ import annotations

import numpy as np
import pytest

from graph_kit import N, analyse, build, context, group_of, i64, w
from graphprune.context import unit_masks
from graphprune.pipeline import run_passes


def _mlp():
    return build([N("MatMul", ["x", "w1"], ["h"]), N("Add", ["h", "b1"], ["hb"]), N("Relu", ["hb"], ["r"]),
                  N("MatMul", ["r", "w2"], ["y"])],
                 {"w1": w(6, 10), "b1": w(10), "w2": w(10, 4), "shape": i64(1, 2)}, {"x": [3, 6]}, {"y": [3, 4]})


def test_dense_totals_by_hand():
    a = analyse(_mlp())
    assert a.cost.totals().params == 6 * 10 + 10 + 10 * 4  # the int64 constant does not count
    assert a.cost.totals().macs == 3 * 6 * 10 + 3 * 10 * 4


def test_cost_after_a_plan_equals_the_pruned_model():
    ctx = context(_mlp(), passes=("normalize", "l1", "select:ratio=0.3"))
    a = ctx.analysis()
    predicted = a.cost.totals(ctx.removed_masks())
    run_passes(ctx, ["remove", "cleanup"])
    actual = ctx.analysis().cost.totals()
    assert (predicted.params, predicted.macs) == (actual.params, actual.macs)
    assert actual.params == 6 * 7 + 7 + 7 * 4


def test_unit_costs_are_what_one_unit_frees():
    a = analyse(_mlp())
    g = group_of(a, "w1", 1)
    np.testing.assert_allclose(g.params_per_unit, 6 + 1 + 4)
    np.testing.assert_allclose(g.macs_per_unit, 3 * 6 + 3 * 4)
    one = unit_masks(a.groups, {g.id: np.array([0])})
    dense = a.cost.totals()
    assert dense.params - a.cost.totals(one).params == pytest.approx(g.params_per_unit[0])
