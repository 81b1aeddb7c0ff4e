"""graphprune/progress.py: a one-line bar on stderr for the long steps, shown on a
terminal only (not off a terminal, not in CI, not with -q); the long passes (refit,
restore-stats, ablate, calibration) use it."""

from __future__ import annotations

import io

import numpy as np
import pytest

from graphprune.pipeline import Options, prune
from graphprune.progress import Progress
from test_compensation import _calib, mlp


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _terminal(monkeypatch):
    """stderr as a terminal (set inside the test: pytest's capture resets sys.stderr
    between fixture setup and the test)."""
    monkeypatch.delenv("CI", raising=False)
    err = _Terminal()
    monkeypatch.setattr("sys.stderr", err)
    return err


def test_bar_counts_and_closes(monkeypatch):
    terminal = _terminal(monkeypatch)
    with Progress("work", 4, unit="layers") as p:
        p.update(1)
        p.update(3)
    text = terminal.getvalue()
    assert "work [" in text and "1/4" in text and "4/4" in text and text.endswith("\n")


def test_silent_off_a_terminal_in_ci_and_when_quiet(monkeypatch):
    terminal = _terminal(monkeypatch)
    Progress("quiet", 2, quiet=True).update(1)
    monkeypatch.setenv("CI", "true")
    Progress("ci", 2).update(1)
    assert terminal.getvalue() == ""
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    p = Progress("pipe", 2)
    p.update(1)
    assert not p.on


@pytest.mark.parametrize("quiet", [False, True])
def test_long_passes_show_progress_on_a_terminal(tmp_path, monkeypatch, quiet):
    terminal = _terminal(monkeypatch)
    path, spec = mlp(tmp_path)
    calib = str(tmp_path / "c.npz")
    np.savez(calib, x=_calib(spec, n=32)[0]["x"])
    prune(path, Options(passes=["ablate:groups=all", "select:ratio=0.25,round_to=1", "refit", "restore-stats"],
                        output=str(tmp_path / "p.onnx"), calib=calib, quiet=quiet))
    text = terminal.getvalue()
    for label in ("ablation", "refit", "restore-stats"):
        assert (label in text) != quiet, (label, text)


def test_off_a_terminal_a_line_every_few_seconds(monkeypatch):
    import graphprune.progress as progress

    monkeypatch.delenv("CI", raising=False)
    err = io.StringIO()  # not a terminal
    monkeypatch.setattr("sys.stderr", err)
    clock = iter([0.0, 3.0, 12.0, 15.0, 25.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    p = Progress("refit", 4, unit="layers")
    for _ in range(4):
        p.update(1)
    assert err.getvalue().splitlines() == ["refit: 2/4 layers after 12 s", "refit: 4/4 layers after 25 s"]
