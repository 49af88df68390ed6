"""Hardening, part 4: memory. A million kernel calls and a thousand fits do not grow the
resident set size, and neither do calls and fits that raise (no workspace leaks on errors).

RSS is read from /proc/self/statm (the test is skipped where that file does not exist), after
a warm-up that brings the allocators, the BLAS / OpenMP thread pools and NumPy's caches to
their steady state, and after gc.collect() and glibc's malloc_trim(0) (so that heap memory
freed earlier cannot absorb a leak). Slack: 20 MB for the million calls and the
thousand fits; the workloads are sized so that a leak of one small object per call (>= 21
bytes: a Python int is 28), of linear_backward's 512-byte scratch per call, or of one set
of fit workspaces per fit (~96 KB here) would exceed it (3 to 5 times for the last two).

Budget (2 cores): ~4 s for the million calls (so no "slow" marker is needed); ~1 s for the
rest. FASTNN_MEMORY_CALLS
overrides the number of kernel calls (default 1,000,000).
"""

import ctypes
import gc
import os
import time

import numpy as np
import pytest

import fastnn
from fastnn import functional as F

STATM = "/proc/self/statm"
MB = 1 << 20
SLACK = 20 * MB
CALLS = int(os.environ.get("FASTNN_MEMORY_CALLS", "1000000"))
COUNTS = {"kernel_calls": 0, "raising_calls": 0, "fits": 0, "raising_fits": 0}

