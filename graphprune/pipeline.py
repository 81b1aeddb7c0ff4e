"""What runs when you type `graphprune model.onnx --pass ...`, top to bottom.

    load (checked) -> normalize -> [analysis options] -> score -> select -> [compensate] -> remove -> cleanup
         -> save to a temporary file -> verify (checker, ONNX Runtime, outputs) -> rename
         -> [latency benchmark] -> report

Passes the user leaves out are filled in with defaults (`l1`,
`select:ratio=0.3,round_to=auto`, which keeps channel counts on ONNX Runtime's CPU block), so
`--pass l2` alone is a complete pipeline. With `verify_each`, the model is checked after
every pass that changed it: exact passes (normalize, cleanup) must keep outputs
identical, pruning passes must keep the model valid; the first pass that breaks it is
named in the error.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import onnx_ir as ir

from graphprune import report as reporting
from graphprune.context import Context
from graphprune.errors import BadInput, VerificationError, first_line
from graphprune.loading import load_model
from graphprune.registry import KINDS, OPT_IN_KINDS, parse_spec
from graphprune.saving import model_bytes, save_model, uses_external_data
from graphprune.verify import (Reference, check_only, index_bounds, input_meta, load_inputs, probe_inputs, session,
                               verify_file)

DEFAULT_SELECT = "select:ratio=0.3,round_to=auto"
DEFAULT_PIPELINE = ["normalize", "l1", DEFAULT_SELECT, "remove", "cleanup"]
_DEFAULT_FOR_KIND = {"normalize": "normalize", "score": "l1", "select": DEFAULT_SELECT,
                     "remove": "remove", "cleanup": "cleanup"}
_EXACT_KINDS = ("normalize", "cleanup")


@dataclass
class Options:
    passes: list[str] = field(default_factory=list)
    output: str | None = None
    dry_run: bool = False
    verify: bool = True
    verify_each: bool = False
    inputs: str | None = None
    eval_data: str | None = None
    bench: bool = False
    bench_repeats: int = 30
    bench_batch: int = 16
    report: str | None = None
    calib: Any = None  # an .npz path, an iterable of input dicts, or a function returning one
    calib_samples: int | None = None
    calib_batch: int = 32
    calib_mask: str | None = None  # an input (e.g. attention_mask) whose zeros mark padding
    quiet: bool = False


def complete_pipeline(specs: list[str]) -> list[str]:
    """Fill in the stages a user left out, keeping the user's passes in their order."""
    if not specs:
        return list(DEFAULT_PIPELINE)
    kinds = [parse_spec(s)[0].kind for s in specs]
    out = list(specs)
    out_kinds = list(kinds)
    for kind in KINDS:
        if kind in OPT_IN_KINDS or kind in out_kinds:
            continue
        rank = KINDS.index(kind)
        pos = next((i for i, k in enumerate(out_kinds) if KINDS.index(k) > rank), len(out))
        out.insert(pos, _DEFAULT_FOR_KIND[kind])
        out_kinds.insert(pos, kind)
    return out


def run_passes(ctx: Context, specs: list[str], check=None) -> list[dict[str, Any]]:
    """Run the passes in order; `check(pass, exact)` is called after each that changed the graph."""
    records = []
    for spec in specs:
        cls, opts = parse_spec(spec)
        p = cls(ctx, **opts)
        if p.kind == "remove":
            ctx.report["groups"] = reporting.describe_groups(ctx)
        t0 = time.perf_counter()
        result = p(ctx.model)
        seconds = time.perf_counter() - t0
        records.append({"pass": p.spec(), "seconds": round(seconds, 4), "modified": result.modified,
                        "stats": p.stats})
        if p.kind == "normalize" and "before" not in ctx.report:
            totals = ctx.analysis().cost.totals()
            ctx.report["before"] = {"params": int(totals.params), "macs": int(totals.macs)}
        if check is not None and result.modified:
            check(p, p.kind in _EXACT_KINDS)
    return records


def prune(model_path: str, opts: Options) -> dict[str, Any]:
    """Load, prune, verify, save and report; returns the report."""
    t_start = time.perf_counter()
    model = load_model(model_path)
    # A model that came with external data leaves with external data (streamed out, and
    # memory-mapped again when verified) whatever its size after pruning.
    external = uses_external_data(model)
    ctx = Context(model, source=model_path)
    if opts.calib_mask is not None and opts.calib is None:
        raise BadInput("--calib-mask needs --calib")
    if opts.calib is not None:
        from graphprune.calibration import Calibration

        ctx.calibration = Calibration(opts.calib, graph_input_meta(model), batch=opts.calib_batch,
                                      limit=opts.calib_samples, quiet=opts.quiet, mask=opts.calib_mask)
    specs = complete_pipeline(opts.passes)
    ctx.report.update({"input": model_path, "output": opts.output, "pipeline": specs})

    # The reference run also proves ORT can run the input; --no-verify (with no
    # --verify-each or --bench) skips it and only checks the result's structure.
    needs_reference = opts.verify or opts.verify_each or opts.bench
    ref = _reference(model_path, opts) if needs_reference else None

    check = _make_check(ref) if opts.verify_each else None
    ctx.report["passes"] = run_passes(ctx, specs, check)
    totals = ctx.analysis().cost.totals()
    ctx.report["after"] = {"params": int(totals.params), "macs": int(totals.macs)}
    ctx.report["pins"] = reporting.pin_summary(ctx)
    ctx.report["before"]["file_bytes"] = model_bytes(model_path)

    if opts.dry_run or opts.output is None:
        ctx.report["seconds"] = round(time.perf_counter() - t_start, 3)
        return ctx.report

    verification: dict[str, Any] = {}

    def _verify(tmp_path: str) -> None:
        if opts.verify:
            verification.update(verify_file(tmp_path, ref))
        else:
            verification.update(check_only(tmp_path))

    save_model(model, opts.output, model_path, before_commit=_verify, external=external)
    ctx.report["verification"] = verification
    ctx.report["after"]["file_bytes"] = model_bytes(opts.output)
    ctx.report["seconds"] = round(time.perf_counter() - t_start, 3)
    if opts.eval_data:
        from graphprune.evaluate import accuracy_pair

        ctx.report["accuracy"] = accuracy_pair(model_path, opts.output, opts.eval_data)
    if opts.bench:
        from graphprune.bench import latency_pair

        bench_feeds = probe_inputs(ref.inputs, batch=opts.bench_batch, bounds=index_bounds(model_path))
        before, after = latency_pair(model_path, opts.output, bench_feeds, repeats=opts.bench_repeats)
        ctx.report["before"]["latency_ms"] = before * 1e3
        ctx.report["after"]["latency_ms"] = after * 1e3
        ctx.report["bench"] = {"batch": int(next(iter(bench_feeds.values())).shape[0]),
                               "repeats": opts.bench_repeats, "statistic": "median, interleaved runs"}
    return ctx.report


