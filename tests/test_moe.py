"""Mixture of experts (rules/moe.py) on com.microsoft MoE layers (tests/moe_nets.py): an
expert (its stacked weights and the router's column) and a neuron of every expert are
units. Oracles: removing neurons made inert leaves the outputs unchanged; removing an
expert the router never picks leaves them unchanged; an expert count below top-k is
refused before anything is written."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from graph_kit import analyse, coupled, group_of
from moe_nets import E, F, H, K, RUNNABLE, VARIANTS, moe_layer
from oracles import inert_pair, run_model

from graphprune.context import Context
from graphprune.errors import BadInput
from graphprune.loading import load_model
from graphprune.pipeline import prune, run_passes
from graphprune.saving import save_model


def _x(seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((2, 7, H)).astype(np.float32)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_experts_and_neurons_are_units(variant):
    a = analyse(moe_layer(variant))
    experts = group_of(a, "fc1", 0)
    assert experts.n_units == E and coupled(a, ("fc1", 0), ("fc2", 0), ("b1", 0), ("b2", 0), ("router", 1),
                                            ("router_b", 0))
    neurons = group_of(a, "fc2", 2)
    assert neurons.n_units == F and not neurons.pinned.any()
    rows = neurons.members[("fc1", 1)]
    if variant == "swiglu":  # gate and up of neuron j interleaved: rows 2j and 2j+1
        np.testing.assert_array_equal(rows[0::2], rows[1::2])
    elif variant == "swiglu_halves":  # rows j and F + j
        np.testing.assert_array_equal(rows[:F], rows[F:])
    if variant == "silu_fc3":
        assert coupled(a, ("fc2", 2), ("fc3", 1), ("b3", 1))


@pytest.mark.parametrize("variant", RUNNABLE)
def test_removing_inert_neurons_of_every_expert_changes_nothing(variant, tmp_path):
    src = str(tmp_path / "moe.onnx")
    onnx.save(moe_layer(variant), src)
    inert, removed, ctx = inert_pair(src, tmp_path, seed=2, select=",exclude=router*")
    assert sum(len(u) for u in ctx.removal.plan.values()) > 0
    feeds, ref = run_model(inert, _x())
    _, got = run_model(removed, feeds)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-5)
    fc2 = next(t for t in onnx.load(removed).graph.initializer if t.name == "fc2")
    assert fc2.dims[2] < F


@pytest.mark.parametrize("variant", RUNNABLE)
def test_removing_an_expert_never_picked_changes_nothing(variant, tmp_path):
    src, out = str(tmp_path / "moe.onnx"), str(tmp_path / "out.onnx")
    onnx.save(moe_layer(variant, never=2), src)
    model = load_model(src)
    ctx = Context(model)
    run_passes(ctx, ["normalize", "l2"])
    experts = group_of(ctx.analysis(), "fc1", 0)
    ctx.plan = {experts.id: np.array([2])}
    run_passes(ctx, ["remove", "cleanup"])
    save_model(model, out)
    feeds, ref = run_model(src, _x(1))
    _, got = run_model(out, feeds)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-5)
    pruned = onnx.load(out)
    kept = {t.name: onnx.numpy_helper.to_array(t) for t in pruned.graph.initializer}
    assert kept["fc1"].shape[0] == E - 1 and kept["router"].shape == (H, E - 1)
    reshape = next(n for n in pruned.graph.node if n.op_type == "Reshape")
    assert kept[reshape.input[1]].tolist() == [-1, E - 1]  # the logits' reshape target follows


def test_the_cli_prunes_experts_and_neurons_and_keeps_top_k(tmp_path):
    src = str(tmp_path / "moe.onnx")
    onnx.save(moe_layer("swiglu"), src)
    report = prune(src, output=str(tmp_path / "p.onnx"), passes=["l2", "select:ratio=0.5"], quiet=True)
    assert report["verification"]["checker"] == "passed"
    assert {g["kind"] for g in report["groups"] if g["units"] == E} == {"experts"}
    fc1 = next(t for t in onnx.load(str(tmp_path / "p.onnx")).graph.initializer if t.name == "fc1")
    assert list(fc1.dims) == [E // 2, 2 * F // 2, H]
    # select never goes below the router's top-k ...
    prune(src, output=str(tmp_path / "q.onnx"), passes=["l2", f"select:experts={1 - 1 / E}"], quiet=True)
    fc1 = next(t for t in onnx.load(str(tmp_path / "q.onnx")).graph.initializer if t.name == "fc1")
    assert list(fc1.dims) == [K, 2 * F, H]
    # ... and a plan that would is refused before anything is written.
    model = load_model(src)
    ctx = Context(model)
    run_passes(ctx, ["normalize", "l2"])
    ctx.plan = {group_of(ctx.analysis(), "fc1", 0).id: np.arange(E - K + 1)}
    with pytest.raises(BadInput, match="fewer than its top-k"):
        run_passes(ctx, ["remove"])
    assert K == 2


def test_a_genai_moe_decoder_loses_experts_and_neurons_and_still_generates(tmp_path):
    """GPT-OSS-shaped (4 experts, top 2) through the onnxruntime-genai builder: half the
    experts and half of every expert's neurons go; the folder still generates in
    onnxruntime-genai what the pruned model's full forward predicts."""
    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("transformers")
    import os

    from decoders import full_forward_predictions, genai_build, genai_generate, greedy_with_cache, save_hf

    src = genai_build(save_hf("gptoss", str(tmp_path / "hf")), str(tmp_path / "dense"))
    out = str(tmp_path / "out" / "model.onnx")
    os.makedirs(os.path.dirname(out))
    report = prune(src, output=out, passes=["l2", "select:ratio=0.5,include=*moe*"], quiet=True)
    assert report["after"]["params"] < report["before"]["params"]
    shapes = {t.name: list(t.dims) for t in onnx.load(out, load_external_data=False).graph.initializer}
    gate_up = [d for n, d in shapes.items() if n.endswith("gate_up_proj.weight")]
    assert gate_up and all(d[0] == 2 and d[1] == 96 for d in gate_up)  # experts 4 -> 2, neurons 96 -> 48
    prompt = [1, 5, 9, 3]
    tokens = greedy_with_cache(out, prompt, 24)
    np.testing.assert_array_equal(full_forward_predictions(out, tokens)[len(prompt) - 1:-1], tokens[len(prompt):])
    assert genai_generate(os.path.dirname(out), prompt, 24) == tokens
