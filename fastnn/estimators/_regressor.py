"""MLPRegressor: scikit-learn's multi-layer perceptron regressor on fastnn."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.validation import column_or_1d, validate_data

from .._typing import FloatArray, Inputs
from ..backends import native
from ._base import _STOCHASTIC_SOLVERS, FloatDtype, StrOptions, _BaseMLP, _dtypes, available_if

__all__ = ["MLPRegressor"]

_Regressor = TypeVar("_Regressor", bound="MLPRegressor")


class MLPRegressor(RegressorMixin, _BaseMLP):  # type: ignore[misc]  # (scikit-learn: Any)
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` on fastnn.

    The parameters and fitted attributes are those of ``sklearn.neural_network.MLPRegressor``
    (same names, defaults and meanings; see its documentation and ``MLPClassifier`` here for
    the solvers, ``learning_rate``, ``early_stopping`` and ``alpha``), plus ``dtype``. One or
    several outputs (y of shape (n_samples,) or (n_samples, n_outputs)).

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        Half the squared error (identity output; fastnn's "half_squared_error"), or half the
        Poisson deviance with a log link (output exp(z), y >= 0; fastnn's "poisson"); both
        train in the native loop.
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate
        As MLPClassifier's.
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start
        As scikit-learn's.
    momentum, nesterovs_momentum, beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As scikit-learn's.
    early_stopping, validation_fraction
        As scikit-learn's; early stopping watches the validation loss (see MLPClassifier),
        ``validation_scores_`` records the R^2.
    dtype : {"float32", "float64"}, default="float32"
        The dtype of the weights and of the training arithmetic; predictions come back as
        float64 unless X is float32.

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_
        As scikit-learn's.
    n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_
        As scikit-learn's.
    coefs_, intercepts_
        As scikit-learn's (``coefs_`` are views, see MLPClassifier).
    validation_loss_curve_, best_validation_loss_, model_
        As MLPClassifier's.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fastnn import MLPRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), solver="lbfgs", max_iter=50,
    ...                    random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    loss: str

    _parameter_constraints = {
        **_BaseMLP._parameter_constraints,
        **({"loss": [StrOptions({"squared_error", "poisson"})]} if StrOptions is not None
           else {}),
    }

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: ArrayLike = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: int | str = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True, random_state: int | np.random.RandomState | None = None,
                 tol: float = 1e-4, verbose: bool | int = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: int | float = 10, max_fun: int = 15000,
                 dtype: DTypeLike = "float32") -> None:
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _fastnn_loss(self) -> str:
        # scikit-learn's objective: half the squared error (gradient z - y), or half the
        # Poisson deviance with the log link (fastnn.losses)
        return "poisson" if self.loss == "poisson" else "half_squared_error"

    def _out_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _report_scale(self, d: int) -> float:
        # scikit-learn reports the squared error's mean over the d outputs (its gradient
        # sums them: the model's loss per sample)
        return 1.0 / d if self._model.loss_name == "half_squared_error" else 1.0

    def _n_outputs(self, Y: NDArray[Any]) -> int:
        return int(Y.shape[1])

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool,
                        dtype: FloatDtype) -> tuple[Inputs, NDArray[Any], NDArray[Any]]:
        # (X, y: as the user passed them, then as scikit-learn's validate_data returns them)
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=_dtypes(dtype), reset=reset)
        X = self._model_input(X, dtype)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("loss='poisson' needs non-negative targets y")
        Y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=dtype)
        return X, Y, y

    def _score_logits(self, Z: FloatArray, y: NDArray[Any], sw: NDArray[np.float64] | None
                      ) -> float:
        pred = self._outputs(Z.astype(np.float64))
        if not np.isfinite(pred).all():
            return np.nan
        return float(r2_score(y, pred, sample_weight=sw))

    def _outputs(self, Z: FloatArray) -> FloatArray:
        if self._model.loss_name == "poisson":  # the mean e^z
            with np.errstate(over="ignore"):
                Z = np.exp(Z)
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def fit(self: _Regressor, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None
            ) -> _Regressor:
        """Fit the model to X and y (n_samples,) or (n_samples, n_outputs).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    @available_if(lambda est: est._check_solver())
    def partial_fit(self: _Regressor, X: ArrayLike, y: ArrayLike,
                    sample_weight: ArrayLike | None = None) -> _Regressor:
        """One epoch over (X, y), continuing the weights and the optimizer state."""
        if "_model" in self.__dict__ and self._quick_partial_fit(X, y, sample_weight, None):
            return self
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _quick_targets(self, y: ArrayLike, n: int, classes: ArrayLike | None
                       ) -> tuple[NDArray[Any], NDArray[Any]] | None:
        # plain finite numbers: (n,) for one output, (n, n_outputs) for several
        d = self.n_outputs_
        if (type(y) is not np.ndarray or y.dtype.kind not in "fiu"
                or y.shape != ((n,) if d == 1 else (n, d))):
            return None
        # (astype, not np.require: a copy in the model's dtype, or y itself where it is one)
        Y = y.reshape(n, d).astype(self._model.dtype, order="C", copy=False)
        if not Y.flags.aligned or not native().all_finite(Y, self.loss == "poisson"):
            return None  # (poisson: y >= 0)
        return Y, y

    def predict(self, X: ArrayLike) -> FloatArray:
        """Predictions (n_samples,) for one output, (n_samples, n_outputs) otherwise."""
        Z, out = self._logits(X)
        return self._outputs(Z.astype(out, copy=False))
