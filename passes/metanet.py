"""metanet: a learned, data-free criterion. A small network, trained on a zoo of networks
trained for the purpose (never on the networks it is evaluated on), predicts from the
weights alone how much the outputs move when each unit is removed: what the `ablate`
criterion measures with calibration data.

It reads the analysis' groups, so it scores every architecture the analysis can group
(channels, MLP neurons, heads, KV groups) with no per-architecture code. The features
(graphprune/metanet/features.py) are invariant to unit order, to rescaling a ReLU unit's
row and column, and to folding BatchNorm into its conv. Scores are on one scale across
groups (`normalize=none` by default) so `select:scope=global` can compare groups.

Options: `model` (a metanetwork .npz; default the shipped models/metanet.npz, whose card
models/metanet.json lists its features, training zoo and validation), `groups`,
`normalize`, `calibrate` (`none`, the default: the predictions themselves, whose scale
across groups the shipped metanetwork learned from removing many units at once; `lamp`:
groups ranked against each other as LAMP ranks them, on the predicted scores, better for a
metanetwork trained on single-unit targets only), `features` (`weights`, the default:
data-free; `activations`, experimental: with --calib, also each unit's mean contribution
through its consumers on the calibration data (graphprune/metanet/act_features.py), read
by a metanetwork trained with those features, `model=` one that tools/train_metanet.py
--activations wrote: none ships, since none has yet passed the evaluation that would
ship it, tools/README.md). numpy only.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.errors import BadInput
from graphprune.passes.lamp import lamp_scores
from graphprune.registry import register
from graphprune.scoring import ScorePass

ACT_MODEL = "metanet_act.npz"  # the default metanetwork of features=activations


@register
class MetanetPass(ScorePass):
    name = "metanet"
    summary = "data-free, learned: predicted output change of removing each unit, from the weights (models/metanet.npz)"
    options = {"model": "", "groups": "all", "normalize": "none", "calibrate": "none", "features": "weights"}

    def prepare(self, model: ir.Model, groups) -> None:
        from graphprune.metanet.features import features
        from graphprune.metanet.scorer import Scorer, default_path

        how, kind = self.opts["calibrate"], self.opts["features"]
        if how not in ("none", "lamp"):
            raise BadInput(f"metanet: calibrate must be none or lamp, not {how!r}")
        if kind not in ("weights", "activations"):
            raise BadInput(f"metanet: features must be weights or activations, not {kind!r}")
        act = kind == "activations"
        if act:
            self.ctx.require_calibration("metanet:features=activations")
        path = self.opts["model"] or (default_path(ACT_MODEL) if act else None)
        if act and not self.opts["model"] and not path.is_file():
            raise BadInput("metanet: no metanetwork with activation features ships (it did not pass its "
                           "evaluation, tools/README.md); train one with tools/train_metanet.py --activations "
                           "and pass model=FILE")
        scorer = Scorer(path)
        if scorer.activations != act:
            raise BadInput(f"metanet: the metanetwork was trained {'with' if scorer.activations else 'without'} "
                           f"activation features; use features={'activations' if scorer.activations else 'weights'}")
        feats = features(groups, model, self.ctx if act else None)
        self.scores = {}
        for gid, f in feats.items():
            pred = np.exp(np.clip(scorer.predict(f), -60, 60))
            self.scores[gid] = lamp_scores(pred) if how == "lamp" else pred

    def parts(self, g):
        return [self.scores[g.id]]
