"""Measure both sides of fastnn's tuning thresholds (fastnn/_tuning.pyx) on this machine.

    python bench/tune.py [--quick] [--only NAME[,NAME...]] [--json PATH]

A threshold whose two sides are two speeds is measured at a few sizes around its current
value: at each size, the public call that crosses it (``F.linear``, ``F.linear_backward``,
``F.sigmoid``, ``MLP.fit``) is timed with the threshold forced to one side and then to the
other (``fastnn._tuning._set``: every kernel module reads the thresholds through one
pointer, so a move takes effect on the next call). The two sides alternate in rounds
(A B, B A, ...), and a side's time is the median over the rounds. For each threshold the
script prints both times and their ratio at every size, the crossover (the size where the
faster side changes, interpolated in log size between the two sizes around it) and a
suggested value: the power of two nearest the crossover, or the current value where the
sizes tried cannot tell the two apart. It ends with ``T.name = value`` lines to paste into
fastnn/_tuning.pyx by hand (it edits no file). The thresholds of policy (how often a fit
times its team again, how often it checks for Ctrl-C) are listed, not measured. Every
threshold is put back as found, whatever happens; ``--json`` records them before and after.

Calls are timed *warm* (back to back: fastnn's threads stay awake between them) or *cold*
(each after a pause longer than the threads spin, so a call that uses them wakes them):
the thresholds about waking threads are measured cold, some both ways.

The machine of BENCHMARKS.md sets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which hold
OpenBLAS to its AVX2 kernels; measure there with both unset (this script sets nothing):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/tune.py

``--quick`` (two or three sizes, five rounds: seconds) is what CI runs,
so that the script keeps working; its numbers are too few to suggest anything.
"""

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

import fastnn
import fastnn.functional as F
from fastnn import _tuning
from fastnn.backends.native_ops import kernels
from fastnn.benchmark.report import fmt_time
from fastnn.config import config

HUGE = 1 << 40  # above any size tried, and 2 * max_parts * HUGE still fits in 64 bits
FOUND = _tuning.values()  # the thresholds as this process found them (restored at the end)
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------------------
# Timing: two sides of a threshold, alternating in rounds
# ---------------------------------------------------------------------------------------


def use(moves):
    """The thresholds as found, with ``moves`` ({name: value}) applied."""
    for name, value in {**FOUND, **moves}.items():
        _tuning._set(name, value)


@dataclass
class Case:
    """One size of one threshold: ``call`` times the public call that crosses it, and
    ``small`` / ``large`` are the moves that force the side taken at or below the threshold
    and the side taken above it."""

    label: str
    size: float
    call: Callable[[], object]
    small: dict
    large: dict
    variant: str = ""
    cold: bool = False
    fresh: Callable[[], None] | None = None  # after each move: rebuild what read the old values
    check: Callable[[str], None] | None = None  # after a move's first call: the side was reached


@dataclass
class Point:
    label: str
    size: float
    variant: str
    seconds: dict  # side name -> median seconds per call
    ratio: float  # small side's time / large side's: above 1, the large side is faster
    ratio_iqr: list  # quartiles of the rounds' ratios


@dataclass
class Timer:
    rounds: int  # samples of each side
    target: float  # seconds a warm sample lasts: the median of 3 loops of calls back to back
    cold_calls: int  # a cold sample is the median of this many calls, each after a pause
    pause: float  # longer than fastnn's idle threads spin

    def sample(self, call, calls, cold):
        if cold:
            times = []
            for _ in range(self.cold_calls):
                time.sleep(self.pause)
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
            return statistics.median(times)
        return statistics.median(self.loop(call, calls) for _ in range(3))

    @staticmethod
    def loop(call, calls):
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        return (time.perf_counter() - t0) / calls

    def calls_per_loop(self, call):
        """How many back-to-back calls last about a third of ``target`` seconds."""
        calls = 1
        while True:
            t = self.loop(call, calls)
            if t * calls >= self.target / 12 or calls >= 1 << 20:
                return max(1, round(self.target / 3 / t))
            calls *= 4

    def switch(self, case, side, moves):
        use(moves)
        if case.fresh is not None:
            case.fresh()
        case.call()  # untimed: what the first call after a move pays once
        if case.check is not None:
            case.check(side)

    def compare(self, case, sides):
        """Time ``case`` on both ``sides`` ((name, moves) of the small side, then the large)."""
        calls = {}
        for name, moves in sides:
            self.switch(case, name, moves)
            calls[name] = 1 if case.cold else self.calls_per_loop(case.call)
        samples = {name: [] for name, _ in sides}
        gc.collect()
        gc.disable()
        try:
            for r in range(self.rounds):
                for name, moves in sides if r % 2 == 0 else sides[::-1]:
                    self.switch(case, name, moves)
                    samples[name].append(self.sample(case.call, calls[name], case.cold))
        finally:
            gc.enable()
            use({})
        (small, _), (large, _) = sides
        ratios = [a / b for a, b in zip(samples[small], samples[large])]
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        seconds = {name: statistics.median(s) for name, s in samples.items()}
        return Point(case.label, case.size, case.variant, seconds,
                     seconds[small] / seconds[large], [q[0], q[2]])


