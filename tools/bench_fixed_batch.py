"""Calibration time of a fixed-batch-1 export against the same network exported with a
dynamic batch: graphprune frees a fixed batch of 1 for calibration where a copy with a free
batch computes the same (graphprune.runtime.batch_frees), so both run batches.

    python tools/bench_fixed_batch.py [--images 1000] [--json out.json]

The CIFAR-10 ResNet-20 (trained weights from ../shared/assets/cifar10), exported twice with
the TorchScript exporter (batch fixed at 1, and dynamic); the --calib default pipeline
(wifv with FLAP allocation, then refit) on the first `--images` CIFAR images, timed end to
end in one process, alternating the two exports (3 rounds; median). Needs torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import bench_cnn  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch

    from bench_calib_cnn import calib_split
    from cifar_resnet import load_trained
    from graphprune.pipeline import Options, prune

    torch.set_num_threads(2)
    ckpt = next(f for f in os.listdir(os.path.join(bench_cnn.ASSETS, "cifar10")) if f.startswith("resnet20-"))
    model = load_trained(os.path.join(bench_cnn.ASSETS, "cifar10", ckpt), 20).eval()
    x, _ = calib_split()
    times: dict[str, list[float]] = {"fixed batch 1": [], "dynamic batch": []}
    freed = {}
    with tempfile.TemporaryDirectory() as tmp:
        calib = os.path.join(tmp, "calib.npz")
        np.savez(calib, x=x[:args.images])
        paths = {"dynamic batch": bench_cnn.export_onnx(model, (1, 3, 32, 32), os.path.join(tmp, "dyn.onnx"))}
        fixed = os.path.join(tmp, "fixed.onnx")
        torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), fixed, dynamo=False, do_constant_folding=False,
                          input_names=["x"], output_names=["logits"])
        paths["fixed batch 1"] = fixed
        for _ in range(args.rounds):
            for label, path in paths.items():
                t0 = time.perf_counter()
                rep = prune(path, Options(output=os.path.join(tmp, "p.onnx"), calib=calib, quiet=True))
                times[label].append(time.perf_counter() - t0)
                freed[label] = "batch_freed" in rep.get("calibration", {})
    rows = {k: {"median_s": statistics.median(v), "runs_s": v, "batch_freed": freed[k]} for k, v in times.items()}
    ratio = rows["fixed batch 1"]["median_s"] / rows["dynamic batch"]["median_s"]
    for k, r in rows.items():
        print(f"{k:15} {r['median_s']:7.1f} s (median of {len(r['runs_s'])}), batch freed: {r['batch_freed']}")
    print(f"fixed / dynamic: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "ratio": ratio}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
