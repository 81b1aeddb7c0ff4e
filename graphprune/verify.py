"""Verification of a written model: ONNX checker (path form, works past 2 GB), a load
and a run in ONNX Runtime, unchanged output names and shapes, and a numeric comparison
with the original (max abs diff, cosine similarity, top-1 agreement) on probe inputs.

The original always runs with graph optimizations disabled, so the comparison is
against what the model file itself says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from graphprune.errors import BadInput, VerificationError, first_line

_NP = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


def session(path: str, optimize: bool = False, threads: int = 0,
            spinning: bool = True, lean: bool = False) -> ort.InferenceSession:
    """An ONNX Runtime CPU session. `lean` is for one-off verification runs: without
    weight pre-packing and the memory arena, ORT maps external weights from the file
    instead of copying them, so a 2 GB model costs page cache, not private memory."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if lean:
        opts.add_session_config_entry("session.disable_prepacking", "1")
        opts.enable_cpu_mem_arena = False
    if not spinning:
        # Idle worker threads otherwise spin after a run and steal cores from the next
        # session's run, which skews interleaved latency measurements.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


# Probe inputs are generated in memory; a declared shape beyond this is refused.
PROBE_BUDGET_BYTES = 1 << 30

InputMeta = list[tuple[str, list, str]]  # (name, shape, type) of each model input


@dataclass
class Reference:
    """What verification needs of the original model, so its session can be dropped."""

    output_names: list[str]
    inputs: InputMeta
    feeds: dict[str, np.ndarray]
    outputs: list[np.ndarray]
    source: str = "random probes"  # what the feeds are: --inputs, --eval or --calib samples


def input_meta(sess: ort.InferenceSession) -> InputMeta:
    return [(i.name, list(i.shape), i.type) for i in sess.get_inputs()]


def index_bounds(path: str) -> dict[str, int]:
    """Graph inputs used as Gather indices into a constant table (token ids, token types):
    input name -> table size, so probes stay inside it. External data is not read."""
    import onnx

    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - bounds are a convenience; the loader reports errors
        return {}
    tables = {t.name: list(t.dims) for t in proto.graph.initializer}
    inputs = {i.name for i in proto.graph.input}
    bounds: dict[str, int] = {}
    for node in proto.graph.node:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[1] not in inputs:
            continue
        dims = tables.get(node.input[0])
        if not dims:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        size = int(dims[axis % len(dims)])
        bounds[node.input[1]] = min(bounds.get(node.input[1], size), size)
    return bounds


def probe_inputs(inputs: InputMeta, batch: int = 2, seed: int = 0,
                 bounds: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Random inputs matching the model's declared inputs. Symbolic dims become `batch` on
    the first axis; other symbolic dims (a sequence) 16 when an integer input (token ids)
    has them, else 1. Integers stay below `bounds` (Gather tables), else in {0, 1} (masks)."""
    rng = np.random.default_rng(seed)
    bounds = bounds or {}
    feeds = {}
    total = 0
    def integer(t) -> bool:
        return _NP.get(t) is not None and np.issubdtype(_NP[t], np.integer)

    token_dims = {d for _, dims, t in inputs if integer(t) for i, d in enumerate(dims[1:]) if isinstance(d, str)}
    for name, dims, type_ in inputs:
        shape = [d if isinstance(d, int) and d > 0 else
                 (batch if i == 0 else (16 if integer(type_) or d in token_dims else 1))
                 for i, d in enumerate(dims)]
        dtype = _NP.get(type_)
        if dtype is None:
            raise BadInput(f"input {name!r} has type {type_}, which probes cannot fill; pass --inputs")
        total += int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
        if total > PROBE_BUDGET_BYTES:
            raise BadInput(f"input {name!r} declares shape {shape}, too large for probe inputs "
                           f"(over {PROBE_BUDGET_BYTES >> 20} MiB); pass --inputs")
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[name] = rng.random(shape) < 0.5
        else:
            feeds[name] = rng.integers(0, min(bounds.get(name, 2), 10), size=shape).astype(dtype)
    return feeds


def load_inputs(path: str, inputs: InputMeta) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: cannot read inputs ({e})") from None
    names = [name for name, _, _ in inputs]
    missing = [n for n in names if n not in data.files]
    if missing:
        raise BadInput(f"{path}: no array for model input(s) {', '.join(missing)} (has {', '.join(data.files)})")
    return {n: data[n] for n in names}


def compare(ref: list[np.ndarray], got: list[np.ndarray]) -> dict:
    """Max abs diff, cosine similarity and top-1 agreement over all outputs."""
    diffs, cosines, agree = [], [], []
    for a, b in zip(ref, got):
        a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        diffs.append(float(np.max(np.abs(a64 - b64))) if a64.size else 0.0)
        na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
        cosines.append(float(a64 @ b64 / (na * nb)) if na > 0 and nb > 0 else float(na == nb))
        # Class scores may carry trailing 1s (N, C, 1, 1): rank over the last real axis.
        while a.ndim > 2 and a.shape[-1] == 1:
            a, b = a.reshape(a.shape[:-1]), b.reshape(b.shape[:-1])
        if a.ndim >= 2 and a.shape[-1] > 1:
            agree.append(float(np.mean(a.argmax(-1) == b.argmax(-1))))
    return {
        "max_abs_diff": max(diffs) if diffs else 0.0,
        "cosine": min(cosines) if cosines else 1.0,
        "top1_agreement": min(agree) if agree else None,
    }


def check_only(path: str) -> dict:
    """The ONNX checker alone (for --no-verify)."""
    try:
        onnx.checker.check_model(path)
    except Exception as e:  # noqa: BLE001 - checker errors come in several types
        raise VerificationError(f"the ONNX checker rejects the result: {first_line(e)}") from None
    return {"checker": "passed", "numeric": "skipped"}


def verify_file(path: str, ref: Reference) -> dict:
    """Check `path` against the reference run; raise VerificationError if it is broken."""
    check_only(path)
    try:
        sess = session(path, optimize=True, lean=True)
    except Exception as e:  # noqa: BLE001
        raise VerificationError(f"ONNX Runtime cannot load the result: {first_line(e)}") from None
    names = [o.name for o in sess.get_outputs()]
    if names != ref.output_names:
        raise VerificationError(f"output names changed: {ref.output_names} -> {names}")
    try:
        got = sess.run(None, ref.feeds)
    except Exception as e:  # noqa: BLE001
        raise VerificationError(f"ONNX Runtime fails to run the result: {first_line(e)}") from None
    del sess
    for name, a, b in zip(names, ref.outputs, got):
        if a.shape != b.shape:
            raise VerificationError(f"output {name!r} changed shape: {list(a.shape)} -> {list(b.shape)}")
    result = compare(ref.outputs, got)
    result["checker"] = "passed"
    result["inputs"] = ref.source
    return result