# ---------------------------------------------------------------------------------------
# The thresholds: one function each, yielding the cases that cross it
# ---------------------------------------------------------------------------------------


@dataclass
class Measure:
    name: str
    small: str  # the side taken at or below the threshold
    large: str  # the side taken above it
    unit: str
    call: str  # what is timed
    exponents: tuple  # sizes tried: the current value times 2**e ...
    quick: tuple  # ... with --quick
    cases: Callable  # cases(sizes) -> iterable of Case
    kind: str = "crossover"  # "cost": the other side is a larger machine's (no suggestion)
    threads: bool = False  # one side uses fastnn's threads: needs two or more
    around: float | None = None  # sizes around this, not the current value (which may be "none")


MEASURES = {}


def measures(name, small, large, unit, call, exponents, quick, **options):
    def register(cases):
        MEASURES[name] = Measure(name, small, large, unit, call, exponents, quick, cases,
                                 **options)
        return cases
    return register


def layer(N, K, M, dtype=np.float32):
    """X (N, K), W (M, K), b (M,): a layer's inputs and weights, seeded."""
    return (RNG.standard_normal((N, K)).astype(dtype),
            RNG.standard_normal((M, K)).astype(dtype) / math.sqrt(K),
            RNG.standard_normal(M).astype(dtype))


def forward(N, K, M, dtype=np.float32, activation="relu"):
    X, W, b = layer(N, K, M, dtype)
    return lambda: F.linear(X, W, b, activation)


def square(size, rows):
    """The width w of a (rows, w -> w) layer of about ``size`` multiply-adds."""
    return max(1, round(math.sqrt(size / rows)))


def backward(N, K, M, dtype=np.float32, activation="relu"):
    X, W, b = layer(N, K, M, dtype)
    U = F.linear(X, W, b, activation)
    dU = RNG.standard_normal(U.shape).astype(dtype)
    return lambda: F.linear_backward(dU, X, W, U, activation)


@measures("small_gemm", "loops", "product", "multiply-adds (one product)",
          "F.linear and F.linear_backward, 4 rows, w -> w, relu, float32 (fastnn's own "
          "product) and float64 (BLAS)", (-6, -4, -3, -2, -1, 0, 1, 2, 4), (-4, 0, 2))
def small_gemm(sizes):
    for kernel in (forward, backward):
        for dtype in (np.float32, np.float64):
            for size in sizes:
                w = square(size, 4)
                yield Case(f"4 x {w} -> {w}", 4 * w * w, kernel(4, w, w, dtype),
                           {"small_gemm": HUGE}, {"small_gemm": 0},
                           variant=f"{kernel.__name__} {np.dtype(dtype).name}")


@measures("own_gemm", "own", "BLAS", "multiply-adds (one product)",
          "F.linear (X W^T) and F.linear_backward (dZ^T X, dZ W), 256 rows, w -> w, float32, "
          "each product whole (max_parts 1: one thread)", (-3, -2, -1, 0, 1, 2, 3, 4), (-2, 0, 2))
def own_gemm(sizes):
    for kernel in (forward, backward):
        for size in sizes:
            w = square(size, 256)
            yield Case(f"256 x {w} -> {w}", 256 * w * w, kernel(256, w, w),
                       {"own_gemm": HUGE, "own_small": True, "max_parts": 1,
                        "own_nt_rows": HUGE},
                       {"own_gemm": 0, "max_parts": 1}, variant=kernel.__name__)


@measures("own_nt_rows", "own", "BLAS", "rows (one product)",
          "F.linear (X W^T, W as stored), N rows, 784 -> 256 and 256 -> 256, float32, the "
          "product whole (max_parts 1: one thread)", (-1, 0, 0.585, 1, 2), (-1, 1), around=32)
