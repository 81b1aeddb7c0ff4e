"""Activation statistics from ONNX Runtime: the tensors the chosen passes need are added
as model outputs, the calibration data runs through in batches, and per-channel
statistics are accumulated in a streaming, numerically stable way.

Per channel: count, mean, variance (Chan et al.'s pairwise merge of batch means and
squared deviations, in float64: no running sums of squares to cancel), mean |x| and sum
of squares (the L2 norm). Optionally the Gram matrix X^T X (with a constant column, so a
least-squares refit can include the bias) for tensors with few enough channels. Memory is
one batch of activations plus O(channels) (O(channels^2) for a Gram) per tensor, whatever
the number of samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from graphprune.calibration import Calibration
from graphprune.errors import BadInput, first_line
from graphprune.progress import Progress


@dataclass
class ChannelStats:
    count: float = 0.0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    abs_sum: np.ndarray | None = None
    sq_sum: np.ndarray | None = None
    gram: np.ndarray | None = None  # (C + 1, C + 1) of [x, 1]
    extra: dict = field(default_factory=dict)  # custom reducers' running sums

    @property
    def var(self) -> np.ndarray:
        return self.m2 / max(self.count, 1.0)

    @property
    def mean_abs(self) -> np.ndarray:
        return self.abs_sum / max(self.count, 1.0)

    @property
    def l2(self) -> np.ndarray:
        return np.sqrt(self.sq_sum)

    def add(self, rows: np.ndarray, gram: bool, chunk: int = 8192) -> None:
        """Merge a batch given as (positions, channels), float32 or float64. Work goes in
        chunks of rows, so temporaries stay small whatever the batch."""
        n = float(rows.shape[0])
        if n == 0:
            return
        mean_b = rows.mean(0, dtype=np.float64)
        c = rows.shape[1]
        m2_b, abs_b, sq_b = np.zeros(c), np.zeros(c), np.zeros(c)
        g = np.zeros((c + 1, c + 1)) if gram else None
        for s in range(0, rows.shape[0], chunk):
            block = rows[s:s + chunk].astype(np.float64)
            d = block - mean_b
            m2_b += (d * d).sum(0)
            abs_b += np.abs(block).sum(0)
            sq_b += (block * block).sum(0)
            if gram:  # products in float32 BLAS (2x faster on wide layers), sums in float64
                x32 = rows[s:s + chunk].astype(np.float32, copy=False)
                g[:c, :c] += x32.T @ x32
                col = block.sum(0)
                g[:c, c] += col
                g[c, :c] += col
                g[c, c] += block.shape[0]
        self.merge(ChannelStats(n, mean_b, m2_b, abs_b, sq_b, g))

    def merge(self, other: "ChannelStats") -> None:
        """Add the statistics of other samples (Chan et al.'s pairwise merge; a shard's
        statistics merge as a batch's do)."""
        if other.mean is None:
            return
        if self.mean is None:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            self.abs_sum, self.sq_sum = other.abs_sum, other.sq_sum
        else:
            total = self.count + other.count
            delta = other.mean - self.mean
            self.mean = self.mean + delta * (other.count / total)
            self.m2 = self.m2 + other.m2 + delta * delta * (self.count * other.count / total)
            self.count = total
            self.abs_sum = self.abs_sum + other.abs_sum
            self.sq_sum = self.sq_sum + other.sq_sum
        if other.gram is not None:
            self.gram = other.gram if self.gram is None else self.gram + other.gram
        for key, val in other.extra.items():
            prev = self.extra.get(key)
            self.extra[key] = val if prev is None else prev + val


@dataclass
class Request:
    """A tensor to watch: its channel axis, whether to keep a Gram matrix, and custom
    reducers `name -> f(rows) -> array` whose results are summed over batches (`raw` ones
    get the batch's tensor as it is, e.g. to sample convolution patches)."""

    channel_axis: int
    gram: bool = False
    reducers: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)
    raw: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)


def collect(model: ir.Model, requests: dict[str, Request], calib: Calibration,
            quiet: bool = False) -> dict[str, ChannelStats]:
    """Run the calibration data and return the statistics of every requested tensor
    (`quiet`: no progress bar, for callers that show their own)."""
    names = sorted(requests)
    if not names:
        return {}
    graph_inputs = {v.name for v in model.graph.inputs}
    computed = [n for n in names if n not in graph_inputs]  # model inputs come from the feeds
    if calib.ray:
        from graphprune.cluster import collect_sharded

        return collect_sharded(model, requests, calib, computed, quiet)
    sess, calib = calib.session(model, computed)
    stats = {name: ChannelStats() for name in names}
    progress = Progress("calibration", calib.n_samples, calib.quiet or quiet)
    try:
        for feeds in calib.batches():
            try:
                outs = dict(zip(computed, sess.run(computed, feeds))) if computed else {}
            except Exception as e:  # noqa: BLE001 - ORT raises several types
                raise BadInput(f"calibration: ONNX Runtime cannot run the model on the calibration "
                               f"data ({first_line(e)})") from None
            accumulate(stats, requests, outs, feeds, calib.keep(feeds), calib.unmasked)
            progress.update(len(next(iter(feeds.values()))))
    finally:
        progress.close()
    return stats


def accumulate(stats: dict[str, ChannelStats], requests: dict[str, Request], outs: dict, feeds: dict,
               keep: np.ndarray | None, unmasked: set) -> None:
    """Add one batch (`outs`: the computed tensors; graph inputs come from `feeds`)."""
    for name in stats:
        arr = outs[name] if name in outs else feeds[name]
        req = requests[name]
        rows = np.moveaxis(np.asarray(arr), req.channel_axis, -1)
        if keep is not None and rows.shape[:-1] == keep.shape:
            rows = rows[keep]  # padding positions (mask 0) stay out of the statistics
        else:
            if keep is not None:  # another layout: no safe way to line the mask up
                unmasked.add(name)
            rows = rows.reshape(-1, rows.shape[-1])
        stats[name].add(rows, req.gram)
        sums = {key: fn(rows.astype(np.float64)) for key, fn in req.reducers.items()}
        sums.update({key: fn(np.asarray(arr)) for key, fn in req.raw.items()})
        for key, val in sums.items():
            prev = stats[name].extra.get(key)
            stats[name].extra[key] = val if prev is None else prev + val
