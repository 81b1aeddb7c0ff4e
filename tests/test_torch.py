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


class FixedHeads(torch.nn.Module):
    """Self-attention that keeps its head count in an attribute graphprune does not know
    (`self.nh`) and splits heads with view(..., self.nh, -1): after head pruning it would
    still run, computing wrong outputs, unless the attribute follows the cut."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.nh = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.head = torch.nn.Linear(dim, 5)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, t, self.nh, -1).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, -1)
        return self.head(torch.relu(self.proj(y)).mean(1))


def test_unknown_head_count_is_refused_naming_it():
    torch.manual_seed(0)
    module = FixedHeads().eval()
    with pytest.raises(gpt.PlanError) as info:
        gpt.prune(module, (torch.randn(2, 6, 32),), passes=["l1", "select:heads=0.5,round_to=1"])
    assert "nh (is 4)" in str(info.value)


def test_each_submodule_keeps_its_train_or_eval_mode():
    """A wrapper in train mode around a network in eval mode (as a training harness holds
    a frozen model): prune leaves every submodule's mode as it was, and the pruned module
    gets the same modes, so its BatchNorm and dropout behave as the input's did."""
    module, args = _cnn("resnetish")  # in eval mode
    wrapper = torch.nn.Sequential(module)  # in train mode
    modes = {n: m.training for n, m in wrapper.named_modules()}
    result = gpt.prune(wrapper, args, passes=["l1", "select:ratio=0.5,round_to=1"])
    assert {n: m.training for n, m in wrapper.named_modules()} == modes
    assert {n: m.training for n, m in result.module.named_modules()} == modes
    assert modes[""] and not modes["0"]  # the two modes differ: the check could fail


def test_exported_program_input():
    module, args = _cnn("resnetish")
    program = torch.export.export(module, args)
    result = gpt.prune(program, args, passes=["l1", "select:ratio=0.3,round_to=1"])
    assert sum(p.numel() for p in result.module.parameters()) < sum(p.numel() for p in module.parameters())
    from graphprune.runtime import session

    sess = session(result.onnx)
    want = sess.run(None, {sess.get_inputs()[0].name: args[0].numpy()})[0]
    np.testing.assert_allclose(_outputs(result.module, args)[0], want, rtol=1e-3, atol=1e-4)


def _distill_setup():
    module, args = _cnn("resnetish")
    g = torch.Generator().manual_seed(1)
    data = [torch.randn(4, *args[0].shape[1:], generator=g) for _ in range(6)]
    for m in module.modules():  # BatchNorm statistics of the data, as a trained network has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    module.train()
    with torch.no_grad():
        for x in data:
            module(x)
    module.eval()
    result = gpt.prune(module, args, passes=["l1", "select:ratio=0.5,round_to=1"])
    return module, result, data


def test_distill_learns_the_teacher_seeded_and_leaves_it_alone():
    teacher, result, data = _distill_setup()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    twin = gpt.apply_plan(_cnn("resnetish")[0], result.plan)
    twin.load_state_dict(result.module.state_dict())

    def gap(student):
        with torch.no_grad():
            return float(sum(torch.nn.functional.mse_loss(student(x), teacher(x)) for x in data))

    start = gap(result.module)
    history = gpt.distill(result.module, teacher, data, epochs=4, lr=3e-3, loss="mse", quiet=True)
    assert len(history) == 4 and history[-1] < history[0]
    assert gap(result.module) < 0.7 * start
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    again = gpt.distill(twin, teacher, data, epochs=4, lr=3e-3, loss="mse", quiet=True)
    assert again == history  # seeded: the same run twice gives the same losses


def test_distill_matches_intermediate_channels_the_plan_kept():
    teacher, result, data = _distill_setup()
    layer = next(name for name, axes in result.plan["tensors"].items()
                 if name.endswith("c1.weight") and "0" in axes)[: -len(".weight")]
    history = gpt.distill(result.module, teacher, data, epochs=2, loss="kl", match=[layer], plan=result.plan,
                          quiet=True, max_steps=3)
    assert len(history) == 1 and np.isfinite(history[0])  # 3 steps end inside the first epoch
    with pytest.raises(ValueError, match="kl, mse or cosine"):
        gpt.distill(result.module, teacher, data, loss="l1", quiet=True)


@pytest.mark.parametrize("name,passes", [
    ("cifar_resnet20", ["wifv:normalize=standardize", "select:macs=0.65,scope=global", "refit", "restore-stats"]),
    ("llama", ["wifv", "select:heads=0.5,channels=0.5", "compensate:method=lsq"]),
])
def test_values_changed_by_compensation_and_repair_are_written_back(name, passes):
    """Refit, restore-stats and compensation change kept weights and add biases: the pruned
    module holds the pruned ONNX model's values (calibration batches of another size than
    the example's), and apply_plan builds the added biases too."""
    module, args = _build(name)
    g = torch.Generator().manual_seed(3)
    if name in CNNS:
        calib = [torch.randn(8, *args[0].shape[1:], generator=g) for _ in range(4)]
    else:
        calib = [(torch.randint(0, 90, (3, args[0].shape[1]), generator=g), torch.ones(3, args[0].shape[1], dtype=torch.long))
                 for _ in range(4)]
    sliced_only = gpt.prune(module, args, passes=[passes[0], passes[1]], calib=calib).module
    result = gpt.prune(module, args, passes=passes, calib=calib)
    assert result.plan["added"], "compensation gave bias-free layers a bias"
    changed = [k for k, v in result.module.state_dict().items()
               if k in sliced_only.state_dict() and not torch.equal(v, sliced_only.state_dict()[k])]
    assert changed  # values differ from a plain cut ...
    from graphprune.runtime import session

    sess = session(result.onnx)
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    for want, got in zip(sess.run(None, feeds), _outputs(result.module, args)):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)  # ... and are the ONNX model's
    fresh, _ = _build(name)
    gpt.apply_plan(fresh, json.loads(json.dumps(result.plan)))
    fresh.load_state_dict(result.module.state_dict())
    for a, b in zip(_outputs(result.module.eval(), args), _outputs(fresh.eval(), args)):
        np.testing.assert_array_equal(a, b)


def test_calibration_is_recut_to_the_example_batch():
    from graphprune.errors import BadInput
    from graphprune.torch.batches import calibration

    x = torch.arange(7 * 2, dtype=torch.float32).reshape(7, 2)
    batches = calibration([x[:3], x[3:4], x[4:]], ["x"], 2)
    assert [b["x"].shape[0] for b in batches] == [2, 2, 2]  # the seventh sample cannot fill a batch
    np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]), x[:6].numpy())
    lazy = calibration(lambda: iter([(x[:5],)]), ["x"], 2)
    assert [b["x"].shape[0] for b in lazy()] == [2, 2]
    with pytest.raises(BadInput, match="fewer samples than one batch of 2"):
        calibration([x[:1]], ["x"], 2)


def test_temporary_files_live_with_the_result(tmp_path):
    import gc
    import os

    module, args = _build("resnetish")
    result = gpt.prune(module, args, passes=["l1", "select:ratio=0.3"])
    folder = os.path.dirname(result.onnx)
    assert os.path.exists(result.onnx)
    del result
    gc.collect()
    assert not os.path.exists(folder)
    kept = gpt.prune(module, args, passes=["l1", "select:ratio=0.3"], output=str(tmp_path / "small.onnx"))
    assert kept.onnx == str(tmp_path / "small.onnx") and os.path.exists(kept.onnx)