def own_nt_rows(sizes):
    for K in (784, 256):
        for N in sizes:
            yield Case(f"{N} x {K} -> 256", N, forward(N, K, 256),
                       {"own_nt_rows": HUGE, "own_gemm": HUGE, "max_parts": 1, "unit_rows": 0},
                       {"own_nt_rows": 0, "own_nt_units": 0, "max_parts": 1, "unit_rows": 0})


@measures("blas_small", "BLAS", "own", "multiply-adds (one product)",
          "F.linear_backward (dZ^T X, dZ W), 16 rows, w -> w, relu, float32",
          (-6, -4, -3, -2, -1, 0, 1, 2), (-6, -3, 0))
def blas_small(sizes):
    for size in sizes:
        w = max(square(size, 16), 2)
        yield Case(f"16 x {w} -> {w}", 16 * w * w, backward(16, w, w),
                   {"own_gemm": 0}, {"own_gemm": HUGE, "own_small": True})


@measures("own_panels", "own", "BLAS", "multiply-adds (a frozen layer's batch)",
          "predict_proba of a frozen 784 -> 256 relu layer, N rows (fastnn's threads); the "
          "same batches whatever the current value (--quick: two)", (-1, 0), (0,), threads=True)
def own_panels(sizes):
    layer = fastnn.Linear(784, 256, "relu", random_state=0).freeze()
    model = fastnn.Sequential([layer], loss="squared_error")
    for N in (256, 1024, 2048, 4096, 8192) if len(sizes) > 1 else (256, 4096):
        X = RNG.standard_normal((N, 784)).astype(np.float32)
        yield Case(f"{N} x 784 -> 256", N * 784 * 256, lambda X=X: model.predict(X),
                   {"own_panels": HUGE}, {"own_panels": 0})


@measures("unit_rows", "units", "rows", "rows (a model's batch)",
          "predict_proba of a 784 -> 256 -> 10 relu/softmax model, N rows (fastnn's "
          "threads): float32 frozen and not, float64", (-3, -1, 0, 0.585, 1), (-1, 1),
          threads=True)
def unit_rows(sizes):
    for variant in ("frozen", "float32", "float64"):
        dtype = np.float64 if variant == "float64" else np.float32
        model = fastnn.MLP(784, 256, 10, dtype=dtype, random_state=0)
        if variant == "frozen":
            model.freeze()
        for size in sizes:
            N = max(2, round(size))
            X = RNG.standard_normal((N, 784)).astype(dtype)
            yield Case(f"{N} x 784 -> 256 -> 10", N,
                       lambda X=X, model=model: model.predict_proba(X),
                       {"unit_rows": HUGE}, {"unit_rows": 0}, variant=variant)


@measures("parallel_elements", "one thread", "threads", "elements",
          "F.sigmoid on a float32 array, warm and cold",
          (-4, -3, -2, -1, 0, 1, 2), (-2, 0, 2), threads=True)
def parallel_elements(sizes):
    for cold in (False, True):
        for size in sizes:
            Z = RNG.standard_normal(int(size)).astype(np.float32)
            yield Case(f"{int(size)}", int(size), lambda Z=Z: F.sigmoid(Z),
                       {"parallel_elements": HUGE}, {"parallel_elements": 0},
                       variant="cold" if cold else "warm", cold=cold)


def one_sample(size):
    w = max(square(size, 1), 32)  # (a layer splits its rows from 32 rows on)
    return w, forward(1, w, w)


# one sample's layer on one core (neither rule splits it) or split among the threads
ONE_CORE = {"split_gemv": HUGE, "part_work": HUGE}
SPLIT = {"split_gemv": 0}


@measures("split_gemv", "one core", "split", "weights (M K)",
          "F.linear on one sample (1 x w -> w), float32, cold (the threads asleep)",
          (-6, -4, -3, -2, -1, 0, 1, 2), (-4, -2, 0), threads=True)
def split_gemv(sizes):
    for size in sizes:
        w, call = one_sample(size)
        yield Case(f"1 x {w} -> {w}", w * w, call, ONE_CORE, SPLIT, cold=True)


@measures("part_work", "one part", "parts", "multiply-adds (one part's)",
          "warm (the threads awake): one sample (1 x w -> w) split or not; and F.linear, "
          "64 rows, w -> w, as 1 part or 2 (max_parts 2)",
          (-4, -3, -2, -1, 0, 1, 2, 3), (-3, 0, 3), threads=True)
