"""graphprune/budget_search.py: with --find-budget, a budget outside --tolerance is bisected
towards the dense model and the smallest model found within it is written, the report
saying which budget and what each try gave; without --tolerance it is refused."""

from __future__ import annotations

import os

import pytest

from graphprune.errors import BadInput
from graphprune.pipeline import Options, prune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "models", "digits_cnn.onnx")
EVAL = os.path.join(ROOT, "models", "digits_eval.npz")


def test_find_budget_writes_the_smallest_model_within_tolerance(tmp_path):
    out = str(tmp_path / "p.onnx")
    rep = prune(DEMO, Options(output=out, eval_data=EVAL, passes=["l1", "select:macs=0.4"],
                              tolerance="top1=0.95", find_budget=True))
    search = rep["budget_search"]
    assert search["asked"] == "macs=0.4" and not search["tries"][0]["within"]
    assert any(t["within"] for t in search["tries"]) and os.path.exists(out)
    chosen = float(search["chosen"].split("=")[1])
    assert 0.4 < chosen < 1.0 and rep["verification"]["top1_agreement"] >= 0.95
    assert rep["after"]["macs"] <= chosen * rep["before"]["macs"] * 1.001


def test_asked_budget_within_tolerance_is_kept_and_no_tolerance_is_refused(tmp_path):
    rep = prune(DEMO, Options(output=str(tmp_path / "p.onnx"), eval_data=EVAL, passes=["bn-scale", "select:macs=0.8"],
                              tolerance="top1=0.5", find_budget=True))
    assert rep["budget_search"]["chosen"] == "macs=0.8" and len(rep["budget_search"]["tries"]) == 1
    with pytest.raises(BadInput, match="needs --tolerance"):
        prune(DEMO, Options(output=str(tmp_path / "q.onnx"), find_budget=True))
