"""Killing graphprune at any moment never leaves a partial output and never touches the
input: the model is written under a temporary name and renamed when verified."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import onnx
import pytest

from conftest import light_models


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_runs_leave_no_partial_output(tmp_path, sig):
    models = [m for m in light_models() if "inception_v1" in m]
    if not models:
        pytest.skip("onnx backend test data not installed")
    src = tmp_path / "in.onnx"
    src.write_bytes(open(models[0], "rb").read())
    digest = _sha(src)
    out = tmp_path / "out.onnx"
    rng = random.Random(int(sig))
    finished = killed = 0
    for _ in range(6):
        if out.exists():
            out.unlink()
        proc = subprocess.Popen([sys.executable, "-m", "graphprune", str(src), "-o", str(out), "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.3, 3.0))
        if proc.poll() is None:
            proc.send_signal(sig)
            killed += 1
        _, err = proc.communicate(timeout=120)
        finished += proc.returncode == 0
        assert "Traceback" not in err
        assert _sha(src) == digest, "the input changed"
        if out.exists():  # only ever a complete, valid model
            onnx.checker.check_model(str(out))
        if sig != signal.SIGKILL:  # unwinding removes the temporary files too
            assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    # A run after SIGKILLs removes what the killed runs left behind.
    r = subprocess.run([sys.executable, "-m", "graphprune", str(src), "-o", str(out), "-q"], capture_output=True)
    assert r.returncode == 0
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    assert killed > 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_shutdown_is_silent(sig):
    # A signal that lands after the run, while the interpreter shuts down, used to be
    # raised as KeyboardInterrupt inside an exit hook and print a traceback.
    code = ("import atexit, os, signal, sys\n"
            "from graphprune.cli import entry\n"
            f"atexit.register(lambda: os.kill(os.getpid(), {int(sig)}))\n"
            "sys.argv = ['graphprune', '--list-passes']\n"
            "sys.exit(entry())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    assert r.returncode == -int(sig)


def test_cli_does_not_import_torch(tmp_path):
    # ONNX Runtime's tools package imports torch when it is installed; the shape
    # inference is loaded without it, so a run does not pay a second for torch.
    models = [m for m in light_models() if "inception_v1" in m]
    if not models:
        pytest.skip("onnx backend test data not installed")
    code = ("import sys\n"
            "from graphprune.cli import main\n"
            f"rc = main([{str(models[0])!r}, '-o', {str(tmp_path / 'o.onnx')!r}, '-q'])\n"
            "print(rc, 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.split() == ["0", "False"], r.stdout + r.stderr
