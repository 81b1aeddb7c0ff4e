"""Mean-fill targets for the metanet zoo: what a unit costs when a compensation follows.

    python tools/metanet_fill.py --zoo zoo          # resumes: networks with a .fill.npz are kept

For every zoo network (tools/metanet_zoo.py), `ablate:fill=mean` on its 64 calibration
samples: each unit replaced by its calibration mean instead of zero, the relative squared
output change (as `ablate`). That is the change left after a bias correction absorbs the
unit's mean (`compensate`; `restore-stats` re-centres the next layer), so it is the target
of a metanetwork meant to run before a repair pass. Saved as `target` in
`<name>.fill.npz`, in the order of `<name>.units.npz`; `spearman_ablate` (against the
zero-fill target) is saved beside it and printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from metanet_masks import pending  # noqa: E402
from train_metanet import spearman  # noqa: E402
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def one(zoo: str, name: str) -> dict:
    from metanet_zoo import ablated

    t0 = time.perf_counter()
    with np.load(os.path.join(zoo, name + ".units.npz")) as d:
        gid, ablate, pinned = d["gid"], d["target"], d["pinned"]
    ctx = ablated(os.path.join(zoo, name + ".onnx"), os.path.join(zoo, name + ".calib.npz"), fill="mean")
    target = np.zeros(len(gid))
    for g in np.unique(gid):
        sel = gid == g
        scores = ctx.scores.get(int(g))
        if scores is None or len(scores) != sel.sum():
            raise SystemExit(f"metanet_fill: {name}: group {g} does not match {name}.units.npz")
        target[sel] = scores
    free = ~pinned
    rho = spearman(target[free], ablate[free])
    tmp = os.path.join(zoo, name + ".fill.tmp.npz")  # then renamed: a stopped run leaves no half file
    np.savez(tmp, target=target, spearman_ablate=rho)
    os.replace(tmp, os.path.join(zoo, name + ".fill.npz"))
    return {"name": name, "spearman_ablate": round(float(rho), 4), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default="zoo")
    args = ap.parse_args()
    for name in pending(args.zoo, "fill"):
        print(json.dumps(one(args.zoo, name)), flush=True)


if __name__ == "__main__":
    main()
