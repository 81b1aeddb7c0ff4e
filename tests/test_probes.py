"""graphprune/probes.py: random inputs that respect the declared inputs (symbolic batch,
token sequences of 16, indices inside their Gather tables) within a size budget."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto

from graph_kit import N, build, save, w
from graphprune.errors import BadInput
from graphprune.probes import graph_input_meta, index_bounds, probe_inputs


def _token_model(tmp_path):
    proto = build([N("Gather", ["emb", "ids"], ["e"]), N("MatMul", ["e", "w1"], ["y"])],
                  {"emb": w(30, 4), "w1": w(4, 2)}, {"ids": (["batch", "seq"], TensorProto.INT64)},
                  {"y": ["batch", "seq", 2]})
    return save(proto, tmp_path)


def test_probes_respect_the_declared_inputs(tmp_path):
    path = _token_model(tmp_path)
    meta = graph_input_meta(ir.load(path))
    assert meta == [("ids", ["batch", "seq"], "tensor(int64)")]
    assert index_bounds(path) == {"ids": 30}
    feeds = probe_inputs(meta, batch=3, bounds=index_bounds(path))
    assert feeds["ids"].shape == (3, 16) and feeds["ids"].dtype == np.int64 and feeds["ids"].max() < 10
    images = probe_inputs([("x", ["n", 3, 8, 8], "tensor(float)"), ("m", [1, "s"], "tensor(bool)")])
    assert images["x"].shape == (2, 3, 8, 8) and images["m"].shape == (1, 1)


def test_probe_budget_and_unknown_types_are_refused():
    with pytest.raises(BadInput, match="too large for probe inputs"):
        probe_inputs([("x", [1 << 16, 1 << 16], "tensor(float)")])
    with pytest.raises(BadInput, match="which probes cannot fill"):
        probe_inputs([("s", [1], "tensor(string)")])
