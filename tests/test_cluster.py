"""Ray as the scale-out engine (graphprune/cluster.py), on a local two-worker cluster:
sharded calibration statistics equal the single-process ones, a pipeline calibrated on
Ray writes the same model, a sweep on Ray gives the same points (latency aside), latency
runs on the node that declares a resource, and a missing Ray or resource is one line."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx_ir as ir
import pytest

import graphprune
from graph_kit import N, build, w
from graphprune.activations import Request, collect
from graphprune.calibration import Calibration
from graphprune.cli import main
from graphprune.errors import BadInput
from graphprune.probes import graph_input_meta
from graphprune.shapes import infer_exact_shapes

ray = pytest.importorskip("ray")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "models", "digits_cnn.onnx")
CALIB = os.path.join(ROOT, "models", "digits_calib.npz")
EVAL = os.path.join(ROOT, "models", "digits_eval.npz")


@pytest.fixture(scope="module", autouse=True)
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, resources={"deploy": 1}, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def _stats(proto, ray_address):
    m = ir.from_proto(proto)
    infer_exact_shapes(m)
    x = np.random.default_rng(3).standard_normal((97, 6)).astype(np.float32) * 4 + 50
    calib = Calibration([{"x": x[s:s + 10]} for s in range(0, 97, 10)], graph_input_meta(m), quiet=True)
    calib.ray, calib.ray_shards = ray_address, 2
    req = Request(1, gram=True, reducers={"count": lambda rows: np.array([len(rows)])},
                  raw={"shape0": lambda arr: np.array([arr.shape[0]])})
    return collect(m, {"h": req, "x": Request(1), "y": Request(1)}, calib, quiet=True)


def test_sharded_statistics_equal_single_process():
    proto = build([N("MatMul", ["x", "w1"], ["h"]), N("Relu", ["h"], ["y"])], {"w1": w(6, 5)},
                  {"x": ["n", 6]}, {"y": ["n", 5]})
    one, sharded = _stats(proto, None), _stats(proto, "auto")
    assert set(one) == set(sharded)
    for name in one:
        a, b = one[name], sharded[name]
        assert a.count == b.count == 97
        for field in ("mean", "var", "mean_abs", "l2"):
            np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-9, err_msg=f"{name}.{field}")
        assert (a.gram is None) == (b.gram is None)
        if a.gram is not None:
            np.testing.assert_allclose(b.gram, a.gram, rtol=1e-6)
        assert a.extra.keys() == b.extra.keys()
        for key in a.extra:
            np.testing.assert_array_equal(a.extra[key], b.extra[key])


def test_a_pipeline_calibrated_on_ray_writes_the_same_model(tmp_path):
    passes = ["wifv:normalize=standardize", "select:macs=0.5,scope=global", "refit"]
    local = graphprune.prune(DEMO, graphprune.Options(passes=passes, calib=CALIB, output=str(tmp_path / "a.onnx"),
                                                      quiet=True))
    shard = graphprune.prune(DEMO, graphprune.Options(passes=passes, calib=CALIB, output=str(tmp_path / "b.onnx"),
                                                      quiet=True, ray="auto", ray_shards=2))
    def exact(groups):  # score summaries differ in the last bits (another summation order)
        return [{k: v for k, v in g.items() if not k.startswith("score_")} for g in groups]

    assert exact(local["groups"]) == exact(shard["groups"]) and local["after"]["macs"] == shard["after"]["macs"]
    for ga, gb in zip(local["groups"], shard["groups"]):
        assert all(gb[k] == (v if v is None else pytest.approx(v, rel=1e-9))
                   for k, v in ga.items() if k.startswith("score_"))
    a = ir.load(str(tmp_path / "a.onnx")).graph.initializers
    b = ir.load(str(tmp_path / "b.onnx")).graph.initializers
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(b[k].const_value.numpy(), a[k].const_value.numpy(), rtol=1e-4, atol=1e-5)


def test_sweep_on_ray_gives_the_same_points(tmp_path):
    from graphprune.sweep import sweep

    args = (["l2", "bn-scale"], [("macs", 0.75), ("macs", 0.5)], {"eval_data": EVAL})
    local = sweep(DEMO, str(tmp_path / "local"), *args, quiet=True)
    on_ray = sweep(DEMO, str(tmp_path / "ray"), *args, quiet=True, ray="auto")

    def same(p):
        return {k: v for k, v in p.items() if k not in ("seconds", "latency_ms", "dense_latency_ms")}

    assert [same(p) for p in on_ray["points"]] == [same(p) for p in local["points"]]
    assert on_ray["front_macs"] == local["front_macs"]
    assert all(os.path.exists(tmp_path / "ray" / p["file"]) for p in on_ray["points"])
    again = sweep(DEMO, str(tmp_path / "ray"), *args, quiet=True, ray="auto")  # resumes: the same files
    assert [p["seconds"] for p in again["points"]] == [p["seconds"] for p in on_ray["points"]]


def test_latency_measured_on_the_node_with_the_resource(tmp_path):
    out, rep = tmp_path / "s.onnx", tmp_path / "r.json"
    code = main([DEMO, "-o", str(out), "--pass", "l2", "--pass", "select:ratio=0.5", "--bench", "--bench-repeats", "5",
                 "--latency-on", "deploy", "--report", str(rep), "-q"])
    assert code == 0
    report = json.loads(rep.read_text())
    assert report["bench"]["settings"]["machine"] == "the Ray node with resource 'deploy'"
    assert report["bench"]["pruned"]["median"] > 0 and report["bench"]["nodes"]["by_op"]
    from graphprune.cluster import measure_on

    with pytest.raises(BadInput, match="no machine of the Ray cluster declares"):
        measure_on("gpu-box", "latencies", [DEMO], {"input": np.zeros((1, 1, 8, 8), np.float32)})


def test_without_ray_the_flag_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    code = main([DEMO, "-o", str(tmp_path / "s.onnx"), "--calib", CALIB, "--ray", "auto", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'graphprune[ray]'" in err[0]
