"""graphprune/evaluate.py: top-1 of a classifier on a labelled .npz, before and after. The
class output is found (predicted labels, or the one [N, C] float output), or named with
--eval-output; labels are one class per sample or one-hot rows, anything else is refused
with exit 2; a fixed-batch model runs in batches of its size."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from graph_kit import N, build, save, w
from graphprune.errors import BadInput
from graphprune.evaluate import accuracy_pair, check_labels, class_output


def _identity_classifier(tmp_path, batch="n", name="m.onnx"):
    return save(build([N("Identity", ["x"], ["y"])], {}, {"x": [batch, 3]}, {"y": [batch, 3]}), tmp_path, name)


def _data(tmp_path, **arrays):
    path = str(tmp_path / "d.npz")
    np.savez(path, **arrays)
    return path


def test_accuracy_of_an_identity_classifier(tmp_path):
    x = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]]
    labels = np.array([0, 1, 2, 1, 1])
    data = _data(tmp_path, x=x, labels=labels)
    acc = accuracy_pair(_identity_classifier(tmp_path), _identity_classifier(tmp_path, name="b.onnx"), data)
    assert acc == {"before": pytest.approx(0.8), "after": pytest.approx(0.8), "samples": 5, "output": "y"}
    # A model with a fixed batch of 2 sees only whole batches (4 of the 5 samples).
    fixed = _identity_classifier(tmp_path, 2, "f.onnx")
    assert accuracy_pair(fixed, fixed, data)["samples"] == 4


def test_the_label_output_of_a_classifier_is_found(tmp_path):
    """An exporter's [label (int64), probabilities] pair: the labels are read, not output 0
    taken as scores."""
    proto = build([N("ArgMax", ["x"], ["label"], axis=1, keepdims=0), N("Softmax", ["x"], ["probabilities"])],
                  {}, {"x": ["n", 3]}, {"label": (["n"], TensorProto.INT64), "probabilities": ["n", 3]})
    path = save(proto, tmp_path)
    x = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]
    acc = accuracy_pair(path, path, _data(tmp_path, x=x, labels=np.array([0, 1, 2, 0])))
    assert acc["before"] == pytest.approx(0.75) and acc["output"] == "label"
    named = accuracy_pair(path, path, _data(tmp_path, x=x, labels=np.array([0, 1, 2, 0])), "probabilities")
    assert named["output"] == "probabilities" and named["before"] == pytest.approx(0.75)


def test_class_output_choice():
    n = 4
    assert class_output([("a", np.zeros((n, 3), np.float32))], n) == (0, "scores")
    assert class_output([("a", np.zeros((n, 3, 1, 1), np.float32))], n) == (0, "scores")
    with pytest.raises(BadInput, match="--eval-output"):
        class_output([("a", np.zeros((n, 3), np.float32)), ("b", np.zeros((n, 5), np.float32))], n)
    with pytest.raises(BadInput, match="no output 'c'"):
        class_output([("a", np.zeros((n, 3), np.float32))], n, "c")


def test_labels_are_checked():
    np.testing.assert_array_equal(check_labels(np.eye(3)[[2, 0]], 2, 3), [2, 0])        # one-hot
    np.testing.assert_array_equal(check_labels(np.array([[1], [2]]), 2, 3), [1, 2])
    np.testing.assert_array_equal(check_labels(np.array([1.0, 2.0]), 2, 3), [1, 2])
    for bad, needle in ((np.array([1, 2]), "one class per sample"), (np.array([0.5, 1, 2]), "whole numbers"),
                        (np.array([0, 7, 1]), "3 classes"), (np.ones((3, 2)), "one class per sample")):
        with pytest.raises(BadInput, match=needle):
            check_labels(bad, 3, 3)


def test_refusals(tmp_path):
    path = _identity_classifier(tmp_path)
    with pytest.raises(BadInput, match="needs an array named 'labels'"):
        accuracy_pair(path, path, _data(tmp_path, x=np.eye(3, dtype=np.float32)))
    with pytest.raises(BadInput, match="'z' is not a model input"):
        accuracy_pair(path, path, _data(tmp_path, z=np.eye(3, dtype=np.float32), labels=np.zeros(3, int)))
    with pytest.raises(BadInput, match="one class per sample"):
        accuracy_pair(path, path, _data(tmp_path, x=np.eye(3, dtype=np.float32), labels=np.zeros(2, int)))