pytestmark = [
    pytest.mark.skipif(not os.path.exists(STATM), reason="needs /proc/self/statm (Linux)"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]


try:  # glibc: give freed heap memory back to the OS before measuring, so that memory freed
    # by earlier tests cannot absorb (hide) a leak
    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # pragma: no cover - not glibc
    _malloc_trim = None


def rss():
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    with open(STATM) as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# The notes' section 1 problem 2 hidden layer: x in {0, 1, 3, 5}, W^H = [[1], [1]], b = [-2, -4]
X_NOTES = np.array([[0.0], [1.0], [3.0], [5.0], [3.5]])
W_NOTES = np.array([[1.0], [1.0]])
B_NOTES = np.array([-2.0, -4.0])
Z_TINY = np.array([[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]])
Y_TINY = np.array([0, 2])
RNG = np.random.default_rng(0)
# linear_backward at a width of 64 outputs: its float64 scratch (malloc / free around the
# kernel) is 512 bytes, so a leak of it would cost 100 MB over 200,000 calls
DU_64, X_64, W_64 = RNG.standard_normal((2, 64)), RNG.standard_normal((2, 3)), \
    RNG.standard_normal((64, 3))
U_64 = np.tanh(RNG.standard_normal((2, 64)))


def kernel_mix(n):
    """n public kernel calls: 40% linear (the notes' tiny layer, fused step), 20%
    cross_entropy with its gradient, 20% activate, 20% linear_backward."""
    blocks = n // 10
    for _ in range(blocks):
        F.linear(X_NOTES, W_NOTES, B_NOTES, "step")
        F.linear(X_NOTES, W_NOTES, B_NOTES, "sigmoid")
        F.linear(X_NOTES, W_NOTES, None, "identity")
        F.linear(X_NOTES[0], W_NOTES, B_NOTES, "relu")
        F.cross_entropy(Z_TINY, Y_TINY, return_grad=True)
        F.cross_entropy(Z_TINY, Y_TINY, reduction="none")
        F.activate(Z_TINY, "exp")
        F.activate(Z_TINY, "tanh")
        F.linear_backward(DU_64, X_64, W_64, U_64, "tanh")
        F.linear_backward(DU_64, X_64, W_64, U_64, "relu", need_dX=False)
    COUNTS["kernel_calls"] += 10 * blocks
    return 10 * blocks


def raising_mix(n):
    """n calls that fail validation (ValueError / TypeError) after some conversion work."""
    blocks = n // 5
    bad_W = np.ones((2, 3))
    for _ in range(blocks):
        for call in (lambda: F.linear(X_NOTES, bad_W, B_NOTES),
                     lambda: F.cross_entropy(Z_TINY, [0, 3]),
                     lambda: F.linear_backward(DU_64, X_64, W_64, U_64[:1]),
                     lambda: F.activate(Z_TINY, "softplus"),
                     lambda: F.squared_error(Z_TINY, np.full((2, 3), np.nan))):
            try:
                call()
            except (ValueError, TypeError):
                pass
            else:
                raise AssertionError("expected a ValueError")
    COUNTS["raising_calls"] += 5 * blocks
    return 5 * blocks


FIT_X = RNG.standard_normal((256, 16))
FIT_Y = RNG.integers(0, 4, 256)


def tiny_mlp(seed=0):
    return fastnn.MLP(16, 32, 4, activation="relu", output="softmax", random_state=seed)


def fits(n):
    """n fits of a small MLP (16-32-4) on 256 samples in batches of 256: the workspaces of one
    fit are ~96 KB (batch x widths, the gathered batch, gradients), allocated per fit."""
    model = tiny_mlp()
    for i in range(n):
        model.fit(FIT_X, FIT_Y, epochs=1, batch_size=256, lr=0.01, momentum=0.5,
                  random_state=i)
    COUNTS["fits"] += n
    return model


def raising_fits(n):
    """n fits that raise: half diverge (FloatingPointError after the workspaces exist), half
    get bad labels (ValueError in validation)."""
    model = tiny_mlp(1)
    Xhuge = FIT_X * 1e18
    for i in range(n):
        expected = ValueError if i % 2 else FloatingPointError
        try:
            if i % 2:
                model.fit(FIT_X, FIT_Y + 4, epochs=1, batch_size=256)
            else:
                model.fit(Xhuge, FIT_Y, epochs=3, batch_size=256, lr=1e30)
        except expected:
            pass
        else:
            raise AssertionError(f"expected {expected.__name__}")
    COUNTS["raising_fits"] += n


def _grow(workload, n, warmup):
    workload(warmup)
    before = rss()
    start = time.perf_counter()
    workload(n)
    seconds = time.perf_counter() - start
    after = rss()
    return after - before, seconds


def test_a_million_kernel_calls_do_not_grow_rss():
    grown, seconds = _grow(kernel_mix, CALLS, warmup=50_000)
    print(f"\n{CALLS:,} kernel calls in {seconds:.1f} s; RSS grew {grown / MB:.2f} MB")
    assert grown < SLACK, f"RSS grew {grown / MB:.1f} MB over {CALLS:,} calls"


def test_calls_that_raise_do_not_grow_rss():
    grown, seconds = _grow(raising_mix, 10_000, warmup=2_000)
    print(f"\n10,000 raising calls in {seconds:.1f} s; RSS grew {grown / MB:.2f} MB")
    assert grown < 5 * MB


def test_a_thousand_fits_do_not_grow_rss():
    grown, seconds = _grow(fits, 1000, warmup=50)
    print(f"\n1,000 fits in {seconds:.1f} s; RSS grew {grown / MB:.2f} MB")
    assert grown < SLACK


def test_fits_that_raise_do_not_leak_their_workspaces():
    grown, seconds = _grow(raising_fits, 200, warmup=20)
    print(f"\n200 raising fits in {seconds:.1f} s; RSS grew {grown / MB:.2f} MB")
    assert grown < SLACK


def fit_workspace_bytes(model, batch):
    """What one fit allocates for the native loop (_kernels.Trainer): per layer the weight
    and bias gradients and the batch's outputs and their gradients; the gathered batch and
    the per-sample losses."""
    item = model.dtype.itemsize
    total = batch * model.n_inputs + batch + model.n_outputs
    for W, b in model.parameters():
        total += W.size + (0 if b is None else b.size) + 2 * batch * W.shape[0]
    return total * item


def test_the_workloads_are_large_enough_to_see_a_leak():
    """The slack is meaningful: leaking one fit's workspaces per fit over the thousand fits,
    or a Python int (28 bytes) per kernel call over the million calls, would exceed it
    (a static check of the sizes; RSS itself is too sensitive to memory freed earlier)."""
    per_fit = fit_workspace_bytes(tiny_mlp(), 256)
    assert per_fit > 80_000
    assert 1000 * per_fit > 3 * SLACK
    if CALLS >= 1_000_000:
        assert CALLS * 28 > SLACK  # a leaked Python int per call
        # linear_backward is 1/5 of the calls; its scratch: 64 float64
        assert (CALLS // 5) * DU_64.shape[1] * 8 > 3 * SLACK


# ---------------------------------------------------------------------------------------
# Counts in the terminal summary
# ---------------------------------------------------------------------------------------
