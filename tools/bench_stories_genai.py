"""stories260K as ONNX Runtime deploys an LLM: converted to a Hugging Face Llama
(tools/llama2c_hf.py, heads zero-padded to 16 because ONNX Runtime's CPU
GroupQueryAttention takes no other head size; the same function), written by
onnxruntime-genai's model builder (packed-QKV GroupQueryAttention, KV cache as past/present,
genai_config.json), pruned by graphprune at 20% and 50% of the block parameters with a
calibration pipeline, and measured the way a user would:

- perplexity on the usual first 20,000 TinyStories tokens (windows of 256), by ONNX Runtime
  over whole windows without a cache, and by onnxruntime-genai token by token with its cache
  (they must agree: the cache is the pruned model's state);
- greedy generation speed in onnxruntime-genai (tokens/s, median over interleaved runs).

The budget counts the original (unpadded) block parameters; KV heads go per layer (genai
needs one KV-head count for all layers), neurons make up the rest. Depth rows remove whole
residual branches (attention or MLP sublayers) by angular distance instead. Calibration:
windows after the evaluated tokens.

    python tools/bench_stories_genai.py [--budgets 0.2,0.5] [--calib 128] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
import llama2c  # noqa: E402
import llama2c_hf  # noqa: E402

ASSETS = os.path.join(HERE, "..", "..", "shared", "assets")
CKPT = os.path.join(ASSETS, "llama2c", "stories260K.bin")
TOK = os.path.join(ASSETS, "llama2c", "tok512.bin")
TEXT = os.path.join(ASSETS, "text", "tinystories_val.txt")
HEAD_SIZE = 16


def build(folder: str) -> str:
    hf = os.path.join(folder, "hf")
    diff = llama2c_hf.save_hf(CKPT, TOK, hf, HEAD_SIZE)
    out = os.path.join(folder, "dense")
    subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", hf, "-o", out, "-p", "fp32",
                    "-e", "cpu", "-c", os.path.join(folder, "cache")], check=True, capture_output=True)
    print(f"converted: max |logit diff| of the Hugging Face model to the NumPy forward {diff:.2e}")
    return os.path.join(out, "model.onnx")


def feeds_for(ids: np.ndarray, kv_heads: int) -> dict:
    """Whole windows with an empty cache (past length 0)."""
    n, t = ids.shape
    past = np.zeros((n, kv_heads, 0, HEAD_SIZE), np.float32)
    feeds = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((n, t), np.int64)}
    return feeds, past


def save_inputs(path: str, ids: np.ndarray, layers: int, kv_heads: int) -> str:
    feeds, past = feeds_for(ids, kv_heads)
    for i in range(layers):
        feeds[f"past_key_values.{i}.key"] = feeds[f"past_key_values.{i}.value"] = past
    np.savez(path, **feeds)
    return path


def ort_logits(path: str):
    import onnxruntime as ort

    sess = ort.InferenceSession(path)
    pasts = {i.name: np.zeros((1, i.shape[1], 0, HEAD_SIZE), np.float32)
             for i in sess.get_inputs() if i.name.startswith("past")}

    def run(win):
        ids = win[None].astype(np.int64)
        return sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids), **pasts})[0][0]
    return run


def genai_nll(folder: str, windows) -> float:
    """The same NLL, token by token through onnxruntime-genai's KV cache."""
    import onnxruntime_genai as og

    model = og.Model(folder)
    total, count = 0.0, 0
    for win in windows:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(win), do_sample=False)
        gen = og.Generator(model, params)
        gen.append_tokens([int(win[0])])
        for nxt in win[1:]:
            logits = np.asarray(gen.get_logits(), dtype=np.float64).reshape(-1)
            logits -= logits.max()
            total -= logits[nxt] - np.log(np.exp(logits).sum())
            count += 1
            gen.append_tokens([int(nxt)])
    return total / count


