"""The data-free baselines fpgm (passes/fpgm.py) and lamp (passes/lamp.py) against scores
computed by hand, and end to end through the pipeline's checks."""

from __future__ import annotations

import numpy as np

import graphprune
from graph_kit import N, build, context, group_of, save, w
from graphprune.passes.fpgm import distance_sums
from graphprune.passes.lamp import lamp_scores


def _model(c1=None):
    return build([N("Conv", ["x", "c1"], ["a"]), N("Relu", ["a"], ["r"]), N("Conv", ["r", "c2"], ["y"])],
                 {"c1": w(6, 3, 3, 3) if c1 is None else c1, "c2": w(4, 6, 1, 1)}, {"x": [1, 3, 5, 5]},
                 {"y": [1, 4, 3, 3]})


def _scores(spec, proto=None):
    ctx = context(proto or _model(), passes=("normalize", spec))
    g = group_of(ctx.analysis(), "c1", 0)
    inits = {k: v.const_value.numpy().astype(np.float64) for k, v in ctx.model.graph.initializers.items()}
    return ctx.scores[g.id], inits


def test_fpgm_sums_distances_between_producer_rows():
    got, i = _scores("fpgm:normalize=none")
    rows = i["c1"].reshape(6, -1)
    want = np.array([sum(np.linalg.norm(r - q) for q in rows) for r in rows])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got, i = _scores("fpgm:roles=out+in,normalize=none")  # a new model: w() draws new weights
    rows, cols = i["c1"].reshape(6, -1), i["c2"].reshape(4, 6).T
    want = [np.array([sum(np.linalg.norm(r - q) for q in m) for r in m]) for m in (rows, cols)]
    np.testing.assert_allclose(got, (want[0] + want[1]) / 2, rtol=1e-6)


def test_fpgm_ranks_the_unit_at_the_median_lowest_and_blocks_agree():
    rng = np.random.default_rng(0)
    c1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    c1[2] = c1[[0, 1, 3, 4, 5]].mean(0)  # the centre of the others: the most replaceable filter
    got, _ = _scores("fpgm", _model(c1))
    assert int(np.argmin(got)) == 2
    big = rng.standard_normal((300, 40))
    np.testing.assert_allclose(distance_sums(big, 0, block=7), distance_sums(big, 0, block=1024), rtol=1e-9)
    perm = rng.permutation(300)
    np.testing.assert_allclose(distance_sums(big[perm], 0), distance_sums(big, 0)[perm], rtol=1e-9)


def test_lamp_divides_l2_by_the_mass_above():
    s = np.array([4.0, 1.0, 3.0, 2.0])
    np.testing.assert_allclose(lamp_scores(s), [4 / 4, 1 / 10, 3 / 7, 2 / 9])
    np.testing.assert_array_equal(lamp_scores(np.zeros(3)), np.zeros(3))
    got, i = _scores("lamp")
    l2 = np.mean([(i["c1"] ** 2).sum((1, 2, 3)), (i["c2"] ** 2).sum((0, 2, 3))], axis=0)
    np.testing.assert_allclose(got, lamp_scores(l2), rtol=1e-6)
    assert np.isclose(got.max(), 1.0)


def test_both_prune_through_the_checked_pipeline(tmp_path):
    path = save(_model(), tmp_path)
    for crit in ("fpgm", "lamp"):
        out = str(tmp_path / f"{crit}.onnx")
        rep = graphprune.prune(path, graphprune.Options(passes=[crit, "select:ratio=0.5,round_to=1"], output=out,
                                                        quiet=True))
        assert rep["after"]["params"] < rep["before"]["params"]
        assert rep["verification"]["checker"] == "passed"
