"""Verification of a written model: ONNX checker (path form, works past 2 GB), a load and
a run in ONNX Runtime, unchanged output names and shapes, and each output compared with
the original's by what it is (graphprune.outputs: class scores by agreement and KL,
detection entries by the salient entries kept, images by PSNR, state by relative error),
on real samples where the user gave any and on at least 32 otherwise, run in the model's
own batch size. The result says what it measured: how many samples, from where, and
which outputs are outside tolerance.

The original always runs with graph optimizations disabled, so the comparison is against
what the model file itself says.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import onnx

from graphprune.errors import BadInput, VerificationError, first_line
from graphprune.initializers import take_positions
from graphprune.outputs import classify, compare_output, summary, violations
from graphprune.probes import InputMeta, index_bounds, input_meta, probe_inputs
from graphprune.runtime import session

PROBE_SAMPLES = 32     # random probes when no data is given
SAMPLES = 64           # samples taken from a data file


@dataclass
class Reference:
    """What verification needs of the original model, so its session can be dropped."""

    output_names: list[str]
    inputs: InputMeta
    runs: list[dict[str, np.ndarray]]       # feeds of each run (a batch, or one sample)
    outputs: list[np.ndarray]               # per output: all runs' results stacked
    source: str = "random probes"           # --inputs, --eval, held-out --calib samples, random probes
    samples: int = 0
    kinds: list[str] = field(default_factory=list)
    # KV-cache inputs/outputs the outputs were computed with cut (original name -> axis ->
    # kept positions); the feeds are always the original's.
    interface: dict = field(default_factory=dict)

    @property
    def feeds(self) -> dict[str, np.ndarray]:
        """The first run's feeds (a batch that runs everywhere)."""
        return self.runs[0]


def stack(parts: list[np.ndarray]) -> np.ndarray:
    """Results of several runs as one array: along the first axis when the rest agrees,
    else as rows of the last axis, else flat."""
    if len(parts) == 1:
        return parts[0]
    if all(p.shape[1:] == parts[0].shape[1:] for p in parts) and parts[0].ndim:
        return np.concatenate(parts, axis=0)
    if all(p.ndim and p.shape[-1] == parts[0].shape[-1] for p in parts):
        return np.concatenate([p.reshape(-1, p.shape[-1]) for p in parts], axis=0)
    return np.concatenate([p.ravel() for p in parts])


@dataclass
class Interface:
    """How a pruned model's inputs and outputs stand to the original's: KV-cache tensors cut
    to the kept heads (original name -> axis -> kept positions), and inputs/outputs renamed
    by depth pruning (current name -> original name; a removed layer's cache is gone)."""

    cuts: dict = field(default_factory=dict)
    renamed: dict = field(default_factory=dict)
    dropped: set = field(default_factory=set)  # original names

    @classmethod
    def of(cls, ctx) -> "Interface":
        return cls({n: dict(a) for n, a in ctx.interface.items()}, dict(ctx.renamed), set(ctx.dropped))

    def original(self, name: str) -> str:
        return self.renamed.get(name, name)

    def runs(self, runs: list[dict], names: list[str]) -> list[dict]:
        """The original's feeds as the model with inputs `names` takes them."""
        return [{n: take_positions(feeds[self.original(n)], self.cuts.get(self.original(n), {})) for n in names
                 if self.original(n) in feeds} for feeds in runs]

    def expected(self, ref: Reference, names: list[str]) -> list[np.ndarray]:
        """The reference outputs under the model's output `names`, restricted to the positions
        kept now among those the reference was computed with."""
        index = {n: i for i, n in enumerate(ref.output_names)}
        out = []
        for name in names:
            original = self.original(name)
            base = ref.interface.get(original, {})
            axes = {axis: np.flatnonzero(np.isin(base[axis], kept)) if axis in base else kept
                    for axis, kept in self.cuts.get(original, {}).items()}
            out.append(take_positions(ref.outputs[index[original]], axes))
        return out


def run_all(sess, runs: list[dict]) -> list[np.ndarray]:
    results = [sess.run(None, feeds) for feeds in runs]
    return [stack([r[i] for r in results]) for i in range(len(results[0]))]


