"""graphprune/verify.py: the reference run of the original (on --inputs, --eval, --calib
samples or probes, and saying which), the comparison of a written model with it (checker,
ONNX Runtime, output names and shapes, numbers), and --verify-each's step checker."""

from __future__ import annotations

import numpy as np
import pytest

from graph_kit import N, build, save, w
from graphprune.errors import BadInput, VerificationError
from graphprune.verify import check_only, compare, reference, verify_file


def _pair(tmp_path, scale=1.0, out="y", shape=(2, 4)):
    a = w(3, 4)
    ref = save(build([N("MatMul", ["x", "a"], ["y"])], {"a": a}, {"x": ["n", 3]}, {"y": ["n", 4]}), tmp_path, "r.onnx")
    k = w(3, shape[1]) if shape[1] != 4 else a * scale
    got = save(build([N("MatMul", ["x", "a"], [out])], {"a": k}, {"x": ["n", 3]}, {out: ["n", shape[1]]}), tmp_path,
               "g.onnx")
    return ref, got


def test_compare_metrics():
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    same = compare([a], [a.copy()])
    assert same == {"max_abs_diff": 0.0, "cosine": pytest.approx(1.0), "top1_agreement": 1.0}
    flipped = compare([a], [a[:, ::-1].copy()])
    assert flipped["top1_agreement"] == 0.0 and flipped["max_abs_diff"] == 2.0
    assert compare([np.ones((2, 3, 1, 1))], [np.ones((2, 3, 1, 1))])["top1_agreement"] == 1.0


def test_reference_sources(tmp_path):
    ref, _ = _pair(tmp_path)
    assert reference(ref).source == "random probes"
    data = str(tmp_path / "in.npz")
    np.savez(data, x=np.ones((5, 3), np.float32), labels=np.zeros(5, int))
    r = reference(ref, inputs_file=data)
    assert r.source == "--inputs" and r.outputs[0].shape == (5, 4)
    assert reference(ref, eval_file=data).source == "--eval samples"
    assert reference(ref, calib=data).source == "--calib samples"
    np.savez(data, z=np.ones(3))
    with pytest.raises(BadInput, match="no array for model input"):
        reference(ref, inputs_file=data)


def test_verify_file_compares_and_refuses(tmp_path):
    ref, got = _pair(tmp_path, scale=1.0)
    r = reference(ref)
    assert verify_file(got, r)["max_abs_diff"] == 0.0 and check_only(got)["checker"] == "passed"
    ref, renamed = _pair(tmp_path, out="z")
    with pytest.raises(VerificationError, match="output names changed"):
        verify_file(renamed, reference(ref))
    ref, narrower = _pair(tmp_path, shape=(2, 5))
    with pytest.raises(VerificationError, match="changed shape"):
        verify_file(narrower, reference(ref))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(VerificationError, match="checker"):
        check_only(str(bad))