def part_work(sizes):
    for size in sizes:
        w, call = one_sample(size)
        yield Case(f"1 x {w} -> {w}", w * w, call, ONE_CORE, SPLIT, variant="one sample")
    two = {"part_work": 0, "max_parts": 2, "wake_work": 0}
    for size in sizes:
        w = square(size, 32)
        yield Case(f"64 x {w} -> {w}", 32 * w * w, forward(64, w, w),
                   {**two, "part_work": HUGE}, two, variant="64 rows")


@measures("wake_work", "awake threads", "wake them", "multiply-adds (the call's)",
          "F.linear, 128 rows, w -> w, float32, cold (the threads asleep)",
          (-4, -3, -2, -1, 0, 1, 2), (-3, 0, 2), threads=True)
def wake_work(sizes):
    for size in sizes:
        w = square(size, 128)
        yield Case(f"128 x {w} -> {w}", 128 * w * w, forward(128, w, w),
                   {"wake_work": HUGE}, {"wake_work": 0}, cold=True)


@measures("part_rows", "one part", "two parts", "rows (one part's)",
          "F.linear, 2 r rows, 256 -> 256, float32, warm, as 1 part or 2 (max_parts 2)",
          (-3, -2, -1, 0, 1, 2), (-2, 0, 2), threads=True)
def part_rows(sizes):
    two = {"part_work": 0, "max_parts": 2, "wake_work": 0}
    for rows in sizes:
        rows = int(rows)
        yield Case(f"{2 * rows} x 256 -> 256", rows, forward(2 * rows, 256, 256),
                   {**two, "part_rows": HUGE}, {**two, "part_rows": 1})


@measures("part_read_rows", "two parts", "four parts", "rows (each of four parts')",
          "predict_proba of MLP(784, 256, 10), 4 r rows, float32, warm (max_parts 4): the "
          "rows in two parts or four, each reading the layers' W",
          (-3, -2, -1, 0, 1), (-2, 0), threads=True)
def part_read_rows(sizes):
    model = fastnn.MLP(784, 256, 10, random_state=0)
    four = {"max_parts": 4, "part_work": 0, "wake_work": 0}
    for rows in sizes:
        rows = int(rows)
        X = RNG.standard_normal((4 * rows, 784)).astype(np.float32)
        yield Case(f"{4 * rows} x 784 -> 256 -> 10", rows,
                   lambda X=X: model.predict_proba(X), {**four, "part_read_rows": HUGE},
                   {**four, "part_read_rows": 1})


@measures("max_parts", "parts = threads", "as set", "rows",
          "F.linear, N rows, 256 -> 256, float32, warm: the cost of cutting into more parts "
          "than this machine has threads",
          (4, 6, 8), (6,), kind="cost", threads=True)
def max_parts(sizes):
    threads = fastnn.get_num_threads()
    if threads >= FOUND["max_parts"]:
        return  # nothing to measure: a part for every thread
    for rows in sizes:
        rows = int(rows)
        yield Case(f"{rows} x 256 -> 256", rows, forward(rows, 256, 256),
                   {"max_parts": threads}, {})


def fit_call(n_in, hidden, rows, batch, fresh_loop):
    """One epoch of ``MLP(n_in, hidden, 10).fit`` on ``rows`` rows; ``fresh_loop``: a new
    native loop every call (else the model keeps it, as fit does, until the next move).
    Returns the call, what makes the next fit build a new loop, and the loop's stretches
    so far as (on the team, on one thread)."""
    model = fastnn.MLP(n_in, hidden, 10, random_state=0)
    X = RNG.standard_normal((rows, n_in)).astype(np.float32)
    y = RNG.integers(0, 10, rows)

    def new_loop():
        model._fit_loop = None  # the loop reads most thresholds when it is built

    def call():
        if fresh_loop:
            new_loop()
        model.fit(X, y, epochs=1, batch_size=batch, lr=0.01, shuffle=False)

    def stretches():
        runner = model._fit_loop.runner
        return runner.team_stretches + runner.disbanded, runner.alone_stretches
    call.model = model  # (for a Case's check)
    return call, new_loop, stretches


@measures("team_epoch", "one thread", "team", "multiply-adds (the epoch's)",
          "MLP(64, 128, 10).fit, one epoch of batches of 32, a new loop each fit, cold "
          "and warm (the team side: probe_steps huge, so the epoch runs on the team)",
          (-3, -2, -1, 0, 1, 2, 3), (-2, 0, 2), threads=True)
