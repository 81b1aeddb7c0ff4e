"""Rules of graphprune/analysis/rules/norm_pool.py: per-channel normalizations and pools
pass the channels (their parameters sliced with them), GroupNorm units are whole groups,
ops that mix along an axis (LayerNorm, Softmax, LRN, reductions) pin it unless an analysis
option lets it through, and Resize's `sizes` are rewritten."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from graph_kit import N, analyse, build, coupled, group_of, i64, pins, save, w
from oracles import inert_removal_diff, prune_to_file

X, Y = {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4]}


def _chain(mid, inits=None, y=Y, opset=17):
    return build([N("Conv", ["x", "w1"], ["a"]), *mid, N("Conv", ["m", "w2"], ["y"])],
                 {"w1": w(6, 3, 1, 1), "w2": w(4, 6, 1, 1), **(inits or {})}, X, y, opset=opset)


def test_batchnorm_parameters_are_sliced_with_the_channels(tmp_path):
    proto = _chain([N("BatchNormalization", ["a", "g", "b", "mu", "var"], ["m"])],
                   {"g": w(6), "b": w(6), "mu": w(6), "var": np.abs(w(6)) + 0.5})
    a = analyse(proto)
    assert coupled(a, ("w1", 0), ("g", 0), ("b", 0), ("mu", 0), ("var", 0), ("w2", 1))
    roles = {role for (n, _), role, _ in group_of(a, "g", 0).roles if n in ("g", "b")}
    assert roles == {"bn_scale", "bn_shift"}
    diff, _, _ = inert_removal_diff(save(proto, tmp_path), tmp_path)
    assert diff < 1e-5


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pools_pass_the_channels(op):
    a = analyse(_chain([N(op, ["a"], ["m"], kernel_shape=[2, 2])], y={"y": [1, 4, 3, 3]}))
    assert coupled(a, ("w1", 0), ("m", 1), ("w2", 1)) and not group_of(a, "w1", 0).pinned.any()


def test_group_norm_units_are_whole_groups(tmp_path):
    proto = _chain([N("GroupNormalization", ["a", "s", "b"], ["m"], num_groups=3)], {"s": w(6), "b": w(6)}, opset=21)
    a = analyse(proto)
    g = group_of(a, "w1", 0)
    assert g.n_units == 3 and (g.members[("w1", 0)] == np.repeat(g.members[("w1", 0)][::2], 2)).all()
    report = prune_to_file(save(proto, tmp_path), str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.3"])
    gn = next(n for n in onnx.load(str(tmp_path / "p.onnx")).graph.node if n.op_type == "GroupNormalization")
    assert next(at.i for at in gn.attribute if at.name == "num_groups") == 2
    assert report["verification"]["checker"] == "passed"


@pytest.mark.parametrize("mid,inits,why", [
    ([N("Softmax", ["a"], ["m"], axis=1)], {}, "mixes or drops axis 1"),
    ([N("LRN", ["a"], ["m"], size=3)], {}, "mixes or drops axis 1"),
    ([N("ReduceMean", ["a"], ["r"], axes=[1], keepdims=1), N("Sub", ["a", "r"], ["m"])], {},
     "mixes or drops axis 1"),
])
def test_ops_that_mix_the_channels_pin_them(mid, inits, why):
    a = analyse(_chain(mid, inits))
    assert group_of(a, "w1", 0).pinned.all()
    assert any(why in reason for reason in pins(a, "a", 1))


def test_layer_norm_over_channels_last_pins_unless_hidden():
    def proto():
        return build([N("MatMul", ["x", "w1"], ["a"]), N("LayerNormalization", ["a", "s", "b"], ["n"]),
                      N("MatMul", ["n", "w2"], ["y"])],
                     {"w1": w(6, 8), "s": w(8), "b": w(8), "w2": w(8, 4)}, {"x": [2, 6]}, {"y": [2, 4]})
    assert group_of(analyse(proto()), "w1", 1).pinned.all()
    a = analyse(proto(), through_norms=True)
    g = group_of(a, "w1", 1)
    assert not g.pinned.any() and coupled(a, ("w1", 1), ("s", 0), ("b", 0), ("w2", 0))


def test_reduction_over_space_keeps_the_channels():
    proto = build([N("Conv", ["x", "w1"], ["a"]), N("ReduceMean", ["a", "ax"], ["r"], keepdims=0),
                   N("Gemm", ["r", "g"], ["y"], transB=1)],
                  {"w1": w(6, 3, 1, 1), "ax": i64(2, 3), "g": w(5, 6)}, X, {"y": [1, 5]}, opset=18)
    a = analyse(proto)
    assert coupled(a, ("w1", 0), ("r", 1), ("g", 1)) and not group_of(a, "w1", 0).pinned.any()


def test_resize_sizes_are_rewritten(tmp_path):
    proto = _chain([N("Resize", ["a", "", "", "sizes"], ["m"], mode="nearest")], {"sizes": i64(1, 6, 8, 8)},
                   y={"y": [1, 4, 8, 8]}, opset=13)
    path = save(proto, tmp_path)
    prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.5"])
    out = onnx.load(str(tmp_path / "p.onnx"))
    resize = next(n for n in out.graph.node if n.op_type == "Resize")
    sizes = next(i for i in out.graph.initializer if i.name == resize.input[3])
    assert list(onnx.numpy_helper.to_array(sizes)) == [1, 3, 8, 8]
