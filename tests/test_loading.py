"""Bad files get one clear line and exit code 2; nothing is written; the input is untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from graphprune.errors import BadInput
from graphprune.loading import load_model


def _conv_model(external: dict | None = None, opset=17, ir_version=8):
    w = np.ones((4, 3, 1, 1), np.float32)
    tensor = numpy_helper.from_array(w, "w")
    if external is not None:
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for k, v in external.items():
            tensor.external_data.add(key=k, value=str(v))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 2, 2])], [tensor])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "graphprune", *args], capture_output=True, text=True, timeout=120)


def _save(m, path):
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return str(path)


def _refused(path, tmp_path, needle):
    out = tmp_path / "out.onnx"
    r = _cli(str(path), "-o", str(out))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out")]  # no temp left


def test_missing_file(tmp_path):
    _refused(tmp_path / "nope.onnx", tmp_path, "no such file")


def test_not_onnx(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    _refused(p, tmp_path, "not an ONNX model")


def test_truncated(tmp_path):
    data = _conv_model().SerializeToString()
    for cut in (len(data) // 3, len(data) - 5):
        p = tmp_path / f"t{cut}.onnx"
        p.write_bytes(data[:cut])
        with pytest.raises(BadInput):
            load_model(str(p))
    p = tmp_path / "t.onnx"
    p.write_bytes(data[: len(data) // 2])
    _refused(p, tmp_path, "")


def test_empty_file(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"")
    _refused(p, tmp_path, "empty file")


@pytest.mark.parametrize("opset,needle", [(5, "opset 5 is not supported"), (99, "opset 99 is not supported")])
def test_unsupported_opset(tmp_path, opset, needle):
    _refused(_save(_conv_model(opset=opset), tmp_path / "m.onnx"), tmp_path, needle)


def test_unsupported_ir_version(tmp_path):
    _refused(_save(_conv_model(ir_version=99), tmp_path / "m.onnx"), tmp_path, "IR version 99")


def test_stored_length_mismatch(tmp_path):
    m = _conv_model()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-4]
    _refused(_save(m, tmp_path / "m.onnx"), tmp_path, "initializer 'w'")


def test_dangling_input(tmp_path):
    m = _conv_model()
    m.graph.node[0].input[0] = "ghost"
    _refused(_save(m, tmp_path / "m.onnx"), tmp_path, "'ghost'")


def _data_file(folder, name="w.bin", size=48):
    path = folder / name
    path.write_bytes(np.ones(size // 4, np.float32).tobytes())
    return path


@pytest.mark.parametrize("location,needle", [
    ("../w.bin", "leaves the model folder"),
    ("sub/../../w.bin", "leaves the model folder"),
    ("/etc/passwd", "absolute path"),
])
def test_external_data_escaping_the_folder(tmp_path, location, needle):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    _data_file(tmp_path)
    path = _save(_conv_model({"location": location, "offset": 0, "length": 48}), model_dir / "m.onnx")
    _refused(path, model_dir, needle)


def test_external_data_through_symlink(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    target = _data_file(tmp_path)
    os.symlink(target, model_dir / "w.bin")
    path = _save(_conv_model({"location": "w.bin", "length": 48}), model_dir / "m.onnx")
    _refused(path, model_dir, "symlink")


def test_external_data_hardlink(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    target = _data_file(tmp_path)
    os.link(target, model_dir / "w.bin")
    path = _save(_conv_model({"location": "w.bin", "length": 48}), model_dir / "m.onnx")
    _refused(path, model_dir, "hard link")


def test_external_data_fifo(tmp_path):
    os.mkfifo(tmp_path / "w.bin")
    path = _save(_conv_model({"location": "w.bin", "length": 48}), tmp_path / "m.onnx")
    _refused(path, tmp_path, "not a regular file")


@pytest.mark.parametrize("ext,needle", [
    ({"location": "w.bin", "offset": 16, "length": 48}, "runs past the end"),
    ({"location": "w.bin", "length": 40}, "needs 48"),
    ({"location": "w.bin", "length": 48, "sneaky": 1}, "unknown external-data keys"),
    ({"location": "*/_ORT_MEM_ADDR_/*", "offset": 0, "length": 48}, "process memory"),
])
def test_external_data_bounds_and_keys(tmp_path, ext, needle):
    _data_file(tmp_path)
    path = _save(_conv_model(ext), tmp_path / "m.onnx")
    _refused(path, tmp_path, needle)


def test_valid_external_data_loads_and_prunes(tmp_path):
    _data_file(tmp_path)
    path = _save(_conv_model({"location": "w.bin", "offset": 0, "length": 48}), tmp_path / "m.onnx")
    model = load_model(path)
    assert model.graph.initializers["w"].const_value.numpy().shape == (4, 3, 1, 1)


def test_refuses_to_overwrite_input_and_keeps_it(zoo, tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(open(zoo["simple_cnn"], "rb").read())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    r = _cli(str(src), "-o", str(src))
    assert r.returncode == 2 and "over the input" in r.stderr
    r = _cli(str(src), "-o", str(tmp_path / "p.onnx"))
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest


def test_failed_verification_writes_nothing(zoo, tmp_path, monkeypatch):
    from graphprune.errors import VerificationError
    from graphprune.pipeline import Options, prune

    def broken(*a, **k):
        raise VerificationError("simulated")

    monkeypatch.setattr("graphprune.checks.verify_file", broken)
    out = tmp_path / "p.onnx"
    with pytest.raises(VerificationError):
        prune(zoo["simple_cnn"], Options(output=str(out)))
    assert not out.exists() and os.listdir(tmp_path) == []


def test_external_data_through_a_symlinked_folder(tmp_path):
    model_dir = tmp_path / "m"
    (model_dir / "real").mkdir(parents=True)
    _data_file(model_dir / "real")
    os.symlink(model_dir / "real", model_dir / "sub")  # stays inside the folder, still refused
    path = _save(_conv_model({"location": "sub/w.bin", "length": 48}), model_dir / "m.onnx")
    _refused(path, model_dir, "symlink")


def test_external_data_symlink_inside_the_folder(tmp_path):
    _data_file(tmp_path, "real.bin")
    os.symlink(tmp_path / "real.bin", tmp_path / "w.bin")
    path = _save(_conv_model({"location": "w.bin", "length": 48}), tmp_path / "m.onnx")
    _refused(path, tmp_path, "symlink")


def test_external_data_device_file(tmp_path):
    import stat as st

    try:
        os.mknod(tmp_path / "w.bin", 0o600 | st.S_IFCHR, os.makedev(1, 5))  # like /dev/zero
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here")
    path = _save(_conv_model({"location": "w.bin", "length": 48}), tmp_path / "m.onnx")
    _refused(path, tmp_path, "not a regular file")


def test_declared_size_over_the_memory_budget(tmp_path):
    # A sparse file makes the claimed 128 GiB cheap to fake; the declared size is refused.
    big = 1 << 37
    with open(tmp_path / "w.bin", "wb") as f:
        f.truncate(big)
    m = _conv_model({"location": "w.bin", "length": big})
    t = m.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([1 << 33, 4, 1, 1])
    _refused(_save(m, tmp_path / "m.onnx"), tmp_path, "limit per tensor")


def test_external_data_without_location(tmp_path):
    _data_file(tmp_path)
    path = _save(_conv_model({"offset": 0, "length": 48}), tmp_path / "m.onnx")
    _refused(path, tmp_path, "without a location")


def test_external_data_negative_offset(tmp_path):
    _data_file(tmp_path)
    path = _save(_conv_model({"location": "w.bin", "offset": -4, "length": 48}), tmp_path / "m.onnx")
    _refused(path, tmp_path, "negative external-data offset")


def test_typed_data_count_mismatch(tmp_path):
    m = _conv_model()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.float_data.extend([1.0] * 11)  # the shape needs 12
    _refused(_save(m, tmp_path / "m.onnx"), tmp_path, "stores 11 values")


def test_shape_without_data(tmp_path):
    m = _conv_model()
    m.graph.initializer[0].ClearField("raw_data")
    _refused(_save(m, tmp_path / "m.onnx"), tmp_path, "stores no data")


@pytest.mark.parametrize("field", ["name", "attribute"])
def test_invalid_utf8_text_is_refused(tmp_path, field):
    m = _conv_model()
    if field == "name":
        m.graph.node[0].name = "zzzz"
    else:
        m.graph.node[0].attribute.append(helper.make_attribute("auto_pad", "zzzz"))
    data = m.SerializeToString().replace(b"zzzz", b"z\xc0zz")  # protobuf lets invalid UTF-8 through
    p = tmp_path / "m.onnx"
    p.write_bytes(data)
    _refused(p, tmp_path, "not valid UTF-8")


def _rms_mlp(op: str) -> onnx.ModelProto:
    """x -> MatMul -> <op> (an RMSNorm as onnxruntime-genai writes it) -> MLP."""
    r = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["a"]),
             helper.make_node(op, ["a", "g"], ["b"], axis=-1, epsilon=1e-5),
             helper.make_node("MatMul", ["b", "w1"], ["c"]), helper.make_node("Relu", ["c"], ["d"]),
             helper.make_node("MatMul", ["d", "w2"], ["y"])]
    inits = [numpy_helper.from_array(r.standard_normal(s).astype(np.float32), n)
             for n, s in (("w0", (8, 16)), ("g", (16,)), ("w1", (16, 32)), ("w2", (32, 4)))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_ops_onnx_runtime_registers_in_the_default_domain_load_and_prune(tmp_path):
    import graphprune

    path = tmp_path / "rms.onnx"
    onnx.save(_rms_mlp("SimplifiedLayerNormalization"), path)
    with pytest.raises(onnx.checker.ValidationError):  # what the ONNX checker alone says
        onnx.checker.check_model(str(path))
    model = load_model(str(path))
    assert [n.op_type for n in model.graph][1] == "SimplifiedLayerNormalization" and model.graph.node(1).domain == ""
    out = tmp_path / "small.onnx"
    rep = graphprune.prune(str(path), graphprune.Options(passes=["l2", "select:ratio=0.5"], output=str(out), quiet=True))
    assert rep["verification"]["checker"] == "passed" and rep["after"]["macs"] < rep["before"]["macs"]
    assert onnx.load(str(out)).graph.node[1].domain == ""  # written as it came, in the default domain
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".check")]


def test_an_op_neither_onnx_nor_onnx_runtime_knows_is_still_refused(tmp_path):
    path = tmp_path / "bad.onnx"
    onnx.save(_rms_mlp("SimplifiedLayerNormalisationTypo"), path)
    with pytest.raises(BadInput, match="not a valid ONNX model.*SimplifiedLayerNormalisationTypo"):
        load_model(str(path))
