"""The README's two-minute paths (examples/) run end to end: pruned, distilled, saved as
state_dict + plan and rebuilt, exported and run in ONNX Runtime with the same results."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_cnn_example():
    pytest.importorskip("sklearn")
    out = _run("prune_distill_cnn.py", "--epochs", "2", "--distill-epochs", "1")
    macs = float(re.search(r"MACs ([\d.]+)x fewer", out).group(1))
    distilled = float(re.search(r"after distillation: top-1 ([\d.]+)", out).group(1))
    ort_acc, reloaded = map(float, re.search(r"ONNX Runtime top-1 ([\d.]+) .*plan: ([\d.]+)", out).groups())
    assert macs >= 2.0
    assert ort_acc == distilled == reloaded  # deployed and reloaded models are the distilled student
    assert distilled > 0.8


def test_hf_example():
    pytest.importorskip("transformers")
    out = _run("prune_distill_hf.py", "--epochs", "2")
    before = float(re.search(r"token cosine to dense ([\d.]+)\n", out).group(1))
    after = float(re.search(r"after distillation: token cosine to dense ([\d.]+)", out).group(1))
    heads = re.search(r"heads per layer \[([\d, ]+)\]", out).group(1)
    ort_diff, rebuilt = map(float, re.search(r"max \|diff\| ([\de.+-]+); .*max \|diff\| ([\de.+-]+)", out).groups())
    assert heads == "2, 2"  # half of the 4 heads of each layer
    assert after > before  # distillation recovers what pruning lost
    assert ort_diff < 1e-4 and rebuilt == 0.0
