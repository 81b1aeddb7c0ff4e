"""Time and memory of the metanet criterion's scoring (features + prediction, after the
model is loaded, normalized and analysed, which every criterion shares).

Models: a ResNet-50-shaped CNN (tools/bench_resnet50.py, random weights) and Llama-shaped
decoders from `transformers` configs (random weights) of growing width, to show how the
time grows with the parameters. Prints a table (median of `--runs`) and can write JSON.

    python tools/bench_metanet_time.py [--runs 3] [--json bench-results/metanet-time.json]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def llama(hidden: int):
    import transformers as T

    cfg = T.LlamaConfig(vocab_size=1024, hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=4,
                        num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 256),
                        max_position_embeddings=128, use_cache=False)
    return T.LlamaForCausalLM(cfg).eval()


def score_once(ctx, groups):
    from graphprune.metanet.features import features
    from graphprune.metanet.scorer import Scorer

    scorer = Scorer()

    def score():
        for f in features(groups, ctx.model).values():
            scorer.predict(f)

    t0 = time.perf_counter()  # timed without tracemalloc, which slows every allocation
    score()
    seconds = time.perf_counter() - t0
    tracemalloc.start()  # then once more for the peak
    score()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


def measure(name, module, example, runs, tmp):
    import torch  # noqa: F401

    from graphprune.context import Context
    from graphprune.loading import load_model
    from graphprune.pipeline import run_passes
    from graphprune.torch import export

    path = os.path.join(tmp, name + ".onnx")
    export(module, example, path)
    ctx = Context(load_model(path), quiet=True)
    run_passes(ctx, ["normalize"])
    groups = [g for g in ctx.analysis().groups if g.n_units]
    params = sum(int(v.const_value.size) for v in ctx.model.graph.initializers.values() if v.const_value is not None)
    results = [score_once(ctx, groups) for _ in range(runs)]
    return {"model": name, "params": params, "units": int(sum(g.n_units for g in groups)),
            "seconds": statistics.median(r[0] for r in results), "peak_mb": max(r[1] for r in results) / 2**20}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--widths", default="256,512,1024")
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch

    from bench_resnet50 import resnet50

    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(measure("resnet50", resnet50(), (torch.randn(1, 3, 224, 224),), args.runs, tmp))
        print(rows[-1], flush=True)
        for h in (int(w) for w in args.widths.split(",")):
            rows.append(measure(f"llama-h{h}", llama(h), (torch.randint(0, 1024, (1, 16)),), args.runs, tmp))
            print(rows[-1], flush=True)
    print(f"\n{'model':14s} {'params':>12s} {'units':>8s} {'seconds':>8s} {'ms/Mparam':>10s} {'peak MB':>8s}")
    for r in rows:
        print(f"{r['model']:14s} {r['params']:12,d} {r['units']:8d} {r['seconds']:8.3f} "
              f"{r['seconds'] / r['params'] * 1e9:10.1f} {r['peak_mb']:8.1f}")
    if args.json:
        from graphprune.report import write_json

        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        write_json(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
