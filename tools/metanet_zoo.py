"""The metanet's training zoo: small networks of several families, trained here on data
available offline, exported to ONNX through the normal path (graphprune.torch.export), and
measured on their own held-out samples.

    python tools/metanet_zoo.py --out zoo --count 240          # resumes: done networks are kept
    python tools/metanet_zoo.py --out zoo --start 180 --count 210 --family stages   # one family

For network i (family FAMILIES[i % len], seed i, its sizes drawn from the seed) the folder
gets `<name>.onnx`, `<name>.calib.npz` (64 held-out samples), `<name>.eval.npz` (512 other
held-out samples with labels; neither is used in training) and `<name>.units.npz`: per group
the metanet features and the target, the `ablate` criterion (relative output change when
the unit is switched off) measured on the 64 calibration samples. `manifest.json` lists
every network with its family, configuration and held-out accuracy.

No model of ../shared/assets or models/ is used: those are the evaluation. The data are
scikit-learn's digits, the MNIST test images (the first 8,000 to train, the rest held
out) and TinyStories text (characters; the first 85% to train).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from metanet_families import EXTRA, FAMILIES, build, config  # noqa: E402

ASSETS = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "assets")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


# -- data ------------------------------------------------------------------------------
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    x = (d.data[order] / 16.0).astype(np.float32)
    return x, d.target[order].astype(np.int64), 1200


def mnist(size: int = 14):
    with gzip.open(os.path.join(ASSETS, "mnist", "t10k-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    with gzip.open(os.path.join(ASSETS, "mnist", "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    if size == 14:
        x = x.reshape(-1, 1, 14, 2, 14, 2).mean((3, 5))
    return ((x - 0.13) / 0.31).astype(np.float32), y, 8000


def chars(seq: int = 32):
    text = open(os.path.join(ASSETS, "text", "tinystories_val.txt"), encoding="utf-8").read()
    vocab = sorted(set(text))[:95]
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index.get(c, 0) for c in text], np.int64)
    n = len(ids) // (seq + 1)
    win = ids[: n * (seq + 1)].reshape(n, seq + 1)
    return win[:, :-1], win[:, 1:], int(n * 0.85), len(vocab)


def dataset(family: str):
    if family == "mlp":
        return digits()
    if family == "charlm":
        return chars()
    return mnist()


def train(module, x, y, seed: int, epochs: int, lm: bool) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3, weight_decay=float(np.random.default_rng(seed).choice([0.0, 1e-4, 1e-2])))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    steps = epochs * (len(x) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for s in range(0, len(x) - 63, 64):
            i = order[s:s + 64]
            out = module(xt[i])
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), yt[i].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    module.eval()


# -- one network -------------------------------------------------------------------------
def ablated(onnx_path: str, calib_path: str, fill: str = "zero"):
    """The network's Context after `ablate` on every unit (fill=zero or mean), its 64
    calibration samples in batches of 32: the zoo's targets are its scores."""
    from graphprune.calibration import Calibration
    from graphprune.context import Context
    from graphprune.loading import load_model
    from graphprune.pipeline import run_passes
    from graphprune.probes import graph_input_meta

    model = load_model(onnx_path)
    ctx = Context(model, source=onnx_path, quiet=True)
    ctx.calibration = Calibration(calib_path, graph_input_meta(model), batch=32, quiet=True)
    run_passes(ctx, ["normalize", f"ablate:groups=all,normalize=none,samples=64,max_units=100000,fill={fill}"])
    return ctx


def targets(onnx_path: str, calib_path: str) -> dict[str, np.ndarray]:
    """Per unit of every group: features (as this version computes them; the trainer
    recomputes them from the ONNX file and `gid`), ablate target, pinned, MACs, and the
    index and analysis id of its group."""
    from graphprune.metanet.features import features

    ctx = ablated(onnx_path, calib_path)
    groups = [g for g in ctx.analysis().groups if g.n_units and g.id in ctx.scores]
    feats = features(groups, ctx.model)
    return {"features": np.concatenate([feats[g.id] for g in groups]),
            "gid": np.concatenate([np.full(g.n_units, g.id) for g in groups]),
            "target": np.concatenate([ctx.scores[g.id] for g in groups]),
            "group": np.concatenate([np.full(g.n_units, i) for i, g in enumerate(groups)]),
            "pinned": np.concatenate([g.pinned for g in groups]),
            "macs": np.concatenate([g.macs_per_unit if len(g.macs_per_unit) else np.zeros(g.n_units) for g in groups])}


def make(i: int, out: str, family: str) -> dict:
    from graphprune.torch import export

    rng = np.random.default_rng(i)
    c = config(family, rng)
    data = dataset(family)
    x, y, n_train = data[:3]
    vocab = data[3] if family == "charlm" else None
    torch.manual_seed(i)
    module = build(family, c, vocab)
    t0 = time.perf_counter()
    train(module, x[:n_train], y[:n_train], i, {"mlp": 30, "charlm": 2}.get(family, 3), family == "charlm")
    held_x, held_y = x[n_train:], y[n_train:]
    with torch.no_grad():
        pred = module(torch.from_numpy(held_x[64:576])).argmax(-1).numpy()
    acc = float((pred == held_y[64:576]).mean())
    name = f"{family}-{i:04d}"
    onnx_path = os.path.join(out, name + ".onnx")
    export(module, (torch.from_numpy(x[:2]),), onnx_path)
    input_name = __import__("onnx").load(onnx_path, load_external_data=False).graph.input[0].name
    calib_path = os.path.join(out, name + ".calib.npz")
    np.savez(calib_path, **{input_name: held_x[:64]})
    np.savez(os.path.join(out, name + ".eval.npz"), **{input_name: held_x[64:576]}, labels=held_y[64:576])
    units = targets(onnx_path, calib_path)
    np.savez(os.path.join(out, name + ".units.npz"), **units)
    return {"name": name, "family": family, "seed": i, "config": c, "accuracy": acc,
            "units": int(len(units["target"])), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="zoo")
    ap.add_argument("--count", type=int, default=240)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--family", choices=FAMILIES + EXTRA,
                    help="every network of start..count of this family (default: FAMILIES in turn)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, "manifest.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {}
    for i in range(args.start, args.count):
        family = args.family or FAMILIES[i % len(FAMILIES)]
        name = f"{family}-{i:04d}"
        if name in manifest:
            continue
        try:
            manifest[name] = make(i, args.out, family)
        except Exception as e:  # a network the zoo cannot use is recorded, not fatal
            manifest[name] = {"name": name, "family": family, "error": f"{type(e).__name__}: {e}"[:300]}
        print(json.dumps(manifest[name]), flush=True)
        tmp = manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(tmp, manifest_path)


if __name__ == "__main__":
    main()
