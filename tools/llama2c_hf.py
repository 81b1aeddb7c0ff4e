"""A llama2.c checkpoint as a Hugging Face Llama folder (config, weights, a tokenizer), so
that onnxruntime-genai's model builder can turn it into the decoder ONNX Runtime deploys.

llama2.c rotates interleaved pairs (2i, 2i+1) of each head; Hugging Face's Llama rotates
halves (i, i + head_dim/2). Permuting each head's rows of wq and wk into [even | odd] order
makes the two the same function (q.k is unchanged by a shared permutation). The tokenizer
is a WordLevel one over the 512 pieces: the benchmarks feed token ids; the builder only
needs a tokenizer to write the folder's processing files.

    python tools/llama2c_hf.py ../shared/assets/llama2c/stories260K.bin OUT_FOLDER
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama2c  # noqa: E402


def _halves(w: np.ndarray, heads: int, head_dim: int) -> np.ndarray:
    """Rows of a (heads*head_dim, in) projection, each head's reordered [even | odd]."""
    order = np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])
    return w.reshape(heads, head_dim, -1)[:, order].reshape(heads * head_dim, -1)


def hf_model(cfg: dict, w: dict):
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=cfg["vocab"], hidden_size=cfg["dim"], intermediate_size=cfg["hidden"],
        num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kv_heads"],
        max_position_embeddings=cfg["max_seq"], rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(config).eval()
    hd, t = cfg["head_dim"], (lambda a: torch.from_numpy(np.ascontiguousarray(a)))
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(t(w["emb"]))
        model.model.norm.weight.copy_(t(w["final_norm"]))
        for i, layer in enumerate(model.model.layers):
            a, m = layer.self_attn, layer.mlp
            layer.input_layernorm.weight.copy_(t(w["att_norm"][i]))
            layer.post_attention_layernorm.weight.copy_(t(w["ffn_norm"][i]))
            a.q_proj.weight.copy_(t(_halves(w["wq"][i], cfg["heads"], hd)))
            a.k_proj.weight.copy_(t(_halves(w["wk"][i], cfg["kv_heads"], hd)))
            a.v_proj.weight.copy_(t(w["wv"][i]))
            a.o_proj.weight.copy_(t(w["wo"][i]))
            m.gate_proj.weight.copy_(t(w["w1"][i]))
            m.up_proj.weight.copy_(t(w["w3"][i]))
            m.down_proj.weight.copy_(t(w["w2"][i]))
        model.tie_weights()
    return model


def save_tokenizer(tok: llama2c.Tokenizer, folder: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {p.decode("latin-1"): i for i, p in enumerate(tok.pieces)}
    wl = Tokenizer(models.WordLevel(vocab, unk_token=tok.pieces[0].decode("latin-1")))
    wl.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=wl, unk_token=tok.pieces[0].decode("latin-1"),
                            bos_token=tok.pieces[1].decode("latin-1"),
                            eos_token=tok.pieces[2].decode("latin-1")).save_pretrained(folder)


def save_hf(checkpoint: str, tokenizer: str, folder: str) -> float:
    """Write the folder; return the max |logit difference| to llama2.c's NumPy forward over
    64 tokens (the conversion's check)."""
    import torch

    cfg, w = llama2c.read_model(checkpoint)
    model = hf_model(cfg, w)
    tokens = np.array([1, *range(100, 163)], dtype=np.int64)
    with torch.no_grad():
        got = model(torch.from_numpy(tokens)[None]).logits[0].numpy()
    diff = float(np.abs(got - llama2c.forward_numpy(cfg, w, tokens)).max())
    model.save_pretrained(folder)
    save_tokenizer(llama2c.Tokenizer(tokenizer), folder)
    return diff


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("folder")
    ap.add_argument("--tokenizer", default=None, help="tok512.bin (default: beside the checkpoint)")
    args = ap.parse_args()
    tok = args.tokenizer or os.path.join(os.path.dirname(args.checkpoint), "tok512.bin")
    diff = save_hf(args.checkpoint, tok, args.folder)
    print(f"wrote {args.folder}: max |logit diff| to the NumPy forward {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
