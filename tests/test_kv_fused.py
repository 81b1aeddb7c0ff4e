"""Fused decoder ops with a KV cache (tests/fused_cache_nets.py): com.microsoft
MultiHeadAttention with past/present and RotaryEmbedding; the opset-23 Attention
(grouped-query) with past/present and RotaryEmbedding. A head (a KV head with its query
heads) owns its rows of Q, K and V, the output projection's rows and its slice of the
cache; pruning it keeps the cache consistent: a sequence run in two calls through the cache
gives what one call gives, and removing inert heads changes nothing.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from fused_cache_nets import CACHE_NETS, HEADS, KV, run_steps
from graph_kit import analyse, coupled, group_of
from oracles import inert_pair

from graphprune.pipeline import prune

NAMES = sorted(CACHE_NETS)


def _x(seed=0, seq=7):
    return np.random.default_rng(seed).standard_normal((1, seq, 64)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_a_head_owns_its_projections_and_its_cache_slice(name):
    a = analyse(CACHE_NETS[name]())
    g = group_of(a, "wk", 1)
    assert g.kind == "heads" and g.n_units == (HEADS if name == "ms_mha_cache" else KV)
    assert not g.pinned.any()
    assert coupled(a, ("wk", 1), ("wq", 1), ("wv", 1), ("o", 0), ("past_key_values.0.key", 1),
                   ("present.0.key", 1), ("past_key_values.0.value", 1), ("present.0.value", 1))


@pytest.mark.parametrize("name", NAMES)
def test_keep_io_pins_the_heads(name):
    g = group_of(analyse(CACHE_NETS[name](), keep_io=True), "wk", 1)
    assert g.pinned.all() and any("graph input" in r for r in g.pin_reasons)


@pytest.mark.parametrize("name", NAMES)
def test_pruned_heads_keep_the_cache_consistent(name, tmp_path):
    src, out = str(tmp_path / "m.onnx"), str(tmp_path / "p.onnx")
    onnx.save(CACHE_NETS[name](), src)
    report = prune(src, output=out, passes=["l2", "select:heads=0.5"], quiet=True)
    assert report["cache_tensors"] and report["verification"]["checker"] == "passed"
    pruned = onnx.load(out)
    attn = next(n for n in pruned.graph.node if "Attention" in n.op_type)
    counts = {a.name: a.i for a in attn.attribute if "heads" in a.name}
    assert counts in ({"num_heads": HEADS // 2}, {"q_num_heads": HEADS // 2, "kv_num_heads": KV // 2})
    whole, split = run_steps(out, _x(), 4)
    np.testing.assert_allclose(split, whole, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_removing_inert_heads_and_neurons_changes_nothing(name, tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(CACHE_NETS[name](), path)
    inert, removed, ctx = inert_pair(path, tmp_path, seed=1)
    assert "past_key_values.0.key" in ctx.interface
    x = _x(3)
    (a, _), (b, split) = run_steps(inert, x, 4), run_steps(removed, x, 4)
    np.testing.assert_allclose(b, a, atol=1e-5)
    np.testing.assert_allclose(split, a, atol=1e-5)
