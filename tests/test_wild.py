"""The wild-model suite: models that nobody shaped for graphprune, from real exporters and
from ../shared/assets/wild, each pruned with the default pipeline and with the calibration
recipe. What is checked is what misled users before: verification that measures what the
model is for (a detector's faces, an image's PSNR, a recurrent state), the true accuracy of
a classifier whose first output is its labels, counts and costs that are right, latency
that separates normalization from pruning, and one clean line where a model cannot be
served."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import wild_models
from conftest import asset
from graphprune.pipeline import Options, prune


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("wild")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "graphprune", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


# -- built with real exporters ------------------------------------------------------------------
def test_skl2onnx_classifier_accuracy_is_the_truth(folder, tmp_path):
    pytest.importorskip("skl2onnx")
    path, calib, ev = wild_models.skl_mlp(str(folder))
    rep = prune(path, Options(output=str(tmp_path / "p.onnx"), eval_data=ev))
    acc = rep["accuracy"]
    assert acc["output"] == "label" and acc["before"] > 0.85 and acc["before"] > acc["after"]  # output 0: labels
    assert rep["verification"]["outputs"]["label"]["kind"] == "labels"
    cal = prune(path, Options(output=str(tmp_path / "c.onnx"), eval_data=ev, calib=calib))
    assert cal["accuracy"]["after"] > acc["after"]
    zipped, _, _ = wild_models.skl_mlp(str(folder), zipmap=True)
    r = _cli(zipped, "-o", tmp_path / "z.onnx")
    assert r.returncode == 2 and "zipmap" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_opset9_fixed_batch_initializers_as_inputs(folder, tmp_path):
    pytest.importorskip("torch")
    path, calib, ev = wild_models.torch_opset9_fixed_batch(str(folder))
    rep = prune(path, Options(output=str(tmp_path / "p.onnx"), eval_data=ev, bench=True, bench_repeats=5))
    v = rep["verification"]
    assert v["samples"] >= 32 and v["inputs"] == "--eval samples"  # batch 1, compared on 64 samples
    b = rep["bench"]
    assert {"original", "normalized", "pruned"} <= set(b) and b["inputs"]["image"] == [1, 1, 8, 8]
    assert rep["before"]["latency_ms"] == b["normalized"]["median"]  # pruning is credited from the normalized model
    assert rep["before"]["params"] == sum(np.prod(t.dims) for t in __import__("onnx").load(path).graph.initializer
                                          if t.data_type == 1 and len(t.dims) > 0)
    cal = prune(path, Options(output=str(tmp_path / "c.onnx"), eval_data=ev, calib=calib))
    assert cal["calibration"].get("batch_freed") and cal["accuracy"]["after"] > rep["accuracy"]["after"]


def test_symbolic_spatial_sizes_cost_at_the_deployment_shape(folder, tmp_path):
    pytest.importorskip("torch")
    path = wild_models.dynamo_symbolic_size(str(folder))
    bare = prune(path, Options(output=str(tmp_path / "a.onnx")))
    assert any("symbolic sizes" in w for w in bare["warnings"])
    shaped = prune(path, Options(output=str(tmp_path / "b.onnx"), shapes=["input=1,1,64,64"]))
    per_pixel, head = 16 * 1 * 9 + 32 * 16 * 9, 32 * 10  # the two convolutions; the classifier after pooling
    assert (bare["before"]["macs"], shaped["before"]["macs"]) == (per_pixel + head, per_pixel * 64 * 64 + head)


def test_recurrent_state_is_compared_as_state(folder, tmp_path):
    pytest.importorskip("torch")
    path, calib = wild_models.gru_with_state(str(folder))
    rep = prune(path, Options(output=str(tmp_path / "p.onnx"), calib=calib))
    outs = rep["verification"]["outputs"]
    assert outs["h_out"]["kind"] == "state" and rep["verification"]["inputs"] == "held-out --calib samples"


def test_ir3_recipes_with_rewritten_shapes(tmp_path):
    path = asset("mnist", "mnist-8.onnx")
    calib = str(tmp_path / "c.npz")
    np.savez(calib, Input3=(np.random.default_rng(0).random((40, 1, 28, 28)) * 255).astype(np.float32))
    for passes in (["wifv:normalize=standardize", "select:macs=0.5,scope=global", "compensate:method=lsq",
                    "restore-stats"], ["wifv", "select:macs=0.5", "refit"]):
        rep = prune(path, Options(output=str(tmp_path / "p.onnx"), calib=calib, passes=passes, verify_each=True))
        assert rep["verification"]["checker"] == "passed"


# -- ../shared/assets/wild ------------------------------------------------------------------------
def _faces(tmp_path):
    """UltraFace, a calibration file of half the photos, verification inputs of the other
    half, and the task metric counting the faces found on that half."""
    pytest.importorskip("PIL")
    import face_metric

    path = asset("wild", "ultraface-RFB-320.onnx")
    asset("wild", "face_photos")
    cal, ev = face_metric.split()
    calib, inputs = str(tmp_path / "c.npz"), str(tmp_path / "i.npz")
    np.savez(calib, input=face_metric.photos(names=cal))
    np.savez(inputs, input=face_metric.photos(names=ev))
    metric = os.path.join(os.path.dirname(face_metric.__file__), "face_metric.py") + ":faces_found_held_out"
    return path, calib, inputs, metric


def test_face_detector_is_judged_by_its_faces(tmp_path):
    path, calib, inputs, metric = _faces(tmp_path)
    plain = prune(path, Options(output=str(tmp_path / "a.onnx"), inputs=inputs, passes=["l1", "select:macs=0.5"],
                                eval_metric=metric))
    v = plain["verification"]
    assert v["outputs"]["scores"]["kind"] == "entries" and v["samples"] == 12
    kept = v["metric"]["retention"]
    if kept < 0.9:  # fewer faces are never reported as verified without a warning
        assert any("task metric" in w for w in plain["warnings"])
    if v["outputs"]["scores"]["salient"] < 0.8:
        assert any("salient" in w for w in plain["warnings"])


@pytest.mark.slow
def test_face_detector_budget_that_keeps_its_faces(tmp_path):
    """The calibration recipe at the default budget; where it keeps fewer than 80% of the
    faces on the held-out photos, --find-budget says which budget does."""
    path, calib, inputs, metric = _faces(tmp_path)
    rep = prune(path, Options(output=str(tmp_path / "p.onnx"), calib=calib, inputs=inputs, eval_metric=metric,
                              tolerance="metric=0.8", find_budget=True))
    assert rep["verification"]["metric"]["retention"] >= 0.8
    assert rep["budget_search"]["chosen"].startswith("macs=")


def test_fastestdet_shuffle_groups_are_channels_not_heads(tmp_path):
    rep = prune(asset("wild", "FastestDet.onnx"), Options(output=str(tmp_path / "p.onnx")))
    assert not [g for g in rep["groups"] if g["kind"] == "heads"]
    assert rep["verification"]["outputs"]


def test_super_resolution_is_an_image_and_normalization_is_not_pruning(tmp_path):
    path = asset("wild", "super_resolution.onnx")
    rep = prune(path, Options(output=str(tmp_path / "p.onnx"), passes=["l1", "select:ratio=0"], bench=True,
                              bench_repeats=3, bench_batch=1))
    assert rep["unchanged"] and rep["verification"]["outputs"]["output"]["kind"] == "image"
    pruned = prune(path, Options(output=str(tmp_path / "q.onnx")))
    assert "psnr" in pruned["verification"]["outputs"]["output"]


def test_voice_activity_detector_needs_real_inputs_and_then_runs(tmp_path):
    import wave

    path = asset("wild", "silero_vad_16k_op15.onnx")
    r = _cli(path, "-o", tmp_path / "p.onnx")
    assert r.returncode == 2 and "--inputs" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    os.makedirs(tmp_path / "wav")
    t = np.arange(16000) / 16000
    with wave.open(str(tmp_path / "wav" / "a.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes((np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes())
    calib = tmp_path / "vad.npz"
    r = _cli("calib", path, "-o", calib, "--audio", tmp_path / "wav", "--rate", 16000, "--length", 512,
             "--fill", "state=0", "--fill", "sr=16000")
    assert r.returncode == 0, r.stderr
    rep = prune(path, Options(output=str(tmp_path / "p.onnx"), calib=str(calib)))
    assert rep["verification"]["outputs"]["stateN"]["kind"] == "state"
    assert rep["before"]["params"] < 320_000  # its LSTM weights counted once, not once per reader
