"""Small transformers built from `transformers` configs (random weights, no download) and
exported to ONNX the way users export them: the dynamo exporter with dynamic batch and
sequence axes, and for BERT and GPT-2 also the TorchScript exporter.

Biases and normalization parameters are randomized: freshly initialised ones are all
zeros and ones, and exporters merge equal constants, which would hide real coupling bugs
(and make the inert-removal oracle trivially true for biases).
"""

from __future__ import annotations

import warnings

SEQ = 12
VOCAB = 96


def _configs():
    import transformers as T

    enc = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, max_position_embeddings=64)
    dec = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=96, max_position_embeddings=64, use_cache=False)
    return {
        "bert": (T.BertModel, T.BertConfig(**enc), "text"),
        "roberta": (T.RobertaModel, T.RobertaConfig(**enc), "text"),
        "distilbert": (T.DistilBertModel, T.DistilBertConfig(vocab_size=VOCAB, dim=64, n_layers=2, n_heads=4,
                                                            hidden_dim=128, max_position_embeddings=64), "text"),
        "vit": (T.ViTModel, T.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=128, image_size=32, patch_size=8), "image"),
        "gpt2": (T.GPT2LMHeadModel, T.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4,
                                                 n_positions=64, use_cache=False), "lm"),
        "llama": (T.LlamaForCausalLM, T.LlamaConfig(**dec, num_key_value_heads=2), "lm"),
        "qwen2": (T.Qwen2ForCausalLM, T.Qwen2Config(**dec, num_key_value_heads=2), "lm"),
        "mistral": (T.MistralForCausalLM, T.MistralConfig(**dec, num_key_value_heads=2, sliding_window=None), "lm"),
        "t5_encoder": (T.T5EncoderModel, T.T5Config(vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                                    num_heads=4, feed_forward_proj="gated-gelu"), "text"),
    }


NAMES = ("bert", "roberta", "distilbert", "vit", "gpt2", "llama", "qwen2", "mistral", "t5_encoder")
TORCHSCRIPT = ("bert", "gpt2", "t5_encoder")


def exports() -> list[tuple[str, bool]]:
    """(model, dynamo?) pairs of the test zoo."""
    return [(n, True) for n in NAMES] + [(n, False) for n in TORCHSCRIPT]


def _t5_attention(module, q, k, v, mask, scaling=1.0, position_bias=None, **_):
    """T5's eager attention, ending in one permute+reshape to (batch, seq, heads*head_dim).
    The dynamo exporter of torch 2.13 fails on transformers' own version, whose caller
    reshapes a transposed (non-contiguous) result; the math is the same."""
    import torch

    scores = torch.matmul(q, k.transpose(2, 3)) * (q.size(-1) ** -0.5 if scaling is None else scaling)
    if position_bias is not None:
        scores = scores + position_bias
    if mask is not None and mask.dtype == torch.bool:  # True: attend
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    elif mask is not None:
        scores = scores + mask
    out = torch.matmul(torch.softmax(scores.float(), -1).type_as(q), v)
    b, h, s, d = out.shape
    return out.permute(0, 2, 1, 3).reshape(b, s, h * d), None


def _register_t5_attention() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register("t5_export", _t5_attention)
    AttentionMaskInterface.register("t5_export", ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    return "t5_export"


def _wrap(model, kind):
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x, mask=None):
            if kind == "image":
                return self.m(pixel_values=x).last_hidden_state
            if kind == "lm":
                return self.m(input_ids=x, attention_mask=mask).logits
            return self.m(input_ids=x, attention_mask=mask).last_hidden_state

    return Wrapped().eval()


def _randomize(model) -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))


def build(name: str, dynamo: bool = False):
    import torch

    torch.manual_seed(0)
    cls, cfg, kind = _configs()[name]
    if name == "t5_encoder" and dynamo:
        cfg._attn_implementation = _register_t5_attention()
    model = cls(cfg).eval()
    _randomize(model)
    if kind == "image":
        args = (torch.randn(2, 3, 32, 32),)
    else:
        ids = torch.randint(0, VOCAB, (2, SEQ))
        mask = torch.ones(2, SEQ, dtype=torch.long)
        args = (ids, mask)
    return _wrap(model, kind), args, kind


def export(name: str, path: str, dynamo: bool = True) -> str:
    import torch

    module, args, kind = build(name, dynamo)
    names = ["pixel_values"] if kind == "image" else ["input_ids", "attention_mask"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {0: torch.export.Dim("batch")} if kind == "image" else {
                0: torch.export.Dim("batch"), 1: torch.export.Dim("seq", min=2, max=64)}
            torch.onnx.export(module, args, path, dynamo=True, input_names=names,
                              dynamic_shapes=tuple(dims for _ in args), verbose=False)
        else:
            axes = {n: ({0: "batch"} if kind == "image" else {0: "batch", 1: "seq"}) for n in names}
            torch.onnx.export(module, args, path, dynamo=False, input_names=names,
                              dynamic_axes=axes, opset_version=17)
    return path
