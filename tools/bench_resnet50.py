"""A ResNet-50-shaped CNN (bottleneck stages 3-4-6-3, widths 64-512, 224x224 input,
random weights) exported with torch.onnx.export(dynamo=True), pruned by the command line
at 50% of the channels of every group.

Prints the CLI's wall time (load to save, verification included; median of runs), the MAC
reduction, and ONNX Runtime latency dense vs pruned (median of interleaved runs) with
the speedup as a fraction of the MAC reduction.

    python tools/bench_resnet50.py [--runs 3] [--batch 1] [--json bench-results/resnet50.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnn_shapes import resnet50  # noqa: E402

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--select", default="select:ratio=0.5,round_to=1")
    p.add_argument("--json")
    args = p.parse_args()
    import torch

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        dense = os.path.join(tmp, "resnet50.onnx")
        torch.onnx.export(resnet50(), (torch.randn(1, 3, 224, 224),), dense, dynamo=True, verbose=False)
        pruned = os.path.join(tmp, "pruned.onnx")
        report_path = os.path.join(tmp, "r.json")
        walls = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "graphprune", dense, "-o", pruned, "--pass", "l1",
                                "--pass", args.select, "--report", report_path, "-q"], capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if r.returncode:
                sys.exit(r.stderr)
        report = json.load(open(report_path))
        from graphprune.bench import latency_pair

        feeds = {"x": np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)}
        if args.batch != 1:
            sys.exit("the dynamo export has a static batch of 1")
        ta, tb = latency_pair(dense, pruned, feeds, repeats=args.repeats)
    mac_red = report["before"]["macs"] / report["after"]["macs"]
    row = {
        "cli_seconds_median": statistics.median(walls), "cli_seconds_runs": walls,
        "in_process_seconds": report["seconds"],
        "passes": {p["pass"]: p["seconds"] for p in report["passes"]},
        "macs_before": report["before"]["macs"], "macs_after": report["after"]["macs"],
        "mac_reduction": mac_red, "latency_dense_ms": ta * 1e3, "latency_pruned_ms": tb * 1e3,
        "speedup": ta / tb, "speedup_over_mac_reduction": (ta / tb) / mac_red,
    }
    print(f"CLI wall time (load to save, incl. interpreter start): median {row['cli_seconds_median']:.2f}s "
          f"of {args.runs}; in-process {row['in_process_seconds']:.2f}s")
    print("per pass:", ", ".join(f"{k} {v:.2f}s" for k, v in row["passes"].items()))
    print(f"MACs {row['macs_before'] / 1e9:.2f}G -> {row['macs_after'] / 1e9:.2f}G ({mac_red:.2f}x)")
    print(f"ORT latency {row['latency_dense_ms']:.1f}ms -> {row['latency_pruned_ms']:.1f}ms "
          f"({row['speedup']:.2f}x, {row['speedup_over_mac_reduction']:.2f} of the MAC reduction)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        json.dump(row, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