def verification_runs(model_path: str, inputs: InputMeta, inputs_file=None, eval_file=None, calib_file=None,
                      holdout: int = 0, batch: int = 16, dims: dict | None = None) -> tuple[list[dict], str, int]:
    """The feeds to verify on and where they come from: --inputs, else the first --eval
    samples, else the calibration file's last `holdout` samples (which calibration does
    not use), else random probes; at least PROBE_SAMPLES samples, one batch at a time."""
    from graphprune.samples import read_runs

    if inputs_file:
        runs, _, n = read_runs(inputs_file, inputs, batch=batch)
        return runs, "--inputs", n
    if eval_file:
        runs, _, n = read_runs(eval_file, inputs, slice(0, SAMPLES), batch=batch, extra_ok=("labels",))
        return runs, "--eval samples", n
    if calib_file and holdout:
        runs, _, n = read_runs(calib_file, inputs, slice(-holdout, None), batch=batch)
        return runs, "held-out --calib samples", n
    fixed = [dims[0] for _, dims, _ in inputs if dims and isinstance(dims[0], int) and dims[0] > 0]
    per_run = min(fixed) if fixed else PROBE_SAMPLES
    bounds = index_bounds(model_path)
    runs = [probe_inputs(inputs, batch=per_run, seed=i, bounds=bounds, dims=dims)
            for i in range(max(1, PROBE_SAMPLES // per_run))]
    return runs, "random probes", per_run * len(runs)


def reference(model_path: str, inputs_file: str | None = None, eval_file: str | None = None,
              calib_file: str | None = None, holdout: int = 0, dims: dict | None = None) -> Reference:
    """Run the original model (unoptimized) on the verification inputs (random probes
    size the symbolic dims named in `dims` so)."""
    try:
        sess = session(model_path, lean=True)
    except Exception as e:  # noqa: BLE001 - ORT raises several types
        raise BadInput(f"{model_path}: ONNX Runtime cannot load the input model ({first_line(e)})") from None
    inputs = input_meta(sess)
    try:
        runs, source, n = verification_runs(model_path, inputs, inputs_file, eval_file, calib_file, holdout,
                                            dims=dims)
    except BadInput as e:
        raise BadInput(f"{model_path}: {e}") from None
    try:
        outputs = run_all(sess, runs)
    except Exception as e:  # noqa: BLE001
        if source == "random probes":
            raise BadInput(f"{model_path}: the model does not run on random probe inputs ({first_line(e)}); "
                           "pass real inputs with --inputs FILE.npz (one array per model input)") from None
        raise BadInput(f"{model_path}: ONNX Runtime cannot run the model on the {source} ({first_line(e)})") from None
    names = [o.name for o in sess.get_outputs()]
    states = {name: tuple(runs[0][name].shape) for name, _, _ in inputs}  # outputs shaped like an input: state
    kinds = [classify(name, out, states) for name, out in zip(names, outputs)]
    return Reference(names, inputs, runs, outputs, source, n, kinds)


def check_only(path: str) -> dict:
    """The ONNX checker alone (for --no-verify)."""
    from graphprune.ort_ops import check_onnx_file

    try:
        check_onnx_file(path)
    except Exception as e:  # noqa: BLE001 - checker errors come in several types
        raise VerificationError(f"the ONNX checker rejects the result: {first_line(e)}") from None
    return {"checker": "passed", "numeric": "skipped"}


def verify_file(path: str, ref: Reference, tolerance: dict | None = None, interface: Interface | None = None) -> dict:
    """Check `path` against the reference run; raise VerificationError if it is broken.
    Returns per-output metrics, the outputs outside `tolerance`, and aggregates.
    `interface`: KV-cache tensors cut to kept heads, or renamed or dropped with removed
    layers: they are fed and compared as the model has them."""
    check_only(path)
    try:
        sess = session(path, optimize=True, lean=True)
    except Exception as e:  # noqa: BLE001
        raise VerificationError(f"ONNX Runtime cannot load the result: {first_line(e)}") from None
    interface = interface or Interface()
    names = [o.name for o in sess.get_outputs()]
    originals = [interface.original(n) for n in names]
    if originals != [n for n in ref.output_names if n not in interface.dropped]:
        raise VerificationError(f"output names changed: {ref.output_names} -> {names}")
    try:
        got = run_all(sess, interface.runs(ref.runs, [i.name for i in sess.get_inputs()]))
    except Exception as e:  # noqa: BLE001
        raise VerificationError(f"ONNX Runtime fails to run the result: {first_line(e)}") from None
    del sess
    expected = interface.expected(ref, names)
    kinds = [ref.kinds[ref.output_names.index(o)] for o in originals]
    for name, a, b in zip(names, expected, got):
        if a.shape != b.shape:
            raise VerificationError(f"output {name!r} changed shape: {list(a.shape)} -> {list(b.shape)}")
    reports = [compare_output(n, k, a, b) for n, k, a, b in zip(names, kinds, expected, got)]
    from graphprune.outputs import DEFAULT_TOLERANCE

    limits = {**DEFAULT_TOLERANCE, **(tolerance or {})}
    top1 = [r.metrics["top1"] for r in reports if "top1" in r.metrics]
    return {
        "checker": "passed", "inputs": ref.source, "samples": ref.samples,
        "outputs": {r.name: {"kind": r.kind, **r.metrics} for r in reports},
        "summary": [summary(r) for r in reports],
        "outside_tolerance": violations(reports, limits),
        "tolerance": limits,
        "max_abs_diff": max((r.metrics.get("max_abs_diff", 0.0) for r in reports), default=0.0),
        "cosine": min((r.metrics["cosine"] for r in reports if "cosine" in r.metrics), default=1.0),
        "top1_agreement": min(top1) if top1 else None,
    }


def step_checker(ref: Reference):
    """For --verify-each: a check run after each pass that changed the model. The model
    must be valid; an exact pass (normalize, cleanup) must also leave the outputs of the
    step before it unchanged. Errors name the pass."""
    from graphprune.saving import save_scratch

    previous = {"ref": ref}

    def check(p, exact: bool) -> None:
        model = p.ctx.model
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "step.onnx")
            save_scratch(model, path)
            last = previous["ref"]
            interface = Interface.of(p.ctx)
            try:
                result = verify_file(path, last, interface=interface)
            except VerificationError as e:
                raise VerificationError(f"after pass {p.spec()}: {e}") from None
            scale = 1 + max(float(abs(o).max()) if o.dtype.kind == "f" and o.size else 0.0 for o in last.outputs)
            if exact and result["max_abs_diff"] > 1e-4 * scale:
                raise VerificationError(
                    f"after pass {p.spec()}: outputs changed by {result['max_abs_diff']:.3g} "
                    "in a pass that must not change them")
            sess = session(path)
            got = dict(zip([interface.original(o.name) for o in sess.get_outputs()],
                           run_all(sess, interface.runs(last.runs, [i.name for i in sess.get_inputs()]))))
            # Outputs gone with a removed layer keep their last values (never compared again).
            outputs = [got.get(n, old) for n, old in zip(last.output_names, last.outputs)]
            previous["ref"] = Reference(last.output_names, last.inputs, last.runs, outputs, last.source,
                                        last.samples, last.kinds, dict(interface.cuts))
    return check
