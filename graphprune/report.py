"""The report: what was removed, what it cost, what was verified; as JSON and as tables."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np

from graphprune.context import Context


def describe_groups(ctx: Context) -> list[dict[str, Any]]:
    analysis = ctx.analysis()
    rows = []
    for g in analysis.groups:
        removed = ctx.plan.get(g.id, np.zeros(0, dtype=int))
        scores = ctx.scores.get(g.id)
        rows.append({
            "id": g.id,
            "label": g.label(),
            "kind": g.kind,
            "units": g.n_units,
            "pinned_units": int(g.pinned.sum()),
            "removed": int(len(removed)),
            "members": [f"{name}[{axis}]" for name, axis in g.members],
            "params_per_unit": float(g.params_per_unit.mean()) if g.n_units else 0.0,
            "macs_per_unit": float(g.macs_per_unit.mean()) if g.n_units else 0.0,
            "score_removed_max": float(scores[removed].max()) if scores is not None and len(removed) else None,
            "score_kept_min": _kept_min(scores, removed, g.n_units),
            "pins": g.pin_reasons[:5],
        })
    return rows


def _kept_min(scores, removed, n):
    if scores is None or n == 0:
        return None
    mask = np.ones(n, dtype=bool)
    mask[removed] = False
    return float(scores[mask].min()) if mask.any() else None


def pin_summary(ctx: Context) -> list[str]:
    """One line per node that pins whole groups, e.g. 'node X (op Y) pins 3 groups: ...'."""
    rows = ctx.report.get("groups")
    if rows is None:
        return []
    counts: dict[str, int] = {}
    for row in rows:
        if row["pinned_units"] == row["units"]:
            for reason in row["pins"]:
                counts[reason] = counts.get(reason, 0) + 1
    return [_pin_line(r, n) for r, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def _pin_line(reason: str, n: int) -> str:
    head, _, why = reason.partition(": ")
    noun = "group" if n == 1 else "groups"
    return f"{head} pins {n} {noun}: {why}" if why else f"{reason} ({n} {noun})"


def write_json(report: dict[str, Any], path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    from graphprune.saving import file_mode

    fd, tmp = tempfile.mkstemp(prefix=".report.", suffix=".tmp", dir=folder)
    os.fchmod(fd, file_mode())
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=2, default=_jsonable)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _human(n: float | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def summary_table(report: dict[str, Any]) -> str:
    b, a = report.get("before", {}), report.get("after", {})
    rows = [("params", b.get("params"), a.get("params"), ""),
            ("MACs", b.get("macs"), a.get("macs"), ""),
            ("file size", b.get("file_bytes"), a.get("file_bytes"), "B")]
    lines = [f"{'':12}{'before':>12}{'after':>12}{'ratio':>9}"]
    for name, x, y, unit in rows:
        ratio = f"{x / y:.2f}x" if x and y else "-"
        lines.append(f"{name:12}{_human(x, unit):>12}{_human(y, unit):>12}{ratio:>9}")
    if "latency_ms" in b:
        x, y = b["latency_ms"], a["latency_ms"]
        lines.append(f"{'latency':12}{x:>10.3f}ms{y:>10.3f}ms{x / y:>8.2f}x   (pruning; see below)")
    acc = report.get("accuracy")
    if acc:
        lines.append(f"{'top-1':12}{acc['before'] * 100:>11.2f}%{acc['after'] * 100:>11.2f}%"
                     f"{'':>3}({acc['samples']} samples)")
    return "\n".join(lines)


def groups_table(report: dict[str, Any]) -> str:
    rows = report.get("groups", [])
    lines = [f"{'id':>4} {'group':40} {'kind':8} {'units':>6} {'pinned':>6} {'removed':>7} {'MACs/unit':>10} "
             f"{'score cut':>9} {'score kept':>10}  pinned by"]
    for r in rows:
        pin = r["pins"][0] if r["pins"] and r["pinned_units"] else ""
        cut = f"{r['score_removed_max']:.3g}" if r.get("score_removed_max") is not None else "-"
        kept = f"{r['score_kept_min']:.3g}" if r.get("score_kept_min") is not None else "-"
        lines.append(f"{r['id']:>4} {r['label'][:40]:40} {r.get('kind', ''):8} {r['units']:>6} {r['pinned_units']:>6} "
                     f"{r['removed']:>7} {_human(r['macs_per_unit']):>10} {cut:>9} {kept:>10}  {pin[:70]}")
    comp = report.get("compensation")
    if comp:
        lines.append("compensation: " + "; ".join(f"{c['method']} on {c['consumers']} consumers" for c in comp))
    for p in report.get("passes", []):
        st = p.get("stats", {})
        if "layers_rescaled" in st or "bn_reestimated" in st:
            lines.append(f"restore-stats: {st.get('bn_reestimated', 0)} BatchNorms re-estimated, "
                         f"{st.get('layers_rescaled', 0)} layers rescaled")
    return "\n".join(lines)
