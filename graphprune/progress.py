"""A one-line progress bar on stderr for the long steps (calibration, ablation, refit,
statistics restoration); silent when stderr is not a terminal, in CI (the CI variable is
set) or when quiet."""

from __future__ import annotations

import os
import sys


class Progress:
    def __init__(self, label: str, total: int | None, quiet: bool = False, unit: str = "samples"):
        self.label, self.total, self.done, self.unit = label, total, 0, unit
        self.on = not quiet and sys.stderr.isatty() and not os.environ.get("CI")

    def update(self, n: int) -> None:
        self.done += n
        if not self.on:
            return
        if self.total:
            width = 30
            fill = int(width * min(self.done / self.total, 1.0))
            sys.stderr.write(f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total}")
        else:
            sys.stderr.write(f"\r{self.label} {self.done} {self.unit}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
