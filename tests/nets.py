"""Small networks covering the op families of the dimension-flow rule table.

Each is exported to ONNX by the tests (TorchScript exporter for speed, a few with the
dynamo exporter); weights are random, and BatchNorm statistics are randomized so that
folded and unfolded BatchNorm both carry information.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


class SimpleCNN(nn.Module):
    """conv-bn-relu x2, maxpool, flatten over 4x4 spatial positions, two linears."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24)
        self.fc1, self.fc2 = nn.Linear(24 * 4 * 4, 32), nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class Bottleneck(nn.Module):
    def __init__(self, cin, mid, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.c2, self.b2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
        self.c3, self.b3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = F.relu(self.b2(self.c2(y)))
        y = self.b3(self.c3(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNetish(nn.Module):
    """ResNet-50-shaped: stem, bottleneck stages with projection shortcuts, GAP, fc."""

    def __init__(self, widths=(16, 32), blocks=(2, 2), num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(Bottleneck(cin, w, w * 4, 2 if i > 0 and j == 0 else 1))
                cin = w * 4
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class MobileBlock(nn.Module):
    """Inverted residual: expand 1x1, depthwise 3x3, squeeze-and-excitation gate, project."""

    def __init__(self, c=16, e=48):
        super().__init__()
        self.expand = nn.Conv2d(c, e, 1)
        self.dw = nn.Conv2d(e, e, 3, padding=1, groups=e)
        self.se1, self.se2 = nn.Conv2d(e, 8, 1), nn.Conv2d(8, e, 1)
        self.project = nn.Conv2d(e, c, 1)

    def forward(self, x):
        y = F.hardswish(self.expand(x))
        y = F.relu6(self.dw(y))
        gate = torch.sigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(y, 1)))))
        return x + self.project(y * gate)


class MobileNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1)
        self.blocks = nn.Sequential(MobileBlock(), MobileBlock())
        self.mult = nn.Conv2d(16, 32, 3, padding=1, groups=16)  # depthwise, multiplier 2
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        y = self.mult(self.blocks(F.hardswish(self.stem(x))))
        return self.head(y.mean((2, 3)))


class GroupedNet(nn.Module):
    """Grouped (not depthwise) convolutions and a channel shuffle, as in ShuffleNet."""

    def __init__(self, groups=4):
        super().__init__()
        self.g = groups
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.g1, self.bn1 = nn.Conv2d(32, 32, 1, groups=groups, bias=False), nn.BatchNorm2d(32)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
        self.g2 = nn.Conv2d(32, 32, 1, groups=groups)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = F.relu(self.bn1(self.g1(x)))
        n, c, h, w = y.shape
        y = y.view(n, self.g, c // self.g, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        y = self.g2(self.dw(y))
        return self.head(F.relu(x + y).mean((2, 3)))


class Inceptionish(nn.Module):
    """Branches joined by Concat, a channel Split (chunk), and a channel Slice."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.b1 = nn.Conv2d(16, 8, 1)
        self.b2 = nn.Conv2d(16, 12, 3, padding=1)
        self.b3 = nn.Conv2d(16, 6, 1)
        self.mix = nn.Conv2d(26, 20, 1)
        self.left, self.right = nn.Conv2d(10, 8, 3, padding=1), nn.Conv2d(10, 8, 1)
        self.head = nn.Linear(16 + 6, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        pooled = F.max_pool2d(x, 3, 1, 1)
        y = torch.cat([self.b1(x), self.b2(x), self.b3(pooled)], 1)
        a, b = torch.chunk(F.relu(self.mix(y)), 2, dim=1)
        z = torch.cat([self.left(a), self.right(b)], 1)
        part = y[:, 4:10]  # a channel slice of the concat
        return self.head(torch.cat([z.mean((2, 3)), part.mean((2, 3))], 1))


class MiscOps(nn.Module):
    """GroupNorm, InstanceNorm, PReLU, assorted activations, upsampling, ConvTranspose."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.gn = nn.GroupNorm(4, 16)
        self.c2 = nn.Conv2d(16, 12, 3, padding=1)
        self.inorm = nn.InstanceNorm2d(12, affine=True)
        self.prelu = nn.PReLU(12)
        self.up = nn.ConvTranspose2d(12, 10, 2, stride=2)
        self.c3 = nn.Conv2d(10, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = F.leaky_relu(self.gn(self.c1(x)), 0.1)
        x = self.prelu(self.inorm(self.c2(x)))
        x = F.interpolate(F.hardsigmoid(x) * x, scale_factor=2.0, mode="nearest")
        x = F.elu(self.up(torch.tanh(x)))
        x = F.softplus(self.c3(F.gelu(x)))
        return self.head(x.mean((2, 3)))


class UNetish(nn.Module):
    """Encoder/decoder with a skip connection concatenated after a transposed conv."""

    def __init__(self):
        super().__init__()
        self.e1 = nn.Conv2d(3, 12, 3, padding=1)
        self.e2 = nn.Conv2d(12, 24, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(24, 12, 2, stride=2)
        self.d1 = nn.Conv2d(24, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        a = F.relu(self.e1(x))
        b = F.relu(self.e2(a))
        return self.out(F.relu(self.d1(torch.cat([self.up(b), a], 1))))


TORCH_NETS = {
    "simple_cnn": (SimpleCNN, (1, 3, 16, 16)),
    "resnetish": (ResNetish, (1, 3, 16, 16)),
    "mobilenetish": (MobileNetish, (1, 3, 16, 16)),
    "grouped_shuffle": (GroupedNet, (1, 3, 8, 8)),
    "inceptionish": (Inceptionish, (1, 3, 8, 8)),
    "misc_ops": (MiscOps, (1, 3, 8, 8)),
    "unetish": (UNetish, (1, 3, 8, 8)),
}
