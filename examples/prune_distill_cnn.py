"""The two-minute path for a CNN: a torchvision-style ResNet (BasicBlocks, BatchNorm,
1x1-conv downsampling shortcuts), trained here on scikit-learn's bundled digits (no
download), pruned to half its MACs with graphprune.torch, recovered by distillation,
exported to ONNX and run in ONNX Runtime.

    pip install torch==2.13.0 scikit-learn 'graphprune[torch]'
    python examples/prune_distill_cnn.py [--epochs 3]

With your own model: replace `train_resnet()` by your trained module and the digits by
your data loader's batches (inputs only: prune and distill need no labels).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import graphprune.torch as gpt


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, widths=(32, 64, 128), classes: int = 10):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [Block(cin, w, 1 if i == 0 else 2), Block(w, w, 1)]
            cin = w
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:, None].astype(np.float32) / 16.0 - 0.5) / 0.5
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[:1297], order[1297:]
    return torch.from_numpy(x[train]), torch.from_numpy(d.target[train]), x[test], d.target[test]


def train_resnet(x, y, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    model = ResNet()
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    for _ in range(epochs):
        for i in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    return model.eval()


def accuracy(run, x, y) -> float:
    return float((run(x).argmax(1) == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3, help="training epochs of the example model")
    ap.add_argument("--distill-epochs", type=int, default=3)
    args = ap.parse_args()
    x, y, x_test, y_test = digits()
    model = train_resnet(x, y, args.epochs)
    torch_run = lambda m: lambda a: m(torch.from_numpy(a)).detach().numpy()  # noqa: E731
    dense_acc = accuracy(torch_run(model), x_test, y_test)

    # 1. prune: half the MACs, calibration-aware (score on activations, refit, BatchNorm re-estimated)
    batches = list(x[:256].split(32))
    result = gpt.prune(model, (x[:32],), calib=batches, passes=["select:macs=0.5"])
    small = result.module
    print(f"MACs {result.report['before']['macs'] / result.report['after']['macs']:.2f}x fewer; top-1 "
          f"{dense_acc:.3f} dense, {accuracy(torch_run(small), x_test, y_test):.3f} pruned")

    # 2. recover: the pruned student learns the dense teacher's outputs (no labels)
    gpt.distill(small, model, list(x.split(64)), epochs=args.distill_epochs)
    print(f"after distillation: top-1 {accuracy(torch_run(small), x_test, y_test):.3f}")

    # 3. save (state_dict + plan) and deploy (ONNX, ONNX Runtime)
    folder = tempfile.mkdtemp()
    torch.save({"state_dict": small.state_dict(), "plan": result.plan}, os.path.join(folder, "small.pt"))
    ckpt = torch.load(os.path.join(folder, "small.pt"), weights_only=False)
    again = gpt.apply_plan(ResNet(), ckpt["plan"])
    again.load_state_dict(ckpt["state_dict"])
    path = gpt.export(small, (x[:1],), os.path.join(folder, "small.onnx"))
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ort_acc = accuracy(lambda a: sess.run(None, {sess.get_inputs()[0].name: a})[0], x_test, y_test)
    reload_acc = accuracy(torch_run(again.eval()), x_test, y_test)
    print(f"ONNX Runtime top-1 {ort_acc:.3f} ({path}); reloaded from state_dict + plan: {reload_acc:.3f}")


if __name__ == "__main__":
    main()
