"""Latency of models in ONNX Runtime, measured side by side.

Runs alternate between the models so that machine noise hits them alike; medians and
quartiles are reported. `--bench` times three: the original file, the same model only
normalized (what graphprune's normalization alone does to ONNX Runtime: exports that list
initializers as inputs cannot be folded or fused as they are), and the pruned model; the
speed-up credited to pruning is normalized -> pruned. `--bench` pools the runs of three
fresh sets of sessions (`--bench-repeats` runs each): a shared machine's slow spells can
last as long as one set and slow the two models unequally. The number of runs is cut to
fit a time budget, and a long measurement says so on stderr.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from graphprune.runtime import session


BENCH_SETS = 3  # fresh session sets of --bench


def latencies(paths: list[str], feeds: dict[str, np.ndarray], repeats: int = 30, warmup: int = 3,
              threads: int = 0, budget_s: float | None = None, quiet: bool = True, sets: int = 1) -> list[dict]:
    """Per model: median, 25th and 75th percentile seconds per run (interleaved runs),
    pooled over `sets` fresh sets of sessions, `repeats` runs each. On a shared machine a
    small model's sessions can run up to 50% slower for seconds to minutes, the dense and
    the pruned model unequally (seen on 2 cores: 9.4 / 4.3 ms or 6.2 / 3.2 ms for the same
    two files, from one session set to the next), so one set's ratio is a draw."""
    pooled = [[] for _ in paths]
    sets = max(1, sets)
    share = None if budget_s is None else budget_s / sets
    for i in range(sets):
        for t, more in zip(pooled, _interleaved(paths, feeds, repeats, warmup, threads, share, quiet or i > 0)):
            t.extend(more)
    return [{"median": float(np.median(t)), "p25": float(np.percentile(t, 25)), "p75": float(np.percentile(t, 75)),
             "runs": len(t)} for t in pooled]


def _interleaved(paths, feeds, repeats, warmup, threads, budget_s, quiet) -> list[list[float]]:
    """Seconds of each run of each model, from one new set of sessions, runs interleaved."""
    sessions = [session(p, optimize=True, threads=threads, spinning=False) for p in paths]
    first = []
    for s in sessions:
        t0 = time.perf_counter()
        s.run(None, feeds)
        first.append(time.perf_counter() - t0)
    for _ in range(max(warmup - 1, 0)):
        for s in sessions:
            s.run(None, feeds)
    per_round = sum(first)
    if budget_s is not None and per_round * repeats > budget_s:
        repeats = max(5, int(budget_s / max(per_round, 1e-9)))
    if not quiet and per_round * repeats > 5:
        print(f"bench: {repeats} interleaved runs of {len(paths)} models, about {per_round * repeats:.0f} s",
              file=sys.stderr, flush=True)
    times = [[] for _ in sessions]
    for _ in range(repeats):
        for s, t in zip(sessions, times):
            t0 = time.perf_counter()
            s.run(None, feeds)
            t.append(time.perf_counter() - t0)
    return times


def latency_pair(path_a: str, path_b: str, feeds: dict[str, np.ndarray], repeats: int = 30,
                 warmup: int = 3, threads: int = 0) -> tuple[float, float]:
    """Median seconds per run of model a and model b (interleaved)."""
    a, b = latencies([path_a, path_b], feeds, repeats, warmup, threads)
    return a["median"], b["median"]


def normalized_copy(model_path: str, folder: str) -> str:
    """The original model through normalize and cleanup only, written to `folder`."""
    from graphprune.context import Context
    from graphprune.loading import load_model
    from graphprune.pipeline import run_passes
    from graphprune.saving import save_model, uses_external_data

    model = load_model(model_path)
    run_passes(Context(model), ["normalize", "cleanup"])
    path = os.path.join(folder, "normalized.onnx")
    save_model(model, path, external=uses_external_data(model))
    return path


def bench(model_path: str, pruned_path: str, feeds: dict, repeats: int, budget_s: float, quiet: bool,
          threads: int = 0) -> dict:
    """Latency of the original, normalized and pruned models, and per-node times of the
    normalized and pruned ones (graphprune.profile)."""
    import tempfile

    from graphprune.profile import compare, interleaved_node_times

    with tempfile.TemporaryDirectory() as tmp:
        norm = normalized_copy(model_path, tmp)
        orig, normalized, pruned = latencies([model_path, norm, pruned_path], feeds, repeats, budget_s=budget_s,
                                             quiet=quiet, threads=threads, sets=BENCH_SETS)
        runs = max(3, min(10, int(budget_s / max(6 * normalized["median"], 1e-9))))
        nodes = compare(*interleaved_node_times([norm, pruned_path], feeds, runs, threads))
    return {"original": orig, "normalized": normalized, "pruned": pruned, "nodes": nodes,
            "inputs": {k: list(v.shape) for k, v in feeds.items()}}
