"""graphprune sweep (graphprune/sweep.py, plots.py): every point equals the single run it
stands for, a rerun resumes from the points on disk, the front is the Pareto front, bad
input is one line and exit code 2."""

from __future__ import annotations

import json
import os

import pytest

import graphprune
from graphprune.cli import main
from graphprune.errors import BadInput
from graphprune.sweep import parse_budgets, pareto, point_passes, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "models", "digits_cnn.onnx")
EVAL = os.path.join(ROOT, "models", "digits_eval.npz")
CALIB = os.path.join(ROOT, "models", "digits_calib.npz")


def test_budgets_and_pipelines_parse():
    assert parse_budgets("macs=0.67,0.5,params=0.4") == [("macs", 0.67), ("macs", 0.5), ("params", 0.4)]
    assert parse_budgets("latency=0.5") == [("latency", 0.5)]
    assert point_passes("l2", "latency", 0.5)[-1] == "select:latency=0.5,scope=global,strict=false"
    for bad in ("0.5", "macs=abc", "macs=1.5", "flops=0.5", ""):
        with pytest.raises(BadInput):
            parse_budgets(bad)
    assert point_passes("wifv:normalize=standardize;reduce=mean+refit", "macs", 0.5) == [
        "wifv:normalize=standardize,reduce=mean", "select:macs=0.5,scope=global,strict=false", "refit"]
    with pytest.raises(BadInput):
        point_passes("no-such-pass", "macs", 0.5)


def test_pareto_front():
    pts = [{"key": "a", "macs": 1.0, "accuracy": 0.9}, {"key": "b", "macs": 0.5, "accuracy": 0.8},
           {"key": "c", "macs": 0.5001, "accuracy": 0.95}, {"key": "d", "macs": 0.7, "accuracy": 0.7}]
    front = pareto(pts, "macs")
    assert set(front) == {"c"}  # c is as cheap as b (within the tie), better than a, b and d
    pts[0]["accuracy"] = 0.99
    assert pareto(pts, "macs") == ["c", "a"]


def test_points_equal_single_runs_and_a_rerun_resumes(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    result = sweep(DEMO, str(out), ["l2", "bn-scale"], [("macs", 0.75), ("macs", 0.5)], {"eval_data": EVAL},
                   quiet=True)
    assert len(result["points"]) == 4 and json.loads((out / "sweep.json").read_text())["points"] == result["points"]
    point = next(p for p in result["points"] if p["criterion"] == "bn-scale" and p["budget"] == {"macs": 0.5})
    rep = graphprune.prune(DEMO, graphprune.Options(passes=point_passes("bn-scale", "macs", 0.5), eval_data=EVAL,
                                                    output=str(tmp_path / "single.onnx"), quiet=True))
    assert point["accuracy"] == rep["accuracy"]["after"] and point["macs"] == rep["after"]["macs"]
    assert os.path.exists(out / point["file"])
    assert all(w["kept"] <= w["units"] for w in point["widths"]) and any(w["kept"] < w["units"] for w in point["widths"])
    from graphprune import pipeline

    monkeypatch.setattr(pipeline, "prune", lambda *a, **k: pytest.fail("a finished point ran again"))
    again = sweep(DEMO, str(out), ["l2", "bn-scale"], [("macs", 0.75), ("macs", 0.5)], {"eval_data": EVAL}, quiet=True)
    assert again["points"] == result["points"]


def test_calibration_statistics_are_measured_once_per_graph_state(tmp_path, monkeypatch):
    from graphprune import activations

    calls = []
    real = activations.collect
    monkeypatch.setattr(activations, "collect", lambda m, req, *a, **k: calls.append(sorted(req)) or real(m, req, *a, **k))
    budgets = [("macs", 0.75), ("macs", 0.5), ("macs", 0.33)]
    result = sweep(DEMO, str(tmp_path / "s"), ["wifv+refit"], budgets, {"calib": CALIB, "eval_data": EVAL}, quiet=True)
    # the dense model's statistics (wifv's, and refit's targets) once for the three points
    assert len(calls) == 1, calls
    for p in result["points"]:  # each equals the single run, which measures everything itself
        rep = graphprune.prune(DEMO, graphprune.Options(passes=point_passes("wifv+refit", *next(iter(p["budget"].items()))),
                                                        calib=CALIB, eval_data=EVAL, quiet=True,
                                                        output=str(tmp_path / "one.onnx")))
        assert p["accuracy"] == rep["accuracy"]["after"] and p["macs"] == rep["after"]["macs"]


def test_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    result = sweep(DEMO, str(tmp_path), ["l2"], [("macs", 0.75), ("macs", 0.5)], {}, quiet=True)
    assert result["points"][0]["metric"] == "agreement"  # no --eval: agreement with the dense model
    names = {os.path.basename(p) for p in result["pictures"]}
    assert "sweep_macs.png" in names and any(n.startswith("widths_") for n in names)
    assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in result["pictures"])


def test_a_single_run_draws_its_widths(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for name, magic in (("w.png", b"\x89PNG"), ("w.svg", b"<?xml")):
        assert main([DEMO, "-o", str(tmp_path / "s.onnx"), "--pass", "l2", "--pass", "select:ratio=0.5",
                     "--plot-widths", str(tmp_path / name), "-q"]) == 0
        assert open(tmp_path / name, "rb").read(5).startswith(magic)
    capsys.readouterr()
    assert main([DEMO, "-o", str(tmp_path / "s.onnx"), "--plot-widths", str(tmp_path / "w.jpg"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give a .png or .svg file" in err[0]


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main(["sweep", DEMO, "-o", str(tmp_path / "s"), "--criteria", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
    assert main(["sweep", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "s")]) == 2
    assert not os.path.exists(tmp_path / "s" / "sweep.json")
    (tmp_path / "f").write_text("x")
    assert main(["sweep", DEMO, "-o", str(tmp_path / "f")]) == 2


def test_plot_widths_without_matplotlib_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    out = tmp_path / "s.onnx"
    assert main([DEMO, "-o", str(out), "--plot-widths", str(tmp_path / "w.png"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'graphprune[plot]'" in err[0] and not out.exists()
