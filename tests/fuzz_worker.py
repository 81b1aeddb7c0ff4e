"""Runs fuzz cases one after another in one process: reads `path out_path` lines on stdin,
runs the CLI's main() on each with a time limit, and answers one JSON line per case.
Run by test_fuzz.py, which restarts it if a case kills it."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import sys
import time

from graphprune.cli import main

LIMIT_S = 20


def _alarm(signum, frame):
    raise TimeoutError("case exceeded its time limit")


def run_case(path: str, out: str) -> dict:
    err, std = io.StringIO(), io.StringIO()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            rc = main([path, "-o", out, "-q"])
    except TimeoutError:
        rc = "hang"
    except BaseException as e:  # noqa: BLE001 - anything escaping main() is a finding
        rc = f"escaped {type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
    return {"rc": rc, "stderr": err.getvalue(), "seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    for line in sys.stdin:
        path, out = line.rstrip("\n").split("\t")
        print(json.dumps(run_case(path, out)), flush=True)
