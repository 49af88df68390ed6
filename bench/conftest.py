"""Shared fixtures of the fastnn benchmark suites (pytest-benchmark).

Run every case once, as CI does so the suites never rot::

    pytest bench --benchmark-disable -q

Time them, one table per workload and shape::

    pytest bench --benchmark-only --benchmark-group-by=group

The machine may be small, shared and noisy: read the tables as ratios between the
contenders of one group, never as absolute times. ``python bench/compare.py`` measures the
speed goals properly (contenders interleaved in one process, medians, ratios).

The suites run with ``--import-mode=importlib``, so bench modules cannot import this file;
everything shared is a fixture or a parametrisation hook:

* ``dtype``: parametrised over float32 and float64 (ids "float32", "float64");
* ``layer_shape``: the layer grid (N, N_in, N_out), from the notes' tiny 2 -> 3 layer to
  1024 -> 1024;
* ``ce_shape``, ``bce_size``, ``se_shape``: the loss grids;
* ``layer_data``, ``logits_data``, ``binary_data``, ``regression_data``: builders of
  seeded, read-only input arrays (cached: each is built once per session);
* ``peer``: ``peer("torch")`` imports an optional peer or skips the test.
"""

import functools
import os
import sys

# numpy and scipy (whose BLAS fastnn's kernels call) each load their own OpenBLAS, and an
# idle OpenBLAS worker busy-waits for 2**OPENBLAS_THREAD_TIMEOUT cycles (2**28, ~0.1 s, by
# default) before sleeping. A benchmark of one library right after one of the other then
# runs with the other's workers spinning on its cores, and times swing by 2x to 10x. A
# short spin removes that artifact; OpenBLAS reads the variable when it is loaded, so it is
# set before numpy is imported (a value set by the caller is kept).
_NUMPY_PRELOADED = "numpy" in sys.modules
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SEED = 20240607

# (N, N_in, N_out): the notes' tiny net (4 samples, 2 inputs -> 3 hidden units), a small
# layer, an MNIST-sized first layer, a large square layer.
LAYER_SHAPES = [(4, 2, 3), (32, 64, 64), (128, 784, 128), (1024, 1024, 1024)]
# (N, K) for softmax + cross-entropy: the notes' 3 classes up to ImageNet's 1000.
CE_SHAPES = [(4, 3), (128, 10), (1024, 100), (4096, 1000)]
# N logits for sigmoid + binary cross-entropy.
BCE_SIZES = [128, 65536]
# (N, d) for identity + squared error.
SE_SHAPES = [(128, 1), (4096, 100)]
DTYPES = [np.float32, np.float64]


def layer_id(shape):
    N, n_in, n_out = shape
    return f"N{N}_{n_in}to{n_out}"


def layer_label(shape):
    N, n_in, n_out = shape
    return f"N={N} {n_in}->{n_out}"


def pytest_generate_tests(metafunc):
    """Parametrise the shared grids by fixture name (bench modules cannot import them)."""
    grids = {
        "dtype": (DTYPES, [np.dtype(d).name for d in DTYPES]),
        "layer_shape": (LAYER_SHAPES, [layer_id(s) for s in LAYER_SHAPES]),
        "ce_shape": (CE_SHAPES, [f"N{N}_K{K}" for N, K in CE_SHAPES]),
        "bce_size": (BCE_SIZES, [f"N{N}" for N in BCE_SIZES]),
        "se_shape": (SE_SHAPES, [f"N{N}_d{d}" for N, d in SE_SHAPES]),
    }
    for name, (values, ids) in grids.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values, ids=ids)


def pytest_report_header(config):
    import scipy

    def blas(cfg):
        try:
            info = cfg(mode="dicts")["Build Dependencies"]["blas"]
            return f"{info.get('name')} {info.get('version')}"
        except Exception:  # pragma: no cover - informational only
            return "?"

    threads = {k: os.environ[k] for k in
               ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT")
               if k in os.environ}
    if _NUMPY_PRELOADED:
        threads["note"] = "numpy was imported before bench/conftest.py set OPENBLAS_THREAD_TIMEOUT"
    return (f"fastnn bench: numpy {np.__version__} (BLAS {blas(np.show_config)}), "
            f"scipy {scipy.__version__} (BLAS {blas(scipy.show_config)}), "
            f"cpus {os.cpu_count()}, thread env {threads or 'unset'}")


# ---------------------------------------------------------------------------------------
# Data builders: seeded, C-contiguous, read-only (a kernel that writes into its inputs
# fails loudly instead of corrupting the next benchmark), cached per session.
# ---------------------------------------------------------------------------------------


def _frozen(**arrays):
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=None)
def build_layer(N, n_in, n_out, dtype):
    """X (N, n_in), W (n_out, n_in) scaled by 1/sqrt(n_in), b (n_out,), the forward
    U = relu(X W^T + b) and an upstream gradient dU (N, n_out)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng([SEED, N, n_in, n_out])
    X = rng.standard_normal((N, n_in)).astype(dtype)
    W = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(dtype)
    b = (0.1 * rng.standard_normal(n_out)).astype(dtype)
    U = np.maximum(X @ W.T + b, 0).astype(dtype)
    dU = rng.standard_normal((N, n_out)).astype(dtype)
    return _frozen(X=X, W=W, b=b, U=U, dU=dU)


@functools.lru_cache(maxsize=None)
def build_logits(N, K, dtype):
    """Logits Z (N, K) and integer labels y in 0..K-1."""
    rng = np.random.default_rng([SEED, 1, N, K])
    Z = (2.0 * rng.standard_normal((N, K))).astype(np.dtype(dtype))
    y = rng.integers(0, K, size=N).astype(np.intp)
    return _frozen(Z=Z, y=y)


@functools.lru_cache(maxsize=None)
def build_binary(N, dtype):
    """Logits z (N,) and labels y in {0, 1}."""
    rng = np.random.default_rng([SEED, 2, N])
    z = (2.0 * rng.standard_normal(N)).astype(np.dtype(dtype))
    y = rng.integers(0, 2, size=N).astype(np.intp)
    return _frozen(z=z, y=y)


@functools.lru_cache(maxsize=None)
def build_regression(N, d, dtype):
    """Predictions Z (N, d) and targets Y (N, d)."""
    rng = np.random.default_rng([SEED, 3, N, d])
    Z = rng.standard_normal((N, d)).astype(np.dtype(dtype))
    Y = rng.standard_normal((N, d)).astype(np.dtype(dtype))
    return _frozen(Z=Z, Y=Y)


@pytest.fixture
def layer_data(layer_shape, dtype):
    """The arrays of one layer of the grid (see ``build_layer``), as a dict."""
    return build_layer(*layer_shape, dtype)


@pytest.fixture
def logits_data(ce_shape, dtype):
    return build_logits(*ce_shape, dtype)


@pytest.fixture
def binary_data(bce_size, dtype):
    return build_binary(bce_size, dtype)


@pytest.fixture
def regression_data(se_shape, dtype):
    return build_regression(*se_shape, dtype)


# ---------------------------------------------------------------------------------------
# Optional peers
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def peer():
    """``peer("torch")``: the module if installed, else the calling test is skipped.

    Call it inside the test (only the cases that use the peer skip), not at module level.
    """

    def _import(name, minversion=None):
        return pytest.importorskip(name, minversion=minversion,
                                   reason=f"optional peer {name!r} is not installed")

    return _import
