"""Rules of graphprune/analysis/rules/attention.py on the fused graphs of fused_nets.py:
a head of com.microsoft Attention owns its blocks of Q, K and V in the packed weight; a KV
head of GroupQueryAttention and of the opset-23 Attention owns its query heads; the output
projection's rows follow; SkipLayerNormalization pins the hidden axis unless `hidden` asks
for it. (test_fused.py prunes these graphs end to end.)"""

from __future__ import annotations

import numpy as np

from fused_nets import HEADS, H, KV, ms_attention, ms_gqa, ms_mha, onnx_attention
from graph_kit import analyse, coupled, group_of

D = H // HEADS


def test_packed_qkv_heads_own_a_block_of_each_of_q_k_and_v():
    a = analyse(ms_attention())
    g = group_of(a, "qkv", 1)
    assert g.kind == "heads" and g.n_units == HEADS and coupled(a, ("qkv", 1), ("qkv_b", 0), ("o", 0))
    units = g.members[("qkv", 1)]
    for part in range(3):  # q, k and v blocks of head h all belong to unit h
        np.testing.assert_array_equal(units[part * H:(part + 1) * H], units[:H])
    np.testing.assert_array_equal(units[:H], np.repeat(units[:H:D], D))


def test_multi_head_attention_ties_q_k_v_projections_and_the_output_rows():
    a = analyse(ms_mha())
    g = group_of(a, "wq", 1)
    assert g.n_units == HEADS and coupled(a, ("wq", 1), ("wk", 1), ("wv", 1), ("o", 0))


def test_a_kv_head_owns_its_query_heads():
    for proto in (ms_gqa(), onnx_attention()):
        a = analyse(proto)
        g = group_of(a, "wk", 1)
        assert g.n_units == KV and coupled(a, ("wk", 1), ("wv", 1), ("wq", 1), ("o", 0))
        q = g.members[("wq", 1)]
        per_kv = HEADS // KV
        np.testing.assert_array_equal(q, np.repeat(np.arange(KV), per_kv * D) if q[0] == 0 else q)
        assert len(set(q[:per_kv * D])) == 1  # the first KV head's query heads are one unit


def test_skip_layer_norm_pins_the_hidden_axis_unless_asked():
    """The hidden axis here also reaches the graph's input and output (which pin it in
    any case); the norm's own pin goes with `hidden`."""
    def norm_pins(**options):
        return [r for r in group_of(analyse(ms_mha(), **options), "o", 1).pin_reasons
                if "SkipLayerNormalization" in r]
    assert norm_pins() and not norm_pins(through_norms=True)
