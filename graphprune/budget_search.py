"""--find-budget: the smallest model within --tolerance.

A budget the user asked for (or the default, half the MACs) can cost a task more than it
allows (a face detector finding fewer faces). With --find-budget and a --tolerance, a run
outside the tolerance is not the end: the budget is bisected between it and the dense
model (within any tolerance) in a few full runs, and the smallest model found within the
tolerance is written; the report says which budget that is and what every try gave."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any

from graphprune.errors import BadInput, ToleranceError

STEPS = 4


def _budget(specs: list[str]) -> tuple[int, str, float]:
    """(index, key, value) of the select pass's budget."""
    from graphprune.registry import parse_spec

    for i, spec in enumerate(specs):
        cls, opts = parse_spec(spec)
        if cls.kind != "select":
            continue
        for key in ("macs", "params", "ratio"):
            if opts.get(key) is not None:
                return i, key, float(opts[key])
        return i, "ratio", 0.3
    raise BadInput("--find-budget needs a select pass")


def _with(spec: str, key: str, value: float) -> str:
    name, _, rest = spec.partition(":")
    items = [p for p in rest.split(",") if p and not p.startswith(f"{key}=")]
    return f"{name}:{','.join([f'{key}={value:.4g}', *items])}"


def find_budget(model_path: str, opts, run) -> dict[str, Any]:
    """`run(model_path, opts)` prunes once (raising ToleranceError outside tolerance);
    returns the report of the written model."""
    from graphprune.pipeline import complete_pipeline

    if not opts.tolerance:
        raise BadInput("--find-budget needs --tolerance (what the pruned model must keep)")
    specs = complete_pipeline(opts.passes, calibrated=opts.calib is not None)
    index, key, asked = _budget(specs)
    safe = 0.0 if key == "ratio" else 1.0  # ratio: the share removed; macs/params: the share kept

    def attempt(value: float, output: str):
        trial = list(specs)
        trial[index] = _with(specs[index], key, value)
        return run(model_path, dataclasses.replace(opts, passes=trial, output=output, report=None))

    tries = []
    try:
        report = attempt(asked, opts.output)
        tries.append({"budget": f"{key}={asked:.4g}", "within": True})
        report["budget_search"] = {"asked": f"{key}={asked:.4g}", "chosen": f"{key}={asked:.4g}", "tries": tries}
        return report
    except ToleranceError as e:
        tries.append({"budget": f"{key}={asked:.4g}", "within": False, "why": str(e).split(": ", 1)[-1]})
    lo, hi, best = asked, safe, None
    with tempfile.TemporaryDirectory() as tmp:
        for step in range(STEPS):
            mid = (lo + hi) / 2
            try:
                attempt(mid, os.path.join(tmp, f"try{step}.onnx"))
                tries.append({"budget": f"{key}={mid:.4g}", "within": True})
                hi, best = mid, mid
            except ToleranceError as e:
                tries.append({"budget": f"{key}={mid:.4g}", "within": False, "why": str(e).split(": ", 1)[-1]})
                lo = mid
    if best is None:
        raise ToleranceError("--find-budget: no budget tried keeps --tolerance (" +
                             ", ".join(t["budget"] for t in tries) + "); nothing written")
    report = attempt(best, opts.output)
    report["budget_search"] = {"asked": f"{key}={asked:.4g}", "chosen": f"{key}={best:.4g}", "tries": tries}
    return report
