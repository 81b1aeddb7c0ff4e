"""What each model output is, and how to tell whether pruning kept what it is for.

Every output is compared on its own, with metrics fit for its kind (named from its dtype,
shape and name, never from the op that made it):

- `labels`      integer outputs (a classifier's predicted class): agreement
- `class-scores` float [N, C] (or [N, S, V] token logits): top-1 / top-5 agreement, KL
- `entries`     [N, A, K] with many entries and few values each (detection anchors, YOLO cells):
                salient-entry agreement and relative error
- `map`         [N, C, H, W] with many channels (dense predictions, detection grids):
                salient-entry agreement and relative error
- `image`       [N, C <= 4, H, W] (super-resolution, segmentation masks): PSNR, relative error
- `state`       recurrent state or cache outputs (named so, or shaped like a state input):
                relative error, cosine
- `embedding`   float [N, D] or [N, S, D] features (named so): cosine, relative error
- `values`      anything else: relative error, cosine

Salient-entry agreement: per channel (the last axis of entries, axis 1 of maps), the
reference's entries far from that channel's typical value (robust z-score above 6) are the
ones that carry the answer (a face among thousands of background anchors); the metric is
the fraction of them that are still salient, on the same side, in the pruned output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

KINDS = ("labels", "class-scores", "entries", "map", "image", "state", "embedding", "values")
_STATE = re.compile(r"(state|present|past|cache|hidden_?n|^h_?n$|^c_?n$|^h$|^c$|h_out|c_out)", re.I)
_EMBED = re.compile(r"(embed|hidden|feature|pool|encod)", re.I)
_CLASS = re.compile(r"(logit|prob|score|class|pred|label|softmax|output)", re.I)

# Default thresholds: a metric past one of them is reported as outside tolerance.
DEFAULT_TOLERANCE = {"agreement": 0.9, "top1": 0.9, "salient": 0.8, "psnr": 30.0, "cosine": 0.99}
# Which metrics are lower bounds (higher is better) and which upper bounds.
HIGHER_IS_BETTER = {"agreement", "top1", "top5", "salient", "psnr", "cosine", "metric"}
LOWER_IS_BETTER = {"rel", "kl"}


def classify(name: str, ref: np.ndarray, state_inputs: dict[str, tuple] | None = None) -> str:
    """The kind of an output from its reference value (batch first), name and the model's
    state-like inputs (name -> shape)."""
    if ref.dtype.kind in "iub":
        return "labels"
    shape = ref.shape
    if _STATE.search(name) or any(tuple(shape) == tuple(s) and _related(name, n) for n, s in (state_inputs or {}).items()):
        return "state"
    squeezed = _squeeze_trailing(shape)
    if len(squeezed) == 4:
        return "image" if squeezed[1] <= 4 else "map"
    if (len(squeezed) == 3 and squeezed[1] >= 64 and squeezed[2] <= 128 and squeezed[1] > squeezed[2]
            and not _EMBED.search(name) and not re.search("logit", name, re.I)):
        return "entries"  # anchors or grid cells x (box, objectness, classes): 4420 x 2, 484 x 85
    if _EMBED.search(name) and not re.search("logit", name, re.I):
        return "embedding"
    if len(squeezed) in (2, 3) and squeezed[-1] > 1 and (_CLASS.search(name) or squeezed[-1] <= 1000):
        return "class-scores"
    return "values"


def _related(out: str, inp: str) -> bool:
    a, b = out.lower(), inp.lower()
    return a.startswith(b) or b.startswith(a) or a.replace("out", "") == b.replace("in", "")


def _squeeze_trailing(shape) -> tuple:
    shape = tuple(shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


@dataclass
class OutputReport:
    name: str
    kind: str
    metrics: dict[str, float]


CHUNK = 1 << 22  # elements of float64 work per slice: a 128k-vocabulary decoder's logits stay sliced


def compare_output(name: str, kind: str, ref: np.ndarray, got: np.ndarray) -> OutputReport:
    """The metrics of one output (see the module docstring). Sums go through the rows in
    slices, so comparing half a gigabyte of logits costs no full-size float64 copies."""
    m: dict[str, float] = {}
    a, b = np.asarray(ref), np.asarray(got)
    if kind == "labels":
        m["agreement"] = float(np.mean(a == b)) if a.size else 1.0
        return OutputReport(name, kind, m)
    s = _squeeze_trailing(a.shape)
    width = s[-1] if kind == "class-scores" else (a.shape[-1] if a.ndim else 1)
    ra, rb = a.reshape(-1, max(width, 1)), b.reshape(-1, max(width, 1))
    scores = kind == "class-scores"
    probs = scores and _are_probabilities(ra) and _are_probabilities(rb)
    acc = dict.fromkeys(("max", "aa", "dd", "ab", "bb", "top1", "top5", "kl"), 0.0)
    step = max(1, CHUNK // max(width, 1))
    for i in range(0, len(ra), step):
        x, y = ra[i:i + step].astype(np.float64), rb[i:i + step].astype(np.float64)
        acc["max"] = max(acc["max"], float(np.max(np.abs(x - y))) if x.size else 0.0)
        acc["aa"] += float(np.sum(x * x))
        acc["dd"] += float(np.sum((x - y) ** 2))
        acc["ab"] += float(np.sum(x * y))
        acc["bb"] += float(np.sum(y * y))
        if scores:
            acc["top1"] += float(np.sum(x.argmax(1) == y.argmax(1)))
            if width > 5:
                top5 = np.argpartition(-y, 5, axis=1)[:, :5]
                acc["top5"] += float(np.sum((top5 == x.argmax(1)[:, None]).any(1)))
            acc["kl"] += _kl_sum(x, y, probs)
    na, nb, d = np.sqrt(acc["aa"]), np.sqrt(acc["bb"]), np.sqrt(acc["dd"])
    m["max_abs_diff"] = acc["max"]
    m["rel"] = float(d / na) if na > 0 else float(d > 0)
    m["cosine"] = float(acc["ab"] / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
    rows = max(len(ra), 1)
    if scores:
        m["top1"] = acc["top1"] / rows
        if width > 5:
            m["top5"] = acc["top5"] / rows
        m["kl"] = acc["kl"] / rows
    elif kind in ("entries", "map"):
        m["salient"] = salient_agreement(a.astype(np.float64), b.astype(np.float64), axis=-1 if kind == "entries" else 1)
    elif kind == "image":
        m["psnr"] = psnr(a.astype(np.float64), b.astype(np.float64))
    return OutputReport(name, kind, m)


def _are_probabilities(rows: np.ndarray) -> bool:
    """Rows that already are probabilities (non-negative, each summing to 1), checked in slices."""
    step = max(1, CHUNK // max(rows.shape[1], 1))
    return all(bool((c >= 0).all()) and np.allclose(c.sum(1, dtype=np.float64), 1.0, atol=1e-3)
               for c in (rows[i:i + step] for i in range(0, len(rows), step)))


def _log_probs(x: np.ndarray, probs: bool) -> np.ndarray:
    if probs:
        return np.log(np.maximum(x, 1e-12))
    z = x - x.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _kl_sum(ref: np.ndarray, got: np.ndarray, probs: bool) -> float:
    """Sum over the rows of KL(ref || got), in nats (rows of logits, or of probabilities)."""
    lp, lq = _log_probs(ref, probs), _log_probs(got, probs)
    p = ref if probs else np.exp(lp)
    return float(np.sum(p * (np.maximum(lp, np.log(1e-12)) - np.maximum(lq, np.log(1e-12)))))


def psnr(ref: np.ndarray, got: np.ndarray) -> float:
    """20 log10(peak-to-peak of the reference / RMS error), in dB (inf when equal)."""
    rmse = np.sqrt(np.mean((ref - got) ** 2))
    span = float(ref.max() - ref.min()) if ref.size else 0.0
    return float("inf") if rmse == 0 else float(20 * np.log10(max(span, 1e-12) / rmse))


def salient_agreement(ref: np.ndarray, got: np.ndarray, axis: int, z: float = 6.0) -> float:
    """Fraction of the reference's salient entries still salient, on the same side, in
    `got`; per channel of `axis`, an entry is salient when it lies more than `z` robust
    standard deviations (1.4826 MAD) from the channel's median. 1.0 when nothing is salient."""
    ra = np.moveaxis(ref, axis, -1).reshape(-1, ref.shape[axis])
    rb = np.moveaxis(got, axis, -1).reshape(-1, got.shape[axis])
    med = np.median(ra, axis=0)
    mad = 1.4826 * np.median(np.abs(ra - med), axis=0)
    scale = np.maximum(mad, 1e-6 * np.maximum(np.abs(med), 1e-12))
    za, zb = (ra - med) / scale, (rb - med) / scale
    salient = np.abs(za) > z
    if not salient.any():
        return 1.0
    kept = salient & (np.sign(za) == np.sign(zb)) & (np.abs(zb) > z)
    return float(kept.sum() / salient.sum())


