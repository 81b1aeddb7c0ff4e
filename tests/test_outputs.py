"""graphprune/outputs.py: each output's kind from its dtype, shape and name, the metrics
fit for the kind, and the tolerance that turns them into a verdict. The failure modes the
metrics exist for: a detector that finds no faces (thousands of background anchors agree)
and a classifier whose top-1 flips are seen; an image's error is in dB."""

from __future__ import annotations

import numpy as np
import pytest

from graphprune.errors import BadInput
from graphprune.outputs import (classify, compare_output, parse_tolerance, psnr, salient_agreement, summary,
                                violations)

R = np.random.default_rng(0)


@pytest.mark.parametrize("name,value,kind", [
    ("label", np.zeros(8, np.int64), "labels"),
    ("logits", np.zeros((8, 10), np.float32), "class-scores"),
    ("logits", np.zeros((2, 16, 512), np.float32), "class-scores"),
    ("out", np.zeros((8, 10, 1, 1), np.float32), "class-scores"),
    ("scores", np.zeros((1, 4420, 2), np.float32), "entries"),
    ("output", np.zeros((1, 484, 85), np.float32), "entries"),
    ("logits", np.zeros((1, 256, 100), np.float32), "class-scores"),
    ("grid", np.zeros((1, 85, 22, 22), np.float32), "map"),
    ("sr", np.zeros((1, 1, 64, 64), np.float32), "image"),
    ("stateN", np.zeros((2, 1, 128), np.float32), "state"),
    ("present.0.key", np.zeros((1, 4, 8, 16), np.float32), "state"),
    ("sentence_embedding", np.zeros((8, 384), np.float32), "embedding"),
    ("y", np.zeros((8, 1), np.float32), "values"),
])
def test_kinds(name, value, kind):
    assert classify(name, value) == kind


def test_an_output_shaped_like_a_state_input_is_state():
    assert classify("zz", np.zeros((1, 2, 8), np.float32), {"hx": (1, 2, 8)}) != "state"
    assert classify("hx_out", np.zeros((1, 2, 8), np.float32), {"hx": (1, 2, 8)}) == "state"


def test_detections_lost_in_the_background_are_seen():
    """4420 anchors, 12 of them faces: a model that loses every face still agrees on 99.7%
    of the anchors' argmax, but keeps none of the salient entries."""
    bg = np.stack([np.full(4420, 0.99), np.full(4420, 0.01)], -1) + R.normal(0, 0.002, (4420, 2))
    ref = bg.copy()
    ref[:12] = [0.05, 0.95]
    lost = bg.copy()
    r = compare_output("scores", "entries", ref[None], lost[None])
    assert r.metrics["salient"] == 0.0 and np.mean(ref.argmax(-1) == lost.argmax(-1)) > 0.99
    assert compare_output("scores", "entries", ref[None], ref[None] + 1e-4).metrics["salient"] == 1.0
    assert salient_agreement(np.ones((4, 3)), np.ones((4, 3)), axis=-1) == 1.0  # nothing salient


def test_class_scores_and_labels():
    ref = R.standard_normal((100, 10))
    got = ref.copy()
    got[:10] = got[:10, ::-1]  # 10 rows change their ranking
    r = compare_output("logits", "class-scores", ref, got)
    assert 0.85 <= r.metrics["top1"] <= 0.92 and r.metrics["top5"] >= r.metrics["top1"] and r.metrics["kl"] > 0
    assert compare_output("label", "labels", np.arange(10), np.r_[np.arange(9), 0]).metrics["agreement"] == 0.9


def test_psnr():
    ref = np.linspace(0, 1, 1000)
    assert psnr(ref, ref) == float("inf")
    assert psnr(ref, ref + 0.01) == pytest.approx(40.0, abs=0.01)


def test_tolerance_and_violations():
    assert parse_tolerance("top1=0.95, psnr=28,rel=0.1") == {"top1": 0.95, "psnr": 28.0, "rel": 0.1}
    assert parse_tolerance(None) == {}
    for bad in ("top1", "speed=2", "top1=high"):
        with pytest.raises(BadInput, match="--tolerance"):
            parse_tolerance(bad)
    ref = R.standard_normal((50, 10))
    r = compare_output("logits", "class-scores", ref, -ref)
    lines = violations([r], {"top1": 0.9, "psnr": 30.0, "cosine": 0.99})
    assert len(lines) == 1 and "output 'logits' (class-scores): top1 0.0% < 90.0%" in lines[0]  # psnr, cosine: not checked here
    assert "top-1 agreement 0.0%" in summary(r)
