"""graphprune/evaluate.py: top-1 of a classifier on a labelled .npz, before and after;
a fixed-batch model runs in batches of its size; missing labels or inputs are refused."""

from __future__ import annotations

import numpy as np
import pytest

from graph_kit import N, build, save
from graphprune.errors import BadInput
from graphprune.evaluate import accuracy, accuracy_pair


def _identity_classifier(tmp_path, batch="n", name="m.onnx"):
    return save(build([N("Identity", ["x"], ["y"])], {}, {"x": [batch, 3]}, {"y": [batch, 3]}), tmp_path, name)


def test_accuracy_of_an_identity_classifier(tmp_path):
    x = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]]
    labels = np.array([0, 1, 2, 1, 1])
    assert accuracy(_identity_classifier(tmp_path), {"x": x}, labels, batch=2) == pytest.approx(0.8)
    # A model with a fixed batch of 2 sees only whole batches (4 of the 5 samples).
    assert accuracy(_identity_classifier(tmp_path, 2, "f.onnx"), {"x": x}, labels) == pytest.approx(0.75)


def test_accuracy_pair_and_refusals(tmp_path):
    path = _identity_classifier(tmp_path)
    data = str(tmp_path / "d.npz")
    np.savez(data, x=np.eye(3, dtype=np.float32), labels=np.array([0, 1, 0]))
    assert accuracy_pair(path, path, data) == {"before": pytest.approx(2 / 3), "after": pytest.approx(2 / 3),
                                               "samples": 3}
    np.savez(data, x=np.eye(3, dtype=np.float32))
    with pytest.raises(BadInput, match="needs an array named 'labels'"):
        accuracy_pair(path, path, data)
    np.savez(data, z=np.eye(3, dtype=np.float32), labels=np.zeros(3, int))
    with pytest.raises(BadInput, match="no array for model input"):
        accuracy_pair(path, path, data)
