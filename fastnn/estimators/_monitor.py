"""scikit-learn's per-epoch rules for the stochastic solvers, in one small class: the
reported loss, ``tol`` / ``n_iter_no_change``, early stopping on the validation loss (with the
best epoch's weights kept), the "invscaling" and "adaptive" learning rates, ``verbose``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .._typing import FloatArray, Inputs

if TYPE_CHECKING:
    from ..layers import Linear
    from ..network import Sequential
    from ..training import History
    from ._base import _BaseMLP

#: the early-stopping split's validation part: (X_val, Y_val, y_val, sw_val)
Validation = tuple[Inputs, NDArray[Any], NDArray[Any], NDArray[np.float64] | None]


def bias(layer: Linear) -> FloatArray:
    """``layer.b``: every layer of an estimator's model has a bias (``_BaseMLP._new_model``)."""
    assert layer.b is not None
    return layer.b


class Monitor:
    """The per-epoch callback of an estimator's fit (``fastnn.training.fit``'s ``callback``).

    It writes scikit-learn's fitted attributes on the estimator (``n_iter_``, ``t_``,
    ``loss_``, ``loss_curve_``, ``best_loss_``, ``validation_scores_``,
    ``validation_loss_curve_``, ``best_validation_score_``, ``best_validation_loss_``) and the
    learning rate ``_lr`` the schedule reads, and returns True when the fit should stop.

    Parameters
    ----------
    est : the estimator (fastnn.MLPClassifier or MLPRegressor)
    n : int
        Training samples (``t_`` counts them).
    report_scale : float
        The model's mean loss per sample times this is scikit-learn's reported data loss.
    l2_scale : float
        The L2 term reported: l2_scale * sum ||W||^2 on the weights an epoch starts from.
    epochs : int
        The epochs the fit runs at most.
    validation : (X_val, Y_val, y_val, sw_val) or None
        The early-stopping split.
    """

    def __init__(self, est: _BaseMLP, *, n: int, report_scale: float, l2_scale: float,
                 epochs: int, validation: Validation | None = None) -> None:
        self.est, self.n, self.epochs = est, n, epochs
        self.report_scale, self.l2_scale = report_scale, l2_scale
        self.validation = validation
        self.schedule: str = est.learning_rate if est.solver == "sgd" else "constant"
        self.l2_start = est._l2()  # sum ||W||^2 when the next epoch starts
        self.stopped = False
        # (early stopping) the best epoch's (W, b) per layer
        self.best_params: list[tuple[FloatArray, FloatArray]] | None = None

    def __call__(self, epoch: int, history: History) -> bool:
        est = self.est
        est.n_iter_ += 1
        est.t_ += self.n
        # the L2 term on the weights the epoch started from (scikit-learn adds it batch by
        # batch on the weights before each update: the same for a single full batch)
        est.loss_ = history.loss[-1] * self.report_scale + self.l2_scale * self.l2_start
        if epoch + 1 < self.epochs:  # (the weights the next epoch starts from)
            self.l2_start = est._l2()
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            self._print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
        if self.validation is not None:
            improved = self._validate()
        else:
            assert est.best_loss_ is not None  # (None only with early stopping)
            improved = not est.loss_curve_[-1] > est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, est.loss_curve_[-1])
        est._no_improvement_count = 0 if improved else est._no_improvement_count + 1
        if self.schedule == "invscaling":
            est._lr = float(est.learning_rate_init) / (est.t_ + 1) ** est.power_t
        if est._no_improvement_count > est.n_iter_no_change:
            return self._no_improvement()
        return False

    def _validate(self) -> bool:
        # the validation loss and score of this epoch; whether the loss improved by tol
        est = self.est
        assert self.validation is not None
        assert est.validation_scores_ is not None and est.validation_loss_curve_ is not None
        assert est.best_validation_loss_ is not None  # (set with early stopping)
        X_val, Y_val, y_val, sw_val = self.validation
        Z = est._model._logits(X_val)
        val_loss = est._weighted_mean(est._report_losses(Z, Y_val), sw_val)
        val_score = est._score_logits(Z, y_val, sw_val)
        est.validation_scores_.append(val_score)
        est.validation_loss_curve_.append(val_loss)
        self._print("Validation score: %f, validation loss: %f" % (val_score, val_loss))
        improved = val_loss < est.best_validation_loss_ - est.tol
        if val_loss < est.best_validation_loss_:
            est.best_validation_loss_ = val_loss
            est.best_validation_score_ = val_score
            self.best_params = [(layer.W.copy(), bias(layer).copy())
                                for layer in est._model.layers]
        return improved

    def _no_improvement(self) -> bool:
        # n_iter_no_change epochs without improvement: stop, or (adaptive) a smaller step
        est = self.est
        if self.schedule != "adaptive" or est._lr <= 1e-6:
            self._print_no_improvement(" Stopping." if self.schedule != "adaptive"
                                       else " Learning rate too small. Stopping.")
            self.stopped = True
            return True
        est._lr /= 5.0
        est._no_improvement_count = 0
        self._print_no_improvement(" Setting learning rate to %f" % est._lr)
        return False

    def _print_no_improvement(self, end: str) -> None:
        est = self.est
        if est.verbose:  # (formatted only when shown: partial_fit gets here every call)
            what = "Validation" if self.validation is not None else "Training"
            self._print(f"{what} loss did not improve more than tol={est.tol:f} for "
                        f"{est.n_iter_no_change} consecutive epochs.{end}")

    def _print(self, line: str) -> None:
        if self.est.verbose:
            print(line, flush=True)

    def restore_best(self) -> None:
        """Put the best epoch's weights back (early stopping)."""
        if self.best_params is not None:
            for layer, (W, b) in zip(self.est._model.layers, self.best_params):
                layer.W[...] = W
                bias(layer)[...] = b


def validation_arrays(model: Sequential, split: Validation) -> Validation:
    """(X_val as ``model`` reads it, Y_val, y_val, sw_val) from _BaseMLP._validation_split's
    part (X_val: CSR rows, or a dense array)."""
    X_val, Y_val, y_val, sw_val = split
    return model._inputs(X_val, "X_val", in_place=True)[0], Y_val, y_val, sw_val
