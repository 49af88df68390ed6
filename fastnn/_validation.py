"""Argument checks of the public boundary.

Every public function validates here once, then hands plain arrays to a kernel or to the
reference: float32 or float64 (one dtype per call), C-contiguous, of the expected ndim and
non-empty shapes. A failed check raises a ValueError (bad value or shape) or TypeError (bad
type) whose message names the argument and what was expected.

Inputs X may also come as the user holds them: ``sparse_rows`` checks a scipy.sparse matrix
once and gives fastnn's CSR rows, which the first layer reads in place; ``readable_rows``
and ``finite_rows`` let a float32/float64 array of any layout (a float64 X of a float32
model, Fortran order, a read-only memmap) be read where it lies, its rows converted as the
kernels gather them.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

import numpy as np
import scipy.sparse
from numpy.typing import DTypeLike, NDArray

from ._typing import FloatArray, SeedLike
from .backends import native

_A = TypeVar("_A", bound=NDArray[Any])
from .reference import ACTIVATIONS as ACTIVATIONS  # re-exported: serialization uses it

REDUCTIONS = ("mean", "sum", "none")
_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # what the native pass reads
_MAX_DIM = 2**31 - 1  # BLAS takes 32-bit sizes


def real_array(A: object, name: str) -> NDArray[Any]:
    if A is None:
        raise TypeError(f"{name} must be an array, got None")
    if is_sparse(A):
        raise TypeError(f"{name} must be a dense array, got a scipy.sparse {type(A).__name__} "
                        f"of shape {getattr(A, 'shape', '?')}: pass {name}.toarray()")
    try:
        arr = np.asarray(A)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a rectangular numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers (bool, int or float), got dtype {arr.dtype}"
        )
    return arr


def float_dtype(*arrays: NDArray[Any] | None) -> np.dtype[np.floating[Any]]:
    """The computing dtype: float32 if every array is float32, else float64 (eq. promotion)."""
    for A in arrays:
        if A is not None and A.dtype.type is not np.float32:  # any byte order
            return np.dtype(np.float64)
    return np.dtype(np.float32)


def real_arrays(
    *named: tuple[object, str], optional: Collection[str] = ()
) -> tuple[list[NDArray[Any]], np.dtype[np.floating[Any]]]:
    """``(array, name)`` pairs -> the arrays as real-valued ndarrays and their common float
    dtype; an argument named in ``optional`` may be None and stays None (typed as an array
    all the same: the callers test their optional argument for None)."""
    arrays: list[Any] = [None if A is None and name in optional else real_array(A, name)
              for A, name in named]
    return arrays, float_dtype(*arrays)


def as_float(arr: NDArray[Any], name: str, dtype: DTypeLike, ndims: Collection[int], *,
             allow_empty: bool = False) -> FloatArray:
    """``arr`` as a C-contiguous array of ``dtype`` with ndim in ``ndims``."""
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got a {arr.ndim}-D array of shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if any(n > _MAX_DIM for n in arr.shape):
        raise ValueError(f"{name} has a dimension over {_MAX_DIM}: shape {arr.shape}")
    # C order, aligned, native byte order; copies only what is not already so (0-d stays 0-d)
    return np.require(arr, dtype, ["C", "A"])


def real(value: object, name: str, low: float | None = None, high: float | None = None, *,
          low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float: a finite real number (not a bool) in the given bounds."""
    if type(value) is not float and (  # (the common case first: an ABC check costs 0.2 us)
            isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)) \
            or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    # (typeshed's numbers.Real has no __gt__; ints, floats and NumPy scalars all compare)
    if high is not None and (value > high or (high_open and value == high)):  # type: ignore[operator]
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return float(value)


def expect_shape(arr: NDArray[Any], name: str, shape: tuple[int, ...], why: str) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} {why}, got {arr.shape}")


def activation(name: object, arg: str = "activation") -> str:
    if not isinstance(name, str):
        raise TypeError(f"{arg} must be a string, one of {ACTIVATIONS}, got {name!r}")
    if name not in ACTIVATIONS:
        raise ValueError(f"{arg} must be one of {ACTIVATIONS}, got {name!r}")
    return name


def reduction(name: object) -> str:
    if not isinstance(name, str) or name not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {name!r}")
    return name


