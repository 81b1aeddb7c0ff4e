"""Calibration data and activation statistics: bad data is refused with a message naming
the input; streaming statistics equal the ones computed over all data at once; stored
.npz members read batch by batch give the same values."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphprune.activations import Request, collect
from graphprune.calibration import Calibration
from graphprune.errors import BadInput
from graphprune.loading import load_model

INPUTS = [("x", ["batch", 8], "tensor(float)"), ("ids", ["batch", 3], "tensor(int64)")]


def _npz(tmp_path, **arrays):
    path = str(tmp_path / "c.npz")
    np.savez(path, **arrays)
    return path


def _calib(source, **kw):
    cal = Calibration(source, INPUTS, **kw)
    return [b for b in cal.batches()], cal


def good(n=10):
    r = np.random.default_rng(0)
    return {"x": r.standard_normal((n, 8)).astype(np.float32), "ids": r.integers(0, 5, (n, 3))}


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("ids"), "no array for model input 'ids'"),
    (lambda d: d.update(extra=np.zeros((10, 1), np.float32)), "array 'extra' is not a model input"),
    (lambda d: d.update(x=d["x"].astype(np.float64)), "input 'x' has dtype float64; the model wants tensor(float)"),
    (lambda d: d.update(x=d["x"][:, :6]), "input 'x' has size 6 on axis 1; the model wants 8"),
    (lambda d: d.update(x=d["x"][0]), "input 'x' has rank 1"),
    (lambda d: d.update(ids=d["ids"][:7]), "different numbers of samples"),
    (lambda d: d.update(x=d["x"][:0], ids=d["ids"][:0]), "no samples"),
])
def test_bad_calibration_data_is_refused_by_name(tmp_path, change, message):
    data = good()
    change(data)
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        _calib(_npz(tmp_path, **data))


def test_nan_is_refused_with_its_sample(tmp_path):
    data = good(50)
    data["x"][37, 2] = np.nan
    with pytest.raises(BadInput, match="input 'x' has NaN or Inf in sample 37"):
        _calib(_npz(tmp_path, **data), batch=16)


def test_npz_members_are_read_batch_by_batch(tmp_path):
    data = good(50)
    batches, cal = _calib(_npz(tmp_path, **data), batch=16)
    assert [len(b["x"]) for b in batches] == [16, 16, 16, 2]
    from graphprune.samples import StoredArray

    assert isinstance(cal._arrays["x"], StoredArray)  # read batch by batch, not loaded
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), data["x"])
    assert cal.describe()["samples"] == 50 and len(cal.describe()["sha256"]) == 64
    limited = list(cal.limited(20).batches())
    assert sum(len(b["x"]) for b in limited) == 20


def test_python_iterables(tmp_path):
    data = good(12)
    chunks = [{k: v[i:i + 5] for k, v in data.items()} for i in range(0, 12, 5)]
    batches, cal = _calib(chunks)
    assert sum(len(b["x"]) for b in batches) == 12 and cal.digest is not None
    assert len(list(cal.batches())) == 3  # a list can be read again
    once = Calibration(iter(chunks), INPUTS)
    list(once.batches())
    with pytest.raises(BadInput, match="already used up"):
        list(once.batches())
    with pytest.raises(BadInput, match="calibration batch 1 is a list"):
        list(Calibration([chunks[0], [1, 2]], INPUTS).batches())


@pytest.mark.parametrize("source", ["list", "npz"])
def test_a_sample_limit_keeps_whole_batches_of_a_fixed_batch_model(tmp_path, source):
    """restore-stats takes 256 samples: a model exported with a batch of 250 must get one
    whole batch, not 250 + 6 (which ONNX Runtime refuses); a free batch is cut exactly."""
    fixed = [("x", [5, 8], "tensor(float)"), ("ids", [5, 3], "tensor(int64)")]
    data = good(20)
    src = [{k: v[i:i + 5] for k, v in data.items()} for i in range(0, 20, 5)] if source == "list" else _npz(tmp_path, **data)
    cal = Calibration(src, fixed, batch=5)
    for limit, sizes in [(7, [5]), (3, [5]), (10, [5, 5]), (None, [5, 5, 5, 5])]:
        assert [len(b["x"]) for b in cal.limited(limit).batches()] == sizes
    free = Calibration(src, INPUTS, batch=5)
    assert [len(b["x"]) for b in free.limited(7).batches()] == [5, 2]


def _relu_model(tmp_path):
    r = np.random.default_rng(1)
    w = numpy_helper.from_array(r.standard_normal((8, 6)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])], [w])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, numpy_helper.to_array(w)


def test_streaming_statistics_equal_the_full_batch_ones(tmp_path):
    path, w = _relu_model(tmp_path)
    x = (np.random.default_rng(2).standard_normal((103, 8)) * 3 + 5).astype(np.float32)
    cal = Calibration([{"x": x[i:i + 17]} for i in range(0, 103, 17)], [("x", ["batch", 8], "tensor(float)")])
    model = load_model(path)
    stats = collect(model, {"h": Request(1, gram=True), "x": Request(1)}, cal)
    h = x.astype(np.float64) @ w
    np.testing.assert_allclose(stats["h"].mean, h.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["h"].var, h.var(0), rtol=1e-5)
    np.testing.assert_allclose(stats["h"].l2, np.sqrt((h * h).sum(0)), rtol=1e-6)
    np.testing.assert_allclose(stats["h"].mean_abs, np.abs(h).mean(0), rtol=1e-6)
    aug = np.concatenate([h, np.ones((103, 1))], axis=1)
    np.testing.assert_allclose(stats["h"].gram, aug.T @ aug, rtol=1e-5)
    np.testing.assert_allclose(stats["x"].var, x.astype(np.float64).var(0), rtol=1e-6)
    assert stats["h"].count == 103


def test_variance_is_stable_for_large_offsets(tmp_path):
    """A running sum of squares would cancel here; the pairwise merge does not."""
    path, w = _relu_model(tmp_path)
    x = (np.random.default_rng(3).standard_normal((400, 8)) * 1e-3 + 1e4).astype(np.float32)
    cal = Calibration([{"x": x[i:i + 7]} for i in range(0, 400, 7)], [("x", ["batch", 8], "tensor(float)")])
    stats = collect(load_model(path), {"x": Request(1)}, cal)
    np.testing.assert_allclose(stats["x"].var, x.astype(np.float64).var(0), rtol=1e-6)


def _token_model(tmp_path, flat=False):
    """Embedding -> MatMul -> Relu -> MatMul, the hidden state zeroed where the mask is 0
    (as padding is in a transformer's pooled output); `flat` runs the MLP on (batch*seq, 8)."""
    r = np.random.default_rng(1)
    inits = [numpy_helper.from_array(r.standard_normal((20, 8)).astype(np.float32), "emb"),
             numpy_helper.from_array(r.standard_normal((8, 16)).astype(np.float32), "w1"),
             numpy_helper.from_array(r.standard_normal((16, 4)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([2], np.int64), "last")]
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"]),
             helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "last"], ["m3"]),
             helper.make_node("Mul", ["e", "m3"], ["em"]),
             helper.make_node("MatMul", ["em", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("MatMul", ["a", "w2"], ["y"])]
    if flat:
        inits.append(numpy_helper.from_array(np.array([-1, 8], np.int64), "flat"))
        nodes[4:4] = [helper.make_node("Reshape", ["em", "flat"], ["em2"])]
        nodes[5].input[0] = "em2"
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("ids", "mask")]
    out_shape = [None, 4] if flat else ["batch", "seq", 4]
    graph = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              inits)
    path = str(tmp_path / ("flat.onnx" if flat else "tok.onnx"))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_calib_mask_leaves_padding_out_of_the_statistics(tmp_path):
    """Padded calibration data with --calib-mask gives the same pruned model as the same
    sentences fed unpadded (batches of their own length); without the mask it does not."""
    from graphprune.pipeline import Options, prune

    path = _token_model(tmp_path)
    r = np.random.default_rng(2)
    lengths = [3, 5, 7, 4]
    rows = [r.integers(1, 20, n) for n in lengths]
    unpadded = [{"ids": row[None].astype(np.int64), "mask": np.ones((1, len(row)), np.int64)} for row in rows]
    ids = np.zeros((len(rows), 7), np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
    padded = _npz(tmp_path, ids=ids, mask=mask)
    passes = ["wifv", "select:ratio=0.25", "compensate"]

    def weights(calib, mask_name, name):
        out = str(tmp_path / f"{name}.onnx")
        rep = prune(path, Options(passes=passes, output=out, calib=calib, calib_mask=mask_name, quiet=True))
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(out).graph.initializer}, rep

    ref, _ = weights(unpadded, None, "unpadded")
    masked, rep = weights(padded, "mask", "masked")
    plain, _ = weights(padded, None, "plain")
    assert rep["calibration"]["mask"] == "mask" and rep["calibration"]["unmasked_tensors"] == []
    assert not [w for w in rep.get("warnings", []) if "calib-mask" in w]
    assert ref.keys() == masked.keys()
    for k in ref:
        np.testing.assert_allclose(masked[k], ref[k], rtol=1e-5, atol=1e-6)
    assert any(plain[k].shape != ref[k].shape or not np.allclose(plain[k], ref[k], atol=1e-4) for k in ref)
    with pytest.raises(BadInput, match="'attention' is not a model input"):
        prune(path, Options(passes=passes, output=str(tmp_path / "x.onnx"), calib=padded, calib_mask="attention"))


