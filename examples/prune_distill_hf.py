"""The two-minute path for a Hugging Face model: prune heads and MLP neurons of a BERT
encoder with graphprune.torch, recover by distilling its token embeddings, save it as
state_dict + plan, rebuild it from the config, export to ONNX and check ONNX Runtime.

    pip install torch==2.13.0 transformers 'graphprune[torch]'
    python examples/prune_distill_hf.py                                  # a small BERT, random weights
    python examples/prune_distill_hf.py --model path/to/bert --text sentences.txt

--model: a local Hugging Face folder (nothing is downloaded); --text: one sentence per
line for calibration and distillation (without it, random token ids).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import torch

import graphprune.torch as gpt


class Encoder(torch.nn.Module):
    """The model's last hidden state as a plain tensor output."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def load(args):
    from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig

    if args.model:
        bert, config = AutoModel.from_pretrained(args.model).eval(), AutoConfig.from_pretrained(args.model)
        tok = AutoTokenizer.from_pretrained(args.model)
    else:
        torch.manual_seed(0)
        config = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=512, max_position_embeddings=64,
                            initializer_range=0.2)  # large enough that the layers, not the embeddings, dominate
        bert, tok = AutoModel.from_config(config).eval(), None
    return bert, config, tok


def batches(tok, args, n: int, seq: int = 16, size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of `size` sentences padded to `seq` tokens (one shape, as the export's)."""
    if tok is None or not args.text:
        g = torch.Generator().manual_seed(1)
        return [(torch.randint(5, 1000, (size, seq), generator=g), torch.ones(size, seq, dtype=torch.long))
                for _ in range(n)]
    with open(args.text, encoding="utf-8") as f:
        lines = [s.strip() for s in f if s.strip()]
    out = []
    for i in range(0, min(len(lines), n * size) - size + 1, size):
        enc = tok(lines[i:i + size], padding="max_length", truncation=True, max_length=seq, return_tensors="pt")
        out.append((enc["input_ids"], enc["attention_mask"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--text")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    bert, config, tok = load(args)
    teacher = Encoder(bert).eval()
    data = batches(tok, args, 40)
    calib, train, held_out = data[:8], data[:32], data[32:]

    def similarity(module) -> float:
        with torch.no_grad():
            return float(np.mean([torch.cosine_similarity(module(*b), teacher(*b), dim=-1).mean() for b in held_out]))

    # 1. prune half the heads and half the MLP neurons of every layer (magnitude: data-free;
    #    ["wifv", "select:...", "compensate"] scores on the calibration batches instead)
    result = gpt.prune(teacher, calib[0], calib=calib, passes=["l1", "select:heads=0.5,channels=0.5"])
    small = result.module
    n = lambda m: sum(p.numel() for p in m.bert.encoder.parameters())  # noqa: E731
    heads = [layer.attention.self.num_attention_heads for layer in small.bert.encoder.layer]
    print(f"encoder parameters {n(teacher)} -> {n(small)}; heads per layer {heads}; "
          f"token cosine to dense {similarity(small):.4f}")

    # 2. recover by distilling the token embeddings
    gpt.distill(small, teacher, train, epochs=args.epochs, loss="mse", lr=5e-4)
    print(f"after distillation: token cosine to dense {similarity(small):.4f}")

    # 3. save as state_dict + plan, rebuild from the config, export and run in ONNX Runtime
    from transformers import AutoModel

    folder = tempfile.mkdtemp()
    torch.save({"state_dict": small.state_dict(), "plan": result.plan}, os.path.join(folder, "small.pt"))
    ckpt = torch.load(os.path.join(folder, "small.pt"), weights_only=False)
    fresh = gpt.apply_plan(Encoder(AutoModel.from_config(config)), ckpt["plan"])
    fresh.load_state_dict(ckpt["state_dict"])
    path = gpt.export(small, held_out[0], os.path.join(folder, "small.onnx"))
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ids, mask = held_out[0]
    got = sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    with torch.no_grad():
        want, again = small(ids, mask).numpy(), fresh.eval()(ids, mask).numpy()
    print(f"ONNX Runtime vs torch: max |diff| {np.abs(got - want).max():.2e}; "
          f"rebuilt from config + plan: max |diff| {np.abs(again - want).max():.2e} ({path})")


if __name__ == "__main__":
    main()
