"""graphprune/bench.py: two models timed side by side (interleaved runs, medians); a
model doing more work is measured as slower."""

from __future__ import annotations

import numpy as np

from graph_kit import N, build, save, w


def test_latency_pair_orders_a_small_and_a_large_model(tmp_path):
    from graphprune.bench import latency_pair

    small = save(build([N("MatMul", ["x", "a"], ["y"])], {"a": w(64, 8)}, {"x": [64, 64]}, {"y": [64, 8]}), tmp_path, "s.onnx")
    big = save(build([N("MatMul", ["x", "a"], ["h"]), N("MatMul", ["h", "b"], ["h2"]), N("MatMul", ["h2", "c"], ["y"])],
                     {"a": w(64, 1024), "b": w(1024, 1024), "c": w(1024, 8)}, {"x": [64, 64]}, {"y": [64, 8]}),
               tmp_path, "b.onnx")
    feeds = {"x": np.ones((64, 64), np.float32)}
    t_small, t_big = latency_pair(small, big, feeds, repeats=9, threads=1)
    assert 0 < t_small < t_big


def test_latencies_pool_the_runs_of_fresh_session_sets(tmp_path, monkeypatch):
    import graphprune.bench as bench

    path = save(build([N("MatMul", ["x", "a"], ["y"])], {"a": w(16, 8)}, {"x": [4, 16]}, {"y": [4, 8]}), tmp_path, "m.onnx")
    made = []
    real = bench.session
    monkeypatch.setattr(bench, "session", lambda *a, **k: made.append(a[0]) or real(*a, **k))
    feeds = {"x": np.ones((4, 16), np.float32)}
    one, other = bench.latencies([path, path], feeds, repeats=7, threads=1, sets=3)
    assert one["runs"] == other["runs"] == 21  # 7 runs from each of 3 sets
    assert made == [path, path] * 3  # a new pair of sessions per set
    assert 0 < one["p25"] <= one["median"] <= one["p75"]
