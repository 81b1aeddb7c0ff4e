"""Hugging Face decoders exported with their KV cache (the dynamo exporter; past/present
key/values per layer; repeat_kv, rotary embeddings and the cache's Concat written out):
Llama, Qwen2 and Mistral (grouped-query), Phi-3 (fused QKV and gate/up projections),
GPT-2. Heads and MLP neurons prune through the cache, and generation proves the result:
greedy decoding with the cache gives the tokens the full forward predicts; with inert
units removed, the tokens of the dense model.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from decoders import export_with_cache, full_forward_predictions, greedy_with_cache  # noqa: E402
from oracles import inert_pair  # noqa: E402

from graphprune.pipeline import prune  # noqa: E402

PROMPT = [1, 5, 9, 3]
KINDS = ["gpt2", "llama", "mistral", "phi3", "qwen2"]  # mixtures of experts: test_moe_exports.py


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import logging

    logging.getLogger("torch").setLevel(logging.ERROR)
    folder = tmp_path_factory.mktemp("kv_exports")
    return {k: export_with_cache(k, str(folder / f"{k}.onnx")) for k in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_heads_and_neurons_prune_through_the_cache(exported, tmp_path, kind):
    out = str(tmp_path / "p.onnx")
    report = prune(exported[kind], output=out, passes=["l2", "select:heads=0.5,channels=0.5"], quiet=True)
    removed = {"heads": 0, "channels": 0}
    for g in report["groups"]:
        removed[g["kind"]] += g["removed"]
    assert removed["heads"] > 0 and removed["channels"] > 0, removed
    cache = report["cache_tensors"]
    assert len(cache) == 8
    for i in range(2):
        assert cache[f"past_key_values.{i}.key"]["kept"] == cache[f"present.{i}.key"]["kept"]
    tokens = greedy_with_cache(out, PROMPT, 32)
    np.testing.assert_array_equal(full_forward_predictions(out, tokens)[len(PROMPT) - 1:-1], tokens[len(PROMPT):])


@pytest.mark.parametrize("kind", KINDS)
def test_removing_inert_heads_and_neurons_keeps_the_generated_tokens(exported, tmp_path, kind):
    inert, removed, ctx = inert_pair(exported[kind], tmp_path, seed=0)
    assert ctx.interface, "the cache kept every head"
    dense_tokens = greedy_with_cache(inert, PROMPT, 32)
    assert len(set(dense_tokens[len(PROMPT):])) > 1  # a model that repeats one token proves little
    assert greedy_with_cache(removed, PROMPT, 32) == dense_tokens
