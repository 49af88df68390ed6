"""The validated functional API: the notes' layer, activation and loss computations.

Each function checks its arguments once (``fastnn._validation``) and runs on the backend in
use (``fastnn.backends``): the compiled kernels ("cython", the default), or the NumPy
reference (``fastnn.reference``) on the "numpy" backend: ``set_backend("numpy")``,
``use_backend("numpy")`` or the environment variable ``FASTNN_BACKEND=numpy`` at import.

Conventions (``shared/DESIGN.md``): ``W`` has shape (N_out, N_in), ``b`` (N_out,), a batch
``X`` one sample per row, (N, N_in). A single sample ``x`` of shape (N_in,) gives 1-D
results. float32 stays float32, float64 stays float64, other real numbers become float64;
mixed float32/float64 arguments compute in float64.

Inputs and copies: every array argument may be any array-like (an ndarray, nested lists, a
scalar, a ``memoryview`` or other buffer, any object with ``__array__`` such as a CPU
torch tensor); it is converted with ``numpy.asarray``. The layer input X of ``linear`` and
``linear_backward`` may also be a scipy.sparse matrix or array (CSR is read in place; other
formats are converted to CSR once); it is never densified. An ndarray that is C-contiguous,
aligned, in native byte order and of the computing dtype is read in place, without a copy;
anything else (lists, int or bool arrays, the other float dtype, Fortran order, strided
views) is copied once into such an array. Labels are copied into an intp (class labels) or
float (0/1 labels) array unless they already are one. Results are always new NumPy arrays
(or NumPy scalars for a reduced loss), never views of an input, except that ``linear``
writes into ``out`` when given.
"""

from __future__ import annotations

from typing import Any, Literal, cast, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as _v
from . import losses as _losses
from .backends import BACKENDS, get_backend, ops, set_backend, use_backend
from ._typing import FloatArray, Inputs, Loss

__all__ = [
    "BACKENDS",
    "activate",
    "activation_grad",
    "binary_cross_entropy",
    "cross_entropy",
    "get_backend",
    "linear",
    "linear_backward",
    "log_softmax",
    "loss",
    "set_backend",
    "sigmoid",
    "softmax",
    "squared_error",
    "use_backend",
]


# ---------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------


