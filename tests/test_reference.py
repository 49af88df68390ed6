"""fastnn.reference, the oracle: the notes' formulas in NumPy.

Every test that takes the ``backend`` fixture runs the reference as the "numpy" backend of
fastnn.functional: test_functional.py checks it against finite differences and the compiled
kernels against it, test_losses.py each loss of the registry. Here is what concerns the
reference alone: it is built on nothing it is used to check, and its products keep IEEE's
NaN where BLAS would skip a zero.
"""

import ast
import pathlib

import numpy as np
import pytest

import fastnn
from fastnn import functional as F
from fastnn import reference


def test_the_reference_is_built_on_numpy_and_scipy_alone():
    """An oracle that called the kernels, the validation or the backends would check them
    against themselves: reference.py imports NumPy, scipy.sparse (sparse X's products) and
    fastnn's type aliases, nothing else."""
    tree = ast.parse(pathlib.Path(reference.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert imported <= {"__future__", "typing", "numpy", "numpy.typing", "scipy.sparse",
                        "._typing"}, imported


def test_reference_linear_propagates_nan_of_zero_inputs(dtype):
    """A NaN or inf weight under a 0 input gives NaN (0 * NaN = NaN) on both backends: BLAS's
    zero-skipping product must not drop it (reference._product sums term by term then)."""
    X = np.array([[0.0]], dtype=dtype)
    W = np.array([[np.nan], [1.0]], dtype=dtype)
    expected = np.array([[np.nan, 0.0]], dtype=dtype)
    for backend in ("cython", "numpy"):
        with fastnn.use_backend(backend), np.errstate(all="ignore"):
            U = F.linear(X, W)
            # dX = dZ W = 0 * inf + 1 * 1 = NaN (a zero-skipping product says 1)
            dX, _, _ = F.linear_backward(np.array([[0.0, 1.0]], dtype), X, np.array(
                [[np.inf], [1.0]], dtype), np.zeros((1, 2), dtype), "identity")
        assert np.array_equal(U, expected, equal_nan=True), (backend, U)
        assert np.isnan(dX[0, 0]), (backend, dX)
