"""Evaluate the metanet criterion against the data-free baselines, one shot, global
selection, no compensation (the protocol is in tools/README.md, "The metanet criterion").

    python tools/eval_metanet.py zoo --zoo zoo --json bench-results/metanet-zoo.json
    python tools/eval_metanet.py real --json bench-results/metanet-real.json

`zoo`: leave one family out. For each family, a metanetwork is trained on the other
families (tools/train_metanet.py's `fit`, the shipped hyperparameters and training target) and, with every
baseline, prunes the family's first `--per-family` networks at each budget; the score is
held-out top-1 (next-character accuracy for charlm). The best single baseline over all
families and budgets is the one the real networks are compared with.

With `--repairs-only`, only the compensation rows: l1, l2, metanet (and its --variant
rows) at macs=0.5, each followed by restore-stats and by refit (on the zoo with each
network's calibration file; on the real networks refit only where it takes seconds).

With `--activations` (zoo: a second metanetwork per fold, trained with the activation
features) or `--metanet-act FILE` (real), every metanet row also runs as metanet-act
(`features=activations`, on the calibration file); `--repair-also amp` adds a criterion's
compensation rows.

`real`: the held-out real networks that classify (CIFAR-10 ResNet-20/32/44/56 on
test_jpeg.npz x[1000:], mnist-8 on the MNIST test set, the shipped digits demo on its
evaluation file) with the shipped metanetwork; the ceiling criteria (wifv, ablate) get
calibration data (CIFAR x[:1000], MNIST's first 1,000, the demo's calibration file).
stories260K and all-MiniLM-L6-v2 are run by tools/bench_stories.py and
tools/bench_minilm.py with `--criteria` naming the same criteria.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

BASELINES = ("l1", "l2", "bn-scale", "l1:roles=in", "fpgm", "lamp")
BUDGETS = (0.67, 0.5, 0.33)
SEEDS = 5
REPAIRS = ("restore-stats", "refit")  # real networks at macs=0.5: compensation after each criterion
CHEAP = ("resnet20", "mnist-8", "digits-demo")  # ablate and refit (minutes per run on the deeper ResNets)


def top1(path: str, data: dict, labels: np.ndarray, batch: int = 256) -> float:
    """Share of argmax over the last axis equal to the labels (per sample or per position)."""
    from graphprune.runtime import session

    sess = session(path)
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    batch = fixed if isinstance(fixed, int) and fixed > 0 else batch  # a fixed batch (mnist-8: 1)
    x = next(iter(data.values()))
    hits = 0
    for s in range(0, len(x), batch):
        out = sess.run(None, {name: x[s:s + batch]})[0]
        hits += int((out.argmax(-1) == labels[s:s + batch]).sum())
    return hits / labels.size


def prune_score(path, criterion, budget, tmp, data, labels, calib=None, repair=None) -> tuple[float, float]:
    """(metric, MACs kept) after one-shot global pruning to `budget` of the MACs (then the
    `repair` pass, with calibration, where one is named)."""
    from graphprune.pipeline import Options, prune

    out = os.path.join(tmp, "pruned.onnx")
    passes = [criterion, f"select:macs={budget},scope=global,strict=false,round_to=1"] + (["remove", repair] if repair else [])
    opts = Options(passes=passes, output=out, quiet=True, calib=calib, verify=False)
    rep = prune(path, opts)
    kept = rep["after"]["macs"] / rep["before"]["macs"]
    return top1(out if os.path.exists(out) else path, data, labels), kept


def criteria(args, metanet: str) -> list[tuple[str, str]]:
    """(pass spec, row label): the baselines (unless --only-metanet), then metanet and its --variant rows."""
    rows = [] if args.only_metanet else [(c, c) for c in BASELINES] + [(f"random:seed={s}", "random") for s in range(SEEDS)]
    return rows + [(f"metanet:model={metanet}{extra}", label) for label, extra in args.variants.items()]


def evaluate_net(args, path, data, labels, metanet, tmp, ceiling=None, name="", cheap=False, act=None) -> dict:
    """`act`: a metanetwork with activation features, whose rows (metanet-act, and one per
    --variant) need `ceiling`, the calibration file."""
    rows = {}
    cheap = cheap or name in CHEAP
    calibrated = [(c, c) for c in (("wifv", "ablate:groups=all") if cheap else ("wifv",))]
    acts = [(f"metanet:model={act},features=activations{extra}", "metanet-act" + label[len("metanet"):])
            for label, extra in args.variants.items()] if act else []  # every --variant, also with activations
    calibrated += acts
    names = criteria(args, metanet) + (calibrated if ceiling else [])
    for budget in () if args.repairs_only else BUDGETS:
        for spec, label in names:
            calib = ceiling if (spec, label) in calibrated else None
            try:
                metric, kept = prune_score(path, spec, budget, tmp, data, labels, calib)
            except Exception as e:  # noqa: BLE001 - a criterion that fails is a row, not a crash
                print(f"  {label} at {budget}: {type(e).__name__}: {str(e)[:120]}", flush=True)
                continue
            rows.setdefault(f"{budget}", {}).setdefault(label, []).append((metric, kept))
    magnitude = [] if args.only_metanet else [("l1", "l1"), ("l2", "l2")] + [(c, c) for c in args.repair_also]
    learned = [(f"metanet:model={metanet}{extra}", label) for label, extra in args.variants.items()]
    learned += acts
    for spec, label in (magnitude + learned) if ceiling else ():
        for repair in REPAIRS if cheap else REPAIRS[:1]:
            row = f"{label}+{repair}"
            try:
                rows.setdefault("0.5", {}).setdefault(row, []).append(
                    prune_score(path, spec, 0.5, tmp, data, labels, ceiling, repair))
            except Exception as e:  # noqa: BLE001
                print(f"  {row}: {type(e).__name__}: {str(e)[:120]}", flush=True)
    return {b: {c: [float(np.mean([m for m, _ in v])), float(np.mean([k for _, k in v]))] for c, v in by.items()}
            for b, by in rows.items()}


def zoo_main(args) -> dict:
    from train_metanet import fit, load_zoo

    card = json.load(open(os.path.join(os.path.dirname(HERE), "models", "metanet.json")))
    hp = card["hyperparameters"]
    nets = [n for n in load_zoo(args.zoo, args.target or card.get("training_target", "ablate"), args.activations)
            if n["family"] not in args.exclude_family]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fam, train, held in folds(nets, args.half_family, args.half_train):
            weights = fit([weights_only(n) for n in train], **hp)
            mpath = os.path.join(tmp, f"{fam}.npz")
            np.savez(mpath, **weights)
            act = os.path.join(tmp, f"{fam}-act.npz") if args.activations else None
            if act:
                np.savez(act, **fit(train, **hp))
            for n in held[: args.per_family]:
                with np.load(os.path.join(args.zoo, n["name"] + ".eval.npz")) as d:
                    data = {k: d[k] for k in d.files if k != "labels"}
                    labels = d["labels"]
                calib = os.path.join(args.zoo, n["name"] + ".calib.npz") if args.repairs_only else None
                res = evaluate_net(args, os.path.join(args.zoo, n["name"] + ".onnx"), data, labels, mpath, tmp,
                                   ceiling=calib, cheap=True, act=act)
                out[n["name"]] = {"family": fam, "results": res}
                print(n["name"], json.dumps(res), flush=True)
    return out


def weights_only(net: dict) -> dict:
    """The network with the weight features only (without the activation columns)."""
    from graphprune.metanet.features import NAMES

    return {**net, "features": net["features"][:, :len(NAMES)]}


def folds(nets, half_family=None, half_train=False):
    """(family, training networks, held-out networks): leave one family out; or with
    `half_family`, that family's second half held out, the model trained on the other
    families (and, with `half_train`, the family's first half too)."""
    if not half_family:
        return [(f, [n for n in nets if n["family"] != f], [n for n in nets if n["family"] == f])
                for f in sorted({n["family"] for n in nets})]
    mine = [n for n in nets if n["family"] == half_family]
    first, second = mine[: len(mine) // 2], mine[len(mine) // 2:]
    return [(half_family, [n for n in nets if n["family"] != half_family] + (first if half_train else []), second)]


def real_nets(tmp):
    """(name, onnx path, eval data, labels, calibration npz) of the held-out real networks."""
    import torch

    from bench_cnn import cifar_images, export_onnx, mnist_split
    from cifar_resnet import load_trained

    assets = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "assets")
    x, y = cifar_images()
    np.savez(os.path.join(tmp, "cifar_calib.npz"), x=x[:1000])
    for depth, file in ((20, "resnet20-12fca82f.th"), (32, "resnet32-d509ac18.th"), (44, "resnet44-014dd654.th"),
                        (56, "resnet56-4bfd9763.th")):
        path = os.path.join(tmp, f"resnet{depth}.onnx")
        torch.manual_seed(0)
        export_onnx(load_trained(os.path.join(assets, "cifar10", file), depth), (1, 3, 32, 32), path)
        yield f"resnet{depth}", path, {"x": x[1000:]}, y[1000:], os.path.join(tmp, "cifar_calib.npz")
    mx, my = mnist_split(None)
    np.savez(os.path.join(tmp, "mnist_calib.npz"), Input3=mx[:1000])
    yield "mnist-8", os.path.join(assets, "mnist", "mnist-8.onnx"), {"Input3": mx[1000:]}, my[1000:], \
        os.path.join(tmp, "mnist_calib.npz")
    models = os.path.join(os.path.dirname(HERE), "models")
    with np.load(os.path.join(models, "digits_eval.npz")) as d:
        data, labels = {k: d[k] for k in d.files if k != "labels"}, d["labels"]
    yield "digits-demo", os.path.join(models, "digits_cnn.onnx"), data, labels, os.path.join(models, "digits_calib.npz")


def real_main(args) -> dict:
    out = {}
    metanet = args.metanet or os.path.join(os.path.dirname(HERE), "models", "metanet.npz")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, data, labels, calib in real_nets(tmp):
            if args.only and name not in args.only.split(","):
                continue
            ceiling = None if args.no_ceilings else calib
            out[name] = {"results": evaluate_net(args, path, data, labels, metanet, tmp, ceiling=ceiling, name=name,
                                                 act=args.metanet_act)}
            print(name, json.dumps(out[name]["results"]), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["zoo", "real"])
    ap.add_argument("--zoo", default="zoo")
    ap.add_argument("--per-family", type=int, default=5)
    ap.add_argument("--metanet", help="real: the metanetwork (default models/metanet.npz)")
    ap.add_argument("--only", help="real: comma-separated network names")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=OPTIONS",
                    help="another metanet row, e.g. metanet-lamp=calibrate=lamp")
    ap.add_argument("--only-metanet", action="store_true", help="skip the baselines (to add metanet variants)")
    ap.add_argument("--repairs-only", action="store_true", help="only the compensation rows at macs=0.5 (zoo: "
                    "with each network's 64 calibration samples, restore-stats and refit)")
    ap.add_argument("--no-ceilings", action="store_true", help="real: without the calibration rows (wifv, ablate) "
                    "and the compensation rows")
    ap.add_argument("--target", help="zoo: the metanetworks' training target (train_metanet.py; default the "
                    "shipped one's, from its card)")
    ap.add_argument("--exclude-family", action="append", default=[], help="zoo: leave this family out entirely")
    ap.add_argument("--half-family", help="zoo: hold out only this family's second half (see folds)")
    ap.add_argument("--half-train", action="store_true", help="zoo: with --half-family, train on its first half too")
    ap.add_argument("--activations", action="store_true", help="zoo: also train, per fold, a metanetwork with the "
                    "activation features (train_metanet.py --activations) and add its metanet-act rows")
    ap.add_argument("--metanet-act", help="real: a metanetwork with activation features: metanet-act rows")
    ap.add_argument("--repair-also", action="append", default=[], help="another criterion's compensation rows "
                    "(e.g. amp)")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.variants = {"metanet": ""} | {label: "," + opts for label, opts in (v.split("=", 1) for v in args.variant)}
    result = zoo_main(args) if args.what == "zoo" else real_main(args)
    if args.json:
        from graphprune.report import write_json

        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
