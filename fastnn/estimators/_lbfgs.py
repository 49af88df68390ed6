"""The "lbfgs" solver: SciPy's L-BFGS-B in float64 over the flattened parameters; each
evaluation is one call of the backend's full-batch forward, loss and backward
(``Ops.objective``), with scikit-learn's L2 penalty added."""

from __future__ import annotations

import itertools
import warnings
from typing import TYPE_CHECKING, Any, Callable, cast

import numpy as np
import scipy.optimize
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning

from .. import _validation as _v
from .._typing import FloatArray, Inputs
from ..backends import TrainSpec, ops
from ..layers import Linear
from ..threads import one_blas_thread
from ._monitor import bias

if TYPE_CHECKING:
    from ._base import _BaseMLP

_CONVERGENCE_HINT = ("\nYou might also want to scale the data as shown in:\n"
                     "    https://scikit-learn.org/stable/modules/preprocessing.html")


def _flat_views(flat: FloatArray, layers: list[Linear]
                ) -> tuple[list[FloatArray], list[FloatArray]]:
    """(W of each layer, b of each layer) as views into the 1-D ``flat``: all the W, then all
    the b, each in the layer's shape but the first W, stored transposed (n_in, width) as
    scikit-learn's ``coefs_[0]``: the layout whose product the native ``loss_grad`` runs on
    fastnn's own kernel (its ``first_transposed``)."""
    Ws: list[FloatArray] = []
    bs: list[FloatArray] = []
    start = 0
    for l, layer in enumerate(layers):
        shape = layer.W.shape[::-1] if l == 0 else layer.W.shape
        Ws.append(flat[start:start + layer.W.size].reshape(shape))
        start += layer.W.size
    for layer in layers:
        b = bias(layer)
        bs.append(flat[start:start + b.size])
        start += b.size
    return Ws, bs


def fit_lbfgs(est: _BaseMLP, X: Inputs, Y: NDArray[Any], sw: NDArray[np.float64] | None
              ) -> None:
    """Minimise scikit-learn's objective for ``est._model`` on (X, Y), sample weights ``sw``:
    sum_i w_i loss_i / sum_i w_i + 0.5 alpha sum ||W||^2 / sum_i w_i (the model's loss is
    scikit-learn's: half the squared error, half the Poisson deviance, or log-loss)."""
    model = est._model
    layers = model.layers
    N = X.shape[0]
    if not _v.is_sparse(X):  # (the objective reads all N rows in place: one C copy here)
        X = np.require(X, model.dtype, ["C", "A"])
    sw_sum = float(N if sw is None else sw.sum())
    if not sw_sum > 0:
        raise ValueError("sample_weight must not be all zero")
    alpha = float(est.alpha)
    # the parameters and their gradient as views into one flat buffer each (every layer's W,
    # then every b): unpacking L-BFGS's float64 x and packing the gradient are one copy each
    size = sum(layer.W.size + bias(layer).size for layer in layers)
    theta, grad = np.empty(size, model.dtype), np.empty(size, model.dtype)
    Ws, bs = _flat_views(theta, layers)
    gWs, gbs = _flat_views(grad, layers)
    for l, (layer, W, b) in enumerate(zip(layers, Ws, bs)):
        (W.T if l == 0 else W)[...] = layer.W
        b[...] = bias(layer)
    backend = ops()
    objective = backend.objective(TrainSpec(
        weights=Ws, biases=list(bs), activations=[layer.activation for layer in layers],
        loss=model.loss_spec, X=X, Y=Y,
        sample_weight=None if sw is None else np.ascontiguousarray(sw, dtype=np.float64),
        batch_size=N, grad_weights=gWs, grad_biases=list(gbs), first_transposed=True))

    def data_loss_grad() -> float:  # sum_i w_i loss_i / sw_sum, its gradient into grad
        return cast(float, objective.loss_grad(sw_sum)) / sw_sum  # (the objective: Any)

    n_W = sum(W.size for W in Ws)
    # the objective and its gradient as two functions over one evaluation: scipy asks for
    # both at each x, one after the other, and its own memo for jac=True compares and
    # copies x several times (~20 us an evaluation, 4% of the digits fit)
    last: dict[str, NDArray[np.float64]] = {}

    def loss(x: NDArray[np.float64]) -> float:
        theta[...] = x
        data = data_loss_grad()
        # the L2 penalty 0.5 alpha sum ||W||^2 / sw_sum and its gradient on the weights
        last["g"], l2 = backend.penalized_gradient(grad, theta, n_W, alpha / sw_sum)
        last["x"] = x  # (scipy passes a copy of its x)
        return data + 0.5 * alpha * l2 / sw_sum

    def gradient(x: NDArray[np.float64]) -> NDArray[np.float64]:
        if "x" not in last or not np.array_equal(x, last["x"]):
            loss(x)
        return last["g"]

    x0 = theta.astype(np.float64)
    callback: Callable[[Any], None] | None = None
    if est.verbose:
        iterations = itertools.count(1)

        def callback(intermediate_result: Any) -> None:  # (scipy's OptimizeResult)
            print("Iteration %d, loss = %.8f" % (next(iterations), intermediate_result.fun),
                  flush=True)

    # one BLAS thread, as fastnn's fit: the same weights for any thread setting, and no
    # BLAS threads spinning against each other on a busy machine (10x slower fits seen)
    try:
        with one_blas_thread():
            res = scipy.optimize.minimize(
                loss, x0, method="L-BFGS-B", jac=gradient, callback=callback,
                options={"maxfun": int(est.max_fun), "maxiter": int(est.max_iter),
                         "gtol": float(est.tol)})
        theta[...] = res.x
    finally:  # the model's weights: L-BFGS's result (the last evaluated on an exception)
        for l, (layer, W, b) in enumerate(zip(layers, Ws, bs)):
            layer.W[...] = W.T if l == 0 else W
            bias(layer)[...] = b
    est.n_iter_ = int(min(res.nit, est.max_iter))
    if res.status != 0:
        msg = (f"lbfgs failed to converge after {est.n_iter_} iteration(s) "
               f"(status={res.status}):\n{res.message}\n")
        if est.n_iter_ == est.max_iter:
            msg += ("\nIncrease the number of iterations to improve the convergence "
                    f"(max_iter={est.max_iter}).")
        warnings.warn(msg + _CONVERGENCE_HINT, ConvergenceWarning, stacklevel=3)
    if est._report_scale(model.n_outputs) != 1:
        # loss_ in scikit-learn's reported scale: the squared error's mean over the
        # outputs (the objective sums them)
        data = est._weighted_mean(est._report_losses(model._logits(X), Y), sw)
        est.loss_ = data + 0.5 * alpha * est._l2() / sw_sum
    else:  # the objective at L-BFGS's x, as scikit-learn reports it
        est.loss_ = float(res.fun)
