"""Random-mask targets for the metanet zoo: what a unit costs when it goes together with
many others, as a global selection removes it, rather than alone (the `ablate` target).

    python tools/metanet_masks.py --zoo zoo          # resumes: networks with a .masks.npz are kept

For every zoo network (tools/metanet_zoo.py), K random masks switch off a random share p
(uniform in [0.02, 0.4]) of its free units at once, at least one unit of every group kept,
on the network's 64 calibration samples, the same switch-off as `ablate` (a zero in front
of every consumer of the unit's group). Each mask's output change is the relative squared
change, summed over outputs, as in `ablate`. A ridge fit of the changes on the masks
(change ~ sum of the removed units' coefficients) gives each unit's additive cost: its
`target` in `<name>.masks.npz`, in the order of `<name>.units.npz`. A fifth of the masks
is held out of the fit: `r2` (how much of the held-out changes the additive model explains),
`split_half` (Spearman of the coefficients fitted on two disjoint halves of the masks: how
reliable they are) and `spearman_ablate` (the coefficients against the single-unit target)
are saved beside it and printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from train_metanet import spearman  # noqa: E402
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def draw_masks(group: np.ndarray, free: np.ndarray, count: int, rng) -> np.ndarray:
    """count x units booleans (True: switched off): a share p in [0.02, 0.4] of the free
    units per mask, never every unit of a group."""
    units = len(group)
    out = np.zeros((count, units), bool)
    for k in range(count):
        off = free & (rng.random(units) < rng.uniform(0.02, 0.4))
        for g in np.unique(group[off]):
            members = np.flatnonzero(group == g)
            if off[members].all():
                off[rng.choice(members)] = False
        out[k] = off
    return out


def fit_additive(masks: np.ndarray, change: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Per-unit coefficients b of change ~ masks @ b (ridge, relative to the mean diagonal)."""
    x = masks.astype(np.float64)
    gram = x.T @ x
    lam = ridge * max(float(np.trace(gram)) / max(len(gram), 1), 1e-12)
    return np.linalg.solve(gram + lam * np.eye(len(gram)), x.T @ change)


def changes(onnx_path: str, calib_path: str, gid: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Relative squared output change of each mask on the calibration samples (`ablate`'s
    switch-off, graphprune.passes.ablation.SwitchOff)."""
    from graphprune.calibration import Calibration
    from graphprune.context import Context
    from graphprune.loading import load_model
    from graphprune.passes.ablation import SwitchOff, switchable
    from graphprune.pipeline import run_passes
    from graphprune.probes import graph_input_meta

    model = load_model(onnx_path)
    ctx = Context(model, source=onnx_path, quiet=True)
    calib = Calibration(calib_path, graph_input_meta(model), batch=64, quiet=True)
    run_passes(ctx, ["normalize"])
    groups = {g.id: g for g in ctx.analysis().groups}
    ids = list(dict.fromkeys(gid.tolist()))
    spans = {i: np.flatnonzero(gid == i) for i in ids}  # the group's units, in order, in a mask row
    with SwitchOff(ctx.model, switchable([groups[i] for i in ids], ctx.model), calib, "masks") as switch:
        return np.array([switch.change({i: np.flatnonzero(off[span]) for i, span in spans.items()})
                         for off in masks])


def one(zoo: str, name: str, per_unit: float, low: int, high: int) -> dict:
    with np.load(os.path.join(zoo, name + ".units.npz")) as d:
        gid, group, pinned, ablate = d["gid"], d["group"], d["pinned"], d["target"]
    free = ~pinned
    rng = np.random.default_rng(int(name.rsplit("-", 1)[1]))
    count = int(np.clip(per_unit * free.sum(), low, high))
    t0 = time.perf_counter()
    masks = draw_masks(group, free, count, rng)
    change = changes(os.path.join(zoo, name + ".onnx"), os.path.join(zoo, name + ".calib.npz"), gid, masks)
    fit = np.arange(count) % 5 != 0
    held = ~fit
    coef = fit_additive(masks[fit][:, free], change[fit])
    pred = masks[held][:, free].astype(np.float64) @ coef
    spread = max(float(np.sum((change[held] - change[held].mean()) ** 2)), 1e-30)
    r2 = 1.0 - float(np.sum((pred - change[held]) ** 2)) / spread
    halves = [fit_additive(masks[h::2][:, free], change[h::2]) for h in (0, 1)]
    half = spearman(*halves)  # reliability of the coefficients: two disjoint halves of the masks
    fg = group[free]
    sizes = np.bincount(fg)
    present = np.flatnonzero(sizes)
    means = [np.bincount(fg, h)[present] / sizes[present] for h in halves]
    half_groups = spearman(*means)  # ... and of their group means
    coef = fit_additive(masks[:, free], change)  # the target: all masks
    with_ablate = spearman(coef, ablate[free])
    target = np.zeros(len(gid))
    target[free] = coef
    tmp = os.path.join(zoo, name + ".masks.tmp.npz")  # then renamed: a stopped run leaves no half file
    np.savez(tmp, target=target, r2=r2, split_half=half, split_half_groups=half_groups, masks=count,
             spearman_ablate=with_ablate)
    os.replace(tmp, os.path.join(zoo, name + ".masks.npz"))
    stats = {"r2": r2, "split_half": half, "split_half_groups": half_groups,
             "spearman_ablate": with_ablate, "mean_change": float(change.mean())}
    return {"name": name, "masks": count, **{k: round(float(v), 4) for k, v in stats.items()},
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default="zoo")
    ap.add_argument("--per-unit", type=float, default=3.0, help="masks per free unit")
    ap.add_argument("--min", type=int, default=300)
    ap.add_argument("--max", type=int, default=2000)
    args = ap.parse_args()
    for name in pending(args.zoo, "masks"):
        with np.load(os.path.join(args.zoo, name + ".units.npz")) as d:
            if (~d["pinned"]).sum() < 4:
                continue
        print(json.dumps(one(args.zoo, name, args.per_unit, args.min, args.max)), flush=True)


def pending(zoo: str, kind: str):
    """Names of the zoo's networks that have their units but no <name>.<kind>.npz yet."""
    manifest = json.load(open(os.path.join(zoo, "manifest.json")))
    for name, entry in sorted(manifest.items()):
        if "error" not in entry and os.path.exists(os.path.join(zoo, name + ".units.npz")) \
                and not os.path.exists(os.path.join(zoo, f"{name}.{kind}.npz")):
            yield name


if __name__ == "__main__":
    main()
