"""Train the CIFAR variants of the ResNet-50- and MobileNetV2-shaped CNNs (tools/cnn_shapes.py)
on the CIFAR-10 JPEG split, so that latency benchmarks on those shapes can report accuracy.

Data (../shared/assets/cifar10/test_jpeg.npz, preprocessed as bench_cnn.cifar_images):
trained on x[:5000] (which holds the calibration split x[:1000], as calibration data is
training data in practice), never on x[5000:], which the benchmarks evaluate on. Random
flips and 4-pixel crops, SGD with momentum and a cosine schedule, seeded; the fixed recipe
below was set before any pruning run and not tuned on x[5000:].

The state dict is cached (`--cache`, default ~/.cache/graphprune-bench) under the model's
name and recipe, so benchmarks train once.

    python tools/train_cifar_shapes.py [--models resnet50c,mobilenetv2c] [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MODELS = {"resnet50c": ("resnet50", dict(width=16, classes=10, cifar=True)),
          "mobilenetv2c": ("mobilenetv2", dict(mult=0.5, classes=10, cifar=True))}
RECIPE = dict(train=5000, epochs=15, batch=64, lr=0.05, momentum=0.9, weight_decay=5e-4, seed=0)


def build(name: str):
    import cnn_shapes

    fn, kwargs = MODELS[name]
    return getattr(cnn_shapes, fn)(**kwargs)


def cache_path(name: str, cache: str) -> str:
    key = hashlib.sha256(json.dumps([name, MODELS[name], RECIPE], sort_keys=True).encode()).hexdigest()[:12]
    return os.path.join(cache, f"{name}-{key}.pt")


def default_cache() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "graphprune-bench")


def _augment(x, rng):
    """Random horizontal flips and 4-pixel crops (zero padding), per image."""
    flip = rng.random(len(x)) < 0.5
    x = np.where(flip[:, None, None, None], x[..., ::-1], x)
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    dx, dy = rng.integers(0, 9, len(x)), rng.integers(0, 9, len(x))
    return np.stack([padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32] for i in range(len(x))])


def trained(name: str, cache: str | None = None, quiet: bool = False):
    """The trained module (eval mode), from the cache or trained now."""
    import torch

    from bench_cnn import cifar_images

    path = cache_path(name, cache or default_cache())
    torch.manual_seed(RECIPE["seed"])
    model = build(name)
    if os.path.exists(path):
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    model.train()
    x, y = cifar_images(slice(0, RECIPE["train"]))
    rng = np.random.default_rng(RECIPE["seed"])
    opt = torch.optim.SGD(model.parameters(), lr=RECIPE["lr"], momentum=RECIPE["momentum"],
                          weight_decay=RECIPE["weight_decay"], nesterov=True)
    steps = RECIPE["epochs"] * (len(x) // RECIPE["batch"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, RECIPE["lr"], total_steps=steps, pct_start=0.15)
    t0 = time.perf_counter()
    for epoch in range(RECIPE["epochs"]):
        order = rng.permutation(len(x))
        total = 0.0
        for i in range(len(x) // RECIPE["batch"]):
            idx = order[i * RECIPE["batch"]:(i + 1) * RECIPE["batch"]]
            xb = torch.from_numpy(np.ascontiguousarray(_augment(x[idx], rng)))
            loss = torch.nn.functional.cross_entropy(model(xb), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
        if not quiet:
            print(f"{name} epoch {epoch + 1}/{RECIPE['epochs']}: loss {total / (len(x) // RECIPE['batch']):.3f} "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
    model.eval()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".{os.getpid()}.tmp"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model


def top1(model, part=slice(5000, None)) -> float:
    import torch

    from bench_cnn import cifar_images

    x, y = cifar_images(part)
    with torch.no_grad():
        pred = np.concatenate([model(torch.from_numpy(x[i:i + 500])).argmax(1).numpy() for i in range(0, len(x), 500)])
    return float(np.mean(pred == y) * 100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--cache", default=default_cache())
    args = ap.parse_args()
    for name in args.models.split(","):
        model = trained(name, args.cache)
        print(f"{name}: top-1 {top1(model):.2f}% on x[5000:] ({sum(p.numel() for p in model.parameters())} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
