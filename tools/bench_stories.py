"""stories260K (Llama-style, grouped-query attention, RoPE, tied embeddings): perplexity on
TinyStories, dense and pruned, graphprune (from the ONNX file) vs Torch-Pruning (in torch).

    python tools/bench_stories.py [--budgets 0.2,0.5] [--json out.json]

The ONNX model is written by tools/llama2c.py from the llama2.c checkpoint and checked
against its NumPy forward. Evaluation: the first 20,000 tokens of
../shared/assets/text/tinystories_val.txt in 256-token windows starting with BOS; NLL per
token and perplexity. Budget: a share of the block parameters (attention and MLP weights
and norms of the 5 blocks). graphprune reaches it with heads and neurons (a quarter of the
KV heads, each with its query heads, per 25% of budget, and MLP neurons for the rest:
`select:heads=,channels=`), and also with MLP neurons alone (`select:channels=`), which
is what Torch-Pruning does here: it does not prune this model's grouped-query heads (K/V
repeated with repeat_interleave), so its MLP ratio is set to remove the same share. The
random baseline is the mean NLL over --seeds seeds in both tools. With --calib N,
graphprune calibrates on N windows taken after the evaluated tokens, and Torch-Pruning's
Taylor criterion gets the gradients of the language-model loss on the same windows.
Torch-Pruning needs
torch and torch-pruning; without them its rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "..", "shared", "assets")
CKPT = os.path.join(ASSETS, "llama2c", "stories260K.bin")
TOK = os.path.join(ASSETS, "llama2c", "tok512.bin")
TEXT = os.path.join(ASSETS, "text", "tinystories_val.txt")
sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]

import llama2c  # noqa: E402

CALIB_PIPELINES = ("l1,l2,wifv,wifv+compensate,wifv+compensate:method=lsq,wifv+global,wifv+global+compensate,"
                   "wifv+global+compensate:method=lsq,wifv+global+compensate:method=lsq+restore-stats,amp,"
                   "amp+compensate,wanda-sp+compensate,wifv+global+refit")


def block_params(cfg) -> int:
    d, h, kvd = cfg["dim"], cfg["hidden"], cfg["kv_heads"] * cfg["head_dim"]
    return cfg["layers"] * (2 * d * d + 2 * d * kvd + 3 * d * h + 2 * d)


def ort_logits(path):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda toks: sess.run(None, {"input_ids": toks[None]})[0][0]


def torch_model(cfg, w):
    """The same network as a torch module (HF-style names), for Torch-Pruning."""
    import torch
    from torch import nn

    H, KV, hd = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]

    def lin(weight):
        m = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        m.weight.data = torch.from_numpy(weight.copy())
        return m

    class Attn(nn.Module):
        def __init__(self, l):
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj, self.o_proj = (lin(w[n][l]) for n in ("wq", "wk", "wv", "wo"))
            self.num_heads, self.num_kv = H, KV

        def forward(self, x, cos, sin, mask):
            B, T, _ = x.shape

            def rope(t):
                t0, t1 = t[..., 0::2], t[..., 1::2]
                return torch.stack([t0 * cos - t1 * sin, t0 * sin + t1 * cos], -1).flatten(-2)

            q = rope(self.q_proj(x).view(B, T, -1, hd)).transpose(1, 2)
            k = rope(self.k_proj(x).view(B, T, -1, hd)).transpose(1, 2)
            v = self.v_proj(x).view(B, T, -1, hd).transpose(1, 2)
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            att = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5 + mask, -1)
            return self.o_proj((att @ v).transpose(1, 2).reshape(B, T, -1))

    class RMS(nn.Module):
        def __init__(self, g):
            super().__init__()
            self.weight = nn.Parameter(torch.from_numpy(g.copy()))

        def forward(self, x):
            return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * self.weight

    class Block(nn.Module):
        def __init__(self, l):
            super().__init__()
            self.attn_norm, self.ffn_norm = RMS(w["att_norm"][l]), RMS(w["ffn_norm"][l])
            self.attn = Attn(l)
            self.gate_proj, self.down_proj, self.up_proj = lin(w["w1"][l]), lin(w["w2"][l]), lin(w["w3"][l])

        def forward(self, x, cos, sin, mask):
            x = x + self.attn(self.attn_norm(x), cos, sin, mask)
            h = self.ffn_norm(x)
            return x + self.down_proj(nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding.from_pretrained(torch.from_numpy(w["emb"].copy()), freeze=False)
            self.layers = nn.ModuleList(Block(l) for l in range(cfg["layers"]))
            self.norm = RMS(w["final_norm"])
            self.register_buffer("cos", torch.from_numpy(w["cos"].copy()))
            self.register_buffer("sin", torch.from_numpy(w["sin"].copy()))

        def forward(self, ids):
            T = ids.shape[1]
            x = self.embed(ids)
            cos, sin = self.cos[:T, None, :], self.sin[:T, None, :]
            mask = torch.triu(torch.full((T, T), float("-inf")), 1)
            for layer in self.layers:
                x = layer(x, cos, sin, mask)
            return self.norm(x) @ self.embed.weight.T

    return Model().eval()


def tp_prune(cfg, w, criterion, ratio, calib=None):
    import torch
    import torch_pruning as tp

    model = torch_model(cfg, w)
    imp = {"l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
           "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
           "random": lambda: tp.importance.RandomImportance(),
           "taylor": lambda: tp.importance.GroupTaylorImportance()}[criterion]()
    num_heads, ignored = {}, [model.embed]
    for b in model.layers:
        num_heads[b.attn.q_proj] = cfg["heads"]
        num_heads[b.attn.k_proj] = num_heads[b.attn.v_proj] = cfg["kv_heads"]
        ignored += [b.attn.o_proj, b.down_proj]  # keep the hidden size
    pruner = tp.pruner.MetaPruner(model, torch.ones(1, 8, dtype=torch.long), importance=imp,
                                  pruning_ratio=ratio, ignored_layers=ignored, num_heads=num_heads,
                                  prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=ratio)
    if criterion == "taylor":  # gradients of the language-model loss on the calibration windows
        model.zero_grad()
        for i in range(0, len(calib), 16):
            ids = torch.from_numpy(calib[i:i + 16])
            logits = model(ids)[:, :-1]
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                              reduction="sum").backward()
    pruner.step()
    for b in model.layers:  # Torch-Pruning leaves head counts to the user
        b.attn.num_heads, b.attn.num_kv = pruner.num_heads[b.attn.q_proj], pruner.num_heads[b.attn.k_proj]
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="0.2,0.5", help="shares of block parameters to remove")
    ap.add_argument("--criteria", help="comma-separated; default: the data-free criteria, or with --calib the "
                    "pipelines of tools/README's calibration table")
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--json")
    ap.add_argument("--no-tp", action="store_true")
    ap.add_argument("--seeds", type=int, default=3, help="random baseline: mean NLL over this many seeds")
    ap.add_argument("--calib", type=int, default=0, metavar="N",
                    help="calibration: N windows of 256 tokens taken after the evaluated ones; criteria may "
                         "then be pipelines such as wifv+compensate (+global: FLAP allocation at the budget; "
                         "+global-raw: global selection on the criterion's own scale, e.g. lamp, metanet), "
                         "and Torch-Pruning's Taylor rows run")
    ap.add_argument("--tp-criteria", default="l1,l2,random,taylor")
    args = ap.parse_args()
    args.criteria = args.criteria or (CALIB_PIPELINES if args.calib else "l1,l2,random,l1:roles=in,l2:roles=in")
    import onnx

    from graphprune.pipeline import Options, prune

    cfg, w = llama2c.read_model(CKPT)
    tok = llama2c.Tokenizer(TOK)
    windows = llama2c.eval_windows(tok, TEXT, n_tokens=args.tokens)
    total = block_params(cfg)
    rows = []
    calib_ids = None
    if args.calib:
        calib_ids = np.stack([c for c in llama2c.eval_windows(tok, TEXT, n_tokens=args.calib * 255, skip=args.tokens)
                              if len(c) == 256])

    def add(tool, crit, ratio, removed, nll):
        rows.append({"tool": tool, "criterion": crit, "ratio": ratio, "block_removed": removed,
                     "nll": nll, "ppl": float(np.exp(nll))})
        print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        dense = os.path.join(tmp, "stories260K.onnx")
        onnx.save(llama2c.build_onnx(cfg, w), dense)
        calib = None
        if calib_ids is not None:
            calib = os.path.join(tmp, "calib.npz")
            np.savez(calib, input_ids=calib_ids)
            print(f"calibration: {len(calib_ids)} windows of 256 tokens after the first {args.tokens}")
        # select's params= is a share of the parameters the analysis counts (params_analysed)
        model_params = prune(dense, Options(passes=["l1", "select:ratio=0"], dry_run=True))["before"]["params_analysed"]
        # Verification on evaluated windows: --calib alone would hold out calibration windows.
        inputs = os.path.join(tmp, "inputs.npz")
        np.savez(inputs, input_ids=np.stack(windows[:4]))
        probe = windows[0][:64]
        diff = float(np.abs(ort_logits(dense)(probe) - llama2c.forward_numpy(cfg, w, probe)).max())
        print(f"ONNX vs NumPy forward: max |diff| {diff:.2e} over 64 tokens")
        add("dense", "-", 0.0, 0.0, llama2c.nll_per_token(ort_logits(dense), windows))
        mlp = 3 * cfg["dim"] * cfg["hidden"] * cfg["layers"]
        n_rep = cfg["heads"] // cfg["kv_heads"]
        kv_head = 2 * cfg["head_dim"] * cfg["dim"] * (n_rep + 1)  # q and o of its query heads, k, v
        for budget in [float(r) for r in args.budgets.split(",")]:
            ratio = budget * total / mlp  # the MLP-only ratio that removes the same share
            # Heads and neurons: a quarter of the KV heads per 25% of budget, neurons for the rest.
            h = round(budget * 4) / 4
            heads_removed = cfg["layers"] * (cfg["kv_heads"] - int(cfg["kv_heads"] * (1 - h) + 1e-9)) * kv_head
            selects = {"graphprune": lambda extra: f"select:heads={h},channels="
                                                   f"{(budget * total + extra - heads_removed) / mlp:.6f},round_to=1",
                       "graphprune-mlp": lambda extra: f"select:channels={ratio + extra / mlp:.6f},round_to=1"}
            for crit in args.criteria.split(","):
                score, *after = crit.split("+")
                if "global" in after or "global-raw" in after:  # one threshold at the budget
                    if "global" in after:  # FLAP allocation: standardized scores
                        score += (":" if ":" not in score else ";") + "normalize=standardize"
                    after = [a for a in after if a not in ("global", "global-raw")]  # global-raw: the criterion's own scale
                    tools = {"graphprune": lambda extra: "select:params="
                             f"{1 - (budget * total + extra) / model_params:.6f},scope=global,round_to=1"}
                else:
                    tools = selects
                for tool, select in tools.items():
                    nlls = []
                    for seed in range(args.seeds if score == "random" else 1):
                        out = os.path.join(tmp, f"gp_{len(rows)}.onnx")
                        spec = f"random:seed={seed}" if score == "random" else score.replace(";", ",")
                        extra = 0.0
                        for _ in range(2):  # compensation may add biases: prune further by what they cost
                            rep = prune(dense, Options(passes=[spec, select(extra), *[a.replace(";", ",")
                                                                                      for a in after]],
                                                       output=out, calib=calib, inputs=inputs, quiet=True))
                            removed = (rep["before"]["params_analysed"] - rep["after"]["params_analysed"]) / total
                            if removed >= budget - 5e-4 or not after:
                                break
                            extra += (budget - removed) * total
                        nlls.append(llama2c.nll_per_token(ort_logits(out), windows))
                    add(tool, crit, budget, removed, float(np.mean(nlls)))
            if args.no_tp:
                continue
            import torch

            for crit in [c for c in args.tp_criteria.split(",") if c != "taylor" or args.calib]:
                nlls = []
                for seed in range(args.seeds if crit == "random" else 1):
                    torch.manual_seed(seed)
                    try:
                        model = tp_prune(cfg, w, crit, ratio, calib_ids)
                    except Exception as e:  # noqa: BLE001 - report what Torch-Pruning does
                        print(f"torch-pruning {crit} {ratio}: failed: {type(e).__name__}: {e}".splitlines()[0])
                        break
                    kept = sum(p.numel() for b in model.layers for p in b.parameters())
                    with torch.no_grad():
                        fn = lambda t: model(torch.from_numpy(t)[None])[0].numpy()  # noqa: E731
                        nlls.append(llama2c.nll_per_token(fn, windows))
                if nlls:
                    add("torch-pruning", crit, budget, 1 - kept / total, float(np.mean(nlls)))
    print(f"\n{'tool':15} {'criterion':28} {'budget':>6} {'block params removed':>20} {'NLL/token':>9} {'PPL':>7}")
    for r in rows:
        print(f"{r['tool']:15} {r['criterion']:28} {r['ratio']:>6.2f} {r['block_removed'] * 100:>19.1f}% "
              f"{r['nll']:>9.4f} {r['ppl']:>7.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "onnx_vs_numpy_max_diff": diff}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
