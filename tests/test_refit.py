"""refit: the sequential least-squares reconstruction after removal. Exact where the kept
inputs still span the removed ones (MatMul, and a padded, strided convolution from
sampled patches); on a deep non-linear chain it ends closer to the dense outputs than
fitting every layer on the dense inputs (compensate:method=lsq)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from graphprune.errors import BadInput
from test_compensation import _calib, _run, _save, affine_mlp
from oracles import run_model

R = np.random.default_rng(11)


def _error(path, tmp_path, passes, calib, mse=False):
    """Relative max error of the output on the calibration inputs, and the report
    (mse: the relative mean squared error alone)."""
    out, report = _run(path, tmp_path, passes, calib)
    feeds = {"x": calib[0]["x"]}
    _, (ref,) = run_model(path, feeds)
    _, (got,) = run_model(out, feeds)
    if mse:
        return float(((got - ref) ** 2).mean() / (ref ** 2).mean())
    return float(np.abs(got - ref).max() / np.abs(ref).max()), report


def test_refit_is_exact_when_kept_channels_span_the_removed_ones(tmp_path):
    path = affine_mlp(tmp_path, R)
    calib = _calib(("x", (8,)), n=200)
    refit, report = _error(path, tmp_path, ["l1", "select:ratio=0.25,round_to=1", "refit:ridge=1e-9"], calib)
    plain, _ = _error(path, tmp_path, ["l1", "select:ratio=0.25,round_to=1"], calib)
    assert next(p for p in report["passes"] if p["pass"].startswith("refit"))["stats"]["layers_refit"] == 1
    assert refit < 1e-4 and plain > 0.05, (refit, plain)


def test_refit_of_a_padded_strided_convolution_is_exact(tmp_path):
    w1 = R.standard_normal((16, 3, 1, 1))
    w2, b2 = R.standard_normal((4, 16, 3, 3)) * 0.3, R.standard_normal(4)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"]), helper.make_node("Identity", ["h"], ["a"]),
             helper.make_node("Conv", ["a", "w2", "b2"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])]
    path = _save(tmp_path, nodes, {"w1": w1, "w2": w2, "b2": b2}, ["batch", 3, 9, 9], ["batch", 4, 5, 5])
    calib = _calib(("x", (3, 9, 9)), n=16)
    refit, _ = _error(path, tmp_path, ["l1", "select:ratio=0.25,round_to=1", "refit:patches=8,ridge=1e-9"], calib)
    plain, _ = _error(path, tmp_path, ["l1", "select:ratio=0.25,round_to=1"], calib)
    assert refit < 1e-4 and plain > 0.05, (refit, plain)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sequential_refit_beats_fitting_on_dense_inputs_on_a_deep_chain(tmp_path, seed):
    """Four tanh layers of 24 near-rank-6 channels, half of each removed: fitting each
    layer on the inputs it really gets ends closer to the dense outputs (mean squared
    error) than fitting it on the dense inputs; both far closer than no fit."""
    r = np.random.default_rng(seed)
    nodes, inits, prev, width = [], {}, "x", 12
    for i in range(4):
        w = r.standard_normal((width, 6)) @ r.standard_normal((6, 24)) / np.sqrt(6 * width)
        inits[f"w{i}"], inits[f"b{i}"] = w + 0.02 * r.standard_normal((width, 24)), r.standard_normal(24) * 0.1
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"p{i}"]), helper.make_node("Tanh", [f"p{i}"], [f"t{i}"])]
        prev, width = f"t{i}", 24
    inits["wo"] = r.standard_normal((24, 4))
    nodes.append(helper.make_node("MatMul", [prev, "wo"], ["y"]))
    path = _save(tmp_path, nodes, inits, ["batch", 12], ["batch", 4])
    calib = [{"x": r.standard_normal((400, 12)).astype(np.float32)}]
    errors = {p: _error(path, tmp_path, ["l2", "select:ratio=0.5,round_to=1", *p], calib, mse=True)
              for p in [(), ("compensate:method=lsq",), ("refit",)]}
    assert errors[("refit",)] < errors[("compensate:method=lsq",)] < 0.2 * errors[()], errors


def test_refit_refusals(tmp_path):
    from test_compensation import mlp

    path, spec = mlp(tmp_path)
    with pytest.raises(BadInput, match="refit needs calibration data"):
        _run(path, tmp_path, ["l1", "select:ratio=0.25,round_to=1", "refit"], None)
    with pytest.raises(BadInput, match="patches must be at least 1"):
        _run(path, tmp_path, ["l1", "select:ratio=0.25,round_to=1", "refit:patches=0"], _calib(spec))
