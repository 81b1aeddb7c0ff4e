"""Torch calibration batches as the input dicts graphprune's calibration reads, re-cut to
the example's batch size: prune() exports with the example's shapes, so a model traced on
a batch of 2 takes calibration in batches of 2, whatever size the user's loader yields."""

from __future__ import annotations

import os

import numpy as np
import torch

from graphprune.errors import BadInput
from graphprune.torch.exporting import as_tuple


def _np(v):
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def _as_dict(batch, names: list[str]) -> dict[str, np.ndarray]:
    if isinstance(batch, dict):
        return {k: _np(v) for k, v in batch.items()}
    return {n: _np(v) for n, v in zip(names, as_tuple(batch))}


def rebatch(batches, size: int):
    """Yield dicts of exactly `size` samples from dicts of any sizes (samples kept in
    order; a remainder smaller than `size` at the end is dropped)."""
    pending: list[dict[str, np.ndarray]] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += len(next(iter(batch.values())))
        while held >= size:
            joined = {k: np.concatenate([b[k] for b in pending]) for k in pending[0]}
            yield {k: v[:size] for k, v in joined.items()}
            rest = {k: v[size:] for k, v in joined.items()}
            held -= size
            pending = [rest] if held else []


def calibration(calib, names: list[str], batch: int | None):
    """`calib` (tensors, tuples of tensors in argument order, dicts, a list of them or a
    function returning an iterable of them) as input dicts of `batch` samples each; an .npz
    path passes through. `batch` None: sizes kept."""
    if calib is None or isinstance(calib, (str, os.PathLike)):
        return calib

    def convert(source):
        dicts = (_as_dict(b, names) for b in source)
        return rebatch(dicts, batch) if batch else dicts

    if callable(calib):
        return lambda: convert(calib())
    out = list(convert(list(calib)))
    if not out:
        raise BadInput(f"graphprune.torch: the calibration holds fewer samples than one batch of {batch} "
                         "(the example inputs' batch size)")
    return out
