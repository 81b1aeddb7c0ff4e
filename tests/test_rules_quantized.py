"""Rules of graphprune/analysis/rules/quantized.py: quantized sections (QDQ and QOperator,
as ONNX Runtime's quantizer writes them) are pinned with a reason that points to the float
model, their convolutions still count MACs, the report warns once, and a model with nothing
to prune is written unchanged."""

from __future__ import annotations

import os

import numpy as np
import pytest

from graphprune.pipeline import Options, prune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "models", "digits_cnn.onnx")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    folder = tmp_path_factory.mktemp("quantized")
    x = np.load(os.path.join(ROOT, "models", "digits_calib.npz"))["input"][:16]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": x[i:i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.it, None)

    out = {}
    for fmt in (QuantFormat.QDQ, QuantFormat.QOperator):
        out[fmt.name] = str(folder / f"digits_{fmt.name}.onnx")
        quantize_static(DEMO, out[fmt.name], Reader(), quant_format=fmt)
    return out


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_quantized_models_are_reported_and_written_unchanged(quantized, tmp_path, fmt):
    out = tmp_path / "p.onnx"
    rep = prune(quantized[fmt], Options(output=str(out)))
    assert rep["before"]["macs"] > 9e6  # the demo's 9.48M MACs, quantized or not
    assert any("quantized op: prune the float model" in line for line in rep["pins"])
    assert any("the model is quantized" in w for w in rep["warnings"])
    assert rep["unchanged"] and out.read_bytes() == open(quantized[fmt], "rb").read()
