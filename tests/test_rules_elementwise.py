"""Rules of graphprune/analysis/rules/elementwise.py on small hand-built graphs: unary
ops pass every axis, n-ary ops broadcast (an equal axis is the same axis, a size-1 axis is
carried, not coupled), Clip's scalars couple nothing, PRelu's slope is sliced with the
channels it scales."""

from __future__ import annotations

import pytest

from graph_kit import N, analyse, build, coupled, group_of, pins, save, w
from oracles import inert_removal_diff

CONV = [N("Conv", ["x", "w1"], ["a"])]
X, Y = {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4]}


def _chain(mid, inits=None):
    return build(CONV + mid + [N("Conv", ["m", "w2"], ["y"])], {"w1": w(6, 3, 1, 1), "w2": w(4, 6, 1, 1), **(inits or {})},
                 X, Y)


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Gelu", "Abs", "HardSwish", "Softplus"])
def test_unary_ops_pass_the_channels(op):
    a = analyse(_chain([N(op, ["a"], ["m"])], ), )
    assert coupled(a, ("w1", 0), ("a", 1), ("m", 1), ("w2", 1))
    assert not group_of(a, "w1", 0).pinned.any()


def test_per_channel_constant_is_coupled_and_sliced(tmp_path):
    proto = _chain([N("Mul", ["a", "s"], ["m"])], {"s": w(6, 1, 1)})
    a = analyse(proto)
    assert coupled(a, ("w1", 0), ("s", 0), ("w2", 1))
    diff, groups, _ = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert groups >= 1 and diff < 1e-5


def test_size_one_axes_broadcast_without_coupling():
    # A scalar-like (1, 1, 1) constant broadcasts over the channels: carried, not a member.
    a = analyse(_chain([N("Add", ["a", "c"], ["m"])], {"c": w(1, 1, 1)}))
    g = group_of(a, "w1", 0)
    assert ("c", 0) not in g.members and not g.pinned.any()


def test_two_activations_added_are_one_group():
    proto = build(CONV + [N("Conv", ["x", "w3"], ["b"]), N("Add", ["a", "b"], ["m"]), N("Conv", ["m", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "w3": w(6, 3, 1, 1), "w2": w(4, 6, 1, 1)}, X, Y)
    assert coupled(analyse(proto), ("w1", 0), ("w3", 0), ("w2", 1))


def test_clip_scalars_couple_nothing_and_prelu_slopes_are_sliced(tmp_path):
    proto = _chain([N("Clip", ["a", "lo", "hi"], ["c"]), N("PRelu", ["c", "slope"], ["m"])],
                   {"lo": w(), "hi": w() + 2, "slope": w(6, 1, 1)})
    a = analyse(proto)
    g = group_of(a, "w1", 0)
    assert ("slope", 0) in g.members and ("lo", 0) not in g.members
    assert any(role == "slope" for (name, _), role, _ in g.roles if name == "slope")
    diff, _, _ = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert diff < 1e-5


def test_where_broadcasts_its_three_inputs():
    proto = _chain([N("Greater", ["a", "t"], ["cond"]), N("Where", ["cond", "a", "z"], ["m"])],
                   {"t": w(6, 1, 1), "z": w(1, 1, 1)})
    a = analyse(proto)
    assert coupled(a, ("w1", 0), ("t", 0), ("cond", 1), ("m", 1))
    assert not pins(a, "m", 1)
