"""Fused attention graphs (ONNX Runtime contrib ops, opset-23 Attention, and a BERT run
through ONNX Runtime's transformer optimizer): heads are pruned with the head-count
attributes rewritten, and the exactness oracles hold."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from fused_nets import FUSED
from oracles import inert_removal_diff, prune_to_file, run_model

CASES = list(FUSED) + ["ort_optimized_bert"]


@pytest.fixture(scope="module")
def fused(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("fused")
    paths = {}
    for name, build in FUSED.items():
        paths[name] = str(folder / f"{name}.onnx")
        onnx.save(build(), paths[name])
    try:
        import classic_bert
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError:
        return paths
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    dense = classic_bert.export(str(folder / "bert.onnx"))
    paths["ort_optimized_bert"] = str(folder / "bert_fused.onnx")
    optimize_model(dense, model_type="bert", num_heads=0, hidden_size=0).save_model_to_file(
        paths["ort_optimized_bert"])
    return paths


def _path(fused, case):
    if case not in fused:
        pytest.skip("torch is needed to build the optimized BERT")
    return fused[case]


def _head_attrs(path):
    return [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute
             if a.name in ("num_heads", "kv_num_heads", "q_num_heads", "qkv_hidden_sizes")}
            for n in onnx.load(path).graph.node if "Attention" in n.op_type]


@pytest.mark.parametrize("case", CASES)
def test_heads_pruned_and_counts_rewritten(fused, tmp_path, case):
    src = _path(fused, case)
    out = str(tmp_path / "p.onnx")
    report = prune_to_file(src, out, ["l1", "select:heads=0.5,channels=0.3"])
    assert sum(g["removed"] for g in report["groups"] if g["kind"] == "heads") > 0
    before, after = _head_attrs(src), _head_attrs(out)
    assert len(before) == len(after) > 0
    for b, a in zip(before, after):
        for key in ("num_heads", "q_num_heads"):
            if key in b:
                assert a[key] == b[key] // 2, (key, b, a)
    feeds, ref = run_model(src)
    _, got = run_model(out, feeds, optimize=True)
    assert [r.shape for r in ref] == [g.shape for g in got]


@pytest.mark.parametrize("case", CASES)
def test_pruning_nothing_is_a_noop(fused, tmp_path, case):
    src = _path(fused, case)
    out = str(tmp_path / "same.onnx")
    prune_to_file(src, out, ["l1", "select:ratio=0"])
    feeds, ref = run_model(src)
    _, got = run_model(out, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_inert_heads_removed_exactly(fused, tmp_path, case, seed):
    rel_diff, groups, units = inert_removal_diff(_path(fused, case), tmp_path, ratio=0.5, seed=seed)
    assert groups >= 2 and units > 0
    assert rel_diff < 1e-4


def test_fused_attention_that_cannot_be_pruned_is_refused_by_name(tmp_path):
    from fused_nets import ms_mha_with_bias
    from graphprune.context import Context
    from graphprune.loading import load_model
    from graphprune.pipeline import run_passes

    path = str(tmp_path / "mha_bias.onnx")
    onnx.save(ms_mha_with_bias(), path)
    ctx = Context(load_model(path))
    run_passes(ctx, ["normalize"])
    reasons = [r for g in ctx.analysis().groups for r in g.pin_reasons]
    assert any("mha_with_bias" in r and "fused attention not pruned" in r for r in reasons)
    assert not any(g.kind == "heads" and not g.pinned.all() for g in ctx.analysis().groups)
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:ratio=0.3"])
    assert report["after"]["params"] < report["before"]["params"]  # the MLP still prunes
