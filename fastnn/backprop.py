"""Backpropagation along the computation graph (section 3 of the notes), once, in Python.

``forward`` runs eq. 10 layer by layer and keeps what the backward pass reads; ``backward``
turns dL/dU of the last layer into (dW, db) of every layer by the chain rule (eq. 13). On
them stand: ``Sequential.gradients``; ``PythonEpochs``, the NumPy backend's mini-batch
training (gather, forward, loss, backward, update of eq. 21), which the native loop of
fastnn/_train.pyx mirrors step for step; and ``PythonObjective``, the full-batch loss and
gradient of the lbfgs solver. Every array operation goes to a backend (``fastnn.backends``),
so this one loop is the NumPy reference and, on the compiled kernels, a check of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse
from numpy.typing import NDArray

from ._typing import FloatArray, Inputs
from .updates import apply

if TYPE_CHECKING:
    from .backends.ops import Ops, TrainSpec
    from .losses import Loss

__all__ = ["PythonEpochs", "PythonObjective", "backward", "forward", "loss_gradient"]

Layers = list[tuple[FloatArray, "FloatArray | None", str]]  # (W, b, activation) per layer


def forward(ops: Ops, layers: Layers, X: Inputs) -> list[Inputs]:
    """[X, U_1, ..., U_L]: U_l = g_l(U_{l-1} W_l^T + B_l) (eq. 10) for a 2-D batch X (a C
    array, or CSR rows)."""
    outputs = [X]
    for W, b, activation in layers:
        outputs.append(ops.linear(outputs[-1], W, b, activation))
    return outputs


def backward(ops: Ops, layers: Layers, outputs: list[Inputs], dU: FloatArray
             ) -> list[tuple[FloatArray, FloatArray | None]]:
    """(dW_l, db_l) of every layer (db None without bias) from dU = dL/dU_L: for each layer
    from the last, dZ = dU * g'(Z), dW = dZ^T U_{l-1}, db = sum_i dZ_i, dU_{l-1} = dZ W
    (eq. 13 and the chain rule)."""
    grads: list[tuple[FloatArray, FloatArray | None]] = []
    for l in range(len(layers) - 1, -1, -1):
        W, b, activation = layers[l]
        dX, dW, db = ops.linear_backward(dU, outputs[l], W, outputs[l + 1], activation,
                                         need_dX=l > 0)
        grads.append((dW, db if b is not None else None))
        if dX is not None:
            dU = dX
    return grads[::-1]


def loss_gradient(ops: Ops, loss: Loss, Z: FloatArray, Y: NDArray[Any],
                  row_scale: NDArray[Any] | None) -> tuple[FloatArray, FloatArray]:
    """(per-sample losses (N,), dL/dZ) of logits Z (N, d): the gradient of sum_i c_i loss_i
    with c_i = row_scale[i] (1 without). Binary cross-entropy is eq. 17 on each of the d
    outputs (d > 1: multi-label), summed per sample."""
    N, d = Z.shape
    if loss.targets == "binary":
        losses, dZ = ops.loss(loss, Z.reshape(-1), Y.reshape(-1), "none", True)
        losses = losses.reshape(N, d).sum(axis=1, dtype=np.float64).astype(Z.dtype)
        dZ = dZ.reshape(N, d)
    else:
        losses, dZ = ops.loss(loss, Z, Y, "none", True)
    if row_scale is not None:
        dZ = dZ * row_scale.astype(Z.dtype)[:, None]
    return losses, dZ


def _layers(spec: TrainSpec) -> Layers:
    return list(zip(spec.weights, spec.biases, spec.activations))


def batch(X: Inputs, rows: NDArray[np.intp], dtype: np.dtype[Any]) -> Inputs:
    """Rows ``rows`` of X as a step computes on them: CSR rows stay sparse; dense rows (X read
    in place, of any float dtype and layout) become a C array of the model's ``dtype``."""
    Xb = X[rows]
    return Xb if scipy.sparse.issparse(Xb) else np.require(Xb, dtype, ["C", "A"])