def linear(X: ArrayLike, W: ArrayLike, b: ArrayLike | None = None, activation: str = "identity",
           *, out: FloatArray | None = None) -> FloatArray:
    """Fused linear layer: U = g(X W^T + B) (eq. 10a; one sample: eq. 1a).

    Parameters
    ----------
    X : array_like or scipy.sparse matrix, shape (N, N_in) or (N_in,)
        Inputs, one sample per row. A sparse X (finite values) is read in place as CSR:
        each stored x_ik adds x_ik W[:, k] to z_i.
    W : array_like, shape (N_out, N_in)
        Weights, W[j, k] connects input k to unit j.
    b : array_like, shape (N_out,), optional
        Biases; None for a layer without bias.
    activation : {"identity", "step", "sigmoid", "relu", "tanh", "exp"}
        g, applied elementwise.
    out : ndarray, optional
        Buffer for the result: the result's shape and dtype, C-contiguous, no overlap with X, W, b.

    Returns
    -------
    U : ndarray, shape (N, N_out) or (N_out,)
        ``out`` when given, else a new array of the computing dtype.

    Notes
    -----
    X, W and b are read in place when they are C-contiguous ndarrays of the computing dtype
    (the compiled kernel's fast path checks exactly that); otherwise each is copied once.
    A W that starts on a 64-byte boundary, as a model's layers keep theirs
    (``fastnn.layers.aligned_copy``), is read faster than one where NumPy puts a large
    array: fastnn's own float32 product (the ``own_gemm`` line of ``fastnn.show_config()``)
    runs 20-30% faster (16 to 64 rows, 784 -> 256, measured).

    Examples
    --------
    The hidden layer of the notes' section 1, problem 2 at x = 0, 1, 3, 5:

    >>> import numpy as np, fastnn.functional as F
    >>> F.linear(np.array([[0.], [1.], [3.], [5.]]), np.array([[1.], [1.]]),
    ...          np.array([-2., -4.]), "step")
    array([[0., 0.],
           [0., 0.],
           [1., 0.],
           [1., 1.]])
    """
    U = ops().linear_fast(X, W, b, activation, out)
    if U is not None:
        return U
    Xv: Inputs  # X validated: a C array, or CSR rows
    sparse = _v.is_sparse(X)
    if sparse:
        (W, b), dtype = _v.real_arrays((W, "W"), (b, "b"), optional=("b",))
        Xv = _v.sparse_rows(X, "X", _v.sparse_float_dtype(X, "X", dtype))
        dtype = Xv.dtype
    else:
        (X, W, b), dtype = _v.real_arrays((X, "X"), (W, "W"), (b, "b"), optional=("b",))
        Xv = _v.as_float(X, "X", dtype, (1, 2))
    W = _v.as_float(W, "W", dtype, (2,))
    single = Xv.ndim == 1
    X2 = Xv.reshape(1, -1) if single else Xv
    N, K = X2.shape
    M = W.shape[0]
    _v.expect_shape(W, "W", (M, K), f"(N_out, N_in) with N_in = {K} from X")
    if b is not None:
        b = _v.as_float(b, "b", dtype, (1,))
        _v.expect_shape(b, "b", (M,), f"(N_out,) with N_out = {M} from W")
    activation = _v.activation(activation)
    out2: FloatArray | None = None
    if out is not None:
        out = _v.out_array(out, (M,) if single else (N, M), dtype,
                           (Xv.data if sparse else Xv, W, b))
        out2 = out.view(np.ndarray).reshape(N, M) if out.flags.aligned else None  # (memmap: a plain view)
    U = ops().linear(X2, W, b, activation, out2)
    if out is not None:
        if out2 is None:  # a non-aligned buffer: filled from an aligned result
            out[...] = U.reshape(out.shape)
        return out
    return U.reshape(M) if single else U


def linear_backward(
    dU: ArrayLike, X: ArrayLike, W: ArrayLike, U: ArrayLike, activation: str = "identity", *,
    need_dX: bool = True,
) -> tuple[FloatArray | None, FloatArray, FloatArray]:
    """Backpropagation through U = g(X W^T + b) (eq. 13 and the chain rule, section 3).

    dZ = dU * g'(Z) with g'(Z) computed from U;  dW = dZ^T X;  db = sum_i dZ_i;  dX = dZ W.

    Parameters
    ----------
    dU : array_like, shape (N, N_out) or (N_out,)
        dL/dU, the gradient of the loss with respect to the layer's output.
    X : array_like or scipy.sparse matrix, shape (N, N_in) or (N_in,)
        The layer's input in the forward pass. A sparse X (finite values) is read in place
        as CSR: dW = dZ^T X reaches only the columns of X's stored values.
    W : array_like, shape (N_out, N_in)
        The layer's weights.
    U : array_like, shape (N, N_out) or (N_out,)
        The layer's output in the forward pass, g(X W^T + b).
    activation : str
        The layer's activation g.
    need_dX : bool
        Compute dL/dX (not needed for the first layer).

    Returns
    -------
    dX : ndarray of X's shape, or None when ``need_dX`` is False
        Dense (dZ W) for a sparse X too.
    dW : ndarray, shape (N_out, N_in)
    db : ndarray, shape (N_out,)

    Notes
    -----
    Inputs are read in place when they are C-contiguous ndarrays of the computing dtype and
    copied once otherwise; the results are new arrays.

    Examples
    --------
    A sigmoid unit u = sigmoid(w x) at z = 0 (section 2, problem 3: g'(z) = u (1 - u) = 1/4):

    >>> import numpy as np, fastnn.functional as F
    >>> X, W = np.array([[2.0]]), np.array([[0.0]])
    >>> U = F.linear(X, W, activation="sigmoid")
    >>> dX, dW, db = F.linear_backward(np.ones((1, 1)), X, W, U, "sigmoid")
    >>> dW, db, dX  # dW = g'(z) x, db = g'(z), dX = g'(z) W
    (array([[0.5]]), array([0.25]), array([[0.]]))
    """
    fast = ops().linear_backward_fast(dU, X, W, U, activation, need_dX)
    if fast is not None:
        return fast
    Xv: Inputs  # X validated: a C array, or CSR rows
    if _v.is_sparse(X):
        (dU, W, U), dtype = _v.real_arrays((dU, "dU"), (W, "W"), (U, "U"))
        Xv = _v.sparse_rows(X, "X", _v.sparse_float_dtype(X, "X", dtype))
        dtype = Xv.dtype
    else:
        (dU, X, W, U), dtype = _v.real_arrays((dU, "dU"), (X, "X"), (W, "W"), (U, "U"))
        Xv = _v.as_float(X, "X", dtype, (1, 2))
    single = Xv.ndim == 1
    dims = (1,) if single else (2,)
    W = _v.as_float(W, "W", dtype, (2,))
    dU = _v.as_float(dU, "dU", dtype, dims)
    U = _v.as_float(U, "U", dtype, dims)
    X2 = Xv.reshape(1, -1) if single else Xv
    N, K = X2.shape
    M = W.shape[0]
    _v.expect_shape(W, "W", (M, K), f"(N_out, N_in) with N_in = {K} from X")
    shape = (M,) if single else (N, M)
    _v.expect_shape(dU, "dU", shape, "(the layer output's)")
    _v.expect_shape(U, "U", shape, "(the layer output's)")
    activation = _v.activation(activation)
    need_dX = _v.flag(need_dX, "need_dX")
    dU2, U2 = dU.reshape(N, M), U.reshape(N, M)
    dX, dW, db = ops().linear_backward(dU2, X2, W, U2, activation, need_dX)
    if dX is not None and single:
        dX = dX.reshape(K)
    return dX, dW, db


