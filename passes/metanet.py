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
metanetwork trained on single-unit targets only). numpy only.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from graphprune.errors import BadInput
from graphprune.passes.lamp import lamp_scores
from graphprune.registry import register
from graphprune.scoring import ScorePass


@register
class MetanetPass(ScorePass):
    name = "metanet"
    summary = "data-free, learned: predicted output change of removing each unit, from the weights (models/metanet.npz)"
    options = {"model": "", "groups": "all", "normalize": "none", "calibrate": "none"}

    def prepare(self, model: ir.Model, groups) -> None:
        from graphprune.metanet.features import features
        from graphprune.metanet.scorer import Scorer

        how = self.opts["calibrate"]
        if how not in ("none", "lamp"):
            raise BadInput(f"metanet: calibrate must be none or lamp, not {how!r}")
        scorer = Scorer(self.opts["model"] or None)
        self.scores = {}
        for gid, f in features(groups, model).items():
            pred = np.exp(np.clip(scorer.predict(f), -60, 60))
            self.scores[gid] = lamp_scores(pred) if how == "lamp" else pred

    def parts(self, g):
        return [self.scores[g.id]]