def flag(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def out_array(out: object, shape: tuple[int, ...], dtype: np.dtype[Any],
              inputs: Iterable[NDArray[Any] | None]) -> FloatArray:
    """Check a caller's ``out=`` buffer: an ndarray of the result's shape and dtype,
    C-contiguous, writeable, sharing no memory with any input."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype} (the result's), got {out.dtype}")
    expect_shape(out, "out", shape, "(the result's)")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    if any(A is not None and np.may_share_memory(out, A) for A in inputs):
        raise ValueError("out must not share memory with an input")
    return out


def _labels_as_numbers(y: object, name: str) -> NDArray[Any]:
    arr = real_array(y, name)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} must hold finite labels, found NaN or inf")
        if (arr != np.floor(arr)).any():
            raise ValueError(f"{name} must hold integral labels, found non-integral values")
    return arr


def class_labels(y: object, name: str, N: int, K: int) -> NDArray[np.intp]:
    """Labels in 0..K-1 for N samples, as a C-contiguous intp array of shape (N,)."""
    arr = _labels_as_numbers(y, name)
    arr = arr.reshape(-1) if arr.ndim == 0 else arr
    expect_shape(arr, name, (N,), "(one label per sample)")
    if N and (arr.min() < 0 or arr.max() > K - 1):
        raise ValueError(
            f"{name} must hold class labels in 0..{K - 1} (K = {K} logits), "
            f"found values in {arr.min()}..{arr.max()}"
        )
    return np.ascontiguousarray(arr, dtype=np.intp)


def binary_labels(y: object, name: str, N: int, dtype: DTypeLike) -> FloatArray:
    """N labels in {0, 1}, as a C-contiguous array of ``dtype`` and shape (N,)."""
    arr = _labels_as_numbers(y, name)
    arr = arr.reshape(-1) if arr.ndim <= 1 or arr.shape == (N, 1) else arr
    expect_shape(arr, name, (N,), "(one label per sample)")
    if not ((arr == 0) | (arr == 1)).all():
        raise ValueError(f"{name} must hold binary labels 0 or 1, found other values")
    return np.ascontiguousarray(arr, dtype=dtype)


def targets(Y: object, name: str, shape: tuple[int, ...], dtype: DTypeLike) -> FloatArray:
    """Finite regression targets of ``shape`` (an (N,) array is taken for shape (N, 1))."""
    arr = real_array(Y, name)
    if arr.shape != shape and len(shape) == 2 and shape[1] == 1 and arr.shape == shape[:1]:
        arr = arr.reshape(shape)
    expect_shape(arr, name, shape, "(the shape of the predictions)")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, found NaN or inf")
    return np.ascontiguousarray(arr, dtype=dtype)


def rng(random_state: SeedLike, name: str = "random_state") -> np.random.Generator:
    """A NumPy Generator from None, an int seed, a SeedSequence or a Generator."""
    if isinstance(random_state, (bool, np.bool_)):
        raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, got {random_state!r}")
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name} must be None, a non-negative int or a numpy.random.Generator, "
                        f"got {random_state!r}") from None


_MASK64 = (1 << 64) - 1


def seeds(random_state: SeedLike, name: str = "random_state") -> Callable[[], int]:
    """A stream of 63-bit seeds (one per epoch's shuffle) from ``random_state``: an int seed
    (or None, drawn from the OS) gives the splitmix64 stream of that seed, the same on any
    machine and cheap to start (a Generator costs 8 us to seed); a Generator, BitGenerator
    or SeedSequence gives its own draws."""
    if random_state is None or type(random_state) is int or (
            isinstance(random_state, numbers.Integral)
            and not isinstance(random_state, (bool, np.bool_))):
        if random_state is not None and random_state < 0:
            raise ValueError(f"{name} must be None, a non-negative int or a "
                             f"numpy.random.Generator, got {random_state!r}")
        # (None: the seed drawn from the OS at the first draw, so a fit that never shuffles
        # makes no system call: ~2 us of a small fit)
        state: list[int | None] = [None if random_state is None
                                   else int(random_state) & _MASK64]

        def splitmix64() -> int:
            x = state[0]
            if x is None:
                x = int.from_bytes(os.urandom(8), "little")
            x = state[0] = (x + 0x9E3779B97F4A7C15) & _MASK64
            z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
            return (z ^ (z >> 31)) >> 1

        return splitmix64
    generator = rng(random_state, name)
    return lambda: int(generator.integers(0, 2**63))


def finite(arr: _A, name: str) -> _A:
    """``arr`` unchanged, after checking it holds no NaN or inf (a C-contiguous float32 or
    float64 array in one native pass, without NumPy's temporary: 42 vs 73 us at 1408 x 784)."""
    if arr.dtype in _NATIVE_FLOATS and arr.flags.c_contiguous and arr.flags.aligned:
        ok = native().all_finite(arr)
    else:
        ok = bool(np.isfinite(arr).all())
    if not ok:
        raise ValueError(f"{name} must be finite, found NaN or inf")
    return arr


# -- X as the user holds it -----------------------------------------------------------------

_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def is_sparse(A: object) -> bool:
    """Whether A is a scipy.sparse matrix or array (any format)."""
    return bool(scipy.sparse.issparse(A))


def sparse_dtype(X: Any, name: str) -> np.dtype[Any]:
    """The dtype of a scipy.sparse X's values, which must be real numbers."""
    dtype: np.dtype[Any] = np.dtype(X.dtype)
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int or float), got a "
                        f"scipy.sparse {type(X).__name__} of dtype {dtype}")
    return dtype


def sparse_float_dtype(X: Any, name: str, others: np.dtype[Any]) -> np.dtype[Any]:
    """The computing dtype of a sparse X with arrays whose own is ``others`` (float_dtype's
    promotion: float32 if X's values are float32 and ``others`` is)."""
    return others if sparse_dtype(X, name).type is np.float32 else np.dtype(np.float64)


def sparse_rows(X: Any, name: str, dtype: DTypeLike, n_features: int | None = None) -> Any:
    """A scipy.sparse X (any format) checked once, as fastnn's CSR rows: a
    ``scipy.sparse.csr_array`` whose values are a C-contiguous array of ``dtype`` and whose
    indices and indptr share one native int32 or int64 dtype, with N >= 1 rows of
    ``n_features`` columns (when given), indptr going from 0 by non-negative steps, indices
    in 0..n_features - 1 (unsorted and repeated indices are fine: repeats add up) and finite
    values. A CSR X is read in place (its values copied only to change their dtype, its
    indices only to give both arrays one dtype); another format is converted once.
    ValueError or TypeError naming X otherwise."""
    sparse_dtype(X, name)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D sparse matrix (N, N_in), got shape {X.shape}")
    N, K = X.shape
    if N == 0 or K == 0:
        raise ValueError(f"{name} must not be empty, got shape {X.shape}")
    if N > _MAX_DIM or K > _MAX_DIM:
        raise ValueError(f"{name} has a dimension over {_MAX_DIM}: shape {X.shape}")
    if n_features is not None and K != n_features:
        raise ValueError(f"{name} must have {n_features} features (columns), got shape "
                         f"{X.shape}")
    if X.format != "csr":
        X = X.tocsr()  # CSC, COO, ...: converted once, here
    indptr, indices = np.asarray(X.indptr), np.asarray(X.indices)
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise TypeError(f"{name}'s indices and indptr must be integers, got {indices.dtype} "
                        f"and {indptr.dtype}")
    if indptr.shape != (N + 1,):
        raise ValueError(f"{name}.indptr must have N + 1 = {N + 1} entries (N = {N} rows), got "
                         f"shape {indptr.shape}")
    if indptr[0] != 0:
        raise ValueError(f"{name}.indptr must start at 0, got {indptr[0]}")
    steps = indptr[1:] < indptr[:-1]
    if steps.any():
        raise ValueError(f"{name}.indptr must not decrease (row i's non-zeros are "
                         f"indptr[i]..indptr[i + 1] - 1): it does after row "
                         f"{int(np.argmax(steps))}")
    nnz = int(indptr[-1])
    data = np.asarray(X.data)
    if nnz > indices.shape[0] or nnz > data.shape[0]:
        raise ValueError(f"{name}.indptr says {nnz} non-zeros, but {name}.indices has "
                         f"{indices.shape[0]} and {name}.data {data.shape[0]}")
    indices, data = indices[:nnz], data[:nnz]
    if nnz and (indices.min() < 0 or indices.max() > K - 1):
        raise ValueError(f"{name}.indices must be column numbers in 0..{K - 1}, found values "
                         f"in {indices.min()}..{indices.max()}")
    index = indices.dtype if indices.dtype == indptr.dtype and indices.dtype in _INDEX_DTYPES \
        else np.dtype(np.int64)
    data = np.require(data, dtype, ["C", "A"])
    if not (native().all_finite(data) if data.size else True):
        raise ValueError(f"{name} must be finite, found NaN or inf among its stored values")
    return scipy.sparse.csr_array((data, np.require(indices, index, ["C", "A"]),
                                   np.require(indptr, index, ["C", "A"])), shape=(N, K),
                                  copy=False)


def readable_rows(X: object) -> FloatArray | None:
    """X as a plain ndarray when the kernels may read it where it lies (a 2-D float32 or
    float64 array, aligned, in native byte order, its strides whole elements: C or Fortran
    order, a strided view, a read-only np.memmap), else None."""
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype not in _NATIVE_FLOATS \
            or not X.flags.aligned or any(s % X.itemsize for s in X.strides):
        return None
    return X if type(X) is np.ndarray else X.view(np.ndarray)


def finite_rows(X: _A, name: str, dtype: np.dtype[Any]) -> _A:
    """``X`` unchanged (a ``readable_rows`` array) after checking that its values are finite
    and stay finite in ``dtype`` (a float64 X of a float32 model: |x| within float32's
    range), in one pass where it lies."""
    if not native().finite_rows(X, dtype == np.float32):
        if X.dtype.itemsize > dtype.itemsize and native().finite_rows(X, False):
            raise ValueError(f"{name} holds values too large for the model's {dtype} "
                             f"(|x| > {np.finfo(dtype).max:.3g})")
        raise ValueError(f"{name} must be finite, found NaN or inf")
    return X