def team_epoch(sizes):
    per_row = 3 * (64 * 128 + 128 * 10)  # the loop's work_per_row: forward, dU, dW
    for cold in (True, False):
        for size in sizes:
            rows = max(32, round(size / per_row))
            call, _, stretches = fit_call(64, 128, rows, 32, fresh_loop=True)

            def check(side, stretches=stretches):  # else it would time something else
                team, alone = stretches()
                if (team > 0, alone > 0) != ((True, False) if side == "team" else (False, True)):
                    raise RuntimeError(f"team_epoch: the {side!r} side ran {team} stretches "
                                       f"on the team and {alone} on one thread")
            yield Case(f"{rows} rows", rows * per_row, call, {"team_epoch": HUGE},
                       {"team_epoch": 0, "probe_steps": HUGE},
                       variant="cold" if cold else "warm", cold=cold, check=check)


# a first layer of more weights than this is never held transposed for being small: a part
# of a step has at least part_rows rows, so its product is above blas_small (_train.pyx)
SMALL_FIRST = FOUND["blas_small"] // FOUND["part_rows"]


@measures("mirror_weights", "W^T held", "W as is", "weights (first layer)",
          "MLP(784, h, 10).fit, one epoch of 8 batches of 128, warm (the model keeps its loop)",
          (-1, 0, 1, 2), (0, 1))
def mirror_weights(sizes):
    for size in sizes:
        hidden = math.ceil(max(size, SMALL_FIRST + 1) / 784)
        call, new_loop, _ = fit_call(784, hidden, 8 * 128, 128, fresh_loop=False)
        yield Case(f"784 -> {hidden}", 784 * hidden, call,
                   {"mirror_weights": HUGE, "mirror_steps": 0}, {"mirror_weights": 0},
                   fresh=new_loop)


@measures("mirror_steps", "W as is", "W^T held", "steps (an epoch's)",
          "MLP(784, 128, 10).fit, one epoch of s batches of 128, warm (the model keeps its "
          "loop)", (-2, -1, 0, 1, 2, 3), (-2, 0, 2))
def mirror_steps(sizes):
    if 784 * 128 <= SMALL_FIRST:
        return  # held transposed for being small whatever mirror_steps says
    for steps in sizes:
        steps = int(steps)
        call, new_loop, _ = fit_call(784, 128, steps * 128, 128, fresh_loop=False)
        yield Case(f"{steps} steps", steps, call,
                   {"mirror_weights": HUGE, "mirror_steps": HUGE},
                   {"mirror_weights": HUGE, "mirror_steps": 0}, fresh=new_loop)


def units_check(model, parts):
    """A Case check: the model's fit loop split its step into ``parts[side]`` parts of units
    (0: not by units)."""
    def check(side):
        got = model._fit_loop.runner.by_units
        if got != parts[side]:
            raise AssertionError(f"{side}: {got} parts of units, not {parts[side]}")
    return check


@measures("part_units", "one part", "two parts", "hidden units (each part's)",
          "MLP(64, 2 u, 10).fit, one epoch of 8 batches of 32, warm, team_epoch and "
          "part_work 0: the step by rows then units, or split in two by hidden units",
          (-3, -2, -1, 0, 1, 2), (-2, 0, 2), threads=True)
def part_units(sizes):
    moves = {"team_epoch": 0, "part_work": 0, "many_part_units": HUGE}
    for u in sizes:
        u = int(u)
        call, new_loop, _ = fit_call(64, 2 * u, 8 * 32, 32, fresh_loop=False)
        yield Case(f"32 x 64 -> {2 * u}", u, call, {**moves, "part_units": HUGE},
                   {**moves, "part_units": u}, fresh=new_loop,
                   check=units_check(call.model, {"one part": 0, "two parts": 2}))


@measures("many_part_units", "two parts", "four parts", "hidden units (each of four parts')",
          "MLP(256, 4 u, 10).fit, one epoch of 8 batches of 128, warm, part_work 0: the step "
          "split in two or in four by hidden units",
          (-2, -1, 0, 1), (-1, 0), threads=True)
def many_part_units(sizes):
    for u in sizes:
        u = int(u)
        call, new_loop, _ = fit_call(256, 4 * u, 8 * 128, 128, fresh_loop=False)
        moves = {"part_work": 0, "part_units": u}
        yield Case(f"128 x 256 -> {4 * u}", u, call, {**moves, "many_part_units": HUGE},
                   {**moves, "many_part_units": u}, fresh=new_loop,
                   check=units_check(call.model, {"two parts": 2, "four parts": 4}))


