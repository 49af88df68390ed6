"""How steadily each CPU does vector arithmetic while every CPU is busy.

One child process per CPU the run may use, pinned to it, multiplies two 128 x 128 float32
matrices (one BLAS thread: the product stays in the core's cache, bound by its multiply-add
units) over and over for a second, counting the products done in each 5 ms window. A CPU's
slow windows are those below 80% of its best; their share and longest run say how much of
the time something outside the run (other virtual machines on the core's sibling hardware
threads, power limits) took the CPU's arithmetic away. A team of threads waits for its
slowest CPU, one thread only for its own: a run's ratios against single-threaded peers are
read with this. Information printed with the goals; no goal depends on it.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from typing import Any

WINDOW = 0.005  # seconds a count covers
SLOW = 0.8  # a window below this share of the CPU's best is slow
SIDE = 128  # the product's matrices: 2 x 128^3 flops, ~20-40 us on one core


def _count(cpu: int, seconds: float, window: float, out: Any) -> None:
    """(child process) Products of SIDE x SIDE float32 matrices done on ``cpu`` per window,
    for ``seconds``; the counts are put on the queue ``out`` as (cpu, counts)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    os.sched_setaffinity(0, {cpu})
    rng = np.random.default_rng(cpu)
    A = rng.random((SIDE, SIDE), dtype=np.float32)
    B = rng.random((SIDE, SIDE), dtype=np.float32)
    C = np.empty_like(A)
    counts: list[int] = []
    with threadpool_limits(1):
        for _ in range(20):  # warm: the first products load the library's code and pages
            np.matmul(A, B, out=C)
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
    out.put((cpu, counts))


def slow_windows(counts: list[int], slow: float = SLOW) -> tuple[float, int]:
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


def probe(seconds: float = 1.0, window: float = WINDOW) -> list[dict[str, Any]] | None:
    """Per CPU of this process's affinity mask: {"cpu", "best" (products a second in its
    best window), "slow_share", "longest_slow_ms"}, all CPUs counted at once; None where
    the CPUs cannot be pinned (not Linux) or a child fails."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    ctx = multiprocessing.get_context("spawn")  # (no fork of a process with threads)
    results = ctx.Queue()
    children = [ctx.Process(target=_count, args=(cpu, seconds, window, results), daemon=True)
                for cpu in cpus]
    for child in children:
        child.start()
    try:
        found = dict(results.get(timeout=60 + 2 * seconds) for _ in children)
    except queue.Empty:  # a child died or hung
        return None
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.terminate()
    rows = []
    for cpu in cpus:
        counts = found[cpu]
        share, longest = slow_windows(counts)
        rows.append({"cpu": cpu, "best": max(counts, default=0) / window,
                     "slow_share": share, "longest_slow_ms": longest * window * 1e3})
    return rows


def describe(start: list[dict[str, Any]] | None, end: list[dict[str, Any]] | None) -> str | None:
    """The report's line: each CPU's slow windows before the cases and after them."""
    if not start or not end:
        return None
    at_end = {row["cpu"]: row for row in end}
    parts = []
    for row in start:
        last = at_end.get(row["cpu"])
        if last is None:
            continue
        parts.append(f"cpu{row['cpu']} {100 * row['slow_share']:.0f}% / "
                     f"{100 * last['slow_share']:.0f}% (longest {row['longest_slow_ms']:.0f} / "
                     f"{last['longest_slow_ms']:.0f} ms)")
    return (f"CPU steadiness ({SIDE}x{SIDE} float32 products on every CPU at once; windows of "
            f"{WINDOW * 1e3:g} ms below {SLOW:.0%} of the CPU's best, before / after the "
            "cases): " + ", ".join(parts))
