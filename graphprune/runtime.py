"""ONNX Runtime sessions, made in one place: for a model file (verification, evaluation,
latency), and for an in-memory model with chosen intermediate tensors exposed as its
outputs (calibration statistics, refits, depth scores: the session computes only what
they need) or with its own outputs (ablation).

Sessions run on the CPU provider. Unless asked to optimize, graph optimizations are off:
graphprune compares against what the model file itself says.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx_ir as ir

from graphprune.errors import BadInput

# ONNX Runtime's type strings -> numpy dtypes (inputs graphprune can fill or read).
ORT_NUMPY = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


def session(path: str, optimize: bool = False, threads: int = 0,
            spinning: bool = True, lean: bool = False, profile_prefix: str | None = None):
    """An ONNX Runtime CPU session of a model file. `lean` is for one-off verification
    runs: without weight pre-packing, constant folding and the memory arena, ORT maps
    external weights from the file instead of copying them, so a 2 GB model costs page
    cache, not private memory (folding would materialise, e.g., the transposed copy of a
    tied embedding table that the genai builder's decoders transpose at run time).
    `spinning=False` keeps idle worker threads from stealing cores from the next session's
    run, which would skew interleaved latency measurements. `profile_prefix`: ONNX
    Runtime's profiler on, writing its JSON under that prefix (`end_profiling()`)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # ONNX Runtime's own error lines would precede our one-line errors
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    if lean:
        opts.add_session_config_entry("session.disable_prepacking", "1")
        opts.enable_cpu_mem_arena = False
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    disabled = ["ConstantFolding"] if lean and optimize else None
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)


def free_batch(model: ir.Model) -> ir.Model:
    """A copy (tensors shared) whose inputs and outputs of a fixed batch of 1 take any
    batch, shapes inferred again. Whether it computes the same is for `batch_frees` to say."""
    from graphprune.shapes import infer_exact_shapes

    copy = model.clone()
    for v in [*copy.graph.inputs, *copy.graph.outputs]:
        if v.shape is not None and len(v.shape) and v.shape[0] == 1 and v.name not in copy.graph.initializers:
            v.shape = ir.Shape(["graphprune_batch", *list(v.shape)[1:]])
    infer_exact_shapes(copy)
    return copy


def batch_frees(model: ir.Model, samples: list[dict]) -> bool:
    """Whether a fixed-batch-1 model, its batch made free, gives on a batch of the samples
    what it gives on each alone (a model that spells its batch out in a Reshape does not)."""
    if len(samples) < 2:
        return False
    try:
        one = model_session(model)
        many = model_session(model, batch_free=True)
        singles = [one.run(None, s) for s in samples]
        joint = many.run(None, {k: np.concatenate([s[k] for s in samples]) for k in samples[0]})
    except Exception:  # noqa: BLE001 - any failure means: keep the model's own batch
        return False
    for i, got in enumerate(joint):
        want = np.concatenate([s[i] for s in singles])
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
            return False
    return True


def model_session(model: ir.Model, outputs: list[str] = (), who: str = "calibration", optimize: bool = False,
                  batch_free: bool = False):
    """A session of an in-memory model with the tensors `outputs` exposed as extra graph
    outputs. The model is written to a temporary folder (external data stays external) and
    its outputs are restored; `who` names the caller in errors. `batch_free`: the session
    of free_batch(model), for a fixed-batch-1 model that batch_frees."""
    from graphprune.saving import uses_external_data

    # A model with external data runs lean: its weights mapped from the file, not copied
    # into pre-packed buffers (a 5 GB decoder would otherwise cost 5 GB more).
    with tempfile.TemporaryDirectory() as tmp:
        return session(write_exposed(model, outputs, who, batch_free, tmp), optimize=optimize,
                       lean=uses_external_data(model))


def write_exposed(model: ir.Model, outputs, who: str, batch_free: bool, folder: str) -> str:
    """Write `model` with `outputs` exposed as graph outputs to folder/model.onnx (what
    model_session opens; graphprune.cluster ships the folder to Ray workers)."""
    from graphprune.saving import save_scratch
    from graphprune.shapes import infer_exact_shapes

    if batch_free:
        model = free_batch(model)
    values = {v.name: v for node in model.graph for v in node.outputs if v is not None}
    missing = [n for n in outputs if n not in values]
    if missing:
        raise BadInput(f"{who}: no tensor named {missing[0]!r} in the model")
    if any(values[n].dtype is None for n in outputs):
        infer_exact_shapes(model)
    untyped = [n for n in outputs if values[n].dtype is None]
    if untyped:
        raise BadInput(f"{who}: tensor {untyped[0]!r} has no known type; cannot expose it")
    added = [values[n] for n in outputs if not values[n].is_graph_output()]
    model.graph.outputs.extend(added)
    try:
        path = os.path.join(folder, "model.onnx")
        save_scratch(model, path)
    finally:
        for v in added:
            model.graph.outputs.remove(v)
    if outputs:
        only_outputs(path, list(outputs))
    return path


def only_outputs(path: str, outputs: list[str]) -> None:
    """Rewrite the model file at `path` (its weights untouched, wherever they are stored)
    to compute only `outputs`: ONNX Runtime runs every node of a graph whatever a run asks
    for, so a calibration session would otherwise also compute, e.g., a decoder's logits
    (at a 128k vocabulary, half a gigabyte per batch). Graph inputs all stay."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    g = proto.graph
    wanted = set(outputs)
    needed, kept = set(wanted), []
    for node in reversed(g.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
            needed.update(_subgraph_reads(node))
    outs = [o for o in g.output if o.name in wanted]
    if len(kept) == len(g.node) and len(outs) == len(g.output):
        return
    kept.reverse()
    inits = [t for t in g.initializer if t.name in needed]
    for field, items in ((g.node, kept), (g.output, outs), (g.initializer, inits)):
        del field[:]
        field.extend(items)
    onnx.save(proto, path)


def _subgraph_reads(node) -> set[str]:
    """Every name read inside a node's subgraphs (If/Loop/Scan bodies), outer or not."""
    import onnx

    names = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for sub in graphs:
            for inner in sub.node:
                names.update(i for i in inner.input if i)
                names.update(_subgraph_reads(inner))
    return names


def run_on(sess, feeds: dict, outputs: list[str] | None = None) -> list[np.ndarray]:
    """Run with the feeds the session takes (extra names, e.g. masks of other sessions,
    are dropped)."""
    names = {i.name for i in sess.get_inputs()}
    return sess.run(outputs, {k: v for k, v in feeds.items() if k in names})
