"""Rules of graphprune/analysis/rules/reshape.py: a flatten ties each channel to its block
of features, a split into heads ties each head to its block of rows, a channel shuffle
keeps one channel of every shuffle group together, Reshape targets are rewritten to the
kept sizes, and a target of unknown origin pins."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from graph_kit import N, analyse, build, coupled, group_of, i64, save, w
from graphprune.analysis.rules.reshape import align
from oracles import inert_removal_diff, prune_to_file


def test_align_splits_shapes_into_runs_of_equal_product():
    assert align((2, 6, 4), (2, 24)) == [([0], [0]), ([1, 2], [1])]
    assert align((2, 12), (2, 3, 4)) == [([0], [0]), ([1], [1, 2])]
    assert align((5, 7), (6, 6)) is None


def test_flatten_ties_each_channel_to_its_block(tmp_path):
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Flatten", ["a"], ["f"]), N("Gemm", ["f", "fc"], ["y"], transB=1)],
                  {"w1": w(6, 3, 2, 2), "fc": w(5, 6 * 9)}, {"x": [1, 3, 4, 4]}, {"y": [1, 5]})
    a = analyse(proto)
    g = group_of(a, "w1", 0)
    np.testing.assert_array_equal(g.members[("fc", 1)], np.repeat(g.members[("w1", 0)], 9))
    diff, _, _ = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert diff < 1e-5


def _heads(attention=True, n_heads=3, head_dim=4):
    """x -> q -> (b, s, h, d) -> (b, h, s, d) -> [self-attention] -> back to (b, s, h*d) -> o."""
    d = n_heads * head_dim
    mix = ([N("Transpose", ["t"], ["tk"], perm=[0, 1, 3, 2]), N("MatMul", ["t", "tk"], ["sc"]),
            N("Softmax", ["sc"], ["p"], axis=-1), N("MatMul", ["p", "t"], ["s"])] if attention else
           [N("Softmax", ["t"], ["s"], axis=-1)])
    return build([N("MatMul", ["x", "wq"], ["q"]), N("Reshape", ["q", "split"], ["h"]),
                  N("Transpose", ["h"], ["t"], perm=[0, 2, 1, 3]), *mix,
                  N("Transpose", ["s"], ["u"], perm=[0, 2, 1, 3]), N("Reshape", ["u", "merge"], ["m"]),
                  N("MatMul", ["m", "wo"], ["y"])],
                 {"wq": w(8, d), "split": i64(2, 5, n_heads, head_dim), "merge": i64(2, 5, d), "wo": w(d, 8)},
                 {"x": [2, 5, 8]}, {"y": [2, 5, 8]})


def test_a_split_into_heads_makes_a_head_one_unit(tmp_path):
    a = analyse(_heads())
    g = group_of(a, "wq", 1)
    assert g.n_units == 3 and g.kind == "heads" and coupled(a, ("wq", 1), ("wo", 0))
    np.testing.assert_array_equal(g.members[("wq", 1)], np.repeat(np.arange(3), 4))
    path = save(_heads(), tmp_path)
    prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.3"])
    out = onnx.load(str(tmp_path / "p.onnx"))
    targets = {tuple(onnx.numpy_helper.to_array(i)) for i in out.graph.initializer if i.data_type == 7}
    assert (2, 5, 2, 4) in targets and (2, 5, 8) in targets  # one head gone, head_dim kept


def test_blocks_that_no_attention_reads_are_channels():
    """The same blocks without Q·Kᵀ (a pixel shuffle, a grouped reshape) are not heads:
    `select:heads=` must not apply to them."""
    g = group_of(analyse(_heads(attention=False)), "wq", 1)
    assert g.n_units == 3 and g.kind == "channels"


def test_channel_shuffle_keeps_one_channel_of_every_group_together(tmp_path):
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("Reshape", ["a", "s1"], ["r"]),
                   N("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]), N("Reshape", ["t", "s2"], ["m"]),
                   N("Conv", ["m", "w2"], ["y"])],
                  {"w1": w(6, 3, 1, 1), "s1": i64(1, 2, 3, 4, 4), "s2": i64(1, 6, 4, 4), "w2": w(4, 6, 1, 1)},
                  {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4]})
    a = analyse(proto)
    g = group_of(a, "w1", 0)
    units = g.members[("w1", 0)]
    assert g.n_units == 3 and (units[:3] == units[3:]).all() and g.kind == "channels"
    diff, _, _ = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert diff < 1e-5


def test_a_run_time_reshape_target_of_unknown_origin_pins():
    proto = build([N("MatMul", ["x", "wq"], ["q"]), N("Reshape", ["q", "target"], ["h"]),
                   N("Reshape", ["h", "back"], ["m"]), N("MatMul", ["m", "wo"], ["y"])],
                  {"wq": w(8, 12), "back": i64(2, 5, 12), "wo": w(12, 8)},
                  {"x": [2, 5, 8], "target": ([4], onnx.TensorProto.INT64)}, {"y": [2, 5, 8]})
    assert group_of(analyse(proto), "wq", 1).pinned.all()
