"""Exactness oracles of the compensation passes: a channel that is constant on the
calibration data, removed with bias compensation, leaves the outputs unchanged (MatMul,
Gemm, Conv without padding; a bias is created where the consumer had none). With zero
padding the correction is exact inside and off at the border only. restore-stats gives a
pruned layer back its dense per-channel mean and standard deviation."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphprune.pipeline import Options, prune
from oracles import run_model

R = np.random.default_rng(0)
DEAD = [3, 7, 11]


def _save(tmp_path, nodes, inits, x_shape, y_shape):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _hidden(w1, b1, axis):
    """Make the DEAD hidden channels constant (zero weights, positive bias)."""
    idx = [slice(None)] * w1.ndim
    idx[axis] = DEAD
    w1[tuple(idx)] = 0.0
    b1[DEAD] = np.array([0.5, 1.0, 2.0])
    return w1, b1


def mlp(tmp_path, op="MatMul", bias2=True):
    w1, b1 = _hidden(R.standard_normal((8, 16)), R.standard_normal(16) * 0.1, 1)
    w2, b2 = R.standard_normal((16, 4)), R.standard_normal(4)
    if op == "Gemm":
        nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
                 helper.make_node("Gemm", ["a", "w2t"] + (["b2"] if bias2 else []), ["y"], transB=1)]
        inits = {"w1": w1, "b1": b1, "w2t": w2.T.copy(), "b2": b2}
    else:
        nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h"]),
                 helper.make_node("Relu", ["h"], ["a"]), helper.make_node("MatMul", ["a", "w2"], ["y0" if bias2 else "y"])]
        inits = {"w1": w1, "b1": b1, "w2": w2}
        if bias2:
            nodes.append(helper.make_node("Add", ["y0", "b2"], ["y"]))
            inits["b2"] = b2
    if not bias2:
        inits.pop("b2", None)
    return _save(tmp_path, nodes, inits, ["batch", 8], ["batch", 4]), ("x", (8,))


def conv(tmp_path, pad2=0, bias2=True):
    w1, b1 = _hidden(R.standard_normal((16, 3, 3, 3)) * 0.3, R.standard_normal(16) * 0.1, 0)
    w2, b2 = R.standard_normal((4, 16, 3, 3)) * 0.3, R.standard_normal(4)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Conv", ["a", "w2"] + (["b2"] if bias2 else []), ["y"], pads=[pad2] * 4)]
    inits = {"w1": w1, "b1": b1, "w2": w2, **({"b2": b2} if bias2 else {})}
    out = 8 if pad2 else 6
    return _save(tmp_path, nodes, inits, ["batch", 3, 8, 8], ["batch", 4, out, out]), ("x", (3, 8, 8))


def _run(path, tmp_path, passes, calib):
    out = str(tmp_path / "p.onnx")
    report = prune(path, Options(passes=passes, output=out, calib=calib))
    return out, report


def _calib(spec, n=64):
    name, shape = spec
    return [{name: np.random.default_rng(5).standard_normal((n, *shape)).astype(np.float32)}]


@pytest.mark.parametrize("build", [
    lambda t: mlp(t), lambda t: mlp(t, "Gemm"), lambda t: mlp(t, bias2=False), lambda t: mlp(t, "Gemm", bias2=False),
    lambda t: conv(t), lambda t: conv(t, bias2=False)],
    ids=["matmul_add", "gemm", "matmul_no_bias", "gemm_no_bias", "conv_valid", "conv_valid_no_bias"])
def test_constant_channels_removed_with_compensation_are_exact(tmp_path, build):
    path, spec = build(tmp_path)
    calib = _calib(spec)
    ratio = len(DEAD) / 16
    plain, _ = _run(path, tmp_path, ["ifv", f"select:ratio={ratio},round_to=1"], calib)
    feeds = {spec[0]: calib[0][spec[0]]}
    _, ref = run_model(path, feeds)
    _, without = run_model(plain, feeds)
    assert np.abs(without[0] - ref[0]).max() > 1e-2, "removing the constant channels changed nothing"
    out, report = _run(path, tmp_path, ["ifv", f"select:ratio={ratio},round_to=1", "compensate"], calib)
    removed = [g for g in report["groups"] if g["removed"]]
    assert len(removed) == 1 and removed[0]["removed"] == len(DEAD)
    assert report["calibration"]["samples"] == 64
    _, got = run_model(out, feeds)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-5)


def test_conv_with_zero_padding_is_exact_inside_only(tmp_path):
    path, spec = conv(tmp_path, pad2=1)
    calib = _calib(spec)
    out, _ = _run(path, tmp_path, ["ifv", f"select:ratio={len(DEAD) / 16},round_to=1", "compensate"], calib)
    feeds = {spec[0]: calib[0][spec[0]]}
    _, ref = run_model(path, feeds)
    _, got = run_model(out, feeds)
    diff = np.abs(got[0] - ref[0])
    assert diff[:, :, 1:-1, 1:-1].max() < 1e-4       # interior pixels: exact
    assert diff[:, :, 0, :].max() > 1e-3             # border: the padded taps got a correction too


def test_restore_stats_gives_back_dense_output_statistics(tmp_path):
    path, spec = conv(tmp_path)
    calib = _calib(spec, n=128)
    out, report = _run(path, tmp_path, ["l1", "select:ratio=0.5,round_to=1", "restore-stats:samples=0"], calib)
    assert report["passes"][-2]["stats"]["layers_rescaled"] == 1
    feeds = {spec[0]: calib[0][spec[0]]}
    _, ref = run_model(path, feeds)
    _, got = run_model(out, feeds)
    axes = (0, 2, 3)
    np.testing.assert_allclose(got[0].mean(axes), ref[0].mean(axes), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got[0].std(axes), ref[0].std(axes), rtol=1e-3)


def test_restore_stats_reestimates_batchnorm(tmp_path):
    """Adaptive BN: a BatchNormalization reading a pruned layer's output gets that
    output's mean and variance on the calibration data as its running statistics."""
    w1, w2 = R.standard_normal((16, 3, 3, 3)) * 0.3, R.standard_normal((4, 16, 3, 3)) * 0.3
    bn = {"g": R.uniform(0.5, 1.5, 4), "beta": R.standard_normal(4), "mu": R.standard_normal(4), "var": R.uniform(0.5, 2, 4)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["h2"]),
             helper.make_node("BatchNormalization", ["h2", "g", "beta", "mu", "var"], ["y"])]
    path = _save(tmp_path, nodes, {"w1": w1, "w2": w2, **bn}, ["batch", 3, 8, 8], ["batch", 4, 6, 6])
    calib = _calib(("x", (3, 8, 8)), n=96)
    out, report = _run(path, tmp_path, ["l1", "select:ratio=0.5,round_to=1", "restore-stats:samples=0"], calib)
    assert report["passes"][-2]["stats"]["bn_reestimated"] == 1
    pruned = onnx.load(out)
    inits = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    bn_node = next(n for n in pruned.graph.node if n.op_type == "BatchNormalization")
    pruned.graph.output.append(helper.make_tensor_value_info(bn_node.input[0], TensorProto.FLOAT, None))
    probe = str(tmp_path / "probe.onnx")
    onnx.save(pruned, probe)
    _, outs = run_model(probe, {"x": calib[0]["x"]})
    h2 = outs[1].astype(np.float64)
    np.testing.assert_allclose(inits[bn_node.input[3]], h2.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(inits[bn_node.input[4]], h2.var((0, 2, 3)), rtol=1e-4)


def test_least_squares_refit_is_exact_for_linearly_dependent_channels(tmp_path):
    """16 hidden channels that are affine in an 8-dimensional input span a 9-dimensional
    space: after removing 4, the kept ones still reconstruct the output exactly, which the
    lsq refit finds; the bias method cannot."""
    _assert_lsq_exact_bias_not(affine_mlp(tmp_path), tmp_path, _calib(("x", (8,)), n=200), "")


def affine_mlp(tmp_path, rng=R):
    """8 inputs -> 16 hidden channels, affine in the input (no activation) -> 4 outputs."""
    w1, b1 = rng.standard_normal((8, 16)), rng.standard_normal(16)
    w2, b2 = rng.standard_normal((16, 4)), rng.standard_normal(4)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h"]),
             helper.make_node("Identity", ["h"], ["a"]), helper.make_node("MatMul", ["a", "w2"], ["y0"]),
             helper.make_node("Add", ["y0", "b2"], ["y"])]
    return _save(tmp_path, nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, ["batch", 8], ["batch", 4])


