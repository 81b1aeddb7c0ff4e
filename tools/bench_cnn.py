"""One-shot channel pruning of real trained CNNs: graphprune vs Torch-Pruning.

Models: the CIFAR-10 ResNet-20/56 checkpoints and the ONNX-zoo mnist-8 from
../shared/assets. For each MAC reduction (1.5x, 2x, 3x) and criterion (l1, l2, bn-scale,
random) it prints top-1 on the evaluation split, the tool's wall time and ONNX Runtime
latency before/after (median of interleaved runs), for:

  graphprune   block-internal channels only (the ones Torch-Pruning can prune here),
               each group losing the same fraction; the MAC target is met exactly
  graphprune+  every group, the residual streams through the Slice+Pad shortcuts too
  gp-auto      every group with round_to=auto (channel counts on ONNX Runtime's CPU block)
  torch-prune  Torch-Pruning on the same weights and budget (ratio searched to the MACs;
               its time includes that search), exported to ONNX for the latency column

MACs are those of Conv/Gemm/MatMul, counted the same way for both tools.
Needs torch and torch-pruning (benchmark environment only):
    pip install torch==2.13.0 torch-pruning
    python tools/bench_cnn.py --json bench-results/cnn.json
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import logging
import os
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(HERE, "..", "..", "shared", "assets")
sys.path.insert(0, HERE)

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

CRITERIA = ("l1", "l2", "bn-scale", "random")


# -- data ------------------------------------------------------------------------------
def cifar_images(part: slice = slice(None)):
    """Images (NCHW, normalized as the checkpoints were trained) and labels of
    test_jpeg.npz[part]."""
    data = np.load(os.path.join(ASSETS, "cifar10", "test_jpeg.npz"))
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    x = data["x"][part].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return ((x - mean) / std).astype(np.float32), data["y"][part]


def cifar_split(limit: int | None):
    x, y = cifar_images(slice(1000, None))
    return (x[:limit], y[:limit]) if limit else (x, y)


def mnist_split(limit: int | None):
    with gzip.open(os.path.join(ASSETS, "mnist", "t10k-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32)
    with gzip.open(os.path.join(ASSETS, "mnist", "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return (x[:limit], y[:limit]) if limit else (x, y)


# -- models ----------------------------------------------------------------------------
def mnist_torch(onnx_path: str):
    """mnist-8 rebuilt in torch from its own ONNX weights, so both tools prune the same."""
    import torch
    import torch.nn as nn

    from graphprune.context import Context
    from graphprune.loading import load_model
    from graphprune.pipeline import run_passes

    ctx = Context(load_model(onnx_path))
    run_passes(ctx, ["normalize"])
    inits = {k: v.const_value.numpy() for k, v in ctx.model.graph.initializers.items()}

    class Mnist8(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 5, padding=2)
            self.conv2 = nn.Conv2d(8, 16, 5, padding=2)
            self.fc = nn.Linear(256, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.conv1(x)), 2, 2)
            x = torch.max_pool2d(torch.relu(self.conv2(x)), 3, 3)
            return self.fc(torch.flatten(x, 1))

    m = Mnist8()
    with torch.no_grad():
        m.conv1.weight.copy_(torch.from_numpy(inits["Parameter5"]))
        m.conv1.bias.copy_(torch.from_numpy(inits["Parameter6"].reshape(-1)))
        m.conv2.weight.copy_(torch.from_numpy(inits["Parameter87"]))
        m.conv2.bias.copy_(torch.from_numpy(inits["Parameter88"].reshape(-1)))
        w = next(v for k, v in inits.items() if v.shape == (256, 10))
        m.fc.weight.copy_(torch.from_numpy(w.T.copy()))
        m.fc.bias.copy_(torch.from_numpy(inits["Parameter194"].reshape(-1)))
    return m.eval()


def export_onnx(module, shape, path):
    import torch

    torch.onnx.export(module, (torch.randn(*shape),), path, dynamo=False, do_constant_folding=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    return path


def torch_macs(module, shape) -> float:
    """Conv/Linear multiply-accumulates, counted as graphprune counts them."""
    import torch
    import torch.nn as nn

    total = [0.0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total[0] += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        module(torch.randn(*shape))
    for h in hs:
        h.remove()
    return total[0]


def torch_accuracy(module, x, y, batch=500) -> float:
    import torch

    correct = 0
    with torch.no_grad():
        for s in range(0, len(y), batch):
            correct += int((module(torch.from_numpy(x[s:s + batch])).argmax(1).numpy() == y[s:s + batch]).sum())
    return correct / len(y)


# -- Torch-Pruning ---------------------------------------------------------------------
def tp_importance(name):
    import torch_pruning as tp

    return {"l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
            "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
            "bn-scale": lambda: tp.importance.BNScaleImportance(),
            "random": lambda: tp.importance.RandomImportance()}[name]()


def tp_prune(model, shape, criterion, ratio, ignored):
    import torch
    import torch_pruning as tp

    torch.manual_seed(0)
    m = copy.deepcopy(model)
    ign = [dict(m.named_modules())[n] for n in ignored]
    pruner = tp.pruner.MetaPruner(m, torch.randn(*shape), importance=tp_importance(criterion),
                                  pruning_ratio=ratio, ignored_layers=ign)
    pruner.step()
    return m.eval()


def tp_at_macs(model, shape, criterion, keep, ignored):
    """Torch-Pruning with the uniform ratio whose MACs first fall to `keep` of dense."""
    dense = torch_macs(model, shape)
    lo, hi, best = 0.0, 0.95, None
    for _ in range(12):
        mid = (lo + hi) / 2
        m = tp_prune(model, shape, criterion, mid, ignored)
        if torch_macs(m, shape) <= keep * dense:
            hi, best = mid, m
        else:
            lo = mid
    if best is None:
        best = tp_prune(model, shape, criterion, hi, ignored)
    return best, torch_macs(best, shape) / dense, hi


def tp_all_groups(name, model, shape, x, y):
    """Torch-Pruning allowed to touch the residual streams (only the classifier ignored)."""
    row = dict(model=name, tool="torch-prune (all groups)", criterion="l1", target=None)
    try:
        pruned = tp_prune(model, shape, "l1", 0.3, ["linear"])
        row["top1_500"] = torch_accuracy(pruned, x, y)
        print(f"torch-prune on every group at ratio 0.3: runs, top-1 {row['top1_500'] * 100:.2f}% on 500 images")
    except Exception as e:  # noqa: BLE001 - the failure is the measurement
        row["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
        print(f"torch-prune on every group at ratio 0.3 fails: {row['error']}")
    return row


# -- graphprune ------------------------------------------------------------------------
def gp_run(path, out, criterion, keep, include, extra=""):
    from graphprune.pipeline import Options, prune

    # round_to=1 unless a variant asks otherwise: the same counts as Torch-Pruning.
    select = f"select:macs={keep}" + (f",include={include}" if include else "") + (extra or ",round_to=1")
    t0 = time.perf_counter()
    report = prune(path, Options(passes=[criterion, select], output=out))
    return report, time.perf_counter() - t0


def ort_accuracy(path, x, y, batch=500):
    from graphprune.evaluate import accuracy

    return accuracy(path, {"x" if "Input3" not in _input_names(path) else "Input3": x}, y, batch)


def _input_names(path):
    from graphprune.runtime import session

    return [i.name for i in session(path).get_inputs()]


def latency(a, b, shape, name):
    from graphprune.bench import latency_pair

    feeds = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    ta, tb = latency_pair(a, b, feeds, repeats=30)
    return ta * 1e3, tb * 1e3


# -- main ------------------------------------------------------------------------------
def bench_model(name, args, tmp, rows):
    import torch

    torch.set_num_threads(2)
    if name == "mnist8":
        onnx_path = os.path.join(ASSETS, "mnist", "mnist-8.onnx")
        model = mnist_torch(onnx_path)
        x, y = mnist_split(args.eval_limit)
        shape, in_name, lat_shape, include, ignored = (1, 1, 28, 28), "Input3", (1, 1, 28, 28), "", ["fc"]
    else:
        from cifar_resnet import load_trained

        depth = int(name.removeprefix("resnet"))
        ckpt = next(f for f in os.listdir(os.path.join(ASSETS, "cifar10")) if f.startswith(f"resnet{depth}-"))
        model = load_trained(os.path.join(ASSETS, "cifar10", ckpt), depth)
        onnx_path = export_onnx(model, (1, 3, 32, 32), os.path.join(tmp, f"{name}.onnx"))
        x, y = cifar_split(args.eval_limit)
        shape, in_name, lat_shape = (1, 3, 32, 32), "x", (32, 3, 32, 32)
        include = "*layer*conv1*"
        # Torch-Pruning cannot follow the Slice+Pad shortcuts: keep it to block-internal channels.
        ignored = ["conv1", "linear"] + [n for n, _ in model.named_modules() if n.endswith(".conv2")]
    dense_acc = ort_accuracy(onnx_path, x, y)
    print(f"\n{name}: dense top-1 {dense_acc * 100:.2f}% on {len(y)} images", flush=True)
    if include and not args.no_tp:
        rows.append(tp_all_groups(name, model, shape, x[:500], y[:500]))
    print(f"{'tool':12} {'crit':9} {'MACx':>5} {'target':>6} {'top-1':>7} {'time s':>7} {'lat ms':>15}")
    for target in args.targets:
        keep = 1.0 / target
        for crit in args.criteria:
            variants = [("graphprune", include, "")] + ([("graphprune+", "", "")] if include else [])
            variants.append(("gp-auto", "", ",round_to=auto"))
            for tool, inc, extra in variants:
                out = os.path.join(tmp, f"{name}_{crit}_{target}_{tool}.onnx")
                try:
                    report, secs = gp_run(onnx_path, out, crit, keep, inc, extra)
                except Exception as e:  # noqa: BLE001 - a failed configuration is a row too
                    print(f"{tool:12} {crit:9} {'-':>5} {target:6.1f} not reached: {' '.join(str(e).split())[:90]}")
                    continue
                acc = ort_accuracy(out, x, y)
                la, lb = latency(onnx_path, out, lat_shape, in_name)
                ratio = report["before"]["macs"] / report["after"]["macs"]
                rows.append(dict(model=name, tool=tool, criterion=crit, target=target, mac_reduction=ratio,
                                 top1=acc, dense_top1=dense_acc, seconds=secs, latency_dense_ms=la,
                                 latency_pruned_ms=lb))
                print(f"{tool:12} {crit:9} {ratio:5.2f} {target:6.1f} {acc * 100:6.2f}% {secs:7.2f} "
                      f"{la:6.2f}->{lb:6.2f}", flush=True)
            if args.no_tp:
                continue
            t0 = time.perf_counter()
            pruned, kept, ratio_used = tp_at_macs(model, shape, crit, keep, ignored)
            secs = time.perf_counter() - t0
            acc = torch_accuracy(pruned, x, y)
            tp_path = export_onnx(pruned, shape, os.path.join(tmp, f"{name}_{crit}_{target}_tp.onnx"))
            dense_for_lat = onnx_path if name != "mnist8" else export_onnx(model, shape, os.path.join(tmp, "m8.onnx"))
            la, lb = latency(dense_for_lat, tp_path, lat_shape, "x")
            rows.append(dict(model=name, tool="torch-prune", criterion=crit, target=target, mac_reduction=1 / kept,
                             top1=acc, dense_top1=dense_acc, seconds=secs, tp_ratio=ratio_used,
                             latency_dense_ms=la, latency_pruned_ms=lb))
            print(f"{'torch-prune':12} {crit:9} {1 / kept:5.2f} {target:6.1f} {acc * 100:6.2f}% {secs:7.2f} "
                  f"{la:6.2f}->{lb:6.2f}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet20,resnet56,mnist8")
    p.add_argument("--targets", default="1.5,2,3")
    p.add_argument("--criteria", default=",".join(CRITERIA))
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N images only")
    p.add_argument("--no-tp", action="store_true", help="skip Torch-Pruning")
    p.add_argument("--json", help="write the rows as JSON")
    args = p.parse_args()
    args.targets = [float(t) for t in args.targets.split(",")]
    args.criteria = args.criteria.split(",")
    if not os.path.isdir(ASSETS):
        sys.exit("../shared/assets not found")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            bench_model(name, args, tmp, rows)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
