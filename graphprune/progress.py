"""Progress of the long steps (calibration, ablation, refit, statistics restoration) on
stderr: a one-line bar on a terminal; off a terminal (a log, a pipe) a plain line at most
every LOG_EVERY seconds once the step has run that long; nothing in CI (the CI variable is
set) or when quiet."""

from __future__ import annotations

import os
import sys
import time

LOG_EVERY = 10.0


class Progress:
    def __init__(self, label: str, total: int | None, quiet: bool = False, unit: str = "samples"):
        self.label, self.total, self.done, self.unit = label, total, 0, unit
        shown = not quiet and not os.environ.get("CI")
        self.on = shown and sys.stderr.isatty()
        self.log = shown and not self.on
        self.start = self.last = time.monotonic()

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total else f"{self.done} {self.unit}"

    def update(self, n: int) -> None:
        self.done += n
        if self.log:
            now = time.monotonic()
            if now - self.last >= LOG_EVERY:
                self.last = now
                sys.stderr.write(f"{self.label}: {self._count()} {self.unit} after {now - self.start:.0f} s\n")
                sys.stderr.flush()
            return
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
