"""fastnn's thread policy, whole.

- **One mechanism.** fastnn's parallel work (the training loop, the lbfgs objective, one
  sample's large layers, a batch's rows or, for a small batch, its first layer's units, a
  layer's backward by the batch's rows and then dW's units, large elementwise passes) runs on
  a pool of threads of fastnn's own
  (``fastnn/_threads.h``): the calling thread and up to ``get_num_threads() - 1`` workers.
  fastnn uses no OpenMP and starts no other threads.
- **How many threads.** ``get_num_threads()``: ``OMP_NUM_THREADS`` (read, never set) if it is
  set when fastnn loads, else the processors this process may run on (its affinity mask).
  ``set_num_threads(n)`` changes it, and so does threadpoolctl: fastnn's pool is registered
  with threadpoolctl as an "openmp" library (internal_api "fastnn"), so
  ``threadpool_limits(1)`` or ``threadpool_limits(1, user_api="openmp")`` limit it too, and
  ``threadpool_info()`` lists it.
- **The same bits on any machine.** A job's work is cut into parts by the shapes alone, and
  sums run in a fixed order, so the same seed gives the same weights on 1, 2 or 64 threads
  and under any affinity mask; the thread count changes only the speed.
- **Quiet after a call.** A worker spins about a millisecond after its last job (so the jobs
  of one fit, or back-to-back calls, find it awake), then sleeps until the next one. A small
  call (one sample's layer, a small batch) does not wake sleeping workers: it runs on the
  caller, unless a call found them asleep less than a millisecond before (a stream of
  calls, which the woken workers then serve).
- **Where workers run.** Only fastnn's own threads (named ``fastnn-worker``) are placed: a
  worker woken from sleep, or one whose last job ran on the processor the caller has come
  to run on, may run on any processor the calling thread may run on but the caller's own,
  so that it is not queued behind the caller on one core while another idles. The user's
  threads and the process's affinity mask are never changed.
- **Team or one thread.** A fit times its steps on its team and on one thread, runs the
  faster and times the other again now and then (the tuning table's ``probe_steps``,
  ``hold_steps``; timing one thread while the team is much faster costs at most
  ``probe_share`` of the time); a team whose threads wait long at its barriers (a core
  busy elsewhere) finishes its stretch on one thread and is tried again soon, then less
  often while that repeats. A wait, or a stretch's start or end, that takes longer than
  ``off_core`` (1 ms) beyond the work means a partner lost its core for an OS time slice
  (as to a BLAS library's threads, which spin ~0.1 s after each of its calls): one thread
  from there, and the team is tried again only after one thread has run twice as long as
  the team lost. Only the speed depends on this, never the weights.
- **BLAS.** While fastnn calls BLAS, the BLAS libraries threadpoolctl finds run on one thread
  each (fastnn/_blas.pyx): fastnn's own threads share the work, each calling BLAS for its
  part, and OpenBLAS's split of a product among its threads changes the product's rounding
  for some shapes. The counts found are restored when the last of fastnn's calls (in any
  Python thread) returns: nothing outlives the calls.
- **fork.** The child of a fork has none of the parent's workers; the pool forgets them in the
  child and starts its own at the child's first parallel job.
- **No environment variable** is set or changed by fastnn, at import or ever.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

_KMP = os.environ.get("KMP_DUPLICATE_LIB_OK")
from threadpoolctl import LibController, ThreadpoolController, register  # noqa: E402

# threadpoolctl sets KMP_DUPLICATE_LIB_OK=True when first imported; imported by fastnn, that
# would be fastnn changing the user's environment: put back what was there
if _KMP is None:
    os.environ.pop("KMP_DUPLICATE_LIB_OK", None)
else:
    os.environ["KMP_DUPLICATE_LIB_OK"] = _KMP

from .backends.native_ops import kernels as _kernels

__all__ = ["get_num_threads", "set_num_threads"]

MAX_THREADS = 64


def get_num_threads() -> int:
    """The number of threads fastnn's parallel work may use.

    Returns
    -------
    int
        ``OMP_NUM_THREADS`` when fastnn loaded, else the processors this process may run on,
        unless ``set_num_threads`` or threadpoolctl's ``threadpool_limits`` changed it.

    Examples
    --------
    >>> import fastnn
    >>> fastnn.get_num_threads() >= 1
    True
    """
    return int(_kernels.num_threads())


def set_num_threads(n: int) -> None:
    """Let fastnn's parallel work use at most ``n`` threads (the caller's included).

    The results do not depend on it (see ``fastnn.threads``), only the speed. threadpoolctl's
    ``threadpool_limits`` sets the same number, for a ``with`` block.

    Parameters
    ----------
    n : int
        1 to 64.

    Examples
    --------
    >>> import fastnn
    >>> before = fastnn.get_num_threads()
    >>> fastnn.set_num_threads(1); fastnn.get_num_threads()
    1
    >>> fastnn.set_num_threads(before)
    """
    import numbers

    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an integer, got {n!r}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n must be in 1..{MAX_THREADS}, got {n}")
    _kernels.set_num_threads(int(n))


class _FastnnThreads(LibController):  # type: ignore[misc]
    """threadpoolctl's view of fastnn's pool: the compiled ``_parallel`` module."""

    user_api = "openmp"
    internal_api = "fastnn"
    filename_prefixes = ("_parallel",)
    check_symbols = ("fastnn_get_num_threads", "fastnn_set_num_threads")

    def get_num_threads(self) -> int:
        return int(self.dynlib.fastnn_get_num_threads())

    def set_num_threads(self, num_threads: int) -> None:
        self.dynlib.fastnn_set_num_threads(max(1, min(MAX_THREADS, int(num_threads))))

    def get_version(self) -> str:
        from ._version import __version__

        return __version__


register(_FastnnThreads)


# OpenBLAS cores with small-matrix kernels (no packing below ~2^20 multiply-adds, x86-64)
_SMALL_KERNEL_CORES = {"skylakex", "cooperlake", "sapphirerapids"}

# the C functions threadpoolctl drives each BLAS library's thread count with, by its
# internal_api: (get, set) symbols without the library's own prefix/suffix (all int (void)
# and void (int); BLIS's take a 64-bit count, so fastnn leaves BLIS alone)
_BLAS_THREAD_SYMBOLS = {
    "openblas": ("openblas_get_num_threads", "openblas_set_num_threads"),
    "mkl": ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
    "flexiblas": ("flexiblas_get_num_threads", "flexiblas_set_num_threads"),
}


def _blas_libraries() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries loaded (a scan of the process's
    libraries: milliseconds, so once, at import)."""
    try:
        return list(ThreadpoolController().select(user_api="blas").lib_controllers)
    except Exception:  # a library threadpoolctl cannot read: fastnn leaves BLAS alone
        return []


