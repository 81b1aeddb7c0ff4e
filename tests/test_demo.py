"""The README's main job on the shipped demo model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_main_job(tmp_path):
    out, rep = tmp_path / "digits_small.onnx", tmp_path / "r.json"
    r = subprocess.run(
        [sys.executable, "-m", "graphprune", os.path.join(ROOT, "models", "digits_cnn.onnx"), "-o", str(out),
         "--pass", "bn-scale", "--pass", "select:macs=0.5,scope=global,round_to=auto",
         "--eval", os.path.join(ROOT, "models", "digits_eval.npz"), "--bench", "--bench-repeats", "5",
         "--report", str(rep)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "top-1" in r.stdout and "latency" in r.stdout
    report = json.loads(rep.read_text())
    assert report["accuracy"]["before"] >= 0.98
    assert report["accuracy"]["after"] >= 0.85
    assert report["after"]["macs"] <= 0.5 * report["before"]["macs"]


def test_calibration_path_keeps_the_demos_accuracy(tmp_path):
    """The README's calibration command: the shipped calibration file (training digits),
    half the MACs, every other stage from the calibration defaults."""
    out, rep = tmp_path / "digits_small.onnx", tmp_path / "r.json"
    r = subprocess.run(
        [sys.executable, "-m", "graphprune", os.path.join(ROOT, "models", "digits_cnn.onnx"), "-o", str(out),
         "--calib", os.path.join(ROOT, "models", "digits_calib.npz"), "--pass", "select:macs=0.5",
         "--eval", os.path.join(ROOT, "models", "digits_eval.npz"), "--report", str(rep)],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(rep.read_text())
    assert report["pipeline"][2] == "select:macs=0.5" and len(report["pipeline"]) > 5
    assert report["accuracy"]["after"] >= 0.99 and report["after"]["macs"] <= 0.5 * report["before"]["macs"]
