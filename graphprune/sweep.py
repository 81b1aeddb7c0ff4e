"""graphprune sweep: criteria (or pipelines) x budgets on one model, every point a full
checked run (calibration statistics measured once per graph state and shared by the
points in-process), collected into sweep.json with the accuracy/size (and latency) Pareto front,
and pictures where matplotlib is installed (graphprune.plots).

    graphprune sweep MODEL -o DIR --criteria l2,wifv+refit --budgets macs=0.67,0.5,0.33
                     [--calib DATA.npz] [--eval DATA.npz] [--bench] [--ray auto|ADDRESS]

A criterion is a '+'-joined pipeline of passes (options after ':' joined by ';', as in
`wifv:normalize=standardize;reduce=mean+refit`); the sweep puts `select:<budget>,
scope=global,strict=false` after its score passes. Each point writes DIR/points/<key>.onnx
and <key>.json; a rerun skips points whose JSON is there, so an interrupted sweep resumes
and a lost point costs only itself. Accuracy is `--eval` top-1 where given, else the
verification's agreement with the dense model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from graphprune.errors import BadInput

BUDGET_KEYS = ("macs", "params", "ratio", "latency")


def parse_budgets(text: str) -> list[tuple[str, float]]:
    """'macs=0.67,0.5' -> [('macs', 0.67), ('macs', 0.5)]; 'params=0.5,macs=0.5' mixes."""
    out, key = [], None
    for item in [t for t in text.split(",") if t]:
        if "=" in item:
            key, item = item.split("=", 1)
        if key not in BUDGET_KEYS:
            raise BadInput(f"sweep: a budget is macs=, params=, latency= or ratio= followed by numbers, not {text!r}")
        try:
            value = float(item)
        except ValueError:
            raise BadInput(f"sweep: budget {key}={item!r} is not a number") from None
        if not 0.0 < value <= 1.0:
            raise BadInput(f"sweep: budget {key}={value} must lie in (0, 1]")
        out.append((key, value))
    if not out:
        raise BadInput("sweep: --budgets names no budget")
    return out


def point_passes(criterion: str, key: str, value: float) -> list[str]:
    from graphprune.registry import parse_spec

    steps = [s.replace(";", ",") for s in criterion.split("+") if s]
    if not steps:
        raise BadInput(f"sweep: empty criterion {criterion!r}")
    kinds = [parse_spec(s)[0].kind for s in steps]  # an unknown pass name is refused here
    at = max((i + 1 for i, k in enumerate(kinds) if k in ("score", "analysis")), default=0)
    select = f"select:{key}={value},scope=global,strict=false" if key != "ratio" else f"select:ratio={value}"
    return [*steps[:at], select, *steps[at:]]


def point_key(criterion: str, key: str, value: float) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+@-]", "_", f"{criterion}@{key}={value:g}")


def run_point(model: str, folder: str, criterion: str, key: str, value: float, base: dict) -> dict:
    """One point (cached in folder/points/<key>.json)."""
    from graphprune.pipeline import Options, prune
    from graphprune.report import write_json

    name = point_key(criterion, key, value)
    record = os.path.join(folder, "points", f"{name}.json")
    out = os.path.join(folder, "points", f"{name}.onnx")
    if os.path.exists(record) and os.path.exists(out):
        with open(record, encoding="utf-8") as f:
            return json.load(f)
    t0 = time.perf_counter()
    rep = prune(model, Options(passes=point_passes(criterion, key, value), output=out, quiet=True, **base))
    point = {"key": name, "criterion": criterion, "budget": {key: value}, "file": os.path.relpath(out, folder),
             "seconds": time.perf_counter() - t0,
             "macs": rep["after"]["macs"], "params": rep["after"]["params"],
             "macs_kept": rep["after"]["macs"] / max(rep["before"]["macs"], 1),
             "params_kept": rep["after"]["params"] / max(rep["before"]["params"], 1),
             "latency_ms": rep["after"].get("latency_ms"), "dense_latency_ms": rep["before"].get("latency_ms"),
             "widths": [{"label": g["label"], "kind": g["kind"], "units": g["units"], "kept": g["units"] - g["removed"]}
                        for g in rep["groups"] if g["units"] > g.get("pinned_units", 0)]}
    acc = rep.get("accuracy")
    if acc:
        point.update(metric="top1", accuracy=acc["after"], dense_accuracy=acc["before"])
    else:
        point.update(metric="agreement", accuracy=_agreement(rep), dense_accuracy=1.0)
    write_json(point, record)
    return point


def _agreement(rep: dict) -> float | None:
    """The verification's top-1 agreement with the dense model (cosine where the outputs
    are not class scores)."""
    v = rep.get("verification", {})
    for k in ("top1_agreement", "cosine"):
        if v.get(k) is not None:
            return float(v[k])
    return None


def pareto(points: list[dict], cost: str, tie: float = 1e-3) -> list[str]:
    """Keys of the points no other point beats on both accuracy (higher) and `cost` (lower);
    costs within `tie` (relative) count as equal, so a hair less MACs does not keep a far
    less accurate point on the front."""
    usable = [p for p in points if p.get("accuracy") is not None and p.get(cost) is not None]

    def beats(q, p):
        no_dearer = q[cost] <= p[cost] * (1 + tie)
        cheaper = q[cost] < p[cost] * (1 - tie)
        return no_dearer and q["accuracy"] >= p["accuracy"] and (cheaper or q["accuracy"] > p["accuracy"])

    front = [p for p in usable if not any(beats(q, p) for q in usable if q is not p)]
    return [p["key"] for p in sorted(front, key=lambda p: p[cost])]


def _say(p: dict) -> None:
    lat = f", {p['latency_ms']:.3f} ms" if p.get("latency_ms") else ""
    acc = "-" if p["accuracy"] is None else f"{p['accuracy']:.4f}"
    print(f"{p['key']}: MACs kept {p['macs_kept']:.3f}, params kept {p['params_kept']:.3f}{lat}, "
          f"{p['metric']} {acc}", flush=True)


def _on_ray(address: str, model: str, folder: str, grid: list, base: dict, quiet: bool) -> list[dict]:
    """The points as Ray tasks (one CPU each), each writing its own files, so a lost
    worker loses one point and a rerun resumes; results in grid order."""
    from graphprune.cluster import connect

    ray = connect(address)
    task = ray.remote(num_cpus=1, max_retries=1)(run_point)
    refs = [task.remote(os.path.abspath(model), os.path.abspath(folder), c, k, v, base) for c, k, v in grid]
    points: dict = {}
    waiting = list(refs)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        for ref in done:
            try:
                p = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a point's own one-line error, wrapped by Ray
                cause = getattr(e, "cause", None)
                raise BadInput(str(cause) if isinstance(cause, BadInput) else f"sweep: a point failed on Ray ({e})")
            points[refs.index(ref)] = p
            if not quiet:
                _say(p)
    return [points[i] for i in range(len(refs))]


def sweep(model: str, folder: str, criteria: list[str], budgets: list[tuple[str, float]], base: dict,
          quiet: bool = False, ray: str | None = None) -> dict:
    from graphprune.report import write_json

    if not os.path.isfile(model):
        raise BadInput(f"sweep: no model file {model!r}")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise BadInput(f"sweep: -o {folder!r} is a file; give a folder")
    for c in criteria:  # refuse a bad criterion before the first point runs
        point_passes(c, *budgets[0])
    os.makedirs(os.path.join(folder, "points"), exist_ok=True)
    grid = [(c, key, value) for c in criteria for key, value in budgets]
    if ray:
        points = _on_ray(ray, model, folder, grid, base, quiet)
    else:
        points, shared = [], {**base, "stats_cache": {}}  # one calibration pass per graph state, not per point
        for c, key, value in grid:
            points.append(run_point(model, folder, c, key, value, shared))
            if not quiet:
                _say(points[-1])
    result = {"model": os.path.basename(model), "criteria": criteria,
              "budgets": [{k: v} for k, v in budgets], "points": points,
              "front_macs": pareto(points, "macs"), "front_latency": pareto(points, "latency_ms")}
    write_json(result, os.path.join(folder, "sweep.json"))
    from graphprune.plots import draw_sweep

    result["pictures"] = draw_sweep(result, folder)
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="graphprune sweep", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="folder for points, sweep.json and pictures")
    p.add_argument("--criteria", default="l2", help="comma-separated criteria or '+'-joined pipelines")
    p.add_argument("--budgets", default="macs=0.75,0.5,0.33")
    p.add_argument("--calib", metavar="FILE.npz")
    p.add_argument("--eval", dest="eval_data", metavar="FILE.npz")
    p.add_argument("--bench", action="store_true", help="measure each point's ONNX Runtime latency")
    p.add_argument("--bench-batch", type=int, default=16)
    p.add_argument("--ray", metavar="ADDRESS", help="run the points as Ray tasks (auto: a running cluster, else a "
                   "local one; needs graphprune[ray]); the folder must be reachable by every worker")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    base = {"calib": args.calib, "eval_data": args.eval_data, "bench": args.bench, "bench_batch": args.bench_batch}
    result = sweep(args.model, args.output, [c for c in args.criteria.split(",") if c], parse_budgets(args.budgets),
                   base, args.quiet, args.ray)
    print(f"wrote {os.path.join(args.output, 'sweep.json')} ({len(result['points'])} points; front by MACs: "
          f"{', '.join(result['front_macs']) or '-'})")
    for path in result["pictures"]:
        print(f"wrote {path}")
    if not result["pictures"]:
        print("pictures: install matplotlib (pip install 'graphprune[plot]') and run the sweep again "
              "(the points are reused)", file=sys.stderr)
    return 0
