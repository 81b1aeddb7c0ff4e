"""Rules of graphprune/analysis/rules/conv_linear.py: which weight axes a Conv,
ConvTranspose, Gemm and MatMul tie to their activations, the roles that scoring reads,
the index maps of grouped and depthwise convolutions, the rewrite of `group`, and MACs
that scale exactly with the kept channels."""

from __future__ import annotations

import numpy as np
import pytest

from graph_kit import N, analyse, build, coupled, group_of, save, w
from oracles import inert_removal_diff, prune_to_file


def _roles(g, name):
    return {(axis, role) for (n, axis), role, _ in g.roles if n == name}


def test_conv_ties_rows_columns_and_bias():
    proto = build([N("Conv", ["x", "w1", "b1"], ["a"]), N("Relu", ["a"], ["r"]), N("Conv", ["r", "w2"], ["y"])],
                  {"w1": w(6, 3, 3, 3), "b1": w(6), "w2": w(4, 6, 1, 1)}, {"x": [1, 3, 5, 5]}, {"y": [1, 4, 3, 3]})
    a = analyse(proto)
    g = group_of(a, "w1", 0)
    assert coupled(a, ("w1", 0), ("b1", 0), ("a", 1), ("w2", 1))
    assert {(0, "out")} <= _roles(g, "w1") and {(1, "in")} <= _roles(g, "w2") and {(0, "bias")} <= _roles(g, "b1")


def test_depthwise_conv_maps_input_channels_to_their_group(tmp_path):
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Conv", ["a", "dw"], ["d"], group=6),
                   N("Conv", ["d", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "dw": w(12, 1, 3, 3), "w2": w(4, 12, 1, 1)},  # channel multiplier 2
                  {"x": [1, 3, 5, 5]}, {"y": [1, 4, 3, 3]})
    a = analyse(proto)
    g = group_of(a, "w1", 0)
    assert coupled(a, ("w1", 0), ("dw", 0), ("w2", 1)) and g.n_units == 6
    np.testing.assert_array_equal(g.members[("dw", 0)], np.repeat(g.members[("w1", 0)], 2))
    path = save(proto, tmp_path)
    diff, _, _ = inert_removal_diff(path, tmp_path)
    assert diff < 1e-5
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.5"])
    import onnx

    dw = next(n for n in onnx.load(str(tmp_path / "p.onnx")).graph.node if n.input[1].startswith("dw"))
    assert next(at.i for at in dw.attribute if at.name == "group") == 3
    assert report["verification"]["checker"] == "passed"


def test_grouped_conv_units_are_one_channel_of_every_group():
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Conv", ["a", "gw"], ["y"], group=2)],
                  {"w1": w(8, 3, 1, 1), "gw": w(6, 4, 1, 1)}, {"x": [1, 3, 4, 4]}, {"y": [1, 6, 4, 4]})
    a = analyse(proto)
    units = group_of(a, "w1", 0).members[("w1", 0)]  # input j of each group shares weight column j
    assert (units[:4] == units[4:]).all() and len(set(units[:4])) == 4
    out = group_of(a, "gw", 0).members[("gw", 0)]   # the k-th output of every group goes together
    assert (out[:3] == out[3:]).all() and len(set(out)) == 3


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_ties_the_contraction_to_the_columns(tmp_path, trans_b):
    w2 = w(8, 5) if not trans_b else w(5, 8)
    proto = build([N("Gemm", ["x", "w1", "b1"], ["h"]), N("Relu", ["h"], ["r"]),
                   N("Gemm", ["r", "w2", "b2"], ["y"], transB=trans_b)],
                  {"w1": w(6, 8), "b1": w(8), "w2": w2, "b2": w(5)}, {"x": [2, 6]}, {"y": [2, 5]})
    a = analyse(proto)
    assert coupled(a, ("w1", 1), ("b1", 0), ("h", 1), ("w2", 1 if trans_b else 0))
    assert _roles(group_of(a, "w1", 1), "b1") == {(0, "bias")}
    diff, _, _ = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert diff < 1e-5


def test_matmul_with_the_constant_on_either_side():
    proto = build([N("MatMul", ["x", "w1"], ["h"]), N("Relu", ["h"], ["r"]), N("MatMul", ["wl", "r"], ["y"])],
                  {"w1": w(6, 8), "wl": w(3, 4)}, {"x": [4, 6]}, {"y": [3, 8]})
    a = analyse(proto)
    assert coupled(a, ("w1", 1), ("h", 1), ("y", 1))   # the neuron axis runs to the output: pinned
    assert group_of(a, "w1", 1).pinned.all()
    assert coupled(a, ("x", 0), ("wl", 1))             # rows of x meet the left constant's columns


def test_conv_transpose_ties_its_in_and_out_axes(tmp_path):
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("ConvTranspose", ["a", "wt", "bt"], ["u"], strides=[2, 2]),
                   N("Conv", ["u", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "wt": w(6, 5, 2, 2), "bt": w(5), "w2": w(4, 5, 1, 1)},
                  {"x": [1, 3, 4, 4]}, {"y": [1, 4, 8, 8]})
    a = analyse(proto)
    assert coupled(a, ("w1", 0), ("wt", 0)) and coupled(a, ("wt", 1), ("bt", 0), ("w2", 1))
    diff, groups, _ = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert groups == 2 and diff < 1e-5


def test_macs_scale_with_the_kept_channels():
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Conv", ["a", "w2"], ["y"])],
                  {"w1": w(8, 3, 3, 3), "w2": w(4, 8, 1, 1)}, {"x": [1, 3, 6, 6]}, {"y": [1, 4, 4, 4]})
    a = analyse(proto)
    dense = 8 * 3 * 9 * 16 + 4 * 8 * 16                # (4 x 4 outputs after the valid 3x3 conv)
    assert a.cost.totals().macs == dense
    g = group_of(a, "w1", 0)
    mask = np.zeros(g.n_units)
    mask[:2] = 1                                      # 2 of 8 channels removed
    assert a.cost.totals({g.id: mask}).macs == pytest.approx(dense * 6 / 8)
