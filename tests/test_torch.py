"""graphprune.torch end to end on the models it must handle: a ResNet-style CNN with
BatchNorm, a MobileNetV2-style CNN (depthwise, inverted residuals), the CIFAR ResNet with
option-A shortcuts, and from transformers configs BERT, ViT, GPT-2 and Llama with
grouped-query attention. For each: channels (and heads) pruned, the pruned module equal to
the pruned ONNX model, a training step, apply_plan on a fresh instance plus the pruned
state_dict giving the pruned module's outputs exactly, and an export to ONNX again."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import graphprune.torch as gpt  # noqa: E402

CNNS = ["resnetish", "mobilenetish", "cifar_resnet20"]
TRANSFORMERS = ["bert", "vit", "gpt2", "llama"]


def _cnn(name):
    from cifar_resnet import CifarResNet
    from nets import TORCH_NETS, randomize_bn

    torch.manual_seed(0)
    if name == "cifar_resnet20":
        return randomize_bn(CifarResNet(20)).eval(), (torch.randn(2, 3, 32, 32),)
    cls, shape = TORCH_NETS[name]
    return randomize_bn(cls()).eval(), (torch.randn(2, *shape[1:]),)


def _transformer(name):
    import transformer_zoo

    module, args, _ = transformer_zoo.build(name, True)
    return module, args


def _build(name):
    return _cnn(name) if name in CNNS else _transformer(name)


def _outputs(module, args):
    with torch.no_grad():
        return [t.numpy() for t in gpt._flatten(module(*args))]


@pytest.mark.parametrize("name", CNNS + TRANSFORMERS)
def test_prune_train_reload_export(name, tmp_path):
    module, args = _build(name)
    dense_params = sum(p.numel() for p in module.parameters())
    snapshot = {k: v.clone() for k, v in module.state_dict().items()}
    select = "select:heads=0.5,channels=0.3,round_to=1" if name in TRANSFORMERS else "select:ratio=0.3,round_to=1"
    result = gpt.prune(module, args, passes=["l1", select])
    pruned = result.module
    assert sum(p.numel() for p in pruned.parameters()) < dense_params
    if name in TRANSFORMERS:
        assert sum(g["removed"] for g in result.report["groups"] if g["kind"] == "heads") > 0
    # the input module is untouched
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in snapshot.items())
    # the pruned module computes what the pruned ONNX model computes (prune checked it too)
    from graphprune.runtime import session

    sess = session(result.onnx)
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    for want, got in zip(sess.run(None, feeds), _outputs(pruned, args)):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    # it trains
    pruned.train()
    opt = torch.optim.SGD(pruned.parameters(), lr=1e-3)
    loss = sum(t.float().pow(2).mean() for t in gpt._flatten(pruned(*args)))
    loss.backward()
    opt.step()
    pruned.eval()
    # saved as state_dict + plan, loaded into a fresh instance
    plan = json.loads(json.dumps(result.plan))
    fresh, _ = _build(name)
    gpt.apply_plan(fresh, plan)
    fresh.load_state_dict(pruned.state_dict())
    fresh.eval()
    for a, b in zip(_outputs(pruned, args), _outputs(fresh, args)):
        np.testing.assert_array_equal(a, b)
    # and exports to ONNX again
    path = gpt.export(pruned, args, str(tmp_path / "again.onnx"))
    again = session(path).run(None, feeds)
    for a, b in zip(again, _outputs(pruned, args)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
