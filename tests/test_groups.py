"""graphprune/analysis/groups.py: connected components that join parameters with
activations become groups; positions joined by index maps become units (union-find);
a unit on a pinned axis is pinned; kinds and labels; a group of unknown size has no units."""

from __future__ import annotations

import numpy as np

from graph_kit import N, analyse, build, group_of, i64, w
from graphprune.analysis.groups import _union_find


def test_union_find_labels_components():
    labels = _union_find(6, np.array([0, 2, 4]), np.array([1, 3, 2]))
    assert labels[0] == labels[1] and labels[2] == labels[3] == labels[4] and labels[5] == 5
    assert len(set(labels)) == 3
    np.testing.assert_array_equal(_union_find(3, np.zeros(0, int), np.zeros(0, int)), [0, 1, 2])


def test_units_of_a_plain_conv_chain_are_its_channels():
    proto = build([N("Conv", ["x", "w1", "b1"], ["a"]), N("Relu", ["a"], ["r"]), N("Conv", ["r", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "b1": w(6), "w2": w(4, 6, 1, 1)}, {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4]})
    a = analyse(proto)
    g = group_of(a, "w1", 0)
    assert g.n_units == 6 and g.kind == "channels" and g.label() == "w1[0]"
    for key in [("w1", 0), ("b1", 0), ("a", 1), ("r", 1), ("w2", 1)]:
        np.testing.assert_array_equal(g.members[key], g.members[("w1", 0)])
    np.testing.assert_array_equal(g.positions(("w2", 1), np.array([g.members[("w2", 1)][2]])), [2])
    assert len(g.prunable) == 6


def test_groups_need_a_weight_and_an_activation():
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Conv", ["a", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "w2": w(4, 6, 1, 1)}, {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4]})
    a = analyse(proto)
    assert group_of(a, "x", 2) is None          # spatial axes hold no weight
    assert group_of(a, "x", 1).pinned.all()     # the input channels reach the graph input


def test_a_pinned_axis_pins_only_the_units_on_it():
    """A Slice keeps channels 0..3 of 6 for a second consumer that ends at the output;
    channels 4 and 5 never reach it and stay prunable."""
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Slice", ["a", "st", "en", "ax"], ["s"]),
                   N("Conv", ["a", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "st": i64(0), "en": i64(4), "ax": i64(1), "w2": w(4, 6, 1, 1)},
                  {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4], "s": [1, 4, 4, 4]})
    g = group_of(analyse(proto), "w1", 0)
    assert list(g.pinned) == [True] * 4 + [False] * 2 and list(g.prunable) == [4, 5]


def test_heads_kind_is_a_run_of_rows_per_unit():
    from fused_nets import ms_mha

    assert group_of(analyse(ms_mha()), "wq", 1).kind == "heads"
