"""The opt-in analysis passes (passes/analysis_options.py). `hidden`: the residual stream
of a transformer becomes prunable through its LayerNorms/RMSNorms; without it the hidden
size stays pinned. `channel-norms`: channels become prunable through a mean over
per-channel statistics (ConvNeXt-V2's GRN). Both are inexact by design, so the report
warns; pruning nothing with them is still a no-op. (query-heads and head-dims are tested
with the transformers, tests/test_transformers.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from oracles import prune_to_file, run_model

CASES = ["llama_dynamo", "gpt2_dynamo", "qwen2_dynamo"]


def _hidden_removed(report, size=64):
    return sum(g["removed"] for g in report["groups"] if g["units"] == size and g["kind"] == "channels")


@pytest.mark.parametrize("case", CASES)
def test_hidden_size_pruned_only_when_asked(tzoo, tmp_path, case):
    plain = prune_to_file(tzoo[case], str(tmp_path / "a.onnx"), ["l1", "select:ratio=0.25"])
    assert _hidden_removed(plain) == 0
    assert not [w for w in plain.get("warnings", []) if "hidden-size" in w]
    report = prune_to_file(tzoo[case], str(tmp_path / "b.onnx"), ["hidden", "l1", "select:ratio=0.25"])
    assert _hidden_removed(report) == 16
    assert any("hidden-size" in w for w in report["warnings"])
    assert report["verification"]["checker"] == "passed"
    assert report["after"]["params"] < plain["after"]["params"]
    feeds, ref = run_model(tzoo[case])
    _, got = run_model(str(tmp_path / "b.onnx"), feeds, optimize=True)
    assert [a.shape for a in ref] == [b.shape for b in got]


@pytest.mark.parametrize("case", CASES[:1])
def test_hidden_with_nothing_pruned_is_a_noop(tzoo, tmp_path, case):
    out = str(tmp_path / "same.onnx")
    prune_to_file(tzoo[case], out, ["hidden", "l1", "select:ratio=0"])
    feeds, ref = run_model(tzoo[case])
    _, got = run_model(out, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))


@pytest.fixture(scope="module")
def convnext(tmp_path_factory):
    """A ConvNeXt-V2 (random weights, from a transformers config): its GRN divides by the
    mean over channels of each channel's spatial L2 norm."""
    pytest.importorskip("transformers")
    import logging
    import warnings

    import torch
    from transformers import ConvNextV2Config, ConvNextV2ForImageClassification

    logging.getLogger("torch").setLevel(logging.ERROR)
    torch.manual_seed(0)
    cfg = ConvNextV2Config(num_channels=3, hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, num_labels=10)
    model = ConvNextV2ForImageClassification(cfg).eval()
    for name, p in model.named_parameters():  # GRN starts at zero: make it do something
        if "grn" in name:
            torch.nn.init.normal_(p, std=0.5)
    path = str(tmp_path_factory.mktemp("convnext") / "convnextv2.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), path, dynamo=True, verbose=False)
    return path


def _grn_groups(report):
    return [g for g in report["groups"] if g["units"] in (64, 128)]  # the 4x MLP widths


def test_channel_norms_unpin_what_grn_pins(convnext, tmp_path):
    plain = prune_to_file(convnext, str(tmp_path / "a.onnx"), ["l1", "select:ratio=0.25"])
    assert all(g["pinned_units"] == g["units"] and not g["removed"] for g in _grn_groups(plain))
    assert any("ReduceMean" in line for line in plain["pins"])
    report = prune_to_file(convnext, str(tmp_path / "b.onnx"), ["channel-norms", "l1", "select:ratio=0.25"])
    assert [g["removed"] for g in _grn_groups(report)] == [16, 32]
    assert any("channel-norms" in w for w in report["warnings"])
    assert report["after"]["params"] < plain["after"]["params"]
    assert report["verification"]["checker"] == "passed"


def test_channel_norms_is_inexact_but_a_noop_when_nothing_goes(convnext, tmp_path):
    out = str(tmp_path / "same.onnx")
    prune_to_file(convnext, out, ["channel-norms", "l1", "select:ratio=0"])
    feeds, ref = run_model(convnext)
    _, got = run_model(out, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))


def test_channel_norms_leave_a_spatial_mean_pinned(tmp_path):
    """Only a mean over the channels of one value per channel passes: a ReduceMean over
    the channel axis of a full feature map (spatial size above 1) still pins it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    r = np.random.default_rng(0)
    inits = [numpy_helper.from_array(r.standard_normal((8, 3, 1, 1)).astype(np.float32), "w1"),
             numpy_helper.from_array(r.standard_normal((4, 8, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([1], np.int64), "ax")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]),
             helper.make_node("ReduceMean", ["a", "ax"], ["m"], keepdims=1),
             helper.make_node("Div", ["a", "m"], ["d"]),
             helper.make_node("Conv", ["d", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])], inits)
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["channel-norms", "l1", "select:ratio=0.5"])
    assert report["after"]["params"] == report["before"]["params"]
