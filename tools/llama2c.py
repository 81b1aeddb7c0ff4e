"""llama2.c checkpoints (legacy format) as ONNX, with a NumPy reference forward and the
llama2.c tokenizer: what the stories260K benchmarks run on.

The ONNX graph is written the way exporters write Llama: RMSNorm as primitive ops, Q/K/V
MatMuls, Reshape into heads, rotary embeddings on interleaved pairs (x*cos + swap(x)*sin,
the pair swap a Gather on head_dim), grouped-query attention with K/V repeated by
Unsqueeze-Expand-Reshape, causal mask, SwiGLU MLP, and the output head tied to the token
embedding. Batch and sequence are dynamic.
"""

from __future__ import annotations

import struct

import numpy as np

HEADER = ("dim", "hidden", "layers", "heads", "kv_heads", "vocab", "max_seq")


def read_model(path: str):
    with open(path, "rb") as f:
        raw = f.read()
    cfg = dict(zip(HEADER, struct.unpack("7i", raw[:28])))
    data = np.frombuffer(raw, dtype=np.float32, offset=28)
    d, h, L, KV = cfg["dim"], cfg["hidden"], cfg["layers"], cfg["kv_heads"]
    V, S, hd = abs(cfg["vocab"]), cfg["max_seq"], cfg["dim"] // cfg["heads"]
    cfg["vocab"], cfg["head_dim"] = V, hd
    shapes = [("emb", (V, d)), ("att_norm", (L, d)), ("wq", (L, d, d)), ("wk", (L, KV * hd, d)),
              ("wv", (L, KV * hd, d)), ("wo", (L, d, d)), ("ffn_norm", (L, d)), ("w1", (L, h, d)),
              ("w2", (L, d, h)), ("w3", (L, h, d)), ("final_norm", (d,)),
              ("cos", (S, hd // 2)), ("sin", (S, hd // 2))]
    w, off = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        w[name] = data[off:off + n].reshape(shape).copy()
        off += n
    return cfg, w


class Tokenizer:
    """llama2.c's tokenizer: characters (byte fallback), then greedy best-score merges."""

    def __init__(self, path: str):
        with open(path, "rb") as f:
            raw = f.read()
        self.max_len = struct.unpack("i", raw[:4])[0]
        pos, self.pieces, self.scores = 4, [], []
        while pos < len(raw):
            score, n = struct.unpack("fi", raw[pos:pos + 8])
            self.pieces.append(raw[pos + 8:pos + 8 + n])
            self.scores.append(score)
            pos += 8 + n
        self.ids = {p: i for i, p in enumerate(self.pieces)}

    def encode(self, text: str, bos: bool = True) -> list[int]:
        toks = []
        for ch in " " + text:
            b = ch.encode("utf-8")
            if b in self.ids:
                toks.append(self.ids[b])
            else:
                toks.extend(byte + 3 for byte in b)
        while True:
            best, at = -1e30, -1
            for i in range(len(toks) - 1):
                j = self.ids.get(self.pieces[toks[i]] + self.pieces[toks[i + 1]])
                if j is not None and self.scores[j] > best:
                    best, at, merged = self.scores[j], i, j
            if at < 0:
                break
            toks[at:at + 2] = [merged]
        return ([1] if bos else []) + toks


def eval_windows(tok: Tokenizer, text_path: str, n_tokens: int = 20000, window: int = 256, skip: int = 0):
    """Windows of `window` tokens, each BOS + the next window-1 tokens of the stream made
    by encoding the stories (separated by blank lines) one after the other; the first
    `skip` tokens of the stream are passed over (calibration uses a disjoint part)."""
    with open(text_path, encoding="utf-8") as f:
        stories = [s.strip() for s in f.read().split("\n\n") if s.strip()]
    stream: list[int] = []
    for s in stories:
        stream.extend(tok.encode(s, bos=False))
        if len(stream) >= skip + n_tokens:
            break
    stream = stream[skip:skip + n_tokens]
    step = window - 1
    return [np.array([1] + stream[i:i + step], dtype=np.int64) for i in range(0, len(stream), step)]


# -- NumPy reference ----------------------------------------------------------------------
def _rms(x, g, eps=1e-5):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def _rope(x, cos, sin):  # x (T, H, hd); pairs (2i, 2i+1)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def forward_numpy(cfg, w, tokens: np.ndarray) -> np.ndarray:
    """Logits (T, vocab) for one sequence of token ids."""
    T, H, KV, hd = len(tokens), cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    x = w["emb"][tokens].astype(np.float64)
    cos, sin = w["cos"][:T], w["sin"][:T]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["layers"]):
        h = _rms(x, w["att_norm"][l])
        q = _rope((h @ w["wq"][l].T).reshape(T, H, hd), cos, sin)
        k = _rope((h @ w["wk"][l].T).reshape(T, KV, hd), cos, sin)
        v = (h @ w["wv"][l].T).reshape(T, KV, hd)
        k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", att, v).reshape(T, H * hd) @ w["wo"][l].T
        h = _rms(x, w["ffn_norm"][l])
        a, b = h @ w["w1"][l].T, h @ w["w3"][l].T
        x = x + (a / (1 + np.exp(-a)) * b) @ w["w2"][l].T
    return _rms(x, w["final_norm"]) @ w["emb"].T


def nll_per_token(logits_fn, windows) -> float:
    """Mean negative log-likelihood of each window's tokens 1.. given the ones before."""
    total, count = 0.0, 0
    for win in windows:
        logits = logits_fn(win).astype(np.float64)[:-1]
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        total -= logp[np.arange(len(win) - 1), win[1:]].sum()
        count += len(win) - 1
    return total / count


# -- ONNX ----------------------------------------------------------------------------------
def build_onnx(cfg, w):
    from onnx import TensorProto, helper, numpy_helper

    d, L, H, KV, hd, V, S = (cfg[k] for k in ("dim", "layers", "heads", "kv_heads", "head_dim", "vocab", "max_seq"))
    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    cos = np.repeat(w["cos"], 2, axis=1)[:, None, :]          # (S, 1, hd)
    sin = np.repeat(w["sin"], 2, axis=1)[:, None, :].copy()
    sin[..., 0::2] *= -1
    const("rope_cos", cos.astype(np.float32))
    const("rope_sin", sin.astype(np.float32))
    const("pair_swap", np.arange(hd).reshape(-1, 2)[:, ::-1].reshape(-1).astype(np.int64))
    const("causal", np.triu(np.full((S, S), -1e9, np.float32), 1))
    for name, val in (("zero", [0]), ("one", [1]), ("two", [2]), ("three", [3]), ("five", [5]),
                      ("axis01", [0, 1]), ("last", [-1]), ("unsq2", [2])):
        const(name, np.array(val, np.int64))
    const("eps", np.array(1e-5, np.float32))
    const("scale", np.array(1 / np.sqrt(hd), np.float32))
    const("emb", w["emb"])
    node("Gather", ["emb", "input_ids"], "x0")
    node("Shape", ["input_ids"], "ids_shape")
    node("Slice", ["ids_shape", "one", "two"], "seq")
    node("Slice", ["rope_cos", "zero", "seq", "zero"], "cos_t")
    node("Slice", ["rope_sin", "zero", "seq", "zero"], "sin_t")
    node("Concat", ["seq", "seq"], "seq2", axis=0)
    const("zero2", np.array([0, 0], np.int64))
    node("Slice", ["causal", "zero2", "seq2", "axis01"], "mask_t")

    def rms(x, g, p):
        node("Mul", [x, x], f"{p}_sq")
        node("ReduceMean", [f"{p}_sq", "last"], f"{p}_ms", keepdims=1)
        node("Add", [f"{p}_ms", "eps"], f"{p}_mse")
        node("Sqrt", [f"{p}_mse"], f"{p}_rms")
        node("Div", [x, f"{p}_rms"], f"{p}_n")
        return node("Mul", [f"{p}_n", const(f"{p}_g", g)], f"{p}_out")

    def heads(x, n, p, rope):
        node("Reshape", [x, const(f"{p}_shape", np.array([0, 0, n, hd], np.int64))], f"{p}_h")
        y = f"{p}_h"
        if rope:
            node("Mul", [y, "cos_t"], f"{p}_c")
            node("Gather", [y, "pair_swap"], f"{p}_sw", axis=3)
            node("Mul", [f"{p}_sw", "sin_t"], f"{p}_s")
            y = node("Add", [f"{p}_c", f"{p}_s"], f"{p}_rope")
        return node("Transpose", [y], f"{p}_t", perm=[0, 2, 1, 3])

    def repeat_kv(x, p):
        node("Unsqueeze", [x, "unsq2"], f"{p}_u")
        node("Shape", [f"{p}_u"], f"{p}_us")
        node("Slice", [f"{p}_us", "zero", "two"], f"{p}_lead")
        node("Slice", [f"{p}_us", "three", "five"], f"{p}_tail")
        node("Concat", [f"{p}_lead", const(f"{p}_rep", np.array([H // KV], np.int64)), f"{p}_tail"], f"{p}_es", axis=0)
        node("Expand", [f"{p}_u", f"{p}_es"], f"{p}_e")
        return node("Reshape", [f"{p}_e", const(f"{p}_rs", np.array([0, H, -1, hd], np.int64))], f"{p}_r")

    x = "x0"
    for l in range(L):
        p = f"l{l}"
        h = rms(x, w["att_norm"][l], f"{p}_an")
        q = heads(node("MatMul", [h, const(f"{p}_wq", w["wq"][l].T.copy())], f"{p}_q"), H, f"{p}_q", True)
        k = heads(node("MatMul", [h, const(f"{p}_wk", w["wk"][l].T.copy())], f"{p}_k"), KV, f"{p}_k", True)
        v = heads(node("MatMul", [h, const(f"{p}_wv", w["wv"][l].T.copy())], f"{p}_v"), KV, f"{p}_v", False)
        k, v = repeat_kv(k, f"{p}_kr"), repeat_kv(v, f"{p}_vr")
        node("Transpose", [k], f"{p}_kT", perm=[0, 1, 3, 2])
        node("MatMul", [q, f"{p}_kT"], f"{p}_qk")
        node("Mul", [f"{p}_qk", "scale"], f"{p}_qks")
        node("Add", [f"{p}_qks", "mask_t"], f"{p}_qkm")
        node("Softmax", [f"{p}_qkm"], f"{p}_att", axis=-1)
        node("MatMul", [f"{p}_att", v], f"{p}_ctx")
        node("Transpose", [f"{p}_ctx"], f"{p}_ctxT", perm=[0, 2, 1, 3])
        node("Reshape", [f"{p}_ctxT", const(f"{p}_cs", np.array([0, 0, H * hd], np.int64))], f"{p}_merged")
        node("MatMul", [f"{p}_merged", const(f"{p}_wo", w["wo"][l].T.copy())], f"{p}_o")
        x = node("Add", [x, f"{p}_o"], f"{p}_x1")
        h = rms(x, w["ffn_norm"][l], f"{p}_fn")
        node("MatMul", [h, const(f"{p}_w1", w["w1"][l].T.copy())], f"{p}_a")
        node("MatMul", [h, const(f"{p}_w3", w["w3"][l].T.copy())], f"{p}_b")
        node("Sigmoid", [f"{p}_a"], f"{p}_sig")
        node("Mul", [f"{p}_a", f"{p}_sig"], f"{p}_silu")
        node("Mul", [f"{p}_silu", f"{p}_b"], f"{p}_glu")
        node("MatMul", [f"{p}_glu", const(f"{p}_w2", w["w2"][l].T.copy())], f"{p}_down")
        x = node("Add", [x, f"{p}_down"], f"{p}_x2")
    h = rms(x, w["final_norm"], "final")
    node("Transpose", ["emb"], "emb_T", perm=[1, 0])  # the output head is the embedding
    node("MatMul", [h, "emb_T"], "logits")
    graph = helper.make_graph(
        nodes, "stories", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", V])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9,
                             producer_name="graphprune-tools")
