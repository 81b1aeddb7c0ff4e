"""Calibration-aware pruning of the CIFAR-10 ResNet-56 at 2x and 3x fewer MACs, beside
magnitude pruning and Torch-Pruning's best one-shot criteria (Taylor included) on the
same weights.

    python tools/bench_calib_cnn.py [--targets 2,3] [--json out.json]

Calibration: `x[:1000]` of ../shared/assets/cifar10/test_jpeg.npz; evaluation: `x[1000:]`
(9,000 images). Both tools prune the block-internal channels (what Torch-Pruning can
prune here), one ratio per group (uniform) unless `global` says otherwise. Torch-Pruning's
Taylor importance uses the calibration images with their labels (one backward pass);
graphprune's criteria use the images only. Needs torch and torch-pruning.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import bench_cnn  # noqa: E402

INCLUDE = "*layer*conv1*"
PIPELINES = [  # (label, passes before select, select extra, passes after select)
    ("l1 (magnitude)", ["l1"], "", []),
    ("l2 (magnitude)", ["l2"], "", []),
    ("l2 + restore-stats", ["l2"], "", ["restore-stats"]),
    ("wifv", ["wifv"], "", []),
    ("wifv + compensate", ["wifv"], "", ["compensate"]),
    ("wifv + restore-stats", ["wifv"], "", ["restore-stats"]),
    ("wifv + compensate + restore-stats", ["wifv"], "", ["compensate", "restore-stats"]),
    ("wifv global (FLAP)", ["wifv:normalize=standardize"], ",scope=global", []),
    ("wifv global (FLAP) + compensate", ["wifv:normalize=standardize"], ",scope=global", ["compensate"]),
    ("wifv global (FLAP) + restore-stats", ["wifv:normalize=standardize"], ",scope=global", ["restore-stats"]),
    ("wifv + compensate:lsq", ["wifv"], "", ["compensate:method=lsq"]),
    ("wifv + compensate:lsq + restore-stats", ["wifv"], "", ["compensate:method=lsq", "restore-stats"]),
    ("wifv global (FLAP) + compensate:lsq", ["wifv:normalize=standardize"], ",scope=global", ["compensate:method=lsq"]),
    ("wifv global (FLAP) + compensate:lsq + restore-stats", ["wifv:normalize=standardize"], ",scope=global",
     ["compensate:method=lsq", "restore-stats"]),
    ("wifv global (FLAP) + compensate:scale + restore-stats", ["wifv:normalize=standardize"], ",scope=global",
     ["compensate:method=scale", "restore-stats"]),
    ("wifv global (FLAP) + refit", ["wifv:normalize=standardize"], ",scope=global", ["refit"]),
    ("wifv global (FLAP) + refit + restore-stats", ["wifv:normalize=standardize"], ",scope=global",
     ["refit", "restore-stats"]),
    ("wifn + restore-stats", ["wifn"], "", ["restore-stats"]),
    ("wanda-sp + restore-stats", ["wanda-sp"], "", ["restore-stats"]),
    ("act-norm + restore-stats", ["act-norm"], "", ["restore-stats"]),
    ("amp + restore-stats", ["amp"], "", ["restore-stats"]),
]


def calib_split():
    return bench_cnn.cifar_images(slice(0, 1000))


def tp_taylor_at_macs(model, keep, ignored, xc, yc):
    import torch
    import torch.nn.functional as F
    import torch_pruning as tp

    shape = (1, 3, 32, 32)
    dense = bench_cnn.torch_macs(model, shape)

    def prune(ratio):
        m = copy.deepcopy(model).train()
        for mod in m.modules():  # statistics as in eval; gradients flow
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.eval()
        ign = [dict(m.named_modules())[n] for n in ignored]
        pruner = tp.pruner.MetaPruner(m, torch.randn(*shape), importance=tp.importance.GroupTaylorImportance(),
                                      pruning_ratio=ratio, ignored_layers=ign)
        m.zero_grad()
        for i in range(0, len(xc), 250):
            F.cross_entropy(m(torch.from_numpy(xc[i:i + 250])), torch.from_numpy(yc[i:i + 250])).backward()
        pruner.step()
        return m.eval()

    lo, hi, best = 0.0, 0.95, None
    for _ in range(12):
        mid = (lo + hi) / 2
        m = prune(mid)
        if bench_cnn.torch_macs(m, shape) <= keep * dense:
            hi, best = mid, m
        else:
            lo = mid
    best = best if best is not None else prune(hi)
    return best, bench_cnn.torch_macs(best, shape) / dense


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="2,3")
    ap.add_argument("--json")
    ap.add_argument("--no-tp", action="store_true")
    ap.add_argument("--only", help="run only the pipelines whose label matches one of these patterns "
                    "(comma-separated, fnmatch: '*lsq*')")
    args = ap.parse_args()
    import torch

    from cifar_resnet import load_trained
    from graphprune.pipeline import Options, prune

    torch.set_num_threads(2)
    ckpt = next(f for f in os.listdir(os.path.join(bench_cnn.ASSETS, "cifar10")) if f.startswith("resnet56-"))
    model = load_trained(os.path.join(bench_cnn.ASSETS, "cifar10", ckpt), 56).eval()
    x, y = bench_cnn.cifar_split(None)
    xc, yc = calib_split()
    ignored = ["conv1", "linear"] + [n for n, _ in model.named_modules() if n.endswith(".conv2")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dense = bench_cnn.export_onnx(model, (1, 3, 32, 32), os.path.join(tmp, "resnet56.onnx"))
        calib = os.path.join(tmp, "calib.npz")
        np.savez(calib, x=xc)
        # Verification on evaluation images: with --calib alone graphprune would hold out the
        # calibration file's last samples, and these rows calibrate on all 1,000.
        inputs = os.path.join(tmp, "inputs.npz")
        np.savez(inputs, x=x[:64])
        base = bench_cnn.ort_accuracy(dense, x, y)
        print(f"ResNet-56 dense top-1 {base * 100:.2f}% on {len(y)} images", flush=True)
        rows.append({"tool": "dense", "pipeline": "-", "target": 1.0, "top1": base})
        for target in [float(t) for t in args.targets.split(",")]:
            keep = 1.0 / target
            for label, score, extra, after in PIPELINES:
                if args.only and not any(fnmatch.fnmatchcase(label, o) for o in args.only.split(",")):
                    continue
                out = os.path.join(tmp, f"gp_{len(rows)}.onnx")
                t0 = time.perf_counter()
                rep = prune(dense, Options(passes=[*score, f"select:macs={keep},include={INCLUDE},round_to=1{extra}", *after],
                                           output=out, calib=calib, inputs=inputs, quiet=True))
                secs = time.perf_counter() - t0
                rows.append({"tool": "graphprune", "pipeline": label, "target": target, "seconds": secs,
                             "mac_reduction": rep["before"]["macs"] / rep["after"]["macs"],
                             "top1": bench_cnn.ort_accuracy(out, x, y)})
                print(rows[-1], flush=True)
            if args.no_tp:
                continue
            for crit in ("l1", "l2"):
                pruned, kept, _ = bench_cnn.tp_at_macs(model, (1, 3, 32, 32), crit, keep, ignored)
                rows.append({"tool": "torch-pruning", "pipeline": crit, "target": target, "mac_reduction": 1 / kept,
                             "top1": bench_cnn.torch_accuracy(pruned, x, y)})
                print(rows[-1], flush=True)
            pruned, kept = tp_taylor_at_macs(model, keep, ignored, xc, yc)
            rows.append({"tool": "torch-pruning", "pipeline": "taylor (calibration + labels)", "target": target,
                         "mac_reduction": 1 / kept, "top1": bench_cnn.torch_accuracy(pruned, x, y)})
            print(rows[-1], flush=True)
    print(f"\n{'tool':14} {'pipeline':52} {'MACs':>5} {'top-1':>7}")
    for r in rows:
        print(f"{r['tool']:14} {r['pipeline']:52} {r.get('mac_reduction', 1.0):5.2f} {r['top1'] * 100:6.2f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
