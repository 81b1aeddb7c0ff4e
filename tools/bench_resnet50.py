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

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def resnet50():
    import torch.nn as nn
    import torch.nn.functional as F

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, stride):
            super().__init__()
            cout = mid * 4
            self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
            self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
            self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = F.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return F.relu(y + (x if self.down is None else self.down(x)))

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
            layers, cin = [], 64
            for i, (w, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
                for j in range(n):
                    layers.append(Bottleneck(cin, w, 2 if i > 0 and j == 0 else 1))
                    cin = w * 4
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(2048, 1000)

        def forward(self, x):
            return self.fc(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))

    return ResNet50().eval()


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
