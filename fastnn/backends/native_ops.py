"""The compiled backend: ``NativeOps(Ops)``, every method on fastnn's kernels (the extension
modules gathered by fastnn._kernels). With fastnn/threads.py, the only Python module that
imports the extension."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
from numpy.typing import NDArray

try:
    from .. import _kernels  # the compiled native layer
except ImportError as exc:  # a source checkout without a build, or a broken install
    raise ImportError(
        f"fastnn's compiled extension could not be loaded ({exc}): install fastnn with "
        "`pip install .` and import it from anywhere but a source checkout's root (whose "
        "fastnn/ folder has no compiled modules), or build in place with "
        "`python setup.py build_ext --inplace`") from exc
from .._typing import FloatArray, Inputs
from ..losses import BCE, CE, POISSON, SE, Loss
from .ops import Ops, TrainSpec

__all__ = ["NativeOps", "kernels"]

kernels = _kernels  # (fastnn.threads and fastnn.config read the native layer's settings)

_ACT = _kernels.ACTIVATION_CODES
_LOSS_KERNELS: dict[int, Any] = {BCE: _kernels.binary_cross_entropy, CE: _kernels.cross_entropy,
                 SE: _kernels.squared_error, POISSON: _kernels.poisson}


class NativeOps(Ops):
    """fastnn's compiled kernels (float32 and float64, GIL released, fastnn's threads)."""

    name = "cython"

    def linear_fast(self, X: Any, W: Any, b: Any, activation: Any, out: Any) -> FloatArray | None:
        return _kernels.linear(X, W, b, activation, out)

    def linear(self, X: Inputs, W: FloatArray, b: FloatArray | None, activation: str,
               out: FloatArray | None = None) -> FloatArray:
        if scipy.sparse.issparse(X):  # CSR rows: a row of W^T (or column of W) a non-zero
            return _kernels.sparse_linear(X.data, X.indices, X.indptr, X.shape[1], W, b,
                                          _ACT[activation], out)
        U = _kernels.linear(X, W, b, activation, out)
        if U is None:  # cannot happen: the callers' checks cover every case it refuses
            raise RuntimeError("fastnn internal error: validated arguments refused by the kernel")
        return U

    def linear_backward_fast(
        self, dU: Any, X: Any, W: Any, U: Any, activation: Any, need_dX: Any
    ) -> tuple[FloatArray | None, FloatArray, FloatArray] | None:
        return _kernels.linear_backward_fast(dU, X, W, U, activation, need_dX)

    def linear_backward(self, dU: FloatArray, X: Inputs, W: FloatArray, U: FloatArray,
                        activation: str, need_dX: bool
                        ) -> tuple[FloatArray | None, FloatArray, FloatArray]:
        if scipy.sparse.issparse(X):
            return _kernels.sparse_linear_backward(dU, X.data, X.indices, X.indptr, X.shape[1],
                                                   W, U, _ACT[activation], need_dX)
        return _kernels.linear_backward(dU, X, W, U, _ACT[activation], need_dX)

    def activate(self, Z: FloatArray, activation: str) -> FloatArray:
        return _kernels.activate(Z, _ACT[activation], np.empty_like(Z))

    def activation_grad(self, U: FloatArray, activation: str) -> FloatArray:
        return _kernels.activation_grad(U, _ACT[activation], np.empty_like(U))

    def softmax(self, Z: FloatArray, log: bool = False) -> FloatArray:
        return _kernels.softmax(Z, log, np.empty_like(Z))

    def network(self, X: FloatArray, layers: Any, output: str) -> FloatArray | None:
        return _kernels.network(X, layers, output)

    def packed_weights(self, W: FloatArray) -> FloatArray | None:
        P = _kernels.panel_units()
        if W.dtype != np.float32 or W.shape[0] < P:
            return None  # (float64, or narrower than a panel: W's own product is as fast)
        # panel p: W^T's columns (units) p P .. p P + w as an (n_in, w) C array, in turn
        return np.concatenate([W[j:j + P].T.ravel() for j in range(0, W.shape[0], P)])

    def plain_network(self, X: object, layers: Any, output: str) -> FloatArray | None:
        return _kernels.network(X, layers, output, True)

    def loss(self, loss: Loss, Z: FloatArray, y: NDArray[Any], reduction: str,
             return_grad: bool) -> Any:
        N = Z.shape[0]
        losses = np.empty(N, dtype=Z.dtype)
        dZ = np.empty_like(Z) if return_grad else None
        scale = loss.scale / N if reduction == "mean" else loss.scale
        total = _LOSS_KERNELS[loss.kernel](Z, y, losses, dZ, scale) * loss.scale
        if reduction == "none":
            if loss.scale != 1:
                losses *= Z.dtype.type(loss.scale)
            result: Any = losses
        else:
            result = Z.dtype.type(total / N if reduction == "mean" else total)
        return (result, dZ) if return_grad else result

    def epochs(self, spec: TrainSpec) -> Any:
        return _kernels.EpochRunner(spec)

    def objective(self, spec: TrainSpec) -> Any:
        return _kernels.Objective(spec)

    def shuffle(self, perm: NDArray[np.intp], seed: int) -> None:
        _kernels.shuffle(perm, seed)

    def all_finite(self, A: FloatArray, nonnegative: bool = False) -> bool:
        return bool(_kernels.all_finite(A, nonnegative))

    def sum_squares(self, arrays: list[FloatArray]) -> float:
        return float(_kernels.sum_squares(arrays))

    def copy_arrays(self, dst: list[FloatArray], src: list[FloatArray]) -> None:
        _kernels.copy_arrays(dst, src)

    def all_finite_arrays(self, arrays: list[FloatArray], nonnegative: list[bool]) -> bool:
        return bool(_kernels.all_finite_arrays(arrays, nonnegative))

    def finite_input(self, X: object, W: FloatArray) -> bool:
        return bool(_kernels.finite_input(X, W))

    def plain_labels(self, y: object, N: int, K: int) -> bool:
        return bool(_kernels.plain_labels(y, N, K))

    def readable_finite_rows(self, X: object, single: bool) -> bool:
        return bool(_kernels.readable_finite_rows(X, single))

    def finite_rows(self, X: FloatArray, single: bool) -> bool:
        return bool(_kernels.finite_rows(X, single))

    def penalized_gradient(self, grad: FloatArray, theta: FloatArray, n: int, a: float
                           ) -> tuple[NDArray[np.float64], float]:
        g, s = _kernels.penalized_gradient(grad, theta, n, a)
        return g, float(s)