_ORT_TYPES = {ir.DataType.FLOAT: "float", ir.DataType.DOUBLE: "double", ir.DataType.FLOAT16: "float16",
              ir.DataType.INT64: "int64", ir.DataType.INT32: "int32", ir.DataType.INT8: "int8",
              ir.DataType.UINT8: "uint8", ir.DataType.BOOL: "bool"}


def graph_input_meta(model: ir.Model):
    """(name, dims, ONNX Runtime type string) of the model's real inputs, from the graph."""
    out = []
    for v in model.graph.inputs:
        if v.name in model.graph.initializers:
            continue
        dims = [d if isinstance(d, int) else (d.value if d is not None else None)
                for d in (v.shape or [])] if v.shape is not None else []
        out.append((v.name, dims, f"tensor({_ORT_TYPES.get(v.dtype, str(v.dtype).lower())})"))
    return out


def _reference(model_path: str, opts: Options) -> Reference:
    """Run the original model once in ONNX Runtime (unoptimized) on the verification
    inputs; its session is dropped before pruning, so it does not hold the weights."""
    try:
        sess = session(model_path, lean=True)
    except Exception as e:  # noqa: BLE001 - ORT raises several types
        raise BadInput(f"{model_path}: ONNX Runtime cannot load the input model ({first_line(e)})") from None
    inputs = input_meta(sess)
    try:
        if opts.inputs:
            feeds, source = load_inputs(opts.inputs, inputs), "--inputs"
        elif opts.eval_data:  # real samples say more than random probes
            feeds, source = _first_rows(load_inputs(opts.eval_data, inputs), inputs), "--eval samples"
        else:
            feeds, source = _calib_feeds(opts.calib, inputs), "--calib samples"
            if feeds is None:
                feeds, source = probe_inputs(inputs, bounds=index_bounds(model_path)), "random probes"
    except BadInput as e:
        raise BadInput(f"{model_path}: {e}") from None
    try:
        outputs = sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"{model_path}: ONNX Runtime cannot run the input model ({first_line(e)})") from None
    return Reference([o.name for o in sess.get_outputs()], inputs, feeds, outputs, source)


def _calib_feeds(calib, inputs) -> dict | None:
    """The first calibration samples (an .npz; a Python iterable may be single-use), or
    None where there is no file or it holds less than the model's fixed batch."""
    from graphprune.calibration import first_samples

    if not isinstance(calib, (str, os.PathLike)):
        return None
    feeds = _first_rows(first_samples(str(calib), 64), inputs)
    fixed = all(not (dims and isinstance(dims[0], int) and dims[0] > 0) or len(feeds[name]) == dims[0]
                for name, dims, _ in inputs)
    return feeds if fixed else None


def _first_rows(feeds: dict, inputs, limit: int = 64) -> dict:
    """The first rows of each input: the declared batch where it is fixed, else `limit`."""
    out = {}
    for name, dims, _ in inputs:
        n = dims[0] if dims and isinstance(dims[0], int) and dims[0] > 0 else limit
        out[name] = feeds[name][:n]
    return out



def _make_check(ref: Reference):
    """After each pass: the model must be valid; an exact pass (normalize, cleanup) must
    also leave the outputs of the step before it unchanged."""
    previous = {"ref": ref}

    def check(p, exact: bool) -> None:
        model = p.ctx.model
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "step.onnx")
            ir_version = model.ir_version
            # Between passes, initializers need not be listed as inputs (IR < 4 wants that
            # only in the final file, which cleanup restores).
            model.ir_version = max(ir_version, 4)
            try:
                save_model(model, path)
            finally:
                model.ir_version = ir_version
            last = previous["ref"]
            try:
                result = verify_file(path, last)
            except VerificationError as e:
                raise VerificationError(f"after pass {p.spec()}: {e}") from None
            scale = 1 + max(float(abs(o).max()) for o in last.outputs)
            if exact and result["max_abs_diff"] > 1e-4 * scale:
                raise VerificationError(
                    f"after pass {p.spec()}: outputs changed by {result['max_abs_diff']:.3g} "
                    "in a pass that must not change them")
            outputs = session(path).run(None, last.feeds)
            previous["ref"] = Reference(last.output_names, last.inputs, last.feeds, outputs)
    return check
