"""What runs when you type `graphprune model.onnx --pass ...`, top to bottom.

    load (checked) -> normalize -> [analysis options] -> score... -> select -> [compensate...]
         -> remove -> [repair...] -> cleanup
         -> save to a temporary file -> verify (checker, ONNX Runtime, outputs) -> rename
         -> [accuracy] -> [latency benchmark] -> report

The passes run in the order given and printed; an order that breaks the kinds' order
(registry.KINDS) is refused. Stages the user leaves out are filled in with defaults, and
the defaults use what the user gave: without calibration data, `l1` and half the MACs,
the same fraction of every group (channel counts kept on ONNX Runtime's CPU block); with
`--calib`, the calibration pipeline (FLAP-allocated fluctuation scores and the sequential
least-squares refit of the pruned layers) at the same budget. With `verify_each`,
the model is checked after every pass that changed it: exact passes (normalize, cleanup)
must keep outputs identical, others must keep the model valid; the first pass that
breaks it is named in the error.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

from graphprune import checks, genai_folder, report as reporting
from graphprune.analysis.cache_io import probe_dims
from graphprune.analysis.cost import stored_params
from graphprune.context import Context
from graphprune.errors import BadInput
from graphprune.loading import load_model
from graphprune.probes import graph_input_meta, index_bounds, probe_inputs
from graphprune.registry import KINDS, OPT_IN_KINDS, check_order, parse_spec
from graphprune.saving import copy_model, model_bytes, save_model, uses_external_data
from graphprune.verify import reference, step_checker

# The default of each stage a pipeline leaves out. The default budget is half the MACs
# (as far as the model allows: strict=false warns instead of refusing), with channel
# counts kept on ONNX Runtime's CPU block. Without calibration data: magnitude scores,
# the same fraction of every group; compensation and repair are opt-in.
DATA_FREE_DEFAULTS = {"normalize": "normalize", "score": "l1",
                      "select": "select:macs=0.5,round_to=auto,strict=false", "remove": "remove", "cleanup": "cleanup"}
# With --calib and no criterion named: the calibration pipeline that ranked best on
# development data (tools/bench_defaults.py; tools/README.md, "Defaults"): FLAP's
# fluctuation criterion and allocation at the same budget, then the sequential
# least-squares refit of the pruned layers. The recovery stages (compensate, repair) are
# filled in only when the user named none. A pipeline that names its criterion is the
# user's own: its other stages get the data-free defaults, and no recovery unless named.
CALIBRATION_DEFAULTS = {**DATA_FREE_DEFAULTS, "score": "wifv:normalize=standardize",
                        "select": "select:macs=0.5,scope=global,round_to=auto,strict=false", "repair": "refit"}
_EXACT_KINDS = ("normalize", "cleanup")
_RECOVERY_KINDS = ("compensate", "repair")


@dataclass
class Options:
    """Everything the command line can ask for (see `graphprune --help`)."""

    passes: list[str] = field(default_factory=list)
    output: str | None = None
    dry_run: bool = False
    verify: bool = True
    verify_each: bool = False
    inputs: str | None = None
    eval_data: str | None = None
    eval_output: str | None = None   # the class output for --eval (found when not given)
    eval_metric: str | None = None   # MODULE:FUNCTION or FILE.py:FUNCTION, a task metric of the model file
    tolerance: str | None = None     # e.g. "top1=0.95,psnr=30": outside it, nothing is written
    shapes: list[str] = field(default_factory=list)  # "input=1,3,640,640": the shape MACs are counted at
    find_budget: bool = False        # outside --tolerance: bisect the budget to the smallest model within it
    keep_dense: bool = False         # keep the dense model after remove (graphprune.torch reads it)
    keep_io: bool = False            # keep every graph input/output whole (a KV cache's heads too)
    bench: bool = False
    bench_repeats: int = 30
    bench_batch: int = 16
    bench_seconds: float = 60.0  # fewer runs where 30 would take longer
    bench_threads: int = 0  # ONNX Runtime intra-op threads for --bench and latency targets (0: its default)
    ray: str | None = None  # a Ray address (or auto): calibration statistics sharded over its workers
    ray_shards: int | None = None  # default: the cluster's CPUs
    latency_on: str | None = None  # a Ray resource: --bench and latency targets measured on the node declaring it
    stats_cache: dict | None = None  # calibration statistics shared between runs on the same files (sweep)
    report: str | None = None  # also write the report as JSON here
    calib: Any = None  # an .npz path, an iterable of input dicts, or a function returning one
    calib_samples: int | None = None
    calib_batch: int = 32
    calib_mask: str | None = None  # an input (e.g. attention_mask) whose zeros mark padding
    quiet: bool = False


def complete_pipeline(specs: list[str], calibrated: bool = False) -> list[str]:
    """Check the user's order and fill in the stages left out, keeping the user's passes
    in their order. `calibrated`: calibration data is at hand, so the defaults use it
    (unless the user named a criterion)."""
    check_order(specs)
    out = list(specs)
    kinds = [parse_spec(s)[0].kind for s in specs]
    defaults = CALIBRATION_DEFAULTS if calibrated and "score" not in kinds else DATA_FREE_DEFAULTS
    if "depth" in kinds and not {"score", "select"} & set(kinds):
        # Depth pruning alone: widths stay (no default criterion or budget is filled in).
        defaults = {k: v for k, v in defaults.items() if k not in ("score", "select", "repair")}
    recovery_named = any(k in _RECOVERY_KINDS for k in kinds)
    for kind in KINDS:
        if kind in kinds or kind not in defaults:
            continue
        if kind in OPT_IN_KINDS and (kind not in _RECOVERY_KINDS or recovery_named):
            continue
        rank = KINDS.index(kind)
        pos = next((i for i, k in enumerate(kinds) if KINDS.index(k) > rank), len(out))
        out.insert(pos, defaults[kind])
        kinds.insert(pos, kind)
    return out


def build_passes(ctx: Context, specs: list[str]) -> list:
    """The pass objects of a pipeline, bound to `ctx` (usable in an onnx-ir PassManager)."""
    check_order(specs)
    passes = []
    for spec in specs:
        cls, opts = parse_spec(spec)
        passes.append(cls(ctx, **opts))
    ctx.keep_dense = ctx.keep_dense or any(p.kind == "repair" for p in passes)
    return passes


def run_passes(ctx: Context, specs: list[str], check=None) -> list[dict[str, Any]]:
    """Run the passes in order; `check(pass, exact)` is called after each that changed the
    graph. Returns one record per pass: its spec, time, whether it changed the graph, and
    its own statistics."""
    records = []
    state: list[str] = []  # what the statistics of the current graph depend on (Context.share_stats)
    for p in build_passes(ctx, specs):
        if p.kind == "remove":
            ctx.report["groups"] = reporting.describe_groups(ctx)
        ctx.share_stats(tuple(state))
        t0 = time.perf_counter()
        result = p(ctx.model)
        seconds = time.perf_counter() - t0
        records.append({"pass": p.spec(), "kind": p.kind, "seconds": round(seconds, 4),
                        "modified": result.modified, "stats": p.stats})
        # Statistics depend on the graph alone: until remove, on the passes that changed it;
        # from remove on, on every pass so far (scores and budget decided the plan).
        if result.modified:
            removed = any(r["kind"] == "remove" for r in records)  # this pass included
            state = [r["pass"] for r in records] if removed else [*state, p.spec()]
        if p.kind == "normalize" and "macs" not in ctx.report.get("before", {}):
            totals = ctx.analysis().cost.totals()
            ctx.report.setdefault("before", {}).update({"params": stored_params(ctx.model), "macs": int(totals.macs),
                                                        "params_analysed": int(totals.params)})
        if check is not None and result.modified:
            check(p, p.kind in _EXACT_KINDS)
    return records


def prune(model_path: str | os.PathLike, opts: Options | None = None, **options: Any) -> dict[str, Any]:
    """Load, prune, verify, save and report; returns the report (and writes it to
    `report=` when given). Options come as an `Options`, as keywords, or both (keywords
    win): `prune("m.onnx", output="small.onnx", passes=["l2", "select:macs=0.5"])`."""
    opts = dataclasses.replace(opts or Options(), **options)
    model_path = os.fspath(model_path)
    if opts.output is not None:
        from graphprune.saving import check_output_path

        check_output_path(opts.output, model_path)
    if opts.find_budget and opts.output:
        from graphprune.budget_search import find_budget

        result = find_budget(model_path, opts, _run_released)
    else:
        result = _run_released(model_path, opts)
    if opts.report:
        reporting.write_json(result, opts.report)
    return result


def _run_released(model_path: str, opts: Options) -> dict:
    try:
        return run(model_path, opts).report
    finally:
        if opts.ray:
            from graphprune.cluster import release

            release()


def run(model_path: str, opts: Options) -> Context:
    """prune()'s work; returns the context (the pruned model, what was removed, the
    report), which the PyTorch frontend reads."""
    t_start = time.perf_counter()
    model = load_model(model_path)
    # A model that came with external data leaves with external data (streamed out, and
    # memory-mapped again when verified) whatever its size after pruning.
    external = uses_external_data(model)
    ctx = Context(model, source=model_path, quiet=opts.quiet, keep_dense=opts.keep_dense)
    if opts.keep_io:
        ctx.flow_options["keep_io"] = True
    genai = genai_folder.config_beside(model_path) if opts.output and not opts.dry_run else None
    if genai:
        genai_folder.check_destination(genai, opts.output)
    if opts.stats_cache is not None and opts.calib is not None and isinstance(opts.calib, (str, os.PathLike)):
        st, sc = os.stat(model_path), os.stat(opts.calib)
        key = (os.path.abspath(model_path), st.st_mtime_ns, st.st_size, os.path.abspath(opts.calib), sc.st_mtime_ns,
               sc.st_size, opts.calib_samples,
               opts.calib_batch, opts.calib_mask, opts.inputs, opts.eval_data, opts.verify)
        ctx.shared_stats = opts.stats_cache.setdefault(key, {})
    if opts.calib_mask is not None and opts.calib is None:
        raise BadInput("--calib-mask needs --calib")
    # Verification data never overlaps calibration data: without --inputs/--eval, the
    # calibration file's last samples are held out for verification.
    holdout = checks.calib_holdout(opts.calib, opts.inputs, opts.eval_data) if opts.verify else 0
    if opts.calib is not None:
        from graphprune.calibration import Calibration

        ctx.calibration = Calibration(opts.calib, graph_input_meta(model), batch=opts.calib_batch,
                                      limit=opts.calib_samples, quiet=opts.quiet, mask=opts.calib_mask,
                                      holdout=holdout)
        ctx.calibration.free_batch_if_safe(model)
        ctx.calibration.ray, ctx.calibration.ray_shards = opts.ray, opts.ray_shards
    if opts.ray or opts.latency_on:
        from graphprune.cluster import connect

        connect(opts.ray or "auto")
    specs = complete_pipeline(opts.passes, calibrated=ctx.calibration is not None)
    ctx.report.update({"input": model_path, "output": opts.output, "pipeline": specs})

    # The reference run also proves ORT can run the input; --no-verify (with no
    # --verify-each or --bench) skips it and only checks the result's structure.
    latency_target = any(parse_spec(s)[1].get(k) is not None for s in specs for k in ("latency", "latency_ms"))
    needs_reference = opts.verify or opts.verify_each or opts.bench or latency_target
    dims = probe_dims(model)  # a decoder's cache lengths and head size, for random probes
    ref = reference(model_path, opts.inputs, opts.eval_data, opts.calib, holdout, dims) if needs_reference else None
    ctx.deploy_shapes = _deploy_shapes(ctx, opts, ref)
    ctx.reference = ref
    if latency_target or opts.bench:
        from graphprune.latency import LatencySettings

        ctx.latency = LatencySettings(probe_inputs(ref.inputs, batch=opts.bench_batch, bounds=index_bounds(model_path),
                                                   shapes=ctx.deploy_shapes, dims=dims), threads=opts.bench_threads,
                                      repeats=opts.bench_repeats, budget_s=opts.bench_seconds,
                                      resource=opts.latency_on)
    checker = checks.Checker(ref, model_path, opts.verify, opts.tolerance, opts.eval_metric)

    ctx.report["passes"] = run_passes(ctx, specs, step_checker(ref) if opts.verify_each else None)
    _warn_quantized(ctx)
    depth = any(r["modified"] for r in ctx.report["passes"] if r["kind"] == "depth")
    unchanged = ctx.removal is not None and not ctx.removal.plan and not external and not depth
    if unchanged:
        # Nothing was removed: what is written is the input file, not a normalized copy
        # with its annotations (which would only be a larger file).
        model = load_model(model_path)
        ctx.report["unchanged"] = True
    totals = ctx.analysis().cost.totals()
    ctx.report["after"] = {"params": stored_params(model), "macs": int(totals.macs), "params_analysed": int(totals.params)}
    ctx.report["pins"] = reporting.pin_summary(ctx)
    ctx.report["before"]["file_bytes"] = model_bytes(model_path)

    if opts.dry_run or opts.output is None:
        ctx.report["seconds"] = round(time.perf_counter() - t_start, 3)
        return ctx

    from graphprune.verify import Interface

    checker.interface = Interface.of(ctx)
    genai_config = genai_folder.updated_config(genai, model) if genai else None
    if unchanged:
        copy_model(model_path, opts.output, before_commit=checker)
    else:
        save_model(model, opts.output, model_path, before_commit=checker, external=external)
    ctx.report["verification"] = checker.result
    if genai:
        ctx.report["genai_folder"] = genai_folder.write_folder(genai, genai_config, opts.output)
    for line in checker.result.get("outside_tolerance", []):
        ctx.warn(f"{line} (past the default tolerance; --tolerance makes this an error)")
    ctx.report["after"]["file_bytes"] = model_bytes(opts.output)
    ctx.report["seconds"] = round(time.perf_counter() - t_start, 3)
    if opts.eval_data:
        from graphprune.evaluate import accuracy_pair

        ctx.report["accuracy"] = accuracy_pair(model_path, opts.output, opts.eval_data, opts.eval_output)
    if opts.bench:
        b = ctx.latency.measure("bench", [model_path, opts.output], ctx.latency.feeds, opts.bench_repeats,
                                opts.bench_seconds, opts.quiet, threads=opts.bench_threads)
        # What pruning did is measured against the normalized dense model; what normalization
        # alone did (original -> normalized) is reported beside it.
        ctx.report["before"]["latency_ms"] = b["normalized"]["median"] * 1e3
        ctx.report["after"]["latency_ms"] = b["pruned"]["median"] * 1e3
        ctx.report["bench"] = {"batch": opts.bench_batch, "runs": b["pruned"]["runs"], "inputs": b["inputs"],
                               "settings": ctx.latency.describe(),
                               "statistic": "median of interleaved runs; spread = 25th..75th percentile",
                               **{k: {s: v * 1e3 if s != "runs" else v for s, v in b[k].items()}
                                  for k in ("original", "normalized", "pruned")},
                               "nodes": b["nodes"]}
    return ctx


def _warn_quantized(ctx: Context) -> None:
    from graphprune.analysis.rules.quantized import QUANTIZED_OPS

    ops = sorted({n.op_type for n in ctx.model.graph if n.op_type in QUANTIZED_OPS})
    if ops:
        ctx.warn(f"the model is quantized ({', '.join(ops[:4])}{', ...' if len(ops) > 4 else ''}): its quantized "
                 "sections are pinned; prune the float model, then quantize it again")


def _deploy_shapes(ctx: Context, opts: Options, ref) -> dict | None:
    """The shape MACs are counted at: --shape, else the user's samples where the model's
    sizes are symbolic; a warning names the sizes still symbolic."""
    from graphprune.analysis import deploy_shape

    shapes = deploy_shape.parse_shapes(opts.shapes, ctx.model)
    if deploy_shape.unresolved(ctx.model, shapes) and ref is not None and ref.source != "random probes":
        shapes = {**deploy_shape.shapes_from_samples(ref.runs[0], ctx.model), **shapes}
    left = deploy_shape.unresolved(ctx.model, shapes)
    if left:
        ctx.warn(f"MACs count the symbolic sizes {', '.join(left)} as 1: give the deployment shape with "
                 "--shape NAME=D0,D1,... (or real samples with --calib/--inputs/--eval)")
    if shapes:
        ctx.report["cost_shape"] = shapes
    return shapes or None
