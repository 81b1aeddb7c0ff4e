"""Malformed-input fuzzing: every mutated model ends in success or one clean line with
exit code 2; no traceback, no hang, no partial output. The cases run in a worker process
(a crash of native code would otherwise take the test run down); a case that kills the
worker is a finding too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import onnx

from conftest import SUITE_COUNTS
from fuzz_cases import cases
from handmade import HANDMADE
from random_nets import build

HERE = os.path.dirname(os.path.abspath(__file__))
# CI runs 1000 fixed cases; a nightly-style run: GRAPHPRUNE_FUZZ_CASES=20000 GRAPHPRUNE_FUZZ_SEED=7
N_CASES = int(os.environ.get("GRAPHPRUNE_FUZZ_CASES", "1000"))
SEED = int(os.environ.get("GRAPHPRUNE_FUZZ_SEED", "0"))

SEED_RECIPES = [
    (3, [("conv", 8, 3, "plain"), ("bn",), ("act", "Relu"), ("residual", 3)], "gap_gemm", 1),
    (4, [("concat", 4, 6), ("split", "concat"), ("pad", 1, 2)], "flatten_gemm", 2),
    (2, [("conv", 6, 1, "depthwise"), ("gate",), ("shuffle", 2)], "conv_out", 3),
    (3, [("nhwc_linear", 6), ("slice", 1, 2), ("pool", "MaxPool")], "gap_matmul", 4),
]


def _seeds() -> dict[str, bytes]:
    seeds = {f"random{i}": build(r).SerializeToString() for i, r in enumerate(SEED_RECIPES)}
    for name, make in HANDMADE.items():
        seeds[name] = make().SerializeToString()
    return seeds


class Worker:
    def __init__(self):
        self.start()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fuzz_worker.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE)

    def run(self, path, out):
        try:
            self.proc.stdin.write(f"{path}\t{out}\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.proc.wait()
            self.start()
            return {"rc": f"worker died with {code}", "stderr": ""}
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def test_fuzz_mutated_models(tmp_path):
    worker = Worker()
    findings, outcomes = [], {"ok": 0, "refused": 0}
    try:
        for name, data in cases(_seeds(), N_CASES, seed=SEED):
            folder = tmp_path / name
            folder.mkdir()
            path, out = folder / "in.onnx", folder / "out.onnx"
            path.write_bytes(data)
            result = worker.run(str(path), str(out))
            rc, err = result["rc"], result["stderr"]
            left = sorted(p.name for p in folder.iterdir() if p.name != "in.onnx")
            if rc == 0 and left == ["out.onnx"] and path.read_bytes() == data:
                onnx.checker.check_model(str(out))
                outcomes["ok"] += 1
            elif (rc == 2 and not left and len(err.strip().splitlines()) == 1 and "Traceback" not in err
                  and str(path) in err):  # refusals name the input: the default pipeline is valid
                outcomes["refused"] += 1
            else:
                findings.append(f"{name}: rc={rc!r} left={left} stderr={err.strip()[:300]!r}")
    finally:
        worker.close()
    total = outcomes["ok"] + outcomes["refused"] + len(findings)
    SUITE_COUNTS["fuzz suite"] = (f"{total} mutated models, {outcomes['ok']} pruned, {outcomes['refused']} "
                                  f"refused with one line, {len(findings)} tracebacks/hangs/partial outputs")
    assert total == N_CASES
    assert not findings, "\n".join(findings[:20])
