"""The shape of a dimension-flow rule and helpers shared by the rule modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rule:
    """How one op type couples axes, and how the remove pass rewrites it.

    `couple(node, b)` records ties/pins through the FlowBuilder `b`.
    `rewrite(node, edit)` updates attributes and shape-carrying constant inputs after the
    units chosen for removal are known (sliced weights are handled generically).
    """

    couple: Callable
    rewrite: Callable | None = None


def identity_all(b, x, y) -> None:
    """Tie every axis of x to the same axis of y (shapes must agree)."""
    rx, ry = b.rank(x), b.rank(y)
    if rx is None or rx != ry:
        return
    for axis in range(rx):
        b.tie(x, axis, y, axis)


def carry_all(b, value) -> None:
    """Mention every axis of a value the op reads without coupling it (masks, lengths,
    position ids, rotary tables); nothing for an absent optional input."""
    if value is not None:
        for axis in range(b.rank(value) or 0):
            b.carry(value, axis)


def broadcast(b, inputs, out) -> None:
    """Numpy-style broadcasting: an input axis equal to the output's is the same axis;
    a size-1 input axis is broadcast and not coupled."""
    ro = b.rank(out)
    so = b.shape(out)
    if ro is None:
        return
    for x in inputs:
        sx = b.shape(x)
        if sx is None:
            continue
        shift = ro - len(sx)
        if shift < 0:
            continue
        for axis, d in enumerate(sx):
            od = so[axis + shift]
            if d == 1 and od != 1:
                b.carry(x, axis)
            elif d == od and d is not None:
                b.tie(x, axis, out, axis + shift)
    for axis in range(ro):
        b.carry(out, axis)


def block_map(outer: int, inner: int) -> tuple[np.ndarray, np.ndarray]:
    """Position p of a flat axis of size outer*inner is unit p // inner of the outer axis."""
    flat = np.arange(outer * inner)
    return flat // inner, flat
