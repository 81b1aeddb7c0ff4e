"""graphprune/console.py: what the command line prints of a report: what verification
measured, the latency of the three models with their spread, hints that are true for the
run, and every pin or a count of the rest."""

from __future__ import annotations

from graphprune.console import bench_lines, latency_hint, print_report, verification_lines


def _report(**extra):
    return {"pipeline": ["normalize", "l1", "select:macs=0.5", "remove", "cleanup"], "output": "o.onnx",
            "seconds": 1.0, "before": {"params": 10, "macs": 20}, "after": {"params": 5, "macs": 10}, **extra}


def test_verification_says_how_many_samples_and_from_where():
    v = {"samples": 64, "inputs": "held-out --calib samples", "summary": ["logits (class-scores): top-1 99%"],
         "metric": {"before": {"faces": 10.0}, "after": {"faces": 8.0}, "retention": 0.8}}
    lines = verification_lines(v)
    assert "64 held-out --calib samples" in lines[0] and "top-1" in lines[1] and "80.0% kept" in lines[2]
    assert verification_lines({"numeric": "skipped"}) == ["checked: the ONNX checker passed (numeric verification skipped)"]


def test_latency_lines_and_hints():
    bench = {"runs": 30, "inputs": {"x": [16, 3, 8, 8]}, **{k: {"median": m, "p25": m, "p75": m}
                                                           for k, m in (("original", 4.0), ("normalized", 2.0), ("pruned", 1.0))}}
    lines = bench_lines(_report(bench=bench))
    assert "x [16, 3, 8, 8]" in lines[0] and "2.00x from normalization alone" in lines[1] and "2.00x from pruning" in lines[1]
    slow = _report(before={"latency_ms": 1.0}, after={"latency_ms": 2.0})
    assert "round_to=auto" not in latency_hint(slow)  # auto is the default: the hint says something else
    slow["pipeline"][2] = "select:macs=0.5,round_to=1"
    assert "round_to=auto" in latency_hint(slow)
    assert latency_hint(_report()) is None


def test_every_pin_is_shown_or_counted(capsys):
    print_report(_report(pins=[f"node n{i} pins 1 group: why" for i in range(11)], verification={}), False)
    out = capsys.readouterr().out
    assert out.count("pinned: node") == 8 and "and 3 more nodes that pin groups" in out
