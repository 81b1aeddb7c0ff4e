"""Every calibration-aware criterion, with and without compensation, gives a valid,
smaller model on CNNs and transformers; without calibration data they refuse in one
line; a calibration-aware score tells a dead channel from a live one where magnitude
cannot."""

from __future__ import annotations

import numpy as np
import pytest

from graphprune.errors import BadInput
from oracles import prune_to_file, run_model

CRITERIA = ["ifv", "wifv", "wifn", "wanda-sp", "act-norm", "amp"]


def _calib_for(path, tmp_path, n=24):
    """An .npz of 2n probe samples (rebatched to a fixed-batch model's batch size)."""
    from graphprune.probes import index_bounds, input_meta, probe_inputs
    from graphprune.runtime import session

    meta = [(name, ["n", *dims[1:]], t) for name, dims, t in input_meta(session(path))]
    parts = [probe_inputs(meta, batch=n, seed=s, bounds=index_bounds(path)) for s in range(2)]
    out = str(tmp_path / "calib.npz")
    np.savez(out, **{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    return out


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("name", ["resnetish", "mobilenetish", "cifar_resnet20"])
def test_criteria_on_cnns(zoo, tmp_path, name, criterion):
    from graphprune.pipeline import Options, prune

    out = str(tmp_path / "p.onnx")
    report = prune(zoo[name], Options(passes=[criterion, "select:ratio=0.3,round_to=1", "compensate", "restore-stats"],
                                      output=out, calib=_calib_for(zoo[name], tmp_path)))
    assert report["verification"]["checker"] == "passed"
    assert report["after"]["macs"] < report["before"]["macs"]
    # 12 of the 48 samples are held out for verification
    assert report["calibration"]["samples"] == 36 and report["calibration"]["sha256"]
    feeds, ref = run_model(zoo[name])
    _, got = run_model(out, feeds)
    assert [a.shape for a in ref] == [b.shape for b in got] and all(np.isfinite(b).all() for b in got)


@pytest.mark.parametrize("criterion", ["wifv", "amp"])
@pytest.mark.parametrize("case", ["bert_dynamo", "llama_dynamo"])
def test_criteria_on_transformers(tzoo, tmp_path, case, criterion):
    from graphprune.pipeline import Options, prune

    out = str(tmp_path / "p.onnx")
    report = prune(tzoo[case], Options(passes=[criterion, "select:heads=0.25,channels=0.3,round_to=1", "compensate"],
                                       output=out, calib=_calib_for(tzoo[case], tmp_path, n=4)))
    assert report["verification"]["checker"] == "passed"
    assert sum(g["removed"] for g in report["groups"] if g["kind"] == "heads") > 0


def test_without_calibration_data_the_criterion_refuses(zoo, tmp_path):
    with pytest.raises(BadInput, match="wifv needs calibration data: pass --calib"):
        prune_to_file(zoo["resnetish"], str(tmp_path / "p.onnx"), ["wifv", "select:ratio=0.3,round_to=1"])


def test_activation_scores_find_dead_channels(tmp_path):
    """Channels that are large in weight but never active (ReLU of a negative bias) score
    lowest with act-norm and wifv, while L1 keeps them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from graphprune.context import Context
    from graphprune.loading import load_model
    from graphprune.pipeline import run_passes

    r = np.random.default_rng(0)
    w1 = r.standard_normal((8, 16)).astype(np.float32) * 0.1
    b1 = np.zeros(16, np.float32)
    dead = [2, 9]
    w1[:, dead] *= 30  # large weights ...
    b1[dead] = -1e4    # ... but never active
    w2 = r.standard_normal((16, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["a"]), helper.make_node("MatMul", ["a", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
                              [numpy_helper.from_array(v, k) for k, v in {"w1": w1, "b1": b1, "w2": w2}.items()])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    calib = [{"x": r.standard_normal((64, 8)).astype(np.float32)}]
    from graphprune.calibration import Calibration
    from graphprune.probes import graph_input_meta

    for criterion, finds in (("act-norm", True), ("wifv", True), ("l1", False)):
        model = load_model(path)
        ctx = Context(model)
        ctx.calibration = Calibration(calib, graph_input_meta(model))
        run_passes(ctx, ["normalize", criterion, "select:ratio=0.125,round_to=1"])
        (units,) = ctx.plan.values()
        assert (sorted(units.tolist()) == dead) == finds, (criterion, units)


def test_heads_and_channels_can_have_their_own_criteria(tzoo, tmp_path):
    """amp:groups=heads then wifv:groups=channels: the heads are cut as by amp alone, the
    neurons as by wifv alone."""
    from graphprune.pipeline import Options, prune

    calib = _calib_for(tzoo["bert_dynamo"], tmp_path, n=4)

    def groups(*score):
        rep = prune(tzoo["bert_dynamo"], Options(passes=[*score, "select:heads=0.25,channels=0.3,round_to=1"],
                                                 dry_run=True, calib=calib, quiet=True))
        return {(g["kind"], i): (g["score_removed_max"], g["score_kept_min"]) for i, g in enumerate(rep["groups"])}

    amp, wifv, both = groups("amp"), groups("wifv"), groups("amp:groups=heads", "wifv:groups=channels")
    assert {k for k in both if k[0] == "heads"} and {k for k in both if k[0] == "channels"}
    for key, value in both.items():
        assert value == (amp if key[0] == "heads" else wifv)[key], key
    assert amp != wifv
    with pytest.raises(BadInput, match="groups must be all, heads or channels"):
        groups("amp:groups=neurons")
