"""graphprune/make_calib.py (`graphprune calib`): sample files built for a model, read from
it (input name, layout, channels, fixed size, dtype): image folders with class subfolders
(and labels), any image size, gray/BGR; WAV audio cut to the model's length with constant
inputs per sample; arrays; one-line refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import wave

import numpy as np
import pytest

from graph_kit import N, build, save, w
from graphprune.errors import BadInput
from graphprune.make_calib import main, pack_tokens

PIL = pytest.importorskip("PIL")


def _images(folder, sizes=((20, 10), (7, 9))):
    from PIL import Image

    r = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        os.makedirs(folder / cls, exist_ok=True)
        for i, (wd, ht) in enumerate(sizes):
            Image.fromarray(r.integers(0, 255, (ht, wd, 3), dtype=np.uint8)).save(folder / cls / f"{i}.png")


def _conv_model(tmp_path, x_shape):
    proto = build([N("Conv", ["img", "w1"], ["y"])], {"w1": w(2, x_shape[1] if x_shape[1] in (1, 3) else 3, 1, 1)},
                  {"img": x_shape}, {"y": [x_shape[0], 2, "h", "w"] if isinstance(x_shape[2], str) else
                                     [x_shape[0], 2, x_shape[2], x_shape[3]]})
    return save(proto, tmp_path)


def test_images_with_class_subfolders_and_labels(tmp_path):
    _images(tmp_path / "photos")
    model = _conv_model(tmp_path, [1, 3, 8, 6])
    out = tmp_path / "c.npz"
    assert main([model, "-o", str(out), "--images", str(tmp_path / "photos"), "--labels", "--mean", "0.5"]) == 0
    d = np.load(out)
    assert d["img"].shape == (4, 3, 8, 6) and d["img"].dtype == np.float32 and list(d["labels"]) == [0, 0, 1, 1]
    assert -0.51 <= d["img"].min() and d["img"].max() <= 0.51


def test_gray_bgr_symbolic_sizes(tmp_path):
    _images(tmp_path / "photos")
    gray = _conv_model(tmp_path, ["n", 1, "h", "w"])
    with pytest.raises(BadInput, match="give --size WxH"):
        main([gray, "-o", str(tmp_path / "g.npz"), "--images", str(tmp_path / "photos")])
    main([gray, "-o", str(tmp_path / "g.npz"), "--images", str(tmp_path / "photos"), "--size", "5x4"])
    assert np.load(tmp_path / "g.npz")["img"].shape == (4, 1, 4, 5)
    rgb = _conv_model(tmp_path, [1, 3, 4, 4])
    main([rgb, "-o", str(tmp_path / "r.npz"), "--images", str(tmp_path / "photos")])
    main([rgb, "-o", str(tmp_path / "b.npz"), "--images", str(tmp_path / "photos"), "--color", "bgr"])
    np.testing.assert_allclose(np.load(tmp_path / "b.npz")["img"], np.load(tmp_path / "r.npz")["img"][:, ::-1])


def test_audio_chunks_and_constant_inputs(tmp_path):
    os.makedirs(tmp_path / "wav")
    with wave.open(str(tmp_path / "wav" / "a.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes((np.sin(np.arange(1000) / 5) * 16000).astype("<i2").tobytes())
    from onnx import TensorProto

    proto = build([N("MatMul", ["input", "w1"], ["y"]), N("Identity", ["state"], ["stateN"]),
                   N("Identity", ["sr"], ["sr_out"])],
                  {"w1": w(256, 1)}, {"input": ["n", 256], "state": [2, "n", 8], "sr": ([], TensorProto.INT64)},
                  {"y": ["n", 1], "stateN": [2, "n", 8], "sr_out": ([], TensorProto.INT64)})
    model = save(proto, tmp_path)
    main([model, "-o", str(tmp_path / "a.npz"), "--audio", str(tmp_path / "wav"), "--rate", "16000",
          "--length", "256", "--fill", "state=0", "--fill", "sr=16000"])
    d = np.load(tmp_path / "a.npz")
    assert d["input"].shape == (3, 1, 256) and d["state"].shape == (3, 2, 1, 8) and list(d["sr"]) == [16000] * 3
    with pytest.raises(BadInput, match="not --rate 8000"):
        main([model, "-o", str(tmp_path / "b.npz"), "--audio", str(tmp_path / "wav"), "--rate", "8000", "--length", "256"])


def test_refusals_are_one_line(tmp_path):
    model = _conv_model(tmp_path, [1, 3, 4, 4])
    for args, needle in ((["--images", str(tmp_path / "none")], "no such folder"),
                         (["--arrays", "img=" + str(tmp_path / "missing.npy")], "cannot read"),
                         (["--images", str(tmp_path)], "no images")):
        r = subprocess.run([sys.executable, "-m", "graphprune", "calib", model, "-o", str(tmp_path / "x.npz"), *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_pack_tokens_fills_whole_windows():
    ids = pack_tokens([[101, 5, 6, 102], [101, 7, 102], [101, 8, 9, 10, 102]], 4)
    np.testing.assert_array_equal(ids, [[101, 5, 6, 102], [101, 7, 102, 101], [8, 9, 10, 102]])
    assert ids.dtype == np.int64
    assert pack_tokens([[1, 2, 3]], 4).shape == (0, 4)  # a partial window is dropped, never padded
