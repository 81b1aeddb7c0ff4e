"""Fused attention: ONNX Runtime's com.microsoft `Attention` and `MultiHeadAttention`,
and the standard `Attention` op (opset 23); GroupQueryAttention, the decoder op with a
KV cache, is in `decoder_attention.py`.

A head is a block of head_size positions on every axis that carries heads: the Q, K and V
thirds of a packed weight, the Q/K/V inputs, the output. Blocks are tied whole (head_size
itself is never pruned: the kernels take one head size and scale by it). A key/value head
shared by several query heads (grouped-query) is one unit with them. Past and present
key/values (batch, heads, length, head size) follow the heads they hold (`cache_follows`);
additive attention biases with a head axis are not followed: they pin the heads.
The rewrites set num_heads / kv_num_heads / q_num_heads / qkv_hidden_sizes from what is kept.
"""

from __future__ import annotations

import numpy as np

from graphprune.analysis.rules.base import carry_all


def _blocks(n_heads: int, size: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `n_heads` blocks of `size` starting at `offset`, and the first position
    of the block each belongs to (tying a position to its block's first one)."""
    p = np.arange(n_heads * size)
    return offset + p, offset + (p // size) * size


def _heads_of(b, value, axis, n_heads, offset=0, length=None):
    """Tie every position of each head block of `value[axis]` to the block's first one."""
    s = b.shape(value)
    if s is None or not isinstance(s[axis], int):
        return None
    total = length if length is not None else s[axis] - offset
    if n_heads <= 0 or total % n_heads:
        return None
    size = total // n_heads
    pos, first = _blocks(n_heads, size, offset)
    b.tie_within(value, axis, pos, first)
    b.attends(value, axis)
    return size


def _tie_heads(b, a, a_axis, a_off, a_size, c, c_axis, c_off, c_size, a_heads, ratio=1):
    """Head h of `a` (blocks of a_size from a_off) is head h // ratio of `c`."""
    h = np.arange(a_heads)
    b.tie(a, a_axis, c, c_axis, a_off + h * a_size, c_off + (h // ratio) * c_size)


def _present(node, i):
    return len(node.inputs) > i and node.inputs[i] is not None


def _used(v) -> bool:
    return v is not None and (bool(list(v.uses())) or v.is_graph_output())


def _refuse(b, node, why: str) -> None:
    """Pin everything the node touches, saying why its heads cannot be pruned."""
    for v in (*node.inputs, *node.outputs):
        if v is not None:
            for a in range(b.rank(v) or 0):
                b.pin(v, a, f"fused attention not pruned: {why}")


def cache_follows(b, tensors, src, axis: int, n: int, size: int | None = None, offset: int = 0) -> None:
    """Past/present key or value tensors (batch, heads, length, head size) hold the heads
    of `src[axis]`: head j is the block of `size` positions at offset + j*size there (or
    position j itself when `size` is None). Lengths pass; the head size stays."""
    for t in tensors:
        if t is None or b.rank(t) != 4:
            continue
        b.tie(t, 0, src, 0)
        if size is None:
            b.tie(t, 1, src, axis)
        else:
            b.tie(t, 1, src, axis, np.arange(n), offset + np.arange(n) * size)
        b.carry(t, 2)
        b.pin(t, 3, "head size of a key/value cache")


def _batch_seq(b, pairs) -> None:
    for x, xa, y, ya in pairs:
        b.tie(x, xa, y, ya)


# -- com.microsoft Attention: packed QKV weight ---------------------------------------------
def ms_attention(node, b) -> None:
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if _present(node, 2) else None
    y = node.outputs[0]
    sw = b.shape(w)
    heads = int(b.attr("num_heads", 0))
    if sw is None or not all(isinstance(d, int) for d in sw) or heads <= 0:
        return _refuse(b, node, "weight shape or num_heads unknown")
    if _present(node, 4) or _present(node, 5) or any(_used(o) for o in node.outputs[1:]):
        return _refuse(b, node, "past state or attention bias inputs")
    sizes = list(b.attr("qkv_hidden_sizes") or [sw[1] // 3] * 3)
    q, k, v = (int(s) for s in sizes)
    _batch_seq(b, [(x, 0, y, 0), (x, 1, y, 1)])
    b.tie(x, 2, w, 0)
    hq = _heads_of(b, w, 1, heads, 0, q)
    hk = _heads_of(b, w, 1, heads, q, k)
    hv = _heads_of(b, w, 1, heads, q + k, v)
    ho = _heads_of(b, y, 2, heads)
    if None in (hq, hk, hv, ho):
        return
    _tie_heads(b, w, 1, 0, hq, w, 1, q, hk, heads)
    _tie_heads(b, w, 1, 0, hq, w, 1, q + k, hv, heads)
    _tie_heads(b, w, 1, q + k, hv, y, 2, 0, ho, heads)
    if bias is not None:
        b.tie(bias, 0, w, 1)
        b.role(bias, 0, "bias")
    if _present(node, 3):
        carry_all(b, node.inputs[3])
    b.role(w, 0, "in")
    b.role(w, 1, "out")
    sx = b.shape(x)
    tokens = (sx[0] if isinstance(sx[0], int) else 1) * (sx[1] if isinstance(sx[1], int) else 1)
    b.macs(tokens * sw[0] * sw[1], [(w, 0), (w, 1)])


def ms_attention_rewrite(node, edit) -> None:
    w = node.inputs[1]
    kept = edit.kept(w, 1)
    if kept is None:
        return
    sw = edit.old_shape(w)
    heads = int(node.attributes["num_heads"].value)
    sizes = list(node.attributes["qkv_hidden_sizes"].value) if "qkv_hidden_sizes" in node.attributes \
        else [sw[1] // 3] * 3
    edges = np.cumsum([0, *sizes])
    new = [int(np.sum((kept >= lo) & (kept < hi))) for lo, hi in zip(edges[:-1], edges[1:])]
    edit.set_attr(node, "num_heads", new[0] // (sizes[0] // heads))
    if "qkv_hidden_sizes" in node.attributes or len(set(new)) > 1:
        edit.set_attr(node, "qkv_hidden_sizes", new)


# -- com.microsoft MultiHeadAttention: separate Q, K, V --------------------------------------
def ms_mha(node, b) -> None:
    q, k, v = (node.inputs[i] if _present(node, i) else None for i in range(3))
    y = node.outputs[0]
    heads = int(b.attr("num_heads", 0))
    if k is None or v is None or b.rank(q) != 3 or b.rank(k) != 3 or b.rank(v) != 3 or heads <= 0:
        return _refuse(b, node, "packed Q/K/V layout")
    if _present(node, 5) or any(_used(o) for o in node.outputs[3:]) or any(_present(node, i) for i in (9,)):
        return _refuse(b, node, "attention bias, beam-search cache or QK output")
    carry_all(b, node.inputs[4] if _present(node, 4) else None)  # key padding mask: no heads
    _batch_seq(b, [(q, 0, y, 0), (k, 0, y, 0), (v, 0, y, 0), (q, 1, y, 1), (k, 1, v, 1)])
    hq, hk, hv, ho = (_heads_of(b, t, 2, heads) for t in (q, k, v, y))
    if None in (hq, hk, hv, ho):
        return
    _tie_heads(b, q, 2, 0, hq, k, 2, 0, hk, heads)
    _tie_heads(b, q, 2, 0, hq, v, 2, 0, hv, heads)
    _tie_heads(b, v, 2, 0, hv, y, 2, 0, ho, heads)
    # Past and present key/value (inputs 6, 7; outputs 1, 2), (batch, heads, length, size).
    cache_follows(b, [node.inputs[6] if _present(node, 6) else None, *node.outputs[1:2]], k, 2, heads, hk)
    cache_follows(b, [node.inputs[7] if _present(node, 7) else None, *node.outputs[2:3]], v, 2, heads, hv)
    carry_all(b, node.inputs[8] if _present(node, 8) else None)  # past_sequence_length
    if _present(node, 3):  # bias: Q, K and V parts
        bias = node.inputs[3]
        sq, sk = b.shape(q)[2], b.shape(k)[2]
        b.tie(bias, 0, q, 2, np.arange(sq), np.arange(sq))
        b.tie(bias, 0, k, 2, sq + np.arange(sk), np.arange(sk))
        sv = b.shape(v)[2]
        b.tie(bias, 0, v, 2, sq + sk + np.arange(sv), np.arange(sv))
        b.role(bias, 0, "bias")


def heads_rewrite(attr: str, value_index: int):
    """Set `attr` to the kept size of an input's last axis over its head size."""
    def rewrite(node, edit) -> None:
        v = node.inputs[value_index]
        kept = edit.kept(v, -1)
        if kept is None or attr not in node.attributes:
            return
        old = edit.old_shape(v)[-1]
        size = old // int(node.attributes[attr].value)
        edit.set_attr(node, attr, len(kept) // size)
    return rewrite


def ms_mha_rewrite(node, edit) -> None:
    heads_rewrite("num_heads", 0)(node, edit)


# -- the standard Attention op (opset 23) -----------------------------------------------------
def onnx_attention(node, b) -> None:
    q, k, v = node.inputs[:3]
    y = node.outputs[0]
    if any(_used(o) for o in node.outputs[3:]):
        return _refuse(b, node, "its QK output")
    past_k, past_v = (node.inputs[i] if _present(node, i) else None for i in (4, 5))
    present_k, present_v = (node.outputs[i] if len(node.outputs) > i else None for i in (1, 2))
    rq = b.rank(q)
    if rq == 4:
        sq, sk = b.shape(q), b.shape(k)
        if not isinstance(sq[1], int) or not isinstance(sk[1], int) or sq[1] % sk[1]:
            return
        g = sq[1] // sk[1]
        _batch_seq(b, [(q, 0, y, 0), (k, 0, y, 0), (v, 0, y, 0), (q, 2, y, 2), (k, 2, v, 2)])
        b.tie(q, 1, y, 1)
        b.tie(k, 1, v, 1)
        b.tie(q, 1, k, 1, np.arange(sq[1]), np.arange(sq[1]) // g)
        b.attends(q, 1)
        b.tie(v, 3, y, 3)
        b.pin(q, 3, "head size sets the softmax scale")
        b.pin(k, 3, "head size sets the softmax scale")
        b.pin(v, 3, "head size of a fused attention")
        cache_follows(b, [past_k, present_k], k, 1, sk[1])
        cache_follows(b, [past_v, present_v], v, 1, sk[1])
    elif rq == 3:
        heads, kv = int(b.attr("q_num_heads", 0)), int(b.attr("kv_num_heads", 0))
        if heads <= 0 or kv <= 0 or heads % kv:
            return
        hq, hk, hv, ho = (_heads_of(b, t, 2, n) for t, n in ((q, heads), (k, kv), (v, kv), (y, heads)))
        if None in (hq, hk, hv, ho):
            return
        _batch_seq(b, [(q, 0, y, 0), (k, 0, y, 0), (v, 0, y, 0), (q, 1, y, 1), (k, 1, v, 1)])
        _tie_heads(b, q, 2, 0, hq, k, 2, 0, hk, heads, heads // kv)
        _tie_heads(b, k, 2, 0, hk, v, 2, 0, hv, kv)
        _tie_heads(b, q, 2, 0, hq, y, 2, 0, ho, heads)
        cache_follows(b, [past_k, present_k], k, 2, kv, hk)
        cache_follows(b, [past_v, present_v], v, 2, kv, hv)
    else:
        return
    if _present(node, 6):  # nonpad_kv_seqlen: one length per batch row
        b.carry(node.inputs[6], 0)
    if _present(node, 3):
        mask = node.inputs[3]
        sm = b.shape(mask)
        for a in range(len(sm)):
            if len(sm) == 4 and a == 1 and sm[1] != 1:
                b.pin(mask, a, "attention mask with a head axis")
            else:
                b.carry(mask, a)


def onnx_attention_rewrite(node, edit) -> None:
    if len(edit.old_shape(node.inputs[0])) == 3:
        heads_rewrite("q_num_heads", 0)(node, edit)
        heads_rewrite("kv_num_heads", 1)(node, edit)


# -- com.microsoft fused norms and activations ------------------------------------------------
def ms_skip_norm(node, b) -> None:
    """(Skip)(Simplified)LayerNormalization over the last axis: rows pass, the hidden axis
    of every input and output is one axis, normalized over (pinned)."""
    x = node.inputs[0]
    rank = b.rank(x)
    if rank is None:
        return
    rows = [t for t in (*node.inputs[:2], node.outputs[0], *node.outputs[3:4]) if t is not None and b.rank(t) == rank]
    for t in rows[1:]:
        for a in range(rank):
            b.tie(x, a, t, a)
    for t in node.inputs[2:]:
        if t is not None and b.rank(t) == 1:
            b.tie(t, 0, x, rank - 1)
    for t in node.outputs[1:3]:  # mean, inverse std: (rows..., 1)
        if t is not None and b.rank(t) == rank:
            for a in range(rank - 1):
                b.tie(x, a, t, a)
            b.carry(t, rank - 1)
    if not b.option("through_norms"):
        b.pin(x, rank - 1, "normalizes over it")
