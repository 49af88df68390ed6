"""Backends: the objects every computation of fastnn runs on (thinc's ``Ops`` is the model).

``Ops`` computes with NumPy, on ``fastnn.reference`` (the notes' formulas: the correctness
oracle); ``NativeOps(Ops)`` (fastnn.backends.native_ops) overrides each method with the
compiled kernels. The models, their training and the estimators call ``ops()``, the backend
in use; ``fastnn.functional`` validates the arguments first, the backends trust them (2-D
batches, one float dtype, C-contiguous, shapes that chain, labels in range). Nothing outside
this package imports the compiled extension.

The backend is chosen by ``set_backend`` / ``use_backend`` ("cython", the default, or
"numpy"), or the environment variable FASTNN_BACKEND at import.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .native_ops import NativeOps
from .ops import Ops, TrainSpec

__all__ = ["BACKENDS", "Ops", "TrainSpec", "get_backend", "native", "ops", "set_backend",
           "use_backend"]

BACKENDS = ("cython", "numpy")


_INSTANCES: dict[str, Ops] = {}


def native() -> Ops:
    """The compiled backend (fastnn.backends.native_ops.NativeOps)."""
    return _INSTANCES["cython"]


def _check_backend(name: object) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return str(name)


_INSTANCES["numpy"] = Ops()
_INSTANCES["cython"] = NativeOps()
_current: Ops = native() if _check_backend(os.environ.get("FASTNN_BACKEND", "cython")) \
    == "cython" else _INSTANCES["numpy"]


def ops() -> Ops:
    """The backend in use."""
    return _current


def set_backend(name: str) -> None:
    """Choose the backend every computation of fastnn runs on.

    Parameters
    ----------
    name : {"cython", "numpy"}
        "cython": the compiled kernels (the default); "numpy": ``fastnn.reference``, the
        notes' formulas in plain NumPy. The environment variable ``FASTNN_BACKEND`` sets the
        backend at import.

    Raises
    ------
    ValueError
        ``name`` is not a backend.

    See Also
    --------
    use_backend : the same for a ``with`` block.

    Examples
    --------
    >>> import fastnn
    >>> fastnn.set_backend("numpy"); fastnn.get_backend()
    'numpy'
    >>> fastnn.set_backend("cython")
    """
    global _current
    _current = native() if _check_backend(name) == "cython" else _INSTANCES["numpy"]


def get_backend() -> str:
    """The backend in use.

    Returns
    -------
    {"cython", "numpy"}

    Examples
    --------
    >>> import fastnn
    >>> fastnn.get_backend()
    'cython'
    """
    return "cython" if _current is _INSTANCES.get("cython") else "numpy"


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: run the enclosed code on backend ``name``, then restore the previous one.

    Parameters
    ----------
    name : {"cython", "numpy"}

    Examples
    --------
    Compare the compiled kernel with the reference (eq. 10a):

    >>> import numpy as np, fastnn
    >>> X, W = np.ones((2, 3)), np.full((4, 3), 0.5)
    >>> with fastnn.use_backend("numpy"):
    ...     U_ref = fastnn.F.linear(X, W, activation="tanh")
    >>> bool(np.allclose(fastnn.F.linear(X, W, activation="tanh"), U_ref)), fastnn.get_backend()
    (True, 'cython')
    """
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)
