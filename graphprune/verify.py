"""Verification of a written model: ONNX checker (path form, works past 2 GB), a load
and a run in ONNX Runtime, unchanged output names and shapes, and a numeric comparison
with the original (max abs diff, cosine similarity, top-1 agreement) on probe inputs.

The original always runs with graph optimizations disabled, so the comparison is
against what the model file itself says.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import onnx

from graphprune.errors import BadInput, VerificationError, first_line
from graphprune.probes import (InputMeta, calib_feeds, first_rows, index_bounds, input_meta, load_inputs,
                               probe_inputs)
from graphprune.runtime import session


@dataclass
class Reference:
    """What verification needs of the original model, so its session can be dropped."""

    output_names: list[str]
    inputs: InputMeta
    feeds: dict[str, np.ndarray]
    outputs: list[np.ndarray]
    source: str = "random probes"  # what the feeds are: --inputs, --eval or --calib samples


def reference(model_path: str, inputs_file: str | None = None, eval_file: str | None = None,
              calib=None) -> Reference:
    """Run the original model once in ONNX Runtime (unoptimized) on the verification
    inputs: --inputs, else the first --eval samples, else the first --calib samples, else
    random probes. Its session is dropped before pruning, so it does not hold the weights."""
    try:
        sess = session(model_path, lean=True)
    except Exception as e:  # noqa: BLE001 - ORT raises several types
        raise BadInput(f"{model_path}: ONNX Runtime cannot load the input model ({first_line(e)})") from None
    inputs = input_meta(sess)
    try:
        if inputs_file:
            feeds, source = load_inputs(inputs_file, inputs), "--inputs"
        elif eval_file:  # real samples say more than random probes
            feeds, source = first_rows(load_inputs(eval_file, inputs), inputs), "--eval samples"
        else:
            feeds, source = calib_feeds(calib, inputs), "--calib samples"
            if feeds is None:
                feeds, source = probe_inputs(inputs, bounds=index_bounds(model_path)), "random probes"
    except BadInput as e:
        raise BadInput(f"{model_path}: {e}") from None
    try:
        outputs = sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001
        raise BadInput(f"{model_path}: ONNX Runtime cannot run the input model ({first_line(e)})") from None
    return Reference([o.name for o in sess.get_outputs()], inputs, feeds, outputs, source)


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


def step_checker(ref: Reference):
    """For --verify-each: a check run after each pass that changed the model. The model
    must be valid; an exact pass (normalize, cleanup) must also leave the outputs of the
    step before it unchanged. Errors name the pass."""
    from graphprune.saving import save_model

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
