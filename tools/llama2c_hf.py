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


def _halves(w: np.ndarray, heads: int, head_dim: int, size: int) -> np.ndarray:
    """Rows of a (heads*head_dim, in) Q or K projection as Hugging Face's rotary wants them,
    heads `size` wide: pair i = (2i, 2i+1) lands on (j, j + size/2) with j = i * size/head_dim,
    the half-split pair whose frequency 10000^(-2j/size) is the pair's own 10000^(-2i/head_dim);
    the other rows are zero (size = head_dim: plain [even | odd] order)."""
    step = size // head_dim
    src = w.reshape(heads, head_dim, -1)
    out = np.zeros((heads, size, src.shape[2]), w.dtype)
    pairs = np.arange(head_dim // 2)
    out[:, pairs * step] = src[:, 0::2]
    out[:, pairs * step + size // 2] = src[:, 1::2]
    return out.reshape(heads * size, -1)


def _pad_heads(w: np.ndarray, heads: int, head_dim: int, size: int, axis: int) -> np.ndarray:
    """V rows (axis 0) or output-projection columns (axis 1) with each head zero-padded to `size`."""
    moved = np.moveaxis(w, axis, 0).reshape(heads, head_dim, -1)
    out = np.zeros((heads, size, moved.shape[2]), w.dtype)
    out[:, :head_dim] = moved
    return np.moveaxis(out.reshape(heads * size, -1), 0, axis)


def hf_model(cfg: dict, w: dict, head_size: int | None = None):
    """The Hugging Face Llama; `head_size` (a multiple of llama2.c's head_dim) writes every
    head zero-padded to that width, the same function (ONNX Runtime's CPU
    GroupQueryAttention takes head sizes that are multiples of 16 only): Q is scaled by
    sqrt(head_size / head_dim) so the softmax scale stays 1/sqrt(head_dim)."""
    import torch
    import transformers

    hd = cfg["head_dim"]
    size = head_size or hd
    if size % hd:
        raise ValueError(f"head_size {size} is not a multiple of the head_dim {hd}")
    config = transformers.LlamaConfig(
        vocab_size=cfg["vocab"], hidden_size=cfg["dim"], intermediate_size=cfg["hidden"],
        num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kv_heads"],
        head_dim=size, max_position_embeddings=cfg["max_seq"], rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(config).eval()
    t = (lambda a: torch.from_numpy(np.ascontiguousarray(a)))
    q_scale = np.float32(np.sqrt(size / hd))
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(t(w["emb"]))
        model.model.norm.weight.copy_(t(w["final_norm"]))
        for i, layer in enumerate(model.model.layers):
            a, m = layer.self_attn, layer.mlp
            layer.input_layernorm.weight.copy_(t(w["att_norm"][i]))
            layer.post_attention_layernorm.weight.copy_(t(w["ffn_norm"][i]))
            a.q_proj.weight.copy_(t(_halves(w["wq"][i], cfg["heads"], hd, size) * q_scale))
            a.k_proj.weight.copy_(t(_halves(w["wk"][i], cfg["kv_heads"], hd, size)))
            a.v_proj.weight.copy_(t(_pad_heads(w["wv"][i], cfg["kv_heads"], hd, size, 0)))
            a.o_proj.weight.copy_(t(_pad_heads(w["wo"][i], cfg["heads"], hd, size, 1)))
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


def save_hf(checkpoint: str, tokenizer: str, folder: str, head_size: int | None = None) -> float:
    """Write the folder; return the max |logit difference| to llama2.c's NumPy forward over
    64 tokens (the conversion's check)."""
    import torch

    cfg, w = llama2c.read_model(checkpoint)
    model = hf_model(cfg, w, head_size)
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
    ap.add_argument("--head-size", type=int, default=None,
                    help="zero-pad every head to this width (16 for ONNX Runtime's CPU GroupQueryAttention)")
    args = ap.parse_args()
    tok = args.tokenizer or os.path.join(os.path.dirname(args.checkpoint), "tok512.bin")
    diff = save_hf(args.checkpoint, tok, args.folder, args.head_size)
    print(f"wrote {args.folder}: max |logit diff| to the NumPy forward {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
