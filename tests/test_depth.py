"""Depth pruning (passes/depth.py): whole residual branches found from the graph, scored by
angular distance, removed with y = a. Oracles: removing branches made inert (every weight
zero: the branch adds nothing) leaves the outputs, and the tokens a decoder generates,
unchanged; a removed attention layer takes its KV cache with it and the rest are
renumbered, so the onnxruntime-genai folder still runs and generates what the model's full
forward predicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx_ir as ir
import pytest

from graphprune.analysis.branches import find_branches
from graphprune.analysis.cache_io import cache_pairs
from graphprune.context import Context
from graphprune.errors import BadInput
from graphprune.loading import load_model
from graphprune.pipeline import prune, run_passes
from graphprune.saving import save_model

PROMPT = [1, 5, 9, 3]


def _inert(src: str, dst: str, which: list[int]) -> list[str]:
    """Zero every weight of the branches at `which`; returns their join nodes' names."""
    model = load_model(src)
    run_passes(Context(model), ["normalize"])
    branches = find_branches(model, {p.past for p in cache_pairs(model)})
    for i in which:
        for name in branches[i].weights:
            value = model.graph.initializers[name]
            value.const_value = ir.tensor(np.zeros_like(value.const_value.numpy()), name=name)
    save_model(model, dst)
    return [branches[i].node.name for i in which]


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory):
    pytest.importorskip("transformers")
    from decoders import export_with_cache

    return export_with_cache("llama", str(tmp_path_factory.mktemp("depth") / "llama.onnx"))


def test_branches_of_a_decoder_and_a_resnet(hf_llama, zoo):
    model = load_model(hf_llama)
    run_passes(Context(model), ["normalize"])
    found = find_branches(model, {p.past for p in cache_pairs(model)})
    assert [b.attention for b in found] == [True, False, True, False]
    assert [len(b.pasts) for b in found] == [2, 0, 2, 0]
    cnn = load_model(zoo["cifar_resnet20"])
    run_passes(Context(cnn), ["normalize"])
    assert len(find_branches(cnn)) == 9 - 2  # nine blocks; the two that downsample add a projection


def test_removing_inert_branches_keeps_outputs_and_tokens(hf_llama, tmp_path):
    from decoders import greedy_with_cache

    inert, out = str(tmp_path / "inert.onnx"), str(tmp_path / "out.onnx")
    names = _inert(hf_llama, inert, [1, 2])  # layer 0's MLP, layer 1's attention
    report = prune(inert, output=out, passes=["depth:blocks=2"], quiet=True)
    assert sorted(b["at"] for b in report["depth"]["branches"] if b["removed"]) == sorted(names)
    assert report["verification"]["max_abs_diff"] < 1e-4
    assert report["interface_changes"]["dropped"] == ["past_key_values.1.key", "past_key_values.1.value",
                                                      "present.1.key", "present.1.value"]
    assert "select" not in " ".join(report["pipeline"])  # depth alone keeps the widths
    assert greedy_with_cache(out, PROMPT, 24) == greedy_with_cache(inert, PROMPT, 24)


def test_depth_then_widths_on_a_genai_folder(tmp_path):
    pytest.importorskip("onnxruntime_genai")
    from decoders import full_forward_predictions, genai_build, genai_generate, greedy_with_cache, save_hf

    src = genai_build(save_hf("llama", str(tmp_path / "hf")), str(tmp_path / "dense"))
    out = str(tmp_path / "out" / "model.onnx")
    os.makedirs(os.path.dirname(out))
    report = prune(src, output=out, passes=["depth:blocks=1,kind=attention", "l2", "select:channels=0.5"], quiet=True)
    assert sum(b["removed"] for b in report["depth"]["branches"]) == 1
    with open(os.path.join(os.path.dirname(out), "genai_config.json")) as f:
        assert json.load(f)["model"]["decoder"]["num_hidden_layers"] == 1
    tokens = greedy_with_cache(out, PROMPT, 24)
    np.testing.assert_array_equal(full_forward_predictions(out, tokens)[len(PROMPT) - 1:-1], tokens[len(PROMPT):])
    assert genai_generate(os.path.dirname(out), PROMPT, 24) == tokens


def test_a_resnet_loses_blocks_and_verifies(zoo, tmp_path):
    out = str(tmp_path / "r.onnx")
    report = prune(zoo["cifar_resnet20"], output=out, passes=["depth:ratio=0.3"], quiet=True)
    assert report["verification"]["checker"] == "passed"
    assert sum(b["removed"] for b in report["depth"]["branches"]) == 2
    assert report["after"]["params"] < report["before"]["params"]


def test_bad_depth_requests_are_one_line_errors(hf_llama, zoo, tmp_path):
    with pytest.raises(BadInput, match="up to the 4 branches"):
        prune(hf_llama, output=str(tmp_path / "x.onnx"), passes=["depth:blocks=5"], quiet=True)
    with pytest.raises(BadInput, match="kind must be"):
        prune(hf_llama, output=str(tmp_path / "x.onnx"), passes=["depth:blocks=1,kind=heads"], quiet=True)
    with pytest.raises(BadInput, match="no residual branch"):
        prune(zoo["simple_cnn"], output=str(tmp_path / "x.onnx"), passes=["depth:blocks=1"], quiet=True)
    r = subprocess.run([sys.executable, "-m", "graphprune", zoo["simple_cnn"], "-o", str(tmp_path / "y.onnx"),
                        "--pass", "depth:blocks=1"], capture_output=True, text=True)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "y.onnx")
