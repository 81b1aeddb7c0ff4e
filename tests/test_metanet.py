"""The metanet criterion (passes/metanet.py, graphprune/metanet/): its scores follow the
units when they are permuted, ignore what does not change the function (rescaling a ReLU
unit's row and column, folding BatchNorm into the conv), are deterministic, and a missing
or foreign metanetwork file is a one-line error."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphprune
from graph_kit import N, build, context, group_of, save
from graphprune.metanet.features import NAMES
from graphprune.metanet.scorer import FORMAT, default_path

RNG = np.random.default_rng(0)
ARRAYS = {"c1": RNG.standard_normal((8, 3, 3, 3)), "g": RNG.uniform(0.2, 2.0, 8), "b": RNG.standard_normal(8),
          "mu": RNG.standard_normal(8), "var": RNG.uniform(0.5, 2.0, 8), "c2": RNG.standard_normal((6, 8, 3, 3)),
          "cb": RNG.standard_normal(6), "m1": RNG.standard_normal((6, 12)), "mb": RNG.standard_normal(12),
          "m2": RNG.standard_normal((12, 5))}


def _model(a, folded=False):
    """conv + BatchNorm (or the same conv with the BatchNorm folded in), ReLU, conv, ReLU,
    pool, and an MLP head with a ReLU hidden layer."""
    a = {k: np.asarray(v, np.float32) for k, v in a.items()}
    if folded:
        scale = a["g"] / np.sqrt(a["var"] + 1e-5)
        first = [N("Conv", ["x", "c1", "c1b"], ["n"])]
        a = {**a, "c1": a["c1"] * scale[:, None, None, None], "c1b": a["b"] - a["mu"] * scale}
        for k in ("g", "b", "mu", "var"):
            a.pop(k)
    else:
        first = [N("Conv", ["x", "c1"], ["c"]), N("BatchNormalization", ["c", "g", "b", "mu", "var"], ["n"])]
    rest = [N("Relu", ["n"], ["r"]), N("Conv", ["r", "c2", "cb"], ["c2o"]), N("Relu", ["c2o"], ["cr"]),
            N("GlobalAveragePool", ["cr"], ["p"]), N("Flatten", ["p"], ["f"]), N("MatMul", ["f", "m1"], ["h"]),
            N("Add", ["h", "mb"], ["hb"]), N("Relu", ["hb"], ["hr"]), N("MatMul", ["hr", "m2"], ["y"])]
    return build(first + rest, a, {"x": ["n", 3, 6, 6]}, {"y": ["n", 5]})


def _random_metanet(path, seed=1, hidden=16):
    rng = np.random.default_rng(seed)
    f = len(NAMES)
    np.savez(path, format=np.array(FORMAT), names=np.array(NAMES), mu=np.zeros(f), sd=np.ones(f),
             w0=rng.standard_normal((2, 2 * f, hidden)) * 0.3, b0=rng.standard_normal((2, hidden)) * 0.1,
             w1=rng.standard_normal((2, hidden, 1)) * 0.3, b1=np.zeros((2, 1)))
    return str(path)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return _random_metanet(tmp_path_factory.mktemp("metanet") / "m.npz")


def _scores(arrays, net, folded=False):
    ctx = context(_model(arrays, folded), passes=("normalize", f"metanet:model={net}"))
    a = ctx.analysis()
    return {name: ctx.scores[group_of(a, name, 0).id] for name in ("c1", "c2")} | \
        {"m1": ctx.scores[group_of(a, "m1", 1).id]}


def permuted(arrays):
    """The same model with the units of c1, c2 and the hidden MLP layer permuted: the
    arrays and {group name: its permutation}."""
    p8, p6, p12 = RNG.permutation(8), RNG.permutation(6), RNG.permutation(12)
    a = dict(arrays)
    for k in ("c1", "g", "b", "mu", "var"):
        a[k] = a[k][p8]
    a["c2"] = a["c2"][p6][:, p8]
    a["cb"], a["m1"] = a["cb"][p6], a["m1"][p6][:, p12]
    a["mb"], a["m2"] = a["mb"][p12], a["m2"][p12]
    return a, {"c1": p8, "c2": p6, "m1": p12}


def check_scores_follow_permuted_units(score):
    """`score(arrays)` -> {group name: scores}: the permuted model's scores are the
    original's, permuted the same way."""
    base = score(ARRAYS)
    a, perms = permuted(ARRAYS)
    got = score(a)
    for name, p in perms.items():
        np.testing.assert_allclose(got[name], base[name][p], rtol=1e-5, err_msg=name)
    assert not np.allclose(base["c1"], base["c1"][perms["c1"]])  # the check could fail


