"""Run-time shape computations (dynamic-axis exports): a size read with Shape may only
reach Reshape/Expand targets, where it is tied to the axis it was read from; a size that
reaches arithmetic pins its axis. Literal head counts inside computed targets are
rewritten, and the merge round trip (batch*heads) keeps heads prunable."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from graphprune.context import Context
from graphprune.loading import load_model
from graphprune.pipeline import run_passes
from oracles import inert_removal_diff, prune_to_file, run_model

R = np.random.default_rng(0)


def w(*shape):
    return numpy_helper.from_array((R.standard_normal(shape) * 0.3).astype(np.float32))


def i64(*vals):
    return np.array(vals, dtype=np.int64)


def _save(path, nodes, inits):
    inits = [numpy_helper.from_array(v, k) if isinstance(v, np.ndarray) else _named(v, k) for k, v in inits.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.save(model, str(path))
    return str(path)


def _named(t, name):
    t.name = name
    return t


def _attention(scale_from_shape: bool):
    """x -> Q, K, V (4 heads of 4) with targets Concat(Shape(x)[0:2], [4], [-1]); K is
    transposed through a batch*heads round trip; optionally the softmax scale is computed
    from the run-time size of V's last axis (a size flowing into arithmetic)."""
    nodes = [helper.make_node("Shape", ["x"], ["xs"], end=2),
             helper.make_node("Concat", ["xs", "heads", "minus1"], ["target"], axis=0)]
    for n in "qkv":
        nodes += [helper.make_node("MatMul", ["x", f"w{n}"], [f"{n}0"]),
                  helper.make_node("Reshape", [f"{n}0", "target"], [f"{n}1"]),
                  helper.make_node("Transpose", [f"{n}1"], [f"{n}2"], perm=[0, 2, 1, 3])]
    nodes += [helper.make_node("Shape", ["k2"], ["ktail"], start=2),
              helper.make_node("Concat", ["minus1", "ktail"], ["merge"], axis=0),
              helper.make_node("Reshape", ["k2", "merge"], ["km"]),          # (batch*heads, seq, 4)
              helper.make_node("Transpose", ["km"], ["kmt"], perm=[0, 2, 1]),
              helper.make_node("Shape", ["k2"], ["ks"], end=2),
              helper.make_node("Concat", ["ks", "four", "minus1"], ["split"], axis=0),
              helper.make_node("Reshape", ["kmt", "split"], ["kt"]),          # (batch, heads, 4, seq)
              helper.make_node("MatMul", ["q2", "kt"], ["s0"])]
    if scale_from_shape:
        nodes += [helper.make_node("Shape", ["v0"], ["vs"], start=2),
                  helper.make_node("Cast", ["vs"], ["vsf"], to=TensorProto.FLOAT),
                  helper.make_node("Sqrt", ["vsf"], ["scale"]),
                  helper.make_node("Div", ["s0", "scale"], ["s1"])]
    else:
        nodes += [helper.make_node("Mul", ["s0", "half"], ["s1"])]
    nodes += [helper.make_node("Softmax", ["s1"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "v2"], ["c0"]),
              helper.make_node("Transpose", ["c0"], ["c1"], perm=[0, 2, 1, 3]),
              helper.make_node("Shape", ["c1"], ["cs"], end=2),
              helper.make_node("Concat", ["cs", "sixteen"], ["merged"], axis=0),
              helper.make_node("Reshape", ["c1", "merged"], ["c2"]),
              helper.make_node("MatMul", ["c2", "wo"], ["y"])]
    inits = {"wq": w(16, 16), "wk": w(16, 16), "wv": w(16, 16), "wo": w(16, 16),
             "heads": i64(4), "minus1": i64(-1), "four": i64(4), "sixteen": i64(16),
             "half": np.array(0.5, np.float32)}
    return nodes, inits


def _head_groups(path):
    ctx = Context(load_model(path))
    run_passes(ctx, ["normalize"])
    return [g for g in ctx.analysis().groups if g.kind == "heads"]


def test_computed_targets_tie_heads_and_literals_are_rewritten(tmp_path):
    path = _save(tmp_path / "att.onnx", *_attention(scale_from_shape=False))
    groups = _head_groups(path)
    assert len(groups) == 1 and groups[0].n_units == 4 and not groups[0].pinned.any()
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:heads=0.5"])
    assert report["verification"]["checker"] == "passed"
    pruned = onnx.load(str(tmp_path / "p.onnx"))
    ints = {tuple(numpy_helper.to_array(t).reshape(-1).tolist()) for t in pruned.graph.initializer
            if t.data_type == TensorProto.INT64}
    assert (2,) in ints and (8,) in ints  # heads 4 -> 2, merged width 16 -> 8
    feeds, _ = run_model(path)
    longer = {"x": np.concatenate([feeds["x"]] * 3, axis=1)}  # other sequence length
    _, got = run_model(str(tmp_path / "p.onnx"), longer)
    assert got[0].shape == (feeds["x"].shape[0], 3 * feeds["x"].shape[1], 16)
    rel_diff, n_groups, _ = inert_removal_diff(path, tmp_path, ratio=0.5)
    assert n_groups == 1 and rel_diff < 1e-5


def test_a_size_flowing_into_arithmetic_pins_its_axis(tmp_path):
    path = _save(tmp_path / "att.onnx", *_attention(scale_from_shape=True))
    groups = _head_groups(path)
    # V's width reaches the softmax scale: pruning heads would change it, so heads pin.
    assert all(g.pinned.all() for g in groups)
    assert any("read at run time" in r for g in groups for r in g.pin_reasons)


def test_incomplete_symbolic_inference_leaves_the_working_directory_clean(tmp_path, monkeypatch):
    """ONNX Runtime's symbolic inference dumps the model into the working directory when it
    cannot finish (here an op of an unknown domain on a dynamic batch); none of it may stay."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Mystery", ["h"], ["y"], domain="acme")]
    graph = helper.make_graph(nodes, "g", [x], [y], [w])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("acme", 1)])
    path = tmp_path / "in" / "m.onnx"
    path.parent.mkdir()
    onnx.save(proto, str(path))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    from graphprune import shapes
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    assert shapes._ort_symbolic(shapes._shape_proto(load_model(str(path)))) is None  # incomplete
    with __import__("pytest").raises(Exception, match="Incomplete"):
        SymbolicShapeInference.infer_shapes(proto, auto_merge=True)  # the public call does dump ...
    assert sorted(p.name for p in work.iterdir())  # ... which is what this test guards against
    for p in work.iterdir():
        p.unlink()
    shapes.infer_exact_shapes(load_model(str(path)))
    assert list(work.iterdir()) == []
