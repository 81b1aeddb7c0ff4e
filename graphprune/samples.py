"""Sample files: one array per model input, checked against the model and read on demand.

Used for calibration (--calib), verification (--inputs) and evaluation (--eval). An array
of the input's own rank holds samples along its first axis, run in batches (of the model's
batch size where it is fixed). An array of one more rank holds one complete input per
entry: one run each, for inputs whose batch is not their first axis (a recurrent state
[layers, batch, units]) or that have no batch at all (a sample rate scalar). A file mixes
both: batched arrays then go one sample per run. Every problem (names, dtypes, ranks,
sizes, NaN/Inf, no samples) is refused with a message that names the input.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

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


def npz_arrays(path: str) -> dict[str, np.ndarray]:
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
                out[name] = mmap_member(path, zf, info)
            else:
                with zf.open(info) as f:
                    out[name] = np.lib.format.read_array(f, allow_pickle=False)
    return out


def mmap_member(path, zf, info) -> np.ndarray:
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


def input_spec(inputs) -> dict:
    """name -> (dims, numpy dtype, type string) of the model inputs (as probes.input_meta
    gives them)."""
    from graphprune.runtime import ORT_NUMPY

    return {name: (dims, ORT_NUMPY.get(t), t) for name, dims, t in inputs}


def check_arrays(arrays: dict, want: dict, where: str, whole_batches: bool = True,
                 extra_ok=()) -> tuple[int, set[str]]:
    """Refuse arrays that do not fit the model's inputs (`want`, see input_spec), naming
    the input and why. Returns the number of samples and the names of the per-run arrays
    (one rank more than the input). A fixed-batch model's batched array may hold any
    number of samples (`whole_batches`: run in batches of that size), else exactly the
    batch. Arrays named in `extra_ok` (labels) are allowed alongside."""
    names = set(want)
    extra = sorted(set(arrays) - names - set(extra_ok))
    if extra:
        raise BadInput(f"{where}: array {extra[0]!r} is not a model input (inputs: {', '.join(sorted(names))})")
    missing = sorted(names - set(arrays))
    if missing:
        raise BadInput(f"{where}: no array for model input {missing[0]!r}")
    counts, per_run = set(), set()
    for name in sorted(names):
        arr = arrays[name]
        dims, dtype, tname = want[name]
        if dtype is not None and arr.dtype != dtype:
            raise BadInput(f"{where}: input {name!r} has dtype {arr.dtype}; the model wants {tname}")
        if arr.ndim == len(dims) + 1:
            per_run.add(name)
            sample_dims = list(dims)
        elif arr.ndim == len(dims) and arr.ndim > 0:
            sample_dims = list(dims[1:])
            if not whole_batches and dims and isinstance(dims[0], int) and dims[0] > 0 and arr.shape[0] != dims[0]:
                raise BadInput(f"{where}: input {name!r} has {arr.shape[0]} samples; the model's batch is "
                               f"fixed at {dims[0]}")
        else:
            raise BadInput(f"{where}: input {name!r} has rank {arr.ndim}; the model wants rank {len(dims)} "
                           f"(first axis: samples) or {len(dims) + 1} (one complete input per entry)")
        first = 1
        for axis, (d, got) in enumerate(zip(sample_dims, arr.shape[first:]), start=first):
            if isinstance(d, int) and d > 0 and d != got:
                raise BadInput(f"{where}: input {name!r} has size {got} on axis {axis}; the model wants {d}")
        counts.add(arr.shape[0])
    if len(counts) > 1:
        raise BadInput(f"{where}: inputs have different numbers of samples ({sorted(counts)})")
    n = counts.pop() if counts else 0
    if n == 0:
        raise BadInput(f"{where}: no samples")
    return n, per_run


def check_finite(feeds: Feeds, first: int, where: str) -> None:
    for name, arr in feeds.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            flat = arr.reshape(len(arr), -1) if arr.ndim else arr.reshape(1, 1)
            bad = int(np.argwhere(~np.isfinite(flat).all(axis=1))[0][0])
            raise BadInput(f"{where}: input {name!r} has NaN or Inf in sample {first + bad}")


def fixed_batch(want: dict) -> int | None:
    fixed = {dims[0] for dims, _, _ in want.values() if dims and isinstance(dims[0], int) and dims[0] > 0}
    return min(fixed) if fixed else None


def batches(arrays: dict, per_run: set[str], batch: int, start: int = 0, stop: int | None = None,
            fixed: int | None = None) -> Iterator[tuple[int, Feeds]]:
    """(first sample, feeds) of samples start..stop: `batch` at a time (whole batches of a
    fixed size only), or one run per entry when any array is per-run."""
    n = len(next(iter(arrays.values())))
    stop = n if stop is None else min(stop, n)
    if per_run:
        for i in range(start, stop):
            yield i, {k: (np.asarray(v[i]) if k in per_run else np.ascontiguousarray(v[i:i + 1]))
                      for k, v in arrays.items()}
        return
    if fixed:
        stop -= (stop - start) % fixed
    for s in range(start, stop, batch):
        yield s, {k: np.ascontiguousarray(v[s:min(s + batch, stop)]) for k, v in arrays.items()}


def read_runs(path: str, inputs, rows: slice = slice(None), batch: int = 16,
              extra_ok=()) -> tuple[list[Feeds], dict[str, np.ndarray], int]:
    """Checked runs of an .npz for the model's inputs (the samples in `rows`), the extra
    arrays (labels) for the same rows, and the number of samples they hold."""
    arrays = npz_arrays(path)
    want = input_spec(inputs)
    n, per_run = check_arrays(arrays, want, path, whole_batches=True, extra_ok=extra_ok)
    start, stop, _ = rows.indices(n)
    fixed = fixed_batch(want)
    model_arrays = {k: v for k, v in arrays.items() if k in want}
    runs, used = [], 0
    for first, feeds in batches(model_arrays, per_run, fixed or batch, start, stop, fixed):
        check_finite({k: v for k, v in feeds.items() if k not in per_run}, first, path)
        runs.append(feeds)
        used = first + (1 if per_run else len(next(iter(feeds.values())))) - start
    extras = {k: np.asarray(arrays[k][start:start + used]) for k in extra_ok if k in arrays}
    return runs, extras, used


def sample_count(path: str) -> int:
    """The number of samples in an .npz (the length of its first array)."""
    arrays = npz_arrays(path)
    return len(next(iter(arrays.values()))) if arrays else 0
