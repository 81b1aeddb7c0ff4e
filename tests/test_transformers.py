"""Transformers from `transformers` configs, exported as users export them (dynamo with
dynamic batch and sequence; TorchScript for BERT, GPT-2 and T5): heads and MLP neurons
are found from the ONNX file alone and pruned in one run, and the exactness oracles hold."""

from __future__ import annotations

import numpy as np
import pytest

from oracles import inert_removal_diff, prune_to_file, run_model

pytest.importorskip("transformers")
import transformer_zoo  # noqa: E402

CASES = [f"{name}_{'dynamo' if dyn else 'torchscript'}" for name, dyn in transformer_zoo.exports()]


@pytest.mark.parametrize("case", CASES)
def test_heads_and_neurons_pruned_in_one_run(tzoo, tmp_path, case):
    out = str(tmp_path / "p.onnx")
    report = prune_to_file(tzoo[case], out, ["l1", "select:heads=0.25,channels=0.3,round_to=1"])
    assert report["verification"]["checker"] == "passed"
    removed = {"heads": 0, "channels": 0}
    for g in report["groups"]:
        removed[g["kind"]] += g["removed"]
    assert removed["heads"] > 0, "no attention head was pruned"
    assert removed["channels"] > 0, "no MLP neuron was pruned"
    assert report["after"]["params"] < report["before"]["params"]
    # Dynamic axes survive: the pruned model runs at another batch and sequence length.
    feeds, ref = run_model(tzoo[case])
    _, got = run_model(out, feeds, optimize=True)
    assert [a.shape for a in ref] == [b.shape for b in got]
    longer = {k: np.concatenate([v, v], axis=0) for k, v in feeds.items()}
    _, got2 = run_model(out, longer)
    assert got2[0].shape[0] == 2 * got[0].shape[0]


@pytest.mark.parametrize("case", CASES)
def test_pruning_nothing_is_a_noop(tzoo, tmp_path, case):
    out = str(tmp_path / "same.onnx")
    prune_to_file(tzoo[case], out, ["l1", "select:ratio=0,round_to=1"])
    feeds, ref = run_model(tzoo[case])
    _, got = run_model(out, feeds)
    for a, b in zip(ref, got):
        assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("case", CASES)
def test_inert_heads_and_neurons_removed_exactly(tzoo, tmp_path, case):
    rel_diff, groups, units = inert_removal_diff(tzoo[case], tmp_path, ratio=0.5, seed=1)
    assert groups >= 2 and units > 0
    assert rel_diff < 1e-4


@pytest.mark.parametrize("case", ["llama_dynamo", "qwen2_dynamo", "mistral_dynamo"])
def test_query_heads_per_kv_group_on_gqa_models(tzoo, tmp_path, case):
    report = prune_to_file(tzoo[case], str(tmp_path / "q.onnx"), ["query-heads", "l1", "select:heads=0.5,round_to=1"])
    free = [g for g in report["groups"] if g["kind"] == "heads" and g["pinned_units"] == 0]
    assert free and all(g["units"] == 2 and g["removed"] == 1 for g in free)  # n_rep 2 -> 1
    rel_diff, groups, _ = inert_removal_diff(tzoo[case], tmp_path, ratio=0.5, seed=0, analysis=("query-heads",))
    assert groups >= 2 and rel_diff < 1e-4


@pytest.mark.parametrize("case", ["bert_dynamo", "gpt2_torchscript", "llama_dynamo"])
def test_head_dims_when_nothing_forbids_it(tzoo, tmp_path, case):
    """head-dims prunes the j-th position of every head; rotary embeddings (Llama) keep
    the query/key head_dim whole, so only value/output positions go there."""
    report = prune_to_file(tzoo[case], str(tmp_path / "d.onnx"), ["head-dims", "l1", "select:ratio=0.25,round_to=1"])
    per_head = [g for g in report["groups"] if g["units"] in (16, 32) and g["removed"]]
    assert per_head, "no head_dim position was pruned"
    if case.startswith("llama"):
        assert all(g["units"] == 16 for g in per_head) and len(per_head) == 2  # V/O of 2 layers
    rel_diff, groups, _ = inert_removal_diff(tzoo[case], tmp_path, ratio=0.5, seed=0, analysis=("head-dims",))
    assert groups >= 2 and rel_diff < 1e-4
