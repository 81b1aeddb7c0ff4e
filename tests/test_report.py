"""graphprune/report.py: one row per group (kind, units, pinned, removed, cost, score at
the cut), one line per node that pins whole groups, the summary and group tables, and a
JSON file written atomically."""

from __future__ import annotations

import json
import os

import numpy as np

from graph_kit import N, build, context
from graphprune import report as reporting


def _ctx():
    from graph_kit import w

    proto = build([N("Conv", ["x", "w1"], ["a"]), N("DepthToSpace", ["a"], ["d"], blocksize=1, name="d2s"),
                   N("Conv", ["x", "w3"], ["b"]), N("Relu", ["b"], ["r"]), N("Conv", ["r", "w4"], ["c"]),
                   N("Add", ["d", "c"], ["y"])],
                  {"w1": w(4, 3, 1, 1), "w3": w(6, 3, 1, 1), "w4": w(4, 6, 1, 1)},
                  {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4]})
    return context(proto, passes=("normalize", "l1", "select:ratio=0.5"))


def test_group_rows_and_pins():
    ctx = _ctx()
    rows = reporting.describe_groups(ctx)
    w3 = next(r for r in rows if r["label"] == "w3[0]")
    assert w3["units"] == 6 and w3["removed"] == 3 and w3["pinned_units"] == 0 and w3["kind"] == "channels"
    assert w3["score_removed_max"] <= w3["score_kept_min"]
    assert w3["params_per_unit"] == 3 + 4 and w3["macs_per_unit"] == (3 + 4) * 16
    ctx.report["groups"] = rows
    lines = reporting.pin_summary(ctx)
    assert any(line.startswith("node d2s (op DepthToSpace) pins") for line in lines)


def test_tables_and_json(tmp_path):
    report = {"before": {"params": 2000, "macs": 3e6, "file_bytes": 9000, "latency_ms": 2.0},
              "after": {"params": 1000, "macs": 1.5e6, "file_bytes": 4500, "latency_ms": 1.0},
              "bench": {"batch": 16}, "accuracy": {"before": 0.9, "after": 0.85, "samples": 100},
              "groups": [{"id": 0, "label": "w[0]", "kind": "channels", "units": 8, "pinned_units": 0, "removed": 4,
                          "macs_per_unit": 10.0, "score_removed_max": 0.1, "score_kept_min": 0.2, "pins": []}],
              "compensation": [{"method": "lsq", "consumers": 2}], "array": np.arange(2), "number": np.float32(1.5)}
    table = reporting.summary_table(report)
    assert "2.00x" in table and "latency" in table and "(100 samples)" in table and "3.00M" in table
    groups = reporting.groups_table(report)
    assert "w[0]" in groups and "lsq on 2 consumers" in groups
    path = str(tmp_path / "r.json")
    reporting.write_json(report, path)
    back = json.load(open(path))
    assert back["array"] == [0, 1] and back["number"] == 1.5 and os.listdir(tmp_path) == ["r.json"]