def test_scale_refit_is_exact_for_proportional_channels(tmp_path):
    """Hidden channels 12..15 are 0.2 x channels 0..3 plus a constant, and their outgoing
    rows are 0.3 x those of 0..3: the smallest by magnitude, and what they contribute is a
    multiple of what a kept channel does. One scale per kept channel (1.06 on 0..3, 1
    elsewhere) and the bias put it back exactly; the bias method alone cannot. Constant
    removed channels keep every scale at 1 (exact too)."""
    w1, b1 = R.standard_normal((8, 16)), R.standard_normal(16)
    w2, b2 = R.standard_normal((16, 4)), R.standard_normal(4)
    w1[:, 12:] = 0.2 * w1[:, :4]
    w2[12:] = 0.3 * w2[:4]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h"]),
             helper.make_node("Identity", ["h"], ["a"]), helper.make_node("MatMul", ["a", "w2"], ["y0"]),
             helper.make_node("Add", ["y0", "b2"], ["y"])]
    path = _save(tmp_path, nodes, {"w1": w1, "w2": w2, "b1": b1, "b2": b2}, ["batch", 8], ["batch", 4])
    calib = _calib(("x", (8,)), n=200)
    _, ref = run_model(path, {"x": calib[0]["x"]})
    diffs = {}
    for method in ("bias", "scale"):
        out, report = _run(path, tmp_path, ["l1", "select:ratio=0.25,round_to=1", f"compensate:method={method}"], calib)
        assert [g["removed"] for g in report["groups"] if g["removed"]] == [4]
        _, got = run_model(out, {"x": calib[0]["x"]})
        diffs[method] = float(np.abs(got[0] - ref[0]).max())
        if method == "scale":
            assert report["compensation"][0]["refits"] == 1
            w = onnx.numpy_helper.to_array(next(i for i in onnx.load(out).graph.initializer if i.name == "w2"))
            np.testing.assert_allclose(w[:4], 1.06 * w2[:4], rtol=1e-4)
    assert diffs["scale"] < 1e-3 * np.abs(ref[0]).max(), diffs
    assert diffs["bias"] > 0.1, diffs


