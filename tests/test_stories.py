"""stories260K (../shared/assets/llama2c): the ONNX export matches the NumPy forward, and
its grouped-query heads and SwiGLU neurons prune from the ONNX file with the oracles
holding. Skipped where the assets are absent."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from conftest import ASSETS
from oracles import inert_removal_diff, prune_to_file, run_model

CKPT = os.path.join(ASSETS, "llama2c", "stories260K.bin")
TOK = os.path.join(ASSETS, "llama2c", "tok512.bin")
pytestmark = pytest.mark.skipif(not os.path.exists(CKPT), reason="../shared/assets/llama2c not present")


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    import llama2c

    cfg, w = llama2c.read_model(CKPT)
    path = str(tmp_path_factory.mktemp("stories") / "stories260K.onnx")
    onnx.save(llama2c.build_onnx(cfg, w), path)
    return cfg, w, path


def test_onnx_export_matches_numpy_forward(stories):
    import llama2c

    cfg, w, path = stories
    tokens = np.array(llama2c.Tokenizer(TOK).encode("Once upon a time, there was a little dog."), np.int64)
    assert tokens[0] == 1 and len(tokens) > 5
    _, got = run_model(path, {"input_ids": tokens[None]})
    ref = llama2c.forward_numpy(cfg, w, tokens)
    assert np.abs(got[0][0] - ref).max() < 1e-4 * np.abs(ref).max()


def test_gqa_heads_and_neurons_prune_with_oracles(stories, tmp_path):
    _, _, path = stories
    report = prune_to_file(path, str(tmp_path / "p.onnx"), ["l1", "select:heads=0.5,channels=0.3"])
    heads = [g for g in report["groups"] if g["kind"] == "heads"]
    assert len(heads) == 5 and all(g["units"] == 4 and g["removed"] == 2 for g in heads)  # KV heads
    rel_diff, groups, units = inert_removal_diff(path, tmp_path, ratio=0.5, seed=0)
    assert groups == 10 and rel_diff < 1e-4


def test_query_heads_per_kv_group(stories, tmp_path):
    """With query-heads, the r-th query head of every KV group goes; KV heads stay."""
    _, _, path = stories
    report = prune_to_file(path, str(tmp_path / "q.onnx"), ["query-heads", "l1", "select:heads=0.5"])
    free = [g for g in report["groups"] if g["kind"] == "heads" and g["pinned_units"] == 0]
    assert len(free) == 5 and all(g["units"] == 2 and g["removed"] == 1 for g in free)
    pruned = onnx.load(str(tmp_path / "q.onnx"))
    wk = {t.name: list(t.dims) for t in pruned.graph.initializer}
    assert wk["l0_wk"] == [64, 32] and wk["l0_wq"] == [64, 32]  # 4 KV heads kept, 8 -> 4 query heads
    rel_diff, groups, _ = inert_removal_diff(path, tmp_path, ratio=0.5, seed=1, analysis=("query-heads",))
    assert groups >= 5 and rel_diff < 1e-4
