"""Nightly-style robustness run (pytest -m nightly): the property suite with 2,000 fresh
random architectures and the fuzz suite with 20,000 mutated models from a new seed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.nightly


def _run(test_file, env):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
                       cwd=HERE, env={**os.environ, **env}, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]
    return r.stdout


def test_property_suite_nightly():
    out = _run("test_properties.py", {"GRAPHPRUNE_PROPERTY_EXAMPLES": "2000", "GRAPHPRUNE_PROPERTY_RANDOM": "1"})
    assert "property suite" in out


def test_fuzz_suite_nightly():
    out = _run("test_fuzz.py", {"GRAPHPRUNE_FUZZ_CASES": "20000", "GRAPHPRUNE_FUZZ_SEED": str(int(time.time()) % 10**6)})
    assert "fuzz suite" in out
