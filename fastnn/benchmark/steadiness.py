"""How steadily each CPU does vector arithmetic while every CPU is busy, before each case.

A ``Probe`` keeps one process per CPU the run may use, pinned to it and idle (blocked on its
stdin) while the cases run. Asked to measure, each multiplies two 128 x 128 float32 matrices
(one BLAS thread: the product stays in the core's cache, bound by its multiply-add units)
over and over, all CPUs at once, counting the products done in each 5 ms window. A CPU's
slow windows are those below 80% of its best; a CPU is *unsteady* when more than 10% of its
windows are slow, or its best is below 80% of its best in the run (a stretch slow
throughout). Load that no process of the machine shows (a virtual machine's neighbours
on the same cores' sibling hardware threads, power limits) takes a CPU's arithmetic away
like this for seconds at a time. A team of threads waits at its barriers for its slowest
CPU, one thread only for its own: a case measured between unsteady moments is marked, and
its ratios against one-thread peers are suspect. Information printed with the goals; no
verdict depends on it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

WINDOW = 0.005  # seconds a count covers
SLOW = 0.8  # a window below this share of the CPU's best is slow
UNSTEADY = 0.10  # a CPU with more than this share of slow windows is unsteady
SIDE = 128  # the product's matrices: 2 x 128^3 flops, ~50 us on one core

Rows = list[dict[str, Any]]  # one measurement: per CPU {cpu, best, slow_share, longest_slow_ms}


def _serve(cpu: int) -> None:
    """(the child process, pinned to ``cpu``) For each request "seconds window" on stdin,
    a line on stdout: the products done per window over that time, as JSON; EOF ends it."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    os.sched_setaffinity(0, {cpu})
    rng = np.random.default_rng(cpu)
    A = rng.random((SIDE, SIDE), dtype=np.float32)
    B = rng.random((SIDE, SIDE), dtype=np.float32)
    C = np.empty_like(A)
    with threadpool_limits(1):
        for _ in range(20):  # warm: the first products load the library's code and pages
            np.matmul(A, B, out=C)
        print("ready", flush=True)
        for request in sys.stdin:
            seconds, window = map(float, request.split())
            counts: list[int] = []
            n, start = 0, time.perf_counter()
            edge, end = start + window, start + seconds
            while True:
                np.matmul(A, B, out=C)
                n += 1
                t = time.perf_counter()
                while t >= edge:  # (a window the process lost whole counts 0)
                    counts.append(n)
                    n, edge = 0, edge + window
                if t >= end:
                    break
            print(json.dumps(counts), flush=True)


def slow_windows(counts: Sequence[int], slow: float = SLOW) -> tuple[float, int]:
    """(share of the windows below ``slow`` times the best, longest run of such windows)."""
    if not counts:
        return 0.0, 0
    floor = slow * max(counts)
    run = longest = below = 0
    for c in counts:
        if c < floor:
            below += 1
            run += 1
            longest = max(longest, run)
        else:
            run = 0
    return below / len(counts), longest


class Probe:
    """The pinned processes, one per CPU of this process's affinity mask (Linux: elsewhere
    there are none and ``measure`` returns None)."""

    def __init__(self) -> None:
        self.cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.children = [subprocess.Popen(
            [sys.executable, "-m", "fastnn.benchmark.steadiness", str(cpu)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for cpu in self.cpus]
        self.ready = False  # (each child's first line says it is; read before a first probe)
        self.top: dict[int, float] = {}  # each CPU's best rate so far

    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    def measure(self, seconds: float, window: float = WINDOW) -> Rows | None:
        """Every CPU's windows over ``seconds``, all at once; None where a child is gone."""
        if not self.children:
            return None
        try:
            if not self.ready:  # (all started: their counts then overlap in time)
                for child in self.children:
                    if _line(child, 60) != "ready":
                        raise ValueError("a probe process did not start")
                self.ready = True
            for child in self.children:
                assert child.stdin is not None
                child.stdin.write(f"{seconds} {window}\n")
                child.stdin.flush()
            found = [json.loads(_line(child, 10 + 2 * seconds)) for child in self.children]
        except (OSError, ValueError):  # a child that died (a broken pipe, no line) or hangs
            self.close()
            return None
        rows = []
        for cpu, counts in zip(self.cpus, found):
            share, longest = slow_windows(counts)
            rows.append({"cpu": cpu, "best": max(counts, default=0) / window,
                         "slow_share": share, "longest_slow_ms": longest * window * 1e3})
        self.top = tops([rows], self.top)
        return rows

    def until_steady(self, seconds: float, limit: float) -> tuple[Rows | None, int]:
        """A measurement, taken again while a CPU is unsteady, until ``limit`` seconds have
        passed: the last one, and how many were taken again."""
        start = time.perf_counter()
        rows, again = self.measure(seconds), 0
        while rows and unsteady(rows, self.top) and time.perf_counter() - start < limit:
            rows, again = self.measure(seconds), again + 1
        return rows, again

    def close(self) -> None:
        for child in self.children:
            try:
                if child.stdin is not None:
                    child.stdin.close()  # (EOF: the child returns)
                child.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                child.kill()
        self.children = []


def _line(child: subprocess.Popen[str], timeout: float) -> str:
    """The child's next line of output; TimeoutError after ``timeout`` seconds without one."""
    assert child.stdout is not None
    if not select.select([child.stdout], [], [], timeout)[0]:
        raise TimeoutError("no answer from a probe process")
    return child.stdout.readline().strip()


def tops(measurements: Sequence[Rows | None], start: dict[int, float] | None = None
         ) -> dict[int, float]:
    """Each CPU's best rate over the measurements (and ``start``)."""
    top = dict(start or {})
    for rows in measurements:
        for row in rows or ():
            top[row["cpu"]] = max(top.get(row["cpu"], 0.0), row["best"])
    return top


def unsteady(rows: Rows | None, top: dict[int, float] | None = None) -> list[dict[str, Any]]:
    """The CPUs of a measurement with more than UNSTEADY of their windows slow, or (given
    ``top``, the CPUs' best rates in the run) a best below SLOW of that."""
    return [row for row in rows or () if row["slow_share"] > UNSTEADY
            or row["best"] < SLOW * (top or {}).get(row["cpu"], 0.0)]


def describe(measurements: Sequence[Rows | None]) -> str | None:
    """The report's line: how many measurements found a CPU unsteady, and the worst."""
    taken = [rows for rows in measurements if rows]
    if not taken:
        return None
    top = tops(taken)
    rows = [row for rows in taken for row in rows]
    worst = max(rows, key=lambda row: row["slow_share"])
    lowest = min(rows, key=lambda row: row["best"] / top[row["cpu"]] if top[row["cpu"]] else 1)
    found = sum(1 for rows in taken if unsteady(rows, top))
    return (f"CPU steadiness ({SIDE}x{SIDE} float32 products on every CPU at once, before "
            f"each case and after the last): {found} of {len(taken)} probes found a CPU "
            f"unsteady (more than {UNSTEADY:.0%} of its {WINDOW * 1e3:g} ms windows below "
            f"{SLOW:.0%} of its best, or its best below {SLOW:.0%} of its best in the run); "
            f"the most slow windows: cpu{worst['cpu']} {100 * worst['slow_share']:.0f}% "
            f"(longest run {worst['longest_slow_ms']:.0f} ms); the lowest rate: "
            f"cpu{lowest['cpu']} at {100 * lowest['best'] / (top[lowest['cpu']] or 1):.0f}% "
            f"of its best")


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
