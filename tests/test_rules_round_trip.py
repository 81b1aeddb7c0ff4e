"""Rules of graphprune/analysis/rules/round_trip.py: a merge round trip (Reshape folds
batch and heads into one axis, a Transpose works on the others, a Reshape splits them back,
as exporters write k.transpose(-2, -1)) ties heads end to end; an op inside the round trip
that mixes the merged axis breaks it, and the heads stay pinned."""

from __future__ import annotations

from graph_kit import N, analyse, build, coupled, group_of, i64, save, w
from oracles import inert_removal_diff, prune_to_file


def _round_trip(inside):
    return build([N("MatMul", ["x", "wq"], ["q"]), N("Reshape", ["q", "split"], ["h"]),
                  N("Transpose", ["h"], ["t"], perm=[0, 2, 1, 3]),
                  N("Reshape", ["t", "fold"], ["f"]), *inside,
                  N("Reshape", ["ft", "unfold"], ["k"]), N("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
                  N("Transpose", ["kt"], ["u"], perm=[0, 2, 1, 3]), N("Reshape", ["u", "merge"], ["m"]),
                  N("MatMul", ["m", "wo"], ["y"])],
                 {"wq": w(8, 12), "split": i64(2, 5, 3, 4), "fold": i64(6, 5, 4), "unfold": i64(2, 3, 4, 5),
                  "merge": i64(2, 5, 12), "wo": w(12, 8)}, {"x": [2, 5, 8]}, {"y": [2, 5, 8]})


def test_a_merge_round_trip_ties_heads_end_to_end(tmp_path):
    """(b, h, s, d) -> (b*h, s, d) -> Transpose -> (b, h, d, s): the heads come out as they
    went in, although the merged axis mixes batch and heads."""
    proto = _round_trip([N("Transpose", ["f"], ["ft"], perm=[0, 2, 1])])
    a = analyse(proto)
    g = group_of(a, "wq", 1)
    assert g is not None and coupled(a, ("wq", 1), ("k", 1), ("wo", 0)) and not g.pinned.any()
    path = save(proto, tmp_path)
    diff, groups, _ = inert_removal_diff(path, tmp_path)
    assert groups >= 1 and diff < 1e-5
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.3"])
    assert report["verification"]["checker"] == "passed"



def test_an_op_that_mixes_the_merged_axis_breaks_the_round_trip():
    """A Softmax over the merged (batch*heads) axis mixes heads with each other."""
    proto = _round_trip([N("Softmax", ["f"], ["sm"], axis=0), N("Transpose", ["sm"], ["ft"], perm=[0, 2, 1])])
    assert group_of(analyse(proto), "wq", 1).pinned.all()
