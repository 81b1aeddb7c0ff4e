"""Writing a plan onto a PyTorch module: every parameter and buffer sliced along the
plan's axes (tied ones stay tied), and the attributes that carry sizes brought in line.

The size attributes are a table, by module kind, of what each attribute is in terms of
the module's own (sliced) tensors: a Conv's `out_channels` is its weight's first axis, a
Linear's `in_features` its second, a BatchNorm's `num_features` its length. Attention
modules store head counts and widths that no tensor spells out; they are derived from the
query/key projections' new widths and the module's head size (`num_heads`,
`num_attention_heads`, `num_key_value_heads`, `num_key_value_groups`, `all_head_size`,
`split_size`, ...). prune() checks the result against the pruned ONNX model and names any
module it could not make consistent."""

from __future__ import annotations

import torch

HEAD_COUNT = ("num_heads", "num_attention_heads", "n_head", "n_heads")
KV_COUNT = ("num_key_value_heads", "num_kv_heads")
GROUPS = ("num_key_value_groups",)
HEAD_DIM = ("head_dim", "attention_head_size", "dim_per_head", "key_value_proj_dim", "d_kv")
WIDTH = ("all_head_size", "inner_dim", "split_size", "dim")  # only where they held the query width
Q_NAMES = ("q_proj", "query", "q", "q_lin", "to_q")
K_NAMES = ("k_proj", "key", "k", "k_lin", "to_k")
PACKED = ("c_attn", "qkv", "Wqkv", "qkv_proj")


def _set_tensor(module: torch.nn.Module, name: str, tensor: torch.Tensor) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    if attr in parent._parameters:
        old = parent._parameters[attr]
        parent._parameters[attr] = torch.nn.Parameter(tensor, requires_grad=old.requires_grad if old is not None else True)
    elif attr in parent._buffers:
        parent._buffers[attr] = tensor
    else:
        raise KeyError(name)


def slice_tensors(module: torch.nn.Module, tensors: dict[str, dict[str, list[int]]]) -> None:
    """Cut every named parameter/buffer to the kept indices of its axes; names that share
    one tensor (tied weights) get one new tensor."""
    state = module.state_dict(keep_vars=True)
    missing = sorted(set(tensors) - set(state))
    if missing:
        raise KeyError(f"the plan names {missing[0]!r}, which this module does not have")
    by_id: dict[int, list[str]] = {}
    for name, t in state.items():
        by_id.setdefault(id(t), []).append(name)
    done: dict[int, torch.Tensor] = {}
    for name, axes in tensors.items():
        t = state[name]
        key = id(t)
        new = done.get(key)
        if new is None:
            new = t.detach()
            for axis, kept in sorted(axes.items(), key=lambda kv: int(kv[0])):
                new = new.index_select(int(axis), torch.as_tensor(kept, dtype=torch.long, device=new.device))
            new = new.contiguous().clone()
            done[key] = new
        for alias in by_id[key]:
            _set_tensor(module, alias, done[key])


def _ints(obj, names) -> dict[str, int]:
    return {n: getattr(obj, n) for n in names if isinstance(getattr(obj, n, None), int) and
            not isinstance(getattr(obj, n), bool)}


def _conv(m, w, old: dict) -> dict:
    """Conv: weight (out, in / groups, ...); ConvTranspose: weight (in, out / groups, ...).
    A depthwise conv (a group per input channel) keeps a group per kept channel; a grouped
    one keeps its groups (graphprune removes the k-th channel of every group)."""
    transposed = isinstance(m, torch.nn.modules.conv._ConvTransposeNd)
    groups = old.get("groups", m.groups)
    depthwise = groups > 1 and groups == old.get("in_channels")
    if transposed:
        new_groups = w.shape[0] if depthwise else groups
        return {"in_channels": w.shape[0], "out_channels": w.shape[1] * new_groups, "groups": new_groups}
    if depthwise:
        per_group = old["out_channels"] // groups  # the channel multiplier
        new_groups = w.shape[0] // per_group
        return {"in_channels": new_groups, "out_channels": w.shape[0], "groups": new_groups}
    return {"in_channels": w.shape[1] * groups, "out_channels": w.shape[0]}


