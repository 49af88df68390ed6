"""NumPy reference of every kernel: the notes' formulas, written as the notes write them.

This module is the correctness oracle for ``fastnn._kernels`` and the "numpy" backend of
``fastnn.functional``. It has the same signatures as ``fastnn.functional`` but trusts its
arguments: ``functional`` validates them first. Batched arguments are 2-D (one sample per
row); ``functional`` turns a single 1-D sample into a batch of one and back. A layer's input
X may be a scipy.sparse matrix (CSR rows, checked by fastnn._validation.sparse_rows): its
products are then scipy's, which never densify X.

Equation numbers refer to ``shared/seed/neural-network-notes.md``.
"""

from __future__ import annotations

from typing import Any, Literal, cast, overload

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike

from ._typing import FloatArray, Loss

__all__ = [
    "ACTIVATIONS",
    "activate",
    "activation_grad",
    "binary_cross_entropy",
    "cross_entropy",
    "half_squared_error",
    "linear",
    "linear_backward",
    "log_softmax",
    "poisson",
    "sigmoid",
    "softmax",
    "squared_error",
]

ACTIVATIONS = ("identity", "step", "sigmoid", "relu", "tanh", "exp")


def sigmoid(Z: ArrayLike) -> FloatArray:
    """Logistic function 1 / (1 + e^-z) (eq. 3), evaluated without overflow.

    Parameters
    ----------
    Z : array_like of float32 or float64, any shape

    Returns
    -------
    ndarray of Z's shape and dtype
        ``e^-|z|`` is never larger than 1, so neither branch overflows.

    Examples
    --------
    >>> from fastnn import reference
    >>> reference.sigmoid([-1000.0, 0.0, 1000.0])
    array([0. , 0.5, 1. ])
    """
    Z = np.asarray(Z)
    e = np.exp(-np.abs(Z))  # e^-|z| <= 1: never overflows
    return np.where(Z >= 0, 1 / (1 + e), e / (1 + e)).astype(Z.dtype, copy=False)


