"""``show_config()``: the versions, BLAS and thread settings fastnn runs with."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any, TextIO

__all__ = ["config", "show_config"]

_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "FASTNN_BACKEND")


def config() -> dict[str, Any]:
    """The settings as a dict: versions, backend, fastnn's threads, BLAS libraries (through
    threadpoolctl when it is installed) and the environment variables that steer threads.

    Returns
    -------
    dict
        Keys "fastnn", "python", "platform", "numpy", "scipy", "backend", "kernels",
        "threads", "cpu_count", "environment" (a dict) and "threadpools" (a list
        of dicts, or a note when threadpoolctl is missing).

    Examples
    --------
    >>> from fastnn.config import config
    >>> info = config()
    >>> info["backend"], info["threads"] >= 1
    ('cython', True)
    """
    import numpy
    import scipy

    from . import functional, threads
    from ._version import __version__
    from .backends.native_ops import kernels as _kernels

    info = {
        "fastnn": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "backend": functional.get_backend(),
        "kernels": _kernels.__file__,
        # fastnn's own threads (fastnn.threads): set_num_threads, threadpoolctl, OMP_NUM_THREADS
        "threads": threads.get_num_threads(),
        # fastnn's own float32 product (_gemm.h) in the kernels, and which products it takes
        "own_gemm": "none (BLAS does every product)" if not _kernels.gemm_path() else
        {2: "AVX-512", 1: "AVX2+FMA"}[_kernels.gemm_path()]
        + (" (float32 products up to 2^25 multiply-adds)" if _kernels.own_small_products()
           else " (float32 products of 2^20 to 2^25 multiply-adds; smaller ones: BLAS's "
                "small-matrix kernels)"),
        "cpu_count": os.cpu_count(),
        "environment": {name: os.environ.get(name) for name in _ENV},
    }
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["threadpools"] = "install threadpoolctl to list the BLAS and OpenMP libraries"
    else:
        info["threadpools"] = [
            {key: pool.get(key) for key in ("user_api", "internal_api", "num_threads",
                                            "version", "architecture", "filepath")}
            for pool in threadpool_info()
        ]
    return info


def show_config(file: TextIO | None = None) -> None:
    """Print ``config()`` in readable lines (to ``file``, default stdout).

    The kernels' matrix products run on the BLAS that scipy ships (scipy.linalg.cython_blas);
    numpy may load its own copy. Thread counts follow OMP_NUM_THREADS / OPENBLAS_NUM_THREADS
    and threadpoolctl's ``threadpool_limits``.

    Parameters
    ----------
    file : text file, optional
        Where to print; ``sys.stdout`` by default.

    Examples
    --------
    >>> import fastnn
    >>> fastnn.show_config()  # doctest: +ELLIPSIS
    fastnn: ...
    python: ...
    backend: cython
    ...
    """
    info = config()
    out = file or sys.stdout
    for key, value in info.items():
        if key == "environment":
            print("environment:", file=out)
            for name, setting in value.items():
                print(f"  {name}={setting if setting is not None else '(unset)'}", file=out)
        elif key == "threadpools" and isinstance(value, list):
            print("threadpools:", file=out)
            for pool in value:
                print("  " + ", ".join(f"{k}={v}" for k, v in pool.items()), file=out)
        else:
            print(f"{key}: {value}", file=out)