# ---------------------------------------------------------------------------------------
# Activations and output maps
# ---------------------------------------------------------------------------------------


def _elementwise(Z: object, name: str) -> FloatArray:
    (Z,), dtype = _v.real_arrays((Z, name))
    return _v.as_float(Z, name, dtype, range(0, 33), allow_empty=True)


def activate(Z: ArrayLike, activation: str) -> FloatArray:
    """U = g(Z) elementwise, for any shape (the activations of section 1: eq. 2, sigmoid, ReLU;
    and tanh, exp).

    Parameters
    ----------
    Z : array_like, any shape (empty included)
    activation : {"identity", "step", "sigmoid", "relu", "tanh", "exp"}
        "step" is eq. 2's hard threshold (g(0) = 1); "relu" max(0, z); "sigmoid" eq. 3.

    Returns
    -------
    U : ndarray of Z's shape and computing dtype
        A new array (Z is read in place when it is a C-contiguous ndarray of a float dtype).

    Examples
    --------
    >>> import fastnn.functional as F
    >>> F.activate([-1.0, 0.0, 2.0], "relu")
    array([0., 0., 2.])
    """
    Z = _elementwise(Z, "Z")
    activation = _v.activation(activation)
    return ops().activate(Z, activation)  # (0-d stays a 0-d array)


def activation_grad(U: ArrayLike, activation: str) -> FloatArray:
    """g'(Z) elementwise, written from U = g(Z) alone: sigmoid u(1 - u), tanh 1 - u^2,
    relu 1 where u > 0, exp u, identity 1, step 0 (the derivatives of section 2, problem 3,
    used by backpropagation, eq. 13 and the chain rule).

    Parameters
    ----------
    U : array_like, any shape
        The activation's output g(Z).
    activation : {"identity", "step", "sigmoid", "relu", "tanh", "exp"}

    Returns
    -------
    ndarray of U's shape and computing dtype
        A new array.

    Examples
    --------
    >>> import fastnn.functional as F
    >>> F.activation_grad([0.5], "sigmoid")
    array([0.25])
    """
    U = _elementwise(U, "U")
    activation = _v.activation(activation)
    return ops().activation_grad(U, activation)


