"""graphprune/analysis/deploy_shape.py: MACs counted at the deployment shape (--shape, or
the user's samples) where the model's sizes are symbolic, a warning naming the sizes still
symbolic, and refusals of shapes that do not fit the model."""

from __future__ import annotations

import numpy as np
import pytest

from graph_kit import N, build, save, w
from graphprune.errors import BadInput
from graphprune.pipeline import Options, prune


def _model(tmp_path):
    proto = build([N("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]), N("Relu", ["a"], ["r"]),
                   N("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1])],
                  {"w1": w(16, 3, 3, 3), "w2": w(8, 16, 3, 3)}, {"x": ["n", 3, "h", "w"]}, {"y": ["n", 8, "h", "w"]})
    return save(proto, tmp_path)


def test_macs_at_the_deployment_shape(tmp_path):
    path = _model(tmp_path)
    per_pixel = 16 * 3 * 9 + 8 * 16 * 9
    bare = prune(path, Options(dry_run=True, verify=False, passes=["l1", "select:ratio=0"]))
    assert bare["before"]["macs"] == per_pixel and any("symbolic sizes h, w" in x for x in bare["warnings"])
    shaped = prune(path, Options(dry_run=True, verify=False, passes=["l1", "select:ratio=0"], shapes=["x=1,3,64,48"]))
    assert shaped["before"]["macs"] == per_pixel * 64 * 48 and shaped["cost_shape"] == {"x": [1, 3, 64, 48]}
    assert not any("symbolic" in x for x in shaped.get("warnings", []))
    data = str(tmp_path / "in.npz")
    np.savez(data, x=np.zeros((4, 3, 32, 16), np.float32))
    from_data = prune(path, Options(output=str(tmp_path / "p.onnx"), inputs=data, passes=["l1", "select:ratio=0"]))
    assert from_data["before"]["macs"] == per_pixel * 32 * 16


@pytest.mark.parametrize("spec,needle", [("x=1,3,64", "declared"), ("z=1", "no input 'z'"), ("x:1,3", "NAME=D0"),
                                         ("x=1,4,8,8", "declared"), ("x=1,3,a,8", "whole numbers")])
def test_bad_shapes(tmp_path, spec, needle):
    with pytest.raises(BadInput, match=needle):
        prune(_model(tmp_path), Options(dry_run=True, verify=False, shapes=[spec]))
