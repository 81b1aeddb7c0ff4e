"""Models as real exporters write them, for the wild-model suite (test_wild.py): a
scikit-learn classifier through skl2onnx, a CNN through the TorchScript exporter at opset 9
with a fixed batch of 1 and its initializers listed as graph inputs, a CNN through the
dynamo exporter with symbolic height and width, and a GRU with its state as an input and
an output. Each builder returns (path, sample file, labels or None)."""

from __future__ import annotations

import os
import warnings

import numpy as np


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    return (d.images[order].astype(np.float32) / 16.0), d.target[order].astype(np.int64)


def skl_mlp(folder: str, zipmap: bool = False):
    from sklearn.neural_network import MLPClassifier
    from skl2onnx import to_onnx

    x, y = _digits()
    flat = x.reshape(len(x), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=0).fit(flat[:1200], y[:1200])
    proto = to_onnx(clf, flat[:1], target_opset=15, options={"zipmap": zipmap})
    path = os.path.join(folder, f"skl_mlp{'_zipmap' if zipmap else ''}.onnx")
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
    name = proto.graph.input[0].name
    calib, ev = os.path.join(folder, "skl_calib.npz"), os.path.join(folder, "skl_eval.npz")
    np.savez(calib, **{name: flat[:400]})
    np.savez(ev, **{name: flat[1200:]}, labels=y[1200:])
    return path, calib, ev


class _CNN:
    def __new__(cls):
        import torch.nn as nn

        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def _trained_cnn():
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    x, y = _digits()
    net = _CNN()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xt, yt = torch.from_numpy(x[:1200, None]), torch.from_numpy(y[:1200])
    for _ in range(8):
        for s in range(0, 1200, 64):
            loss = F.cross_entropy(net(xt[s:s + 64]), yt[s:s + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), x[:, None], y


def torch_opset9_fixed_batch(folder: str):
    """TorchScript exporter, opset 9, batch fixed at 1, initializers also graph inputs."""
    import torch

    net, x, y = _trained_cnn()
    path = os.path.join(folder, "cnn_opset9.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x[:1]),), path, dynamo=False, opset_version=9,
                          keep_initializers_as_inputs=True, do_constant_folding=False,
                          input_names=["image"], output_names=["logits"])
    calib, ev = os.path.join(folder, "cnn_calib.npz"), os.path.join(folder, "cnn_eval.npz")
    np.savez(calib, image=x[:300])
    np.savez(ev, image=x[1200:], labels=y[1200:])
    return path, calib, ev


def dynamo_symbolic_size(folder: str):
    """Dynamo exporter, batch, height and width symbolic."""
    import torch

    net, x, _ = _trained_cnn()
    path = os.path.join(folder, "cnn_dynamic.onnx")
    dims = ({0: torch.export.Dim("batch"), 2: torch.export.Dim("h", min=4, max=512),
             3: torch.export.Dim("w", min=4, max=512)},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x[:2]),), path, dynamo=True, dynamic_shapes=dims, verbose=False)
    return path


def gru_with_state(folder: str):
    """A GRU whose hidden state is an input and an output (TorchScript exporter)."""
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(8, 16)
            self.gru = nn.GRU(16, 12, batch_first=True)
            self.out = nn.Linear(12, 3)

        def forward(self, x, h):
            o, h2 = self.gru(torch.relu(self.inp(x)), h)
            return self.out(o), h2

    torch.manual_seed(0)
    net = Net().eval()
    path = os.path.join(folder, "gru.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 5, 8), torch.zeros(1, 1, 12)), path, dynamo=False,
                          input_names=["x", "h"], output_names=["y", "h_out"],
                          dynamic_axes={"x": {0: "batch", 1: "seq"}, "h": {1: "batch"}, "y": {0: "batch", 1: "seq"},
                                        "h_out": {1: "batch"}})
    r = np.random.default_rng(0)
    calib = os.path.join(folder, "gru_calib.npz")
    np.savez(calib, x=r.standard_normal((40, 1, 5, 8)).astype(np.float32), h=np.zeros((40, 1, 1, 12), np.float32))
    return path, calib
