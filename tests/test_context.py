"""graphprune/context.py: the analysis is cached until the graph changes (and scores,
plan and statistics go with it), activation statistics are computed once per tensor and,
after removal, measured on the dense model remove kept; warnings are recorded once."""

from __future__ import annotations

import numpy as np
import pytest

from graph_kit import N, build, context, group_of, w
from graphprune.activations import Request
from graphprune.calibration import Calibration
from graphprune.errors import BadInput
from graphprune.pipeline import run_passes
from graphprune.probes import graph_input_meta


def _ctx(calibrated=True):
    proto = build([N("MatMul", ["x", "w1"], ["h"]), N("Relu", ["h"], ["r"]), N("MatMul", ["r", "w2"], ["y"])],
                  {"w1": w(3, 6), "w2": w(6, 2)}, {"x": ["n", 3]}, {"y": ["n", 2]})
    ctx = context(proto)
    if calibrated:
        x = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
        ctx.calibration = Calibration([{"x": x}], graph_input_meta(ctx.model), quiet=True)
    return ctx


def test_analysis_is_cached_until_the_graph_changes():
    ctx = _ctx(False)
    a = ctx.analysis()
    assert ctx.analysis() is a
    ctx.scores = {0: np.zeros(1)}
    ctx.plan = {0: np.zeros(0, int)}
    ctx.graph_changed()
    assert ctx.analysis() is not a and not ctx.scores and not ctx.plan


def test_statistics_are_computed_once_and_dense_ones_survive_removal(monkeypatch):
    ctx = _ctx()
    calls = []
    import graphprune.activations as act

    real = act.collect
    monkeypatch.setattr(act, "collect", lambda m, r, c, quiet=False: calls.append(sorted(r)) or real(m, r, c, quiet))
    before = ctx.activation_stats({"r": Request(1)}, "test")["r"].mean.copy()
    ctx.activation_stats({"r": Request(1)}, "test")
    assert calls == [["r"]]
    g = group_of(ctx.analysis(), "w1", 1)
    ctx.keep_dense = True
    ctx.plan = {g.id: np.array([0, 1])}
    run_passes(ctx, ["remove"])
    dense = ctx.activation_stats({"r": Request(1)}, "test", dense=True)["r"].mean
    np.testing.assert_allclose(dense, before)                # the dense model, from the cache
    assert calls == [["r"]]
    now = ctx.activation_stats({"r": Request(1)}, "test")["r"].mean
    assert now.shape == (4,) and calls[-1] == ["r"]         # the pruned model, measured anew


def test_requirements_and_warnings():
    ctx = _ctx(False)
    with pytest.raises(BadInput, match="needs calibration data"):
        ctx.require_calibration("wifv")
    with pytest.raises(BadInput, match="runs after remove"):
        ctx.require_removal("refit")
    ctx.warn("once")
    ctx.warn("once")
    assert ctx.report["warnings"] == ["once"]
