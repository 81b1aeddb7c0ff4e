"""The opt-in `hidden` pass: the residual stream of a transformer becomes prunable through
its LayerNorms/RMSNorms; without it the hidden size stays pinned. The result is inexact by
design, so the report warns; pruning nothing with it is still a no-op."""

from __future__ import annotations

import numpy as np
import pytest

from oracles import prune_to_file, run_model

CASES = ["llama_dynamo", "gpt2_dynamo", "qwen2_dynamo"]


def _hidden_removed(report, size=64):
    return sum(g["removed"] for g in report["groups"] if g["units"] == size and g["kind"] == "channels")


@pytest.mark.parametrize("case", CASES)
def test_hidden_size_pruned_only_when_asked(tzoo, tmp_path, case):
    plain = prune_to_file(tzoo[case], str(tmp_path / "a.onnx"), ["l1", "select:ratio=0.25"])
    assert _hidden_removed(plain) == 0
    assert "warnings" not in plain
    report = prune_to_file(tzoo[case], str(tmp_path / "b.onnx"), ["hidden", "l1", "select:ratio=0.25"])
    assert _hidden_removed(report) == 16
    assert any("hidden-size" in w for w in report["warnings"])
    assert report["verification"]["checker"] == "passed"
    assert report["after"]["params"] < plain["after"]["params"]
    feeds, ref = run_model(tzoo[case])
    _, got = run_model(str(tmp_path / "b.onnx"), feeds, optimize=True)
    assert [a.shape for a in ref] == [b.shape for b in got]


@pytest.mark.parametrize("case", CASES[:1])
def test_hidden_with_nothing_pruned_is_a_noop(tzoo, tmp_path, case):
    out = str(tmp_path / "same.onnx")
    prune_to_file(tzoo[case], out, ["hidden", "l1", "select:ratio=0"])
    feeds, ref = run_model(tzoo[case])
    _, got = run_model(out, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))
