"""graphprune/samples.py: sample files checked against the model (names, dtypes, ranks,
sizes, NaN, counts) and cut into runs: batches along the first axis (whole batches of a
fixed size), or one complete input per entry for arrays of one rank more (a state whose
batch is its second axis, a scalar)."""

from __future__ import annotations

import numpy as np
import pytest

from graphprune.errors import BadInput
from graphprune.samples import batches, check_arrays, input_spec, read_runs, sample_count

META = [("x", ["n", 4], "tensor(float)"), ("state", [2, "n", 3], "tensor(float)"), ("sr", [], "tensor(int64)")]


def test_batched_and_per_run_arrays():
    want = input_spec(META)
    arrays = {"x": np.zeros((5, 1, 4), np.float32), "state": np.zeros((5, 2, 1, 3), np.float32),
              "sr": np.full(5, 16000, np.int64)}
    n, per_run = check_arrays(arrays, want, "f")
    assert n == 5 and per_run == {"x", "state", "sr"}
    runs = [f for _, f in batches(arrays, per_run, 16)]
    assert len(runs) == 5 and runs[0]["state"].shape == (2, 1, 3) and runs[0]["sr"].shape == ()
    plain = {"x": np.zeros((10, 4), np.float32)}
    got = [f["x"].shape[0] for _, f in batches(plain, set(), 4)]
    assert got == [4, 4, 2]
    assert [f["x"].shape[0] for _, f in batches(plain, set(), 4, fixed=4)] == [4, 4]


@pytest.mark.parametrize("arrays,needle", [
    ({"x": np.zeros((3, 4), np.float64)}, "dtype float64"),
    ({"x": np.zeros((3, 5), np.float32)}, "size 5 on axis 1"),
    ({"x": np.zeros(3, np.float32)}, "rank 1"),
    ({"x": np.zeros((3, 4), np.float32), "y": np.zeros(3)}, "'y' is not a model input"),
    ({}, "no array for model input 'x'"),
    ({"x": np.zeros((0, 4), np.float32)}, "no samples"),
])
def test_refusals(arrays, needle):
    with pytest.raises(BadInput, match=needle):
        check_arrays(arrays, input_spec(META[:1]), "f")


def test_read_runs_checks_and_slices(tmp_path):
    path = str(tmp_path / "d.npz")
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.savez(path, x=x, labels=np.arange(10))
    runs, extras, n = read_runs(path, META[:1], slice(-3, None), batch=2, extra_ok=("labels",))
    assert n == 3 and [r["x"].shape[0] for r in runs] == [2, 1] and list(extras["labels"]) == [7, 8, 9]
    np.testing.assert_array_equal(np.concatenate([r["x"] for r in runs]), x[-3:])
    assert sample_count(path) == 10
    x[4, 1] = np.nan
    np.savez(path, x=x)
    with pytest.raises(BadInput, match="NaN or Inf in sample 4"):
        read_runs(path, META[:1])