def sigmoid(Z: ArrayLike) -> FloatArray:
    """The logistic output map 1 / (1 + e^-z) (eq. 3), elementwise, stable for any z.

    Parameters
    ----------
    Z : array_like, any shape
        Logits z^O.

    Returns
    -------
    ndarray of Z's shape and computing dtype
        P(y = 1 | x) for each logit (a new array).

    Examples
    --------
    >>> import fastnn.functional as F
    >>> F.sigmoid([0.0])
    array([0.5])
    """
    return activate(Z, "sigmoid")


def _rows(Z: object, name: str) -> tuple[FloatArray, FloatArray]:
    (Z,), dtype = _v.real_arrays((Z, name))
    Z = _v.as_float(Z, name, dtype, (1, 2))
    return Z, (Z.reshape(1, -1) if Z.ndim == 1 else Z)


def softmax(Z: ArrayLike) -> FloatArray:
    """Class probabilities e^{z_k} / sum_l e^{z_l} (eq. 5) of each row of Z (N, K) or of z (K,).

    Computed with the max shift (e^{z_k - m} / sum_l e^{z_l - m}, m = max_l z_l), so large
    logits do not overflow.

    Parameters
    ----------
    Z : array_like, shape (N, K) or (K,)
        Logits z^O, one row per sample.

    Returns
    -------
    ndarray of Z's shape and computing dtype
        P(y = k | x); each row sums to 1 (a new array).

    Examples
    --------
    >>> import fastnn.functional as F
    >>> F.softmax([0.0, 0.0])
    array([0.5, 0.5])
    """
    Z, Z2 = _rows(Z, "Z")
    return ops().softmax(Z2).reshape(Z.shape)


def log_softmax(Z: ArrayLike) -> FloatArray:
    """ln softmax(Z) = z_k - ln sum_l e^{z_l}, row by row, without overflow (the log of eq. 5).

    Parameters
    ----------
    Z : array_like, shape (N, K) or (K,)
        Logits z^O, one row per sample.

    Returns
    -------
    ndarray of Z's shape and computing dtype
        ln P(y = k | x) (a new array).

    Examples
    --------
    >>> import fastnn.functional as F
    >>> F.log_softmax([0.0, 0.0])
    array([-0.69314718, -0.69314718])
    """
    Z, Z2 = _rows(Z, "Z")
    return ops().softmax(Z2, log=True).reshape(Z.shape)


# ---------------------------------------------------------------------------------------
# Losses (eq. 16-20): loss and gradient in one pass
# ---------------------------------------------------------------------------------------


def _loss(name: str, Z: FloatArray, y: NDArray[Any], reduction: object, return_grad: object,
          shape: tuple[int, ...], single: bool) -> Loss | tuple[Loss, FloatArray]:
    """Run a loss of the registry on validated (Z, y); shape the gradient as the caller's Z
    (``shape``) and, for a ``single`` sample, its "none" loss as a 0-d array."""
    reduction = _v.reduction(reduction)
    return_grad = _v.flag(return_grad, "return_grad")
    result = ops().loss(_losses.get(name), Z, y, reduction, return_grad)
    loss, dZ = result if return_grad else (result, None)
    if reduction == "none" and single:
        loss = loss.reshape(())
    return (loss, cast(FloatArray, dZ).reshape(shape)) if return_grad else loss


@overload
def binary_cross_entropy(z: ArrayLike, y: ArrayLike, *, reduction: str = ...,
                         return_grad: Literal[False] = ...) -> Loss: ...
@overload
def binary_cross_entropy(z: ArrayLike, y: ArrayLike, *, reduction: str = ...,
                         return_grad: Literal[True]) -> tuple[Loss, FloatArray]: ...
@overload
def binary_cross_entropy(z: ArrayLike, y: ArrayLike, *, reduction: str = ...,
                         return_grad: bool) -> Loss | tuple[Loss, FloatArray]: ...