@pytest.mark.parametrize("build", [lambda t: mlp(t), lambda t: conv(t)], ids=["matmul", "conv_valid"])
def test_scale_refit_of_constant_channels_is_exact(tmp_path, build):
    path, spec = build(tmp_path)
    calib = _calib(spec)
    out, report = _run(path, tmp_path, ["ifv", f"select:ratio={len(DEAD) / 16},round_to=1", "compensate:method=scale"], calib)
    assert report["compensation"][0]["refits"] == 1
    feeds = {spec[0]: calib[0][spec[0]]}
    _, ref = run_model(path, feeds)
    _, got = run_model(out, feeds)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4, atol=1e-4)


def _assert_lsq_exact_bias_not(path, tmp_path, calib, options):
    feeds = {"x": calib[0]["x"]}
    _, ref = run_model(path, feeds)
    diffs = {}
    for method in ("bias", "lsq"):
        out, report = _run(path, tmp_path, ["l1", "select:ratio=0.25,round_to=1", f"compensate:method={method}{options}"], calib)
        _, got = run_model(out, feeds)
        diffs[method] = float(np.abs(got[0] - ref[0]).max())
    assert report["compensation"][0]["refits"] == 1
    assert diffs["lsq"] < 1e-3 * np.abs(ref[0]).max(), diffs
    assert diffs["bias"] > 0.1, diffs


