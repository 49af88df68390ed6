"""What ``fit`` shows while it runs: with ``verbose=1`` a line per epoch, with ``verbose=2``
also a progress bar within each epoch, fed from the training loop's periodic checks."""

from __future__ import annotations

import numbers
import sys
import time
from typing import Any, TextIO

import numpy as np


def verbosity(verbose: object) -> int:
    """``verbose`` as 0, 1 or 2 (False/True are 0/1)."""
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if type(verbose) is not int and not isinstance(verbose, numbers.Integral):
        raise TypeError(f"verbose must be 0, 1, 2 or a bool, got {verbose!r}")
    level = int(verbose)
    if not 0 <= level <= 2:
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose}")
    return level


def duration(seconds: float) -> str:
    """A time to three significant figures in s, ms or us (a digits epoch takes 4 ms)."""
    if seconds >= 0.9995:  # (what .3g would round up to 1000)
        return f"{seconds:.3f}s"
    if seconds >= 0.9995e-3:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds * 1e6:.3g}us"


def epoch_line(epoch: int, epochs: int, loss: float, seconds: float, elapsed: float,
               samples: int, validation: str = "") -> str:
    """verbose=1's line after an epoch: its loss (and validation), the epoch's own time, the
    time since the fit started, and the epoch's rate."""
    return (f"epoch {epoch + 1:>{len(str(epochs))}}/{epochs}  loss {loss:.5f}{validation}  "
            f"epoch_time {duration(seconds)}  elapsed {duration(elapsed)}  "
            f"{samples / max(seconds, 1e-9):,.0f} samples/s")


class EpochBar:
    """A progress bar over one epoch's ``total`` samples, updated by ``bar(done)`` and removed
    by ``close()``: tqdm's where tqdm is installed, else one line rewritten in place on
    ``stream`` (stderr), at most every ``interval`` seconds."""

    def __init__(self, epoch: int, epochs: int, total: int, stream: TextIO | None = None,
                 interval: float = 0.1) -> None:
        self.total, self.done = total, 0
        self.label = f"epoch {epoch + 1}/{epochs}"
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval
        self.start = self.shown = time.perf_counter()
        self.width = 0
        self.tqdm: Any = None
        try:  # (tqdm ships no type information)
            from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            return
        self.tqdm = tqdm(total=total, desc=self.label, unit="samples", leave=False,
                         mininterval=interval, file=self.stream)

    def __call__(self, done: int) -> None:
        if self.tqdm is not None:
            self.tqdm.update(done - self.done)
            self.done = done
            return
        self.done = done
        now = time.perf_counter()
        if now - self.shown < self.interval and done < self.total:
            return
        self.shown = now
        filled = 30 * done // max(self.total, 1)
        rate = done / max(now - self.start, 1e-9)
        line = (f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] "
                f"{100 * done / max(self.total, 1):3.0f}%  {done:,}/{self.total:,} samples  "
                f"{rate:,.0f} samples/s")
        self.width = max(self.width, len(line))
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()

    def close(self) -> None:
        """Remove the bar (the epoch's line follows on stdout)."""
        if self.tqdm is not None:
            self.tqdm.close()
        elif self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