# ---------------------------------------------------------------------------------------
# From the points to a crossover and a suggestion
# ---------------------------------------------------------------------------------------


def pow2(x):
    return 2 ** max(0, round(math.log2(x)))


def clear(p):
    """Whether one side is faster at p beyond the noise: its rounds' ratios' quartiles lie
    on one side of 1."""
    return not p.ratio_iqr[0] <= 1 <= p.ratio_iqr[1]


@dataclass
class Crossing:
    """Where the points of a threshold put it."""

    suggested: object
    at: float | None = None  # the crossover, interpolated where the faster side changes
    between: list | None = None  # the two sizes tried around it
    winner: int | None = None  # with no crossover in the sizes tried: 0 the small side, 1 large
    against: int = 0  # clear points on their slower side of it
    ties: int = 0  # points within the noise
    changes: int = 0  # how often the faster side changes from one size to the next


def crossing(points, current):
    """The threshold is put in the gap between two of the sizes tried (or below or above them
    all) where it loses least: the sum of |log ratio| over the points it puts on their slower
    side, points within the noise (not ``clear``) counting nothing. Where the current value's
    own gap loses no more than that, it stays."""
    sizes = sorted({p.size for p in points})
    n = len(sizes)

    def slower(k):  # the clear points a threshold between sizes[k - 1] and sizes[k] misplaces
        return [p for p in points if clear(p) and (p.ratio > 1) == (k == n or p.size < sizes[k])]

    def distance(k):  # from the current value to that gap, in octaves
        low, high = sizes[k - 1] if k else 0, sizes[k] if k < n else math.inf
        return 0 if low <= current < high else min(abs(math.log2(max(current, 1) / s))
                                                   for s in (low, high) if 0 < s < math.inf)

    # log ratio > 0: the large side is faster at that size (variants at one size averaged)
    logs = [statistics.fmean(math.log(p.ratio) for p in points if p.size == s) for s in sizes]
    signs = [l > 0 for s, l in zip(sizes, logs) if any(clear(p) for p in points if p.size == s)]
    ties = sum(not clear(p) for p in points)
    if not signs:
        return Crossing(current, ties=ties)
    losses = [sum(abs(math.log(p.ratio)) for p in slower(k)) for k in range(n + 1)]
    k = min(range(n + 1), key=lambda k: (losses[k] > min(losses) + 1e-9, distance(k)))
    c = Crossing(current, against=len(slower(k)), ties=ties,
                 changes=sum(a != b for a, b in zip(signs, signs[1:])))
    if k in (0, n):  # one side wins: the threshold goes below or above the sizes tried
        c.winner = 1 if k == 0 else 0
        if distance(k):
            c.suggested = pow2(sizes[0] / 2) if k == 0 else pow2(sizes[-1])
        return c
    a, b = c.between = [sizes[k - 1], sizes[k]]
    if logs[k - 1] < 0 < logs[k]:
        t = logs[k - 1] / (logs[k - 1] - logs[k])
        c.at = math.exp(math.log(a) + t * (math.log(b) - math.log(a)))
    if distance(k):
        c.suggested = pow2(c.at or math.sqrt(a * b))
    return c


def describe(c, small, large):
    """A crossing in words."""
    if c.winner is None and c.between is None:
        return "neither side faster beyond the noise at any size tried"
    if c.winner is not None:
        text = f"{(small, large)[c.winner]} faster" + (" or tied" if c.ties else "")
        text += " at every size tried" if not c.against else " on balance"
    elif c.at is not None:
        text = f"crossover at {fmt_size(c.at)}"
    else:
        text = f"crossover between {fmt_size(c.between[0])} and {fmt_size(c.between[1])}"
    if c.against or c.changes > 1:
        text += (f" (noisy: {c.against} sizes on their slower side, the faster side changes "
                 f"{c.changes} times)")
    return text


@dataclass
class Result:
    name: str
    note: str
    current: object
    status: str  # "measured", "cost", "derived", "policy" or "skipped"
    unit: str = ""
    sides: list = field(default_factory=list)  # [small side, large side]
    call: str = ""
    points: list = field(default_factory=list)
    crossing: Crossing | None = None
    by_case: dict = field(default_factory=dict)  # variant -> its own crossing, in words
    suggested: object = None
    verdict: str = ""
    short: str = ""  # the verdict in a word or two, for the summary
    others_cpu: float | None = None  # the share of the CPUs other processes took meanwhile