def size_attributes(module: torch.nn.Module, before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """module name -> {attribute: value} that the sliced tensors call for; `before` holds
    the modules' attributes before slicing (depthwise groups and head sizes need them)."""
    nn = torch.nn
    found: dict[str, dict[str, int]] = {}
    for name, m in module.named_modules():
        w = getattr(m, "weight", None)
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else None
        new: dict[str, int] = {}
        if isinstance(m, nn.modules.conv._ConvNd) and shape:
            new = _conv(m, w, before.get(name, {}))
        elif isinstance(m, nn.Linear) and shape:
            new = {"in_features": shape[1], "out_features": shape[0]}
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = (shape or tuple(m.running_mean.shape))[0]
            new = {"num_features": n}
        elif isinstance(m, nn.GroupNorm) and shape:
            per = before.get(name, {}).get("num_channels", shape[0]) // max(before.get(name, {}).get("num_groups", 1), 1)
            new = {"num_channels": shape[0], "num_groups": shape[0] // max(per, 1)}
        elif isinstance(m, nn.LayerNorm) and shape:
            new = {"normalized_shape": shape}
        elif isinstance(m, nn.Embedding) and shape:
            new = {"num_embeddings": shape[0], "embedding_dim": shape[1]}
        elif type(m).__name__ == "Conv1D" and shape:  # transformers' GPT-2 linear: weight (in, out)
            new = {"nf": shape[1], "nx": shape[0]}
        new.update(_attention(m, before.get(name, {})))
        changed = {k: v for k, v in new.items() if getattr(m, k, None) != v and hasattr(m, k)}
        if changed:
            found[name] = changed
    return found


def _width(child, packed: bool = False) -> int | None:
    w = getattr(child, "weight", None)
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        return None
    out = w.shape[1] if type(child).__name__ == "Conv1D" else w.shape[0]
    return out // 3 if packed else out


def _attention(m, old: dict[str, int]) -> dict[str, int]:
    """Head counts and widths of an attention module, from its projections' new widths."""
    heads_attr = [a for a in HEAD_COUNT if a in old]
    if not heads_attr:
        return {}
    children = dict(m.named_children())
    q = next((_width(children[n]) for n in Q_NAMES if n in children), None)
    k = next((_width(children[n]) for n in K_NAMES if n in children), None)
    if q is None:
        q = k = next((_width(children[n], packed=True) for n in PACKED if n in children), None)
    if q is None:
        return {}
    old_heads = old[heads_attr[0]]
    head_dim = next((old[a] for a in HEAD_DIM if a in old), None)
    old_q = next((old[a] for a in WIDTH if a in old and old[a] % max(old_heads, 1) == 0), None)
    if head_dim is None and old_q is not None:
        head_dim = old_q // old_heads
    if not head_dim:
        return {}
    heads = q // head_dim
    new = {a: heads for a in heads_attr}
    old_kv = next((old[a] for a in KV_COUNT if a in old), None)
    kv = (k // head_dim) if k is not None else heads
    new.update({a: kv for a in KV_COUNT if a in old})
    if old_kv:
        new.update({a: heads // max(kv, 1) for a in GROUPS if a in old})
    new.update({a: heads * head_dim for a in WIDTH if a in old and old[a] == old_heads * head_dim})
    return new


def module_sizes(module: torch.nn.Module) -> dict[str, dict[str, int]]:
    """Each module's integer attributes that size attribution reads (before slicing)."""
    keys = ("in_channels", "out_channels", "groups", "num_channels", "num_groups") + HEAD_COUNT + KV_COUNT + \
        GROUPS + HEAD_DIM + WIDTH
    return {name: _ints(m, keys) for name, m in module.named_modules()}


def set_attributes(module: torch.nn.Module, attributes: dict[str, dict]) -> None:
    for name, attrs in attributes.items():
        m = module.get_submodule(name) if name else module
        for key, value in attrs.items():
            setattr(m, key, tuple(value) if isinstance(value, list) else value)


def apply_plan(module: torch.nn.Module, plan: dict) -> torch.nn.Module:
    """Shrink `module` (in place) to `plan`: a freshly built instance of the architecture the
    plan was made for then takes the pruned state_dict."""
    from graphprune.torch.plan import FORMAT

    if plan.get("format") != FORMAT:
        raise ValueError(f"not a graphprune plan (format {plan.get('format')!r}, expected {FORMAT!r})")
    from graphprune.torch.values import add_biases

    slice_tensors(module, plan.get("tensors", {}))
    set_attributes(module, plan.get("attributes", {}))
    add_biases(module, plan.get("added", {}))
    return module
