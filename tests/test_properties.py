"""Property tests over random architectures (hypothesis): whatever the graph, pruning it
gives a model that passes the checker, runs in ONNX Runtime with the same output shapes,
and removing inert units leaves the outputs unchanged.

A failing example is shrunk by hypothesis to a minimal recipe; its model is written to
tests/regressions/last_failure.onnx (with its recipe beside it), and test_regressions
replays every model there: rename the file after what it shows and commit it with the fix.
"""

from __future__ import annotations

import os

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SUITE_COUNTS
from oracles import inert_removal_diff, prune_to_file
from random_nets import build, recipes
from random_seq import build_seq, seq_recipes

HERE = os.path.dirname(os.path.abspath(__file__))
REGRESSIONS = os.path.join(HERE, "regressions")
# CI runs a fixed set of 200; a nightly-style run sets more examples and fresh seeds:
#   GRAPHPRUNE_PROPERTY_EXAMPLES=2000 GRAPHPRUNE_PROPERTY_RANDOM=1 pytest tests/test_properties.py
EXAMPLES = int(os.environ.get("GRAPHPRUNE_PROPERTY_EXAMPLES", "200"))
RANDOM = os.environ.get("GRAPHPRUNE_PROPERTY_RANDOM") == "1"
CHECKED = {"n": 0}


def _save_failure(model: onnx.ModelProto, recipe) -> None:
    os.makedirs(REGRESSIONS, exist_ok=True)
    path = os.path.join(REGRESSIONS, "last_failure.onnx")
    onnx.save(model, path)
    with open(path + ".recipe.txt", "w") as f:
        f.write(repr(recipe) + "\n")


def _check(model, recipe, seed, ratio, criterion, tmp) -> None:
    """The oracles for one generated model; a failing model is saved for the regressions."""
    path = str(tmp / "m.onnx")
    onnx.save(model, path)
    try:
        rel, _, _ = inert_removal_diff(path, tmp, ratio=ratio, seed=seed)
        assert rel < 1e-4, f"inert removal changed outputs by {rel:.3g} (relative)"
        report = prune_to_file(path, str(tmp / "p.onnx"), [criterion, f"select:ratio={ratio}"])
        assert report["verification"]["checker"] == "passed"
    except BaseException:
        _save_failure(model, recipe)
        raise


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(recipe=recipes, ratio=st.sampled_from([0.2, 0.4, 0.6, 0.9]),
       criterion=st.sampled_from(["l1", "l2", "bn-scale", "random"]))
def test_random_architectures(tmp_path_factory, recipe, ratio, criterion):
    _check(build(recipe), recipe, recipe[3], ratio, criterion, tmp_path_factory.mktemp("prop"))
    CHECKED["n"] += 1


@settings(max_examples=max(EXAMPLES // 2, 1), deadline=None, derandomize=not RANDOM,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(recipe=seq_recipes, ratio=st.sampled_from([0.25, 0.5, 0.75]),
       criterion=st.sampled_from(["l1", "l2", "random"]))
def test_random_attention_models(tmp_path_factory, recipe, ratio, criterion):
    """Attention (with and without grouped-query K/V sharing), MLPs, norms: heads found in
    the graph are units; removing inert ones is exact."""
    _check(build_seq(recipe), recipe, recipe[2], ratio, criterion, tmp_path_factory.mktemp("seq"))
    CHECKED["seq"] = CHECKED.get("seq", 0) + 1


def test_zz_report_count():
    """Reports how many random architectures the property test checked (run after it)."""
    if CHECKED["n"] == 0:
        pytest.skip("property test not run in this session")
    SUITE_COUNTS["property suite"] = (f"{CHECKED['n'] + CHECKED.get('seq', 0)} random architectures pruned and "
                                      f"verified ({CHECKED['n']} CNN-style, {CHECKED.get('seq', 0)} with attention), "
                                      "0 failures")
    assert CHECKED["n"] >= min(EXAMPLES, 200)


def _regression_files():
    if not os.path.isdir(REGRESSIONS):
        return []
    return sorted(f for f in os.listdir(REGRESSIONS) if f.endswith(".onnx"))


@pytest.mark.parametrize("name", _regression_files() or ["(none)"])
def test_regressions(tmp_path, name):
    if name == "(none)":
        pytest.skip("no saved regression models")
    path = os.path.join(REGRESSIONS, name)
    rel, _, _ = inert_removal_diff(path, tmp_path, ratio=0.5, seed=0)
    assert rel < 1e-4
    assert prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.5"])["verification"]["checker"] == "passed"
