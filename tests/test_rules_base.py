"""graphprune/analysis/rules/base.py: the helpers rules share. identity_all ties equal
ranks axis by axis; broadcast ties equal axes, carries size-1 ones and right-aligns
shorter shapes; block_map maps a flat axis to its outer units."""

from __future__ import annotations

import numpy as np

from graph_kit import N, analyse, build, connected, w
from graphprune.analysis.rules.base import block_map


def test_block_map():
    outer, flat = block_map(3, 2)
    np.testing.assert_array_equal(outer, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(flat, np.arange(6))


def test_broadcast_right_aligns_and_carries_size_one_axes():
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Add", ["a", "c"], ["s"]), N("Mul", ["s", "v"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "c": w(6, 1, 1), "v": w(4)}, {"x": [1, 3, 4, 4]}, {"y": [1, 6, 4, 4]})
    a = analyse(proto)
    assert connected(a, ("c", 0), ("a", 1))   # (6, 1, 1) right-aligned onto (1, 6, 4, 4)
    assert not connected(a, ("c", 1), ("a", 2))  # a size-1 axis is carried, not coupled
    assert connected(a, ("v", 0), ("s", 3))   # (4,) onto the last axis
    assert not a.flow.pins.get(("c", 1))


def test_identity_all_ties_every_axis():
    a = analyse(build([N("Relu", ["x"], ["y"])], {}, {"x": [2, 3, 5]}, {"y": [2, 3, 5]}))
    assert all(connected(a, ("x", i), ("y", i)) for i in range(3))
