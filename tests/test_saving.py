"""graphprune/saving.py: atomic writes (a failure before commit leaves nothing, not even a
temporary file), never over the input, into an existing folder; external data on request
or past the size limit, pointing at the output's own data file; stale temporaries of
killed runs are removed."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from graph_kit import N, build, save, w
from graphprune.errors import BadInput
from graphprune.saving import check_output_path, model_bytes, remove_stale_temporaries, save_model


def _model():
    return ir.from_proto(build([N("MatMul", ["x", "w1"], ["y"])], {"w1": w(30, 40)}, {"x": [2, 30]}, {"y": [2, 40]}))


def test_a_failed_commit_leaves_nothing(tmp_path):
    def refuse(path):
        assert os.path.exists(path)
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        save_model(_model(), str(tmp_path / "o.onnx"), before_commit=refuse)
    assert os.listdir(tmp_path) == []


def test_external_data_points_at_the_outputs_own_file(tmp_path):
    out = str(tmp_path / "o.onnx")
    model = _model()
    save_model(model, out, external=True)
    assert sorted(os.listdir(tmp_path)) == ["o.onnx", "o.onnx.data"]
    proto = onnx.load(out, load_external_data=False)
    assert {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"} == {"o.onnx.data"}
    assert model_bytes(out) == os.path.getsize(out) + os.path.getsize(out + ".data")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(onnx.load(out).graph.initializer[0]),
                                  model.graph.initializers["w1"].const_value.numpy())


def test_output_paths_are_checked(tmp_path):
    src = save(build([N("Relu", ["x"], ["y"])], {}, {"x": [1]}, {"y": [1]}), tmp_path)
    with pytest.raises(BadInput, match="refusing to write over the input"):
        check_output_path(src, src)
    with pytest.raises(BadInput, match="does not exist"):
        check_output_path(str(tmp_path / "no" / "o.onnx"), src)
    with pytest.raises(BadInput, match="is a folder"):
        check_output_path(str(tmp_path), src)


def test_stale_temporaries_of_dead_runs_are_removed(tmp_path):
    stale = tmp_path / ".o.onnx.999999999.abc.tmp"
    live = tmp_path / f".o.onnx.{os.getpid()}.abc.tmp"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    remove_stale_temporaries(str(tmp_path), "o.onnx")
    assert not stale.exists() and live.exists()


def test_outputs_follow_the_umask(tmp_path):
    import stat

    from graphprune.report import write_json

    old = os.umask(0o022)
    try:
        save_model(_model(), str(tmp_path / "o.onnx"))
        write_json({"a": 1}, str(tmp_path / "r.json"))
    finally:
        os.umask(old)
    for name in ("o.onnx", "r.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
