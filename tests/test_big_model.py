"""A model over 2 GB with external data, end to end (only when asked: pytest -m big)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import onnx
import pytest

pytestmark = pytest.mark.big


def _private_peak(proc) -> int:
    peak = 0
    while proc.poll() is None:
        try:
            text = open(f"/proc/{proc.pid}/status").read()
            peak = max(peak, int(text.split("RssAnon:")[1].split()[0]) * 1024)
        except (OSError, IndexError):
            pass
        time.sleep(0.02)
    return peak


def test_model_over_2gb_prunes_with_mapped_weights(tmp_path):
    from bench_big import build

    src, out = str(tmp_path / "big.onnx"), str(tmp_path / "pruned.onnx")
    build(src)
    in_bytes = os.path.getsize(src) + os.path.getsize(src + ".data")
    assert in_bytes > 2 << 30
    proc = subprocess.Popen([sys.executable, "-m", "graphprune", src, "-o", out, "--pass", "l1",
                             "--pass", "select:ratio=0.5", "-q"], stderr=subprocess.PIPE, text=True)
    peak = _private_peak(proc)
    assert proc.wait() == 0, proc.stderr.read()
    assert os.path.exists(out + ".data")  # written as external data
    onnx.checker.check_model(out)  # path form
    out_bytes = os.path.getsize(out) + os.path.getsize(out + ".data")
    assert peak < 0.6 * (in_bytes + out_bytes), f"private peak {peak} bytes"
