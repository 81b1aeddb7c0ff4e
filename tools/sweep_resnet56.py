"""`graphprune sweep` on the trained CIFAR-10 ResNet-56: l2 and metanet (data-free) and wifv + refit
(calibrated) at five MAC budgets, top-1 and ONNX Runtime latency of every point, the
Pareto fronts and the kept widths as pictures.

    python tools/sweep_resnet56.py -o sweep-resnet56 [--ray auto] [--budgets macs=0.8,0.67,0.5,0.4,0.33]

The model is exported from ../shared/assets/cifar10 (dynamic batch; latency at batch 16);
calibration is x[:1000] of test_jpeg.npz, top-1 is measured on x[5000:]. A rerun with the
same -o resumes (finished points are read back). Needs torch for the export.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import bench_cnn  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--budgets", default="macs=0.8,0.67,0.5,0.4,0.33")
    ap.add_argument("--criteria", default="l2,wifv:normalize=standardize+refit,metanet")
    ap.add_argument("--ray")
    args = ap.parse_args()
    from cifar_resnet import load_trained

    from graphprune.sweep import main as sweep_main

    data = os.path.join(args.output, "data")
    os.makedirs(data, exist_ok=True)
    model = os.path.join(data, "resnet56.onnx")
    if not os.path.exists(model):
        ckpt = next(f for f in os.listdir(os.path.join(bench_cnn.ASSETS, "cifar10")) if f.startswith("resnet56-"))
        bench_cnn.export_onnx(load_trained(os.path.join(bench_cnn.ASSETS, "cifar10", ckpt), 56).eval(),
                              (1, 3, 32, 32), model)
        x, y = bench_cnn.cifar_images()
        np.savez(os.path.join(data, "calib.npz"), x=x[:1000])
        np.savez(os.path.join(data, "eval.npz"), x=x[5000:], labels=y[5000:])
    argv = [model, "-o", args.output, "--criteria", args.criteria, "--budgets", args.budgets,
            "--calib", os.path.join(data, "calib.npz"), "--eval", os.path.join(data, "eval.npz"), "--bench"]
    return sweep_main(argv + (["--ray", args.ray] if args.ray else []))


if __name__ == "__main__":
    sys.exit(main())