def parse_tolerance(spec: str | None) -> dict[str, float]:
    """`top1=0.95,psnr=28,rel=0.05` -> {'top1': 0.95, ...}; unknown keys are refused."""
    from graphprune.errors import BadInput

    if not spec:
        return {}
    out = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or key not in HIGHER_IS_BETTER | LOWER_IS_BETTER:
            raise BadInput(f"--tolerance: {item!r} is not KEY=NUMBER with KEY one of "
                           f"{', '.join(sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER))}")
        try:
            out[key] = float(raw)
        except ValueError:
            raise BadInput(f"--tolerance: {item!r}: {raw!r} is not a number") from None
    return out


# The metrics a tolerance checks, per kind of output.
CHECKED = {"labels": ("agreement",), "class-scores": ("top1", "top5", "kl"), "entries": ("salient", "rel"),
           "map": ("salient", "rel"), "image": ("psnr", "rel"), "state": ("rel", "cosine"),
           "embedding": ("cosine", "rel"), "values": ("cosine", "rel")}


def violations(reports: list[OutputReport], tolerance: dict[str, float]) -> list[str]:
    """One line per metric of an output past its threshold."""
    lines = []
    for r in reports:
        for key, value in r.metrics.items():
            if key not in tolerance or key not in CHECKED[r.kind]:
                continue
            limit = tolerance[key]
            bad = value < limit if key in HIGHER_IS_BETTER else value > limit
            if bad:
                op = "<" if key in HIGHER_IS_BETTER else ">"
                lines.append(f"output {r.name!r} ({r.kind}): {key} {_fmt(key, value)} {op} {_fmt(key, limit)}")
    return lines


def _fmt(key: str, v: float) -> str:
    if key in ("agreement", "top1", "top5", "salient", "metric"):
        return f"{v * 100:.1f}%"
    if key == "psnr":
        return f"{v:.1f} dB"
    return f"{v:.4g}"


def summary(r: OutputReport) -> str:
    """A short line of the metrics that matter for the kind."""
    keys = CHECKED[r.kind]
    names = {"agreement": "agreement", "top1": "top-1 agreement", "top5": "top-5", "kl": "KL",
             "salient": "salient entries kept", "rel": "relative error", "psnr": "PSNR", "cosine": "cosine"}
    parts = [f"{names[k]} {_fmt(k, r.metrics[k])}" for k in keys if k in r.metrics]
    return f"{r.name} ({r.kind}): " + ", ".join(parts)
