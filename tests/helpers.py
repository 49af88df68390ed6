"""Helpers shared by the test modules (``from helpers import same_bits``); fixtures are in
conftest.py, which puts this folder on ``sys.path`` (the tests run with
``--import-mode=importlib``, also from a copy of tests/ outside the source tree).

Plain functions only, no fixtures and no state: the same array in another memory layout,
bit-for-bit comparisons, a model's weights, the BLAS thread counts, an ONNX graph run by
onnxruntime, and fastnn's tuning thresholds (read, never asserted: a test sizes its inputs from them to reach both sides).
"""

import hashlib

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from fastnn.backends.native_ops import kernels


class Subclass(np.ndarray):
    """An ndarray subclass (as np.memmap and np.matrix are)."""


def with_layout(A, kind):
    """The values of ``A`` in another memory layout (or container): "C", "fortran",
    "negative" (negative strides on every axis), "strided" (every other element of a twice
    as wide buffer), "unaligned" (a view of a uint8 buffer one byte in), "readonly",
    "byteswapped", "broadcast" (zero strides along axis 0, read-only), "subclass", "list".
    Kinds that do not apply to A (0-d, one-byte items, objects) give a plain copy."""
    if kind == "list":
        return A.tolist()
    if kind == "subclass":
        return A.copy().view(Subclass)
    if A.ndim == 0 or kind == "C":
        return A.copy()
    if kind == "fortran":
        return np.asfortranarray(A)
    if kind == "negative":
        rev = (slice(None, None, -1),) * A.ndim
        V = A[rev].copy()[rev]
        assert V.size == 0 or all(s < 0 for s, n in zip(V.strides, V.shape) if n > 1)
        return V
    if kind == "strided":
        big = np.zeros(A.shape[:-1] + (2 * A.shape[-1],), dtype=A.dtype)
        big[..., ::2] = A
        V = big[..., ::2]
        assert not V.flags.c_contiguous or V.size <= 1
        return V
    if kind == "unaligned":
        if A.dtype.itemsize <= 1 or A.dtype.hasobject:
            return A.copy()
        buf = np.zeros(A.nbytes + 1, dtype=np.uint8)
        V = buf[1:].view(A.dtype).reshape(A.shape)
        V[...] = A
        assert not V.flags.aligned or V.size == 0
        return V
    if kind == "readonly":
        V = A.copy()
        V.flags.writeable = False
        return V
    if kind == "byteswapped":
        if A.dtype.hasobject or A.dtype.kind in "bUM" or A.dtype.itemsize <= 1:
            return A.copy()
        V = A.astype(A.dtype.newbyteorder())
        assert not V.dtype.isnative
        return V
    if kind == "broadcast":
        if A.shape[0] == 0:
            return A.copy()
        return np.broadcast_to(A[:1], A.shape)
    raise ValueError(f"no layout {kind!r}")


def same_bits(a, b):
    """Bit-for-bit equality of (nested lists or tuples of) arrays, scalars and None."""
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(
            same_bits(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def digest(*arrays):
    """A sha256 of the arrays' bytes (to compare results across processes)."""
    h = hashlib.sha256()
    for A in arrays:
        h.update(np.ascontiguousarray(A).tobytes())
    return h.hexdigest()


def weights(model):
    """Copies of a model's arrays, W and b of each layer in order (no bias: left out)."""
    return [A.copy() for W, b in model.parameters() for A in (W, b) if A is not None]


def assert_same_weights(a, b, **tol):
    """Two models (or two ``weights`` lists) hold the same weights: bit for bit, or within
    ``assert_allclose``'s ``tol`` when given."""
    wa = a if isinstance(a, list) else weights(a)
    wb = b if isinstance(b, list) else weights(b)
    assert len(wa) == len(wb)
    for A, B in zip(wa, wb):
        if tol:
            np.testing.assert_allclose(A, B, **tol)
        else:
            np.testing.assert_array_equal(A, B)


def blas_threads():
    """The thread count of each BLAS library loaded in the process."""
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def run_onnx(proto_or_path, X):
    """Run an ONNX graph (a ModelProto or a file's path) on X with onnxruntime (the test is
    skipped without it): {output name: array}."""
    ort = pytest.importorskip("onnxruntime")
    source = proto_or_path if isinstance(proto_or_path, str) else proto_or_path.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X})))


def tuning():
    """fastnn's tuning thresholds {name: value} (fastnn/_tuning.pyx says what each trades).
    Tests size their inputs from these to reach both sides of one; none asserts a value."""
    return kernels.tuning()
