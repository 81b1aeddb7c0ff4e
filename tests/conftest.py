"""Fixtures: the test-model zoo is exported once per session into a temporary folder."""

from __future__ import annotations

import os
import sys
import warnings

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ASSETS = os.path.join(ROOT, "..", "shared", "assets")
sys.path[:0] = [HERE, os.path.join(ROOT, "tools")]

# Counts the robustness suites report at the end of the run (pytest hides test output).
SUITE_COUNTS: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter):
    for name, line in SUITE_COUNTS.items():
        terminalreporter.write_line(f"{name}: {line}")


# Models exported with the dynamo exporter as well (it is slower; a few suffice).
DYNAMO = ("resnetish", "mobilenetish", "misc_ops", "cifar_resnet20")


def export(module, shape, path, dynamo=False):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = torch.randn(*shape)
        if dynamo:
            torch.onnx.export(module, (x,), path, dynamo=True, verbose=False)
        else:
            torch.onnx.export(module, (x,), path, dynamo=False, do_constant_folding=False)
    return path


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> dict[str, str]:
    """name -> path of every test model (torch exports and hand-built graphs)."""
    pytest.importorskip("torch")
    import logging

    import onnx
    import torch
    from cifar_resnet import CifarResNet
    from handmade import HANDMADE
    from nets import TORCH_NETS, randomize_bn

    logging.getLogger("torch").setLevel(logging.ERROR)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("zoo")
    nets = {name: (lambda c=cls: randomize_bn(c()), shape) for name, (cls, shape) in TORCH_NETS.items()}
    nets["cifar_resnet20"] = (lambda: randomize_bn(CifarResNet(20)), (1, 3, 32, 32))
    paths = {}
    for name, (make, shape) in nets.items():
        module = make()
        paths[name] = export(module, shape, str(folder / f"{name}.onnx"))
        if name in DYNAMO:
            paths[name + "_dynamo"] = export(module, shape, str(folder / f"{name}_dynamo.onnx"), dynamo=True)
    for name, build in HANDMADE.items():
        path = str(folder / f"{name}.onnx")
        onnx.save(build(), path)
        paths[name] = path
    return paths


def light_models() -> list[str]:
    import onnx

    folder = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".onnx"))


def asset(*parts) -> str:
    path = os.path.join(ASSETS, *parts)
    if not os.path.exists(path):
        pytest.skip(f"shared asset {os.path.join(*parts)} not available")
    return path


@pytest.fixture(scope="session")
def tzoo(tmp_path_factory) -> dict[str, str]:
    """'<model>_<exporter>' -> path of every transformer of tests/transformer_zoo.py."""
    pytest.importorskip("transformers")
    import logging

    import transformer_zoo

    logging.getLogger("torch").setLevel(logging.ERROR)
    folder = tmp_path_factory.mktemp("transformers")
    return {f"{name}_{'dynamo' if dyn else 'torchscript'}":
            transformer_zoo.export(name, str(folder / f"{name}_{int(dyn)}.onnx"), dynamo=dyn)
            for name, dyn in transformer_zoo.exports()}
