"""Prune, then recover by distillation: graphprune.torch (best one-shot pipeline +
graphprune.torch.distill) beside Torch-Pruning (its best criterion + the same distillation)
on the same weights, budgets and recipe.

    python tools/bench_distill.py cifar   [--targets 2,3] [--epochs 12] [--seeds 1] [--recipe flap]
                                          [--match layer1,layer2,layer3] [--lr 1e-3,3e-4] [--val] [--json out.json]
    python tools/bench_distill.py minilm  [--epochs 8] [--split interleaved] [--seeds 1] [--val] [--json out.json]
    python tools/bench_distill.py stories [--epochs 2] [--windows 800] [--json out.json]

cifar: ResNet-56 from ../shared/assets/cifar10. Pruning calibrates on x[:1000] of
test_jpeg.npz; distillation trains on x[:5000] (random flips and 4-pixel crops, KL on the
logits, no labels); top-1 is measured on x[5000:]. Torch-Pruning's Taylor uses x[:1000]
with their labels. Dense top-1 is reported on the same x[5000:].
minilm / stories: see bench_distill_text.py. Wall times are those of the distillation.
Needs torch and torch-pruning.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import bench_cnn  # noqa: E402

INCLUDE = "*layer*conv1*"


RECIPES = {  # graphprune's pipelines for the cifar task; --recipe picks one
    "flap": ("wifv global (FLAP) + refit + restore-stats",
             ["wifv:normalize=standardize", "select:macs={keep},include={include},round_to=1,scope=global",
              "refit", "restore-stats"]),
    "flap-stats": ("wifv global (FLAP) + restore-stats",
                   ["wifv:normalize=standardize", "select:macs={keep},include={include},round_to=1,scope=global",
                    "restore-stats"]),
    "uniform": ("wifv uniform ratio + refit + restore-stats",
                ["wifv", "select:macs={keep},include={include},round_to=1,scope=local", "refit", "restore-stats"]),
    "uniform-stats": ("wifv uniform ratio + restore-stats",
                      ["wifv", "select:macs={keep},include={include},round_to=1,scope=local", "restore-stats"]),
}


class Augmented:
    """Shuffled batches of `x` with random horizontal flips and 4-pixel padded crops; a new
    draw every epoch (seeded)."""

    def __init__(self, x: np.ndarray, batch: int = 64, seed: int = 0):
        self.x, self.batch, self.rng = x, batch, np.random.default_rng(seed)
        self.padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)), mode="reflect")

    def __len__(self):
        return (len(self.x) + self.batch - 1) // self.batch

    def __iter__(self):
        import torch

        order, padded = self.rng.permutation(len(self.x)), self.padded
        for s in range(0, len(order), self.batch):
            idx = order[s:s + self.batch]
            out = np.empty((len(idx), *self.x.shape[1:]), np.float32)
            for k, i in enumerate(idx):
                dy, dx = self.rng.integers(0, 9, 2)
                img = padded[i, :, dy:dy + 32, dx:dx + 32]
                out[k] = img[:, :, ::-1] if self.rng.random() < 0.5 else img
            yield torch.from_numpy(out)


def cifar(args) -> list[dict]:
    import torch

    import graphprune.torch as gpt
    from bench_calib_cnn import tp_taylor_at_macs
    from cifar_resnet import load_trained

    torch.set_num_threads(2)
    ckpt = next(f for f in os.listdir(os.path.join(bench_cnn.ASSETS, "cifar10")) if f.startswith("resnet56-"))
    teacher = load_trained(os.path.join(bench_cnn.ASSETS, "cifar10", ckpt), 56).eval()
    x, y = bench_cnn.cifar_images()
    xc, yc, xt, xe, ye = x[:1000], y[:1000], x[:5000], x[5000:], y[5000:]
    if args.val:  # choosing a recipe: distil on x[:4000], score on x[4000:5000]; x[5000:] stays unseen
        xt, xe, ye = x[:4000], x[4000:5000], y[4000:5000]
    ignored = ["conv1", "linear"] + [n for n, _ in teacher.named_modules() if n.endswith(".conv2")]
    shape = (1, 3, 32, 32)
    dense_macs = bench_cnn.torch_macs(teacher, shape)
    rows = [{"model": "resnet56", "tool": "dense", "target": 1.0, "top1": bench_cnn.torch_accuracy(teacher, xe, ye)}]
    print(rows[-1], flush=True)
    calib = [torch.from_numpy(xc[i:i + 250]) for i in range(0, 1000, 250)]
    seeds = [int(v) for v in args.seeds.split(",")]
    lrs = [float(v) for v in str(args.lr).split(",")]
    for target in [float(t) for t in args.targets.split(",")]:
        keep = 1.0 / target
        tp, tp_kept = tp_taylor_at_macs(teacher, keep, ignored, xc, yc)
        if args.match_tp:  # graphprune at the MACs Torch-Pruning's ratio search landed on
            keep = tp_kept
        runs = [("torch-pruning", "taylor (calibration + labels)", tp, None)]
        if "graphprune" in args.tools:
            t0 = time.perf_counter()
            label, passes = RECIPES[args.recipe]
            passes = [p.format(keep=keep, include=INCLUDE) for p in passes]
            example = (torch.from_numpy(xc[:args.example_batch]),)  # calibration runs at this batch
            gp = gpt.prune(teacher, example, passes=passes, calib=calib, quiet=True).module
            runs.insert(0, ("graphprune", label, gp, time.perf_counter() - t0))
        runs = [r for r in runs if r[0] in args.tools]
        for (tool, label, pruned, secs), lr, seed in itertools.product(runs, lrs, seeds):
            student = copy.deepcopy(pruned)
            row = {"model": "resnet56", "tool": tool, "pipeline": label, "target": target, "seed": seed, "lr": lr,
                   "match": args.match, "mac_reduction": dense_macs / bench_cnn.torch_macs(student, shape),
                   "one_shot": bench_cnn.torch_accuracy(student, xe, ye), "prune_seconds": secs}
            t0 = time.perf_counter()
            history = gpt.distill(student, teacher, Augmented(xt, seed=seed), epochs=args.epochs, lr=lr,
                                  temperature=4.0, match=args.match, quiet=True)
            row.update(distill_seconds=time.perf_counter() - t0, loss_first=history[0], loss_last=history[-1],
                       top1=bench_cnn.torch_accuracy(student, xe, ye))
            if tool == "graphprune":  # what is deployed: the distilled student, exported again, in ONNX Runtime
                path = os.path.join(args.tmp, f"resnet56_{target}_{seed}.onnx")
                gpt.export(student, (torch.from_numpy(xe[:2]),), path)
                row["top1_onnxruntime"] = bench_cnn.ort_accuracy(path, xe, ye)
            rows.append(row)
            print(row, flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'model':9} {'tool':14} {'budget':>6} {'reduction':>9} {'seed':>4} {'lr':>7} {'one-shot':>9} "
          f"{'distilled':>9} {'wall s':>7}")
    for r in rows:
        red = r.get("mac_reduction", r.get("param_reduction", 1.0))
        one = r.get("one_shot")
        print(f"{r['model']:9} {r['tool']:14} {r.get('target', 1.0):6.2f} {red:9.2f} {r.get('seed', '-'):>4} "
              f"{r.get('lr', '-'):>7} "
              f"{'-' if one is None else f'{one:.4g}':>9} {r.get('top1', r.get('metric', 0)):9.4g} "
              f"{r.get('distill_seconds', 0):7.0f}")


def main() -> int:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=["cifar", "minilm", "stories"])
    ap.add_argument("--targets", default="2,3")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--lr", default=None, help="learning rate; cifar: a comma list distils every student at each")
    ap.add_argument("--match", default="", help="submodules whose outputs the student also matches (MSE) where "
                    "both keep the teacher's width: cifar layer1,layer2,layer3; minilm m.encoder.layer.0,...")
    ap.add_argument("--windows", type=int, default=800, help="stories: windows after the evaluated tokens "
                    "(128 calibrate, 16 validate, the rest distill)")
    ap.add_argument("--split", choices=["contiguous", "interleaved"], default="interleaved",
                    help="minilm: which STS-B pairs prune and distill, which are evaluated (bench_distill_text)")
    ap.add_argument("--match-tp", action="store_true", help="cifar: prune graphprune to the MACs Torch-Pruning's "
                    "ratio search reached (which overshoots the target)")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="flap", help="cifar: graphprune's pipeline")
    ap.add_argument("--tools", default="graphprune,torch-pruning", help="cifar, minilm: whose students are distilled")
    ap.add_argument("--minilm-passes", default="amp;select:ratio=0.5,round_to=1;compensate",
                    help="minilm: graphprune's passes, separated by ';'")
    ap.add_argument("--val", action="store_true", help="choose a recipe without reading the reported data: cifar "
                    "distils on x[:4000] and scores x[4000:5000]; minilm prunes and distils on the first 400 "
                    "calibration pairs and scores the other 100")
    ap.add_argument("--seeds", default="1", help="distillation seeds: each pruned student is distilled once per "
                    "seed, from the same pruned weights (cifar: data order, flips, crops; minilm, stories: the batch "
                    "order, seed 1 the data's own)")
    ap.add_argument("--example-batch", type=int, default=2, help="cifar: batch of graphprune.torch.prune's example "
                    "input; the export is static, so calibration runs at this batch")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.match = [m for m in args.match.split(",") if m] or None  # one list for every task
    args.tools = [t for t in args.tools.split(",") if t]
    unknown = sorted(set(args.tools) - {"graphprune", "torch-pruning"})
    if unknown or not args.tools:
        ap.error(f"--tools takes graphprune and/or torch-pruning, not {','.join(unknown) or 'nothing'}")
    if args.task != "cifar" and args.lr and "," in args.lr:
        ap.error("--lr takes a list for cifar only; minilm and stories take one learning rate")
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        if args.task == "cifar":
            args.epochs, args.lr = args.epochs or 12, args.lr or "1e-3"
            rows = cifar(args)
        else:
            import bench_distill_text

            args.lr = float(args.lr) if args.lr else None
            rows = getattr(bench_distill_text, args.task)(args)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
