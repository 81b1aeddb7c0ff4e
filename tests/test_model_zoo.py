"""The nine model-zoo graphs shipped in onnx's backend test data prune at ratio 0.3:
checker passes, ONNX Runtime runs them with unchanged output shapes, and MACs drop."""

from __future__ import annotations

import os

import pytest

from conftest import light_models
from oracles import prune_to_file, run_model

LIGHT = light_models()


@pytest.mark.skipif(not LIGHT, reason="onnx backend test data not installed")
@pytest.mark.parametrize("path", LIGHT, ids=[os.path.basename(p)[6:-5] for p in LIGHT])
def test_light_model_prunes(path, tmp_path):
    out = str(tmp_path / "p.onnx")
    report = prune_to_file(path, out, ["l1", "select:ratio=0.3"])
    assert report["verification"]["checker"] == "passed"
    assert report["after"]["macs"] < report["before"]["macs"]
    feeds, ref = run_model(path)
    _, got = run_model(out, feeds, optimize=True)
    assert [a.shape for a in ref] == [b.shape for b in got]


def test_all_nine_are_present():
    if not LIGHT:
        pytest.skip("onnx backend test data not installed")
    names = {os.path.basename(p) for p in LIGHT}
    for n in ("alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
              "squeezenet", "vgg19", "zfnet512"):
        assert any(n in x for x in names), n
