"""graphprune/patches.py: the geometry of a plain 2-D convolution, and patches at sampled
output positions that reproduce the convolution's outputs there (padding, strides and
dilations included)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from graph_kit import N, build, save, w
from graphprune.patches import conv_geometry, patch_gram, patches_at, sample_positions
from oracles import run_model


@pytest.mark.parametrize("attrs", [{}, {"pads": [1, 1, 1, 1], "strides": [2, 2]}, {"pads": [2, 1, 0, 1], "dilations": [2, 2]}])
def test_patches_times_the_kernel_are_the_conv_outputs(tmp_path, attrs):
    kernel = w(4, 3, 3, 3)
    proto = build([N("Conv", ["x", "k"], ["y"], **attrs)], {"k": kernel}, {"x": [2, 3, 9, 9]}, {"y": [2, 4, "h", "w"]})
    path = save(proto, tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    _, (y,) = run_model(path, {"x": x})
    node = next(iter(ir.from_proto(proto).graph))
    geo = conv_geometry(node, kernel.shape)
    assert geo.out_size(9, 9) == y.shape[2:]
    pos = sample_positions(2, y.shape[2:], 10, np.random.default_rng(1))
    got = patches_at(x, geo, pos) @ kernel.reshape(4, -1).T            # (2 * 10, 4)
    want = y.reshape(2, 4, -1).transpose(0, 2, 1)[np.arange(2)[:, None], pos].reshape(-1, 4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_geometry_refuses_grouped_and_auto_padded_convs():
    grouped = next(iter(ir.from_proto(build([N("Conv", ["x", "k"], ["y"], group=3)], {"k": w(3, 1, 3, 3)},
                                            {"x": [1, 3, 5, 5]}, {"y": [1, 3, 3, 3]})).graph))
    assert conv_geometry(grouped, (3, 1, 3, 3)) is None
    auto = next(iter(ir.from_proto(build([N("Conv", ["x", "k"], ["y"], auto_pad="SAME_UPPER")], {"k": w(3, 3, 3, 3)},
                                         {"x": [1, 3, 5, 5]}, {"y": [1, 3, 5, 5]})).graph))
    assert conv_geometry(auto, (3, 3, 3, 3)) is None


def test_patch_gram_holds_the_constant_column():
    node = next(iter(ir.from_proto(build([N("Conv", ["x", "k"], ["y"])], {"k": w(2, 2, 2, 2)},
                                         {"x": [1, 2, 3, 3]}, {"y": [1, 2, 2, 2]})).graph))
    gram = patch_gram(conv_geometry(node, (2, 2, 2, 2)), per_image=3)(np.ones((4, 2, 3, 3), np.float32))
    assert gram.shape == (9, 9) and gram[-1, -1] == 12 and np.allclose(gram[:-1, -1], 12)