def judge(m, points):
    current = FOUND[m.name]
    result = Result(m.name, _tuning.NOTES[m.name], current, "measured", m.unit,
                    [m.small, m.large], m.call, points)
    if not points:
        result.status, result.verdict = "skipped", "not measured: no size to try here"
        result.short = "skipped"
        return result
    if m.kind == "cost":
        ratio = math.exp(statistics.fmean(math.log(p.ratio) for p in points))
        result.status, result.short = "cost", f"costs {1 / ratio:.2f}x"
        result.verdict = (f"{m.large} ({current}) takes {1 / ratio:.2f}x the time of "
                          f"{m.small} here (geometric mean); its other side is a larger "
                          f"machine's: no suggestion")
        return result
    c = result.crossing = crossing(points, current)
    result.suggested = c.suggested
    for variant in sorted({p.variant for p in points} - {""}):
        result.by_case[variant] = describe(
            crossing([p for p in points if p.variant == variant], current), m.small, m.large)
    result.verdict = describe(c, m.small, m.large)
    if m.name == "blas_small" and FOUND["own_small"]:
        result.suggested, result.short = None, "unused here"
        result.verdict += ("; unused here (own_small: the BLAS loaded has no small-matrix "
                           "kernels, fastnn's own product takes every small product)")
    elif result.suggested == current:
        result.short = "agrees"
        result.verdict += "; the current value agrees"
    else:
        bound = " (beyond the sizes tried: a bound)" if c.winner is not None else ""
        result.short = f"suggests {fmt_size(result.suggested)}{bound and ' (bound)'}"
        result.verdict += f"; suggests {fmt_size(result.suggested)}{bound}"
    return result


def own_small_from(blas):
    """own_small (set at import from the BLAS loaded) against blas_small's measurements: is
    fastnn's own product faster, on balance, at the sizes up to blas_small?"""
    result = Result("own_small", _tuning.NOTES["own_small"], FOUND["own_small"], "derived")
    below = [p for p in blas.points if p.size <= FOUND["blas_small"]]
    if below:
        result.suggested = sum(math.log(p.ratio) for p in below if clear(p)) > 0
        result.short = "agrees" if result.suggested == FOUND["own_small"] else "contradicts"
        result.verdict = (f"from blas_small's sizes up to {fmt_size(FOUND['blas_small'])}: "
                          f"{'own' if result.suggested else 'BLAS'} faster on balance; "
                          f"set at import from the BLAS core (fastnn/threads.py), "
                          + ("agrees" if result.suggested == FOUND["own_small"]
                             else "contradicts the value it set"))
    else:
        result.verdict = result.short = "not measured: no size up to blas_small tried"
    return result


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def fmt_size(x):
    if x is None:
        return "-"
    if isinstance(x, bool) or x < 1024:
        return str(x) if isinstance(x, (bool, int)) else f"{x:.3g}"
    e = math.log2(x)
    return f"2^{e:.0f}" if abs(e - round(e)) < 0.05 else f"2^{e:.1f}"


def crossed(c):
    """A crossing's crossover for the summary: a size, a range, or "-"."""
    if c is None or c.between is None:
        return "-"
    return fmt_size(c.at) if c.at is not None else "{}-{}".format(*map(fmt_size, c.between))


def table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in rows)


def print_result(r):
    print(f"\n{r.name} = {fmt_size(r.current)}: {r.note}")
    if r.status in ("policy", "derived", "skipped"):
        print(f"  {r.verdict}")
        return
    small, large = r.sides
    print(f"  {small!r} at or below, {large!r} above; {r.call}")
    rows = [("size", "case", "", small, large, f"{small}/{large}", "rounds' quartiles")]
    for p in r.points:
        rows.append((fmt_size(p.size), p.label, p.variant, fmt_time(p.seconds[small]),
                     fmt_time(p.seconds[large]), f"{p.ratio:.2f}",
                     f"{p.ratio_iqr[0]:.2f}-{p.ratio_iqr[1]:.2f}"))
    print(table(rows))
    print(f"  {r.verdict}")
    for variant, words in r.by_case.items():
        print(f"    {variant} alone: {words}")


def snippet(results):
    lines = []
    for r in results:
        if r.status != "measured" or r.suggested is None:
            continue
        value = r.suggested
        text = f"1 << {int(math.log2(value))}" if value >= 1024 and pow2(value) == value \
            else str(value)
        lines.append(f"T.{r.name} = {text}" + ("  # unchanged" if value == r.current else ""))
    return lines


