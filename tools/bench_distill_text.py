"""The text models of bench_distill.py: all-MiniLM-L6-v2 and stories260K at 50%, each
pruned by graphprune.torch (its pipeline chosen on calibration data in tools/README) and by
Torch-Pruning (its best criterion, Taylor, which also gets labels), then both distilled
with graphprune.torch.distill on the same data with the same recipe.

minilm: 50% of encoder parameters (heads and MLP neurons, the same ratio in every layer,
as in bench_minilm.py). Pruning and distillation see the 1,000 sentences of 500 STS-B dev
pairs; Spearman x100 on the other 1,000 pairs. `--split contiguous`: pairs 0..499 against
500..1499 (the file is ordered by genre: captions against forums and news);
`--split interleaved` (the default): pairs i % 3 == 0 against the rest, every genre on
both sides. Distillation: cosine between the student's and teacher's mean-pooled
sentence embeddings.
stories: 50% of block parameters (graphprune: half the KV heads and MLP neurons;
Torch-Pruning: MLP neurons, it does not prune these heads), as in bench_stories.py.
Pruning calibrates on 128 windows after the first 20,000 tokens; distillation trains on
the windows after those (KL on the next-token logits); a further 16 windows are a
validation set for the recipe. Perplexity on the first 20,000 tokens.
"""

from __future__ import annotations

import itertools
import os
import time

import numpy as np


class _Shuffled:
    """The batches in a new order every epoch, drawn from `seed` (sized, so distill's
    cosine schedule knows its length)."""

    def __init__(self, batches, seed: int):
        self.batches, self.rng = batches, np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter([self.batches[i] for i in self.rng.permutation(len(self.batches))])


def _distill_rows(model_name, pairs, teacher, evaluate, data, args, **kw):
    """Each pruned student distilled once per seed (`--seeds`): seed 1 keeps the data's own
    batch order, as the first rows did; another seed shuffles the batches every epoch."""
    import copy

    import graphprune.torch as gpt

    rows = []
    seeds = [int(v) for v in args.seeds.split(",")]
    for (tool, label, pruned, removed, secs), seed in itertools.product(pairs, seeds):
        student = copy.deepcopy(pruned)
        row = {"model": model_name, "tool": tool, "pipeline": label, "target": 0.5, "seed": seed,
               "param_reduction": 1 / (1 - removed), "removed": removed, "prune_seconds": secs,
               "one_shot": evaluate(student)}
        t0 = time.perf_counter()
        history = gpt.distill(student, teacher, data if seed == 1 else _Shuffled(data, seed), epochs=args.epochs,
                              lr=args.lr, match=args.match, quiet=True, **kw)
        row.update(distill_seconds=time.perf_counter() - t0, loss_first=history[0], loss_last=history[-1],
                   metric=evaluate(student))
        rows.append(row)
        print(row, flush=True)
    return rows


