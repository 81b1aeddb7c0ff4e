"""Calibration data: batches of model inputs, checked against the model, streamed.

Sources: an `.npz` file with one array per model input (graphprune.samples: samples along
the first axis, or one complete input per entry), or, from Python, an iterable of input
dicts (each a batch) or a function returning such an iterable (needed when the data is
read more than once, e.g. statistics before pruning and a refit after). Arrays of an
uncompressed `.npz` are read batch by batch, so a large calibration file is never held in
memory. Every problem (names, dtypes, shapes, NaN/Inf, no samples) is refused with a
message that names the input and says why.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from graphprune.errors import BadInput
from graphprune.samples import batches, check_arrays, check_finite, fixed_batch, input_spec, npz_arrays

Feeds = dict[str, np.ndarray]


class Calibration:
    """Validated calibration batches for a model whose inputs are `inputs`
    ([(name, dims, onnx type string)], as `probes.input_meta` gives them)."""

    def __init__(self, source, inputs, batch: int = 32, limit: int | None = None, quiet: bool = False,
                 mask: str | None = None, holdout: int = 0):
        self.inputs = inputs
        self.batch = max(int(batch), 1)
        self.want = input_spec(inputs)
        self.fixed_batch = fixed_batch(self.want)
        self.batch_free = False  # see free_batch_if_safe
        self.ray: str | None = None  # a Ray address: statistics sharded over its workers (graphprune.cluster)
        self.ray_shards: int | None = None
        self.requested_batch = self.batch
        if self.fixed_batch:  # a model with a fixed batch size runs batches of exactly that size
            self.batch = self.fixed_batch
        self.limit = limit
        self.quiet = quiet
        self.source = source if isinstance(source, str) else "python"
        if mask is not None and mask not in self.want:
            raise BadInput(f"--calib-mask: {mask!r} is not a model input (inputs: {', '.join(sorted(self.want))})")
        self.mask = mask  # an input whose zeros mark padding positions, left out of statistics
        self.unmasked: set[str] = set()  # tensors whose positions the mask does not line up with
        self._arrays: dict[str, np.ndarray] | None = None
        self._per_run: set[str] = set()
        self._factory: Callable[[], Iterable[Feeds]] | None = None
        self._consumed = False
        self._iterator = None
        # An .npz's last `holdout` samples are kept for verification, out of calibration.
        self.holdout = holdout if isinstance(source, (str, os.PathLike)) else 0
        if isinstance(source, (str, os.PathLike)):
            self._arrays = npz_arrays(str(source))
            _, self._per_run = check_arrays(self._arrays, self.want, "calibration data")
            self.n_samples = min(len(next(iter(self._arrays.values()))) - self.holdout, limit or sys.maxsize)
            self.digest = _file_digest(str(source))
        elif callable(source):
            self._factory = source
            self.n_samples, self.digest = None, None
        elif isinstance(source, Iterable):
            self._factory = (lambda s=source: s) if not isinstance(source, Iterator) else None
            self._iterator = source if isinstance(source, Iterator) else None
            self.n_samples, self.digest = None, None
        else:
            raise BadInput("calibration data must be an .npz path or an iterable of input dicts")

    # -- streaming ---------------------------------------------------------------------
    def batches(self) -> Iterator[Feeds]:
        """Checked batches, in order; the first `limit` samples (for a model with a fixed
        batch size, the whole batches within them, at least one)."""
        seen = 0
        for feeds in self._raw_batches():
            if self.limit is not None and seen >= self.limit:
                break
            if self.limit is not None and not self._per_run:
                if not self.fixed_batch:
                    feeds = {k: v[:self.limit - seen] for k, v in feeds.items()}
                elif seen and seen + len(next(iter(feeds.values()))) > self.limit:
                    break  # a model with a fixed batch runs whole batches only: the limit, rounded down
            check_finite({k: v for k, v in feeds.items() if k not in self._per_run}, seen, "calibration data")
            seen += 1 if self._per_run else len(next(iter(feeds.values())))
            yield feeds
        if seen == 0:
            raise BadInput("calibration data: no samples")
        self.n_samples = seen

    def _raw_batches(self) -> Iterator[Feeds]:
        if self._arrays is not None:
            n = len(next(iter(self._arrays.values()))) - self.holdout
            for _, feeds in batches(self._arrays, self._per_run, self.batch, 0, n, self.fixed_batch):
                yield feeds
            return
        if self._factory is not None:
            source = self._factory()
        elif not self._consumed:
            source, self._consumed = self._iterator, True
        else:
            raise BadInput("calibration iterator was already used up; pass a list or a function "
                           "that returns a fresh iterable")
        h = hashlib.sha256()
        for i, feeds in enumerate(source):
            if not isinstance(feeds, dict):
                raise BadInput(f"calibration batch {i} is a {type(feeds).__name__}, not a dict of arrays")
            feeds = {k: np.asarray(v) for k, v in feeds.items()}
            check_arrays(feeds, self.want, f"calibration batch {i}", whole_batches=False)
            for k in sorted(feeds):
                h.update(np.ascontiguousarray(feeds[k]).tobytes())
            yield feeds
        self.digest = h.hexdigest()

    def free_batch_if_safe(self, model) -> bool:
        """A model exported with a fixed batch of 1 would take its calibration one sample
        at a time (3x slower than batches). Where a copy of it with a free batch computes
        the same on the first samples (runtime.batch_frees), sessions use that copy and
        batches of the requested size; `session` checks each model it is asked for again
        (normalization can fold the batch into a shape constant)."""
        from graphprune.runtime import batch_frees

        if self.fixed_batch != 1 or self._arrays is None or self._per_run:
            return False
        self._samples = [feeds for _, feeds in zip(range(2), self._raw_batches())]
        self._frees: dict = {}
        if batch_frees(model, self._samples):
            self.batch_free, self.fixed_batch, self.batch = True, None, self.requested_batch
        return self.batch_free

    def session(self, model, outputs=(), who: str = "calibration", optimize: bool = False):
        """(ONNX Runtime session exposing `outputs`, the calibration to run it on): with a
        freed batch where this model still computes the same with it, else one sample at a
        time."""
        from graphprune.runtime import model_session

        free, calib = self.batch_mode(model)
        sess = model_session(model, outputs, who, optimize, batch_free=free)
        adapted = any("kept" in v.meta or "source" in v.meta for v in model.graph.inputs)
        return (_AdaptedFeeds(sess, model) if adapted else sess), calib

    def batch_mode(self, model) -> tuple[bool, "Calibration"]:
        """(whether sessions of `model` take the freed batch, the calibration to run them on)."""
        from graphprune.runtime import batch_frees

        if not self.batch_free:
            return False, self
        key = (id(model), tuple((n.op_type, n.outputs[0].name if n.outputs else None) for n in model.graph))
        if key not in self._frees:
            self._frees[key] = batch_frees(model, self._samples)
        if self._frees[key]:
            return True, self
        import copy

        single = copy.copy(self)
        single.batch_free, single.fixed_batch, single.batch = False, 1, 1
        return False, single

    def keep(self, feeds: Feeds) -> np.ndarray | None:
        """The positions of a batch that count (the --calib-mask input is non-zero), or None
        without a mask."""
        return np.asarray(feeds[self.mask]) != 0 if self.mask and self.mask in feeds else None

    def limited(self, n: int | None) -> Calibration:
        """The same data, only its first n samples (None: all)."""
        import copy

        if n is None:
            return self
        view = copy.copy(self)
        view.limit = min(n, self.limit) if self.limit is not None else n
        if view.n_samples is not None:
            view.n_samples = min(view.n_samples, n)
        return view

    def describe(self) -> dict:
        out = {"source": self.source, "samples": self.n_samples, "sha256": self.digest, "batch": self.batch}
        if self.holdout:
            out["held_out_for_verification"] = self.holdout
        if self.batch_free:
            out["batch_freed"] = "the model's fixed batch of 1 was freed for calibration runs"
        if self.mask:
            out["mask"] = self.mask
            out["unmasked_tensors"] = sorted(self.unmasked)
        return out


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _AdaptedFeeds:
    """A session of a pruned model whose KV-cache inputs lost heads or were renamed (the
    passes mark them: `kept` positions, `source` name): the calibration's batches, shaped
    and named for the dense model, are adapted on the way in, as verification adapts its
    runs (verify.Interface)."""

    def __init__(self, sess, model):
        from graphprune.verify import Interface

        self._sess = sess
        self._names = [v.name for v in model.graph.inputs]
        sources = {v.name: v.meta.get("source", v.name) for v in model.graph.inputs}
        self._interface = Interface({sources[v.name]: v.meta["kept"] for v in model.graph.inputs if "kept" in v.meta},
                                    {n: s for n, s in sources.items() if n != s})

    def __getattr__(self, name):
        return getattr(self._sess, name)

    def run(self, outputs, feeds, *args):
        return self._sess.run(outputs, self._interface.runs([feeds], self._names)[0], *args)
