"""graphprune/scoring.py: per-position scores summed into units, combined over slices
(sum, mean, max, geometric mean) and normalized within a group; chunked norms equal the
direct ones; the ScorePass base scores only the groups of the kind asked and leaves a
group alone when a criterion returns None for it."""

from __future__ import annotations

import numpy as np
import pytest

from graph_kit import N, build, context, group_of, w
from graphprune.errors import BadInput
from graphprune.scoring import ScorePass, combine, normalize, per_unit, position_norms


def test_combine_and_normalize():
    parts = [np.array([1.0, 4.0]), np.array([4.0, 1.0])]
    np.testing.assert_allclose(combine(parts, "sum", 2), [5, 5])
    np.testing.assert_allclose(combine(parts, "mean", 2), [2.5, 2.5])
    np.testing.assert_allclose(combine(parts, "max", 2), [4, 4])
    np.testing.assert_allclose(combine(parts, "prod", 2), [2, 2])
    np.testing.assert_allclose(combine([], "sum", 3), [0, 0, 0])
    s = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(normalize(s, "max"), s / 3)
    np.testing.assert_allclose(normalize(s, "standardize"), (s - 2) / s.std())
    np.testing.assert_allclose(normalize(np.zeros(3), "mean"), 0)
    with pytest.raises(BadInput, match="normalize must be one of"):
        normalize(s, "nope")
    with pytest.raises(BadInput, match="reduce must be one of"):
        combine(parts, "nope", 2)


def test_position_norms_in_chunks_equal_the_direct_ones():
    a = np.random.default_rng(0).standard_normal((7, 5, 3)).astype(np.float32)
    for p in (1.0, 2.0):
        direct = (np.abs(a.astype(np.float64)) ** p).sum((0, 2))
        np.testing.assert_allclose(position_norms(a, 1, p, chunk_bytes=16), direct, rtol=1e-6)


def test_per_unit_sums_positions_into_units():
    proto = build([N("Flatten", ["x"], ["f"]), N("MatMul", ["f", "w1"], ["y"])], {"w1": w(8, 2)},
                  {"x": [1, 2, 4]}, {"y": [1, 2]})
    ctx = context(proto)
    g = ctx.analysis().groups[0]
    out = per_unit(g, next(iter(g.members)), np.ones(len(next(iter(g.members.values())))))
    assert out.sum() == len(next(iter(g.members.values())))


class _Half(ScorePass):
    name = "test-half"

    def parts(self, g):
        return None if g.n_units % 2 else [np.arange(g.n_units, dtype=float)]


def test_score_pass_kinds_and_none():
    from fused_nets import ms_mha

    ctx = context(ms_mha(), passes=("normalize",))
    heads = group_of(ctx.analysis(), "wq", 1)
    neurons = group_of(ctx.analysis(), "up", 1)
    p = _Half(ctx, groups="heads", normalize="none")
    p(ctx.model)
    assert heads.id in ctx.scores and neurons.id not in ctx.scores
    np.testing.assert_array_equal(ctx.scores[heads.id], np.arange(heads.n_units))
    ctx.scores[neurons.id] = np.full(neurons.n_units, 7.0)
    _Half(ctx, groups="channels")(ctx.model)  # 96 neurons: even, scored now
    assert ctx.scores[neurons.id][0] == 0 and ctx.score_name == "test-half+test-half"
    with pytest.raises(BadInput, match="groups must be all, heads or channels"):
        _Half(ctx, groups="rows")(ctx.model)