def binary_cross_entropy(z: ArrayLike, y: ArrayLike, *, reduction: str = "mean",
                         return_grad: bool = False) -> Loss | tuple[Loss, FloatArray]:
    """Binary cross-entropy on the logit, ln(1 + e^z) - y z (eq. 17); gradient sigmoid(z) - y.

    Parameters
    ----------
    z : array_like, shape (N,) or (N, 1), or a scalar for one sample
        Logits z^O.
    y : array_like of N labels in {0, 1}
    reduction : {"mean", "sum", "none"}
        "sum" is the notes' L (eq. 16), "mean" is L / N, "none" the N per-sample losses.
    return_grad : bool
        Also return dL/dz, of z's shape.

    Returns
    -------
    loss : scalar of z's dtype, or ndarray (N,) for reduction="none"
    dz : ndarray, only when ``return_grad``

    Examples
    --------
    >>> import fastnn.functional as F
    >>> float(F.binary_cross_entropy([0.0], [1], reduction="sum"))  # ln 2
    0.6931471805599453
    """
    (z,), dtype = _v.real_arrays((z, "z"))
    shape = z.shape
    if z.ndim == 2 and z.shape[1] != 1:
        raise ValueError(f"z must have shape (N,) or (N, 1) (one logit per sample), got {z.shape}")
    z = _v.as_float(z, "z", dtype, (0, 1, 2)).reshape(-1)
    y = _v.binary_labels(y, "y", z.shape[0], dtype)
    return _loss("binary_cross_entropy", z, y, reduction, return_grad, shape, len(shape) == 0)


@overload
def cross_entropy(Z: ArrayLike, y: ArrayLike, *, reduction: str = ...,
                  return_grad: Literal[False] = ...) -> Loss: ...
@overload
def cross_entropy(Z: ArrayLike, y: ArrayLike, *, reduction: str = ...,
                  return_grad: Literal[True]) -> tuple[Loss, FloatArray]: ...
@overload
def cross_entropy(Z: ArrayLike, y: ArrayLike, *, reduction: str = ...,
                  return_grad: bool) -> Loss | tuple[Loss, FloatArray]: ...
def cross_entropy(Z: ArrayLike, y: ArrayLike, *, reduction: str = "mean",
                  return_grad: bool = False) -> Loss | tuple[Loss, FloatArray]:
    """Categorical cross-entropy ln sum_l e^{z_l} - z_y (eq. 18) on logits, with its gradient
    softmax(z) - r (r the one-hot code of y, eq. 19), computed stably (max shift).

    Parameters
    ----------
    Z : array_like, shape (N, K), or (K,) for one sample
        Logits z^O, one row per sample.
    y : array_like of N integer labels in 0..K-1 (the notes' 1..K, shifted down by one)
    reduction : {"mean", "sum", "none"}
    return_grad : bool
        Also return dL/dZ, of Z's shape.

    Returns
    -------
    loss : scalar of Z's dtype, or ndarray (N,) for reduction="none"
    dZ : ndarray, only when ``return_grad``

    Examples
    --------
    >>> import fastnn.functional as F
    >>> loss, dZ = F.cross_entropy([[0.0, 0.0]], [1], return_grad=True)
    >>> round(float(loss), 6), dZ
    (0.693147, array([[ 0.5, -0.5]]))
    """
    (Z,), dtype = _v.real_arrays((Z, "Z"))
    shape = Z.shape
    Z = _v.as_float(Z, "Z", dtype, (1, 2))
    Z2 = Z.reshape(1, -1) if Z.ndim == 1 else Z
    y = _v.class_labels(y, "y", *Z2.shape)
    return _loss("cross_entropy", Z2, y, reduction, return_grad, shape, len(shape) == 1)


@overload
def squared_error(Z: ArrayLike, Y: ArrayLike, *, reduction: str = ...,
                  return_grad: Literal[False] = ...) -> Loss: ...
@overload
def squared_error(Z: ArrayLike, Y: ArrayLike, *, reduction: str = ...,
                  return_grad: Literal[True]) -> tuple[Loss, FloatArray]: ...