def activate(Z: ArrayLike, activation: str) -> FloatArray:
    """U = g_act(Z), elementwise: the activations of section 1 (eq. 2's step, the sigmoid of
    eq. 3, ReLU) and tanh, exp.

    Parameters
    ----------
    Z : array_like of float32 or float64, any shape
    activation : {"identity", "step", "sigmoid", "relu", "tanh", "exp"}

    Returns
    -------
    ndarray of Z's shape and dtype
        A new array ("identity" copies Z).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import reference
    >>> reference.activate(np.array([-1.0, 0.0, 2.0]), "step")  # eq. 2: g(0) = 1
    array([0., 1., 1.])
    """
    Z = np.asarray(Z)
    if activation == "identity":
        return Z.copy()
    if activation == "step":  # eq. 2: g(z) = 1 if z >= 0 else 0
        return (Z >= 0).astype(Z.dtype)
    if activation == "sigmoid":
        return sigmoid(Z)
    if activation == "relu":  # g(z) = max(0, z); NaN stays NaN
        return np.where(Z < 0, Z.dtype.type(0), Z)
    if activation == "tanh":
        return np.tanh(Z)
    if activation == "exp":  # section 3, problem 2: u = exp(z)
        return np.exp(Z)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def activation_grad(U: ArrayLike, activation: str) -> FloatArray:
    """dU/dZ, elementwise, from U = g(Z) alone (so backward never needs Z).

    sigmoid u (1 - u) (section 2, problem 3), tanh 1 - u^2, relu 1 where u > 0, exp u,
    identity 1, step 0.

    Parameters
    ----------
    U : array_like of float32 or float64, any shape
        The activation's output.
    activation : {"identity", "step", "sigmoid", "relu", "tanh", "exp"}

    Returns
    -------
    ndarray of U's shape and dtype
    """
    U = np.asarray(U)
    one = U.dtype.type(1)
    if activation == "identity":
        return np.ones_like(U)
    if activation == "step":  # flat almost everywhere
        return np.zeros_like(U)
    if activation == "sigmoid":  # section 2, problem 3: f'(z) = f(z)(1 - f(z))
        return U * (one - U)
    if activation == "relu":  # 1 if z > 0, 0 if z < 0 (and 0 at z = 0)
        return (U > 0).astype(U.dtype)
    if activation == "tanh":
        return one - U * U
    if activation == "exp":  # d exp(z)/dz = exp(z) = u
        return U.copy()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def linear(X: FloatArray, W: FloatArray, b: FloatArray | None = None, activation: str = "identity",
           *, out: FloatArray | None = None) -> FloatArray:
    """U = g(X W^T + B) (eq. 10a, with B the rows b^T of eq. 11).

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix, shape (N, N_in)
    W : ndarray, shape (N_out, N_in)
    b : ndarray, shape (N_out,), optional
    activation : {"identity", "step", "sigmoid", "relu", "tanh", "exp"}
    out : ndarray, shape (N, N_out), optional
        Written with the result and returned.

    Returns
    -------
    U : ndarray, shape (N, N_out)

    Examples
    --------
    The hidden layer of the notes' section 1, problem 1 (W^H = [1, 1]^T, b^H = [-1, -3],
    step units) at x = 0, 2, 4:

    >>> import numpy as np
    >>> from fastnn import reference
    >>> reference.linear(np.array([[0.0], [2.0], [4.0]]), np.array([[1.0], [1.0]]),
    ...                  np.array([-1.0, -3.0]), "step")
    array([[0., 0.],
           [1., 0.],
           [1., 1.]])
    """
    # a sparse X: scipy's product, z_i = sum over row i's stored x_ik of x_ik W^T[k]
    Z = X @ W.T if scipy.sparse.issparse(X) else _product(X, W.T)
    if b is not None:
        Z = Z + b[None, :]  # B repeats b on the N rows (eq. 11)
    U = activate(Z, activation)
    if out is not None:
        out[...] = U
        return out
    return U


def linear_backward(
    dU: FloatArray, X: FloatArray, W: FloatArray, U: FloatArray, activation: str = "identity", *,
    need_dX: bool = True,
) -> tuple[FloatArray | None, FloatArray, FloatArray]:
    """Backpropagate dL/dU through U = g(X W^T + b) (eq. 13 and the chain rule).

    dZ = dU * g'(Z);  dW = dZ^T X;  db = sum_i dZ_i;  dX = dZ W.

    Parameters
    ----------
    dU : ndarray, shape (N, N_out)
        dL/dU.
    X : ndarray or scipy.sparse matrix, shape (N, N_in)
        The layer's input.
    W : ndarray, shape (N_out, N_in)
    U : ndarray, shape (N, N_out)
        The layer's output g(X W^T + b).
    activation : str
    need_dX : bool
        Compute dX (the first layer does not need it).

    Returns
    -------
    dX : ndarray (N, N_in) or None
    dW : ndarray (N_out, N_in)
    db : ndarray (N_out,)
    """
    dZ = dU * activation_grad(U, activation)
    # a sparse X: dW^T = X^T dZ by scipy, which adds x_ik dZ_i to the rows k of X's columns
    dW = np.ascontiguousarray((X.T @ dZ).T) if scipy.sparse.issparse(X) else _product(dZ.T, X)
    db = dZ.sum(axis=0)
    dX = _product(dZ, W) if need_dX else None
    return dX, dW, db


def _product(A: FloatArray, B: FloatArray) -> FloatArray:
    """A B, every product a_ik b_kj in its sum: BLAS (which NumPy's dot calls) may skip the
    terms of a zero a_ik, so a NaN or inf in B under a 0 of A would give 0 where the notes'
    sum gives NaN (0 * inf = NaN); where B is not finite, the sum is taken term by term."""
    if np.isfinite(B).all():
        return A.dot(B)
    with np.errstate(invalid="ignore"):  # (0 * inf = NaN, as the sum is)
        return np.einsum("ik,kj->ij", A, B)


