"""Train the shipped demo model: a small residual CNN on the handwritten digits bundled
with scikit-learn (8x8 grey images, 10 classes; no download), exported to ONNX with a
held-out evaluation set.

It is trained for pruning the way network slimming does (Liu et al., 2017): an L1
penalty on the BatchNorm scales (and shifts, so that a channel with no scale does not
leave a constant behind) pushes unneeded channels towards zero, so the `bn-scale`
criterion can find them. Without it, every channel of so small a net carries signal and
one-shot pruning without calibration costs much accuracy.

    pip install torch==2.13.0 scikit-learn
    python tools/train_digits.py          # writes models/digits_cnn.onnx, models/digits_eval.npz,
                                          # models/digits_calib.npz
    python tools/train_digits.py --calib-only   # only the calibration file, from the same split

The calibration file holds the first 256 training digits (inputs only): calibration comes
from the training split, the evaluation file is the 500 held-out digits.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)
        self.conv2, self.bn2 = nn.Conv2d(64, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)
        self.conv3, self.bn3 = nn.Conv2d(128, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)
        self.conv4, self.bn4 = nn.Conv2d(128, 128, 3, padding=1, bias=False), nn.BatchNorm2d(128)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        y = F.relu(self.bn3(self.conv3(x)))
        x = F.relu(x + self.bn4(self.conv4(y)))  # a residual block
        return self.fc(x.mean((2, 3)))


CALIB_SAMPLES = 256


def split(seed: int = 0):
    """The digits as (N, 1, 8, 8) in [0, 1], labels, and the training / held-out indices."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    return x, y, order[:-500], order[-500:]


def write_calib(seed: int = 0) -> None:
    x, _, train, _ = split(seed)
    np.savez_compressed(os.path.join(ROOT, "models", "digits_calib.npz"), input=x[train[:CALIB_SAMPLES]])
    print(f"wrote models/digits_calib.npz ({CALIB_SAMPLES} training digits)")


def main(epochs: int = 40, seed: int = 0, slimming: float = 3e-3) -> None:
    torch.manual_seed(seed)
    x, y, train, held = split(seed)
    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(yt))
        for s in range(0, len(yt), 64):
            idx = perm[s:s + 64]
            xb = xt[idx] + 0.05 * torch.randn_like(xt[idx])
            loss = F.cross_entropy(model(xb), yt[idx])
            loss = loss + slimming * sum(m.weight.abs().sum() + m.bias.abs().sum()
                                         for m in model.modules() if isinstance(m, nn.BatchNorm2d))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x[held])).argmax(1).numpy() == y[held]).mean()
    print(f"held-out accuracy: {acc * 100:.2f}% on {len(held)} digits")
    out_dir = os.path.join(ROOT, "models")
    os.makedirs(out_dir, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x[:1]),), os.path.join(out_dir, "digits_cnn.onnx"),
                          dynamo=False, do_constant_folding=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    np.savez_compressed(os.path.join(out_dir, "digits_eval.npz"), input=x[held], labels=y[held])
    print("wrote models/digits_cnn.onnx and models/digits_eval.npz")
    write_calib(seed)


if __name__ == "__main__":
    import sys

    if "--calib-only" in sys.argv[1:]:
        write_calib()
    else:
        main()
