"""fastnn.reference, the oracle: the notes' formulas in NumPy.

Every test that takes the ``backend`` fixture runs the reference as the "numpy" backend of
fastnn.functional: test_functional.py checks it against finite differences and the compiled
kernels against it, test_losses.py each loss of the registry. Here is what concerns the
reference alone: it is built on nothing it is used to check, and its known bug, pinned.
"""

import ast
import pathlib

import numpy as np
import pytest

import fastnn
from fastnn import functional as F
from fastnn import reference


def test_the_reference_is_built_on_numpy_alone():
    """An oracle that called the kernels, the validation or the backends would check them
    against themselves: reference.py imports NumPy and fastnn's type aliases, nothing else."""
    tree = ast.parse(pathlib.Path(reference.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert imported <= {"__future__", "typing", "numpy", "numpy.typing", "._typing"}, imported


# ---------------------------------------------------------------------------------------
# Known bugs, pinned (strict: an unexpected pass means the bug was fixed; drop the xfail)
# ---------------------------------------------------------------------------------------

@pytest.mark.xfail(strict=True, reason=(
    "BUG (reference.py): reference.linear computes X.dot(W.T); for a single row NumPy calls "
    "BLAS gemv, which skips the zero entries of x, so a NaN or inf weight whose input is 0 "
    "gives 0 instead of NaN (0 * NaN = NaN): the numpy backend's linear / predict / "
    "linear_backward silently drop a NaN weight, the cython kernels propagate it. Fix: "
    "evaluate the products without zero-skipping (e.g. np.matmul, or "
    "(X[:, :, None] * W.T[None]).sum(1)) in reference.linear and reference.linear_backward."))
def test_reference_linear_propagates_nan_of_zero_inputs(dtype):
    X = np.array([[0.0]], dtype=dtype)
    W = np.array([[np.nan], [1.0]], dtype=dtype)
    expected = np.array([[np.nan, 0.0]], dtype=dtype)
    for backend in ("cython", "numpy"):
        with fastnn.use_backend(backend), np.errstate(all="ignore"):
            U = F.linear(X, W)
        assert np.array_equal(U, expected, equal_nan=True), (backend, U)
