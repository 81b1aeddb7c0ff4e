"""ablate: each unit's score is the relative output change when it is switched off,
checked against pruning the unit for real; the model is left as it was; on a transformer
it scores the heads and keeps another criterion's neuron scores."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphprune.calibration import Calibration
from graphprune.context import Context
from graphprune.errors import BadInput
from graphprune.loading import load_model
from graphprune.pipeline import Options, prune, run_passes
from graphprune.probes import graph_input_meta
from oracles import run_model

R = np.random.default_rng(3)


def _mlp(tmp_path, constant: int | None = None):
    w1, b1 = R.standard_normal((8, 12)), R.standard_normal(12) * 0.5
    w2, b2 = R.standard_normal((12, 4)), R.standard_normal(4)
    w2[5] = 0.0  # inert: switching it off changes nothing
    if constant is not None:
        w1[:, constant] = 0.0  # tanh(b1[constant]) on every sample: its mean is all it carries
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h"]),
             helper.make_node("Tanh", ["h"], ["a"]), helper.make_node("MatMul", ["a", "w2"], ["y0"]),
             helper.make_node("Add", ["y0", "b2"], ["y"])]
    inits = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_scores_are_the_output_change_of_removing_each_unit(tmp_path):
    path = _mlp(tmp_path)
    x = R.standard_normal((40, 8)).astype(np.float32)
    calib = [{"x": x[:16]}, {"x": x[16:]}]
    model = load_model(path)
    before = onnx.load(path).SerializeToString()
    ctx = Context(model)
    ctx.calibration = Calibration(calib, graph_input_meta(model))
    run_passes(ctx, ["normalize", "ablate:groups=all,samples=32,normalize=none"])
    (gid,) = [g.id for g in ctx.analysis().groups if g.n_units == 12]  # the hidden units
    scores = ctx.scores[gid]
    _, (ref,) = run_model(path, {"x": x[:32]})
    expected = []
    for u in range(12):  # remove unit u for real and measure
        out = str(tmp_path / f"p{u}.onnx")
        m = load_model(path)
        c = Context(m)
        run_passes(c, ["normalize"])
        c.plan = {gid: np.array([u])}
        run_passes(c, ["remove"])
        from graphprune.saving import save_model

        save_model(c.model, out)
        _, (got,) = run_model(out, {"x": x[:32]})
        expected.append(((got.astype(np.float64) - ref) ** 2).sum() / (ref.astype(np.float64) ** 2).sum())
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-9)
    assert scores[5] < 1e-9 < scores.min(initial=1, where=np.arange(12) != 5)
    assert onnx.load(path).SerializeToString() == before
    assert len(model.graph.inputs) == 1 and all(n.op_type != "Mul" for n in model.graph)


def test_fill_mean_scores_the_change_when_a_unit_takes_its_mean(tmp_path):
    """fill=mean: each unit replaced by its calibration mean, checked in numpy; a unit that
    is constant on the data scores 0 (it scores > 0 with the default zero fill)."""
    path = _mlp(tmp_path, constant=7)
    w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in onnx.load(path).graph.initializer}
    x = R.standard_normal((40, 8)).astype(np.float32)

    def scores(fill):
        model = load_model(path)
        ctx = Context(model)
        ctx.calibration = Calibration([{"x": x[:16]}, {"x": x[16:]}], graph_input_meta(model))
        run_passes(ctx, ["normalize", f"ablate:groups=all,samples=40,normalize=none,fill={fill}"])
        (gid,) = [g.id for g in ctx.analysis().groups if g.n_units == 12]
        assert len(model.graph.inputs) == 1 and all(n.op_type not in ("Mul", "Add") or "ablate" not in n.name
                                                    for n in model.graph)
        return ctx.scores[gid]

    a = np.tanh(x.astype(np.float64) @ w["w1"] + w["b1"])
    y = a @ w["w2"] + w["b2"]
    expected = [(((a[:, u].mean() - a[:, u])[:, None] * w["w2"][u]) ** 2).sum() / (y ** 2).sum() for u in range(12)]
    mean, zero = scores("mean"), scores("zero")
    np.testing.assert_allclose(mean, expected, rtol=1e-4, atol=1e-9)
    assert mean[7] < 1e-9 < zero[7] and mean[5] < 1e-9
    assert np.all(mean <= zero * (1 + 1e-5) + 1e-12)  # a variance is at most the second moment


def test_padding_left_out_by_the_mask_scores_as_unpadded_data(tmp_path):
    """A position-wise MLP over (batch, seq) with a mask input: scored on padded batches
    with --calib-mask, ablation gives the scores of the unpadded positions alone."""
    w1, w2 = R.standard_normal((8, 6)), R.standard_normal((6, 4))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Tanh", ["h"], ["a"]),
             helper.make_node("MatMul", ["a", "w2"], ["y"]), helper.make_node("Relu", ["m"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "s", 8]),
                                           helper.make_tensor_value_info("m", TensorProto.FLOAT, ["n", "s"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "s", 4]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", "s"])],
                              [numpy_helper.from_array(w1.astype(np.float32), "w1"),
                               numpy_helper.from_array(w2.astype(np.float32), "w2")])
    path = str(tmp_path / "seq.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = R.standard_normal((4, 5, 8)).astype(np.float32) * 3
    m = (np.arange(5)[None] < np.array([5, 2, 3, 1])[:, None]).astype(np.float32)

    def scores(calib, mask):
        model = load_model(path)
        ctx = Context(model)
        ctx.calibration = Calibration(calib, graph_input_meta(model), mask=mask)
        run_passes(ctx, ["normalize", "ablate:groups=all,normalize=none"])
        (gid,) = [g.id for g in ctx.analysis().groups if g.n_units == 6]
        return ctx.scores[gid]

    masked = scores([{"x": x, "m": m}], "m")
    kept = x[m != 0][None]
    unpadded = scores([{"x": kept, "m": np.ones(kept.shape[:2], np.float32)}], None)
    padded = scores([{"x": x, "m": m}], None)
    np.testing.assert_allclose(masked, unpadded, rtol=1e-5)
    assert not np.allclose(padded, unpadded, rtol=1e-3)


def test_heads_by_ablation_neurons_by_another_criterion(tzoo, tmp_path):
    from test_activation_criteria import _calib_for

    calib = _calib_for(tzoo["bert_dynamo"], tmp_path, n=4)

    def groups(*score):
        rep = prune(tzoo["bert_dynamo"], Options(passes=[*score, "select:heads=0.25,channels=0.3"],
                                                 dry_run=True, calib=calib, quiet=True))
        return {(g["kind"], i): (g["score_removed_max"], g["score_kept_min"]) for i, g in enumerate(rep["groups"])}

    amp, both = groups("amp"), groups("amp", "ablate:samples=8")
    heads = [k for k in both if k[0] == "heads"]
    assert heads and any(both[k] != amp[k] for k in heads)
    assert all(both[k] == amp[k] for k in both if k[0] != "heads")
    out = str(tmp_path / "p.onnx")
    rep = prune(tzoo["bert_dynamo"], Options(passes=["amp", "ablate", "select:heads=0.25,channels=0.3"],
                                             output=out, calib=calib, quiet=True))
    assert rep["verification"]["checker"] == "passed"
    assert sum(g["removed"] for g in rep["groups"] if g["kind"] == "heads") > 0


def test_bad_options_and_missing_calibration_are_refused(tmp_path):
    path = _mlp(tmp_path)
    calib = [{"x": R.standard_normal((8, 8)).astype(np.float32)}]
    for passes, message in ((["ablate"], "ablate needs calibration data"),):
        with pytest.raises(BadInput, match=message):
            prune(path, Options(passes=passes, dry_run=True))
    for spec, message in (("ablate:groups=x", "groups must be"), ("ablate:samples=0", "samples must be"),
                          ("ablate:groups=all,max_units=4", "20 units"),
                          ("ablate:fill=median", "fill must be")):
        with pytest.raises(BadInput, match=message):
            prune(path, Options(passes=[spec], dry_run=True, calib=calib))