def _thread_functions(lib: Any) -> tuple[int, int] | None:
    """The C addresses of ``lib``'s get/set thread-count functions, or None."""
    names = _BLAS_THREAD_SYMBOLS.get(lib.internal_api)
    if names is None or getattr(lib, "threading_layer", None) == "openmp":
        return None  # (an OpenMP OpenBLAS counts per calling thread: nothing to hold)
    prefix = getattr(lib, "_symbol_prefix", "") or ""
    suffix = getattr(lib, "_symbol_suffix", "") or ""
    try:
        get, set_ = (getattr(lib.dynlib, f"{prefix}{name}{suffix}") for name in names)
    except AttributeError:
        return None
    return (ctypes.cast(get, ctypes.c_void_p).value or 0,
            ctypes.cast(set_, ctypes.c_void_p).value or 0)


def _configure_blas() -> None:
    """Once, at import, before any kernel runs: which small products fastnn's own float32
    product takes (it changes their rounding), and the BLAS thread controls (_blas.pyx)."""
    libs = _blas_libraries()
    # an OpenBLAS core without small-matrix kernels (e.g. Haswell, Zen: the AVX2 ones):
    # fastnn's own product takes the small products too; other BLAS libraries keep them
    _kernels.own_small_products(any(
        lib.internal_api == "openblas"
        and str(getattr(lib, "architecture", "")).lower() not in _SMALL_KERNEL_CORES
        for lib in libs))
    _kernels.drive_blas_threads([f for f in map(_thread_functions, libs) if f is not None])


_configure_blas()


class _OneBlasThread:
    """``with one_blas_thread():`` BLAS on one thread for a block of fastnn's work that calls
    BLAS from Python or around fastnn's threads (a fit, a train_on_batch step, scipy's
    L-BFGS-B between the objective's calls). Nested and concurrent blocks count (the hold
    ends with the last). A class, not a generator: it wraps every train_on_batch step."""

    __slots__ = ()

    def __enter__(self) -> None:
        _kernels.hold_blas()

    def __exit__(self, *exc: object) -> None:
        _kernels.release_blas()


_ONE_BLAS_THREAD = _OneBlasThread()


def one_blas_thread() -> _OneBlasThread:
    """BLAS on one thread for a ``with`` block (see _OneBlasThread)."""
    return _ONE_BLAS_THREAD
