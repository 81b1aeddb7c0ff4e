"""The metanet zoo's random-mask targets (tools/metanet_masks.py) and the group rescaling
train_metanet.py builds from them."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))

import metanet_masks  # noqa: E402
import train_metanet  # noqa: E402


def test_additive_fit_recovers_additive_costs():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.0, 1.0, 12)
    masks = rng.random((200, 12)) < 0.3
    coef = metanet_masks.fit_additive(masks, masks @ truth, ridge=1e-9)
    np.testing.assert_allclose(coef, truth, atol=1e-6)


def test_masks_keep_pinned_units_and_a_unit_of_every_group():
    group = np.repeat(np.arange(4), [1, 2, 3, 6])
    free = np.ones(len(group), bool)
    free[[0, 5]] = False  # pinned
    masks = metanet_masks.draw_masks(group, free, 300, np.random.default_rng(1))
    assert not masks[:, ~free].any()
    for g in range(4):
        assert not masks[:, group == g].all(1).any()
    assert masks.any(1).mean() > 0.5  # not empty


def test_a_single_switched_off_unit_changes_the_outputs_as_ablate_measures(tmp_path):
    from graphprune.calibration import Calibration
    from graphprune.context import Context
    from graphprune.loading import load_model
    from graphprune.pipeline import run_passes
    from graphprune.probes import graph_input_meta
    from graphprune.torch import export

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.ReLU(), torch.nn.Linear(10, 8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 3)).eval()
    path = str(tmp_path / "mlp.onnx")
    export(net, (torch.zeros(2, 6),), path)
    model = load_model(path)
    calib = str(tmp_path / "calib.npz")
    np.savez(calib, **{model.graph.inputs[0].name: np.random.default_rng(2).standard_normal((64, 6)).astype(np.float32)})
    ctx = Context(model, quiet=True)
    ctx.calibration = Calibration(calib, graph_input_meta(model), batch=64, quiet=True)
    run_passes(ctx, ["normalize", "ablate:groups=all,normalize=none,samples=64"])
    groups = [g for g in ctx.analysis().groups if g.n_units and g.id in ctx.scores]  # as the zoo's units.npz
    gid = np.concatenate([np.full(g.n_units, g.id) for g in groups])
    want = np.concatenate([ctx.scores[g.id] for g in groups])
    assert len(want) == 6 + 10 + 8  # the input features, then both hidden layers
    masks = np.zeros((1 + len(gid), len(gid)), bool)
    masks[np.arange(1, len(gid) + 1), np.arange(len(gid))] = True  # none off, then each unit alone
    got = metanet_masks.changes(path, calib, gid, masks)
    assert got[0] == 0.0
    np.testing.assert_allclose(got[1:], want, rtol=1e-5, atol=1e-12)


def test_group_rescaling_moves_group_means_and_keeps_the_order_inside():
    group = np.array([0, 0, 0, 1, 1, 2, 2])
    pinned = np.array([False] * 6 + [True])
    ablate = np.array([1.0, 2.0, 3.0, 4.0, 8.0, 1.0, 1.0])
    coef = np.array([0.5, 0.5, 0.5, -1.0, -1.0, 0.0, 0.0])
    out = train_metanet.group_rescaled({"pinned": pinned, "group": group, "target": ablate}, coef)
    np.testing.assert_allclose(out[:3].mean(), 0.5)  # the group's mean is its coefficients' mean
    assert np.all(np.diff(out[:3]) > 0)  # the order inside from ablate
    np.testing.assert_allclose(out[3:5], ablate[3:5] * 0.25)  # mean <= 0: the smallest positive factor (0.5 / 2)
    base = np.array([2.0, 1.0, 3.0, 1.0, 1.0, 5.0, 5.0])
    other = train_metanet.group_rescaled({"pinned": pinned, "group": group, "target": ablate}, coef, base)
    np.testing.assert_allclose(other[:3], base[:3] * 0.25)  # the factors of ablate (0.5 / 2), applied to base
    np.testing.assert_allclose(other[3:5], base[3:5] * 0.25)


def test_stages_family_prunes_its_residual_streams_and_gets_fill_targets(tmp_path):
    """The zoo's CIFAR-style family: with option-A shortcuts the residual stream of all
    three stages is one free group through both zero pads; the pruned export verifies;
    metanet_fill.py writes a mean-fill target per unit of <name>.units.npz."""
    import json

    import metanet_families
    import metanet_fill
    import metanet_zoo
    from graphprune.pipeline import Options, prune
    from graphprune.torch import export

    torch.manual_seed(0)
    net = metanet_families.build("stages", {"width": 4, "blocks": 1, "shortcut": "A"}, None).eval()
    path = str(tmp_path / "stages-0000.onnx")
    x = np.random.default_rng(0).standard_normal((64, 1, 14, 14)).astype(np.float32)
    export(net, (torch.from_numpy(x[:2]),), path)
    name = __import__("onnx").load(path).graph.input[0].name
    calib = str(tmp_path / "stages-0000.calib.npz")
    np.savez(calib, **{name: x})
    units = metanet_zoo.targets(path, calib)
    sizes = {int((units["group"] == g).sum()): bool(units["pinned"][units["group"] == g].all())
             for g in np.unique(units["group"])}
    assert sizes.get(16) is False  # the stream: 4 -> 8 -> 16 channels, one group, free
    np.savez(str(tmp_path / "stages-0000.units.npz"), **units)
    with open(tmp_path / "manifest.json", "w") as f:
        json.dump({"stages-0000": {"family": "stages"}}, f)
    metanet_fill.one(str(tmp_path), "stages-0000")
    fill = np.load(str(tmp_path / "stages-0000.fill.npz"))["target"]
    assert fill.shape == units["target"].shape and np.all(np.isfinite(fill)) and np.all(fill >= 0)
    assert not np.allclose(fill, units["target"])
    rep = prune(path, Options(passes=["l1", "select:ratio=0.5,round_to=1"], output=str(tmp_path / "p.onnx"), quiet=True))
    assert rep["verification"]["checker"] == "passed"
    assert any(g["units"] == 16 and g["removed"] > 0 for g in rep["groups"])
