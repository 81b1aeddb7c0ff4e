"""graphprune MODEL -o OUT [--pass NAME[:key=value,...]]...
graphprune calib MODEL -o calib.npz (--images DIR | --text FILE | --audio DIR | --arrays ...)
graphprune sweep MODEL -o DIR --criteria l2,wifv+refit --budgets macs=0.67,0.5,0.33 [--eval DATA.npz]

Exit codes: 0 success, 2 bad input or usage, 3 a result outside --tolerance (not written),
1 internal error (or a result that failed verification, which is then not written).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from graphprune import __version__
from graphprune.errors import BadInput, GraphpruneError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="graphprune",
        description="Structurally prune an ONNX model: fewer channels, same interface, verified.",
        epilog="Default pipeline: normalize, l1, select:macs=0.5,round_to=auto,strict=false, remove, cleanup; "
               "with --calib: normalize, wifv:normalize=standardize, select:macs=0.5,scope=global,round_to=auto,"
               "strict=false, remove, refit, cleanup. Stages left out of --pass are "
               "filled in (with --calib and a criterion named, the data-free defaults). "
               "Example: graphprune m.onnx -o small.onnx --calib data.npz --pass select:macs=0.5. "
               "Calibration files: graphprune calib MODEL -o data.npz --images DIR (see graphprune calib -h). "
               "Criteria x budgets: graphprune sweep MODEL -o DIR (see graphprune sweep -h).",
    )
    p.add_argument("model", nargs="?", help="input ONNX file (never modified)")
    p.add_argument("-o", "--output", help="where to write the pruned model")
    p.add_argument("--pass", dest="passes", action="append", default=[], metavar="NAME[:k=v,...]",
                   help="add a pass to the pipeline (repeatable); see --list-passes")
    p.add_argument("--list-passes", action="store_true", help="list the passes and their options")
    p.add_argument("--dry-run", action="store_true", help="plan and report; write no model")
    p.add_argument("--report", metavar="FILE.json", help="write the full report as JSON")
    p.add_argument("--bench", action="store_true", help="measure ONNX Runtime latency before/after")
    p.add_argument("--bench-repeats", type=int, default=30, metavar="N")
    p.add_argument("--bench-batch", type=int, default=16, metavar="N",
                   help="batch size for --bench and select:latency= where the model's batch axis is symbolic "
                        "(default 16)")
    p.add_argument("--bench-threads", type=int, default=0, metavar="N",
                   help="ONNX Runtime intra-op threads for --bench and select:latency= (default: ONNX Runtime's)")
    p.add_argument("--ray", metavar="ADDRESS", help="shard calibration statistics over a Ray cluster's workers "
                   "(auto: a running cluster, else a local one; needs graphprune[ray])")
    p.add_argument("--ray-shards", type=int, metavar="N", help="calibration shards (default: the cluster's CPUs)")
    p.add_argument("--latency-on", metavar="RESOURCE", help="measure --bench and select:latency= on the Ray node "
                   "that declares this custom resource (with --ray)")
    p.add_argument("--plot-widths", metavar="FILE.png", help="draw the kept width of every prunable group "
                   "(PNG or SVG; needs graphprune[plot])")
    p.add_argument("--inputs", metavar="FILE.npz", help="inputs for verification (default: random probes)")
    p.add_argument("--eval", dest="eval_data", metavar="FILE.npz",
                   help="labelled data (model inputs + 'labels'): report top-1 before/after")
    p.add_argument("--eval-output", metavar="NAME", help="the output holding the class scores or labels for --eval "
                   "(found when there is one)")
    p.add_argument("--eval-metric", metavar="MODULE:FUNCTION",
                   help="a task metric: FUNCTION(model_path) -> number (higher is better), from a module or a "
                        "FILE.py; reported before/after, and checked by --tolerance metric=")
    p.add_argument("--find-budget", action="store_true",
                   help="with --tolerance: where the budget asked for is outside it, bisect to the smallest model "
                        "within it (a few full runs) and write that one")
    p.add_argument("--shape", dest="shapes", action="append", default=[], metavar="INPUT=D0,D1,...",
                   help="the deployment shape of an input (repeatable): MACs, budgets and --bench use it where the "
                        "model's sizes are symbolic")
    p.add_argument("--tolerance", metavar="KEY=VALUE,...",
                   help="limits the pruned model must keep (top1, top5, agreement, salient, psnr, cosine: at least; "
                        "rel, kl: at most; metric: share of --eval-metric kept); outside them nothing is written "
                        "and the exit code is 3")
    p.add_argument("--calib", metavar="FILE.npz",
                   help="calibration data for activation criteria and compensation (one array per "
                        "model input, first axis = samples)")
    p.add_argument("--calib-samples", type=int, metavar="N", help="use only the first N calibration samples")
    p.add_argument("--calib-batch", type=int, default=32, metavar="N", help="calibration batch size (default 32)")
    p.add_argument("--calib-mask", metavar="INPUT",
                   help="a model input (e.g. attention_mask) whose zeros mark padding: those positions are left "
                        "out of the activation statistics")
    p.add_argument("--keep-io", action="store_true",
                   help="keep every graph input and output whole: a decoder's KV-cache tensors then keep their "
                        "heads (by default they shrink with the heads they carry)")
    p.add_argument("--verify-each", action="store_true", help="verify after every pass; name the one that breaks")
    p.add_argument("--no-verify", action="store_true", help="skip the numeric comparison (the checker still runs)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the per-group table")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--version", action="version", version=f"graphprune {__version__}")
    return p


def list_passes() -> str:
    from graphprune.registry import KINDS, registered

    lines = ["Kinds, in the order a pipeline runs them: " + ", ".join(KINDS) + "."]
    passes = registered()
    for kind in KINDS:
        for name, cls in sorted(passes.items()):
            if cls.kind != kind:
                continue
            opts = ", ".join(f"{k}={v}" for k, v in cls.options.items()) or "-"
            lines.append(f"{name:12} [{kind}] {cls.summary}\n{'':14}options: {opts}")
    return "\n".join(lines)


def _terminate(signum, frame):
    # Unwind like Ctrl-C so that temporary files are removed and nothing half-written stays.
    raise KeyboardInterrupt


def entry() -> int:
    """The process entry (console script, `python -m graphprune`). Once the run is over,
    a signal ends the process at once: raised as KeyboardInterrupt inside Python's
    shutdown it would print a traceback, and the output is already complete or absent."""
    try:
        code = main()
        sys.stdout.flush()
    except KeyboardInterrupt:  # arrived between main's handler and here
        code = 130
    except BrokenPipeError:  # the reader (`| head`) left: what was asked is done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return code


def main(argv: list[str] | None = None) -> int:
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        return _main(argv)
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["calib"]:  # graphprune calib MODEL -o calib.npz --images DIR ...
            from graphprune.make_calib import main as calib_main

            return calib_main(argv[1:])
        if argv[:1] == ["sweep"]:  # graphprune sweep MODEL -o DIR --criteria ... --budgets ...
            from graphprune.sweep import main as sweep_main

            return sweep_main(argv[1:])
        args = _parser().parse_args(argv)
        return _run(args)
    except GraphpruneError as e:
        print(f"graphprune: error: {_one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("graphprune: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # the reader of stdout left; entry() ends quietly
    except Exception as e:  # noqa: BLE001 - anything else is our bug; say so on one line
        if os.environ.get("GRAPHPRUNE_DEBUG"):
            raise
        print(f"graphprune: internal error: {type(e).__name__}: {_one_line(e)} "
              "(set GRAPHPRUNE_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:500]


def _run(args) -> int:
    from graphprune.pipeline import Options, prune

    if args.list_passes:
        print(list_passes())
        return 0
    if not args.model:
        raise BadInput("no model given (usage: graphprune MODEL -o OUT [--pass ...])")
    if not args.output and not args.dry_run:
        raise BadInput("no output given: use -o OUT, or --dry-run to only plan")
    if args.plot_widths and (not args.plot_widths.lower().endswith((".png", ".svg")) or
                             not os.path.isdir(os.path.dirname(os.path.abspath(args.plot_widths)))):
        raise BadInput(f"--plot-widths {args.plot_widths!r}: give a .png or .svg file in an existing folder")
    if args.plot_widths:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise BadInput("--plot-widths needs matplotlib: pip install 'graphprune[plot]'")
    opts = Options(passes=args.passes, output=None if args.dry_run else args.output,
                   dry_run=args.dry_run, verify=not args.no_verify, verify_each=args.verify_each,
                   inputs=args.inputs, eval_data=args.eval_data, bench=args.bench,
                   calib=args.calib, calib_samples=args.calib_samples, calib_batch=args.calib_batch,
                   calib_mask=args.calib_mask, quiet=args.quiet,
                   bench_repeats=args.bench_repeats, bench_batch=args.bench_batch,
                   bench_threads=args.bench_threads, ray=args.ray, ray_shards=args.ray_shards,
                   latency_on=args.latency_on,
                   report=args.report, eval_output=args.eval_output, eval_metric=args.eval_metric,
                   tolerance=args.tolerance, shapes=args.shapes, find_budget=args.find_budget,
                   keep_io=args.keep_io)
    report = prune(args.model, opts)
    for line in report.get("warnings", []):
        print(f"graphprune: warning: {line}", file=sys.stderr)
    if not args.quiet:
        from graphprune.console import print_report

        print_report(report, args.verbose)
    if args.plot_widths:
        from graphprune.plots import draw_widths

        draw_widths(report, args.plot_widths)
        if not args.quiet:
            print(f"wrote {args.plot_widths}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
