"""Deployed decoders built in tests: a `transformers` config with random weights, saved with
a small WordLevel tokenizer, through onnxruntime-genai's model builder (GroupQueryAttention
with the KV cache as past/present inputs and outputs, genai_config.json beside it); and
greedy decoding with that cache in ONNX Runtime, plus the full-sequence forward it must agree
with. No download: the builder reads the saved folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np

# Unlike every other Linear's width: the genai builder tells the LM head by its output size.
VOCAB = 120

_DEC = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
CONFIGS = {
    "llama": ("LlamaConfig", dict(_DEC, num_key_value_heads=2)),
    "qwen2": ("Qwen2Config", dict(_DEC, num_key_value_heads=2)),
    "mistral": ("MistralConfig", dict(_DEC, num_key_value_heads=2, sliding_window=None)),
    "phi3": ("Phi3Config", dict(_DEC, num_key_value_heads=2, pad_token_id=0, original_max_position_embeddings=128)),
    "gpt2": ("GPT2Config", dict(n_embd=64, n_layer=2, n_head=4, initializer_range=0.2)),
    # Mixtures of experts, 4 experts, top 2. GPT-OSS: the genai builder writes com.microsoft MoE
    # for it; the Hugging Face export (`MOE_EXPORTS`) picks on the router's logits and takes
    # the softmax of the picked ones, with biases and interleaved gate/up. Mixtral (softmax,
    # top-k renormalised) and Qwen2-MoE (not renormalised, plus a shared expert behind a
    # sigmoid gate) as Hugging Face exports them.
    "mixtral": ("MixtralConfig", dict(_DEC, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                                      sliding_window=None)),
    "qwen2moe": ("Qwen2MoeConfig", dict(_DEC, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                                        moe_intermediate_size=48, shared_expert_intermediate_size=64,
                                        norm_topk_prob=False)),
    "gptoss": ("GptOssConfig", dict(_DEC, num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
                                    sliding_window=128, layer_types=["full_attention"] * 2)),
}
LAYERS = 2
MOE_EXPORTS = ("mixtral", "qwen2moe", "gptoss")


def _config(kind: str):
    import transformers

    name, cfg = CONFIGS[kind]
    extra = dict(n_positions=128) if kind == "gpt2" else dict(max_position_embeddings=128)
    return getattr(transformers, name)(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, **extra, **cfg)


def export_with_cache(kind: str, path: str, seed: int = 0) -> str:
    """The model as Hugging Face exports it for generation: the dynamo exporter over a
    module that takes input_ids, attention_mask and each layer's past key/value
    (batch, kv heads, past, head size) and returns logits and the present key/values."""
    import warnings

    import torch
    import transformers
    from transformers import DynamicCache

    torch.manual_seed(seed)
    config = _config(kind)
    config._attn_implementation = "eager"
    if kind in MOE_EXPORTS:  # each token's experts' weights gathered and batched: static shapes
        config._experts_implementation = "batched_mm"
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    size = config.hidden_size // config.num_attention_heads

    class WithCache(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask, k0, v0, k1, v1):
            cache = DynamicCache(config=config)
            for i, (k, v) in enumerate(((k0, v0), (k1, v1))):
                cache.update(k, v, i)
            out = self.m(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True)
            return (out.logits, *[t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)])

    b, s, p = 2, 3, 5
    args = (torch.randint(0, VOCAB, (b, s)), torch.ones(b, s + p, dtype=torch.long),
            *[torch.randn(b, kv, p, size) for _ in range(2 * LAYERS)])
    pasts = [f"past_key_values.{i}.{k}" for i in range(LAYERS) for k in ("key", "value")]
    batch = torch.export.Dim("batch")
    past = torch.export.Dim("past", min=1, max=64)
    dims = ({0: batch, 1: torch.export.Dim("seq", min=1, max=64)},
            {0: batch, 1: torch.export.Dim("total", min=2, max=128)}, *[{0: batch, 2: past}] * (2 * LAYERS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(WithCache().eval(), args, path, dynamo=True, input_names=["input_ids", "attention_mask", *pasts],
                          output_names=["logits", *[n.replace("past_key_values", "present") for n in pasts]],
                          dynamic_shapes=dims, verbose=False)
    return path


def save_hf(kind: str, folder: str, seed: int = 0) -> str:
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(seed)
    config = _config(kind)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(folder)
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", bos_token="t1",
                                         eos_token="t2").save_pretrained(folder)
    return folder


def genai_build(hf_folder: str, out_folder: str) -> str:
    """Run the genai model builder (fp32, CPU) on a saved folder; returns the model path."""
    r = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", hf_folder, "-o", out_folder,
                        "-p", "fp32", "-e", "cpu", "-c", os.path.join(out_folder, "cache")],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"the genai builder failed: {r.stderr[-2000:]}")
    shutil.rmtree(os.path.join(out_folder, "cache"), ignore_errors=True)
    path = os.path.join(out_folder, "model.onnx")
    _check_against_hf(hf_folder, path)
    return path


def _check_against_hf(hf_folder: str, path: str) -> None:
    """The built model computes what the Hugging Face model does (the builder maps modules
    by name and size; a wrong mapping would make every oracle here vacuous)."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(hf_folder).eval()
    tokens = [1, 7, 30, 4, 61, 2, 9]
    with torch.no_grad():
        want = model(torch.tensor([tokens])).logits[0].numpy()
    got = _logits(path, tokens)
    if not np.allclose(got, want, atol=1e-4):
        raise RuntimeError(f"the genai builder's model differs from the Hugging Face one by {np.abs(got - want).max()}")


