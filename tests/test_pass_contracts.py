"""What every pass's docstring promises, checked for every registered pass: `modified` is
truthful (a pass that says it changed nothing left the graph as it was, one that says it
changed it did), and the exact kinds (normalize, cleanup) leave the outputs unchanged."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from graph_kit import N, build, w
from graphprune.calibration import Calibration
from graphprune.context import Context
from graphprune.pipeline import build_passes, complete_pipeline
from graphprune.probes import graph_input_meta
from graphprune.registry import registered
from oracles import run_model

BEFORE = {"analysis": [], "depth": [], "score": [], "select": ["l2"], "compensate": ["l2", "select:ratio=0.25"],
          "remove": ["l2", "select:ratio=0.25"], "repair": ["l2", "select:ratio=0.25", "remove"],
          "normalize": [], "cleanup": []}


def _model():
    """A conv with BatchNorm, a folded-BN conv on a residual branch, and an MLP head:
    something for every pass."""
    return build([N("Conv", ["x", "c1"], ["a"]), N("BatchNormalization", ["a", "g", "b", "mu", "var"], ["n"]),
                  N("Relu", ["n"], ["r"]), N("Conv", ["r", "c2", "cb"], ["c0"], pads=[1, 1, 1, 1]), N("Add", ["c0", "r"], ["c"]),
                  N("Relu", ["c"], ["cr"]),
                  N("GlobalAveragePool", ["cr"], ["p"]), N("Flatten", ["p"], ["f"]),
                  N("MatMul", ["f", "m1"], ["h"]), N("Add", ["h", "mb"], ["hb"]), N("Relu", ["hb"], ["hr"]),
                  N("MatMul", ["hr", "m2"], ["y"])],
                 {"c1": w(8, 3, 3, 3), "g": w(8) + 1, "b": w(8), "mu": w(8), "var": np.abs(w(8)) + 0.5,
                  "c2": w(8, 8, 3, 3), "cb": w(8), "m1": w(8, 12), "mb": w(12), "m2": w(12, 5)},
                 {"x": ["n", 3, 6, 6]}, {"y": ["n", 5]})


def _canonical(model: ir.Model) -> bytes:
    proto = ir.to_proto(model)
    del proto.graph.value_info[:]  # inferred annotations are not a change of the model,
    inits = sorted(proto.graph.initializer, key=lambda t: t.name)  # nor the order of constants
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(inits)
    return proto.SerializeToString(deterministic=True)


@pytest.mark.parametrize("name", sorted(registered()))
def test_modified_is_truthful_and_exact_passes_are_exact(tmp_path, name):
    cls = registered()[name]
    if name.startswith("test-"):
        pytest.skip("a test's own pass")
    spec = {"ablate": "ablate:groups=all", "depth": "depth:blocks=1"}.get(name, name)
    specs = complete_pipeline(BEFORE[cls.kind] + [spec])
    model = ir.from_proto(_model())
    ctx = Context(model)
    x = np.random.default_rng(0).standard_normal((24, 3, 6, 6)).astype(np.float32)
    ctx.calibration = Calibration([{"x": x}], graph_input_meta(model), quiet=True)
    feeds = {"x": x[:4]}
    for p in build_passes(ctx, specs):
        before = _canonical(model)
        path_before = str(tmp_path / "before.onnx")
        exact = p.kind in ("normalize", "cleanup")
        if exact:
            ir.save(model, path_before)
        result = p(model)
        changed = _canonical(model) != before
        assert result.modified == changed, f"{p.spec()} said modified={result.modified}, changed={changed}"
        if exact and changed:
            path_after = str(tmp_path / "after.onnx")
            ir.save(model, path_after)
            _, ref = run_model(path_before, feeds)
            _, got = run_model(path_after, feeds)
            np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)