def softmax(Z: FloatArray) -> FloatArray:
    """P(y = k | x) = e^{z_k} / sum_l e^{z_l} (eq. 5), shifted by max_l z_l for stability.

    Parameters
    ----------
    Z : ndarray, shape (N, K) or (K,)

    Returns
    -------
    ndarray of Z's shape

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import reference
    >>> reference.softmax(np.array([1000.0, 1000.0]))  # no overflow
    array([0.5, 0.5])
    """
    expZ = np.exp(Z - Z.max(axis=-1, keepdims=True))
    return expZ / expZ.sum(axis=-1, keepdims=True)


def log_softmax(Z: FloatArray) -> FloatArray:
    """ln P(y = k | x) = z_k - ln sum_l e^{z_l} (the log of eq. 5), shifted by max_l z_l for
    stability.

    Parameters
    ----------
    Z : ndarray, shape (N, K) or (K,)

    Returns
    -------
    ndarray of Z's shape
    """
    shifted = Z - Z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _reduce(losses: FloatArray, dZ: FloatArray | None, reduction: str, return_grad: bool,
            dtype: np.dtype[np.floating[Any]]) -> Loss | tuple[Loss, FloatArray]:
    """Apply the reduction to per-sample losses (eq. 16 for "sum") and to the gradient."""
    N = losses.shape[0]
    if reduction == "none":
        loss: Loss = losses.astype(dtype, copy=False)
    else:
        total = losses.sum(dtype=np.float64)
        if reduction == "mean":
            total /= N
            if dZ is not None:
                dZ = dZ / dtype.type(N)
        loss = dtype.type(total)
    return (loss, cast(FloatArray, dZ).astype(dtype, copy=False)) if return_grad else loss


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
    """g_loss(z, y) = ln(1 + e^z) - y z on the logit z (eq. 17); dg/dz = sigmoid(z) - y.

    Parameters
    ----------
    z : array_like, shape (N,)
        Logits.
    y : array_like, shape (N,)
        Labels in {0, 1}.
    reduction : {"mean", "sum", "none"}
        "sum" is the notes' L (eq. 16), "mean" L / N, "none" the N per-sample losses.
    return_grad : bool
        Also return dL/dz (divided by N for "mean").

    Returns
    -------
    loss : scalar of z's dtype, or ndarray (N,) for reduction="none"
    dz : ndarray of z's shape, only when ``return_grad``

    Examples
    --------
    >>> from fastnn import reference
    >>> float(reference.binary_cross_entropy([0.0, 0.0], [0, 1], reduction="sum"))  # 2 ln 2
    1.3862943611198906
    """
    z = np.asarray(z)
    y = np.asarray(y, dtype=z.dtype)
    # ln(1 + e^z) - y z = ln(1 + e^-|z|) + (z >= 0 ? (1 - y) z : -y z): no overflow, and no
    # cancellation between two large terms when |z| is large
    losses = np.log1p(np.exp(-np.abs(z))) + np.where(z >= 0, (1 - y) * z, -y * z)
    dz = sigmoid(z) - y if return_grad else None
    return _reduce(losses, dz, reduction, return_grad, z.dtype)


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
    """g_loss(z, y) = ln sum_l e^{z_l} - sum_k r_k z_k (eq. 18, r one-hot of y, eq. 19).

    dg/dz_k = softmax(z)_k - r_k (section 3, problem 1).

    Parameters
    ----------
    Z : array_like, shape (N, K)
        Logits, one row per sample.
    y : array_like, shape (N,)
        Labels in 0..K-1 (the notes' 1..K shifted down by one).
    reduction : {"mean", "sum", "none"}
        "sum" is the notes' L (eq. 16), "mean" L / N, "none" the N per-sample losses.
    return_grad : bool
        Also return dL/dZ (divided by N for "mean").

    Returns
    -------
    loss : scalar of Z's dtype, or ndarray (N,) for reduction="none"
    dZ : ndarray of Z's shape, only when ``return_grad``

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import reference
    >>> loss, dZ = reference.cross_entropy(np.zeros((1, 4)), [2], return_grad=True)
    >>> round(float(loss), 6), dZ  # ln 4; softmax - r
    (1.386294, array([[ 0.25,  0.25, -0.75,  0.25]]))
    """
    Z = np.asarray(Z)
    y = np.asarray(y, dtype=np.intp)
    N, K = Z.shape
    R = np.zeros_like(Z)
    R[np.arange(N), y] = 1  # one-hot code (eq. 19)
    m = Z.max(axis=1, keepdims=True)
    # ln sum_l e^{z_l} - z_y = (m - z_y) + ln sum_l e^{z_l - m}: stable for large logits
    losses = (m[:, 0] - Z[np.arange(N), y]) + np.log(np.exp(Z - m).sum(axis=1))
    dZ = softmax(Z) - R if return_grad else None
    return _reduce(losses, dZ, reduction, return_grad, Z.dtype)


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
    """g_loss(z, y) = ||z - y||^2 = sum_k (z_k - y_k)^2 (eq. 20); dg/dz = 2 (z - y).

    No 1/2 factor; "mean" divides by N, not by N*d.

    Parameters
    ----------
    Z : array_like, shape (N, d), or (N,) for one output
    Y : array_like of Z's shape
    reduction : {"mean", "sum", "none"}
        "sum" is the notes' L (eq. 16), "mean" L / N, "none" the N per-sample losses.
    return_grad : bool
        Also return dL/dZ (divided by N for "mean").

    Returns
    -------
    loss : scalar of Z's dtype, or ndarray (N,) for reduction="none"
    dZ : ndarray of Z's shape, only when ``return_grad``
    """
    Z = np.asarray(Z)
    Y = np.asarray(Y, dtype=Z.dtype)
    diff = Z - Y
    losses = (diff * diff).reshape(Z.shape[0], -1).sum(axis=1)
    dZ = 2 * diff if return_grad else None
    return _reduce(losses, dZ, reduction, return_grad, Z.dtype)


