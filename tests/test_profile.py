"""Per-node times for --bench (graphprune.profile): ONNX Runtime's profiler read back per
node, compared between the normalized dense and the pruned model, and printed."""

from __future__ import annotations

import os

import numpy as np

import graphprune
from graphprune.console import node_lines
from graphprune.profile import compare, node_times

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "models", "digits_cnn.onnx")


def test_node_times_cover_the_models_kernels():
    feeds = {"input": np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)}
    times = node_times(DEMO, feeds, runs=3)
    assert times and all(t["ms"] >= 0 for t in times.values())
    ops = {t["op"] for t in times.values()}
    assert "Conv" in ops and "Gemm" in ops  # the demo's four convolutions and its classifier


def test_models_are_profiled_in_turn(tmp_path, monkeypatch):
    """The dense and the pruned model alternate run by run, so a slow spell of the machine
    cannot fall on one of them only; each gets its own profile back."""
    import json

    import graphprune.profile as profile

    calls = []

    class Fake:
        def __init__(self, path, profile_prefix, **kw):
            self.path, self.file, self.runs = path, f"{profile_prefix}.json", 0

        def run(self, outputs, feeds):
            calls.append(self.path)
            self.runs += 1

        def end_profiling(self):
            ms = 1.0 if self.path == "dense" else 0.25
            events = [{"cat": "Node", "name": "conv_kernel_time", "dur": ms * 1e3 * (1 + i), "args": {"op_name": "Conv"}}
                      for i in range(self.runs)]
            with open(self.file, "w") as f:
                json.dump(events, f)
            return self.file

    monkeypatch.setattr(profile, "session", lambda path, **kw: Fake(path, **kw))
    dense, pruned = profile.interleaved_node_times(["dense", "pruned"], {}, runs=3)
    assert calls == ["dense", "pruned"] * 3
    assert dense == {"conv": {"op": "Conv", "ms": 2.0}} and pruned == {"conv": {"op": "Conv", "ms": 0.5}}


def test_compare_totals_per_op_and_marks_missing_nodes():
    before = {"a": {"op": "Conv", "ms": 2.0}, "b": {"op": "Conv", "ms": 1.0}, "c": {"op": "Gemm", "ms": 0.5}}
    after = {"a": {"op": "Conv", "ms": 0.5}, "c": {"op": "Gemm", "ms": 0.6}, "d": {"op": "Relu", "ms": 0.05}}
    out = compare(before, after, top=3)
    assert out["by_op"]["Conv"] == {"before_ms": 3.0, "after_ms": 0.5}
    assert out["by_op"]["Relu"] == {"before_ms": 0.0, "after_ms": 0.05}
    assert [r["node"] for r in out["nodes"]] == ["a", "b", "c"]  # by size of change; b is gone
    assert out["nodes"][1]["after_ms"] is None
    lines = node_lines(out)
    assert "Conv 3.000 -> 0.500" in lines[0] and "b (Conv) 1.000 -> -" in lines[1]


def test_bench_reports_where_the_time_goes(tmp_path):
    report = graphprune.prune(DEMO, graphprune.Options(passes=["l1", "select:ratio=0.5"], output=str(tmp_path / "s.onnx"),
                                                       bench=True, bench_repeats=5, quiet=True))
    nodes = report["bench"]["nodes"]
    assert nodes["by_op"]["Conv"]["before_ms"] > 0 and nodes["by_op"]["Conv"]["after_ms"] > 0
    assert all(r["before_ms"] is not None or r["after_ms"] is not None for r in nodes["nodes"])
