"""The command line: pipelines, listing, dry runs, reports, exit codes, --verify-each."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx_ir as ir
import pytest

from graphprune.cli import main
from graphprune.pipeline import complete_pipeline


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "graphprune", *args], capture_output=True, text=True, timeout=300)


def test_list_passes(capsys):
    assert main(["--list-passes"]) == 0
    out = capsys.readouterr().out
    for name in ("normalize", "l1", "l2", "bn-scale", "random", "select", "remove", "cleanup"):
        assert f"\n{name} " in "\n" + out


def test_default_pipeline_and_completion():
    sel = "select:macs=0.5,round_to=auto,strict=false"
    assert complete_pipeline([]) == ["normalize", "l1", sel, "remove", "cleanup"]
    assert complete_pipeline(["l2"]) == ["normalize", "l2", sel, "remove", "cleanup"]
    assert complete_pipeline(["select:macs=0.5"]) == ["normalize", "l1", "select:macs=0.5", "remove", "cleanup"]


def test_run_with_report_and_verbose(zoo, tmp_path):
    out, rep = tmp_path / "p.onnx", tmp_path / "r.json"
    r = _cli(zoo["resnetish"], "-o", str(out), "--pass", "l2", "--pass", "select:macs=0.6",
             "--report", str(rep), "-v")
    assert r.returncode == 0, r.stderr
    assert "MACs" in r.stdout and "verified" in r.stdout and "units" in r.stdout
    report = json.loads(rep.read_text())
    assert report["pipeline"][1] == "l2"
    assert report["after"]["macs"] <= 0.6 * report["before"]["macs"] * 1.0001
    assert report["after"]["macs"] > 0.5 * report["before"]["macs"]
    assert report["verification"]["checker"] == "passed"
    assert any(g["removed"] for g in report["groups"])
    assert [p["pass"].split(":")[0] for p in report["passes"]] == ["normalize", "l2", "select", "remove", "cleanup"]


def test_dry_run_writes_no_model(zoo, tmp_path):
    out = tmp_path / "p.onnx"
    r = _cli(zoo["simple_cnn"], "-o", str(out), "--dry-run", "--report", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert not out.exists() and (tmp_path / "r.json").exists()
    assert "dry run" in r.stdout


def test_bench_prints_latency(zoo, tmp_path):
    r = _cli(zoo["simple_cnn"], "-o", str(tmp_path / "p.onnx"), "--bench", "--bench-repeats", "5")
    assert r.returncode == 0, r.stderr
    assert "latency" in r.stdout and "ms" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["--pass", "nope"], "unknown pass 'nope'"),
    (["--pass", "select:ratio=abc"], "between 0 and 1"),
    (["--pass", "select:round_to=x"], "positive integer or auto"),
    (["--pass", "select:bogus=1"], "unknown option 'bogus'"),
    (["--pass", "select:ratio=0.3,macs=0.5"], "give one of"),
    (["--pass", "select:ratio=1.5"], "between 0 and 1"),
    (["--pass", "select:macs=0.0001"], "cannot reach macs"),
])
def test_bad_options_exit_2(zoo, tmp_path, args, needle):
    r = _cli(zoo["simple_cnn"], "-o", str(tmp_path / "p.onnx"), *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.onnx").exists()


def test_usage_errors_exit_2(tmp_path):
    assert _cli().returncode == 2
    assert _cli("m.onnx").returncode == 2  # neither -o nor --dry-run
    assert _cli("--frobnicate").returncode == 2


def test_verify_each_names_the_breaking_pass(zoo, tmp_path):
    """A pass that corrupts the model is named by --verify-each."""
    from graphprune.pipeline import Options, prune
    from graphprune.registry import PrunePass, _REGISTRY, register
    from graphprune.errors import VerificationError

    @register
    class Vandal(PrunePass):
        name = "test-vandal"
        kind = "repair"
        options = {}

        def run(self, model):
            conv = next(n for n in model.graph if n.op_type == "Conv")
            w = conv.inputs[1]
            arr = w.const_value.numpy()[:, :-1]  # drop an input column: shapes no longer fit
            w.const_value = ir.tensor(arr.copy(), name=w.name)
            w.shape = ir.Shape(arr.shape)
            return True

    try:
        with pytest.raises(VerificationError, match="after pass test-vandal"):
            prune(zoo["simple_cnn"], Options(passes=["l1", "select:ratio=0.2", "remove", "test-vandal"],
                                             output=str(tmp_path / "p.onnx"), verify_each=True))
        assert not (tmp_path / "p.onnx").exists()
    finally:
        _REGISTRY.pop("test-vandal")


@pytest.mark.parametrize("name", ["old_opset7", "resnetish", "cifar_resnet20_dynamo"])
def test_verify_each_accepts_clean_pipelines(zoo, tmp_path, name):
    from graphprune.pipeline import Options, prune

    report = prune(zoo[name], Options(passes=["l2", "select:ratio=0.3"], output=str(tmp_path / "p.onnx"),
                                      verify_each=True))
    assert report["verification"]["checker"] == "passed"


def test_no_verify_still_runs_the_checker(zoo, tmp_path):
    r = _cli(zoo["simple_cnn"], "-o", str(tmp_path / "p.onnx"), "--no-verify")
    assert r.returncode == 0 and "ONNX checker passed" in r.stdout


def test_report_names_the_node_that_pins(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 1, 1)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((4, 2, 1, 1)).astype(np.float32), "w2")]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["a"]),
         helper.make_node("DepthToSpace", ["a"], ["b"], blocksize=2, name="d2s"),
         helper.make_node("Conv", ["b", "w2"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    r = _cli(str(path), "--dry-run")
    assert r.returncode == 0, r.stderr
    # Both the group it reads (conv w1 rows) and the one it writes (conv w2 columns).
    assert "pinned: node d2s (op DepthToSpace) pins 2 groups: no channel rule for DepthToSpace" in r.stdout
