"""Sampled convolution patches: the rows a 2-D convolution multiplies its flattened kernel
with (im2col), at a fixed number of output positions per image, for the least-squares
refit of convolution weights. The Gram matrix of [patch, 1] over the calibration data is
accumulated batch by batch, so memory stays at one batch of patches plus (C*kh*kw + 1)^2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from graphprune.shapes import attr_value


@dataclass(frozen=True)
class ConvGeometry:
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]   # top, left, bottom, right
    dilations: tuple[int, int]

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.strides, self.dilations
        t, left, b, r = self.pads
        return (h + t + b - dh * (kh - 1) - 1) // sh + 1, (w + left + r - dw * (kw - 1) - 1) // sw + 1


def conv_geometry(node: ir.Node, weight_shape: tuple[int, ...]) -> ConvGeometry | None:
    """The geometry of a plain 2-D Conv (no groups, explicit or no padding), else None."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(weight_shape) != 4:
        return None

    def attr(name, default):
        return attr_value(node, name, default)

    if int(attr("group", 1)) != 1 or attr("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        return None
    kernel = tuple(int(k) for k in attr("kernel_shape", weight_shape[2:]))
    if kernel != tuple(weight_shape[2:]):
        return None
    pads = tuple(int(p) for p in attr("pads", (0, 0, 0, 0)))
    strides = tuple(int(s) for s in attr("strides", (1, 1)))
    dil = tuple(int(d) for d in attr("dilations", (1, 1)))
    return ConvGeometry(kernel, strides, (pads[0], pads[1], pads[2], pads[3]), dil)


def sample_positions(n: int, out_hw: tuple[int, int], per_image: int, rng: np.random.Generator) -> np.ndarray:
    """(n, min(per_image, positions)) flat output positions, drawn without replacement."""
    k = min(per_image, out_hw[0] * out_hw[1])
    return np.stack([rng.choice(out_hw[0] * out_hw[1], k, replace=False) for _ in range(n)])


def patches_at(x: np.ndarray, geo: ConvGeometry, pos: np.ndarray) -> np.ndarray:
    """(N * k, C * kh * kw) patches of x (N, C, H, W) at the flat output positions pos
    (N, k), flattened in the order of a (O, C, kh, kw) kernel reshaped to (O, C * kh * kw)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilations
    t, left, b, r = geo.pads
    ow = geo.out_size(h, w)[1]
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    img = np.repeat(np.arange(n), pos.shape[1])
    rows = (pos // ow).reshape(-1)[:, None] * sh + np.arange(kh) * dh            # (n*k, kh)
    cols = (pos % ow).reshape(-1)[:, None] * sw + np.arange(kw) * dw             # (n*k, kw)
    p = xp[img[:, None, None, None], np.arange(c)[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
    return p.reshape(n * pos.shape[1], c * kh * kw)


def sample_patches(x: np.ndarray, geo: ConvGeometry, per_image: int, rng: np.random.Generator) -> np.ndarray:
    """Patches of x (N, C, H, W) at min(per_image, positions) random output positions per image."""
    pos = sample_positions(x.shape[0], geo.out_size(*x.shape[2:]), per_image, rng)
    return patches_at(x, geo, pos)


def patch_gram(geo: ConvGeometry, per_image: int, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """A reducer for activations.Request.raw: the Gram matrix of [patch, 1] of one batch.
    Positions are drawn from one generator, so a run over the same data is reproducible."""
    rng = np.random.default_rng(seed)

    def reduce(x: np.ndarray) -> np.ndarray:
        p = sample_patches(np.asarray(x, np.float32), geo, per_image, rng)
        d = p.shape[1]
        g = np.zeros((d + 1, d + 1))
        g[:d, :d] = p.T @ p
        col = p.sum(0, dtype=np.float64)
        g[:d, d] = g[d, :d] = col
        g[d, d] = p.shape[0]
        return g

    return reduce
