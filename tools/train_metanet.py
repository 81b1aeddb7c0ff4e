"""Train the metanet criterion on the zoo (tools/metanet_zoo.py) and write the shipped
metanetwork and its card.

    python tools/metanet_masks.py --zoo zoo                               # the masks-groups target
    python tools/train_metanet.py --zoo zoo --target masks-groups         # ship (as models/metanet.json says)
    python tools/train_metanet.py --zoo zoo --target masks-groups --cv    # leave-one-family-out

The network: an ensemble of `--members` MLPs (inputs: the unit's features and its group's
mean of them; hidden `--hidden` x `--depth`, ReLU; one output, the predicted log of the
unit's target: `ablate`, or with `--target masks-groups` ablate rescaled per group, see
load_zoo). The loss compares predictions and targets after removing each
network's mean (only differences inside a network matter to a global selection), plus
`--within` times the same after removing each group's mean (the order inside a group,
which decides local selection and the boundary of global selection). Pinned units are
context, not targets. Targets are floored at 1e-2 (METANET_FLOOR) of the network's median, so units
whose removal changes nothing do not dominate the loss.

--cv trains once per family with that family left out and reports, on the left-out
family, the mean within-group Spearman correlation and the "removed-importance" of a
global selection at half the prunable MACs (the true ablate mass of the units it would
remove, relative to the mass an oracle would remove; 1 is perfect) for metanet and for
the magnitude features alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FLOOR = float(os.environ.get("METANET_FLOOR", "1e-2"))
sys.path.insert(0, os.path.dirname(HERE))

from graphprune.metanet.act_features import ACT  # noqa: E402
from graphprune.metanet.features import NAMES  # noqa: E402
from graphprune.metanet.scorer import FORMAT, Scorer  # noqa: E402


TARGET_TEXT = {
    "ablate": "log of the ablate criterion (relative output change with the unit switched off), "
              "64 held-out samples per zoo network",
    "masks-groups": "log of the ablate criterion rescaled per group to the mean of its units' additive "
                    "random-mask coefficients (tools/metanet_masks.py), 64 held-out samples per zoo network",
    "masks-units": "log of each unit's additive random-mask coefficient (tools/metanet_masks.py; worth it only "
                   "with many masks per unit), 64 held-out samples per zoo network",
    "fill": "log of ablate:fill=mean (relative output change with the unit replaced by its mean: what is left "
            "after a bias correction; tools/metanet_fill.py), 64 held-out samples per zoo network",
    "fill-groups": "log of ablate:fill=mean rescaled per group as masks-groups rescales ablate "
                   "(tools/metanet_fill.py, tools/metanet_masks.py), 64 held-out samples per zoo network",
}
TARGETS = tuple(TARGET_TEXT)


def load_zoo(zoo: str, target: str = "ablate", activations: bool = False) -> list[dict]:
    """The zoo's networks with features and the training target `y`: the log of the
    single-unit `ablate` target, or with `masks-groups` the same rescaled per group so that
    the group's mean is the mean of its units' random-mask coefficients
    (tools/metanet_masks.py): the order inside a group from single units, the cost of a
    group's units against other groups' from removing many at once. `masks-units` takes
    the coefficients themselves (floored like every target). `fill` is the single-unit
    `ablate:fill=mean` target (tools/metanet_fill.py), `fill-groups` the same with the
    factors of masks-groups. With `activations`, the features end with the activation
    columns (graphprune/metanet/act_features.py) on 64 samples the target did not see (the
    first of the network's evaluation file), as a user's calibration data would be."""
    manifest = json.load(open(os.path.join(zoo, "manifest.json")))
    nets = []
    for name, entry in sorted(manifest.items()):
        path = os.path.join(zoo, name + ".units.npz")
        if "error" in entry or not os.path.exists(path):
            continue
        with np.load(path) as d:
            net = {k: d[k] for k in d.files}
        free = ~net["pinned"]
        if free.sum() < 4:
            continue
        fill = _extra(zoo, name, "fill") if target.startswith("fill") else None
        if target in ("masks-groups", "masks-units", "fill-groups"):
            coef = _extra(zoo, name, "masks")
            net["target"] = coef.astype(np.float64) if target == "masks-units" else group_rescaled(net, coef, fill)
        elif fill is not None:
            net["target"] = fill
        mid = np.median(net["target"][free])
        if not mid > 0:
            continue
        net["y"] = np.log(np.maximum(net["target"], FLOOR * mid))
        calib = activation_samples(zoo, name) if activations else None
        net["features"], net["l2"] = current_features(os.path.join(zoo, name + ".onnx"), net["gid"], calib)
        net.update(name=name, family=entry["family"])
        nets.append(net)
    return nets


def _extra(zoo: str, name: str, kind: str) -> np.ndarray:
    """`target` of <name>.<kind>.npz (masks: tools/metanet_masks.py, fill: tools/metanet_fill.py)."""
    path = os.path.join(zoo, f"{name}.{kind}.npz")
    if not os.path.exists(path):
        raise SystemExit(f"train_metanet: {path} is missing; run tools/metanet_{kind}.py --zoo {zoo}")
    return np.load(path)["target"].astype(np.float64)


def group_rescaled(net: dict, coef: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """The ablate target (or `base`) times, per group, mean(mask coefficients) / mean(ablate)
    over its free units (a group whose coefficients average at or below zero gets the
    smallest positive factor of the network's groups)."""
    free, group, ablate = ~net["pinned"], net["group"], net["target"].astype(np.float64)
    factors = {}
    for g in np.unique(group[free]):
        sel = free & (group == g)
        a = ablate[sel].mean()
        factors[g] = coef[sel].mean() / a if a > 0 and coef[sel].mean() > 0 else np.nan
    good = [f for f in factors.values() if np.isfinite(f)]
    low = min(good) if good else 1.0
    out = (ablate if base is None else base).copy()
    for g, f in factors.items():
        out[group == g] *= f if np.isfinite(f) else low
    return out


def activation_samples(zoo: str, name: str, n: int = 64) -> dict:
    """The first `n` samples of the network's evaluation file, as calibration inputs."""
    with np.load(os.path.join(zoo, name + ".eval.npz")) as d:
        return {k: d[k][:n] for k in d.files if k != "labels"}


def current_features(onnx_path: str, gid: np.ndarray, calib=None) -> np.ndarray:
    """The features this version of graphprune computes, for the units the targets name
    (followed by the activation columns on `calib`, an .npz path or one dict of samples,
    where given)."""
    from graphprune.context import Context
    from graphprune.loading import load_model
    from graphprune.metanet.features import features
    from graphprune.pipeline import run_passes
    from graphprune.scoring import combine, magnitude_parts, normalize

    ctx = Context(load_model(onnx_path), quiet=True)
    run_passes(ctx, ["normalize"])
    ids = list(dict.fromkeys(gid.tolist()))
    groups = {g.id: g for g in ctx.analysis().groups}
    if calib:
        from graphprune.calibration import Calibration
        from graphprune.probes import graph_input_meta

        source = [calib] if isinstance(calib, dict) else calib  # one batch of samples, or an .npz path
        ctx.calibration = Calibration(source, graph_input_meta(ctx.model), batch=32, quiet=True)
    feats = features([groups[i] for i in ids], ctx.model, ctx if calib else None)
    inits = ctx.model.graph.initializers  # the l2 baseline's scores (mean-normalised), for comparison
    l2 = [normalize(combine(magnitude_parts(groups[i], inits, ("out", "in", "bn_scale"), 2.0), "mean", groups[i].n_units),
                    "mean") for i in ids]
    return np.concatenate([feats[i] for i in ids]), np.concatenate(l2)


def group_inputs(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The unit's scaled features and its group's mean of them, as Scorer.inputs builds them."""
    sums = np.zeros((group.max() + 1, x.shape[1]))
    np.add.at(sums, group, x)
    means = sums / np.bincount(group)[:, None]
    return np.concatenate([x, means[group]], axis=1)


def tensors(nets, mu, sd):
    xs, ys, net_ids, grp_ids, masks = [], [], [], [], []
    offset = 0
    for i, n in enumerate(nets):
        xs.append(group_inputs((n["features"] - mu) / sd, n["group"]))
        ys.append(n["y"])
        net_ids.append(np.full(len(n["y"]), i))
        grp_ids.append(n["group"] + offset)
        offset += n["group"].max() + 1
        masks.append(~n["pinned"])
    cat = lambda a, t: torch.as_tensor(np.concatenate(a), dtype=t)  # noqa: E731
    return (cat(xs, torch.float32), cat(ys, torch.float32), cat(net_ids, torch.long), cat(grp_ids, torch.long),
            cat(masks, torch.bool))


def centred(v, ids, mask):
    n = int(ids.max()) + 1
    w = mask.float()
    s = torch.zeros(n).index_add_(0, ids, v * w)
    c = torch.zeros(n).index_add_(0, ids, w).clamp(min=1)
    return v - (s / c)[ids]


def fit(nets, hidden=32, depth=2, members=3, within=1.0, epochs=400, seed=0, pairwise=0.0):
    allx = np.concatenate([n["features"] for n in nets])
    mu, sd = allx.mean(0), allx.std(0) + 1e-6
    x, y, net_ids, grp_ids, mask = tensors(nets, mu, sd)
    # pairs inside groups, for the ranking term: each free unit against random free partners
    free = torch.nonzero(mask)[:, 0]
    order = free[torch.argsort(grp_ids[free], stable=True)]
    gsorted = grp_ids[order]
    starts = torch.searchsorted(gsorted, gsorted, right=False)
    sizes = torch.searchsorted(gsorted, gsorted, right=True) - starts
    layers = []
    for m in range(members):
        torch.manual_seed(seed * 100 + m)
        dims = [x.shape[1]] + [hidden] * depth + [1]
        mods = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        net = torch.nn.Sequential(*mods[:-1])
        opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(epochs):
            p = net(x)[:, 0]
            err_net = centred(p, net_ids, mask) - centred(y, net_ids, mask)
            err_grp = centred(p, grp_ids, mask) - centred(y, grp_ids, mask)
            loss = (err_net[mask] ** 2).mean() + within * (err_grp[mask] ** 2).mean()
            if pairwise:
                j = order[starts + (torch.rand(len(order)) * sizes).long()]
                dy = y[order] - y[j]
                keep = dy.abs() > 0.1
                margin = (p[order] - p[j]) * torch.sign(dy)
                loss = loss + pairwise * torch.nn.functional.softplus(-margin[keep]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        layers.append([(mod.weight.detach().numpy().T, mod.bias.detach().numpy()) for mod in net if isinstance(mod, torch.nn.Linear)])
    names = NAMES + ACT if allx.shape[1] == len(NAMES) + len(ACT) else NAMES
    weights = {"format": np.array(FORMAT), "names": np.array(names), "mu": mu, "sd": sd}
    for i in range(depth + 1):
        weights[f"w{i}"] = np.stack([m[i][0] for m in layers]).astype(np.float32)
        weights[f"b{i}"] = np.stack([m[i][1] for m in layers]).astype(np.float32)
    return weights


def predict(weights: dict, net: dict) -> np.ndarray:
    """Scorer's prediction for every unit of a zoo network."""
    scorer = Scorer(weights=weights)
    out = np.empty(len(net["y"]))
    for gi in np.unique(net["group"]):
        sel = net["group"] == gi
        out[sel] = scorer.predict(net["features"][sel])
    return out


def spearman(a, b) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return np.nan
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def removed_mass(score, net) -> float:
    """True ablate mass removed by a global selection of half the prunable MACs by `score`
    (lowest first), divided by the mass the oracle (the target itself) removes."""
    free = np.flatnonzero(~net["pinned"])
    cost = np.maximum(net["macs"][free], 1e-9)
    need = cost.sum() / 2

    def mass(s):
        order = free[np.argsort(s[free], kind="stable")]
        took = np.cumsum(np.maximum(net["macs"][order], 1e-9)) <= need
        return net["target"][order[took]].sum()

    oracle = mass(net["target"])
    return float(mass(score) / oracle) if oracle > 0 else np.nan


def evaluate(weights, nets) -> dict:
    rows = {"spearman": [], "spearman_l2": [], "mass": [], "mass_strength": [], "mass_l2": []}
    k = NAMES.index("strength_net_z")
    for n in nets:
        p = predict(weights, n)
        rows["spearman"] += [spearman(p[(n["group"] == g) & ~n["pinned"]], n["y"][(n["group"] == g) & ~n["pinned"]])
                             for g in np.unique(n["group"])]
        rows["mass"].append(removed_mass(p, n))
        rows["mass_strength"].append(removed_mass(n["features"][:, k], n))
        rows["mass_l2"].append(removed_mass(n["l2"], n))
        rows["spearman_l2"] += [spearman(n["l2"][(n["group"] == g) & ~n["pinned"]], n["y"][(n["group"] == g) & ~n["pinned"]])
                                for g in np.unique(n["group"])]
    return {k: round(float(np.nanmean(v)), 3) for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default="zoo")
    ap.add_argument("--out", default="models/metanet.npz")
    ap.add_argument("--cv", action="store_true")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--depth", type=int, default=0)
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--within", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pairwise", type=float, default=0.0, help="weight of a logistic ranking loss on pairs in a group")
    ap.add_argument("--target", choices=TARGETS, default="ablate", help="the training target (see load_zoo)")
    ap.add_argument("--activations", action="store_true", help="add the activation features (metanet:features="
                    "activations; the default --out is then models/metanet_act.npz)")
    ap.add_argument("--exclude-family", action="append", default=[], help="train without this family (the shipped "
                    "metanetworks predate the zoo's `stages` family)")
    args = ap.parse_args()
    if args.activations and args.out == "models/metanet.npz":
        args.out = "models/metanet_act.npz"
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    nets = [n for n in load_zoo(args.zoo, args.target, args.activations) if n["family"] not in args.exclude_family]
    hp = dict(hidden=args.hidden, depth=args.depth, members=args.members, within=args.within, epochs=args.epochs,
              seed=args.seed, pairwise=args.pairwise)
    if args.cv:
        results = {}
        for fam in sorted({n["family"] for n in nets}):
            w = fit([n for n in nets if n["family"] != fam], **hp)
            results[fam] = evaluate(w, [n for n in nets if n["family"] == fam])
            print(fam, results[fam], flush=True)
        print(json.dumps({"hyperparameters": hp, "leave_one_family_out": results}))
        return
    weights = fit(nets, **hp)
    tmp = args.out + ".tmp.npz"
    np.savez(tmp, **weights)
    os.replace(tmp, args.out)
    manifest = open(os.path.join(args.zoo, "manifest.json"), "rb").read()
    card = {"file": os.path.basename(args.out), "format": FORMAT, "features": [str(n) for n in weights["names"]],
            "inputs": "unit features scaled by mu/sd, then their mean over the unit's group",
            "target": TARGET_TEXT[args.target], "training_target": args.target,
            "hyperparameters": hp, "zoo": {"networks": len(nets), "families": sorted({n["family"] for n in nets}),
                                           "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                                           "units": int(sum(len(n["y"]) for n in nets))},
            "command": f"python tools/metanet_zoo.py --out zoo --count {len(json.loads(manifest))} && "
                       + ("python tools/metanet_masks.py --zoo zoo && " if args.target.startswith("masks")
                          or args.target == "fill-groups" else "")
                       + ("python tools/metanet_fill.py --zoo zoo && " if args.target.startswith("fill") else "")
                       + "python tools/train_metanet.py --zoo zoo " + f"--target {args.target} "
                       + ("--activations " if args.activations else "")
                       + "".join(f"--exclude-family {f} " for f in args.exclude_family)
                       + " ".join(f"--{k} {v}" for k, v in hp.items()),
            "sha256": hashlib.sha256(open(args.out, "rb").read()).hexdigest()}
    card_path = os.path.splitext(args.out)[0] + ".json"
    old = json.load(open(card_path)) if os.path.exists(card_path) else {}
    card["validation"] = old.get("validation", {})  # written by tools/eval_metanet.py
    with open(card_path, "w") as f:
        json.dump(card, f, indent=1)
    print(json.dumps({k: card[k] for k in ("zoo", "sha256")}))


if __name__ == "__main__":
    main()
