"""What the command line prints of a report: the executed pipeline, the size table, what
verification measured (per output, on how many samples from where), the task metric,
hints that are true for this run, and the pins (all of them, or a count of the rest)."""

from __future__ import annotations

from typing import Any

from graphprune import report as reporting

PIN_LINES = 8


def verification_lines(v: dict[str, Any]) -> list[str]:
    if not v:
        return []
    if v.get("numeric") == "skipped":
        return ["checked: the ONNX checker passed (numeric verification skipped)"]
    lines = [f"verified: checker passed, ONNX Runtime ran, output shapes kept; compared on {v['samples']} "
             f"{v['inputs']}:"]
    lines += [f"  {s}" for s in v.get("summary", [])]
    metric = v.get("metric")
    if metric:
        key = next(iter(metric["before"]))
        lines.append(f"  task metric {key}: {metric['before'][key]:.4g} -> {metric['after'][key]:.4g} "
                     f"({metric['retention'] * 100:.1f}% kept)")
    return lines


def bench_lines(report: dict[str, Any]) -> list[str]:
    """The latency measurement: inputs, runs, and the three models with their spread."""
    b = report.get("bench")
    if not b or "original" not in b:
        return []
    shapes = ", ".join(f"{k} {v}" for k, v in b["inputs"].items())
    def cell(k):
        return f"{b[k]['median']:.3f} ms ({b[k]['p25']:.3f}..{b[k]['p75']:.3f})"
    o, n, p = (b[k]["median"] for k in ("original", "normalized", "pruned"))
    return [f"latency: ONNX Runtime CPU, {b['runs']} interleaved runs, inputs {shapes}; median (25th..75th percentile)",
            f"  original {cell('original')}, normalized {cell('normalized')} ({o / n:.2f}x from normalization alone), "
            f"pruned {cell('pruned')} ({n / p:.2f}x from pruning)", *node_lines(b.get("nodes"))]


def node_lines(nodes: dict[str, Any] | None, ops: int = 6, top: int = 5) -> list[str]:
    """Where the time goes: per op type, and the nodes that changed most (normalized -> pruned)."""
    if not nodes:
        return []
    ms = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    per_op = ", ".join(f"{op} {ms(t['before_ms'])} -> {ms(t['after_ms'])}" for op, t in list(nodes["by_op"].items())[:ops])
    lines = [f"  per op type, ms per run (ONNX Runtime profiler, normalized -> pruned): {per_op}",
             "  nodes that changed most: " + "; ".join(
                 f"{r['node']} ({r['op']}) {ms(r['before_ms'])} -> {ms(r['after_ms'])}" for r in nodes["nodes"][:top])]
    return lines


def latency_hint(report: dict[str, Any]) -> str | None:
    b, a = report.get("before", {}), report.get("after", {})
    if "latency_ms" not in b or a["latency_ms"] <= b["latency_ms"]:
        return None
    select = next((p for p in report.get("pipeline", []) if p.startswith("select")), "")
    if "round_to=" in select and "round_to=auto" not in select:
        return ("hint: the pruned model is slower; ONNX Runtime's CPU convolutions want channel counts on "
                "their block (8 or 16): use round_to=auto (the default) in the select pass")
    return ("hint: the pruned model is slower although channel counts stay on ONNX Runtime's block; "
            "prune less, or compare the per-node times of both models")


def depth_line(report: dict[str, Any]) -> str | None:
    """One line on the residual branches depth pruning removed."""
    depth = report.get("depth")
    if not depth:
        return None
    gone = [b for b in depth["branches"] if b["removed"]]
    attention = sum(b["attention"] for b in gone)
    dropped = len(report.get("interface_changes", {}).get("dropped", []))
    return (f"depth: removed {len(gone)} of {len(depth['branches'])} residual branches ({attention} attention, "
            f"{len(gone) - attention} other; scored on {depth['data']})"
            + (f"; {dropped} KV-cache inputs/outputs left with their layers, the rest renumbered" if dropped else ""))


def cache_line(report: dict[str, Any]) -> str | None:
    """One line on the KV-cache inputs/outputs that lost heads (their new shapes are part
    of the model's interface: the runtime allocates the cache by them)."""
    cache = report.get("cache_tensors")
    if not cache:
        return None
    counts = sorted({len(c["kept"]) for c in cache.values()})
    return (f"KV cache: {len(cache)} past/present tensors resized to {'/'.join(map(str, counts))} KV heads "
            "(--keep-io keeps them whole)")


def print_report(report: dict[str, Any], verbose: bool) -> None:
    print(f"pipeline: {' -> '.join(report['pipeline'])}")
    print(reporting.summary_table(report))
    for line in bench_lines(report):
        print(line)
    for line in verification_lines(report.get("verification", {})):
        print(line)
    search = report.get("budget_search")
    if search and len(search["tries"]) > 1:
        tried = ", ".join(f"{t['budget']} {'within' if t['within'] else 'outside'}" for t in search["tries"])
        print(f"budget: {search['asked']} was outside --tolerance; tried {tried}; wrote {search['chosen']}")
    hint = latency_hint(report)
    if hint:
        print(hint)
    for line in (depth_line(report), cache_line(report)):
        if line:
            print(line)
    pins = report.get("pins", [])
    for line in pins[:PIN_LINES]:
        print(f"pinned: {line}")
    if len(pins) > PIN_LINES:
        print(f"pinned: ... and {len(pins) - PIN_LINES} more nodes that pin groups (-v lists every group, "
              "--report keeps them all)")
    if verbose:
        print(reporting.groups_table(report))
    if report.get("output") and "verification" in report:
        same = " (nothing was removed: the input model, unchanged)" if report.get("unchanged") else ""
        print(f"wrote {report['output']} in {report['seconds']:.2f}s{same}")
    else:
        print("dry run: nothing written")
