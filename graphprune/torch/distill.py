"""Recovery by knowledge distillation: the pruned student learns to reproduce the dense
teacher's outputs on unlabelled data.

    history = distill(student, teacher, batches, epochs=3)

`data`: an iterable (or a function returning one, for several epochs over a generator) of
batches, each a tensor, a tuple of tensors (the module's arguments) or a dict of keyword
arguments. Loss: `kl` (the default for class scores and token logits: KL divergence of the
softened distributions, times T²), `mse` (embeddings, dense outputs) or `cosine`. With
`match`, the outputs of named submodules of the student are also pulled towards the same
modules of the teacher (MSE), on the channels the plan kept (`plan`). AdamW with a cosine
schedule, seeded, on the CPU by default; a progress bar on a terminal. Returns the mean
loss of every epoch. The student is trained in place; the teacher is not touched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from graphprune.progress import Progress


def _outputs(out) -> list[torch.Tensor]:
    from graphprune.torch import _flatten

    return _flatten(out)


def _call(module, batch):
    if isinstance(batch, dict):
        return module(**batch)
    if isinstance(batch, torch.Tensor):
        return module(batch)
    return module(*batch)


def output_loss(kind: str, s: torch.Tensor, t: torch.Tensor, temperature: float) -> torch.Tensor:
    if kind == "kl":
        ls = F.log_softmax(s / temperature, dim=-1)
        lt = F.log_softmax(t / temperature, dim=-1)
        return F.kl_div(ls.reshape(-1, s.shape[-1]), lt.reshape(-1, t.shape[-1]), log_target=True,
                        reduction="batchmean") * temperature ** 2
    if kind == "mse":
        return F.mse_loss(s, t)
    if kind == "cosine":
        return (1 - F.cosine_similarity(s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1]), dim=-1)).mean()
    raise ValueError(f"loss must be kl, mse or cosine, not {kind!r}")


def _hooks(module, names, store):
    handles = []
    for name in names:
        sub = module.get_submodule(name)
        handles.append(sub.register_forward_hook(lambda m, i, o, n=name: store.__setitem__(n, _outputs(o)[0])))
    return handles


def _kept_channels(plan, name, teacher) -> tuple[torch.Tensor, int] | None:
    """(indices of the teacher's output channels of module `name` that the student kept,
    the channel axis of its output), or None where nothing was cut."""
    if not plan:
        return None
    axes = plan.get("tensors", {}).get(f"{name}.weight")
    if not axes:
        return None
    sub = teacher.get_submodule(name)
    out_axis = "1" if type(sub).__name__ == "Conv1D" else "0"
    kept = axes.get(out_axis)
    if kept is None:
        return None
    channel = 1 if isinstance(sub, torch.nn.modules.conv._ConvNd) else -1
    return torch.as_tensor(kept, dtype=torch.long), channel


def distill(student, teacher, data, epochs: int = 3, lr: float = 1e-3, loss: str = "kl", temperature: float = 2.0,
            weight_decay: float = 0.0, match: list[str] | None = None, plan: dict | None = None,
            match_weight: float = 1.0, seed: int = 0, quiet: bool = False, device: str = "cpu",
            max_steps: int | None = None) -> list[float]:
    """Train `student` to match `teacher` on `data` (see the module docstring)."""
    torch.manual_seed(seed)
    student.to(device).train()
    teacher.to(device).eval()
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    batches_per_epoch = None
    try:
        batches_per_epoch = len(data)
    except TypeError:
        pass
    total = (batches_per_epoch * epochs) if batches_per_epoch else max_steps
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / max(total or 1, 1), 1.0)))) if total else None
    s_feats, t_feats = {}, {}
    handles = _hooks(student, match or [], s_feats) + _hooks(teacher, match or [], t_feats)
    kept = {n: _kept_channels(plan, n, teacher) for n in match or []}
    history, step = [], 0
    try:
        with Progress("distill", total, quiet, unit="steps") as progress:
            for _ in range(epochs):
                running, count = 0.0, 0
                for batch in (data() if callable(data) else data):
                    batch = _to(batch, device)
                    with torch.no_grad():
                        t_out = _outputs(_call(teacher, batch))
                    s_out = _outputs(_call(student, batch))
                    value = sum(output_loss(loss, s, t, temperature) for s, t in zip(s_out, t_out))
                    for name in match or []:
                        t = t_feats[name]
                        if kept.get(name) is not None:
                            idx, axis = kept[name]
                            t = t.index_select(axis, idx)
                        value = value + match_weight * F.mse_loss(s_feats[name], t)
                    opt.zero_grad()
                    value.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    running += float(value.detach())
                    count += 1
                    step += 1
                    progress.update(1)
                    if max_steps is not None and step >= max_steps:
                        break
                history.append(running / max(count, 1))
                if max_steps is not None and step >= max_steps:
                    break
    finally:
        for h in handles:
            h.remove()
    student.eval()
    return history


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    return tuple(v.to(device) if isinstance(v, torch.Tensor) else v for v in batch)