def test_scores_follow_permuted_units(net):
    check_scores_follow_permuted_units(lambda arrays: _scores(arrays, net))


def _rescaled(arrays):
    """The same function: ReLU units rescaled (row x a, column / a), the BatchNorm's output x3."""
    a = dict(arrays)
    s6, s12 = RNG.uniform(0.1, 10, 6), RNG.uniform(0.1, 10, 12)
    a["c2"], a["cb"] = a["c2"] * s6[:, None, None, None], a["cb"] * s6  # ReLU, pool: positively homogeneous
    a["m1"] = a["m1"] / s6[:, None] * s12[None, :]
    a["mb"], a["m2"] = a["mb"] * s12, a["m2"] / s12[:, None]
    a["g"], a["b"] = a["g"] * 3.0, a["b"] * 3.0  # the BN's output x3, the next conv's columns /3
    a["c2"] = a["c2"] / 3.0
    return a


def _check_invariances(net):
    base = _scores(ARRAYS, net)
    for name, got in _scores(_rescaled(ARRAYS), net).items():
        np.testing.assert_allclose(got, base[name], rtol=1e-4, err_msg=name)
    for name, got in _scores(ARRAYS, net, folded=True).items():
        np.testing.assert_allclose(got, base[name], rtol=1e-4, err_msg=f"folded {name}")
    mixed = dict(ARRAYS, m1=ARRAYS["m1"] * np.linspace(0.5, 2, 12))  # not a rescaling: scores move
    assert not np.allclose(_scores(mixed, net)["m1"], base["m1"], rtol=1e-3)
    return base


def test_relu_rescaling_and_batchnorm_folding_change_nothing(net):
    _check_invariances(net)


def test_sketched_long_sides_keep_the_invariances(net, monkeypatch):
    """With every side counted as long, the slices go through the sketch: the scores still
    ignore rescaling and folding and follow a group's permuted units. These slices are no
    longer than the sketch's buckets, so it only flips signs, which keeps every cosine: the
    scores equal the unsketched ones."""
    from graphprune.metanet import features, sketch

    projected = _scores(ARRAYS, net)
    fed = []
    monkeypatch.setattr(features, "LONG", 0)
    monkeypatch.setattr(sketch.Sketch, "add", lambda self, b, add=sketch.Sketch.add: fed.append(b.shape) or add(self, b))
    base = _check_invariances(net)
    assert fed
    for k in base:
        np.testing.assert_allclose(base[k], projected[k], rtol=1e-5, err_msg=k)
    p12 = RNG.permutation(12)
    a = dict(ARRAYS, m1=ARRAYS["m1"][:, p12], mb=ARRAYS["mb"][p12], m2=ARRAYS["m2"][p12])
    np.testing.assert_allclose(_scores(a, net)["m1"], base["m1"][p12], rtol=1e-5)


def test_sketch_keeps_cosines_and_norms():
    from graphprune.metanet.features import Slices
    from graphprune.metanet.sketch import Sketch

    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 200_000)).astype(np.float32)
    x[1] = 0.8 * x[0] + 0.6 * x[1]  # cos(x0, x1) = 0.8; the others near 0
    sk = Sketch(4, 256)
    sk.add(x[:, :70_000])
    sk.add(x[:, 70_000:])
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    exact, got = unit(x.astype(np.float64)) @ unit(x.astype(np.float64)).T, unit(sk.sums) @ unit(sk.sums).T
    assert np.abs(got - exact).max() < 0.25 and abs(got[0, 1] - 0.8) < 0.1
    assert len(sk) == 200_000
    slices = Slices(4)  # the same two blocks, read in place
    for block in (x[:, :70_000], x[:, 70_000:]):
        slices.add(block, np.square(block, dtype=np.float64).sum(1))
    red, centre, spread = slices.compare()
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(spread, np.abs(x64).sum(1) / np.sqrt(200_000) / np.linalg.norm(x64, axis=1), rtol=1e-5)
    mean = unit(x64).mean(0)
    np.testing.assert_allclose(centre, unit(x64) @ (mean / np.linalg.norm(mean)), rtol=1e-4, atol=1e-6)
    assert abs(red[0] - 0.8) < 0.1 and abs(red[1] - 0.8) < 0.1 and red[2] < 0.25  # projected cosines
    np.testing.assert_allclose(sk.spread(1e-12), spread, rtol=1e-5)


