"""The network families of the metanet's training zoo (tools/metanet_zoo.py): MLPs, plain
and residual CNNs with and without BatchNorm, CIFAR-style three-stage ResNets (option-A or
projection shortcuts), inverted-residual (depthwise) blocks, and
small transformers (MHA or GQA, LayerNorm or RMSNorm, GELU or SwiGLU), as a patch
classifier or a character LM. `config` draws a family's sizes from a seed."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * self.weight


def act(name):
    return {"relu": nn.ReLU(), "gelu": nn.GELU(), "silu": nn.SiLU()}[name]


class MLP(nn.Module):
    def __init__(self, c, d_in=64, n_out=10):
        super().__init__()
        layers, d = [], d_in
        for w in c["widths"]:
            layers.append(nn.Linear(d, w))
            if c["norm"] == "bn":
                layers.append(nn.BatchNorm1d(w))
            elif c["norm"] == "ln":
                layers.append(nn.LayerNorm(w))
            layers.append(act(c["act"]))
            d = w
        layers.append(nn.Linear(d, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def conv_bn(cin, cout, k, stride, bn, groups=1):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=not bn)]
    return layers + ([nn.BatchNorm2d(cout)] if bn else [])


class CNN(nn.Module):
    def __init__(self, c):
        super().__init__()
        layers, cin = [], 1
        for i, w in enumerate(c["widths"]):
            layers += conv_bn(cin, w, 3, 2 if i in c["down"] else 1, c["bn"]) + [act(c["act"])]
            cin = w
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))


class Block(nn.Module):
    def __init__(self, w, bn, a, mid=None):
        super().__init__()
        mid = mid or w
        self.body = nn.Sequential(*conv_bn(w, mid, 3, 1, bn), act(a), *conv_bn(mid, w, 3, 1, bn))
        self.a = act(a)

    def forward(self, x):
        return self.a(x + self.body(x))


class InvertedResidual(nn.Module):
    def __init__(self, w, expand, a):
        super().__init__()
        h = w * expand
        self.body = nn.Sequential(*conv_bn(w, h, 1, 1, True), act(a), *conv_bn(h, h, 3, 1, True, groups=h), act(a),
                                  *conv_bn(h, w, 1, 1, True))

    def forward(self, x):
        return x + self.body(x)


class ResNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        w = c["width"]
        blocks = [InvertedResidual(w, c["expand"], c["act"]) if c["kind"] == "inverted" else
                  Block(w, c["bn"], c["act"], c.get("mid")) for _ in range(c["blocks"])]
        self.stem = nn.Sequential(*conv_bn(1, w, 3, 2, c.get("bn", True)), act(c["act"]))
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(w, 10)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


class StageBlock(nn.Module):
    """A BN basic block that may change width and stride; its shortcut is the identity, or
    where the shape changes, option A (subsample, zero channels padded on both sides) or
    option B (a 1x1 convolution with BatchNorm)."""

    def __init__(self, cin, cout, stride, shortcut):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(cin, cout, 3, stride, True), nn.ReLU(), *conv_bn(cout, cout, 3, 1, True))
        change = stride != 1 or cin != cout
        self.pad = (cout - cin) // 2 if change and shortcut == "A" else None
        self.proj = nn.Sequential(*conv_bn(cin, cout, 1, stride, True)) if change and shortcut == "B" else None
        self.stride = stride

    def forward(self, x):
        if self.proj is not None:
            short = self.proj(x)
        elif self.pad is not None:
            short = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad, self.pad))
        else:
            short = x
        return F.relu(self.body(x) + short)


class Stages(nn.Module):
    """A CIFAR-style ResNet: a stem, then three stages of widths w, 2w, 4w with `blocks`
    basic blocks each, the last two starting with stride 2."""

    def __init__(self, c):
        super().__init__()
        w = c["width"]
        self.stem = nn.Sequential(*conv_bn(1, w, 3, 1, True), nn.ReLU())
        blocks, cin = [], w
        for s, width in enumerate((w, 2 * w, 4 * w)):
            for b in range(c["blocks"]):
                blocks.append(StageBlock(cin, width, 2 if s and not b else 1, c["shortcut"]))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


class Attention(nn.Module):
    def __init__(self, d, heads, kv_heads, causal):
        super().__init__()
        self.h, self.kv, self.hd, self.causal = heads, kv_heads, d // heads, causal
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, kv_heads * self.hd)
        self.v = nn.Linear(d, kv_heads * self.hd)
        self.o = nn.Linear(d, d)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.k(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        if self.kv != self.h:
            k = k.repeat_interleave(self.h // self.kv, dim=1)
            v = v.repeat_interleave(self.h // self.kv, dim=1)
        s = q @ k.transpose(-1, -2) / self.hd ** 0.5
        if self.causal:
            s = s + torch.triu(torch.full((t, t), -1e9), 1)
        y = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, t, self.h * self.hd)
        return self.o(y)


class Layer(nn.Module):
    def __init__(self, c, causal):
        super().__init__()
        d, norm = c["dim"], (RMSNorm if c["norm"] == "rms" else nn.LayerNorm)
        self.n1, self.n2 = norm(d), norm(d)
        self.att = Attention(d, c["heads"], c["kv_heads"], causal)
        self.swiglu = c["mlp"] == "swiglu"
        self.up = nn.Linear(d, c["hidden"])
        self.gate = nn.Linear(d, c["hidden"]) if self.swiglu else None
        self.down = nn.Linear(c["hidden"], d)

    def forward(self, x):
        x = x + self.att(self.n1(x))
        h = self.n2(x)
        h = F.silu(self.gate(h)) * self.up(h) if self.swiglu else F.gelu(self.up(h))
        return x + self.down(h)


class Transformer(nn.Module):
    """A patch classifier on 14x14 MNIST (vit) or a character LM (charlm)."""

    def __init__(self, c, vocab=None):
        super().__init__()
        d = c["dim"]
        self.lm = vocab is not None
        self.embed = nn.Embedding(vocab, d) if self.lm else nn.Linear(c["patch"] ** 2, d)
        self.pos = nn.Parameter(torch.randn(c["tokens"], d) * 0.02)
        self.layers = nn.ModuleList(Layer(c, causal=self.lm) for _ in range(c["layers"]))
        self.norm = (RMSNorm if c["norm"] == "rms" else nn.LayerNorm)(d)
        self.head = nn.Linear(d, vocab if self.lm else 10)
        self.patch = c.get("patch", 0)

    def forward(self, x):
        if not self.lm:
            p = self.patch
            b = x.shape[0]
            x = x.reshape(b, 14 // p, p, 14 // p, p).permute(0, 1, 3, 2, 4).reshape(b, (14 // p) ** 2, p * p)
        h = self.embed(x) + self.pos
        for layer in self.layers:
            h = layer(h)
        h = self.norm(h)
        return self.head(h if self.lm else h.mean(1))


def config(family: str, rng: np.random.Generator) -> dict:
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    if family == "mlp":
        depth = int(rng.integers(1, 4))
        return {"widths": [pick([32, 48, 64, 96, 128]) for _ in range(depth)], "norm": pick(["none", "bn", "ln"]),
                "act": pick(["relu", "relu", "gelu"])}
    if family == "cnn":
        depth = int(rng.integers(2, 5))
        return {"widths": [pick([8, 16, 24, 32, 48]) for _ in range(depth)], "bn": bool(rng.integers(2)),
                "act": pick(["relu", "relu", "silu"]), "down": [0, depth - 1]}
    if family == "resnet":
        return {"kind": "basic", "width": pick([8, 16, 24, 32]), "mid": pick([None, 16, 32]), "blocks": int(rng.integers(1, 4)),
                "bn": bool(rng.integers(2)), "act": "relu"}
    if family == "stages":
        return {"width": pick([8, 12, 16]), "blocks": int(rng.integers(1, 4)), "shortcut": pick(["A", "A", "B"])}
    if family == "dwnet":
        return {"kind": "inverted", "width": pick([8, 16, 24]), "expand": pick([2, 3, 4]), "blocks": int(rng.integers(1, 4)),
                "act": pick(["relu", "silu"])}
    heads = pick([2, 4])
    base = {"dim": heads * pick([8, 16]), "heads": heads, "kv_heads": pick([heads, heads // 2]) if heads > 2 else heads,
            "layers": int(rng.integers(1, 4)), "norm": pick(["ln", "rms"]), "mlp": pick(["gelu", "swiglu"])}
    base["hidden"] = base["dim"] * pick([2, 3, 4])
    if family == "vit":
        base["patch"] = pick([2, 7])
        base["tokens"] = (14 // base["patch"]) ** 2
        return base
    base["tokens"] = 32
    return base


FAMILIES = ("mlp", "cnn", "resnet", "dwnet", "vit", "charlm")
EXTRA = ("stages",)  # built only when asked for (tools/metanet_zoo.py --family)


def build(family: str, c: dict, vocab: int | None):
    if family == "mlp":
        return MLP(c)
    if family == "cnn":
        return CNN(c)
    if family in ("resnet", "dwnet"):
        return ResNet(c)
    if family == "stages":
        return Stages(c)
    return Transformer(c, vocab if family == "charlm" else None)