def half_squared_error(Z: ArrayLike, Y: ArrayLike, *, reduction: str = "mean",
                       return_grad: bool = False) -> Loss | tuple[Loss, FloatArray]:
    """g_loss(z, y) = ||z - y||^2 / 2 (half of eq. 20, scikit-learn's regression objective);
    dg/dz = z - y.

    Parameters and returns as ``squared_error``.
    """
    Z = np.asarray(Z)
    Y = np.asarray(Y, dtype=Z.dtype)
    diff = Z - Y
    losses = 0.5 * (diff * diff).reshape(Z.shape[0], -1).sum(axis=1)
    dZ = diff if return_grad else None
    return _reduce(losses, dZ, reduction, return_grad, Z.dtype)


def poisson(Z: ArrayLike, Y: ArrayLike, *, reduction: str = "mean",
            return_grad: bool = False) -> Loss | tuple[Loss, FloatArray]:
    """Half the Poisson deviance of counts y >= 0 with the log link, on the logits z (the
    prediction is mu = e^z): g_loss(z, y) = sum_k (y_k ln(y_k / mu_k) - y_k + mu_k), with
    0 ln 0 = 0; dg/dz = mu - y.

    Parameters and returns as ``squared_error`` (Y: counts of Z's shape).
    """
    Z = np.asarray(Z)
    Y = np.asarray(Y, dtype=Z.dtype)
    with np.errstate(over="ignore"):
        mu = np.exp(Z)
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0)
    losses = (ylogy - Y * Z - Y + mu).reshape(Z.shape[0], -1).sum(axis=1)
    dZ = mu - Y if return_grad else None
    return _reduce(losses, dZ, reduction, return_grad, Z.dtype)
