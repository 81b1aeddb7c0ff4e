"""Real trained models from ../shared/assets (skipped when the folder is absent):
mnist-8 (a CNTK export, opset 8) and the CIFAR-10 ResNets with option-A shortcuts."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from conftest import asset, export
from oracles import inert_removal_diff, prune_to_file
from graphprune.evaluate import accuracy


def mnist_data(n=2000):
    with gzip.open(asset("mnist", "t10k-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n].astype(np.float32)
    with gzip.open(asset("mnist", "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
    return x, y


def test_mnist8_prunes_and_keeps_accuracy(tmp_path):
    path = asset("mnist", "mnist-8.onnx")
    x, y = mnist_data()
    base = accuracy(path, {"Input3": x}, y)
    assert base > 0.97
    out = str(tmp_path / "p.onnx")
    report = prune_to_file(path, out, ["l2", "select:ratio=0.25,round_to=1"])
    assert report["after"]["macs"] < 0.8 * report["before"]["macs"]
    assert accuracy(out, {"Input3": x}, y) > base - 0.05
    diff, groups, _ = inert_removal_diff(path, tmp_path)
    assert groups == 2 and diff < 1e-5


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    pytest.importorskip("torch")
    from cifar_resnet import load_trained

    folder = tmp_path_factory.mktemp("cifar")
    data = np.load(asset("cifar10", "test_jpeg.npz"))
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    x = ((data["x"][1000:2000].transpose(0, 3, 1, 2) / 255.0).astype(np.float32) - mean) / std
    model = load_trained(asset("cifar10", "resnet20-12fca82f.th"), 20)
    path = export(model, (1, 3, 32, 32), str(folder / "resnet20.onnx"), dynamo=True)
    return path, x.astype(np.float32), data["y"][1000:2000]


def test_cifar_resnet20_prunes_residual_groups_through_slice_and_pad(cifar, tmp_path):
    path, x, y = cifar
    out = str(tmp_path / "p.onnx")
    report = prune_to_file(path, out, ["l1", "select:ratio=0.2,round_to=1"])
    # The three residual streams (joined through the option-A shortcuts) lose channels too.
    residual = [g for g in report["groups"] if any("Pad" in m or "pad" in m for m in g["members"])]
    assert residual and all(g["removed"] > 0 for g in residual)
    base = accuracy(path, {"x": x}, y)
    assert base > 0.8
    # One shot without calibration costs a small ResNet much accuracy; the criterion must
    # still beat chance-level selection clearly.
    rand = str(tmp_path / "r.onnx")
    prune_to_file(path, rand, ["random", "select:ratio=0.2,round_to=1"])
    assert accuracy(out, {"x": x}, y) > accuracy(rand, {"x": x}, y) + 0.05
    diff, _, _ = inert_removal_diff(path, tmp_path)
    assert diff < 1e-4
