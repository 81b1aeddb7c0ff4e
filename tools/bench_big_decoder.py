"""A Llama-3.2-1B-shaped decoder as onnxruntime-genai's builder writes it (packed-QKV
GroupQueryAttention, KV cache, external data), pruned data-free by the command line:
wall time and peak memory, against the largest tensor.

The weights are random (a config, no download): written as safetensors with NumPy, then
built by `onnxruntime_genai.models.builder -p fp32 -e cpu`. The CLI runs in a child process:
`--no-verify` (pruning alone: load, analysis, scores, removal, save), with the default
verification (which runs both models in ONNX Runtime), and with calibration statistics
streamed through ONNX Runtime (wifv on 16 random sequences of 64 tokens), without and with
verification, and with the learned data-free metanet criterion in place of l2; private
(anonymous) and file-backed resident memory are sampled from /proc. Needs about 15 GB of free disk and
memory for the build.

    python tools/bench_big_decoder.py [--scale 1b|small] [--folder DIR] [--runs a,b] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_big import _rss  # noqa: E402

SHAPES = {  # Llama-3.2-1B's shape, and a small one to try the tool
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
    "small": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=2, vocab_size=32000),
}
PASSES = ["l2", "select:heads=0.25,channels=0.25"]
RUNS = ("no-verify", "verified", "calibrated", "calibrated-verified", "metanet")  # the --runs names


def write_hf(folder: str, shape: dict) -> int:
    """config.json, model.safetensors (random, std 0.02; norms 1) and a tokenizer; returns
    the parameter count."""
    import transformers
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models

    os.makedirs(folder, exist_ok=True)
    cfg = transformers.LlamaConfig(**shape, max_position_embeddings=2048, tie_word_embeddings=True,
                                   bos_token_id=1, eos_token_id=2, architectures=["LlamaForCausalLM"])
    cfg.save_pretrained(folder)
    h, f, kv = shape["hidden_size"], shape["intermediate_size"], shape["num_key_value_heads"]
    hd = h // shape["num_attention_heads"]
    rng = np.random.default_rng(0)

    def rand(*s):
        return (rng.standard_normal(s, dtype=np.float32) * 0.02).astype(np.float32)

    tensors = {"model.embed_tokens.weight": rand(shape["vocab_size"], h), "model.norm.weight": np.ones(h, np.float32)}
    for i in range(shape["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors.update({p + "input_layernorm.weight": np.ones(h, np.float32),
                        p + "post_attention_layernorm.weight": np.ones(h, np.float32),
                        p + "self_attn.q_proj.weight": rand(h, h), p + "self_attn.k_proj.weight": rand(kv * hd, h),
                        p + "self_attn.v_proj.weight": rand(kv * hd, h), p + "self_attn.o_proj.weight": rand(h, h),
                        p + "mlp.gate_proj.weight": rand(f, h), p + "mlp.up_proj.weight": rand(f, h),
                        p + "mlp.down_proj.weight": rand(h, f)})
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    count = sum(t.size for t in tensors.values())
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(256)}, unk_token="t0"))
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", bos_token="t1",
                                         eos_token="t2").save_pretrained(folder)
    return count


def largest_tensor(model_path: str) -> tuple[str, int]:
    import onnx

    m = onnx.load(model_path, load_external_data=False)
    t = max(m.graph.initializer, key=lambda t: int(np.prod(t.dims)) * 4)
    return t.name, int(np.prod(t.dims)) * 4


def write_calib(path: str, src: str, samples: int = 16, tokens: int = 64) -> str:
    """Random token ids (the benchmark measures memory, not quality) with an empty cache."""
    import onnx

    m = onnx.load(src, load_external_data=False)
    feeds = {"input_ids": np.random.default_rng(0).integers(3, 256, (samples, tokens)),
             "attention_mask": np.ones((samples, tokens), np.int64)}
    for i in m.graph.input:
        if i.name.startswith("past"):
            d = i.type.tensor_type.shape.dim
            feeds[i.name] = np.zeros((samples, d[1].dim_value, 0, 64), np.float32)
    np.savez(path, **feeds)
    return path


def run_cli(src: str, out: str, extra: list[str], passes=PASSES) -> dict:
    report = out + ".report.json"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "graphprune", src, "-o", out, *sum((["--pass", p] for p in passes), []),
                             "-q", "--report", report, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    anon = file_ = 0
    while proc.poll() is None:
        a, f = _rss(proc.pid)
        anon, file_ = max(anon, a), max(file_, f)
        time.sleep(0.02)
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"graphprune failed: {err}")
    with open(report) as f:
        rep = json.load(f)
    return {"seconds": wall, "peak_private_bytes": anon, "peak_file_backed_bytes": file_,
            "params_before": rep["before"]["params"], "params_after": rep["after"]["params"],
            "passes": {q["pass"]: q["seconds"] for q in rep["passes"]},
            "verification": rep.get("verification", {}).get("summary", rep.get("verification", {}).get("numeric"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", choices=sorted(SHAPES), default="1b")
    ap.add_argument("--folder", help="where to write the models (default: a temporary folder, removed)")
    ap.add_argument("--json")
    ap.add_argument("--runs", default=",".join(RUNS), help="which runs, comma-separated (default: all)")
    args = ap.parse_args()
    keys = args.runs.split(",")
    unknown = [k for k in keys if k not in RUNS]
    if unknown:  # before minutes of building the model
        ap.error(f"--runs: unknown run {unknown[0]!r} (one of {', '.join(RUNS)})")
    folder = args.folder or tempfile.mkdtemp(prefix="graphprune-decoder-")
    gb = 1 << 30
    try:
        t0 = time.perf_counter()
        params = write_hf(os.path.join(folder, "hf"), SHAPES[args.scale])
        src = os.path.join(folder, "dense", "model.onnx")
        subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", os.path.join(folder, "hf"),
                        "-o", os.path.dirname(src), "-p", "fp32", "-e", "cpu", "-c", os.path.join(folder, "cache")],
                       check=True, capture_output=True)
        shutil.rmtree(os.path.join(folder, "hf"))
        built = time.perf_counter() - t0
        name, largest = largest_tensor(src)
        size = sum(os.path.getsize(os.path.join(os.path.dirname(src), f)) for f in os.listdir(os.path.dirname(src)))
        print(f"{args.scale}: {params / 1e9:.2f} B parameters, {size / gb:.2f} GiB on disk, built in {built:.0f}s; "
              f"largest tensor {name} {largest / gb:.2f} GiB")
        rows = {}
        calib = write_calib(os.path.join(folder, "calib.npz"), src)
        runs = {"no-verify": ("no-verify", ["--no-verify"], PASSES),
                "verified": ("verified", [], PASSES),
                "calibrated": ("calibrated (wifv, 16 x 64 tokens), no-verify", ["--no-verify", "--calib", calib],
                               ["wifv", PASSES[1]]),
                "calibrated-verified": ("calibrated and verified", ["--calib", calib], ["wifv", PASSES[1]]),
                "metanet": ("metanet (data-free, learned), no-verify", ["--no-verify"], ["metanet", PASSES[1]])}
        for key in keys:
            label, extra, passes = runs[key]
            out = os.path.join(folder, key, "model.onnx")
            os.makedirs(os.path.dirname(out))
            r = run_cli(src, out, extra, passes)
            r["private_over_largest"] = r["peak_private_bytes"] / largest
            rows[label] = r
            print(f"{label}: {r['seconds']:.1f}s, peak private {r['peak_private_bytes'] / gb:.2f} GiB "
                  f"({r['private_over_largest']:.2f}x the largest tensor), file-backed {r['peak_file_backed_bytes'] / gb:.2f} GiB;"
                  f" parameters {r['params_before'] / 1e9:.3f} B -> {r['params_after'] / 1e9:.3f} B")
            print("  per pass:", ", ".join(f"{k} {v:.1f}s" for k, v in r["passes"].items()))
            shutil.rmtree(os.path.dirname(out))
        if args.json:
            from graphprune.report import write_json

            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            write_json({"scale": args.scale, "params": params, "disk_bytes": size, "largest_tensor": name,
                        "largest_bytes": largest, "build_seconds": built, "runs": rows}, args.json)
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
