"""Tables of the metanet evaluation (tools/eval_metanet.py's JSON), in Markdown.

    python tools/metanet_table.py --zoo bench-results/metanet-zoo.json [--real bench-results/metanet-real.json]

Zoo: mean held-out accuracy per family, budget and criterion (leave one family out), and
the best single baseline over all of them. Real: every (network, budget) pair with the
metanet's gain over that baseline (points), wins, the paired bootstrap 95% interval of
the mean gain, and the pairs where metanet is below random.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

BASELINES = ("l1", "l2", "bn-scale", "l1:roles=in", "fpgm", "lamp")
ORDER = BASELINES + ("random", "metanet", "metanet-lamp", "wifv", "ablate:groups=all")


def zoo_table(zoo: dict) -> str:
    fams = sorted({v["family"] for v in zoo.values()})
    budgets = sorted({b for v in zoo.values() for b in v["results"]}, key=float, reverse=True)
    lines = ["| family | macs | " + " | ".join(c for c in ORDER[:9]) + " |", "|---|---|" + "---|" * 9]
    overall = {c: [] for c in ORDER[:9]}
    for fam in fams:
        for b in budgets:
            cells = []
            for c in ORDER[:9]:
                vals = [v["results"][b][c][0] for v in zoo.values() if v["family"] == fam and c in v["results"].get(b, {})]
                overall[c] += vals
                cells.append(f"{100 * np.mean(vals):.1f}" if vals else "-")
            lines.append(f"| {fam} | {b} | " + " | ".join(cells) + " |")
    means = {c: float(np.mean(v)) for c, v in overall.items() if v}
    lines.append("| **all** | | " + " | ".join(f"**{100 * means[c]:.1f}**" if c in means else "-" for c in ORDER[:9]) + " |")
    return "\n".join(lines), max(BASELINES, key=lambda c: means.get(c, -1))


def bootstrap(gains: np.ndarray, resamples: int = 10000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = gains[rng.integers(0, len(gains), (resamples, len(gains)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def real_table(real: dict, best: str) -> str:
    cols = ORDER
    lines = ["| network | macs | " + " | ".join(cols) + f" | gain vs {best} |", "|---|---|" + "---|" * (len(cols) + 1)]
    gains, below_random = [], []
    for net, v in real.items():
        for b, by in sorted(v["results"].items(), key=lambda kv: -float(kv[0])):
            if "metanet" not in by or best not in by:
                continue
            gain = 100 * (by["metanet"][0] - by[best][0])
            gains.append(gain)
            if by["metanet"][0] < by.get("random", [-1])[0]:
                below_random.append(f"{net}@{b}")
            cells = [f"{100 * by[c][0]:.1f}" if c in by else "-" for c in cols]
            lines.append(f"| {net} | {b} | " + " | ".join(cells) + f" | {gain:+.1f} |")
    g = np.array(gains)
    lo, hi = bootstrap(g) if len(g) else (np.nan, np.nan)
    lines += ["", f"metanet beats {best} on {int((g > 0).sum())} of {len(g)} pairs (ties {int((g == 0).sum())}); "
              f"mean gain {g.mean():+.2f} points, paired bootstrap 95% interval [{lo:+.2f}, {hi:+.2f}]; "
              f"below random: {', '.join(below_random) or 'none'}"]
    return "\n".join(lines)


def repair_table(real: dict) -> str:
    rows = ["| network | " + " | ".join(f"{c}+{r}" for r in ("restore-stats", "refit") for c in ("l1", "l2", "metanet"))
            + " |", "|---|" + "---|" * 6]
    for net, v in real.items():
        by = v["results"].get("0.5", {})
        cells = [f"{100 * by[k][0]:.1f}" if k in by else "-"
                 for k in (f"{c}+{r}" for r in ("restore-stats", "refit") for c in ("l1", "l2", "metanet"))]
        rows.append(f"| {net} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def merge(paths: list[str]) -> dict:
    """One result dict from several runs: later files add or replace criteria rows."""
    out: dict = {}
    for path in paths:
        for net, v in json.load(open(path)).items():
            entry = out.setdefault(net, {k: x for k, x in v.items() if k != "results"} | {"results": {}})
            for b, by in v["results"].items():
                entry["results"].setdefault(b, {}).update(by)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", required=True, nargs="+", help="several files: later rows replace earlier ones")
    ap.add_argument("--real", nargs="+")
    args = ap.parse_args()
    table, best = zoo_table(merge(args.zoo))
    print(table, f"\n\nbest single baseline on the zoo: {best}\n")
    if args.real:
        real = merge(args.real)
        print(real_table(real, best), "\n")
        print(repair_table(real))


if __name__ == "__main__":
    main()
