"""graphprune/verify.py: the reference run of the original (on --inputs, --eval samples,
held-out --calib samples or at least 32 random probes, and saying which and how many; a
fixed-batch model run batch by batch), the comparison of a written model with it (checker,
ONNX Runtime, output names and shapes, each output by its kind) and --verify-each's step
checker. The metrics themselves are tested in test_outputs.py."""

from __future__ import annotations

import numpy as np
import pytest

from graph_kit import N, build, save, w
from graphprune.errors import BadInput, VerificationError
from graphprune.verify import PROBE_SAMPLES, check_only, reference, stack, verify_file


def _pair(tmp_path, scale=1.0, out="y", width=4, batch="n"):
    a = w(3, 4)
    ref = save(build([N("MatMul", ["x", "a"], ["y"])], {"a": a}, {"x": [batch, 3]}, {"y": [batch, 4]}), tmp_path, "r.onnx")
    k = w(3, width) if width != 4 else a * scale
    got = save(build([N("MatMul", ["x", "a"], [out])], {"a": k}, {"x": [batch, 3]}, {out: [batch, width]}), tmp_path,
               "g.onnx")
    return ref, got


def test_reference_sources_and_counts(tmp_path):
    ref, _ = _pair(tmp_path)
    r = reference(ref)
    assert (r.source, r.samples) == ("random probes", PROBE_SAMPLES) and r.outputs[0].shape == (PROBE_SAMPLES, 4)
    data = str(tmp_path / "in.npz")
    np.savez(data, x=np.ones((100, 3), np.float32), labels=np.zeros(100, int))
    r = reference(ref, eval_file=data)
    assert (r.source, r.samples) == ("--eval samples", 64)
    calib = str(tmp_path / "calib.npz")
    np.savez(calib, x=np.ones((100, 3), np.float32))
    r = reference(ref, calib_file=calib, holdout=20)
    assert (r.source, r.samples) == ("held-out --calib samples", 20)
    np.savez(data, x=np.ones((5, 3), np.float32))
    assert reference(ref, inputs_file=data).samples == 5
    np.savez(data, z=np.ones(3))
    with pytest.raises(BadInput, match="'z' is not a model input"):
        reference(ref, inputs_file=data)
    np.savez(data, x=np.full((5, 3), np.nan, np.float32))
    with pytest.raises(BadInput, match="NaN or Inf in sample 0"):
        reference(ref, inputs_file=data)


def test_a_batch_one_model_is_compared_on_many_samples(tmp_path):
    ref, got = _pair(tmp_path, batch=1)
    r = reference(ref)
    assert r.samples == PROBE_SAMPLES and len(r.runs) == PROBE_SAMPLES and r.outputs[0].shape == (PROBE_SAMPLES, 4)
    v = verify_file(got, r)
    assert v["samples"] == PROBE_SAMPLES and v["outputs"]["y"]["rel"] == 0.0


def test_verify_file_compares_and_refuses(tmp_path):
    ref, got = _pair(tmp_path)
    r = reference(ref)
    v = verify_file(got, r)
    assert v["max_abs_diff"] == 0.0 and check_only(got)["checker"] == "passed" and v["outside_tolerance"] == []
    ref, off = _pair(tmp_path, scale=-1.0)
    v = verify_file(off, reference(ref), {"top1": 0.99})
    assert v["outputs"]["y"]["kind"] == "class-scores" and v["outside_tolerance"]
    ref, renamed = _pair(tmp_path, out="z")
    with pytest.raises(VerificationError, match="output names changed"):
        verify_file(renamed, reference(ref))
    ref, narrower = _pair(tmp_path, width=5)
    with pytest.raises(VerificationError, match="changed shape"):
        verify_file(narrower, reference(ref))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(VerificationError, match="checker"):
        check_only(str(bad))


def test_a_model_that_needs_real_inputs_asks_for_them(tmp_path):
    """Random probes that the model cannot run on (a reflect pad needs two samples of a
    sequence length of 1 here) are the probes' fault: the message asks for --inputs."""
    from graph_kit import i64

    proto = build([N("Pad", ["x", "p"], ["y"], mode="reflect")], {"p": i64(0, 1, 0, 1)}, {"x": ["n", "s"]},
                  {"y": ["n", "t"]}, opset=13)
    with pytest.raises(BadInput, match="--inputs"):
        reference(save(proto, tmp_path))


def test_stack_runs():
    assert stack([np.zeros((2, 3)), np.zeros((1, 3))]).shape == (3, 3)
    assert stack([np.zeros((1, 4, 3)), np.zeros((1, 5, 3))]).shape == (9, 3)
    assert stack([np.zeros(2), np.zeros((1, 3))]).shape == (5,)
