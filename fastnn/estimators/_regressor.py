"""MLPRegressor: scikit-learn's multi-layer perceptron regressor on fastnn."""

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import column_or_1d, validate_data

from ._base import _STOCHASTIC_SOLVERS, StrOptions, _BaseMLP, _dtypes

__all__ = ["MLPRegressor"]


class MLPRegressor(RegressorMixin, _BaseMLP):
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

    _parameter_constraints = {
        **_BaseMLP._parameter_constraints,
        **({"loss": [StrOptions({"squared_error", "poisson"})]} if StrOptions is not None
           else {}),
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype="float32"):
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _fastnn_loss(self):
        # scikit-learn's objective: half the squared error (gradient z - y), or half the
        # Poisson deviance with the log link (fastnn.losses)
        return "poisson" if self.loss == "poisson" else "half_squared_error"

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _report_scale(self, d):
        # scikit-learn reports the squared error's mean over the d outputs (its gradient
        # sums them: the model's loss per sample)
        return 1.0 / d if self._model.loss_name == "half_squared_error" else 1.0

    def _n_outputs(self, Y):
        return Y.shape[1]

    def _validate_input(self, X, y, incremental, reset, dtype):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=_dtypes(dtype), reset=reset)
        X = self._model_input(X, dtype)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("loss='poisson' needs non-negative targets y")
        Y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=dtype)
        return X, Y, y

    def _score_logits(self, Z, y, sw):
        pred = self._outputs(Z.astype(np.float64))
        if not np.isfinite(pred).all():
            return np.nan
        return float(r2_score(y, pred, sample_weight=sw))

    def _outputs(self, Z):
        if self._model.loss_name == "poisson":  # the mean e^z
            with np.errstate(over="ignore"):
                Z = np.exp(Z)
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y (n_samples,) or (n_samples, n_outputs).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing the weights and the optimizer state."""
        if "_model" in self.__dict__ and self._quick_partial_fit(X, y, sample_weight, None):
            return self
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _quick_targets(self, y, n, classes):
        # plain finite numbers: (n,) for one output, (n, n_outputs) for several
        d = self.n_outputs_
        if (type(y) is not np.ndarray or y.dtype.kind not in "fiu"
                or y.shape != ((n,) if d == 1 else (n, d))):
            return None
        Y = np.require(y.reshape(n, d), self._model.dtype, ["C", "A"])
        if not np.isfinite(Y).all() or (self.loss == "poisson" and (Y < 0).any()):
            return None
        return Y, y

    def predict(self, X):
        """Predictions (n_samples,) for one output, (n_samples, n_outputs) otherwise."""
        Z, out = self._logits(X)
        return self._outputs(Z.astype(out, copy=False))