def header(args):
    info = config()
    blas = [f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')}"
            for p in info.get("threadpools", []) if isinstance(p, dict)
            and p.get("user_api") == "blas"]
    env = {k: v for k, v in info["environment"].items() if v is not None}
    print(f"fastnn {info['fastnn']} thresholds, measured {'quickly ' if args.quick else ''}"
          f"on {info['cpu_count']} cpus, {info['threads']} fastnn threads; own product: "
          f"{info['own_gemm']}")
    print(f"BLAS: {'; '.join(blas) or 'unknown'}; environment: {env or 'nothing set'}; "
          f"load average {os.getloadavg()[0]:.2f}")
    return {"config": {k: v for k, v in info.items() if k != "threadpools"}, "blas": blas}


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def sizes_for(m, quick):
    base = FOUND[m.name] if m.around is None else m.around
    return sorted({max(1, round(base * 2.0 ** e)) for e in (m.quick if quick else m.exponents)})


def cpu_seconds():
    """(CPU seconds every process has used, CPU seconds this one has), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _, _, irq, softirq = map(int, f.readline().split()[1:8])
    except (OSError, ValueError):
        return None
    own = os.times()
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"), \
        own.user + own.system


def measure(m, timer, quick):
    """The Result of one threshold: each case timed on both sides, then judged."""
    started, cpu = time.perf_counter(), cpu_seconds()
    points = [timer.compare(case, [(m.small, case.small), (m.large, case.large)])
              for case in m.cases(sizes_for(m, quick))]
    result = judge(m, points)
    elapsed, now = time.perf_counter() - started, cpu_seconds()
    if cpu is not None and now is not None:
        others = (now[0] - cpu[0]) - (now[1] - cpu[1])
        result.others_cpu = max(0.0, others / (elapsed * (os.cpu_count() or 1)))
    print_result(result)
    print(f"  ({elapsed:.1f} s" + ("" if result.others_cpu is None else
                                   f"; other processes took {result.others_cpu:.0%} of the "
                                   "CPUs meanwhile") + ")")
    return result


def run(names, timer, quick):
    results = []
    for name in _tuning.NOTES:
        if name not in names or name == "own_small":  # (judged with blas_small)
            continue
        m = MEASURES.get(name)
        if m is None:
            results.append(Result(name, _tuning.NOTES[name], FOUND[name], "policy",
                                  verdict="not measured: policy", short="policy"))
        elif m.threads and fastnn.get_num_threads() < 2:
            results.append(Result(name, _tuning.NOTES[name], FOUND[name], "skipped",
                                  verdict="not measured: fastnn has one thread here",
                                  short="skipped"))
        else:
            results.append(measure(m, timer, quick))
            if name != "blas_small":
                continue
            results.append(own_small_from(results[-1]))
        print_result(results[-1])
    return results


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="three sizes, three rounds: checks that it runs")
    parser.add_argument("--only", help="comma-separated thresholds (fastnn._tuning.NOTES)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    names = set(_tuning.NOTES)
    if args.only:
        names = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = names - set(_tuning.NOTES)
        if unknown:
            parser.error(f"no threshold {sorted(unknown)}; there are {list(_tuning.NOTES)}")
        if "own_small" in names:  # judged from blas_small's measurements
            names.add("blas_small")
    args.names = names
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    spin = kernels.pool_info()["spin_seconds"]
    timer = (Timer(rounds=5, target=1e-3, cold_calls=3, pause=2 * spin + 1e-3) if args.quick
             else Timer(rounds=15, target=6e-3, cold_calls=5, pause=2 * spin + 1e-3))
    started = time.perf_counter()
    machine = header(args)
    try:
        with fastnn.use_backend("cython"):
            results = run(args.names, timer, args.quick)
    finally:
        use({})
    after = _tuning.values()
    print("\nSummary")
    print(table([("threshold", "current", "crossover", "suggested", "verdict", "others' cpu")]
                + [(r.name, fmt_size(r.current), crossed(r.crossing), fmt_size(r.suggested),
                    r.short, "" if r.others_cpu is None else f"{r.others_cpu:.0%}")
                   for r in results]))
    print("\nTo paste into fastnn/_tuning.pyx (by hand, after reading the tables above):")
    print("\n".join(snippet(results)) or "(nothing measured)")
    print(f"\n{time.perf_counter() - started:.0f} s; every threshold restored: {after == FOUND}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "machine": machine, "values_before": FOUND,
                       "values_after": after, "thresholds": [asdict(r) for r in results]},
                      f, indent=1)
    return 0 if after == FOUND else 1


if __name__ == "__main__":
    sys.exit(main())
