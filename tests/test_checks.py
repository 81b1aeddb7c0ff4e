"""graphprune/checks.py (and the CLI around it): calibration samples held out for
verification; outside an explicit --tolerance nothing is written and the exit code is 3;
outside the default one, a warning; the task metric of --eval-metric reported and held
to `metric=`."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from graphprune.checks import calib_holdout
from graphprune.errors import ToleranceError
from graphprune.pipeline import Options, prune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "models", "digits_cnn.onnx")
EVAL = os.path.join(ROOT, "models", "digits_eval.npz")


def test_holdout(tmp_path):
    path = str(tmp_path / "c.npz")
    np.savez(path, x=np.zeros((400, 2), np.float32))
    assert calib_holdout(path, None, None) == 64
    assert calib_holdout(path, "in.npz", None) == 0 and calib_holdout(path, None, "ev.npz") == 0
    np.savez(path, x=np.zeros((40, 2), np.float32))
    assert calib_holdout(path, None, None) == 10
    np.savez(path, x=np.zeros((8, 2), np.float32))
    assert calib_holdout(path, None, None) == 0 and calib_holdout([{"x": 1}], None, None) == 0


def test_outside_tolerance_writes_nothing_and_exits_3(tmp_path):
    out = tmp_path / "p.onnx"
    r = subprocess.run([sys.executable, "-m", "graphprune", DEMO, "-o", str(out), "--eval", EVAL,
                        "--tolerance", "top1=0.99"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 3 and not out.exists() and os.listdir(tmp_path) == []
    assert "outside --tolerance" in r.stderr and "top1" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "graphprune", DEMO, "-o", str(out), "--eval", EVAL],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and out.exists() and "default tolerance" in r.stderr


def test_task_metric_is_reported_and_held(tmp_path):
    metric = tmp_path / "metric.py"
    metric.write_text(f"import numpy as np\nfrom graphprune.evaluate import accuracy_pair\n"
                      f"def top1(path):\n    return accuracy_pair(path, path, {EVAL!r})['after']\n")
    rep = prune(DEMO, Options(output=str(tmp_path / "a.onnx"), passes=["bn-scale", "select:macs=0.7"],
                              eval_metric=f"{metric}:top1"))
    m = rep["verification"]["metric"]
    assert m["before"]["metric"] == pytest.approx(0.998) and 0 < m["retention"] <= 1.01
    with pytest.raises(ToleranceError, match="task metric"):
        prune(DEMO, Options(output=str(tmp_path / "b.onnx"), passes=["l1", "select:macs=0.5"],
                            eval_metric=f"{metric}:top1", tolerance="metric=0.99"))
    assert not (tmp_path / "b.onnx").exists()