def minilm(args) -> list[dict]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import torch
    from transformers import AutoTokenizer

    import graphprune.torch as gpt
    import minilm_sts as bm
    from bench_minilm import tp_prune

    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    args.epochs, args.lr = args.epochs or 8, args.lr or 1e-4
    tok = AutoTokenizer.from_pretrained(bm.model_dir())
    eval_idx, calib_idx = bm.split(args.split, 500)
    if args.val:  # choosing a recipe: the last 100 calibration pairs are scored instead
        eval_idx, calib_idx = calib_idx[400:], calib_idx[:400]
    sa, sb, gold = bm.load_pairs(eval_idx)
    ba, bb = bm.tokenize(tok, sa), bm.tokenize(tok, sb)
    ca, cb, cgold = bm.load_pairs(calib_idx)

    class Pooled(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.m = bert

        def forward(self, input_ids, attention_mask):
            h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            w = attention_mask[..., None].to(h.dtype)
            return (h * w).sum(1) / w.sum(1).clamp_min(1e-9)

    teacher = Pooled(bm.load_torch())
    enc = bm.encoder_params(teacher.m)
    cosines = []  # of every evaluation, in call order: dense, then one-shot and distilled per row
    evaluate = lambda s: bm.sts_score(bm.torch_embed(s.m), ba, bb, gold, keep=cosines)  # noqa: E731
    rows = [{"model": "minilm", "tool": "dense", "target": 1.0, "metric": evaluate(teacher), "split": args.split}]
    print(rows[-1], flush=True)
    calib = bm.calibration(tok, (ca, cb, cgold), "lengths", args.tmp)  # dicts of equal-length batches
    sentences = ca + cb
    data = [{"input_ids": torch.from_numpy(i), "attention_mask": torch.from_numpy(m)}
            for i, m in bm.tokenize(tok, sentences, batch=32)]
    ids = torch.ones(2, 16, dtype=torch.long)
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", min=2, max=512)}
    t0 = time.perf_counter()
    passes = [p for p in args.minilm_passes.split(";") if p]
    pairs = []
    if "graphprune" in args.tools:
        gp = gpt.prune(teacher, (ids, torch.ones_like(ids)), passes=passes,
                       calib=calib, dynamic_shapes=(dims, dims), quiet=True).module
        label = " + ".join(p for p in passes if not p.startswith("select"))
        pairs.append(("graphprune", label, gp, 1 - bm.encoder_params(gp.m) / enc, time.perf_counter() - t0))
    if "torch-pruning" in args.tools:
        calib_pairs = [(a, b, cgold[i * 64:(i + 1) * 64]) for i, (a, b) in
                       enumerate(zip(bm.tokenize(tok, ca), bm.tokenize(tok, cb)))]
        t0 = time.perf_counter()
        tp = Pooled(tp_prune("taylor", 0.5, calib_pairs))
        pairs.append(("torch-pruning", "taylor (calibration + labels)", tp, 1 - bm.encoder_params(tp.m) / enc,
                      time.perf_counter() - t0))
    distilled = _distill_rows("minilm", pairs, teacher, evaluate, data, args, loss="cosine")
    final = {(r["tool"], r["seed"]): cosines[2 + 2 * i] for i, r in enumerate(distilled)}
    for r in distilled:
        # how closely the student's pair similarities follow the dense model's (less noisy)
        r["agree_dense"] = 100 * bm.spearman(final[(r["tool"], r["seed"])], cosines[0])
        # graphprune's student against Torch-Pruning's, same seed, over resampled pairs
        if r["tool"] == "graphprune" and ("torch-pruning", r["seed"]) in final:
            r["vs_torch_pruning"] = bm.paired_bootstrap(final[("graphprune", r["seed"])],
                                                        final[("torch-pruning", r["seed"])], gold)
            print("graphprune - torch-pruning, seed", r["seed"], r["vs_torch_pruning"], flush=True)
    return rows + distilled


def stories(args) -> list[dict]:
    import torch

    import bench_stories as bs
    import graphprune.torch as gpt
    import llama2c

    torch.set_num_threads(2)
    args.epochs, args.lr = args.epochs or 2, args.lr or 1e-3
    cfg, w = llama2c.read_model(bs.CKPT)
    tok = llama2c.Tokenizer(bs.TOK)
    windows = llama2c.eval_windows(tok, bs.TEXT, n_tokens=20000)
    after = [c for c in llama2c.eval_windows(tok, bs.TEXT, n_tokens=args.windows * 255, skip=20000) if len(c) == 256]
    calib_ids, valid, train = np.stack(after[:128]), after[128:144], np.stack(after[144:])
    print(f"distillation: {len(train)} windows of 256 tokens after the evaluated and calibration ones; "
          f"validation {len(valid)} windows", flush=True)
    teacher = bs.torch_model(cfg, w)
    total = bs.block_params(cfg)

    def block_removed(model):
        return 1 - sum(p.numel() for b in model.layers for p in b.parameters()) / total

    def nll(model, wins):
        with torch.no_grad():
            return llama2c.nll_per_token(lambda t: model(torch.from_numpy(t)[None])[0].numpy(), wins)

    evaluate = lambda m: float(np.exp(nll(m, windows)))  # noqa: E731
    rows = [{"model": "stories", "tool": "dense", "target": 1.0, "metric": evaluate(teacher)}]
    print(rows[-1], flush=True)
    mlp = 3 * cfg["dim"] * cfg["hidden"] * cfg["layers"]
    kv_head = 2 * cfg["head_dim"] * cfg["dim"] * (cfg["heads"] // cfg["kv_heads"] + 1)
    heads_removed = cfg["layers"] * (cfg["kv_heads"] // 2) * kv_head
    example = (torch.from_numpy(calib_ids[:8]),)
    calib = [torch.from_numpy(calib_ids[i:i + 8]) for i in range(0, len(calib_ids), 8)]
    t0, extra = time.perf_counter(), 0.0
    for _ in range(3):  # compensation adds o_proj/down_proj biases: prune further by what they cost
        channels = (0.5 * total + extra - heads_removed) / mlp
        gp = gpt.prune(teacher, example, calib=calib, quiet=True,
                       passes=["wifv", f"select:heads=0.5,channels={channels:.6f},round_to=1",
                               "compensate:method=lsq"]).module
        removed = block_removed(gp)
        if removed >= 0.5 - 5e-4:
            break
        extra += (0.5 - removed) * total
    gp_secs = time.perf_counter() - t0
    t0 = time.perf_counter()
    tp = bs.tp_prune(cfg, w, "taylor", 0.5 * total / mlp, calib_ids)
    tp_secs = time.perf_counter() - t0
    data = [torch.from_numpy(train[i:i + 16]) for i in range(0, len(train), 16)]
    pairs = [("graphprune", "wifv + compensate:lsq (heads + MLP)", gp, removed, gp_secs),
             ("torch-pruning", "taylor (MLP only)", tp, block_removed(tp), tp_secs)]
    rows += _distill_rows("stories", pairs, teacher, evaluate, data, args, temperature=1.0)
    for r, (_, _, student, _, _) in zip(rows[1:], pairs):
        r["validation_ppl"] = float(np.exp(nll(student, valid)))
    return rows
