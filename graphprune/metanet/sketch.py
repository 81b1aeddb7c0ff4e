"""Very long weight slices, compared through a sign-folding sketch.

The features compare units by the cosines of their weight slices: each unit's to the
group's mean direction (exact, two matrix-vector products) and its largest to another
unit (redundancy), for which slices longer than the features' PROJECT go through a fixed
Gaussian projection, which costs PROJECT random draws and multiply-adds per position.
Where a side of a group is longer than LONG (an LLM's residual stream, whose slices run
through every layer and the vocabulary; a KV group, whose slices span a whole layer's
attention), that would cost minutes and gigabytes. There the sketch takes the slices'
place for both: every position is added, with a random sign, into bucket (position mod
PROJECT). The random signs keep inner products in expectation (the cross
terms have mean zero) at one pass over the slice; a slice no longer than PROJECT only has
its signs flipped, which keeps its cosines exactly. The blocks are sketched one at a time,
so they are never laid side by side in memory. Every network the shipped metanetwork was
trained or evaluated on has shorter sides, so its features do not depend on this path.
"""

from __future__ import annotations

import numpy as np

LONG = 1 << 16  # positions per unit from which a side is sketched
CHUNK_BYTES = 32 << 20  # float32 bytes of one block's columns sketched at a time


class Sketch:
    """The sketch of `n` units' slices, fed block by block (n x length each, in the order
    the slices are laid side by side), with the l1 and squared l2 norm of each whole slice."""

    def __init__(self, n: int, dims: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.dims = dims
        self.sums = np.zeros((n, dims), np.float64)
        self.l1 = np.zeros(n)
        self.sq = np.zeros(n)
        self.length = 0

    def add(self, block: np.ndarray) -> None:
        n, length = block.shape
        step = max(self.dims, CHUNK_BYTES // max(4 * n, 1) // self.dims * self.dims)
        for start in range(0, length, step):
            part = np.asarray(block[:, start:start + step], dtype=np.float32)
            width = part.shape[1]
            self.l1 += np.abs(part).sum(1, dtype=np.float64)
            self.sq += np.einsum("ij,ij->i", part, part, dtype=np.float64)
            sign = self.rng.integers(0, 2, width).astype(np.float32) * 2 - 1
            signed = part * sign
            if width % self.dims:
                signed = np.pad(signed, ((0, 0), (0, self.dims - width % self.dims)))
            self.sums += signed.reshape(n, -1, self.dims).sum(1, dtype=np.float64)
        self.length += length

    def __len__(self) -> int:
        return self.length

    def spread(self, tiny: float) -> np.ndarray:
        """||v||_1 / (sqrt(len) ||v||_2) of each whole slice, as the features' spread."""
        return self.l1 / np.maximum(np.sqrt(self.length * self.sq), tiny)
