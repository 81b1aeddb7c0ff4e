"""graphprune/activations.py: per-channel statistics merged batch by batch equal the
full-batch ones (Chan's merge, in float64), the Gram matrix of [x, 1], custom reducers
summed over batches, and raw reducers that see the batch as it is."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graph_kit import N, build, w
from graphprune.activations import ChannelStats, Request, collect
from graphprune.calibration import Calibration
from graphprune.probes import graph_input_meta
from graphprune.shapes import infer_exact_shapes


def test_merged_batches_equal_the_full_batch():
    r = np.random.default_rng(0)
    rows = r.standard_normal((1000, 5)) * 3 + 100
    st = ChannelStats()
    for s in range(0, 1000, 77):
        st.add(rows[s:s + 77].astype(np.float32), gram=True, chunk=20)
    x = rows.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(st.mean, x.mean(0), rtol=1e-10)
    np.testing.assert_allclose(st.var, x.var(0), rtol=1e-8)
    np.testing.assert_allclose(st.mean_abs, np.abs(x).mean(0), rtol=1e-10)
    np.testing.assert_allclose(st.l2, np.sqrt((x * x).sum(0)), rtol=1e-10)
    ones = np.hstack([x, np.ones((1000, 1))])
    np.testing.assert_allclose(st.gram, ones.T @ ones, rtol=1e-5)
    assert st.count == 1000


def test_collect_watches_tensors_with_reducers():
    m = ir.from_proto(build([N("MatMul", ["x", "w1"], ["h"]), N("Relu", ["h"], ["y"])], {"w1": w(3, 4)},
                            {"x": ["n", 3]}, {"y": ["n", 4]}))
    infer_exact_shapes(m)
    x = np.random.default_rng(1).standard_normal((50, 3)).astype(np.float32)
    calib = Calibration([{"x": x[:20]}, {"x": x[20:]}], graph_input_meta(m), quiet=True)
    req = Request(1, reducers={"count": lambda rows: np.array([len(rows)])},
                  raw={"shape0": lambda arr: np.array([arr.shape[0]])})
    stats = collect(m, {"h": req, "x": Request(1)}, calib)
    h = x @ m.graph.initializers["w1"].const_value.numpy()
    np.testing.assert_allclose(stats["h"].mean, h.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["x"].var, x.astype(np.float64).var(0), rtol=1e-6)
    assert stats["h"].extra["count"][0] == 50 and stats["h"].extra["shape0"][0] == 50
    assert [o.name for o in m.graph.outputs] == ["y"]  # the model is left as it was
