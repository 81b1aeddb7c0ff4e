"""What `channel-norms` costs and gains on a trained ConvNeXt-V2: the MLP hidden channels
of every block, which GRN (global response normalization: each channel's spatial L2 norm
divided by the mean of those norms over the channels) pins by default, pruned one shot
beside Torch-Pruning on the same weights, budgets and channels.

    python tools/bench_convnext.py [--json out.json]

The network (transformers' ConvNextV2ForImageClassification, hidden sizes 32/64, two blocks
per stage, patch size 2) is trained here on scikit-learn's digits (8x8, the demo's split:
training digits for training and calibration, the 500 held-out digits for top-1), seeded.
Both tools prune only the 4x-wide hidden channels (the residual stream and LayerNorms
stay), by the same ratio in every block. The `channel-norms` result is inexact by
design: the GRN mean then runs over the kept channels, as it does in the module that
Torch-Pruning returns. Needs torch, torch-pruning, transformers and scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]


def build(seed: int = 0):
    import torch
    from transformers import ConvNextV2Config, ConvNextV2ForImageClassification

    torch.manual_seed(seed)
    cfg = ConvNextV2Config(num_channels=1, patch_size=2, hidden_sizes=[32, 64], depths=[2, 2], num_stages=2,
                           num_labels=10, drop_path_rate=0.0)
    return ConvNextV2ForImageClassification(cfg)


def train(model, x, y, epochs=40, seed=0):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(yt))
        for s in range(0, len(yt), 64):
            idx = perm[s:s + 64]
            loss = F.cross_entropy(model(xt[idx] + 0.05 * torch.randn_like(xt[idx])).logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


class Logits:
    """The classifier returning a plain tensor (for export and for Torch-Pruning)."""

    def __new__(cls, model):
        import torch

        class _Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m(x).logits

        return _Wrap(model).eval()


def export(module, path):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(2, 1, 8, 8),), path, dynamo=True, verbose=False,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    return path


def torch_top1(module, x, y):
    import torch

    with torch.no_grad():
        return float((module(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def tp_prune(module, ratio, criterion="l1"):
    """Torch-Pruning on the same channels: pwconv1's outputs (with GRN's parameters and
    pwconv2's inputs); every other layer is ignored."""
    import copy

    import torch
    import torch_pruning as tp

    m = copy.deepcopy(module)
    layers = dict(m.named_modules())
    ignored = [mod for name, mod in layers.items() if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d))
               and not name.endswith("pwconv1")]
    unwrapped = [(mod.weight, 3) for name, mod in layers.items() if name.endswith(".grn")]
    unwrapped += [(mod.bias, 3) for name, mod in layers.items() if name.endswith(".grn")]
    imp = tp.importance.GroupMagnitudeImportance(p=1 if criterion == "l1" else 2)
    pruner = tp.pruner.MetaPruner(m, torch.zeros(1, 1, 8, 8), importance=imp, pruning_ratio=ratio,
                                  ignored_layers=ignored, unwrapped_parameters=unwrapped)
    pruner.step()
    return m.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", default="0.5,0.75,0.9")
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch

    from graphprune.evaluate import accuracy
    from graphprune.pipeline import Options, prune
    from train_digits import split

    torch.set_num_threads(2)
    x, y, tr, held = split(0)
    model = train(build(), x[tr], y[tr])
    net = Logits(model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dense = export(net, os.path.join(tmp, "convnextv2.onnx"))
        calib = os.path.join(tmp, "calib.npz")
        np.savez(calib, pixel_values=x[tr[:256]])
        names = {i.name for i in __import__("onnx").load(dense).graph.input}
        data = {next(iter(names)): x[held]}
        base = accuracy(dense, data, y[held])
        rows.append({"tool": "dense", "pipeline": "-", "ratio": 0.0, "top1": base, "torch_top1": torch_top1(net, x[held], y[held])})
        print(rows[-1], flush=True)
        if names != {"pixel_values"}:
            np.savez(calib, **{next(iter(names)): x[tr[:256]]})
        for ratio in [float(r) for r in args.ratios.split(",")]:
            for label, passes, cal in (("l1", ["channel-norms", "l1"], None), ("l2", ["channel-norms", "l2"], None),
                                       ("wifv + refit (calibration)", ["channel-norms", "wifv", "refit"], calib)):
                out = os.path.join(tmp, "p.onnx")
                rep = prune(dense, Options(passes=[*passes[:2], f"select:ratio={ratio},round_to=1", *passes[2:]], output=out,
                                           calib=cal, quiet=True))
                rows.append({"tool": "graphprune", "pipeline": label, "ratio": ratio,
                             "params_kept": rep["after"]["params"] / rep["before"]["params"],
                             "top1": accuracy(out, data, y[held])})
                print(rows[-1], flush=True)
            for crit in ("l1", "l2"):
                try:
                    pruned = tp_prune(net, ratio, crit)
                    kept = sum(p.numel() for p in pruned.parameters()) / sum(p.numel() for p in net.parameters())
                    rows.append({"tool": "torch-pruning", "pipeline": crit, "ratio": ratio, "params_kept": kept,
                                 "top1": torch_top1(pruned, x[held], y[held])})
                except Exception as e:  # noqa: BLE001 - report what Torch-Pruning does
                    rows.append({"tool": "torch-pruning", "pipeline": crit, "ratio": ratio,
                                 "error": f"{type(e).__name__}: {e}".splitlines()[0]})
                print(rows[-1], flush=True)
    print(f"\n{'tool':14} {'pipeline':28} {'ratio':>5} {'params kept':>11} {'top-1':>7}")
    for r in rows:
        kept = f"{r['params_kept']:.3f}" if "params_kept" in r else "-"
        top = f"{r['top1'] * 100:6.2f}%" if "top1" in r else r.get("error", "")[:60]
        print(f"{r['tool']:14} {r['pipeline']:28} {r['ratio']:5.2f} {kept:>11} {top:>7}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
