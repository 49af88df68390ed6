"""scikit-learn drop-in estimators: ``MLPClassifier`` and ``MLPRegressor`` on fastnn's kernels.

Change the import, keep the code::

    from fastnn import MLPClassifier        # was: from sklearn.neural_network import ...

The constructor parameters, their defaults and meanings, and the fitted attributes are those of
``sklearn.neural_network``'s estimators (scikit-learn >= 1.6; it is the optional extra
``fastnn[sklearn]`` and is imported only by this module). Training runs on fastnn's native loop:
one ``fastnn.training.fit`` call per ``fit`` (the whole run of epochs in native code with its
workspaces allocated once), scikit-learn's per-epoch logic (``tol`` / ``n_iter_no_change``, the
"adaptive" and "invscaling" schedules, ``loss_curve_``, ``verbose``) in the fit's per-epoch
callback. ``solver="lbfgs"`` is ``scipy.optimize.minimize(method="L-BFGS-B")`` in float64 over the
flattened parameters, each evaluation one call of the native loop's full-batch forward, loss and
backward (``_kernels.Trainer.loss_grad``; the Poisson loss calls fastnn's kernels from Python).

With ``dtype="float64"`` and one batch holding the whole training set (so that the shuffling
plays no part), a fit gives scikit-learn's ``coefs_``, ``loss_curve_`` and ``n_iter_`` to
rounding, for sgd (with or without Nesterov momentum, every schedule), adam and lbfgs, with
sample weights and the L2 penalty (tests/test_estimators.py checks this). "invscaling" is
``learning_rate_init / (t_ + 1) ** power_t`` updated at the end of each epoch, with ``t_`` the
samples seen, which is also when scikit-learn updates it (its optimizer's ``iteration_ends``).
fastnn's squared error has no 1/2 (gradient 2 (z - y)): the regressor halves the SGD step and
doubles the L2 decay and Adam's epsilon, which is exactly scikit-learn's half squared error.

What is added: ``dtype`` (float32 by default: the weights and all training arithmetic; predictions
come back in the input's float dtype, float64 unless X is float32, as scikit-learn does),
``class_weight`` for the classifier, ``validation_loss_curve_`` with early stopping.

What differs from scikit-learn, on purpose or by construction (each also in the docstrings):

* early stopping watches the *validation loss* (not the accuracy / R^2, which is coarse and
  noisy: a classifier's accuracy can stay flat while its loss still improves); the scores are
  still recorded in ``validation_scores_`` as scikit-learn does, the losses in
  ``validation_loss_curve_``, and the weights of the epoch with the lowest validation loss are
  kept;
* the L2 penalty on a mini-batch is ``alpha / batch_size`` (scikit-learn divides by the size of
  each batch, so only a last, smaller batch differs); ``loss_curve_``'s L2 term is evaluated on
  the weights each epoch starts from (scikit-learn adds it batch by batch on the weights before
  each update: the same when one batch holds the whole training set);
* sample weights are rescaled to mean 1 over the training set, and a batch's gradient is divided
  by its size (scikit-learn divides each batch by the sum of its weights): the two agree in
  expectation, and exactly when a batch holds the whole training set;
* the early-stopping split is stratified for every single-output classifier (scikit-learn's
  documentation says so; its code only stratifies binary problems);
* shuffling draws from a NumPy Generator seeded from ``random_state``: the same seed gives the same
  model bit for bit, but not scikit-learn's shuffles; the initial weights and the early-stopping
  split are drawn exactly as scikit-learn draws them;
* sparse X is accepted and densified (the native loop works on dense rows);
* ``loss="poisson"`` (MLPRegressor) trains in a Python mini-batch loop over fastnn's kernels, not
  in the native loop (fastnn's native loop has no Poisson loss);
* lbfgs on a multi-output squared error minimises the objective whose gradient scikit-learn
  computes (half the squared error summed over the outputs); scikit-learn hands L-BFGS the mean
  over the outputs as the function value, which does not match that gradient. ``loss_`` is
  reported in scikit-learn's scale (the mean over the outputs). One output: identical;
* ``partial_fit`` is absent with ``solver="lbfgs"`` on the regressor too, as on the classifier
  (scikit-learn's MLPRegressor offers it and runs a whole L-BFGS fit);
* fits run BLAS on one thread, as ``fastnn.training.fit`` does: the same ``random_state`` gives
  the same weights whatever the thread settings (a Dask worker's or this process's).
"""

import math
import numbers
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse
from scipy.special import xlogy

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastnn.MLPClassifier and fastnn.MLPRegressor need scikit-learn: "
        "pip install 'fastnn[sklearn]'"
    ) from exc

from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array, check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _kernels
from . import functional as F
from .layers import Linear, check_dtype
from .network import Sequential
from .optim import new_state, update

from .threads import one_blas_thread

try:  # scikit-learn's own parameter validation (InvalidParameterError, a ValueError)
    from sklearn.utils._param_validation import Interval, Options, StrOptions
except ImportError:  # pragma: no cover - a future scikit-learn may move it
    Interval = Options = StrOptions = None