def test_deterministic_and_prunes_through_the_checked_pipeline(tmp_path, net):
    path = save(_model(ARRAYS), tmp_path)
    reports = []
    for i in range(2):
        out = str(tmp_path / f"o{i}.onnx")
        reports.append(graphprune.prune(path, graphprune.Options(
            passes=[f"metanet:model={net}", "select:macs=0.5,scope=global"], output=out, quiet=True, report=None)))
    assert reports[0]["after"]["macs"] < reports[0]["before"]["macs"]
    assert reports[0]["verification"]["checker"] == "passed"
    assert reports[0]["after"] == reports[1]["after"]
    assert open(tmp_path / "o0.onnx", "rb").read() == open(tmp_path / "o1.onnx", "rb").read()


@pytest.mark.parametrize("case", ["missing", "foreign"])
def test_bad_metanetwork_file_is_one_line(tmp_path, case):
    path = save(_model(ARRAYS), tmp_path)
    bad = tmp_path / "bad.npz"
    if case == "foreign":
        np.savez(bad, format=np.array(FORMAT), names=np.array(["other"]), mu=np.zeros(1), sd=np.ones(1))
    out = tmp_path / "out.onnx"
    r = subprocess.run([sys.executable, "-m", "graphprune", path, "-o", str(out), "--pass", f"metanet:model={bad}"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and not out.exists()
    assert len(r.stderr.strip().splitlines()) == 1 and "metanet" in r.stderr, r.stderr


def test_shipped_metanetwork_loads_and_has_a_card():
    if not default_path().is_file():
        pytest.fail(f"the shipped metanetwork {default_path()} is missing")
    from graphprune.metanet.scorer import Scorer

    Scorer()  # format and feature names match this version
    import json

    card = json.loads(default_path().with_suffix(".json").read_text())
    assert card["features"] == list(NAMES) and card["zoo"]["manifest_sha256"]


def _prune_with_metanet(path, out, select="select:macs=0.5,scope=global,strict=false"):
    from oracles import prune_to_file

    report = prune_to_file(path, out, ["metanet", select])
    assert report["verification"]["checker"] == "passed", path
    assert report["after"]["macs"] < report["before"]["macs"], path
    return report


def test_shipped_metanet_prunes_every_test_cnn(zoo, tmp_path):
    for name, path in zoo.items():
        _prune_with_metanet(path, str(tmp_path / f"{name}.onnx"))


@pytest.mark.parametrize("case", ["bert_dynamo", "gpt2_torchscript", "llama_dynamo", "qwen2_dynamo", "vit_dynamo"])
def test_shipped_metanet_prunes_heads_and_neurons_of_transformers(tzoo, tmp_path, case):
    _prune_with_metanet(tzoo[case], str(tmp_path / "g.onnx"))  # global: where its scores put the cuts
    # per-kind ratios: metanet's scores choose which heads and which neurons go
    report = _prune_with_metanet(tzoo[case], str(tmp_path / "p.onnx"), "select:heads=0.25,channels=0.3,round_to=1")
    kinds = {g["kind"] for g in report["groups"] if g["removed"]}
    assert kinds == {"heads", "channels"}, kinds


def test_shipped_metanet_prunes_fused_attention_graphs(tmp_path):
    from fused_nets import FUSED
    import onnx

    for name, build in FUSED.items():
        path = str(tmp_path / f"{name}.onnx")
        onnx.save(build(), path)
        _prune_with_metanet(path, str(tmp_path / f"{name}_p.onnx"))
