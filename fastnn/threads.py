"""fastnn's thread policy, whole.

- **One mechanism.** fastnn's parallel work (the training loop, the lbfgs objective, one
  sample's large layers, large elementwise passes) runs on a pool of threads of fastnn's own
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
  of one fit, or back-to-back calls, find it awake), then sleeps until the next one.
- **BLAS.** While a fit runs (``fit``, the estimators' solvers), the BLAS libraries that
  threadpoolctl finds get one thread each: each part of a training step calls BLAS from its
  own thread, and OpenBLAS's split of a product among its threads changes the product's
  rounding for some shapes. The counts found are restored when the last fit running (in any
  Python thread) returns: nothing outlives the calls.
- **fork.** The child of a fork has none of the parent's workers; the pool forgets them in the
  child and starts its own at the child's first parallel job.
- **No environment variable** is set or changed by fastnn, at import or ever.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any

from threadpoolctl import LibController, ThreadpoolController, register

from . import _kernels

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
        from . import __version__

        return __version__


register(_FastnnThreads)


_blas_lock = threading.Lock()
_blas_users = 0  # calls inside blas_single_threaded, in any thread
_blas_saved: list[tuple[Any, int]] = []  # (set-threads function, the count before)


@functools.lru_cache(maxsize=1)
def _blas_libraries() -> tuple[tuple[Any, Any], ...]:
    """(threadpoolctl's controller, its set-threads function) of each BLAS library loaded,
    found once: threadpoolctl's scan of the loaded libraries takes milliseconds (fastnn's
    kernels call scipy's BLAS, loaded with fastnn; numpy's is loaded before)."""
    libs = ThreadpoolController().select(user_api="blas").lib_controllers
    # OpenBLAS's own setter: threadpoolctl's public one changes OpenBLAS's process-wide
    # setting only from its "controlling" Python thread, and fastnn's calls come from any
    return tuple((lib, getattr(lib, "_real_set_num_threads", lib.set_num_threads))
                 for lib in libs)


@contextlib.contextmanager
def blas_single_threaded() -> Iterator[None]:
    """BLAS on one thread while the ``with`` block runs: the first of the calls inside such a
    block (in any Python thread) sets it, the last one out restores the counts it found."""
    global _blas_users
    with _blas_lock:
        if _blas_users == 0:
            _blas_saved[:] = [(setter, lib.get_num_threads())
                              for lib, setter in _blas_libraries()]
            for setter, threads in _blas_saved:
                if threads != 1:
                    setter(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                for setter, threads in _blas_saved:
                    if threads is not None and threads != 1:
                        setter(threads)
                _blas_saved.clear()
