"""What is checked of a pruned model before it is committed: the structural and numeric
verification against the original (graphprune.verify), the user's task metric, and the
tolerance. With `--tolerance` a result outside it is not written (exit code 3); without,
the default thresholds only warn."""

from __future__ import annotations

from typing import Any

from graphprune.errors import ToleranceError
from graphprune.outputs import parse_tolerance
from graphprune.verify import check_only, verify_file

SAMPLES_HELD_OUT = 64


def calib_holdout(calib, inputs_file, eval_file) -> int:
    """How many of a calibration file's last samples to keep for verification: none when
    --inputs or --eval give verification data, or when the file is small."""
    import os

    from graphprune.samples import sample_count

    if inputs_file or eval_file or not isinstance(calib, (str, os.PathLike)):
        return 0
    n = sample_count(str(calib))
    return min(SAMPLES_HELD_OUT, n // 4) if n >= 16 else 0


class Checker:
    """Called on the written temporary file; fills `result` and raises to abandon it."""

    def __init__(self, ref, model_path: str, verify: bool, tolerance: str | None, metric: str | None):
        self.ref, self.verify = ref, verify
        self.explicit = parse_tolerance(tolerance)
        self.metric_fn = None
        self.result: dict[str, Any] = {}
        self.interface = None  # verify.Interface: KV-cache tensors cut, renamed or dropped
        if metric:
            from graphprune import task_metric

            self.metric_fn = task_metric.load(metric)
            self.metric_before = task_metric.measure(self.metric_fn, model_path)

    def __call__(self, tmp_path: str) -> None:
        self.result.update(verify_file(tmp_path, self.ref, self.explicit, self.interface) if self.verify else check_only(tmp_path))
        outside = list(self.result.get("outside_tolerance", []))
        if self.metric_fn is not None:
            from graphprune import task_metric

            after = task_metric.measure(self.metric_fn, tmp_path)
            kept = task_metric.retention(self.metric_before, after)
            self.result["metric"] = {"before": self.metric_before, "after": after, "retention": kept}
            limit = self.explicit.get("metric", self.result.get("tolerance", {}).get("metric", 0.9))
            if kept < limit:
                outside.append(f"task metric {next(iter(after))}: kept {kept * 100:.1f}% < {limit * 100:.1f}%")
            self.result["outside_tolerance"] = outside
        if self.explicit and outside:
            raise ToleranceError("outside --tolerance, nothing written: " + "; ".join(outside) +
                                 " (--find-budget searches for the smallest model within it)")
