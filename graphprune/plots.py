"""Pictures of a sweep (matplotlib, an optional extra: `pip install 'graphprune[plot]'`):
accuracy against MACs kept and against measured latency, every criterion a line, the
Pareto front marked; and the kept width of every prunable group for the points on the
front. Without matplotlib nothing is drawn and the caller says how to get it."""

from __future__ import annotations

import os


def draw_sweep(result: dict, folder: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    points = [p for p in result["points"] if p.get("accuracy") is not None]
    for cost, front_key, label, name in (("macs_kept", "front_macs", "MACs kept (fraction of dense)", "sweep_macs.png"),
                                         ("latency_ms", "front_latency", "ONNX Runtime latency (ms)",
                                          "sweep_latency.png")):
        usable = [p for p in points if p.get(cost) is not None]
        if not usable:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for crit in dict.fromkeys(p["criterion"] for p in usable):
            mine = sorted((p for p in usable if p["criterion"] == crit), key=lambda p: p[cost])
            ax.plot([p[cost] for p in mine], [p["accuracy"] for p in mine], "o-", label=crit)
        front = [p for p in usable if p["key"] in result.get(front_key, [])]
        front.sort(key=lambda p: p[cost])
        ax.plot([p[cost] for p in front], [p["accuracy"] for p in front], "k--", lw=1, label="Pareto front")
        ax.set_xlabel(label)
        ax.set_ylabel(usable[0]["metric"])
        ax.set_title(result["model"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, plt, os.path.join(folder, name)))
    for p in points:
        if p["key"] in result.get("front_macs", []) and p.get("widths"):
            written.append(_widths(p, plt, os.path.join(folder, f"widths_{p['key']}.png")))
    return written


def draw_widths(report: dict, path: str) -> str | None:
    """The kept width of every prunable group of one run (its report), as `path` (PNG or
    SVG); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    widths = [{"label": g["label"], "units": g["units"], "kept": g["units"] - g["removed"]}
              for g in report.get("groups", []) if g["units"] > g.get("pinned_units", 0)]
    return _widths({"key": os.path.basename(report.get("output") or ""), "widths": widths}, plt, path)


def _widths(point: dict, plt, path: str) -> str:
    groups = point["widths"]
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(groups)), 3.5))
    xs = range(len(groups))
    ax.bar(xs, [g["units"] for g in groups], color="#dddddd", label="dense")
    ax.bar(xs, [g["kept"] for g in groups], color="#3070b0", label="kept")
    ax.set_xticks(list(xs), [g["label"] for g in groups], rotation=90, fontsize=6)
    ax.set_ylabel("units (channels / heads)")
    ax.set_title(point["key"], fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def _save(fig, plt, path: str) -> str:
    fig.tight_layout()
    tmp = path + ".tmp" + os.path.splitext(path)[1]
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path