__all__ = ["MLPClassifier", "MLPRegressor"]

_STOCHASTIC_SOLVERS = ("sgd", "adam")
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_CONVERGENCE_HINT = ("\nYou might also want to scale the data as shown in:\n"
                     "    https://scikit-learn.org/stable/modules/preprocessing.html")


def _constraints():
    if Interval is None:  # pragma: no cover
        return {}
    from numbers import Integral, Real

    return {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dtype": "no_validation",  # checked by fastnn.layers.check_dtype: float32 or float64
    }


def _flat_views(flat, layers):
    """(W of each layer, b of each layer) as views into the 1-D ``flat``: all the W, then all
    the b, each in the layer's shape but the first W, stored transposed (n_in, width) as
    scikit-learn's ``coefs_[0]``: the layout whose product the native ``loss_grad`` runs on
    fastnn's own kernel (its ``first_transposed``)."""
    Ws, bs, start = [], [], 0
    for l, layer in enumerate(layers):
        shape = layer.W.shape[::-1] if l == 0 else layer.W.shape
        Ws.append(flat[start:start + layer.W.size].reshape(shape))
        start += layer.W.size
    for layer in layers:
        bs.append(flat[start:start + layer.b.size])
        start += layer.b.size
    return Ws, bs


class _History:
    """The part of fastnn.training.History the per-epoch callback reads (Poisson loop)."""

    def __init__(self):
        self.loss = []


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: the fastnn model, the solvers, the attributes."""

    _parameter_constraints = _constraints()

    # -- fitted attributes over the fastnn model ----------------------------------------

    @property
    def coefs_(self):
        """Weights per layer in scikit-learn's (n_in, n_out) layout: ``W.T`` *views* of the
        fastnn model's (n_out, n_in) arrays (writing into them changes the model). Assigning a
        list of arrays of the same shapes copies them into the model."""
        model = self.__dict__.get("_model")
        if model is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'coefs_'")
        return [layer.W.T for layer in model.layers]

    @coefs_.setter
    def coefs_(self, coefs):
        layers = self._fitted_model().layers
        coefs = list(coefs)
        if len(coefs) != len(layers):
            raise ValueError(f"coefs_ needs {len(layers)} arrays, got {len(coefs)}")
        for layer, C in zip(layers, coefs):
            C = np.asarray(C)
            if C.shape != layer.W.T.shape:
                raise ValueError(f"coefs_ array of shape {C.shape}, expected {layer.W.T.shape}")
            layer.W[...] = C.T

    @property
    def intercepts_(self):
        """Biases per layer: the fastnn model's own ``b`` arrays (not copies)."""
        model = self.__dict__.get("_model")
        if model is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'intercepts_'")
        return [layer.b for layer in model.layers]

    @intercepts_.setter
    def intercepts_(self, intercepts):
        layers = self._fitted_model().layers
        intercepts = list(intercepts)
        if len(intercepts) != len(layers):
            raise ValueError(f"intercepts_ needs {len(layers)} arrays, got {len(intercepts)}")
        for layer, b in zip(layers, intercepts):
            b = np.asarray(b)
            if b.shape != layer.b.shape:
                raise ValueError(f"intercepts_ array of shape {b.shape}, expected {layer.b.shape}")
            layer.b[...] = b

    @property
    def model_(self):
        """The fitted ``fastnn.Sequential`` (weights in the notes' (n_out, n_in) layout)."""
        return self._fitted_model()

    def _fitted_model(self):
        model = self.__dict__.get("_model")
        if model is None:
            check_is_fitted(self)
            raise AttributeError("the estimator has no model")  # pragma: no cover
        return model

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # accepted and densified
        return tags

    # -- what the subclasses provide -----------------------------------------------------

    def _is_poisson(self):
        return False

    # -- fit ------------------------------------------------------------------------------

    def _validate_hyperparameters(self):
        if hasattr(self, "_validate_params") and self._parameter_constraints:
            self._validate_params()
        dtype = check_dtype(self.dtype)
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if any(isinstance(h, (bool, np.bool_)) or not isinstance(h, numbers.Integral)
               for h in hidden):
            raise ValueError(f"hidden_layer_sizes must hold integers, got {self.hidden_layer_sizes}")
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        return dtype, [int(h) for h in hidden]

    def _prepare_X(self, X, dtype, reset):
        """validate_data on X alone, as a C-contiguous dense array of ``dtype``."""
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=dtype, reset=reset)
        return self._dense(X, dtype)

    @staticmethod
    def _dense(X, dtype):
        if scipy.sparse.issparse(X):
            X = X.toarray()
        return np.ascontiguousarray(X, dtype=dtype)

    def _check_sample_weight(self, sample_weight, n):
        if sample_weight is None:
            return None
        if isinstance(sample_weight, numbers.Number):
            sw = np.full(n, float(sample_weight))
        else:
            sw = check_array(sample_weight, ensure_2d=False, dtype=np.float64, order="C",
                             input_name="sample_weight")
            if sw.ndim != 1:
                raise ValueError("Sample weights must be 1D array or scalar")
            if sw.shape != (n,):
                raise ValueError(
                    f"sample_weight.shape == {sw.shape}, expected {(n,)}!")
        if (sw < 0).any():
            raise ValueError("sample_weight must be >= 0 (fastnn trains on non-negative weights)")
        return sw.copy()

    def _new_model(self, layer_units, dtype):
        """Glorot-uniform weights drawn exactly as scikit-learn draws them (same random_state,
        same order, (fan_in, fan_out) then the intercepts), stored transposed."""
        factor = 2.0 if self.activation == "logistic" else 6.0
        act = _ACTIVATIONS[self.activation]
        layers = []
        for i in range(len(layer_units) - 1):
            fan_in, fan_out = layer_units[i], layer_units[i + 1]
            bound = np.sqrt(factor / (fan_in + fan_out))
            coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = self._random_state.uniform(-bound, bound, fan_out)
            last = i == len(layer_units) - 2
            layers.append(Linear.from_arrays(coef.T, intercept, "identity" if last else act,
                                             dtype=dtype))
        return Sequential(layers, self._fastnn_loss())

    def _initialize(self, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self._model = self._new_model(layer_units, dtype)
        for name in ("_lr", "_poisson_opt", "_no_improvement_count", "loss_curve_",
                     "best_loss_", "validation_scores_", "validation_loss_curve_",
                     "best_validation_score_", "best_validation_loss_"):
            self.__dict__.pop(name, None)  # nothing left over from a fit with another solver
        if self.solver in _STOCHASTIC_SOLVERS:
            self._init_stochastic_attributes()

    def _init_stochastic_attributes(self):
        """The per-epoch bookkeeping, as scikit-learn's _initialize sets it; also when a warm
        start or partial_fit switches to a stochastic solver or to early stopping (scikit-learn
        fails there on the missing lists)."""
        if "loss_curve_" not in self.__dict__:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.validation_loss_curve_ = None
            self.best_validation_score_ = None
            self.best_validation_loss_ = None
        if self.early_stopping and self.validation_scores_ is None:
            self.validation_scores_ = []
            self.validation_loss_curve_ = []
            self.best_validation_score_ = -np.inf
            self.best_validation_loss_ = np.inf
            self.best_loss_ = None
        if not self.early_stopping and self.best_loss_ is None:
            self.best_loss_ = np.inf

    def _fit(self, X, y, sample_weight=None, incremental=False):
        dtype, hidden = self._validate_hyperparameters()
        first_pass = "_model" not in self.__dict__ or (not self.warm_start and not incremental)
        X, Y, y_out = self._validate_input(X, y, incremental, reset=first_pass, dtype=dtype)
        n_samples, n_features = X.shape
        sw = self._check_sample_weight(sample_weight, n_samples)
        sw = self._class_sample_weight(y_out, sw, incremental)
        self.n_outputs_ = self._n_outputs(Y)
        layer_units = [n_features, *hidden, self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_units, dtype)
        else:
            self._check_warm_model(layer_units, dtype)
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, Y, y_out, sw, incremental)
        else:
            self._fit_lbfgs(X, Y, sw)
        if not all(np.isfinite(p).all() for layer in self._model.layers
                   for p in layer.parameters()):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _check_warm_model(self, layer_units, dtype):
        model = self._model
        have = [model.n_inputs] + [layer.n_out for layer in model.layers]
        if have != layer_units:
            raise ValueError(f"warm start / partial_fit needs the same layer sizes as the "
                             f"fitted model: {have}, got {layer_units}")
        if model.dtype != dtype:  # dtype changed through set_params: convert the weights
            layers = [Linear.from_arrays(layer.W, layer.b, layer.activation, dtype=dtype)
                      for layer in model.layers]
            self._model = Sequential(layers, model.loss_name)
            self.__dict__.pop("_lr", None)  # the optimizer state does not carry over

    # -- losses in scikit-learn's scale --------------------------------------------------

    def _data_losses(self, Z, T, *, grad=False, report=True):
        """Per-sample data losses (float64) in scikit-learn's scale, and optionally dL/dZ per
        sample (not divided by N) of the objective scikit-learn's gradients follow.

        scikit-learn reports the squared error as 0.5 * mean over the outputs, but its gradient
        is that of 0.5 * sum over the outputs: ``report`` picks the former (loss_curve_, loss_,
        the validation loss), else the latter (the L-BFGS objective)."""
        if self._is_poisson():
            Z64 = Z.astype(np.float64)
            with np.errstate(over="ignore"):
                mu = np.exp(Z64)
                losses = (xlogy(T, T / mu) - T + mu).sum(axis=1)
            dZ = (mu - T).astype(Z.dtype) if grad else None
            return losses, dZ
        res = self._model._loss(Z, T, "none", return_grad=grad)
        losses, dZ = res if grad else (res, None)
        losses = losses.astype(np.float64)
        if self._model.loss_name == "squared_error":  # fastnn: sum_d (z - y)^2, no 1/2
            d = Z.shape[1]
            losses *= 0.5 / d if report else 0.5
            if grad:
                dZ *= Z.dtype.type(0.5)
        return losses, dZ

    def _weighted_mean(self, losses, sw):
        if sw is None:
            return float(losses.sum() / losses.shape[0])
        return float((sw * losses).sum() / sw.sum())

    def _l2(self):
        """sum ||W||^2 over the layers (the L2 penalty's sum; inf once the weights overflow)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return float(sum(np.dot(w, w) for w in (layer.W.ravel()
                                                     for layer in self._model.layers)))

    # -- stochastic solvers --------------------------------------------------------------

    def _fit_stochastic(self, X, Y, y_out, sw, incremental):
        model = self._model
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        self._init_stochastic_attributes()
        warm_optimizer = incremental and "_lr" in self.__dict__
        if not warm_optimizer:
            self._lr = float(self.learning_rate_init)
        early_stopping = self.early_stopping
        if early_stopping:
            (X_train, Y_train, sw_train), (X_val, Y_val, y_val, sw_val) = \
                self._validation_split(X, Y, y_out, sw)
        else:
            X_train, Y_train, sw_train = X, Y, sw
        n = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))
        n_batches = -(-n // batch_size)
        if sw_train is not None:
            mean_w = float(sw_train.mean())
            if not mean_w > 0:
                raise ValueError("sample_weight must not be all zero on the training samples")
            sw_fit = sw_train / mean_w
        else:
            mean_w, sw_fit = 1.0, None

        # fastnn's squared error has no 1/2: its gradient is twice scikit-learn's, so halve
        # the SGD step, double the L2 and Adam's epsilon (Adam is otherwise scale-free)
        c = 2.0 if model.loss_name == "squared_error" and not self._is_poisson() else 1.0
        data_scale = 1.0 / (2.0 * Y_train.shape[1]) if c == 2.0 else 1.0
        solver = self.solver
        weight_decay = c * self.alpha / (batch_size * mean_w)
        l2_scale = 0.5 * self.alpha * n_batches / (n * mean_w)
        lr_init = float(self.learning_rate_init)
        alpha_sched = self.learning_rate if solver == "sgd" else "constant"
        momentum = min(float(self.momentum), float(np.nextafter(1.0, 0.0))) \
            if solver == "sgd" else 0.0
        nesterov = bool(self.nesterovs_momentum) and momentum > 0
        epsilon = c * float(self.epsilon)
        tol, n_iter_no_change, verbose = self.tol, self.n_iter_no_change, self.verbose
        layers = model.layers
        best = {}
        stopped = []
        l2_start = [self._l2()]
        if early_stopping:
            X_val_c = np.ascontiguousarray(X_val)

        def callback(epoch, history):
            self.n_iter_ += 1
            self.t_ += n
            # the L2 term on the weights the epoch started from (scikit-learn adds it batch by
            # batch on the weights before each update: the same for a single full batch)
            self.loss_ = history.loss[-1] * data_scale + l2_scale * l2_start[0]
            l2_start[0] = self._l2()
            self.loss_curve_.append(self.loss_)
            if verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_), flush=True)
            if early_stopping:
                Z = model._logits(X_val_c)
                val_loss = self._weighted_mean(self._data_losses(Z, Y_val)[0], sw_val)
                val_score = self._score_logits(Z, y_val, sw_val)
                self.validation_scores_.append(val_score)
                self.validation_loss_curve_.append(val_loss)
                if verbose:
                    print("Validation score: %f, validation loss: %f" % (val_score, val_loss),
                          flush=True)
                if not val_loss < self.best_validation_loss_ - tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if val_loss < self.best_validation_loss_:
                    self.best_validation_loss_ = val_loss
                    self.best_validation_score_ = val_score
                    best["params"] = [(layer.W.copy(), layer.b.copy()) for layer in layers]
            else:
                if self.loss_curve_[-1] > self.best_loss_ - tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if self.loss_curve_[-1] < self.best_loss_:
                    self.best_loss_ = self.loss_curve_[-1]
            if alpha_sched == "invscaling":
                self._lr = lr_init / (self.t_ + 1) ** self.power_t
            if self._no_improvement_count > n_iter_no_change:
                if early_stopping:
                    msg = ("Validation loss did not improve more than tol=%f for %d "
                           "consecutive epochs." % (tol, n_iter_no_change))
                else:
                    msg = ("Training loss did not improve more than tol=%f for %d "
                           "consecutive epochs." % (tol, n_iter_no_change))
                if alpha_sched != "adaptive":
                    if verbose:
                        print(msg + " Stopping.", flush=True)
                    stopped.append(True)
                    return True
                if self._lr <= 1e-6:
                    if verbose:
                        print(msg + " Learning rate too small. Stopping.", flush=True)
                    stopped.append(True)
                    return True
                self._lr /= 5.0
                self._no_improvement_count = 0
                if verbose:
                    print(msg + " Setting learning rate to %f" % self._lr, flush=True)
            return False

        if solver == "sgd":
            lr, schedule = lr_init / c, (lambda epoch: self._lr / c)
        else:
            lr, schedule = lr_init, "constant"
        seed = int(self._random_state.randint(np.iinfo(np.int32).max))
        self.n_iter_ = 0
        epochs = 1 if incremental else int(self.max_iter)
        options = dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=solver,
                       momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                       shuffle=bool(self.shuffle), sample_weight=sw_fit, random_state=seed,
                       lr_schedule=schedule, beta1=float(self.beta_1),
                       beta2=float(self.beta_2), eps=epsilon, warm_start=warm_optimizer,
                       callback=callback)
        try:
            if self._is_poisson():
                with one_blas_thread():
                    self._poisson_epochs(X_train, Y_train, **options)
            else:
                model.fit(X_train, Y_train, **options)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        except FloatingPointError as exc:
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                f"large values and need to be preprocessed. ({exc})") from None
        if not incremental and not stopped and self.n_iter_ == self.max_iter:
            warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                          "optimization hasn't converged yet." % self.max_iter,
                          ConvergenceWarning)
        if early_stopping and "params" in best:
            for layer, (W, b) in zip(layers, best["params"]):
                layer.W[...] = W
                layer.b[...] = b

    def _validation_split(self, X, Y, y_out, sw):
        """scikit-learn's early-stopping split (same random_state draws), stratified for
        single-output classification when every class can be split."""
        idx = np.arange(X.shape[0])
        stratify = None
        if is_classifier(self) and np.ndim(y_out) == 1:
            _, counts = np.unique(y_out, return_counts=True)
            n_val = math.ceil(self.validation_fraction * len(idx))
            if len(counts) > 1 and counts.min() >= 2 and n_val >= len(counts) \
                    and len(idx) - n_val >= len(counts):
                stratify = y_out
        train, val = train_test_split(idx, random_state=self._random_state,
                                      test_size=self.validation_fraction, stratify=stratify)
        if val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        pick = (lambda a, rows: None if a is None else a[rows])
        return ((X[train], Y[train], pick(sw, train)),
                (X[val], Y[val], y_out[val], pick(sw, val)))

    def _poisson_epochs(self, X, Y, *, epochs, batch_size, lr, optimizer, momentum, nesterov,
                        weight_decay, shuffle, sample_weight, random_state, lr_schedule, beta1,
                        beta2, eps, warm_start, callback):
        """The mini-batch loop of fastnn.training.fit in Python for the Poisson loss (log link:
        output exp(z), dL/dz = exp(z) - y), on fastnn's layer kernels and optimizer updates."""
        model = self._model
        params = model.parameters()
        prev = self.__dict__.get("_poisson_opt")
        if warm_start and prev is not None and prev["optimizer"] == optimizer \
                and prev["momentum"] == momentum:
            state, t = prev["state"], prev["t"]
        else:
            state, t = new_state(params, optimizer, momentum), 0
        opt = {"optimizer": optimizer, "momentum": momentum, "state": state, "t": t}
        self._poisson_opt = opt
        rng = np.random.default_rng(random_state)
        history = _History()
        N = X.shape[0]
        dtype = model.dtype.type
        for epoch in range(epochs):
            lr_epoch = lr_schedule(epoch) if callable(lr_schedule) else lr
            perm = rng.permutation(N) if shuffle else np.arange(N)
            total = 0.0
            for s in range(0, N, batch_size):
                rows = perm[s:s + batch_size]
                inputs, outputs, U = [], [], X[rows]
                for layer in model.layers:
                    inputs.append(U)
                    U = F.linear(U, layer.W, layer.b, layer.activation)
                    outputs.append(U)
                losses, dU = self._data_losses(U, Y[rows], grad=True)
                w = np.ones(len(rows)) if sample_weight is None else sample_weight[rows]
                total += float((w * losses).sum())
                if not math.isfinite(total):
                    raise FloatingPointError(f"training diverged in epoch {epoch + 1}: the "
                                             f"loss became {total}")
                dU = dU * (w / len(rows)).astype(dtype)[:, None]
                opt["t"] += 1
                for l in range(len(model.layers) - 1, -1, -1):
                    layer = model.layers[l]
                    dU, dW, db = F.linear_backward(dU, inputs[l], layer.W, outputs[l],
                                                   layer.activation, need_dX=l > 0)
                    for k, (P, G) in enumerate(((layer.W, dW), (layer.b, db))):
                        M1 = state[0][l][k] if state[0][l] is not None else None
                        M2 = state[1][l][k] if state[1][l] is not None else None
                        update(P, G, M1, M2, optimizer=optimizer, lr=lr_epoch,
                               momentum=momentum, nesterov=nesterov, beta1=beta1, beta2=beta2,
                               eps=eps, t=opt["t"], decay=weight_decay if k == 0 else 0.0)
            history.loss.append(total / N)
            if callback(epoch, history):
                break
        return history

    # -- L-BFGS ---------------------------------------------------------------------------

    def _fit_lbfgs(self, X, Y, sw):
        model = self._model
        layers = model.layers
        N = X.shape[0]
        sw_sum = float(N if sw is None else sw.sum())
        if not sw_sum > 0:
            raise ValueError("sample_weight must not be all zero")
        alpha = float(self.alpha)
        # the parameters and their gradient as views into one flat buffer each (every layer's W,
        # then every b): unpacking L-BFGS's float64 x and packing the gradient are one copy each
        size = sum(layer.W.size + layer.b.size for layer in layers)
        theta, grad = np.empty(size, model.dtype), np.empty(size, model.dtype)
        Ws, bs = _flat_views(theta, layers)
        gWs, gbs = _flat_views(grad, layers)
        # the same arrays in the layers' (width, n_in) layout
        model_Ws = [W.T if l == 0 else W for l, W in enumerate(Ws)]
        model_gWs = [W.T if l == 0 else W for l, W in enumerate(gWs)]
        for layer, W, b in zip(layers, model_Ws, bs):
            W[...] = layer.W
            b[...] = layer.b
        inputs = [None] * len(layers)
        outputs = [None] * len(layers)

        def forward():
            U = X
            for l, layer in enumerate(layers):
                inputs[l] = U
                U = F.linear(U, model_Ws[l], bs[l], layer.activation)
                outputs[l] = U
            return U

        if F.get_backend() == "cython" and not self._is_poisson():
            # native: forward, loss and backward over all N samples in one call. The Trainer's
            # squared error has no 1/2 (scikit-learn's objective has): c = 1/2 scales it.
            c = 0.5 if model.loss_name == "squared_error" else 1.0
            sw_native = None if sw is None else np.ascontiguousarray(sw, dtype=np.float64)
            trainer = _kernels.Trainer(
                Ws, bs, [_kernels.ACTIVATION_CODES[layer.activation] for layer in layers],
                _kernels.LOSS_CODES[model.loss_name], _kernels.OPTIMIZER_CODES["sgd"],
                [None] * len(layers), [None] * len(layers), X, Y, sw_native, N,
                gW=gWs, gb=gbs, first_transposed=True)

            def data_loss_grad():
                # sum_i w_i c loss_i / sw_sum, its gradient into grad
                return c * trainer.loss_grad(sw_sum / c) / sw_sum
        else:  # the Poisson loss, or the numpy backend: fastnn's kernels called from Python
            dtype = model.dtype.type
            row_scale = None if sw is None else (sw / sw_sum).astype(dtype)[:, None]

            def data_loss_grad():
                Z = forward()
                losses, dU = self._data_losses(Z, Y, grad=True, report=False)
                if row_scale is None:
                    data = float(losses.sum()) / N
                    dU *= dtype(1.0 / N)
                else:
                    data = float((sw * losses).sum()) / sw_sum
                    dU *= row_scale
                for l in range(len(layers) - 1, -1, -1):
                    dU, dW, db = F.linear_backward(dU, inputs[l], model_Ws[l], outputs[l],
                                                   layers[l].activation, need_dX=l > 0)
                    model_gWs[l][...], gbs[l][...] = dW, db
                return data

        n_W = sum(W.size for W in Ws)
        # the objective and its gradient as two functions over one evaluation: scipy asks for
        # both at each x, one after the other, and its own memo for jac=True compares and
        # copies x several times (~20 us an evaluation, 4% of the digits fit)
        last = {}

        def loss(x):
            theta[...] = x
            data = data_loss_grad()
            # the L2 penalty 0.5 alpha sum ||W||^2 / sw_sum and its gradient on the weights
            last["g"], l2 = _kernels.penalized_gradient(grad, theta, n_W, alpha / sw_sum)
            last["x"] = x  # (scipy passes a copy of its x)
            return data + 0.5 * alpha * l2 / sw_sum

        def gradient(x):
            if "x" not in last or not np.array_equal(x, last["x"]):
                loss(x)
            return last["g"]

        x0 = theta.astype(np.float64)
        callback = None
        if self.verbose:
            it = [0]

            def callback(intermediate_result):
                it[0] += 1
                print("Iteration %d, loss = %.8f" % (it[0], intermediate_result.fun),
                      flush=True)

        # one BLAS thread, as fastnn's fit: the same weights for any thread setting, and no
        # BLAS threads spinning against each other on a busy machine (10x slower fits seen)
        try:
            with one_blas_thread():
                res = scipy.optimize.minimize(
                    loss, x0, method="L-BFGS-B", jac=gradient, callback=callback,
                    options={"maxfun": int(self.max_fun), "maxiter": int(self.max_iter),
                             "gtol": float(self.tol)})
            theta[...] = res.x
        finally:  # the model's weights: L-BFGS's result (the last evaluated on an exception)
            for layer, W, b in zip(layers, model_Ws, bs):
                layer.W[...] = W
                layer.b[...] = b
        self.n_iter_ = int(min(res.nit, self.max_iter))
        if res.status != 0:
            msg = (f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                   f"(status={res.status}):\n{res.message}\n")
            if self.n_iter_ == self.max_iter:
                msg += ("\nIncrease the number of iterations to improve the convergence "
                        f"(max_iter={self.max_iter}).")
            warnings.warn(msg + _CONVERGENCE_HINT, ConvergenceWarning, stacklevel=3)
        if model.loss_name == "squared_error" and Y.shape[1] > 1:
            # loss_ in scikit-learn's reported scale: the squared error's mean over the
            # outputs (the objective sums them)
            Z = forward()
            data = self._weighted_mean(self._data_losses(Z, Y)[0], sw)
            self.loss_ = data + 0.5 * alpha * self._l2() / sw_sum
        else:  # the objective at L-BFGS's x, as scikit-learn reports it
            self.loss_ = float(res.fun)

    # -- prediction helpers ---------------------------------------------------------------

    def _logits(self, X):
        """Validated X -> the last layer's output (model dtype) and the output dtype (X's
        float dtype: float32 stays float32, anything else gives float64)."""
        check_is_fitted(self)
        model = self._model
        out_dtype = np.float32 if getattr(X, "dtype", None) == np.float32 else np.float64
        X = self._prepare_X(X, model.dtype, reset=False)
        return model._logits(X), out_dtype

    def _class_sample_weight(self, y_out, sw, incremental):
        return sw


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` on fastnn.

    The parameters and fitted attributes are those of ``sklearn.neural_network.MLPClassifier``
    (same names, defaults and meanings; see its documentation), plus ``dtype`` and
    ``class_weight``. Binary problems get one sigmoid output ("logistic"), multi-class problems
    a softmax, multi-label indicator targets one sigmoid per label, chosen as scikit-learn
    chooses them; labels may be of any type (strings too) and come back through ``classes_``.

    Parameters
    ----------
    hidden_layer_sizes : array-like of int or int, default=(100,)
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
    solver : {"lbfgs", "sgd", "adam"}, default="adam"
        "sgd" and "adam" run fastnn's native training loop, one call for all the epochs;
        "lbfgs" is SciPy's L-BFGS-B on fastnn's fused loss and gradient.
    alpha : float, default=0.0001
        L2 penalty: ``alpha / (2 n_batch) * sum ||W||^2`` per batch, applied as weight decay
        ``alpha / batch_size`` on the weights (not the biases).
    batch_size : int or "auto", default="auto"
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        SGD only. "invscaling" is ``learning_rate_init / (t_ + 1) ** power_t`` with ``t_`` the
        samples seen, updated at the end of each epoch (as scikit-learn updates it);
        "adaptive" divides the rate by 5 when ``n_iter_no_change`` epochs do not improve by
        ``tol`` (the training loss, or the validation loss with early stopping).
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start,
    momentum, nesterovs_momentum, beta_1, beta_2, epsilon, n_iter_no_change, max_fun
        As scikit-learn's.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data and stop when the *validation
        loss* has not improved by ``tol`` for ``n_iter_no_change`` epochs, keeping the weights
        of the epoch with the lowest validation loss. scikit-learn watches the validation
        accuracy instead, which moves in steps of 1 / n_val and misses a model that still
        improves its probabilities; the accuracies are still recorded in
        ``validation_scores_``, the losses in ``validation_loss_curve_``.
    validation_fraction : float, default=0.1
    dtype : {"float32", "float64"}, default="float32"
        The dtype of the weights and of all the training arithmetic. Predictions and
        probabilities come back as float64 unless X is float32.
    class_weight : dict, list of dicts, "balanced" or None, default=None
        Weights per class, multiplied into ``sample_weight``: {label: weight}, or "balanced"
        (n_samples / (n_classes * count(label)); not in ``partial_fit``, which sees one chunk:
        pass a dict computed on all the data). Multi-label targets take "balanced" or a list of
        {0: w, 1: w} dicts, one per label, as ``sklearn.utils.class_weight.compute_sample_weight``.

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_,
    coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_,
    out_activation_
        As scikit-learn's. ``coefs_`` are (n_in, n_out) views ``W.T`` of the fastnn model's
        arrays and ``intercepts_`` its bias arrays (writing into them changes the model).
        ``best_validation_score_`` is the score of the epoch whose weights were kept.
    validation_loss_curve_ : list of float or None
        The validation loss (data term, without the L2 penalty) after each epoch, with early
        stopping.
    best_validation_loss_ : float or None
    model_ : fastnn.Sequential
        The fitted network.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastnn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(32,), solver="lbfgs", max_iter=300,
    ...                     random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.95
    True
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype="float32", class_weight=None):
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
        self.class_weight = class_weight

    _parameter_constraints = {
        **_BaseMLP._parameter_constraints,
        **({"class_weight": [dict, list, StrOptions({"balanced"}), None]}
           if StrOptions is not None else {}),
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _fastnn_loss(self):
        return "cross_entropy" if self._label_binarizer.y_type_ == "multiclass" \
            else "binary_cross_entropy"

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _n_outputs(self, Y):
        return len(self.classes_) if Y.ndim == 1 else Y.shape[1]

    def _validate_input(self, X, y, incremental, reset, dtype):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=dtype, reset=reset)
        X = self._dense(X, dtype)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if "classes_" not in self.__dict__ or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        if self._label_binarizer.y_type_ == "multiclass" and y.ndim == 1:
            # labels 0..K-1: each label's place in the sorted classes_ (every label of y is
            # one of them, checked above), as LabelBinarizer.transform's one-hot rows say
            Y = np.ascontiguousarray(np.searchsorted(self.classes_, y), dtype=np.intp)
        else:  # (N, 1) binary or (N, K) multi-label
            Y = np.ascontiguousarray(self._label_binarizer.transform(y), dtype=dtype)
        return X, Y, y

    def _class_sample_weight(self, y, sw, incremental):
        cw = self.class_weight
        if cw is None:
            return sw
        if isinstance(cw, str):
            if incremental:
                raise ValueError(
                    "class_weight 'balanced' is not supported for partial_fit: pass a dict, "
                    "e.g. from sklearn.utils.class_weight.compute_class_weight('balanced', "
                    "classes=classes, y=y_all)")
            if y.ndim == 1:
                classes = np.unique(y)
                weights = compute_class_weight("balanced", classes=classes, y=y)
                w = weights[np.searchsorted(classes, y)]
            else:
                w = compute_sample_weight("balanced", y)
        elif isinstance(cw, dict):
            if y.ndim != 1:
                raise ValueError("class_weight for multi-label targets must be 'balanced' or "
                                 "a list of {0: w, 1: w} dicts, one per label")
            table = np.array([float(cw.get(c, 1.0)) for c in self.classes_])
            w = table[np.searchsorted(self.classes_, y)]
        else:
            w = compute_sample_weight(cw, y)
        w = np.asarray(w, dtype=np.float64)
        if not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError(f"class_weight must give every class a finite weight >= 0, got "
                             f"{cw!r}")
        return w if sw is None else sw * w

    def _score_logits(self, Z, y, sw):
        if not np.isfinite(Z).all():
            return np.nan
        return float(accuracy_score(y, self._labels(Z), sample_weight=sw))

    def _labels(self, Z):
        lb = self._label_binarizer
        if lb.y_type_ == "multiclass":
            return self.classes_.take(Z.argmax(axis=1))
        return lb.inverse_transform((Z > 0).astype(np.int64))

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y (class labels, or a label indicator matrix).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights, multiplied by ``class_weight``'s.

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
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing the weights and the optimizer state.

        ``classes`` (all the labels) is required on the first call, unless y is a label
        indicator matrix.
        """
        if "classes_" not in self.__dict__:
            if classes is None and not type_of_target(y).startswith("multilabel"):
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None:
            if not np.array_equal(self.classes_, unique_labels(classes)):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Class labels (of ``classes_``), or a label indicator matrix for multi-label."""
        Z, _ = self._logits(X)
        return self._labels(Z)

    def predict_proba(self, X):
        """Probabilities (n_samples, n_classes) in the order of ``classes_`` (per label for
        multi-label), computed in float64 from the logits unless X is float32."""
        Z, out = self._logits(X)
        Z = Z.astype(out, copy=False)
        if self._label_binarizer.y_type_ == "multiclass":
            return F.softmax(Z)
        P = F.sigmoid(Z)
        if self.n_outputs_ == 1:
            p = P[:, 0]
            return np.column_stack([1 - p, p])
        return P

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``, as scikit-learn's (-inf where a probability is 0)."""
        P = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(P, out=P)


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` on fastnn.

    The parameters and fitted attributes are those of ``sklearn.neural_network.MLPRegressor``
    (same names, defaults and meanings; see its documentation and ``MLPClassifier`` here for
    the solvers, ``learning_rate``, ``early_stopping`` and ``alpha``), plus ``dtype``. One or
    several outputs (y of shape (n_samples,) or (n_samples, n_outputs)).

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        Half the squared error (identity output), or half the Poisson deviance with a log link
        (output exp(z), y >= 0). "poisson" trains in a Python mini-batch loop over fastnn's
        kernels (fastnn's native loop has no Poisson loss); "lbfgs" is as fast for both.
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start,
    momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2,
    epsilon, n_iter_no_change, max_fun
        As scikit-learn's; early stopping watches the validation loss (see MLPClassifier),
        ``validation_scores_`` records the R^2.
    dtype : {"float32", "float64"}, default="float32"
        The dtype of the weights and of the training arithmetic; predictions come back as
        float64 unless X is float32.

    Attributes
    ----------
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_, coefs_,
    intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_,
    out_activation_
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

    def _is_poisson(self):
        return self.__dict__.get("_loss_fitted", self.loss) == "poisson"

    def _fastnn_loss(self):
        return "squared_error"  # the Poisson loss is computed here, on the identity output

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _initialize(self, layer_units, dtype):
        self._loss_fitted = self.loss
        super()._initialize(layer_units, dtype)

    def _n_outputs(self, Y):
        return Y.shape[1]

    def _validate_input(self, X, y, incremental, reset, dtype):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=dtype, reset=reset)
        X = self._dense(X, dtype)
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
        if self._is_poisson():
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
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predictions (n_samples,) for one output, (n_samples, n_outputs) otherwise."""
        Z, out = self._logits(X)
        return self._outputs(Z.astype(out, copy=False))
