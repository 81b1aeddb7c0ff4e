"""Rules of graphprune/analysis/rules/layout.py: Transpose permutes axes, Squeeze and
Unsqueeze skip the size-1 axes, Concat and Split map positions with offsets (and Split's
sizes are rewritten), Slice and Pad map the kept range (a strided slice in blocks of its
step, so complementary slices agree), Expand and Tile pass the axes they
do not repeat, Gather over the channels pins them, and a Shape read that reaches arithmetic
pins its axis."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from graph_kit import N, analyse, build, connected, coupled, group_of, i64, pins, save, w
from oracles import inert_removal_diff, prune_to_file

X = {"x": [1, 3, 4, 4]}


def _conv(mid, w2, inits=None, y=(1, 4, 4, 4), opset=17):
    return build([N("Conv", ["x", "w1"], ["a"]), *mid, N("Conv", ["m", "w2"], ["y"])],
                 {"w1": w(6, 3, 1, 1), "w2": w2, **(inits or {})}, X, {"y": list(y)}, opset=opset)


def test_transpose_follows_the_permutation():
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Transpose", ["a"], ["t"], perm=[0, 2, 3, 1]),
                   N("MatMul", ["t", "m1"], ["h"]), N("Transpose", ["h"], ["y"], perm=[0, 3, 1, 2])],
                  {"w1": w(6, 3, 1, 1), "m1": w(6, 5)}, X, {"y": [1, 5, 4, 4]})
    a = analyse(proto)
    assert coupled(a, ("a", 1), ("t", 3), ("m1", 0)) and connected(a, ("a", 2), ("t", 1))
    assert not connected(a, ("a", 2), ("t", 2))


def test_squeeze_and_unsqueeze_skip_size_one_axes(tmp_path):
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("GlobalAveragePool", ["a"], ["p"]),
                   N("Squeeze", ["p", "ax"], ["s"]), N("Unsqueeze", ["s", "ax"], ["u"]),
                   N("Conv", ["u", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "ax": i64(2, 3), "w2": w(4, 6, 1, 1)}, X, {"y": [1, 4, 1, 1]})
    a = analyse(proto)
    assert coupled(a, ("w1", 0), ("s", 1), ("u", 1), ("w2", 1))
    diff, _, _ = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert diff < 1e-5


def test_concat_maps_positions_with_offsets(tmp_path):
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Conv", ["x", "w3"], ["b"]), N("Concat", ["a", "b"], ["m"], axis=1),
                   N("Conv", ["m", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "w3": w(2, 3, 1, 1), "w2": w(4, 8, 1, 1)}, X, {"y": [1, 4, 4, 4]})
    a = analyse(proto)
    g = group_of(a, "w1", 0)
    np.testing.assert_array_equal(g.members[("m", 1)][:6], g.members[("w1", 0)])
    np.testing.assert_array_equal(g.members[("m", 1)][6:], g.members[("w3", 0)])
    diff, _, _ = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert diff < 1e-5


@pytest.mark.parametrize("opset", [11, 13])
def test_split_sizes_are_rewritten(tmp_path, opset):
    split = ([N("Split", ["a"], ["p", "q"], axis=1, split=[4, 2])] if opset < 13 else
             [N("Split", ["a", "sz"], ["p", "q"], axis=1)])
    proto = build([N("Conv", ["x", "w1"], ["a"]), *split, N("Conv", ["p", "w2"], ["y1"]), N("Conv", ["q", "w3"], ["y2"])],
                  {"w1": w(6, 3, 1, 1), "w2": w(4, 4, 1, 1), "w3": w(4, 2, 1, 1),
                   **({"sz": i64(4, 2)} if opset >= 13 else {})}, X, {"y1": [1, 4, 4, 4], "y2": [1, 4, 4, 4]},
                  opset=opset)
    path = save(proto, tmp_path)
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.5"])
    assert report["verification"]["checker"] == "passed" and report["after"]["params"] < report["before"]["params"]
    diff, _, _ = inert_removal_diff(path, tmp_path)
    assert diff < 1e-5


def test_slice_and_pad_map_the_kept_range(tmp_path):
    proto = _conv([N("Slice", ["a", "st", "en", "axs"], ["s"]), N("Pad", ["s", "pads"], ["m"])], w(4, 6, 1, 1),
                  {"st": i64(1), "en": i64(5), "axs": i64(1), "pads": i64(0, 1, 0, 0, 0, 1, 0, 0)})
    a = analyse(proto)
    g = group_of(a, "w1", 0)
    np.testing.assert_array_equal(g.members[("s", 1)], g.members[("w1", 0)][1:5])
    np.testing.assert_array_equal(g.members[("m", 1)][1:5], g.members[("s", 1)])
    diff, _, _ = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert diff < 1e-5


def test_a_whole_slice_of_a_dynamic_batch_axis_passes_the_channels(tmp_path):
    """x[:, ...] on a batch of unknown size (the dynamo export of an option-A shortcut writes
    one): a Slice that takes all of that axis leaves the channels coupled; one that takes a
    part of it cannot be mapped and pins."""
    def model(end):
        return build([N("Conv", ["x", "w1"], ["a"]), N("Slice", ["a", "st", "en", "axs"], ["m"]),
                      N("Conv", ["m", "w2"], ["y"])],
                     {"w1": w(6, 3, 1, 1), "w2": w(4, 6, 1, 1), "st": i64(0), "en": i64(end), "axs": i64(0)},
                     {"x": ["N", 3, 4, 4]}, {"y": ["N", 4, 4, 4]})

    whole = model(2**63 - 1)
    a = analyse(whole)
    assert coupled(a, ("w1", 0), ("m", 1), ("w2", 1)) and not group_of(a, "w1", 0).pinned.any()
    diff, groups, units = inert_removal_diff(save(whole, tmp_path), tmp_path)
    assert diff < 1e-5 and units > 0
    assert group_of(analyse(model(1)), "w1", 0).pinned.all()


def test_interleaved_slices_make_pairs_one_unit(tmp_path):
    """x[:, 0::2] * x[:, 1::2] (GPT-OSS's interleaved gate and up): channels 2j and 2j+1 are
    one unit with position j of both slices, and removing inert pairs changes nothing."""
    proto = _conv([N("Slice", ["a", "s0", "en", "axs", "two"], ["even"]),
                   N("Slice", ["a", "s1", "en", "axs", "two"], ["odd"]), N("Mul", ["even", "odd"], ["m"])],
                  w(4, 3, 1, 1), {"s0": i64(0), "s1": i64(1), "en": i64(6), "axs": i64(1), "two": i64(2)})
    a = analyse(proto)
    g = group_of(a, "w1", 0)
    assert g.n_units == 3 and not g.pinned.any()
    np.testing.assert_array_equal(g.members[("w1", 0)], np.repeat(g.members[("m", 1)], 2))
    diff, groups, units = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert diff < 1e-5 and units > 0


def test_tile_passes_only_the_axes_it_does_not_repeat():
    proto = _conv([N("Tile", ["a", "reps"], ["m"])], w(4, 12, 1, 1), {"reps": i64(1, 2, 1, 1)})
    a = analyse(proto)
    assert group_of(a, "w1", 0).pinned.all()  # the channel axis is repeated: pinned
    assert any("mixes or drops axis 1" in r for r in pins(a, "a", 1))


def test_gather_over_the_channels_pins_them():
    proto = _conv([N("Gather", ["a", "idx"], ["m"], axis=1)], w(4, 2, 1, 1), {"idx": i64(0, 3)})
    assert group_of(analyse(proto), "w1", 0).pinned.all()


def test_a_shape_read_that_reaches_arithmetic_pins_its_axis():
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Shape", ["a"], ["s"]), N("Cast", ["s"], ["sf"], to=1),
                   N("ReduceSum", ["sf"], ["n"], keepdims=1), N("Div", ["a", "n"], ["m"]),
                   N("Conv", ["m", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "w2": w(4, 6, 1, 1)}, {"x": [1, 3, "h", "w"]}, {"y": [1, 4, "h", "w"]})
    a = analyse(proto)
    assert group_of(a, "w1", 0).pinned.all()
    assert any("read at run time" in r for r in pins(a, "a", 1))


def test_expand_of_a_per_channel_gate(tmp_path):
    proto = _conv([N("GlobalAveragePool", ["a"], ["g"]), N("Expand", ["g", "shape"], ["e"]),
                   N("Mul", ["a", "e"], ["m"])], w(4, 6, 1, 1), {"shape": i64(1, 6, 4, 4)})
    path = save(proto, tmp_path)
    prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.5"])
    out = onnx.load(str(tmp_path / "p.onnx"))
    expand = next(n for n in out.graph.node if n.op_type == "Expand")
    target = next(i for i in out.graph.initializer if i.name == expand.input[1])
    assert list(onnx.numpy_helper.to_array(target)) == [1, 3, 4, 4]