def _head_size(model_path: str, declared) -> int:
    if isinstance(declared, int):
        return declared
    with open(os.path.join(os.path.dirname(model_path), "genai_config.json")) as f:
        return json.load(f)["model"]["decoder"]["head_size"]


def window(model_path: str) -> int:
    """The longest sliding window of the model's GroupQueryAttention nodes (0: none). Such
    a model runs on a shared cache buffer at least that long, as onnxruntime-genai allocates it."""
    import onnx

    m = onnx.load(model_path, load_external_data=False)
    return max([a.i for n in m.graph.node if n.op_type == "GroupQueryAttention" for a in n.attribute
                if a.name == "local_window_size"] + [0])


def _empty_cache(model_path: str) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model_path)
    length = window(model_path)
    return {i.name: np.zeros((1, i.shape[1], length, _head_size(model_path, i.shape[3])), np.float32)
            for i in sess.get_inputs() if i.name.startswith("past_key_values")}


def greedy_with_cache(model_path: str, prompt: list[int], new_tokens: int = 32) -> list[int]:
    """Greedy decoding in ONNX Runtime: the prompt at once, then one token per step, each
    step feeding the previous step's present key/values back as the past."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model_path)
    names = [o.name for o in sess.get_outputs()]
    past = _empty_cache(model_path)
    tokens, step = list(prompt), list(prompt)
    for _ in range(new_tokens):
        ids = np.array([step], dtype=np.int64)
        out = dict(zip(names, sess.run(None, {"input_ids": ids, "attention_mask": np.ones((1, len(tokens)), np.int64),
                                              **past})))
        nxt = int(out["logits"][0, -1].argmax())
        past = {k: out[k.replace("past_key_values", "present")] for k in past}
        tokens.append(nxt)
        step = [nxt]
    return tokens


def _logits(model_path: str, tokens: list[int]) -> np.ndarray:
    """Logits of one forward over the whole sequence (an empty cache)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model_path)
    ids = np.array([tokens], dtype=np.int64)
    return sess.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                 **_empty_cache(model_path)})[0][0]


def full_forward_predictions(model_path: str, tokens: list[int]) -> np.ndarray:
    """The argmax at every position of one forward over the whole sequence (no cache)."""
    return _logits(model_path, tokens).argmax(-1)


def genai_generate(folder: str, prompt: list[int], new_tokens: int = 32) -> list[int]:
    """Greedy decoding in onnxruntime-genai from a model folder."""
    import onnxruntime_genai as og

    model = og.Model(folder)
    params = og.GeneratorParams(model)
    length = max(len(prompt) + new_tokens, window(os.path.join(folder, "model.onnx")))
    params.set_search_options(max_length=length, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(prompt)
    for _ in range(new_tokens):
        gen.generate_next_token()
    return [int(t) for t in gen.get_sequence(0)]
