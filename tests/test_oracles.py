"""Exactness oracles over every test model: pruning nothing changes nothing; removing
inert units leaves outputs unchanged; every pruned model is valid and keeps its shapes."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DYNAMO
from nets import TORCH_NETS
from handmade import HANDMADE
from oracles import inert_removal_diff, prune_to_file, run_model

NAMES = list(TORCH_NETS) + ["cifar_resnet20"] + [n + "_dynamo" for n in DYNAMO] + list(HANDMADE)


@pytest.mark.parametrize("name", NAMES)
def test_pruning_nothing_is_a_noop(zoo, tmp_path, name):
    out = str(tmp_path / "same.onnx")
    report = prune_to_file(zoo[name], out, ["l1", "select:ratio=0"])
    feeds, ref = run_model(zoo[name])
    _, got = run_model(out, feeds)
    for a, b in zip(ref, got):
        assert a.shape == b.shape
        assert np.array_equal(a, b), f"max diff {np.max(np.abs(a - b))}"
    assert report["after"]["macs"] == report["before"]["macs"]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", NAMES)
def test_removing_inert_units_keeps_outputs(zoo, tmp_path, name, seed):
    rel_diff, groups, units = inert_removal_diff(zoo[name], tmp_path, ratio=0.5, seed=seed)
    assert groups > 0 and units > 0, "nothing was prunable"
    assert rel_diff < 1e-4


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("criterion", ["l1", "l2", "bn-scale", "random"])
def test_pruned_model_is_valid_and_smaller(zoo, tmp_path, name, criterion):
    out = str(tmp_path / "p.onnx")
    report = prune_to_file(zoo[name], out, [criterion, "select:ratio=0.3"])
    v = report["verification"]
    assert v["checker"] == "passed"
    assert report["after"]["macs"] < report["before"]["macs"]
    assert report["after"]["params"] < report["before"]["params"]
    feeds, ref = run_model(zoo[name])
    _, got = run_model(out, feeds, optimize=True)
    assert [a.shape for a in ref] == [b.shape for b in got]
    assert all(np.isfinite(b).all() for b in got)