class PythonEpochs:
    """The NumPy backend's ``Ops.epochs``: mini-batch steps batch by batch in Python."""

    def __init__(self, ops: Ops, spec: TrainSpec) -> None:
        self.ops, self.spec = ops, spec
        self.t = spec.t
        n = len(spec.weights)
        self.state = (list(spec.state[0]) or [None] * n, list(spec.state[1]) or [None] * n)

    def bind(self, X: FloatArray, Y: NDArray[Any], sample_weight: NDArray[np.float64] | None
             ) -> None:
        """Go on with new data of the same shapes (as the native loop's ``bind``)."""
        self.spec.X, self.spec.Y, self.spec.sample_weight = X, Y, sample_weight

    def run_epoch(self, perm: NDArray[np.intp], lr: float, reload: bool = True,
                  guard: bool = False, progress: Callable[[int], object] | None = None
                  ) -> float:
        """The steps over the samples in the order ``perm``; the summed (weighted) loss, or a
        non-finite number as soon as a batch's loss is not finite (before its update).
        ``guard``: the arrays a step writes are put back when the loss or any of them is not
        finite (the result is then NaN or the non-finite loss) or an exception leaves the
        epoch. ``progress(samples done)`` after each batch."""
        if not guard:
            return self._steps(perm, lr, progress)
        arrays = [A for pair in zip(self.spec.weights, self.spec.biases) for A in pair
                  if A is not None] + [A for states in self.state for s in states
                                       if s is not None for A in s if A is not None]
        saved = [A.copy() for A in arrays]
        total = math.nan  # (so when an exception leaves the epoch: the arrays are put back)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # (a divergence is the result)
                total = self._steps(perm, lr, progress)
        finally:
            diverged = not (math.isfinite(total) and all(self.ops.all_finite(A) for A in arrays))
            if diverged:
                for A, copy in zip(arrays, saved):
                    A[...] = copy
        return math.nan if diverged and math.isfinite(total) else total

    def _steps(self, perm: NDArray[np.intp], lr: float,
               progress: Callable[[int], object] | None) -> float:
        spec, ops = self.spec, self.ops
        layers = _layers(spec)
        total = 0.0
        B = spec.batch_size
        for s in range(0, len(perm), B):
            rows = perm[s:s + B]
            outputs = forward(ops, layers, batch(spec.X, rows, spec.weights[0].dtype))
            w = np.ones(len(rows)) if spec.sample_weight is None else spec.sample_weight[rows]
            losses, dU = loss_gradient(ops, spec.loss, outputs[-1], spec.Y[rows],
                                       w / len(rows))  # "mean" over the batch
            total += float((w * losses).sum())
            if not math.isfinite(total):
                return total
            self.t += 1
            apply(list(zip(spec.weights, spec.biases)),
                  backward(ops, layers, outputs, dU), self.state, optimizer=spec.optimizer,
                  lr=lr, momentum=spec.momentum, nesterov=spec.nesterov, beta1=spec.beta1,
                  beta2=spec.beta2, eps=spec.eps, t=self.t, weight_decay=spec.weight_decay)
            if progress is not None:
                progress(s + len(rows))
        return total


class PythonObjective:
    """The NumPy backend's ``Ops.objective``: forward, loss and backward over all N rows."""

    def __init__(self, ops: Ops, spec: TrainSpec) -> None:
        if spec.grad_weights is None or spec.grad_biases is None:
            raise ValueError("the objective needs grad_weights and grad_biases")
        self.ops, self.spec = ops, spec

    def loss_grad(self, norm: float) -> float:
        """sum_i w_i loss_i, and its gradient / norm into the spec's gradient arrays."""
        spec = self.spec
        assert spec.grad_weights is not None and spec.grad_biases is not None
        first = (np.ascontiguousarray(spec.weights[0].T) if spec.first_transposed
                 else spec.weights[0])
        layers = _layers(spec)
        layers[0] = (first, layers[0][1], layers[0][2])
        outputs = forward(self.ops, layers, spec.X)
        w = spec.sample_weight
        losses, dU = loss_gradient(self.ops, spec.loss, outputs[-1], spec.Y,
                                   (np.ones(len(spec.X)) if w is None else w) / norm)
        for l, (dW, db) in enumerate(backward(self.ops, layers, outputs, dU)):
            spec.grad_weights[l][...] = dW.T if l == 0 and spec.first_transposed else dW
            gb = spec.grad_biases[l]
            if gb is not None and db is not None:
                gb[...] = db
        return float(losses.sum(dtype=np.float64)) if w is None else float((w * losses).sum())
