"""Edits decided on the dense model and applied by `remove`.

Passes of kind `compensate` (bias, lsq and scale compensation) must see the dense model,
and the plan, to decide what to change; if they changed the graph at once, every later
pass would see a half-refit model as "dense" (statistics restored to the wrong targets).
So they record their edits here, in dense coordinates, and `remove` applies them:

- `weights`: an initializer's complete new value, still at its dense size; written
  before slicing, so the removed positions are cut from the new value like any other.
- `biases`: a delta per output channel of a dense consumer (`BiasUpdate`), cut to the
  output channels that stay, then added to the consumer's bias after slicing (a bias is
  created where the consumer has none).

Nothing else is deferred: passes that need the pruned model (refit, restore-stats) are
of kind `repair` and run after `remove` as ordinary passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from graphprune import bias
from graphprune.initializers import c_order, set_data


@dataclass
class PendingEdits:
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    biases: list[bias.BiasUpdate] = field(default_factory=list)

    def set_weight(self, value: ir.Value, array: np.ndarray) -> None:
        """Record `value`'s new data (dense shape, same dtype)."""
        old = value.const_value
        if old is None or tuple(old.shape) != tuple(array.shape):
            raise ValueError(f"pending weight for {value.name!r} must keep its dense shape")
        self.weights[value.name] = c_order(array.astype(old.dtype.numpy()))

    def add_bias(self, node: ir.Node, delta: np.ndarray, out_key: tuple[str, int]) -> None:
        self.biases.append(bias.BiasUpdate(node, np.asarray(delta, dtype=np.float64), out_key))

    def __bool__(self) -> bool:
        return bool(self.weights or self.biases)

    def write_weights(self, model: ir.Model) -> int:
        """Before slicing: the new dense values replace the old ones."""
        inits = model.graph.initializers
        for name, arr in self.weights.items():
            set_data(inits[name], arr)
        return len(self.weights)

    def add_biases(self, model: ir.Model, kept: dict) -> int:
        """After slicing: each delta, cut to the kept output channels, joins its bias."""
        return bias.apply(model, self.biases, kept)
