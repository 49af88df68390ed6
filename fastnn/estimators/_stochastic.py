"""The stochastic solvers ("sgd", "adam"): one ``fastnn.training.fit`` call for all the epochs,
in the native loop, with scikit-learn's per-epoch rules in a Monitor as its callback."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray
from sklearn.exceptions import ConvergenceWarning

from .._typing import Inputs
from ..training import _Settings, _fit_validated
from ._monitor import Monitor, validation_arrays

if TYPE_CHECKING:
    from ._base import _BaseMLP

STOCHASTIC_SOLVERS = ("sgd", "adam")
_BELOW_ONE = float(np.nextafter(1.0, 0.0))  # (scikit-learn allows momentum 1; fastnn < 1)


def fit_stochastic(est: _BaseMLP, X: Inputs, Y: NDArray[Any], y_out: NDArray[Any],
                   sw: NDArray[np.float64] | None, incremental: bool, seed: int | None = None
                   ) -> None:
    """Train ``est._model`` on (X, Y) with sample weights ``sw``: max_iter epochs (fit), or
    one (partial_fit: ``incremental``, continuing the optimizer state). ``seed``: the
    shuffle's, when the caller drew it (else the next draw of ``est._random_state``)."""
    if est.early_stopping and incremental:
        raise ValueError("partial_fit does not support early_stopping=True")
    est._init_stochastic_attributes()
    warm_optimizer = incremental and "_lr" in est.__dict__
    if not warm_optimizer:
        est._lr = float(est.learning_rate_init)
    validation = None
    if est.early_stopping:
        (X, Y, sw), split = est._validation_split(X, Y, y_out, sw)
        validation = validation_arrays(est._model, split)
    n = X.shape[0]
    batch_size = _batch_size(est.batch_size, n)
    n_batches = -(-n // batch_size)
    mean_w = 1.0
    if sw is not None:
        mean_w = float(sw.mean())
        if not mean_w > 0:
            raise ValueError("sample_weight must not be all zero on the training samples")
        sw = sw / mean_w
    solver = est.solver
    momentum = min(float(est.momentum), _BELOW_ONE) if solver == "sgd" else 0.0
    monitor = Monitor(est, n=n, report_scale=est._report_scale(est._model.n_outputs),
                      l2_scale=0.5 * est.alpha * n_batches / (n * mean_w),
                      epochs=1 if incremental else int(est.max_iter),
                      validation=validation)
    est.n_iter_ = 0
    try:
        # (X, Y, sw and the parameters are checked: scikit-learn's checks ran on them, or
        # the estimator's quick partial_fit path repeats a checked call)
        _fit_validated(est._model, X, Y, sw, None, _Settings(
            1 if incremental else int(est.max_iter),  # epochs
            batch_size, float(est.learning_rate_init), solver, momentum,
            bool(est.nesterovs_momentum) and momentum > 0,  # nesterov
            # weight_decay: scikit-learn's L2 penalty 0.5 alpha ||W||^2 / n on a batch
            float(est.alpha) / (batch_size * mean_w),
            bool(est.shuffle), False, 1, 0,  # shuffle, early_stopping, patience, verbose
            warm_optimizer,  # warm_start
            float(est.beta_1), float(est.beta_2), float(est.epsilon),
            (lambda epoch: est._lr) if solver == "sgd" else "constant",  # lr_schedule
            monitor),  # callback
            random_state=(int(est._random_state.randint(np.iinfo(np.int32).max))
                          if seed is None else seed))
    except KeyboardInterrupt:
        warnings.warn("Training interrupted by user.")
    except FloatingPointError as exc:
        raise ValueError(
            "Solver produced non-finite parameter weights. The input data may contain "
            f"large values and need to be preprocessed. ({exc})") from None
    if not incremental and not monitor.stopped and est.n_iter_ == est.max_iter:
        warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                      "optimization hasn't converged yet." % est.max_iter, ConvergenceWarning)
    monitor.restore_best()


def _batch_size(batch_size: int | str, n: int) -> int:
    """scikit-learn's batch size: "auto" is min(200, n); others are clipped to 1..n."""
    if batch_size == "auto":
        return min(200, n)
    if cast(int, batch_size) > n:  # (validated: "auto" or an integer >= 1)
        warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going "
                      "to be clipped")
    return max(1, min(int(cast(int, batch_size)), n))
