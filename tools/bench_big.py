"""A model over 2 GB with external data, pruned end to end by the command line.

Builds a synthetic MLP (MatMul chain, about 2.3 GB of float32 weights) written with
external data, runs `graphprune big.onnx -o out.onnx --pass l1 --pass select:ratio=0.5`
in a child process, and reports its wall time and peak memory against the sizes of the
input and the output: private (anonymous) memory sampled from /proc, and total resident
memory, which also counts the memory-mapped weights (page cache the kernel can drop).
Needs about 4 GB of free disk.

    python tools/bench_big.py [--folder DIR] [--json bench-results/big.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx_ir as ir

WIDTHS = (4096, 16384, 16384, 12288, 1000)


def build(path: str) -> int:
    """Write the model; return its weight bytes."""
    rng = np.random.default_rng(0)
    x = ir.Value(name="x", shape=ir.Shape([1, WIDTHS[0]]), type=ir.TensorType(ir.DataType.FLOAT))
    graph = ir.Graph([x], [], nodes=[], opset_imports={"": 17}, name="big")
    h, total = x, 0
    for i, (a, b) in enumerate(zip(WIDTHS, WIDTHS[1:])):
        w = (rng.standard_normal((a, b), dtype=np.float32) * (1 / np.sqrt(a))).astype(np.float32)
        total += w.nbytes
        wv = ir.Value(name=f"w{i}", shape=ir.Shape(w.shape), type=ir.TensorType(ir.DataType.FLOAT),
                      const_value=ir.tensor(w, name=f"w{i}"))
        graph.register_initializer(wv)
        mm = ir.node("MatMul", [h, wv], name=f"mm{i}")
        graph.append(mm)
        h = mm.outputs[0]
        if i < len(WIDTHS) - 2:
            relu = ir.node("Relu", [h], name=f"relu{i}")
            graph.append(relu)
            h = relu.outputs[0]
        del w
    h.name = "y"
    h.shape, h.dtype = ir.Shape([1, WIDTHS[-1]]), ir.DataType.FLOAT
    graph.outputs.append(h)
    ir.save(ir.Model(graph, ir_version=8), path, external_data=os.path.basename(path) + ".data")
    return total


def _rss(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of a process, from /proc."""
    try:
        text = open(f"/proc/{pid}/status").read()
    except OSError:
        return 0, 0
    get = lambda key: int(text.split(key + ":")[1].split()[0]) * 1024 if key + ":" in text else 0  # noqa: E731
    return get("RssAnon"), get("RssFile")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--folder", help="where to write the models (default: a temporary folder)")
    p.add_argument("--json")
    args = p.parse_args()
    folder = args.folder or tempfile.mkdtemp(prefix="graphprune-big-")
    try:
        src, out = os.path.join(folder, "big.onnx"), os.path.join(folder, "pruned.onnx")
        t0 = time.perf_counter()
        weights = build(src)
        built = time.perf_counter() - t0
        in_bytes = os.path.getsize(src) + os.path.getsize(src + ".data")
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "graphprune", src, "-o", out, "--pass", "l1",
                                 "--pass", "select:ratio=0.5,round_to=1", "-q", "--report", os.path.join(folder, "r.json")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        anon = file_ = 0
        while proc.poll() is None:  # sample private and file-backed resident memory
            a, f = _rss(proc.pid)
            anon, file_ = max(anon, a), max(file_, f)
            time.sleep(0.02)
        _, err = proc.communicate()
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        if proc.returncode:
            sys.exit(f"graphprune failed: {err}")
        out_bytes = os.path.getsize(out) + sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
                                              if f.startswith("pruned.onnx") and f != "pruned.onnx")
        report = json.load(open(os.path.join(folder, "r.json")))
        row = {"weights_bytes": weights, "input_bytes": in_bytes, "output_bytes": out_bytes,
               "external_output": os.path.exists(out + ".data"), "build_seconds": built,
               "cli_seconds": wall, "peak_rss_bytes": peak, "peak_private_bytes": anon,
               "peak_file_backed_bytes": file_,
               "peak_over_input_plus_output": peak / (in_bytes + out_bytes),
               "private_over_input_plus_output": anon / (in_bytes + out_bytes),
               "passes": {q["pass"]: q["seconds"] for q in report["passes"]},
               "checker": report["verification"]["checker"]}
        gb = 1 << 30
        print(f"input {in_bytes / gb:.2f} GiB -> output {out_bytes / gb:.2f} GiB "
              f"(external data: {row['external_output']}), checker {row['checker']}")
        print(f"CLI wall time {wall:.1f}s; peak private memory {anon / gb:.2f} GiB = "
              f"{row['private_over_input_plus_output']:.2f} x (input + output); peak RSS {peak / gb:.2f} GiB "
              f"(mapped weights are page cache: file-backed peak {file_ / gb:.2f} GiB)")
        print("per pass:", ", ".join(f"{k} {v:.1f}s" for k, v in row["passes"].items()))
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            json.dump(row, open(args.json, "w"), indent=1)
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
