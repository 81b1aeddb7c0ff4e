"""How the calibration default (`graphprune m.onnx --calib c.npz`, no criterion named) was
chosen: candidate recovery stages after FLAP-allocated wifv scores, on development data
that no reported table evaluates on.

    python tools/bench_defaults.py [--json out.json]

- CNN: the CIFAR-10 ResNet-20 (its export keeps BatchNorm), calibration `x[:500]`,
  development top-1 on `x[500:1000]`: both inside the calibration split of the CIFAR
  tables, whose evaluation images `x[1000:]` are never read here. At the default budget
  (half the MACs, `round_to=auto`) and at 3x fewer MACs (round_to=1).
- Transformer: stories260K, calibration on 64 windows of 256 tokens and development NLL
  on the next 32, all after the tokens the stories tables evaluate and calibrate on; at 20%
  and 50% of the parameters (FLAP allocation).

The candidate with the best mean rank over the four settings becomes the default
(pipeline.CALIBRATION_DEFAULTS); the reported tables then measure it on other networks
and data. Needs torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import bench_cnn  # noqa: E402
import bench_stories  # noqa: E402
import llama2c  # noqa: E402

SCORE = "wifv:normalize=standardize"
CANDIDATES = {
    "compensate:lsq": ["compensate:method=lsq"],
    "compensate:lsq + restore-stats": ["compensate:method=lsq", "restore-stats"],
    "compensate:lsq + restore-stats (BN only)": ["compensate:method=lsq", "restore-stats:rescale=false"],
    "refit": ["refit"],
    "refit + restore-stats": ["refit", "restore-stats"],
    "refit + restore-stats (BN only)": ["refit", "restore-stats:rescale=false"],
    "restore-stats": ["restore-stats"],
    "none": [],
}


def cnn_rows(tmp, rows):
    import torch

    from bench_calib_cnn import calib_split
    from cifar_resnet import load_trained
    from graphprune.pipeline import Options, prune

    torch.set_num_threads(2)
    ckpt = next(f for f in os.listdir(os.path.join(bench_cnn.ASSETS, "cifar10")) if f.startswith("resnet20-"))
    model = load_trained(os.path.join(bench_cnn.ASSETS, "cifar10", ckpt), 20).eval()
    x, y = calib_split()
    calib, inputs = os.path.join(tmp, "calib.npz"), os.path.join(tmp, "inputs.npz")
    np.savez(calib, x=x[:500])
    np.savez(inputs, x=x[500:564])  # verification on development images; calibration keeps all 500
    dense = bench_cnn.export_onnx(model, (1, 3, 32, 32), os.path.join(tmp, "resnet20.onnx"))
    print(f"ResNet-20 dense development top-1 {bench_cnn.ort_accuracy(dense, x[500:], y[500:]) * 100:.2f}%")
    for setting, select in (("default budget", "select:macs=0.5,scope=global,round_to=auto,strict=false"),
                            ("3x MACs", "select:macs=0.3333,scope=global,round_to=1")):
        for label, after in CANDIDATES.items():
            out = os.path.join(tmp, "p.onnx")
            rep = prune(dense, Options(passes=[SCORE, select, *after], output=out, calib=calib, inputs=inputs,
                                       quiet=True))
            rows.append({"model": "resnet20", "setting": setting, "candidate": label, "higher_is_better": True,
                         "value": bench_cnn.ort_accuracy(out, x[500:], y[500:]),
                         "mac_reduction": rep["before"]["macs"] / rep["after"]["macs"]})
            print(rows[-1], flush=True)


def stories_rows(tmp, rows):
    from graphprune.pipeline import Options, prune
    import onnx

    cfg, w = llama2c.read_model(bench_stories.CKPT)
    tok = llama2c.Tokenizer(bench_stories.TOK)
    skip = 20000 + 128 * 255  # past the evaluated tokens and the stories tables' calibration windows
    windows = [c for c in llama2c.eval_windows(tok, bench_stories.TEXT, n_tokens=96 * 255, skip=skip) if len(c) == 256]
    calib_ids, dev = np.stack(windows[:64]), windows[64:96]
    calib, inputs = os.path.join(tmp, "stories_calib.npz"), os.path.join(tmp, "stories_inputs.npz")
    np.savez(calib, input_ids=calib_ids)
    np.savez(inputs, input_ids=np.stack(dev[:4]))
    dense = os.path.join(tmp, "stories260K.onnx")
    onnx.save(llama2c.build_onnx(cfg, w), dense)
    total = bench_stories.block_params(cfg)
    params = prune(dense, Options(passes=["l1", "select:ratio=0"], dry_run=True))["before"]["params_analysed"]
    print(f"stories260K dense development NLL {llama2c.nll_per_token(bench_stories.ort_logits(dense), dev):.4f}")
    for budget in (0.2, 0.5):
        select = f"select:params={1 - budget * total / params:.6f},scope=global,round_to=1"
        for label, after in CANDIDATES.items():
            out = os.path.join(tmp, "s.onnx")
            prune(dense, Options(passes=[SCORE, select, *after], output=out, calib=calib, inputs=inputs, quiet=True))
            rows.append({"model": "stories260K", "setting": f"{budget:.0%} of block params", "candidate": label,
                         "higher_is_better": False,
                         "value": llama2c.nll_per_token(bench_stories.ort_logits(out), dev)})
            print(rows[-1], flush=True)


def ranks(rows):
    settings = sorted({(r["model"], r["setting"]) for r in rows})
    total = {c: 0.0 for c in CANDIDATES}
    for m, s in settings:
        these = [r for r in rows if (r["model"], r["setting"]) == (m, s)]
        these.sort(key=lambda r: -r["value"] if r["higher_is_better"] else r["value"])
        for i, r in enumerate(these):
            total[r["candidate"]] += (i + 1) / len(settings)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cnn_rows(tmp, rows)
        stories_rows(tmp, rows)
    mean_rank = ranks(rows)
    settings = sorted({(r["model"], r["setting"]) for r in rows})
    print(f"\n{'candidate (after ' + SCORE + ')':44}" + "".join(f"{m[:9] + ' ' + s[:12]:>24}" for m, s in settings)
          + f"{'mean rank':>10}")
    for c in sorted(CANDIDATES, key=mean_rank.get):
        vals = {(r["model"], r["setting"]): r["value"] for r in rows if r["candidate"] == c}
        cells = "".join(f"{vals[k] * (100 if k[0] == 'resnet20' else 1):>24.3f}" for k in settings)
        print(f"{c:44}{cells}{mean_rank[c]:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "mean_rank": mean_rank}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