def test_least_squares_refit_of_a_padded_convolution_is_exact_for_linear_channels(tmp_path):
    """A 1x1 convolution makes 16 channels linear in 3 inputs (no bias, so they stay linear
    in the zero padding too); a padded 3x3 convolution reads them. After removing 4 the
    kept 12 still span them: the refit from sampled patches reconstructs the output
    everywhere, borders included. The bias method cannot."""
    w1 = R.standard_normal((16, 3, 1, 1))
    w2, b2 = R.standard_normal((4, 16, 3, 3)) * 0.3, R.standard_normal(4)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"]), helper.make_node("Identity", ["h"], ["a"]),
             helper.make_node("Conv", ["a", "w2", "b2"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])]
    path = _save(tmp_path, nodes, {"w1": w1, "w2": w2, "b2": b2}, ["batch", 3, 9, 9], ["batch", 4, 5, 5])
    _assert_lsq_exact_bias_not(path, tmp_path, _calib(("x", (3, 9, 9)), n=16), ",patches=8")


def test_sampled_patches_match_the_convolution():
    """Patches times the flattened kernel give the convolution's output at the sampled
    positions (strides, dilations and asymmetric padding included)."""
    from graphprune.patches import ConvGeometry, sample_patches

    x = R.standard_normal((2, 3, 7, 6)).astype(np.float32)
    w = R.standard_normal((5, 3, 3, 2)).astype(np.float32)
    geo = ConvGeometry((3, 2), (2, 1), (1, 0, 2, 1), (1, 2))
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 7, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    import onnxruntime as ort

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    oh, ow = geo.out_size(7, 6)
    assert y.shape[2:] == (oh, ow)
    k = 4
    p = sample_patches(x, geo, k, np.random.default_rng(0))
    got = (p @ w.reshape(5, -1).T).reshape(2, k, 5)
    rng = np.random.default_rng(0)  # the same draws: k positions per image, image by image
    want = y.reshape(2, 5, -1).transpose(0, 2, 1)
    for n in range(2):
        pos = rng.choice(oh * ow, k, replace=False)
        np.testing.assert_allclose(got[n], want[n][pos], atol=1e-4)


def test_bad_compensation_options_are_refused(tmp_path):
    from graphprune.errors import BadInput

    path, spec = conv(tmp_path)
    for option, message in (("method=exact", "method must be bias, lsq or scale"), ("method=lsq,patches=0", "patches must be")):
        with pytest.raises(BadInput, match=message):
            _run(path, tmp_path, ["l1", "select:ratio=0.25,round_to=1", f"compensate:{option}"], _calib(spec))


@pytest.mark.parametrize("method", ["lsq", "scale"])
def test_refit_weights_wait_for_removal(tmp_path, method):
    """Until `remove`, the model stays the dense one (later passes such as restore-stats
    measure it); the refit weights are written when the channels go."""
    from graphprune.calibration import Calibration
    from graphprune.context import Context
    from graphprune.loading import load_model
    from graphprune.pipeline import run_passes
    from graphprune.probes import graph_input_meta

    path, spec = mlp(tmp_path)
    model = load_model(path)
    ctx = Context(model)
    ctx.calibration = Calibration(_calib(spec), graph_input_meta(model))
    run_passes(ctx, ["normalize", "l1", "select:ratio=0.25,round_to=1", f"compensate:method={method}"])
    dense = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    for name, value in model.graph.initializers.items():
        if name in dense:
            np.testing.assert_array_equal(value.const_value.numpy(), dense[name])
    assert len(ctx.pending.weights) == 1
    run_passes(ctx, ["remove"])
    assert not ctx.pending and model.graph.initializers["w2"].const_value.numpy().shape == (12, 4)