def tokens_per_second(folders: dict[str, str], new_tokens: int, rounds: int) -> dict[str, float]:
    import onnxruntime_genai as og

    models = {k: og.Model(f) for k, f in folders.items()}
    times: dict[str, list[float]] = {k: [] for k in folders}
    for _ in range(rounds):
        for name, model in models.items():
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=1 + new_tokens, do_sample=False)
            gen = og.Generator(model, params)
            t0 = time.perf_counter()
            gen.append_tokens([1])
            while not gen.is_done():
                gen.generate_next_token()
            times[name].append(time.perf_counter() - t0)
    return {k: new_tokens / statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", default="0.2,0.5", help="shares of the block parameters removed")
    ap.add_argument("--calib", type=int, default=128, metavar="N", help="calibration windows after the evaluated tokens")
    ap.add_argument("--tokens", type=int, default=20000, help="evaluated tokens")
    ap.add_argument("--new-tokens", type=int, default=255, help="generated tokens per speed run")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved speed runs per model")
    ap.add_argument("--depth", default="2,4", help="also remove this many residual branches (of 10) by depth "
                    "pruning, calibrated; comma-separated; empty for none")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    for path in (CKPT, TOK, TEXT):
        if not os.path.exists(path):
            print(f"missing {path}: this benchmark reads ../shared/assets")
            return 1
    from graphprune.pipeline import prune
    from graphprune.report import write_json

    cfg, _ = llama2c.read_model(CKPT)
    tok = llama2c.Tokenizer(TOK)
    windows = llama2c.eval_windows(tok, TEXT, n_tokens=args.tokens)
    calib_ids = np.stack([c for c in llama2c.eval_windows(tok, TEXT, n_tokens=args.calib * 255, skip=args.tokens)
                          if len(c) == 256][:args.calib])
    L, KV, H, d, hd = cfg["layers"], cfg["kv_heads"], cfg["heads"], cfg["dim"], cfg["head_dim"]
    mlp = 3 * d * cfg["hidden"] * L
    kv_head = 2 * hd * d * (H // KV + 1)  # q and o rows of its query heads, k, v (unpadded)
    total = mlp + KV * L * kv_head
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dense = build(tmp)
        calib = save_inputs(os.path.join(tmp, "calib.npz"), calib_ids, L, KV)
        inputs = save_inputs(os.path.join(tmp, "inputs.npz"), np.stack(windows[:4]), L, KV)
        models = {"dense": dense}
        pipelines = {}
        for budget in [float(b) for b in args.budgets.split(",")]:
            h = round(budget * 4) / 4
            heads_removed = L * (KV - int(KV * (1 - h) + 1e-9)) * kv_head
            channels = (budget * total - heads_removed) / mlp
            passes = ["wifv", f"select:heads={h},channels={channels:.6f},round_to=1", "refit"]
            out = os.path.join(tmp, f"pruned_{budget}", "model.onnx")
            os.makedirs(os.path.dirname(out))
            t0 = time.perf_counter()
            prune(dense, output=out, passes=passes, calib=calib, inputs=inputs, quiet=True)
            print(f"pruned {budget:.0%}: {' -> '.join(passes)} in {time.perf_counter() - t0:.1f}s")
            models[f"{budget:.0%}"] = out
            pipelines[f"{budget:.0%}"] = passes
        for blocks in [int(b) for b in args.depth.split(",") if b]:
            passes = [f"depth:blocks={blocks}"]
            out = os.path.join(tmp, f"depth_{blocks}", "model.onnx")
            os.makedirs(os.path.dirname(out))
            rep = prune(dense, output=out, passes=passes, calib=calib, inputs=inputs, quiet=True)
            gone = [b["at"].split("/")[2] + (" attention" if b["attention"] else " MLP")
                    for b in rep["depth"]["branches"] if b["removed"]]
            name = f"depth {blocks}: {', '.join(gone)}"
            print(f"pruned {name}: {(rep['before']['params'] - rep['after']['params']) / rep['before']['params']:.0%} "
                  "of the stored parameters")
            models[name] = out
            pipelines[name] = passes
        speed = tokens_per_second({k: os.path.dirname(p) for k, p in models.items()}, args.new_tokens, args.rounds)
        for name, path in models.items():
            nll_ort = llama2c.nll_per_token(ort_logits(path), windows)
            nll_genai = genai_nll(os.path.dirname(path), windows)
            rows.append({"model": name, "pipeline": pipelines.get(name), "nll_ort_no_cache": nll_ort,
                         "ppl_ort_no_cache": float(np.exp(nll_ort)), "nll_genai_cache": nll_genai,
                         "ppl_genai_cache": float(np.exp(nll_genai)), "tokens_per_s": speed[name],
                         "speedup": speed[name] / speed["dense"]})
    print(f"\nstories260K through the genai builder; {args.tokens} evaluated tokens; calibration {args.calib} windows; "
          f"speed: {args.new_tokens} greedy tokens, median of {args.rounds} interleaved runs")
    print("| model | perplexity, ORT without cache | perplexity, genai with cache | |NLL diff| | tokens/s | speed-up |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['ppl_ort_no_cache']:.3f} | {r['ppl_genai_cache']:.3f} | "
              f"{abs(r['nll_ort_no_cache'] - r['nll_genai_cache']):.1e} | {r['tokens_per_s']:.0f} | {r['speedup']:.2f}x |")
    if args.json:
        write_json({"rows": rows, "tokens": args.tokens, "calib": args.calib}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
