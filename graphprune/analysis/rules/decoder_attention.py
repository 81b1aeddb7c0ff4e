"""Decoder ops with state: com.microsoft GroupQueryAttention (the decoder attention of ONNX
Runtime's LLM graphs, as the onnxruntime-genai model builder writes it) with its key/value
cache, and rotary embeddings (com.microsoft RotaryEmbedding, the opset-23 op).

Q, K and V come separate (inputs 0-2) or packed in input 0 as [Q heads | K heads | V heads]
along the hidden axis (K and V absent). A unit is a KV head with the num_heads/kv_num_heads
query heads that read it; head_size is never pruned. The past key/value inputs (3, 4) and
present outputs (1, 2), (batch, kv heads, length, head size), follow the KV heads: where
they are graph inputs and outputs, the cache analysis (`cache_io`) lets them shrink with
the heads. Sequence lengths, rotary tables and position ids carry no heads; an attention
bias or head sinks (inputs 10+) do, and pin them. The rewrite sets num_heads and
kv_num_heads from what is kept.
"""

from __future__ import annotations

import numpy as np

from graphprune.analysis.rules.attention import (_heads_of, _present, _refuse, _tie_heads, cache_follows,
                                                 heads_rewrite)
from graphprune.analysis.rules.base import carry_all, identity_all


def gqa_layout(node, shape) -> tuple[int, int, int, bool] | None:
    """(num_heads, kv_num_heads, head_size, packed) of a GroupQueryAttention node, given
    a function that returns a value's shape; None where they cannot be read."""
    attrs = node.attributes
    heads = int(attrs["num_heads"].value) if "num_heads" in attrs else 0
    kv = int(attrs["kv_num_heads"].value) if "kv_num_heads" in attrs else 0
    packed = not (_present(node, 1) and _present(node, 2))
    sq = shape(node.inputs[0])
    if heads <= 0 or kv <= 0 or heads % kv or sq is None or len(sq) != 3 or not isinstance(sq[2], int):
        return None
    width = heads + 2 * kv if packed else heads
    if sq[2] % width:
        return None
    return heads, kv, sq[2] // width, packed


def ms_gqa(node, b) -> None:
    layout = gqa_layout(node, b.shape)
    if layout is None:
        return _refuse(b, node, "num_heads, kv_num_heads or the query width unknown")
    heads, kv, hs, packed = layout
    q, y = node.inputs[0], node.outputs[0]
    g = heads // kv
    if packed:
        k_at, v_at = (q, heads * hs), (q, (heads + kv) * hs)
        hk = _heads_of(b, q, 2, kv, k_at[1], kv * hs)
        hv = _heads_of(b, q, 2, kv, v_at[1], kv * hs)
        hq = _heads_of(b, q, 2, heads, 0, heads * hs)
        _batch_seq = [(q, 0, y, 0), (q, 1, y, 1)]
    else:
        k_at, v_at = (node.inputs[1], 0), (node.inputs[2], 0)
        hq, hk, hv = (_heads_of(b, t, 2, n) for t, n in ((q, heads), (k_at[0], kv), (v_at[0], kv)))
        _batch_seq = [(q, 0, y, 0), (k_at[0], 0, y, 0), (v_at[0], 0, y, 0), (q, 1, y, 1),
                      (k_at[0], 1, v_at[0], 1)]
    ho = _heads_of(b, y, 2, heads)
    if None in (hq, hk, hv, ho):
        return _refuse(b, node, "head blocks do not divide the hidden axes")
    for x, xa, t, ta in _batch_seq:
        b.tie(x, xa, t, ta)
    _tie_heads(b, q, 2, 0, hs, k_at[0], 2, k_at[1], hs, heads, g)
    _tie_heads(b, k_at[0], 2, k_at[1], hs, v_at[0], 2, v_at[1], hs, kv)
    _tie_heads(b, q, 2, 0, hs, y, 2, 0, hs, heads)
    # Past and present key/value (batch, kv heads, length, head size) follow the KV heads.
    cache_follows(b, [node.inputs[3] if _present(node, 3) else None, *node.outputs[1:2]], k_at[0], 2, kv, hs, k_at[1])
    cache_follows(b, [node.inputs[4] if _present(node, 4) else None, *node.outputs[2:3]], v_at[0], 2, kv, hs, v_at[1])
    for t in node.inputs[5:10]:  # lengths, rotary tables, position ids
        carry_all(b, t)
    for t in node.inputs[10:]:
        b.pin_value(t, "attention bias or head sinks of a fused attention")


def ms_gqa_rewrite(node, edit) -> None:
    layout = gqa_layout(node, edit.old_shape)
    kept = edit.kept(node.inputs[0], 2)
    if layout is None or kept is None:
        return
    heads, kv, hs, packed = layout
    edit.set_attr(node, "num_heads", int(np.sum(kept < heads * hs)) // hs)
    if packed:
        edit.set_attr(node, "kv_num_heads", int(np.sum((kept >= heads * hs) & (kept < (heads + kv) * hs))) // hs)
    else:
        k_kept = edit.kept(node.inputs[1], 2)
        if k_kept is not None:
            edit.set_attr(node, "kv_num_heads", len(k_kept) // hs)


# -- rotary embeddings: com.microsoft RotaryEmbedding, and the standard op (opset 23) -----------
def rotary(node, b) -> None:
    """Rotates pairs of positions within each head: batch, sequence and heads pass; a head's
    positions stay together (3-D input: blocks of hidden/num_heads; 4-D: the head axis is
    axis 1 and head_size, axis 3, is pinned). Position ids and the cos/sin tables carry no
    heads."""
    x, y = node.inputs[0], node.outputs[0]
    rank = b.rank(x)
    for t in node.inputs[1:]:
        carry_all(b, t)
    if rank in (3, 4):
        identity_all(b, x, y)
    if rank == 4:
        b.pin(x, 3, "rotary embedding pairs positions within a head")
    elif rank == 3:
        heads = int(b.attr("num_heads", 0))
        cos = node.inputs[2] if node.domain == "com.microsoft" and _present(node, 2) else None
        sx, sc = b.shape(x), b.shape(cos)
        if heads <= 0 and sc is not None and isinstance(sc[-1], int) and isinstance(sx[2], int) \
                and sx[2] % (2 * sc[-1]) == 0 and not b.attr("rotary_embedding_dim", 0):
            heads = sx[2] // (2 * sc[-1])  # ONNX Runtime's kernel reads the head size off the table
        if heads <= 0 or _heads_of(b, x, 2, heads) is None:
            b.pin(x, 2, "rotary embedding over a packed hidden axis without num_heads")


def rotary_rewrite(node, edit) -> None:
    if edit.rank(node.inputs[0]) == 3 and "num_heads" in node.attributes:
        heads_rewrite("num_heads", 0)(node, edit)
