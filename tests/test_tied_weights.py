"""Tied and shared weights stay shared: a decoder whose LM head reads the token embedding
through a Transpose (a tied table) comes out with fewer stored parameters than it went in
with, and the table is still one tensor; the same for a tied decoder from `transformers`
(XGLM) as the dynamo exporter writes it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from graph_kit import N, build, w

from graphprune.pipeline import prune

V, H, F = 50, 16, 32


def _stored(path: str) -> int:
    m = onnx.load(path)
    return sum(int(np.prod(t.dims)) for t in m.graph.initializer)


def tied_decoder() -> onnx.ModelProto:
    nodes = [N("Gather", ["W", "ids"], ["e"]), N("MatMul", ["e", "up"], ["u"]), N("Relu", ["u"], ["a"]),
             N("MatMul", ["a", "down"], ["d"]), N("Add", ["d", "e"], ["r"]),
             N("Transpose", ["W"], ["Wt"], perm=[1, 0]), N("MatMul", ["r", "Wt"], ["logits"])]
    return build(nodes, {"W": w(V, H), "up": w(H, F), "down": w(F, H)},
                 {"ids": (["b", "s"], TensorProto.INT64)}, {"logits": ["b", "s", V]})


def test_a_tied_table_stays_one_tensor_and_the_model_shrinks(tmp_path):
    src, out = str(tmp_path / "tied.onnx"), str(tmp_path / "p.onnx")
    onnx.save(tied_decoder(), src)
    prune(src, output=out, passes=["l2", "select:ratio=0.5"], quiet=True)
    pruned = onnx.load(out)
    tables = [t for t in pruned.graph.initializer if sorted(t.dims) == sorted([V, H])]
    assert len(tables) == 1  # no transposed copy beside it
    assert _stored(out) < _stored(src)


def test_a_tied_transformers_decoder_shrinks(tmp_path):
    pytest.importorskip("transformers")
    import warnings

    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.XGLMConfig(vocab_size=96, d_model=64, num_layers=2, attention_heads=4, ffn_dim=128,
                                  max_position_embeddings=64, use_cache=False)
    model = transformers.XGLMForCausalLM(cfg).eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, ids, mask):
            return self.m(input_ids=ids, attention_mask=mask).logits

    src, out = str(tmp_path / "xglm.onnx"), str(tmp_path / "p.onnx")
    args = (torch.randint(0, 96, (2, 12)), torch.ones(2, 12, dtype=torch.long))
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", min=2, max=64)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits().eval(), args, src, dynamo=True, input_names=["input_ids", "attention_mask"],
                          dynamic_shapes=(dims, dims), verbose=False)
    report = prune(src, output=out, passes=["l2", "select:heads=0.25,channels=0.3"], quiet=True)
    assert report["verification"]["checker"] == "passed"
    assert _stored(out) < _stored(src)
    assert report["after"]["params"] < report["before"]["params"]
