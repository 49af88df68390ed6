# cython: language_level=3
"""Hooks for the tests, in the checked build only (FASTNN_CHECKED=1): they reach inside the
kernels to force a path that the machine or the shapes would not take."""

cimport numpy as cnp

import contextlib

import numpy as np

from fastnn._blas cimport own_sgemm, use_gemm_path
from fastnn._parallel cimport awake as _awake, met_caller
from fastnn._train cimport _Loop
from fastnn import _tuning

cnp.import_array()


def gemm_path(int level):
    """Run fastnn's own float32 product on instruction set ``level`` (2: AVX-512, 1: AVX2 +
    FMA, 0: none, BLAS does every product) or the CPU's best below it; returns the path."""
    return use_gemm_path(level)


def own_gemm(cnp.ndarray A, cnp.ndarray B, cnp.ndarray C, float alpha, float beta,
             bint transpose_a=False, cnp.ndarray P=None):
    """C = alpha op(A) B + beta C by fastnn's own product on the path in use, for C-contiguous
    float32 A, B, C; op(A) = A^T with ``transpose_a`` (read in place, as the training loop's
    dW^T = X^T dZ reads X); then P += C if P is given (C's shape). Returns False (C
    untouched) on path 0."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1], k = A.shape[0] if transpose_a else A.shape[1]
    if (A.shape[1] if transpose_a else A.shape[0]) != m or B.shape[0] != k or B.shape[1] != n:
        raise ValueError("shapes do not chain")
    for a in (A, B, C) if P is None else (A, B, C, P):
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise TypeError("float32, C-contiguous arrays")
    if P is not None and (P.shape[0] != m or P.shape[1] != n):
        raise ValueError("P must have C's shape")
    return bool(own_sgemm(m, n, k, alpha, <float*>cnp.PyArray_DATA(A),
                          1 if transpose_a else A.shape[1], A.shape[1] if transpose_a else 1,
                          <float*>cnp.PyArray_DATA(B), n, beta, <float*>cnp.PyArray_DATA(C), n,
                          <float*>cnp.PyArray_DATA(P) if P is not None else NULL, n))


def awake():
    """The workers a small parallel call may count on now (_parallel.awake): those still
    spinning; all of them when a call found them all asleep less than a spin window ago."""
    return _awake()


def met_worker(bint reset=False):
    """The caller's processor at the latest job whose caller found a worker on it (that took
    its last job there or spins there) and moved the worker off it; -1: none. ``reset``
    forgets it (after reading)."""
    return met_caller(reset)


def disband_after(_Loop trainer, Py_ssize_t steps):
    """Make thread 0 of ``trainer``'s team disband it after ``steps`` steps of every stretch."""
    trainer.st.disband_at = steps


def start_late(_Loop trainer, double seconds):
    """Make threads 1.. of ``trainer``'s team start ``seconds`` late (as if another process
    had their cores)."""
    trainer.partner_delay = seconds


def choose_and_time(_Loop trainer, double team_step, double alone_step,
                    Py_ssize_t steps=1 << 40, double lost=0):
    """One stretch of ``trainer``'s choice of threads, not run: the threads and steps it
    would run (at most ``steps``), recorded as if a step had taken ``team_step`` seconds on
    the team or ``alone_step`` on one thread, and the stretch ``lost`` seconds more outside
    its steps. Returns (threads, steps)."""
    cdef Py_ssize_t n = steps
    cdef int threads = trainer._threads_for(&n)
    cdef double step = team_step if threads > 1 else alone_step
    trainer.st.disband = False
    trainer._after(threads, n, step, n * step + lost)
    return threads, n


@contextlib.contextmanager
def tuning(**values):
    """Move thresholds of fastnn._tuning for a ``with`` block (a test reaching both sides)."""
    before = _tuning.values()
    try:
        for name, value in values.items():
            _tuning._set(name, value)
        yield
    finally:
        for name in values:
            _tuning._set(name, before[name])
