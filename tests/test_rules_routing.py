"""Rules of graphprune/analysis/rules/routing.py: a mixture of experts written out as
primitive ops (router MatMul + bias, Softmax, TopK, the picked experts' weights gathered
from stacked tensors). An expert (router column, slice of every stacked tensor) and an
expert MLP neuron are units; indices used any other way, a run-time `k`, or probabilities
read elsewhere keep the experts axis pinned."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from graph_kit import N, analyse, build, coupled, group_of, i64, pins, save, w
from oracles import inert_pair, run_model

from graphprune.context import Context
from graphprune.loading import load_model
from graphprune.pipeline import run_passes
from graphprune.saving import save_model

T, H, E, F, K = 5, 6, 4, 8, 2


def moe(gather: str = "Gather", never: int | None = None, indices_out: bool = False, k_input: bool = False,
        probs_out: bool = False):
    """y = x + sum over the k picked experts of p_e * W2_e relu(W1_e x), per token."""
    bias = w(E)
    if never is not None:
        bias[never] = -1e4
    idx = ["idx_flat"] if gather == "Gather" else ["idx_nd"]
    select = ([N("Gather", ["w1", "idx_flat"], ["w1s"], axis=0), N("Gather", ["w2", "idx_flat"], ["w2s"], axis=0)]
              if gather == "Gather" else
              [N("Unsqueeze", ["idx_flat", "last"], idx), N("GatherND", ["w1", *idx], ["w1s"]),
               N("GatherND", ["w2", *idx], ["w2s"])])
    nodes = [N("MatMul", ["x", "wr"], ["l0"]), N("Add", ["l0", "br"], ["logits"]),
             N("Softmax", ["logits"], ["probs"], axis=-1),
             N("TopK", ["probs", "k_in" if k_input else "k"], ["vals", "idx"], axis=-1),
             N("Reshape", ["idx", "flat"], ["idx_flat"]), *select,
             N("Unsqueeze", ["x", "one"], ["x1"]), N("Expand", ["x1", "rep"], ["x2"]),
             N("Reshape", ["x2", "rows"], ["xr"]), N("Unsqueeze", ["xr", "last"], ["xc"]),
             N("MatMul", ["w1s", "xc"], ["h0"]), N("Squeeze", ["h0", "last"], ["h1"]), N("Relu", ["h1"], ["h"]),
             N("Unsqueeze", ["h", "last"], ["hc"]), N("MatMul", ["w2s", "hc"], ["o0"]),
             N("Squeeze", ["o0", "last"], ["o1"]), N("Reshape", ["vals", "col"], ["p"]),
             N("Mul", ["o1", "p"], ["o2"]), N("Reshape", ["o2", "per_token"], ["o3"]),
             N("ReduceSum", ["o3", "one"], ["o4"], keepdims=0), N("Add", ["x", "o4"], ["y"])]
    inits = {"wr": w(H, E), "br": bias, "w1": w(E, F, H), "w2": w(E, H, F), "k": i64(K), "flat": i64(-1),
             "last": i64(-1), "one": i64(1), "rep": i64(1, K, 1), "rows": i64(-1, H), "col": i64(-1, 1),
             "per_token": i64(T, K, H)}
    inputs = {"x": [T, H], **({"k_in": ([1], TensorProto.INT64)} if k_input else {})}
    outputs = {"y": [T, H], **({"idx": ([T, K], TensorProto.INT64)} if indices_out else {}),
               **({"probs": [T, E]} if probs_out else {})}
    return build(nodes, inits, inputs, outputs, opset=18)


@pytest.mark.parametrize("gather", ["Gather", "GatherND"])
def test_experts_and_neurons_are_units(gather):
    a = analyse(moe(gather))
    experts = group_of(a, "w1", 0)
    assert coupled(a, ("wr", 1), ("br", 0), ("logits", 1), ("probs", 1), ("w1", 0), ("w2", 0))
    assert experts.kind == "experts" and experts.min_units == K and not experts.pinned.any()
    roles = {(name, axis) for (name, axis), role, _ in experts.roles}
    assert {("w1", 0), ("w2", 0), ("wr", 1)} <= roles
    neurons = group_of(a, "w1", 1)
    assert coupled(a, ("w1", 1), ("w2", 2), ("h", 1)) and not neurons.pinned.any()
    assert {(n, ax, r) for (n, ax), r, _ in neurons.roles} >= {("w1", 1, "out"), ("w2", 2, "in")}


@pytest.mark.parametrize("gather", ["Gather", "GatherND"])
def test_removing_an_expert_never_picked_changes_nothing(gather, tmp_path):
    src, out = save(moe(gather, never=2), tmp_path), str(tmp_path / "out.onnx")
    model = load_model(src)
    ctx = Context(model)
    run_passes(ctx, ["normalize", "l2"])
    ctx.plan = {group_of(ctx.analysis(), "w1", 0).id: np.array([2])}
    run_passes(ctx, ["remove", "cleanup"])
    save_model(model, out)
    feeds, ref = run_model(src)
    _, got = run_model(out, feeds)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-5)
    shapes = {t.name: list(t.dims) for t in onnx.load(out).graph.initializer}
    assert shapes["w1"][0] == shapes["w2"][0] == E - 1 and shapes["wr"] == [H, E - 1]


@pytest.mark.parametrize("gather", ["Gather", "GatherND"])
def test_removing_inert_neurons_changes_nothing(gather, tmp_path):
    inert, removed, ctx = inert_pair(save(moe(gather), tmp_path), tmp_path, seed=3, select=",experts=0")
    feeds, ref = run_model(inert)
    _, got = run_model(removed, feeds)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-5)
    assert next(t for t in onnx.load(removed).graph.initializer if t.name == "w1").dims[1] < F


@pytest.mark.parametrize("variant,where", [
    (dict(indices_out=True), ("idx", 1)),      # indices read as a graph output
    (dict(k_input=True), ("probs", 1)),        # k known only at run time
    (dict(probs_out=True), ("probs", 1)),      # probabilities read elsewhere: the Softmax mixes them
])
def test_routing_it_cannot_follow_pins_the_experts(variant, where):
    a = analyse(moe(**variant))
    assert group_of(a, "wr", 1).pinned.all() and pins(a, *where)
    experts = group_of(a, "w1", 0)
    assert experts is None or experts.pinned.all()  # no expert is a unit
    assert not group_of(a, "w1", 1).pinned.any()  # the neurons stay free