@overload
def squared_error(Z: ArrayLike, Y: ArrayLike, *, reduction: str = ...,
                  return_grad: bool) -> Loss | tuple[Loss, FloatArray]: ...
def squared_error(Z: ArrayLike, Y: ArrayLike, *, reduction: str = "mean",
                  return_grad: bool = False) -> Loss | tuple[Loss, FloatArray]:
    """Squared error ||z - y||^2 per sample (eq. 20), gradient 2 (z - y); no 1/2 factor.

    Parameters
    ----------
    Z : array_like, shape (N, d), or (N,) for one output per sample
        Predictions z^O.
    Y : array_like of Z's shape (an (N,) Y is accepted for Z of shape (N, 1))
    reduction : {"mean", "sum", "none"}
        "mean" divides the sum by N (not by N*d as PyTorch's MSELoss does).
    return_grad : bool
        Also return dL/dZ = 2 (Z - Y) (divided by N for "mean"), of Z's shape.

    Returns
    -------
    loss : scalar of Z's dtype, or ndarray (N,) for reduction="none"
    dZ : ndarray, only when ``return_grad``

    Examples
    --------
    >>> import fastnn.functional as F
    >>> float(F.squared_error([[1.0, 2.0]], [[0.0, 0.0]]))
    5.0
    """
    return _values_loss("squared_error", Z, Y, "Y", reduction, return_grad)


def _values_loss(name: str, Z: ArrayLike, Y: ArrayLike, y_name: str, reduction: object,
                 return_grad: object) -> Loss | tuple[Loss, FloatArray]:
    """A loss on targets of Z's shape (values, or counts >= 0), validated."""
    (Z, Y), dtype = _v.real_arrays((Z, "Z"), (Y, y_name))
    Z = _v.as_float(Z, "Z", dtype, (1, 2))
    Y = _v.targets(Y, y_name, Z.shape, dtype)
    if _losses.get(name).targets == "counts" and (Y < 0).any():
        raise ValueError(f"{y_name} must hold counts >= 0 for the Poisson loss, found "
                         "negative values")
    return _loss(name, Z, Y, reduction, return_grad, Z.shape, False)


def loss(name: str, Z: ArrayLike, y: ArrayLike, *, reduction: str = "mean",
         return_grad: bool = False) -> Loss | tuple[Loss, FloatArray]:
    """Any loss of the registry (``fastnn.losses``) on logits Z, with its gradient.

    Parameters
    ----------
    name : {"binary_cross_entropy", "cross_entropy", "squared_error", "half_squared_error", "poisson"}
        The loss: the notes' three (eq. 17, 18, 20; also the functions of those names),
        half the squared error (scikit-learn's regression objective, gradient z - y) and half
        the Poisson deviance with the log link (counts y >= 0, prediction e^z, gradient
        e^z - y).
    Z : array_like
        Logits: (N,) or (N, 1) for binary cross-entropy, (N, K) or (K,) for cross-entropy,
        (N, d) or (N,) for the others.
    y : array_like
        Targets as the loss takes them: 0/1 labels, class labels 0..K-1, values of Z's
        shape, counts >= 0 of Z's shape.
    reduction : {"mean", "sum", "none"}
    return_grad : bool
        Also return dL/dZ, of Z's shape.

    Returns
    -------
    loss : scalar of Z's dtype, or ndarray (N,) for reduction="none"
    dZ : ndarray, only when ``return_grad``

    Examples
    --------
    >>> import numpy as np, fastnn.functional as F
    >>> loss, dZ = F.loss("poisson", [[0.0]], [[1.0]], return_grad=True)  # mu = 1 = y
    >>> float(loss), dZ
    (0.0, array([[0.]]))
    """
    spec = _losses.get(name)
    if spec.targets == "binary":
        return binary_cross_entropy(Z, y, reduction=reduction, return_grad=return_grad)
    if spec.targets == "classes":
        return cross_entropy(Z, y, reduction=reduction, return_grad=return_grad)
    return _values_loss(name, Z, y, "y", reduction, return_grad)
