"""The pipeline runner (graphprune/pipeline.py): the printed pipeline is the executed
order, every pass reports its own time and statistics, an out-of-order pipeline is
refused, the defaults use the calibration data when it is given, a budget that removes
nothing is reported, and the Python API honours every option the CLI has."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx_ir as ir
import pytest

from graphprune.errors import BadInput
from graphprune.pipeline import (CALIBRATION_DEFAULTS, DATA_FREE_DEFAULTS, Options, build_passes,
                                 complete_pipeline, prune)
from test_compensation import _calib, mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _npz(tmp_path, **arrays):
    path = str(tmp_path / "calib.npz")
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("specs,first,second", [
    (["l1", "hidden"], "hidden", "l1"),                              # an analysis option after a score
    (["l1", "remove", "select:ratio=0.3"], "select:ratio=0.3", "remove"),
    (["l1", "refit", "compensate"], "compensate", "refit"),          # compensate after a repair
    (["cleanup", "l1"], "l1", "cleanup"),
])
def test_out_of_order_pipelines_are_refused_with_an_order_that_works(specs, first, second):
    with pytest.raises(BadInput) as e:
        complete_pipeline(specs)
    msg = str(e.value)
    assert f"{first} (" in msg and f"cannot run after {second}" in msg and "an order that works:" in msg
    works = msg.split("an order that works: ")[1].split(", ")
    assert sorted(works) == sorted(specs)
    complete_pipeline(works)  # the suggested order is accepted


def test_a_single_stage_given_twice_is_refused():
    with pytest.raises(BadInput, match="select:ratio=0.1 and select:ratio=0.2 are both select passes"):
        complete_pipeline(["l1", "select:ratio=0.1", "select:ratio=0.2"])


def test_l1_then_hidden_is_an_error_on_the_command_line(zoo, tmp_path):
    r = subprocess.run([sys.executable, "-m", "graphprune", zoo["simple_cnn"], "-o", str(tmp_path / "p.onnx"),
                        "--pass", "l1", "--pass", "hidden"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "hidden (analysis) cannot run after l1 (score)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "p.onnx").exists()


def test_defaults_without_and_with_calibration():
    plain = ["normalize", "l1", DATA_FREE_DEFAULTS["select"], "remove", "cleanup"]
    assert complete_pipeline([]) == plain
    calib = complete_pipeline([], calibrated=True)
    assert calib == ["normalize", CALIBRATION_DEFAULTS["score"], CALIBRATION_DEFAULTS["select"],
                     "remove", CALIBRATION_DEFAULTS["repair"], "cleanup"]
    # A user's select keeps its place; the calibration stages are filled around it.
    assert complete_pipeline(["select:macs=0.5"], calibrated=True)[1:5] == [
        CALIBRATION_DEFAULTS["score"], "select:macs=0.5", "remove", CALIBRATION_DEFAULTS["repair"]]
    # A named recovery stage replaces the recovery defaults.
    assert complete_pipeline(["compensate:method=lsq"], calibrated=True) == [
        "normalize", CALIBRATION_DEFAULTS["score"], CALIBRATION_DEFAULTS["select"], "compensate:method=lsq",
        "remove", "cleanup"]
    # A named criterion makes the pipeline the user's own: data-free defaults, no compensation.
    assert complete_pipeline(["wifv"], calibrated=True) == ["normalize", "wifv", DATA_FREE_DEFAULTS["select"],
                                                           "remove", "cleanup"]


def test_printed_pipeline_is_the_executed_order_with_each_pass_timed(tmp_path):
    path, spec = mlp(tmp_path)
    calib = _npz(tmp_path, x=_calib(spec, n=64)[0]["x"])
    rep = prune(path, Options(passes=["l1", "select:ratio=0.25,round_to=1", "refit", "restore-stats"],
                              output=str(tmp_path / "p.onnx"), calib=calib, quiet=True))
    assert rep["pipeline"] == ["normalize", "l1", "select:ratio=0.25,round_to=1", "remove", "refit", "restore-stats",
                               "cleanup"]
    assert [p["pass"] for p in rep["passes"]] == rep["pipeline"]
    by = {p["pass"]: p for p in rep["passes"]}
    assert by["refit"]["kind"] == "repair" and by["refit"]["stats"]["layers_refit"] == 1 and by["refit"]["modified"]
    assert by["restore-stats"]["stats"]["layers_rescaled"] == 1
    assert "layers_refit" not in by["remove"]["stats"] and "layers_rescaled" not in by["remove"]["stats"]
    assert all(p["seconds"] >= 0 for p in rep["passes"])


def test_verify_each_names_a_repair_pass_that_breaks_the_model(tmp_path, monkeypatch):
    from graphprune.errors import VerificationError
    from graphprune.passes.refit import RefitPass

    def vandal(node, lay, cols):  # writes a weight of the wrong shape
        w = node.inputs[1]
        w.const_value = ir.tensor(np.zeros((1, 1), np.float32), name=w.name)
        w.shape = ir.Shape([1, 1])

    monkeypatch.setattr(RefitPass, "_write", staticmethod(vandal))
    path, spec = mlp(tmp_path)
    calib = _npz(tmp_path, x=_calib(spec, n=32)[0]["x"])
    with pytest.raises(VerificationError, match="after pass refit"):
        prune(path, Options(passes=["l1", "select:ratio=0.25,round_to=1", "refit"], output=str(tmp_path / "p.onnx"),
                            calib=calib, verify_each=True, quiet=True))
    assert not (tmp_path / "p.onnx").exists()


def test_a_budget_that_removes_nothing_is_reported(tmp_path):
    path, _ = mlp(tmp_path)
    rep = prune(path, Options(passes=["l1", "select:ratio=0.3,min_keep=16"], output=str(tmp_path / "p.onnx")))
    assert rep["after"]["params"] == rep["before"]["params"]
    assert any("removed nothing" in w for w in rep["warnings"])
    quiet = prune(path, Options(passes=["l1", "select:ratio=0"], output=str(tmp_path / "q.onnx")))
    assert not any("removed nothing" in w for w in quiet.get("warnings", []))  # nothing was asked


def test_warnings_go_to_stderr(tmp_path):
    path, _ = mlp(tmp_path)
    r = subprocess.run([sys.executable, "-m", "graphprune", path, "-o", str(tmp_path / "p.onnx"),
                        "--pass", "select:ratio=0.3,min_keep=16"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "warning:" in r.stderr and "removed nothing" in r.stderr
    assert "removed nothing" not in r.stdout


def test_python_api_writes_the_report_and_takes_keywords(tmp_path):
    path, _ = mlp(tmp_path)
    report_path = tmp_path / "r.json"
    rep = prune(path, output=str(tmp_path / "p.onnx"), passes=["l2", "select:ratio=0.25"], report=str(report_path))
    assert json.loads(report_path.read_text())["pipeline"] == rep["pipeline"]
    # Keywords override an Options object.
    rep2 = prune(path, Options(passes=["l1"]), dry_run=True, report=str(tmp_path / "r2.json"))
    assert rep2["pipeline"][1] == "l1" and (tmp_path / "r2.json").exists()
    with pytest.raises(BadInput, match="refusing to write over the input"):
        prune(path, output=path)


def test_passes_run_from_an_onnx_ir_pass_manager(tmp_path):
    """The same passes, driven by onnx-ir's PassManager on an ir.Model, give the same
    model as the runner."""
    from graphprune.context import Context
    from graphprune.loading import load_model

    path, _ = mlp(tmp_path)
    specs = ["normalize", "l2", "select:ratio=0.25", "remove", "cleanup"]
    model = load_model(path)
    ctx = Context(model)
    result = ir.passes.PassManager(build_passes(ctx, specs))(model)
    assert result.modified
    prune(path, output=str(tmp_path / "p.onnx"), passes=specs)
    ref = ir.load(str(tmp_path / "p.onnx"))
    for name, v in ref.graph.initializers.items():
        np.testing.assert_array_equal(model.graph.initializers[name].const_value.numpy(), v.const_value.numpy())


def test_python_m_graphprune_works_from_a_plain_checkout(tmp_path):
    """A copy of the source tree, not installed: `python -m graphprune --list-passes` finds
    the pass suite (the top-level passes/ folder) as graphprune.passes."""
    import shutil

    for folder in ("graphprune", "passes"):
        shutil.copytree(os.path.join(ROOT, folder), tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; sys.path.insert(0, '.'); import runpy, graphprune.passes as p; "
            "print(p.__file__); sys.argv = ['graphprune', '--list-passes']; runpy.run_module('graphprune', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == str(tmp_path / "passes" / "__init__.py")
    assert "refit" in r.stdout and "[repair]" in r.stdout
