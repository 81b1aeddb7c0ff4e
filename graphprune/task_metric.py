"""A task metric of the user's own, for models whose outputs no generic comparison can
judge (a detector's found faces, a segmenter's IoU): `--eval-metric MODULE:FUNCTION` or
`--eval-metric path/to/file.py:FUNCTION`. The function takes the path of an ONNX model and
returns a number (higher is better) or a dict of numbers whose first entry is the one
that counts; graphprune calls it on the original and on the pruned model and reports both,
and `--tolerance metric=0.9` requires the pruned model to keep 90% of it."""

from __future__ import annotations

import importlib
import importlib.util
import os

from graphprune.errors import BadInput, first_line


def load(spec: str):
    module_name, sep, func = spec.rpartition(":")
    if not sep or not module_name or not func:
        raise BadInput(f"--eval-metric: {spec!r} is not MODULE:FUNCTION or FILE.py:FUNCTION")
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise BadInput(f"--eval-metric: no file {module_name}")
            mspec = importlib.util.spec_from_file_location("graphprune_user_metric", module_name)
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code
        raise BadInput(f"--eval-metric: cannot load {module_name} ({type(e).__name__}: {first_line(e)})") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise BadInput(f"--eval-metric: {module_name} has no function {func!r}")
    return fn


def measure(fn, path: str) -> dict[str, float]:
    try:
        value = fn(path)
    except Exception as e:  # noqa: BLE001 - the user's code
        raise BadInput(f"--eval-metric failed on {os.path.basename(path)}: {type(e).__name__}: {first_line(e)}") from None
    if isinstance(value, dict):
        out = {str(k): float(v) for k, v in value.items()}
    else:
        out = {"metric": float(value)}
    if not out:
        raise BadInput("--eval-metric returned an empty dict")
    return out


def retention(before: dict[str, float], after: dict[str, float]) -> float:
    """The pruned model's share of the first metric (1.0 where the original scores 0)."""
    key = next(iter(before))
    b, a = before[key], after[key]
    return a / b if b else (1.0 if a >= b else 0.0)
