"""The metanet scorer: an ensemble of small per-unit MLPs over the unit features plus their
group's summaries, in numpy. A unit's score is exp(prediction): the predicted output
change when the unit is removed, on one scale for every group of the network, so
`select:scope=global` can rank groups against each other.

The weights file (`.npz`) holds, for ensemble members e and layers l, `w{l}` of shape
(E, fan_in, fan_out) and `b{l}` of shape (E, fan_out), the feature order `names`, the
feature scaling `mu`/`sd`, and `format` = FORMAT.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graphprune.errors import BadInput
from graphprune.metanet.act_features import ACT
from graphprune.metanet.features import NAMES

FORMAT = 1


def default_path(file: str = "metanet.npz") -> Path:
    """models/<file>: inside the installed package, or at the top of a checkout."""
    here = Path(__file__).resolve().parent.parent
    for folder in (here / "models", here.parent / "models"):
        if (folder / file).is_file():
            return folder / file
    return here.parent / "models" / file


class Scorer:
    def __init__(self, path: str | os.PathLike | None = None, weights: dict | None = None):
        """From the .npz at `path` (default: the shipped one), or from its arrays (`weights`)."""
        path = Path(path) if path else default_path()
        if weights is not None:
            data, path = weights, "the given weights"
        else:
            try:
                with np.load(path, allow_pickle=False) as f:
                    data = {k: f[k] for k in f.files}
            except (OSError, ValueError) as e:
                raise BadInput(f"metanet: cannot read the metanetwork {path}: {type(e).__name__}") from None
        if int(data.get("format", -1)) != FORMAT or "names" not in data:
            raise BadInput(f"metanet: {path} is not a metanetwork of format {FORMAT}")
        names = tuple(str(n) for n in data["names"])
        if names not in (NAMES, NAMES + ACT):
            raise BadInput(f"metanet: {path} was trained on other features than this graphprune computes")
        self.activations = names == NAMES + ACT  # also reads activation features (needs calibration)
        self.mu, self.sd = data["mu"], data["sd"]
        self.layers = []
        while f"w{len(self.layers)}" in data:
            i = len(self.layers)
            self.layers.append((data[f"w{i}"].astype(np.float64), data[f"b{i}"].astype(np.float64)))
        if not self.layers or self.layers[0][0].shape[1] != 2 * len(names):
            raise BadInput(f"metanet: {path} has no layers for {2 * len(names)} inputs")

    def inputs(self, feats: np.ndarray) -> np.ndarray:
        """Scaled unit features, followed by the group's mean of them (the competitors)."""
        x = (feats - self.mu) / self.sd
        return np.concatenate([x, np.broadcast_to(x.mean(0), x.shape)], axis=1)

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """Predicted log output change per unit (mean over the ensemble)."""
        h = np.broadcast_to(self.inputs(feats), (self.layers[0][0].shape[0],) + (len(feats), self.layers[0][0].shape[1]))
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b[:, None, :]
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h[..., 0].mean(0)
