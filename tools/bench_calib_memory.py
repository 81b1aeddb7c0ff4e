"""Memory of activation statistics against the number of calibration samples: each run
is a fresh process that collects the statistics a `wifv` pass needs on a small CNN, from
an uncompressed .npz of N samples (read batch by batch); its peak resident memory is read
from the kernel. The first few batches warm up ONNX Runtime's memory arena; from there on
memory is flat.

    python tools/bench_calib_memory.py [--samples 100,1000,10000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD = r"""
import resource, sys, time
sys.path.insert(0, {root!r})
from graphprune.pipeline import Options, prune
t0 = time.perf_counter()
prune({model!r}, Options(passes=["wifv", "select:ratio=0.3"], dry_run=True, calib={calib!r}, quiet=True,
                         calib_batch={batch}, verify=False))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0)
"""


def build_model(path: str) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    r = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i, (cin, cout) in enumerate([(3, 32), (32, 64), (64, 64), (64, 32)]):
        w = numpy_helper.from_array((r.standard_normal((cout, cin, 3, 3)) * 0.2).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", 32, 32, 32])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", default="100,1000,10000")
    ap.add_argument("--batch", type=int, default=16, help="calibration batch size")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "cnn.onnx")
        build_model(model)
        for n in [int(s) for s in args.samples.split(",")]:
            calib = os.path.join(tmp, f"calib_{n}.npz")
            # Written in chunks so this process does not hold all samples either.
            x = np.lib.format.open_memmap(os.path.join(tmp, "x.npy"), mode="w+", dtype=np.float32,
                                          shape=(n, 3, 32, 32))
            for s in range(0, n, 1000):
                x[s:s + 1000] = np.random.default_rng(s).standard_normal(x[s:s + 1000].shape)
            x.flush()
            del x
            import zipfile
            with zipfile.ZipFile(calib, "w", zipfile.ZIP_STORED) as z:
                z.write(os.path.join(tmp, "x.npy"), "x.npy")
            out = subprocess.run([sys.executable, "-c", CHILD.format(root=ROOT, model=model, calib=calib, batch=args.batch)],
                                 capture_output=True, text=True, check=True)
            rss_kb, secs = out.stdout.split()[-2:]
            rows.append({"samples": n, "data_mib": n * 3 * 32 * 32 * 4 / 2**20,
                         "peak_rss_mib": int(rss_kb) / 1024, "seconds": float(secs)})
            print(rows[-1], flush=True)
    print(f"\n{'samples':>8} {'data MiB':>9} {'peak RSS MiB':>13} {'seconds':>8}")
    for r in rows:
        print(f"{r['samples']:>8} {r['data_mib']:>9.1f} {r['peak_rss_mib']:>13.1f} {r['seconds']:>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
