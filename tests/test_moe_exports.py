"""Mixture-of-experts decoders as Hugging Face exports them with their KV cache (the dynamo
exporter, experts batched: a router Gemm, Softmax, TopK, and the picked experts' weights
gathered from stacked tensors; rules/routing.py): Mixtral (top-k renormalised),
Qwen2-MoE (not renormalised, with a shared expert) and GPT-OSS (top-k of the logits, then
a softmax over the picked ones; biases; gate and up interleaved). Whole experts and every expert's MLP
neurons prune, verified three ways: removing experts computes exactly what the dense model
computes with those experts' router logits at -inf; removing inert neurons (and heads)
keeps the dense model's generated tokens; and the pruned model generates with its cache
what its full forward predicts.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from decoders import (MOE_EXPORTS, _logits, export_with_cache, full_forward_predictions,  # noqa: E402
                      greedy_with_cache)
from graph_kit import group_of  # noqa: E402
from oracles import inert_pair  # noqa: E402

from graphprune.context import Context  # noqa: E402
from graphprune.loading import load_model  # noqa: E402
from graphprune.pipeline import prune, run_passes  # noqa: E402
from graphprune.saving import save_model  # noqa: E402

PROMPT = [1, 5, 9, 3]
EXPERTS, TOP_K = 4, 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import logging

    logging.getLogger("torch").setLevel(logging.ERROR)
    folder = tmp_path_factory.mktemp("moe_exports")
    return {k: export_with_cache(k, str(folder / f"{k}.onnx")) for k in MOE_EXPORTS}


def _router(kind: str, layer: int) -> str:
    return f"m.model.layers.{layer}.mlp.{'router' if kind == 'gptoss' else 'gate'}.weight"


def _mask_router_logits(kind: str, src: str, dst: str, masked: dict[int, list[int]]) -> None:
    """The dense model with the given experts' router logits pushed to -1e9 (never picked)."""
    m = onnx.load(src)
    for layer, experts in masked.items():
        gemm = next(n for n in m.graph.node if n.op_type == "Gemm" and n.input[1] == _router(kind, layer))
        bias = np.zeros(EXPERTS, np.float32)
        bias[experts] = -1e9
        raw, name = gemm.output[0], f"router_mask_{layer}"
        gemm.output[0] = raw + "_raw"
        m.graph.initializer.append(onnx.numpy_helper.from_array(bias, name))
        m.graph.node.insert(list(m.graph.node).index(gemm) + 1,
                            onnx.helper.make_node("Add", [raw + "_raw", name], [raw]))
    onnx.save(m, dst)


@pytest.mark.parametrize("kind", MOE_EXPORTS)
def test_removing_experts_equals_masking_their_router_logits(exported, tmp_path, kind):
    removed = {0: [1], 1: [0, 3]}
    model = load_model(exported[kind])
    ctx = Context(model)
    run_passes(ctx, ["normalize", "l2"])
    analysis = ctx.analysis()
    groups = {layer: group_of(analysis, _router(kind, layer), 0) for layer in removed}
    assert all(g.kind == "experts" and g.n_units == EXPERTS and g.min_units == TOP_K and not g.pinned.any()
               for g in groups.values())
    ctx.plan = {groups[layer].id: np.array(units) for layer, units in removed.items()}
    run_passes(ctx, ["remove", "cleanup"])
    out, ref = str(tmp_path / "p.onnx"), str(tmp_path / "masked.onnx")
    save_model(model, out)
    _mask_router_logits(kind, exported[kind], ref, removed)
    shapes = {t.name: list(t.dims) for t in onnx.load(out).graph.initializer}
    assert [shapes[_router(kind, layer)][0] for layer in removed] == [3, 2]
    stacked = [d for d in shapes.values() if len(d) == 3]
    assert sorted(d[0] for d in stacked) == [2, 2, 3, 3]  # gate/up and down of each layer
    tokens = greedy_with_cache(ref, PROMPT, 24)
    np.testing.assert_allclose(_logits(out, tokens), _logits(ref, tokens), atol=1e-5)
    assert greedy_with_cache(out, PROMPT, 24) == tokens


@pytest.mark.parametrize("kind", MOE_EXPORTS)
def test_removing_inert_neurons_and_heads_keeps_the_generated_tokens(exported, tmp_path, kind):
    inert, removed, ctx = inert_pair(exported[kind], tmp_path, seed=1, select=",experts=0")
    before = {t.name: list(t.dims) for t in onnx.load(inert).graph.initializer}
    after = {t.name: list(t.dims) for t in onnx.load(removed).graph.initializer if t.name in before}
    stacked = [n for n, d in after.items() if len(d) == 3]
    assert all(after[n][0] == EXPERTS for n in stacked + [_router(kind, 0), _router(kind, 1)])  # experts kept
    assert any(after[n] != before[n] for n in stacked)  # neurons went
    assert ctx.interface or kind == "gptoss"  # and heads, but GPT-OSS's attention sinks pin them
    dense_tokens = greedy_with_cache(inert, PROMPT, 32)
    assert len(set(dense_tokens[len(PROMPT):])) > 1
    assert greedy_with_cache(removed, PROMPT, 32) == dense_tokens


@pytest.mark.parametrize("kind", MOE_EXPORTS)
def test_the_cli_halves_experts_and_neurons_and_the_cache_agrees(exported, tmp_path, kind):
    out = str(tmp_path / "p.onnx")
    report = prune(exported[kind], output=out, passes=["l2", "select:experts=0.9,channels=0.5"], quiet=True)
    removed = {}
    for g in report["groups"]:
        removed[g["kind"]] = removed.get(g["kind"], 0) + g["removed"]
    assert removed["experts"] == 2 * (EXPERTS - TOP_K)  # capped at the router's top-k
    assert removed["channels"] > 0 and report["after"]["params"] < report["before"]["params"]
    assert report["verification"]["checker"] == "passed"
    tokens = greedy_with_cache(out, PROMPT, 32)
    np.testing.assert_array_equal(full_forward_predictions(out, tokens)[len(PROMPT) - 1:-1], tokens[len(PROMPT):])
