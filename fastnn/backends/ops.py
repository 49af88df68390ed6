"""The backends' interface, ``Ops``, and its NumPy implementation (see fastnn.backends)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import reference
from .._typing import FloatArray, Inputs, OptState
from ..backprop import PythonEpochs, PythonObjective
from ..losses import Loss

__all__ = ["Ops", "TrainSpec"]


@dataclass
class TrainSpec:
    """What a training loop is built on: the model's arrays (updated in place), the loss,
    the optimizer and its state, the data. ``Ops.epochs`` runs mini-batch epochs over it,
    ``Ops.objective`` the full-batch loss and gradient (the lbfgs solver's).

    The arrays are as the native loop writes them: exact ndarrays of one float dtype (the
    model's), C-contiguous and aligned; labels intp, targets of the model's dtype, sample
    weights float64 (N,) or None. X, which is only read, may also be a float32/float64 array
    of any layout (``_validation.readable_rows``: its rows are converted to the model's dtype
    as a batch gathers them) or CSR rows of the model's dtype (``_validation.sparse_rows``:
    the first layer then reads the batch's non-zeros in place).
    """

    weights: list[FloatArray]              #: each layer's W (n_out, n_in), updated in place
    biases: list[FloatArray | None]        #: each layer's b, or None
    activations: list[str]                 #: each layer's g
    loss: Loss                             #: from fastnn.losses
    X: Inputs                              #: the inputs (N, n_in)
    Y: NDArray[Any]                        #: the targets as the loss takes them
    sample_weight: NDArray[np.float64] | None = None
    batch_size: int = 32                   #: (the objective: all N rows)
    optimizer: str = "sgd"                 #: "sgd" (eq. 21, momentum, Nesterov) or "adam"
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0              #: L2 on the weights: g += weight_decay W
    state: OptState = field(default_factory=lambda: ([], []))  #: optim.new_state's layout
    t: int = 0                             #: optimizer steps taken
    grad_weights: list[FloatArray] | None = None    #: (objective) where dW goes
    grad_biases: list[FloatArray | None] | None = None
    first_transposed: bool = False         #: (objective) weights[0], grad_weights[0] as W^T
    one_step: bool = False                 #: (epochs) one batch per run_epoch (train_on_batch)


class Ops:
    """The NumPy backend: every method on fastnn.reference (and the Python training loop of
    fastnn.backprop). Arguments are validated by the callers."""

    name = "numpy"

    # -- layers --------------------------------------------------------------------------

    def linear_fast(self, X: Any, W: Any, b: Any, activation: Any, out: Any) -> FloatArray | None:
        """A compiled fast path that checks its own arguments, or None (then validate)."""
        return None

    def linear(self, X: Inputs, W: FloatArray, b: FloatArray | None, activation: str,
               out: FloatArray | None = None) -> FloatArray:
        """U = g(X W^T + B) (eq. 10a) for a 2-D batch: a C array or CSR rows of W's dtype."""
        return reference.linear(X, W, b, activation, out=out)

    def linear_backward_fast(
        self, dU: Any, X: Any, W: Any, U: Any, activation: Any, need_dX: Any
    ) -> tuple[FloatArray | None, FloatArray, FloatArray] | None:
        """A compiled fast path that checks its own arguments, or None (then validate)."""
        return None

    def linear_backward(self, dU: FloatArray, X: Inputs, W: FloatArray, U: FloatArray,
                        activation: str, need_dX: bool
                        ) -> tuple[FloatArray | None, FloatArray, FloatArray]:
        """(dX or None, dW, db) through U = g(X W^T + b) (eq. 13, section 3); X a C array or
        CSR rows (dX = dZ W is dense either way)."""
        return reference.linear_backward(dU, X, W, U, activation, need_dX=need_dX)

    def activate(self, Z: FloatArray, activation: str) -> FloatArray:
        """g(Z), a new array (any shape)."""
        return np.asarray(reference.activate(Z, activation))

    def activation_grad(self, U: FloatArray, activation: str) -> FloatArray:
        """g'(Z) from U = g(Z), a new array."""
        return np.asarray(reference.activation_grad(U, activation))

    def softmax(self, Z: FloatArray, log: bool = False) -> FloatArray:
        """softmax (eq. 5) or log-softmax of each row of a 2-D Z, a new array."""
        return reference.log_softmax(Z) if log else reference.softmax(Z)

    def output_map(self, Z: FloatArray, output: str) -> FloatArray:
        """g_out(Z) for the output maps of fastnn.losses: sigmoid (eq. 3), softmax (eq. 5),
        identity (eq. 7), exp (Poisson's mean)."""
        if output == "softmax":
            return self.softmax(Z)
        if output == "identity":
            return Z
        return self.activate(Z, output)

    def network(self, X: FloatArray, layers: Any, output: str) -> FloatArray | None:
        """g_out(... g_1(X W_1^T + B_1) ...) in one call, or None (then layer by layer). X
        dense, a C array of the layers' dtype or (``_validation.readable_rows``) another."""
        return None

    def packed_weights(self, W: FloatArray) -> FloatArray | None:
        """A frozen layer's W (n_out, n_in) packed for this backend's products of its
        predictions (``Linear.freeze``; ``network`` uses it while W is the frozen array), or
        None where the backend has none for it."""
        return None

    def plain_network(self, X: object, layers: Any, output: str) -> FloatArray | None:
        """``network`` on an X not yet checked, where X is the common case (a C array of the
        layers' dtype, every value finite), checked in the same call; else None (the caller
        then checks X first)."""
        return None

    # -- losses --------------------------------------------------------------------------

    def loss(self, loss: Loss, Z: FloatArray, y: NDArray[Any], reduction: str,
             return_grad: bool) -> Any:
        """The loss (eq. 16 with the loss's g_loss) of logits Z (N, d) and validated y, and
        with ``return_grad`` dL/dZ: loss or (loss, dZ), as fastnn.reference returns them."""
        return loss.reference(Z, y, reduction=reduction, return_grad=return_grad)

    # -- training ------------------------------------------------------------------------

    def epochs(self, spec: TrainSpec) -> Any:
        """An object with ``run_epoch(perm, lr, reload=True) -> summed loss`` (mini-batch
        steps over the samples in the order perm) and ``t`` (steps taken)."""
        return PythonEpochs(self, spec)

    def objective(self, spec: TrainSpec) -> Any:
        """An object with ``loss_grad(norm) -> sum_i w_i loss_i``: the gradient of that sum
        / norm over all N rows into spec.grad_weights / grad_biases (no update)."""
        return PythonObjective(self, spec)

    def shuffle(self, perm: NDArray[np.intp], seed: int) -> None:
        """Shuffle ``perm`` in place: the order of an epoch. One algorithm on both backends
        (Fisher-Yates drawing from the splitmix64 stream of ``seed``), so that both train on
        the same batches; here the draws are vectorised and the swaps run in Python."""
        n = perm.shape[0]
        if n < 2:
            return
        golden = np.uint64(0x9E3779B97F4A7C15)
        with np.errstate(over="ignore"):  # (arithmetic modulo 2^64, as in C)
            x = np.uint64(seed) + golden * np.arange(1, n, dtype=np.uint64)
            z = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z ^= z >> np.uint64(31)
            i = np.arange(n - 1, 0, -1, dtype=np.uint64)  # the draw for position i
            if n - 1 < 0xFFFFFFFF:  # j uniform in 0..i: the high 32 bits scaled (Lemire)
                j = ((z >> np.uint64(32)) * (i + np.uint64(1))) >> np.uint64(32)
            else:
                j = z % (i + np.uint64(1))
        for pos, other in zip(range(n - 1, 0, -1), j.astype(np.intp).tolist()):
            perm[pos], perm[other] = perm[other], perm[pos]

    def all_finite(self, A: FloatArray, nonnegative: bool = False) -> bool:
        """Whether no entry of A is NaN or inf (and, with ``nonnegative``, none below 0)."""
        return bool(np.isfinite(A).all()) and not (nonnegative and A.size and A.min() < 0)

    def sum_squares(self, arrays: list[FloatArray]) -> float:
        """sum ||A||^2 over the arrays, in float64 (the L2 penalty's sum of squares)."""
        with np.errstate(over="ignore"):  # (an overflow is inf, as the compiled one gives)
            return float(sum(np.dot(a, a) for a in (np.ravel(A).astype(np.float64)
                                                    for A in arrays)))

    def copy_arrays(self, dst: list[FloatArray], src: list[FloatArray]) -> None:
        """``dst[i][...] = src[i]`` for each pair (the same shapes and dtypes)."""
        for D, S in zip(dst, src):
            np.copyto(D, S)

    def all_finite_arrays(self, arrays: list[FloatArray], nonnegative: list[bool]) -> bool:
        """``all_finite(A, nonneg)`` of every (A, nonneg) pair, in one call."""
        return all(self.all_finite(A, nn) for A, nn in zip(arrays, nonnegative))

    def finite_input(self, X: object, W: FloatArray) -> bool:
        """Whether X is a model's input in the common case: an exact 2-D ndarray of W's
        dtype, C-contiguous, aligned, in native byte order, with at least one row and
        W.shape[1] columns, every value finite (W: the first layer's weights)."""
        return (type(X) is np.ndarray and X.ndim == 2 and X.dtype == W.dtype
                and X.dtype.isnative and X.shape[0] > 0 and X.shape[1] == W.shape[1]
                and X.flags.c_contiguous and X.flags.aligned and self.all_finite(X))

    def plain_labels(self, y: object, N: int, K: int) -> bool:
        """Whether y is a classifier's labels in the common case: an exact 1-D intp ndarray,
        C-contiguous, aligned, in native byte order, of N labels in 0..K-1."""
        return (type(y) is np.ndarray and y.ndim == 1 and y.dtype == np.intp
                and y.dtype.isnative and y.shape[0] == N and y.flags.c_contiguous
                and y.flags.aligned and not (N and (y.min() < 0 or y.max() >= K)))

    def readable_finite_rows(self, X: object, single: bool) -> bool:
        """Whether X is a 2-D float32/float64 ndarray the kernels read where it lies (aligned,
        native byte order, strides of whole elements) and ``finite_rows(X, single)``."""
        return (isinstance(X, np.ndarray) and X.ndim == 2
                and X.dtype in (np.dtype(np.float32), np.dtype(np.float64))
                and X.flags.aligned and all(s % X.itemsize == 0 for s in X.strides)
                and self.finite_rows(X, single))

    def finite_rows(self, X: FloatArray, single: bool) -> bool:
        """Whether every entry of the 2-D float array X (any layout) is finite, and stays so
        as float32 when ``single``; a block of rows at a time (no copy of X)."""
        dtype = np.float32 if single else X.dtype
        step = max(1, (1 << 16) // max(1, X.shape[1]))
        with np.errstate(over="ignore"):
            return all(bool(np.isfinite(X[i:i + step].astype(dtype, copy=False)).all())
                       for i in range(0, X.shape[0], step))

    def penalized_gradient(self, grad: FloatArray, theta: FloatArray, n: int, a: float
                           ) -> tuple[NDArray[np.float64], float]:
        """(g, s) for the lbfgs solver: g = grad + a theta on the first n entries (the
        weights), in float64; s = the sum of their squares."""
        g = grad.astype(np.float64)
        w = theta[:n].astype(np.float64)
        g[:n] += a * w
        with np.errstate(over="ignore"):
            return g, float(np.dot(w, w))
