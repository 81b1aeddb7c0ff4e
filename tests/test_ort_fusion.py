"""Pruned layers keep exact shapes, so ONNX Runtime's transformer optimizer still fuses
them: a head-pruned BERT gets its fused Attention nodes (with the new head count) and
computes what it computed before fusion."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from oracles import prune_to_file, run_model

pytest.importorskip("torch")


def _fuse(path: str, out: str) -> dict[str, list[int]]:
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    fused = optimize_model(path, model_type="bert", num_heads=0, hidden_size=0)
    fused.save_model_to_file(out)
    heads = [next(a.i for a in n.attribute if a.name == "num_heads")
             for n in fused.model.graph.node if n.op_type == "Attention"]
    return {"heads": heads, "skip_ln": [1 for n in fused.model.graph.node if n.op_type == "SkipLayerNormalization"]}


def test_head_pruned_bert_still_fuses_attention(tmp_path):
    import classic_bert

    dense = classic_bert.export(str(tmp_path / "bert.onnx"))
    pruned = str(tmp_path / "pruned.onnx")
    report = prune_to_file(dense, pruned, ["l1", "select:heads=0.5,channels=0.25"])
    assert sum(g["removed"] for g in report["groups"] if g["kind"] == "heads") == 4  # 2 of 4 in each layer

    before = _fuse(dense, str(tmp_path / "dense_fused.onnx"))
    after = _fuse(pruned, str(tmp_path / "pruned_fused.onnx"))
    assert before["heads"] == [4, 4]
    assert after["heads"] == [2, 2], "Attention was not fused in the pruned layers"
    assert len(after["skip_ln"]) == len(before["skip_ln"]) > 0

    # Unpadded input: the optimizer's EmbedLayerNormalization fusion replaces the mask with
    # a dummy mask index, which changes padded results for the dense model as well.
    feeds, _ = run_model(pruned)
    feeds["attention_mask"] = np.ones_like(feeds["attention_mask"])
    _, unfused = run_model(pruned, feeds)
    _, fused = run_model(str(tmp_path / "pruned_fused.onnx"), feeds)
    np.testing.assert_allclose(fused[0], unfused[0], rtol=1e-4, atol=1e-4)
