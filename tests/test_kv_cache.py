"""KV-cache decoders as ONNX Runtime deploys them (onnxruntime-genai's builder: packed-QKV
GroupQueryAttention, past/present per layer, genai_config.json): heads prune through the
cache, and the pruned model is checked the way a user would check it, by generating.

Generation oracle: greedy decoding with the cache produces exactly the tokens that the
model's full-sequence forward predicts step by step; with inert KV heads removed, the same
tokens as the dense model; onnxruntime-genai, from the written folder, the same tokens again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from decoders import full_forward_predictions, genai_build, genai_generate, greedy_with_cache, save_hf  # noqa: E402

from graphprune.analysis.cache_io import cache_pairs, names_pair, probe_dims  # noqa: E402
from graphprune.errors import BadInput  # noqa: E402
from graphprune.loading import load_model  # noqa: E402
from graphprune.pipeline import prune  # noqa: E402

PROMPT = [1, 5, 9, 3]
CUT = ["l2", "select:heads=0.5,channels=0.5"]


def _inert_kv_head(model, kv_head: int) -> None:
    """Zero every weight of one KV head and its query heads in every layer (Q, K and V
    rows, the output projection's columns): the head adds nothing, exactly."""
    import torch

    cfg = model.config
    size = cfg.hidden_size // cfg.num_attention_heads
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    q = slice(kv_head * group * size, (kv_head + 1) * group * size)
    kv = slice(kv_head * size, (kv_head + 1) * size)
    with torch.no_grad():
        for layer in model.model.layers:
            a = layer.self_attn
            a.q_proj.weight[q] = 0
            a.k_proj.weight[kv] = 0
            a.v_proj.weight[kv] = 0
            a.o_proj.weight[:, q] = 0


@pytest.fixture(scope="module")
def genai_llama(tmp_path_factory):
    """A 2-layer Llama (4 query heads, 2 KV heads) through the genai builder, twice: as
    initialised, and with KV head 1 inert in every layer."""
    pytest.importorskip("onnxruntime_genai")
    import transformers

    root = tmp_path_factory.mktemp("genai")
    hf = save_hf("llama", str(root / "hf"))
    dense = genai_build(hf, str(root / "dense"))
    model = transformers.AutoModelForCausalLM.from_pretrained(hf).eval()
    _inert_kv_head(model, 1)
    model.save_pretrained(str(root / "hf_inert"))
    for name in os.listdir(hf):
        if name.startswith("tokenizer"):
            shutil.copy(os.path.join(hf, name), str(root / "hf_inert"))
    inert = genai_build(str(root / "hf_inert"), str(root / "inert"))
    return {"dense": dense, "inert": inert}


def _prune(src: str, folder, passes=CUT, **opts) -> tuple[str, dict]:
    os.makedirs(folder, exist_ok=True)
    out = os.path.join(str(folder), "model.onnx")
    return out, prune(src, output=out, passes=list(passes), quiet=True, **opts)


def test_cache_pairs_and_probe_sizes(genai_llama):
    model = load_model(genai_llama["dense"])
    pairs = {(p.past, p.present) for p in cache_pairs(model)}
    assert pairs == {(f"past_key_values.{i}.{k}", f"present.{i}.{k}") for i in range(2) for k in ("key", "value")}
    dims = probe_dims(model)
    assert dims["kv_cache_dim"] == 16 and dims["total_sequence_length"] == dims["past_sequence_length"] + 1
    assert dims["sequence_length"] == 1


@pytest.mark.parametrize("past, present, same", [
    ("past_key_values.3.key", "present.3.key", True),
    ("past_key_3", "present_key_3", True),
    ("past.0.value", "present.0.value", True),
    ("past_key_values.3.key", "present.3.value", False),
    ("past_key_values.3.key", "present.13.key", False),
    ("input_ids", "logits", False),
])
def test_cache_names_pair_by_layer_and_kind(past, present, same):
    assert names_pair(past, present) == same


def test_heads_prune_through_the_cache_and_generation_holds(genai_llama, tmp_path):
    out, report = _prune(genai_llama["dense"], tmp_path / "out")
    assert report["verification"]["checker"] == "passed"
    cache = report["cache_tensors"]
    assert len(cache) == 8 and all(len(c["kept"]) == 1 for c in cache.values())
    # The pair of a layer keeps the same head.
    for i in range(2):
        assert cache[f"past_key_values.{i}.key"]["kept"] == cache[f"present.{i}.key"]["kept"] \
            == cache[f"past_key_values.{i}.value"]["kept"]
    tokens = greedy_with_cache(out, PROMPT, 32)
    assert len(tokens) == len(PROMPT) + 32
    predicted = full_forward_predictions(out, tokens)
    np.testing.assert_array_equal(predicted[len(PROMPT) - 1:-1], tokens[len(PROMPT):])


def test_removing_inert_kv_heads_generates_the_dense_tokens(genai_llama, tmp_path):
    src = genai_llama["inert"]
    out, report = _prune(src, tmp_path / "out", ["l2", "select:heads=0.5"])
    assert all(c["kept"] == [0] for c in report["cache_tensors"].values())
    assert report["verification"]["max_abs_diff"] < 1e-4
    dense_tokens = greedy_with_cache(src, PROMPT, 32)
    assert greedy_with_cache(out, PROMPT, 32) == dense_tokens
    assert genai_generate(os.path.dirname(out), PROMPT, 32) == dense_tokens


def test_the_output_folder_runs_in_onnxruntime_genai(genai_llama, tmp_path):
    out, report = _prune(genai_llama["dense"], tmp_path / "out")
    folder = os.path.dirname(out)
    with open(os.path.join(folder, "genai_config.json")) as f:
        decoder = json.load(f)["model"]["decoder"]
    assert (decoder["num_key_value_heads"], decoder["num_attention_heads"], decoder["head_size"]) == (1, 2, 16)
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(report["genai_folder"])
    assert genai_generate(folder, PROMPT, 32) == greedy_with_cache(out, PROMPT, 32)


def test_keep_io_keeps_the_cache_whole(genai_llama, tmp_path):
    out, report = _prune(genai_llama["dense"], tmp_path / "out", keep_io=True)
    assert "cache_tensors" not in report
    import onnx

    shapes = {i.name: i.type.tensor_type.shape.dim[1].dim_value for i in onnx.load(out, load_external_data=False).graph.input
              if i.name.startswith("past")}
    assert set(shapes.values()) == {2}
    assert report["after"]["params"] < report["before"]["params"]  # the MLP neurons still go


def test_genai_folder_refuses_uneven_heads_and_its_own_folder(genai_llama, tmp_path):
    src = genai_llama["dense"]
    with pytest.raises(BadInput, match="same head counts in every layer"):
        _prune(src, tmp_path / "uneven", ["l2", "select:ratio=0.25,scope=global,include=*qkv*"])
    assert not os.path.exists(tmp_path / "uneven" / "model.onnx")
    with pytest.raises(BadInput, match="another folder"):
        prune(src, output=os.path.join(os.path.dirname(src), "small.onnx"), passes=CUT, quiet=True)


def test_cli_says_what_the_cache_lost(genai_llama, tmp_path):
    out = tmp_path / "model.onnx"
    r = subprocess.run([sys.executable, "-m", "graphprune", genai_llama["dense"], "-o", str(out),
                        "--pass", "l2", "--pass", "select:heads=0.5"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "KV cache: 8 past/present tensors resized to 1 KV heads" in r.stdout


def test_calibration_pipelines_run_on_the_cache_model(genai_llama, tmp_path):
    """Calibration feeds are shaped for the dense model; repair passes run the pruned one
    on them, with the cache cut to the kept heads."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 120, (24, 16))
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    for i in range(2):
        for k in ("key", "value"):
            feeds[f"past_key_values.{i}.{k}"] = np.zeros((24, 2, 0, 16), np.float32)
    calib = str(tmp_path / "calib.npz")
    np.savez(calib, **feeds)
    out, report = _prune(genai_llama["dense"], tmp_path / "out", ["wifv", "select:heads=0.5,channels=0.5", "refit"],
                         calib=calib)
    assert report["cache_tensors"] and report["passes"][-2]["stats"]["layers_refit"] > 0
    tokens = greedy_with_cache(out, PROMPT, 16)
    np.testing.assert_array_equal(full_forward_predictions(out, tokens)[len(PROMPT) - 1:-1], tokens[len(PROMPT):])


def test_uniform_heads_make_a_global_budget_runnable_in_genai(genai_llama, tmp_path):
    select = "select:macs=0.7,scope=global,round_to=1"  # here the global ranking takes a head of one layer only
    with pytest.raises(BadInput, match="same head counts"):
        _prune(genai_llama["dense"], tmp_path / "uneven", ["l2", select])
    out, report = _prune(genai_llama["dense"], tmp_path / "out", ["l2", select + ",uniform=true"])
    import onnx

    kv = {a.i for n in onnx.load(out, load_external_data=False).graph.node if n.op_type == "GroupQueryAttention"
          for a in n.attribute if a.name == "kv_num_heads"}
    assert len(kv) == 1
    assert genai_generate(os.path.dirname(out), PROMPT, 16) == greedy_with_cache(out, PROMPT, 16)


@pytest.mark.parametrize("kind", ["qwen2", "mistral", "phi3"])
def test_other_decoders_from_the_genai_builder_prune_and_generate(kind, tmp_path):
    """The same decoders as the Hugging Face KV exports (test_kv_exports.py), as the genai
    builder writes them: heads and neurons go, and onnxruntime-genai generates from the
    folder what the pruned model's full forward predicts."""
    pytest.importorskip("onnxruntime_genai")
    src = genai_build(save_hf(kind, str(tmp_path / "hf")), str(tmp_path / "dense"))
    out, report = _prune(src, tmp_path / "out")
    assert report["cache_tensors"] and report["after"]["params"] < report["before"]["params"]
    tokens = greedy_with_cache(out, PROMPT, 24)
    np.testing.assert_array_equal(full_forward_predictions(out, tokens)[len(PROMPT) - 1:-1], tokens[len(PROMPT):])
    assert genai_generate(os.path.dirname(out), PROMPT, 24) == tokens
