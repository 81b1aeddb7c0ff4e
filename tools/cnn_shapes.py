"""ResNet-50- and MobileNetV2-shaped CNNs (torch), at ImageNet size for latency runs and as
CIFAR variants (3x3 stem of stride 1, narrower) that train on this CPU in minutes.

- resnet50: bottleneck stages 3-4-6-3 (1x1, 3x3, 1x1 with expansion 4), widths
  `width` x (1, 2, 4, 8), a projection shortcut where the shape changes.
- mobilenetv2: inverted residual stages (expansion t, output c, repeats n, stride s) as in
  the paper, channels times `mult`, ReLU6, a residual where shape allows.
"""

from __future__ import annotations


def resnet50(width: int = 64, classes: int = 1000, cifar: bool = False):
    import torch.nn as nn
    import torch.nn.functional as F

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, stride):
            super().__init__()
            cout = mid * 4
            self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
            self.conv2, self.bn2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid)
            self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = F.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return F.relu(y + (x if self.down is None else self.down(x)))

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            if cifar:
                self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            else:
                self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                          nn.MaxPool2d(3, 2, 1))
            layers, cin = [], width
            for i, (w, n) in enumerate(zip((width, 2 * width, 4 * width, 8 * width), (3, 4, 6, 3))):
                for j in range(n):
                    layers.append(Bottleneck(cin, w, 2 if i > 0 and j == 0 else 1))
                    cin = w * 4
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, classes)

        def forward(self, x):
            return self.fc(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))

    return ResNet50().eval()


def mobilenetv2(mult: float = 1.0, classes: int = 1000, cifar: bool = False):
    import torch.nn as nn

    def ch(c):
        return max(8, int(c * mult + 4) // 8 * 8)

    def cbr(cin, cout, k=1, s=1, g=1):
        return [nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]

    class Inverted(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            mid = cin * t
            layers = (cbr(cin, mid) if t != 1 else []) + cbr(mid, mid, 3, stride, mid)
            self.body = nn.Sequential(*layers, nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.res = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.res else self.body(x)

    stages = [(1, 16, 1, 1), (6, 24, 2, 1 if cifar else 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1)]
    layers, cin = cbr(3, ch(32), 3, 1 if cifar else 2), ch(32)
    for t, c, n, s in stages:
        for i in range(n):
            layers.append(Inverted(cin, ch(c), s if i == 0 else 1, t))
            cin = ch(c)
    last = max(1280, ch(1280)) if not cifar else ch(1280)
    layers += cbr(cin, last)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, classes)).eval()
