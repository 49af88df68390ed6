"""Shared fixtures of the fastnn test suite.

The tests import the *installed* ``fastnn`` (pyproject sets ``--import-mode=importlib``);
nothing here puts the source tree on ``sys.path``. The plain helper functions the test modules
share are in ``helpers.py`` next to this file: this folder goes on ``sys.path`` (as pytest's
default "prepend" import mode would put it), so ``from helpers import ...`` works wherever tests/
is run from, a copy outside the source tree included. Test modules never import each other.
"""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
pytest.register_assert_rewrite("helpers")

import fastnn  # noqa: E402
from helpers import with_layout  # noqa: E402

BACKENDS = ("cython", "numpy")
DTYPES = (np.float32, np.float64)

# Per-dtype tolerances for comparing fastnn against the float64 NumPy reference.
# float32: a handful of ulps (eps ~ 1.2e-7) amplified by sums of up to ~1000 terms and by
# exp/tanh; atol is relative to the magnitude of the expected array (see ``assert_close``).
# float64: eps ~ 2.2e-16, same amplification, with ample room.
TOLERANCES = {
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-10},
}


def pytest_report_header(config):
    from fastnn import _kernels

    return [
        f"fastnn {fastnn.__version__} from {fastnn.__file__}",
        f"fastnn backend: {fastnn.get_backend()} (compiled kernels: {_kernels.__file__}), "
        f"threads: {fastnn.get_num_threads()}, numpy {np.__version__}",
    ]


@pytest.fixture(autouse=True)
def _restore_backend():
    """Every test starts on, and leaves behind, the default backend."""
    before = fastnn.get_backend()
    yield
    fastnn.set_backend(before)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test on the compiled kernels ("cython") and on the NumPy reference ("numpy")."""
    with fastnn.use_backend(request.param):
        assert fastnn.get_backend() == request.param
        yield request.param


@pytest.fixture(params=DTYPES, ids=lambda t: np.dtype(t).name)
def dtype(request):
    return request.param


@pytest.fixture
def tol(dtype):
    """{"rtol": ..., "atol": ...} for results computed in ``dtype``."""
    return dict(TOLERANCES[np.dtype(dtype)])


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture
def assert_close():
    """``assert_close(actual, expected, dtype)``: compare with ``dtype``'s tolerance.

    ``atol`` scales with the magnitude of ``expected`` (its max |.|, at least 1), so large
    logits or long sums are judged relative to their size; ``scale`` raises it further for
    results that sum ``scale`` rounded terms.
    """

    def check(actual, expected, dtype, *, scale=1.0, err_msg=""):
        t = TOLERANCES[np.dtype(dtype)]
        expected = np.asarray(expected, dtype=np.float64)
        magnitude = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        np.testing.assert_allclose(
            np.asarray(actual, dtype=np.float64),
            expected,
            rtol=t["rtol"],
            atol=t["atol"] * magnitude * scale,
            err_msg=err_msg,
        )

    return check


@pytest.fixture
def make_layer(rng):
    """``make_layer(N, N_in, N_out, dtype)`` -> (X, W, b) with W scaled by 1/sqrt(N_in)
    so that Z = X W^T + b stays O(1) (exp and sigmoid neither overflow nor saturate)."""

    def make(N, n_in, n_out, dtype):
        X = rng.standard_normal((N, n_in)).astype(dtype)
        W = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(dtype)
        b = (0.5 * rng.standard_normal(n_out)).astype(dtype)
        return X, W, b

    return make


# the fixture's names and the helper's kinds
LAYOUTS = {
    "C": "C",
    "fortran": "fortran",
    "strided": "strided",
    "negative_strides": "negative",
    "readonly": "readonly",
    "byteswapped": "byteswapped",
    "unaligned": "unaligned",
}


@pytest.fixture(params=list(LAYOUTS))
def layout(request):
    """(name, transform): an array of the same values in another memory layout."""
    kind = LAYOUTS[request.param]
    return request.param, lambda A: with_layout(A, kind)


@pytest.fixture
def numerical_gradient():
    """``numerical_gradient(f, A, eps=1e-6)``: central differences of the scalar ``f()`` with
    respect to every entry of the float64 array ``A``, perturbed in place and restored."""

    def grad(f, A, eps=1e-6):
        assert A.dtype == np.float64 and A.flags.writeable
        G = np.empty(A.shape, dtype=np.float64)
        flat, gflat = A.reshape(-1), G.reshape(-1)
        assert np.shares_memory(flat, A)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + eps
            f_plus = float(f())
            flat[i] = keep - eps
            f_minus = float(f())
            flat[i] = keep
            gflat[i] = (f_plus - f_minus) / (2 * eps)
        return G

    return grad


# -- the hardening suites' counts (inputs tried, calls made), printed at the end of the run --

_HARDENING_COUNTS = {}


@pytest.fixture(scope="module", autouse=True)
def _hardening_counts(request):
    """A test module with a module-level ``COUNTS`` dict gets it printed in the run's summary."""
    yield
    counts = getattr(request.module, "COUNTS", None)
    if isinstance(counts, dict):
        _HARDENING_COUNTS[os.path.relpath(request.module.__file__, HERE)] = dict(counts)


def pytest_terminal_summary(terminalreporter):
    if _HARDENING_COUNTS:
        terminalreporter.section("fastnn hardening counts")
        for name, counts in sorted(_HARDENING_COUNTS.items()):
            terminalreporter.write_line(
                f"{name}: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
