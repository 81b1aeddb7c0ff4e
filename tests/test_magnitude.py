"""The data-free criteria: l1/l2 (passes/magnitude.py), bn-scale (bn_scale.py) and random
(random_score.py), against scores computed by hand."""

from __future__ import annotations

import numpy as np

from graph_kit import N, build, context, group_of, w


def _model():
    return build([N("Conv", ["x", "c1"], ["a"]), N("BatchNormalization", ["a", "g", "b", "mu", "var"], ["n"]),
                  N("Relu", ["n"], ["r"]), N("Conv", ["r", "c2"], ["y"])],
                 {"c1": w(6, 3, 3, 3), "g": w(6), "b": w(6), "mu": w(6), "var": np.abs(w(6)) + 1,
                  "c2": w(4, 6, 1, 1)}, {"x": [1, 3, 5, 5]}, {"y": [1, 4, 3, 3]})


def _scores(spec):
    proto = _model()
    ctx = context(proto, passes=("normalize", spec))
    g = group_of(ctx.analysis(), "c1", 0)
    inits = {k: v.const_value.numpy().astype(np.float64) for k, v in ctx.model.graph.initializers.items()}
    return ctx.scores[g.id], inits


def test_l1_l2_average_the_slices_then_normalize_by_the_mean():
    for p, spec in ((1, "l1"), (2, "l2")):
        got, i = _scores(spec)
        parts = [(np.abs(i["c1"]) ** p).sum((1, 2, 3)), (np.abs(i["c2"]) ** p).sum((0, 2, 3)), np.abs(i["g"]) ** p]
        raw = np.mean(parts, axis=0)
        np.testing.assert_allclose(got, raw / raw.mean(), rtol=1e-6)
    got, i = _scores("l1:roles=out,normalize=none")
    np.testing.assert_allclose(got, np.abs(i["c1"]).sum((1, 2, 3)), rtol=1e-6)


def test_bn_scale_and_random():
    got, i = _scores("bn-scale:normalize=none")
    np.testing.assert_allclose(got, np.abs(i["g"]), rtol=1e-6)
    a, _ = _scores("random:seed=3")
    b, _ = _scores("random:seed=3")
    c, _ = _scores("random:seed=4")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and ((a >= 0) & (a < 1)).all()
