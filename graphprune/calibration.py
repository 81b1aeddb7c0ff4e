"""Calibration data: batches of model inputs, checked against the model, streamed.

Sources: an `.npz` file with one array per model input (first axis = samples), or, from
Python, an iterable of input dicts (each a batch: arrays with a leading sample axis) or a
function returning such an iterable (needed when the data is read more than once, e.g.
statistics before pruning and BatchNorm re-estimation after). Arrays of an uncompressed
`.npz` are read batch by batch, so a large calibration file is never held in memory.
Every problem (names, dtypes, shapes, NaN/Inf, no samples) is refused with a message
that names the input and says why.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from graphprune.errors import BadInput

Feeds = dict[str, np.ndarray]


class StoredArray:
    """An uncompressed .npz member read on demand: slicing samples reads just those bytes
    from the file (no mapping stays resident, so memory does not grow with the file)."""

    def __init__(self, path: str, offset: int, dtype: np.dtype, shape: tuple, fortran: bool):
        self.path, self.offset, self.dtype, self.shape = path, offset, dtype, tuple(shape)
        self.ndim = len(self.shape)
        self._row = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        if fortran and self.ndim > 1:
            raise BadInput(f"{path}: Fortran-ordered arrays are not read; save C-ordered arrays")

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, int):
            return self[key:key + 1][0]
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise IndexError("only contiguous sample ranges are read")
        n = max(stop - start, 0)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self._row)
            data = np.fromfile(f, dtype=self.dtype, count=n * self._row // max(self.dtype.itemsize, 1))
        return data.reshape((n, *self.shape[1:]))


def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    """name -> array; stored (uncompressed) members are read on demand (StoredArray)."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise BadInput(f"{path}: not a readable .npz file ({e})") from None
    out = {}
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            if info.compress_type == zipfile.ZIP_STORED:
                out[name] = _mmap_member(path, zf, info)
            else:
                with zf.open(info) as f:
                    out[name] = np.lib.format.read_array(f, allow_pickle=False)
    return out


def _mmap_member(path, zf, info) -> np.ndarray:
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        header = f.tell()
    if dtype.hasobject:
        raise BadInput(f"{path}: array {info.filename[:-4]!r} holds Python objects, which are not read")
    # The member's data starts after its local file header (30 bytes + name + extra).
    with open(path, "rb") as raw:
        raw.seek(info.header_offset + 26)
        n, m = np.frombuffer(raw.read(4), dtype="<u2")
    start = info.header_offset + 30 + int(n) + int(m) + header
    return StoredArray(path, start, dtype, shape, fortran)


