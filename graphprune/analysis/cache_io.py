"""KV-cache tensors: the past key/value inputs and present key/value outputs of a decoder.

A decoder exported for generation reads each layer's past keys and values as graph inputs
and returns them, extended, as graph outputs; the runtime feeds each step's present back as
the next step's past. They are the model's state, not its interface: their KV-head axis
(batch, kv heads, length, head size) may shrink with the heads, as long as a past and its
present shrink alike. Every other axis, and every other graph input and output, stays pinned.

A pair is recognised by name and by structure: the names follow the exporters' and the
onnxruntime-genai builder's conventions (`past_key_values.3.key` / `present.3.key`,
`past_key_3` / `present_key_3`, ...), reduce to the same layer and kind, and the present is
computed from the past. The flow ties the pair's head axes position by position, so what
one loses the other loses.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

import onnx_ir as ir

from graphprune.shapes import shape_of

HEAD_AXIS = 1
_PAST = ("past_key_values", "past_key_value", "past")
_PRESENT = ("present_key_values", "present_key_value", "present")
_KINDS = {"k": "key", "key": "key", "keys": "key", "v": "value", "value": "value", "values": "value"}
_SPLIT = re.compile(r"[^a-z0-9]+|(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")


@dataclass(frozen=True)
class CachePair:
    past: str       # graph input
    present: str    # graph output
    axis: int = HEAD_AXIS


def _layer_key(name: str, prefixes: tuple[str, ...]) -> tuple[str, ...] | None:
    """('3', 'key') for past_key_values.3.key under the past prefixes; None when the name
    does not start with one or names no layer."""
    low = name.lower()
    prefix = next((p for p in prefixes if low.startswith(p)), None)
    if prefix is None:
        return None
    tokens = [t for t in _SPLIT.split(low[len(prefix):]) if t]
    key = tuple(_KINDS.get(t, t) for t in tokens if t.isdigit() or t in _KINDS)
    return key if any(t.isdigit() for t in key) else None


def layer_of(pair: CachePair) -> str:
    """The layer index in a pair's names ('3' for past_key_values.3.key)."""
    return next(t for t in _layer_key(pair.past, _PAST) if t.isdigit())


def names_pair(past: str, present: str) -> bool:
    """Whether the names of a past input and a present output say the same layer and kind."""
    key = _layer_key(past, _PAST)
    return key is not None and key == _layer_key(present, _PRESENT)


def _reaches(src: ir.Value, dst: ir.Value, limit: int = 64) -> bool:
    """Whether `dst` is computed from `src` within `limit` nodes."""
    seen, todo = set(), deque([src])
    while todo and len(seen) < limit:
        v = todo.popleft()
        for node, _ in v.uses():
            if id(node) in seen:
                continue
            seen.add(id(node))
            for out in node.outputs:
                if out is dst:
                    return True
                todo.append(out)
    return False


def cache_pairs(model: ir.Model) -> list[CachePair]:
    """The past/present pairs of a decoder graph (empty for any other model)."""
    graph = model.graph
    pasts = {}
    for v in graph.inputs:
        key = _layer_key(v.name or "", _PAST) if v.name not in graph.initializers else None
        if key is not None:
            pasts[key] = v
    pairs = []
    for out in graph.outputs:
        key = _layer_key(out.name or "", _PRESENT)
        past = pasts.get(key) if key is not None else None
        if past is None:
            continue
        sp, so = shape_of(past), shape_of(out)
        if not (sp and so and len(sp) == len(so) == 4 and isinstance(sp[HEAD_AXIS], int)
                and sp[HEAD_AXIS] == so[HEAD_AXIS]):
            continue
        if _reaches(past, out):
            pairs.append(CachePair(past.name, out.name))
    return pairs


def _head_size(past: ir.Value, present: ir.Value) -> int | None:
    """The cache's head size where the past's declared shape leaves it symbolic: the
    present's, else what the attention node reading the past works with."""
    from graphprune.analysis.rules.decoder_attention import gqa_layout

    if isinstance(shape_of(present)[3], int):
        return shape_of(present)[3]
    for node, _ in past.uses():
        if node.op_type == "GroupQueryAttention":
            layout = gqa_layout(node, shape_of)
            if layout is not None:
                return layout[2]
        for v in (*node.inputs, *node.outputs):
            s = shape_of(v)
            if v is not past and s is not None and len(s) == 4 and isinstance(s[3], int):
                return s[3]
    return None


def probe_dims(model: ir.Model, past: int = 7, steps: int = 1) -> dict[str, int]:
    """Sizes for the symbolic dims of a decoder's inputs, so random probes run it: one
    decoding step (`steps` new tokens) after `past` cached positions, the total length their
    sum (also an attention mask's length), the cache's head size what its attention reads.
    Empty for models without a cache."""
    pairs = cache_pairs(model)
    if not pairs:
        return {}
    # A sliding-window GroupQueryAttention runs on a shared buffer at least as long as its
    # window (as onnxruntime-genai allocates it): the past is that buffer, the mask says
    # how much of it is filled.
    windows = [int(n.attributes["local_window_size"].value) for n in model.graph
               if n.op_type == "GroupQueryAttention" and "local_window_size" in n.attributes]
    capacity = max([past, *windows])
    graph = model.graph
    values = {v.name: v for v in (*graph.inputs, *graph.outputs)}
    dims: dict[str, int] = {}
    for pair in pairs:
        sp, so = shape_of(values[pair.past]), shape_of(values[pair.present])
        if isinstance(sp[2], str):
            dims[sp[2]] = capacity
        if isinstance(so[2], str) and so[2] != sp[2]:
            dims[so[2]] = capacity if capacity > past else past + steps
        if isinstance(sp[3], str):
            size = _head_size(values[pair.past], values[pair.present])
            if size is not None:
                dims[sp[3]] = size
    for v in graph.inputs:
        shape = shape_of(v) or ()
        # An attention mask spans the cached and the new positions.
        if "mask" in (v.name or "").lower() and len(shape) == 2 and isinstance(shape[1], str):
            dims.setdefault(shape[1], past + steps)
    for v in graph.inputs:
        if v.dtype in (ir.DataType.INT64, ir.DataType.INT32):
            for d in (shape_of(v) or ())[1:]:
                if isinstance(d, str) and d not in dims:
                    dims[d] = steps
    return dims
