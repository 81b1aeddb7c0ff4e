"""metanet:features=activations (graphprune/metanet/act_features.py): the metanetwork also
reads AMP's per-unit scores on the calibration data. The scores keep the weight features'
invariances (the activations do not change when a BatchNorm is folded or a ReLU unit is
rescaled), follow permuted units, move when the activations do, and a metanetwork trained
with one feature list is refused for the other with a one-line error."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx_ir as ir
import pytest

from graph_kit import group_of, save
from graphprune.calibration import Calibration
from graphprune.context import Context
from graphprune.errors import BadInput
from graphprune.metanet.act_features import ACT
from graphprune.metanet.features import NAMES
from graphprune.metanet.scorer import FORMAT, default_path
from graphprune.passes.metanet import ACT_MODEL
from graphprune.pipeline import run_passes
from graphprune.probes import graph_input_meta
from test_metanet import ARRAYS, _model, _random_metanet, _rescaled, check_scores_follow_permuted_units

X = np.random.default_rng(5).standard_normal((16, 3, 6, 6)).astype(np.float32)


def _act_metanet(path, seed=2, hidden=16):
    rng = np.random.default_rng(seed)
    f = len(NAMES) + len(ACT)
    np.savez(path, format=np.array(FORMAT), names=np.array(NAMES + ACT), mu=np.zeros(f), sd=np.ones(f),
             w0=rng.standard_normal((2, 2 * f, hidden)) * 0.3, b0=rng.standard_normal((2, hidden)) * 0.1,
             w1=rng.standard_normal((2, hidden, 1)) * 0.3, b1=np.zeros((2, 1)))
    return str(path)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("metanet_act")
    return _act_metanet(folder / "act.npz"), _random_metanet(folder / "w.npz")


def _ctx(arrays, x=X, folded=False, calib=True):
    model = ir.from_proto(_model(arrays, folded))
    ctx = Context(model, quiet=True)
    if calib:
        ctx.calibration = Calibration([{"x": x}], graph_input_meta(model), quiet=True)
    return ctx


def _scores(arrays, net, x=X, folded=False):
    ctx = _ctx(arrays, x, folded)
    run_passes(ctx, ["normalize", f"metanet:model={net},features=activations"])
    a = ctx.analysis()
    return {name: ctx.scores[group_of(a, name, 0).id] for name in ("c1", "c2")} | \
        {"m1": ctx.scores[group_of(a, "m1", 1).id]}


def test_activation_scores_keep_the_invariances_and_follow_the_data(nets):
    act, _ = nets
    base = _scores(ARRAYS, act)
    for name, got in _scores(_rescaled(ARRAYS), act).items():
        np.testing.assert_allclose(got, base[name], rtol=1e-4, err_msg=name)
    for name, got in _scores(ARRAYS, act, folded=True).items():
        np.testing.assert_allclose(got, base[name], rtol=1e-4, err_msg=f"folded {name}")
    # other data, same weights: the activations, and so the scores, move
    other = _scores(ARRAYS, act, x=X * np.linspace(0.2, 3, 3)[None, :, None, None].astype(np.float32) + 1)
    assert not np.allclose(other["c1"], base["c1"], rtol=1e-3)


def test_activation_scores_follow_permuted_units(nets):
    act, _ = nets
    check_scores_follow_permuted_units(lambda arrays: _scores(arrays, act))


def test_act_columns_rank_units_as_amp_does_where_the_consumer_is_last(nets):
    """The MLP's hidden neurons feed the last MatMul, whose outputs are no group: nothing
    rebalances their columns, so the within-group columns order the units exactly as the
    amp criterion does (AMP's single-column score)."""
    from graphprune.metanet.features import features

    ctx = _ctx(ARRAYS)
    run_passes(ctx, ["normalize"])
    g = group_of(ctx.analysis(), "m1", 1)
    cols = features([g], ctx.model, ctx)[g.id][:, len(NAMES):]
    amp = _ctx(ARRAYS)
    run_passes(amp, ["normalize", "amp:normalize=none"])
    np.testing.assert_array_equal(np.argsort(cols[:, 0], kind="stable"), np.argsort(amp.scores[g.id], kind="stable"))
    assert len(set(np.round(cols[:, 0], 9))) >= 6  # enough distinct values (dead ReLUs tie at 0) to make it a check


@pytest.mark.parametrize("case", ["weights-model", "act-model-without-flag", "no-calib", "none-shipped"])
def test_mismatched_metanetwork_or_missing_calibration_is_refused(nets, case):
    act, weights = nets
    spec = {"weights-model": f"metanet:model={weights},features=activations",
            "act-model-without-flag": f"metanet:model={act}",
            "no-calib": f"metanet:model={act},features=activations",
            "none-shipped": "metanet:features=activations"}[case]
    if case == "none-shipped" and default_path(ACT_MODEL).is_file():
        pytest.skip("a metanetwork with activation features ships")
    ctx = _ctx(ARRAYS, calib=case != "no-calib")
    with pytest.raises(BadInput, match="metanet"):
        run_passes(ctx, ["normalize", spec])


def test_cli_without_calibration_is_one_line(tmp_path, nets):
    path = save(_model(ARRAYS), tmp_path)
    out = tmp_path / "out.onnx"
    r = subprocess.run([sys.executable, "-m", "graphprune", path, "-o", str(out), "--pass",
                        f"metanet:model={nets[0]},features=activations"], capture_output=True, text=True)
    assert r.returncode != 0 and not out.exists()
    assert len(r.stderr.strip().splitlines()) == 1 and "calib" in r.stderr, r.stderr
