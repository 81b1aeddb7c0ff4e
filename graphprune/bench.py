"""Latency of two models in ONNX Runtime, measured side by side.

Runs alternate between the two models so that machine noise hits both alike; the
medians are reported.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from graphprune.runtime import session


def latency_pair(path_a: str, path_b: str, feeds: dict[str, np.ndarray], repeats: int = 30,
                 warmup: int = 3, threads: int = 0) -> tuple[float, float]:
    """Median seconds per run of model a and model b (interleaved)."""
    sa = session(path_a, optimize=True, threads=threads, spinning=False)
    sb = session(path_b, optimize=True, threads=threads, spinning=False)
    for _ in range(warmup):
        sa.run(None, feeds)
        sb.run(None, feeds)
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sa.run(None, feeds)
        t1 = time.perf_counter()
        sb.run(None, feeds)
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return statistics.median(ta), statistics.median(tb)