class Calibration:
    """Validated calibration batches for a model whose inputs are `inputs`
    ([(name, dims, onnx type string)], as `probes.input_meta` gives them)."""

    def __init__(self, source, inputs, batch: int = 32, limit: int | None = None, quiet: bool = False,
                 mask: str | None = None):
        from graphprune.runtime import ORT_NUMPY

        self.inputs = inputs
        self.batch = max(int(batch), 1)
        fixed = {dims[0] for _, dims, _ in inputs if dims and isinstance(dims[0], int) and dims[0] > 0}
        self.fixed_batch = min(fixed) if fixed else None
        if self.fixed_batch:  # a model with a fixed batch size runs batches of exactly that size
            self.batch = self.fixed_batch
        self.limit = limit
        self.quiet = quiet
        self.source = source if isinstance(source, str) else "python"
        self.want = {name: (dims, ORT_NUMPY.get(t), t) for name, dims, t in inputs}
        if mask is not None and mask not in self.want:
            raise BadInput(f"--calib-mask: {mask!r} is not a model input (inputs: {', '.join(sorted(self.want))})")
        self.mask = mask  # an input whose zeros mark padding positions, left out of statistics
        self.unmasked: set[str] = set()  # tensors whose positions the mask does not line up with
        self._arrays: dict[str, np.ndarray] | None = None
        self._factory: Callable[[], Iterable[Feeds]] | None = None
        self._consumed = False
        self._iterator = None
        if isinstance(source, (str, os.PathLike)):
            self._arrays = _npz_arrays(str(source))
            self._check_arrays(self._arrays)
            self.n_samples = min(len(next(iter(self._arrays.values()))), limit or sys.maxsize)
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

    # -- checks ------------------------------------------------------------------------
    def _check_arrays(self, arrays: dict[str, np.ndarray], where: str = "calibration data") -> int:
        names = set(self.want)
        extra = sorted(set(arrays) - names)
        if extra:
            raise BadInput(f"{where}: array {extra[0]!r} is not a model input (inputs: {', '.join(sorted(names))})")
        missing = sorted(names - set(arrays))
        if missing:
            raise BadInput(f"{where}: no array for model input {missing[0]!r}")
        counts = set()
        for name, arr in arrays.items():
            dims, dtype, tname = self.want[name]
            if dtype is not None and arr.dtype != dtype:
                raise BadInput(f"{where}: input {name!r} has dtype {arr.dtype}; the model wants {tname}")
            if arr.ndim != len(dims) or arr.ndim == 0:
                raise BadInput(f"{where}: input {name!r} has rank {arr.ndim}; the model wants rank {len(dims)} "
                               "(first axis: samples)")
            if where != "calibration data" and dims and isinstance(dims[0], int) and dims[0] > 0 \
                    and arr.shape[0] != dims[0]:
                raise BadInput(f"{where}: input {name!r} has {arr.shape[0]} samples; the model's batch is fixed at {dims[0]}")
            for axis, (d, got) in enumerate(zip(dims[1:], arr.shape[1:]), start=1):
                if isinstance(d, int) and d > 0 and d != got:
                    raise BadInput(f"{where}: input {name!r} has size {got} on axis {axis}; the model wants {d}")
            counts.add(arr.shape[0])
        if len(counts) > 1:
            raise BadInput(f"{where}: inputs have different numbers of samples ({sorted(counts)})")
        n = counts.pop() if counts else 0
        if n == 0:
            raise BadInput(f"{where}: no samples")
        return n

    def _check_finite(self, feeds: Feeds, first: int) -> None:
        for name, arr in feeds.items():
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad = int(np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))[0][0])
                raise BadInput(f"calibration data: input {name!r} has NaN or Inf in sample {first + bad}")

    # -- streaming ---------------------------------------------------------------------
    def batches(self) -> Iterator[Feeds]:
        """Checked batches, in order; the first `limit` samples."""
        seen = 0
        for feeds in self._raw_batches():
            if self.limit is not None and seen >= self.limit:
                break
            if self.limit is not None:
                feeds = {k: v[:self.limit - seen] for k, v in feeds.items()}
            self._check_finite(feeds, seen)
            seen += len(next(iter(feeds.values())))
            yield feeds
        if seen == 0:
            raise BadInput("calibration data: no samples")
        self.n_samples = seen

    def _raw_batches(self) -> Iterator[Feeds]:
        if self._arrays is not None:
            n = len(next(iter(self._arrays.values())))
            if self.fixed_batch:  # whole batches only: a fixed-batch model cannot run a short one
                n -= n % self.fixed_batch
            for s in range(0, n, self.batch):
                yield {k: np.ascontiguousarray(v[s:s + self.batch]) for k, v in self._arrays.items()}
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
            self._check_arrays(feeds, f"calibration batch {i}")
            for k in sorted(feeds):
                h.update(np.ascontiguousarray(feeds[k]).tobytes())
            yield feeds
        self.digest = h.hexdigest()

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
        if self.mask:
            out["mask"] = self.mask
            out["unmasked_tensors"] = sorted(self.unmasked)
        return out


def first_samples(path: str, n: int) -> dict[str, np.ndarray]:
    """The first n samples of a calibration .npz (already checked by Calibration), for
    verification on real inputs; only those rows are read."""
    return {k: np.ascontiguousarray(v[:n]) for k, v in _npz_arrays(path).items()}


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