def test_verification_runs_on_calibration_samples_when_there_is_a_file(tmp_path):
    from graphprune.pipeline import Options, prune

    path = _token_model(tmp_path)
    ids = np.random.default_rng(3).integers(1, 20, (40, 5)).astype(np.int64)
    npz = _npz(tmp_path, ids=ids, mask=np.ones_like(ids))
    rep = prune(path, Options(passes=["wifv", "select:ratio=0.25"], output=str(tmp_path / "a.onnx"), calib=npz))
    # The last quarter is held out: verification never sees what calibration was fitted on.
    assert rep["verification"]["inputs"] == "held-out --calib samples" and rep["verification"]["samples"] == 10
    assert rep["calibration"]["samples"] == 30 and rep["calibration"]["held_out_for_verification"] == 10
    batches = [{"ids": ids, "mask": np.ones_like(ids)}]  # a Python iterable may be single-use: probes
    rep = prune(path, Options(passes=["wifv", "select:ratio=0.25"], output=str(tmp_path / "b.onnx"), calib=batches))
    assert rep["verification"]["inputs"] == "random probes"


def test_calib_mask_that_does_not_line_up_is_reported(tmp_path):
    from graphprune.pipeline import Options, prune

    path = _token_model(tmp_path, flat=True)
    ids = np.random.default_rng(4).integers(1, 20, (6, 5)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[:, 3:] = 0
    rep = prune(path, Options(passes=["wifv", "select:ratio=0.25"], output=str(tmp_path / "f.onnx"),
                              calib=_npz(tmp_path, ids=ids, mask=mask), calib_mask="mask", quiet=True))
    assert rep["calibration"]["unmasked_tensors"] == ["a", "em2"]
    assert any("does not line up" in w and "'a'" in w for w in rep["warnings"])
