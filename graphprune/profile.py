"""Per-node times in ONNX Runtime (its profiler), for `--bench`: which nodes pruning made
faster or slower, so a model that did not speed up shows where its time goes.

Each model runs `runs` times with the profiler on (the same session settings as the
latency measurement), the dense and the pruned model in turn; a node's time is the
median of its kernel times over the runs.
Nodes are matched by name between the normalized dense model and the pruned one (pruning
keeps node names; ONNX Runtime's fusions keep the name of the node they start from).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict

import numpy as np

from graphprune.runtime import session


def node_times(path: str, feeds: dict[str, np.ndarray], runs: int = 10, threads: int = 0) -> dict[str, dict]:
    """Node name -> {"op": op type, "ms": median kernel milliseconds per run}."""
    return interleaved_node_times([path], feeds, runs, threads)[0]


def interleaved_node_times(paths: list[str], feeds: dict[str, np.ndarray], runs: int = 10,
                           threads: int = 0) -> list[dict[str, dict]]:
    """node_times of several models, their runs interleaved (one of each in turn), so a
    slow spell of the machine falls on all of them alike, not on whichever ran last."""
    with tempfile.TemporaryDirectory() as tmp:
        sessions = [session(path, optimize=True, threads=threads, spinning=False,
                            profile_prefix=os.path.join(tmp, f"profile{i}")) for i, path in enumerate(paths)]
        for _ in range(runs):
            for sess in sessions:
                sess.run(None, feeds)
        files = [sess.end_profiling() for sess in sessions]
        return [_kernel_times(f) for f in files]


def _kernel_times(profile_file: str) -> dict[str, dict]:
    with open(profile_file, encoding="utf-8") as f:
        events = json.load(f)
    durations: dict[str, list[float]] = defaultdict(list)
    ops: dict[str, str] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        node = name[: -len("_kernel_time")]
        durations[node].append(e.get("dur", 0) / 1e3)
        ops[node] = e.get("args", {}).get("op_name", "?")
    return {n: {"op": ops[n], "ms": float(np.median(d))} for n, d in durations.items()}


def compare(before: dict[str, dict], after: dict[str, dict], top: int = 8) -> dict:
    """Per op type totals, and the `top` nodes whose time changed most (None where a node
    is not in that model)."""
    by_op: dict[str, dict[str, float]] = defaultdict(lambda: {"before_ms": 0.0, "after_ms": 0.0})
    for side, times in (("before_ms", before), ("after_ms", after)):
        for t in times.values():
            by_op[t["op"]][side] += t["ms"]
    nodes = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        nodes.append({"node": name, "op": (b or a)["op"], "before_ms": b["ms"] if b else None,
                      "after_ms": a["ms"] if a else None})
    nodes.sort(key=lambda r: -abs((r["before_ms"] or 0.0) - (r["after_ms"] or 0.0)))
    ordered = dict(sorted(by_op.items(), key=lambda kv: -kv[1]["before_ms"]))
    return {"by_op": ordered, "nodes": nodes[:top], "statistic": "median kernel time per run (ONNX Runtime profiler)"}
