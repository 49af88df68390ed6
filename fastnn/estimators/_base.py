"""What MLPClassifier and MLPRegressor share: the parameters and their validation, the fastnn
model and the fitted attributes over it, the input checks, the dispatch to the solvers."""

from __future__ import annotations

import functools
import math
import numbers
import operator
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray
from sklearn.base import BaseEstimator, is_classifier
from sklearn.model_selection import train_test_split
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import _validation as _v
from .._typing import FloatArray, Inputs
from ..backends import native
from ..layers import Linear, check_dtype
from ..network import Sequential
from ._lbfgs import fit_lbfgs
from ._monitor import Validation, bias
from ._stochastic import STOCHASTIC_SOLVERS, fit_stochastic

try:  # scikit-learn's own parameter validation (InvalidParameterError, a ValueError)
    from sklearn.utils._param_validation import Interval, Options
    from sklearn.utils._param_validation import StrOptions as StrOptions  # (for the subclasses)
except ImportError:  # pragma: no cover - a future scikit-learn may move it
    Interval = Options = StrOptions = None

_STOCHASTIC_SOLVERS = STOCHASTIC_SOLVERS

_Estimator = TypeVar("_Estimator", bound="_BaseMLP")
_Method = TypeVar("_Method", bound=Callable[..., Any])
#: the model's float dtype (float32 or float64)
FloatDtype = np.dtype[np.floating[Any]]
#: (X, Y, sw) of the training part of the early-stopping split
_Training = tuple[Inputs, NDArray[Any], NDArray[np.float64] | None]

if TYPE_CHECKING:
    def available_if(check: Callable[[Any], bool]) -> Callable[[_Method], _Method]:
        """(for type checkers) scikit-learn's ``available_if`` keeps the method's signature."""
        ...
else:
    from sklearn.utils.metaestimators import available_if


def _dtypes(dtype: FloatDtype) -> list[np.dtype[Any]]:
    """validate_data's dtype: float32 and float64 X kept as they are (the model reads either
    in place), anything else converted to the model's ``dtype``."""
    return [dtype, np.dtype(np.float64 if dtype == np.float32 else np.float32)]
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


def _constraints() -> dict[str, Any]:
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


@functools.lru_cache(maxsize=64)
def _first_draw(seed: int) -> int:
    """The first ``randint(2**31 - 1)`` of ``RandomState(seed)`` (fit_stochastic's shuffle
    seed in a partial_fit after the first)."""
    return int(check_random_state(seed).randint(np.iinfo(np.int32).max))


class _BaseMLP(BaseEstimator):  # type: ignore[misc]  # (scikit-learn is not typed)
    """What MLPClassifier and MLPRegressor share: the fastnn model, the solvers, the attributes."""

    _parameter_constraints: ClassVar[dict[str, Any]] = _constraints()
    _parameter_getter: ClassVar[Callable[[Any], Any]]  # (set on first use: _parameter_values)

    # the parameters (set by the subclasses' __init__; scikit-learn's meanings)
    hidden_layer_sizes: ArrayLike
    activation: str
    solver: str
    alpha: float
    batch_size: int | str
    learning_rate: str
    learning_rate_init: float
    power_t: float
    max_iter: int
    shuffle: bool
    random_state: int | np.random.RandomState | None
    tol: float
    verbose: bool | int
    warm_start: bool
    momentum: float
    nesterovs_momentum: bool
    early_stopping: bool
    validation_fraction: float
    beta_1: float
    beta_2: float
    epsilon: float
    n_iter_no_change: int | float  # (or numpy.inf)
    max_fun: int
    dtype: DTypeLike

    # the fitted attributes a fit sets (coefs_, intercepts_, model_: the properties below)
    n_iter_: int
    t_: int
    n_layers_: int
    n_outputs_: int
    n_features_in_: int
    out_activation_: str
    loss_: float
    loss_curve_: list[float]
    best_loss_: float | None  # (None with early stopping)
    validation_scores_: list[float] | None  # (lists with early stopping)
    validation_loss_curve_: list[float] | None
    best_validation_score_: float | None
    best_validation_loss_: float | None
    _model: Sequential
    _random_state: np.random.RandomState
    _lr: float  # the stochastic solvers' learning rate (the schedules change it)
    _no_improvement_count: int
    _quick: tuple[Any, ...]  # the parameter values a quick partial_fit may skip checking

    if TYPE_CHECKING:  # what the subclasses provide (for type checkers)
        def _fastnn_loss(self) -> str:
            """The fastnn loss the model trains on."""
            ...

        def _out_activation(self) -> str:
            """scikit-learn's ``out_activation_``."""
            ...

        def _n_outputs(self, Y: NDArray[Any]) -> int:
            """The network's outputs for the targets Y."""
            ...

        def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool,
                            dtype: FloatDtype) -> tuple[Inputs, NDArray[Any], NDArray[Any]]:
            """(X as the model reads it, the targets Y as its loss takes them, y)."""
            ...

        def _score_logits(self, Z: FloatArray, y: NDArray[Any],
                          sw: NDArray[np.float64] | None) -> float:
            """The validation score (accuracy, R^2) of the logits Z."""
            ...

    # -- fitted attributes over the fastnn model ----------------------------------------

    @property
    def coefs_(self) -> list[FloatArray]:
        """Weights per layer in scikit-learn's (n_in, n_out) layout: ``W.T`` *views* of the
        fastnn model's (n_out, n_in) arrays (writing into them changes the model). Assigning a
        list of arrays of the same shapes copies them into the model."""
        model: Sequential | None = self.__dict__.get("_model")
        if model is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'coefs_'")
        return [layer.W.T for layer in model.layers]

    @coefs_.setter
    def coefs_(self, coefs: Iterable[ArrayLike]) -> None:
        layers = self._fitted_model().layers
        coefs = list(coefs)
        if len(coefs) != len(layers):
            raise ValueError(f"coefs_ needs {len(layers)} arrays, got {len(coefs)}")
        for layer, given in zip(layers, coefs):
            C = np.asarray(given)
            if C.shape != layer.W.T.shape:
                raise ValueError(f"coefs_ array of shape {C.shape}, expected {layer.W.T.shape}")
            layer.W[...] = C.T

    @property
    def intercepts_(self) -> list[FloatArray]:
        """Biases per layer: the fastnn model's own ``b`` arrays (not copies)."""
        model: Sequential | None = self.__dict__.get("_model")
        if model is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'intercepts_'")
        return [bias(layer) for layer in model.layers]

    @intercepts_.setter
    def intercepts_(self, intercepts: Iterable[ArrayLike]) -> None:
        layers = self._fitted_model().layers
        intercepts = list(intercepts)
        if len(intercepts) != len(layers):
            raise ValueError(f"intercepts_ needs {len(layers)} arrays, got {len(intercepts)}")
        for layer, given in zip(layers, intercepts):
            b, layer_b = np.asarray(given), bias(layer)
            if b.shape != layer_b.shape:
                raise ValueError(f"intercepts_ array of shape {b.shape}, expected {layer_b.shape}")
            layer_b[...] = b

    @property
    def model_(self) -> Sequential:
        """The fitted ``fastnn.Sequential`` (weights in the notes' (n_out, n_in) layout)."""
        return self._fitted_model()

    def _fitted_model(self) -> Sequential:
        model: Sequential | None = self.__dict__.get("_model")
        if model is None:
            check_is_fitted(self)
            raise AttributeError("the estimator has no model")  # pragma: no cover
        return model

    def __sklearn_tags__(self) -> Any:  # (scikit-learn's Tags)
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # trained on and predicted from as CSR rows
        return tags

    # -- what the subclasses provide -----------------------------------------------------

    def _report_scale(self, d: int) -> float:
        """The factor from the model's mean loss per sample to scikit-learn's reported one
        (1; the regressor's half squared error: 1 / d, the mean over the d outputs)."""
        return 1.0

    # -- fit ------------------------------------------------------------------------------

    def _validate_hyperparameters(self) -> tuple[FloatDtype, list[int]]:
        if hasattr(self, "_validate_params") and self._parameter_constraints:
            self._validate_params()
        dtype = check_dtype(self.dtype)
        hidden: Any = self.hidden_layer_sizes  # (whatever the user set: checked here)
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if any(isinstance(h, (bool, np.bool_)) or not isinstance(h, numbers.Integral)
               for h in hidden):
            raise ValueError(f"hidden_layer_sizes must hold integers, got {self.hidden_layer_sizes}")
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        return dtype, [int(h) for h in hidden]

    def _prepare_X(self, X: ArrayLike, dtype: FloatDtype, reset: bool) -> Inputs:
        """validate_data on X alone, as the model reads it (``_model_input``)."""
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=_dtypes(dtype),
                          reset=reset)
        return self._model_input(X, dtype)

    @staticmethod
    def _model_input(X: Any, dtype: FloatDtype) -> Inputs:
        """X (validated by scikit-learn) as the model reads it, without a copy where it can:
        a sparse X as fastnn's CSR rows (never densified); a float32/float64 array, aligned
        and in native byte order, where it lies (the kernels convert the rows they read);
        anything else as a C array of ``dtype`` (an unaligned buffer, as pickle hands a Dask
        worker, or a byte-swapped one: the same values in the layout the kernels read)."""
        if type(X) is not np.ndarray and _v.is_sparse(X):
            return _v.sparse_rows(X, "X", dtype)
        if _v.readable_rows(X) is not None:
            return X
        return np.require(X, dtype, ["C", "A"])

    def _check_sample_weight(self, sample_weight: ArrayLike | None, n: int
                             ) -> NDArray[np.float64] | None:
        if sample_weight is None:
            return None
        sw: NDArray[np.float64]
        if isinstance(sample_weight, numbers.Number):
            sw = np.full(n, float(cast(float, sample_weight)))
        else:
            sw = cast("NDArray[np.float64]",
                      check_array(sample_weight, ensure_2d=False, dtype=np.float64, order="C",
                                  input_name="sample_weight"))
            if sw.ndim != 1:
                raise ValueError("Sample weights must be 1D array or scalar")
            if sw.shape != (n,):
                raise ValueError(
                    f"sample_weight.shape == {sw.shape}, expected {(n,)}!")
        if (sw < 0).any():
            raise ValueError("sample_weight must be >= 0 (fastnn trains on non-negative weights)")
        return cast("NDArray[np.float64]", sw.copy())  # (copy(): Any in NumPy's 3.10 stubs)

    def _new_model(self, layer_units: list[int], dtype: FloatDtype) -> Sequential:
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

    def _initialize(self, layer_units: list[int], dtype: FloatDtype) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self._model = self._new_model(layer_units, dtype)
        for name in ("_lr", "_no_improvement_count", "loss_curve_",
                     "best_loss_", "validation_scores_", "validation_loss_curve_",
                     "best_validation_score_", "best_validation_loss_"):
            self.__dict__.pop(name, None)  # nothing left over from a fit with another solver
        if self.solver in _STOCHASTIC_SOLVERS:
            self._init_stochastic_attributes()

    def _init_stochastic_attributes(self) -> None:
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

    def _fit(self: _Estimator, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None,
             incremental: bool = False) -> _Estimator:
        dtype, hidden = self._validate_hyperparameters()
        first_pass = "_model" not in self.__dict__ or (not self.warm_start and not incremental)
        X_model, Y, y_out = self._validate_input(X, y, incremental, reset=first_pass, dtype=dtype)
        n_samples, n_features = X_model.shape
        sw = self._check_sample_weight(sample_weight, n_samples)
        sw = self._class_sample_weight(y_out, sw, incremental)
        self.n_outputs_ = self._n_outputs(Y)
        layer_units = [n_features, *hidden, self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_units, dtype)
        else:
            self._check_warm_model(layer_units, dtype)
        self.__dict__.pop("_quick", None)
        if self.solver in _STOCHASTIC_SOLVERS:
            fit_stochastic(self, X_model, Y, y_out, sw, incremental)
        else:
            fit_lbfgs(self, X_model, Y, sw)
        self._check_weights()
        if (self.solver in _STOCHASTIC_SOLVERS and not self.early_stopping
                and "feature_names_in_" not in self.__dict__ and self._quick_allowed()):
            self._quick = self._parameter_values()  # what the next partial_fit may skip
        return self

    def _check_weights(self) -> None:
        # (the model's arrays are C-contiguous after a fit: one native pass each)
        if not all(native().all_finite(p) for layer in self._model.layers
                   for p in layer.parameters()):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")

    # -- partial_fit's quick path ----------------------------------------------------------

    def _quick_partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None,
                           classes: ArrayLike | None) -> bool:
        """``partial_fit`` without scikit-learn's input and parameter checks, for the common
        case after a call that made them all: the estimator's parameters are the very objects
        that call checked (``set_params`` replaces them), no sample weights, X a float ndarray
        of the fitted width (no feature names), y plain targets the quick check below accepts
        (``_quick_targets``). The training is the full path's, to the bit (the same epoch,
        the same shuffle seed). Returns False, having done nothing, when it cannot: the full
        path then runs (and raises the errors)."""
        quick = self.__dict__.get("_quick")
        if (quick is None or sample_weight is not None or type(X) is not np.ndarray
                or X.ndim != 2 or X.shape[0] == 0 or X.shape[1] != self.n_features_in_
                or X.dtype.kind != "f" or X.dtype.itemsize < 4):
            return False
        if not all(map(operator.is_, self._parameter_values(), quick)):
            return False
        model = self._model
        # X where it lies (a float64 X of a float32 model too; any view, strided or reversed),
        # its values checked row by row, finite in the model's dtype, as the full path checks
        # them; an X the kernels cannot read in place (byte-swapped, unaligned) goes the full
        # path, which converts it
        if not native().readable_finite_rows(X, model.dtype == np.float32):
            return False
        X_model = cast(Inputs, X)
        targets = self._quick_targets(y, X_model.shape[0], classes)
        if targets is None:
            return False
        Y, y_out = targets
        # (no _check_weights: the epoch of one call is guarded, its weights checked finite
        # in the native loop, and put back with an error when they are not)
        fit_stochastic(self, X_model, Y, y_out, None, True, seed=self._incremental_seed())
        return True

    def _parameter_values(self) -> tuple[Any, ...]:
        values = type(self).__dict__.get("_parameter_getter")
        if values is None:  # (one attrgetter of every parameter: a call, not 26 getattrs)
            values = type(self)._parameter_getter = operator.attrgetter(
                *self._get_param_names())
        return cast("tuple[Any, ...]", values(self))

    def _incremental_seed(self) -> int:
        """The shuffle seed the full path draws in a partial_fit after the first: the first
        draw of ``check_random_state(random_state)`` (for an int seed, the same every call:
        remembered rather than seeding a new RandomState each time)."""
        rs = self.random_state
        if type(rs) is int or (isinstance(rs, numbers.Integral)
                               and not isinstance(rs, (bool, np.bool_))):
            return _first_draw(int(rs))
        self._random_state = check_random_state(rs)
        return int(self._random_state.randint(np.iinfo(np.int32).max))

    def _quick_allowed(self) -> bool:
        """(subclasses) Whether the quick path may follow this fit."""
        return True

    def _quick_targets(self, y: ArrayLike, n: int, classes: ArrayLike | None
                       ) -> tuple[NDArray[Any], NDArray[Any]] | None:
        """(subclasses) (Y, y_out) as ``_validate_input`` makes them, or None."""
        return None

    def _check_warm_model(self, layer_units: list[int], dtype: FloatDtype) -> None:
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

    def _report_losses(self, Z: FloatArray, T: NDArray[Any]) -> NDArray[np.float64]:
        """Per-sample data losses (float64) of logits Z in scikit-learn's reported scale (the
        model's loss per sample; the squared error's as the mean over the outputs)."""
        # (reduction "none": the per-sample array)
        losses = cast(FloatArray, self._model._loss(Z, T, "none")).astype(np.float64)
        return losses * self._report_scale(Z.shape[1])

    def _weighted_mean(self, losses: NDArray[np.float64], sw: NDArray[np.float64] | None
                       ) -> float:
        if sw is None:
            return float(losses.sum() / losses.shape[0])
        return float((sw * losses).sum() / sw.sum())

    def _l2(self) -> float:
        """sum ||W||^2 over the layers (the L2 penalty's sum, in float64 in a fixed order:
        the same bits on any machine; inf only once float64 overflows)."""
        return native().sum_squares([layer.W for layer in self._model.layers])

    def _validation_split(self, X: Inputs, Y: NDArray[Any], y_out: NDArray[Any],
                          sw: NDArray[np.float64] | None) -> tuple[_Training, Validation]:
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
        pick: Callable[[NDArray[np.float64] | None, NDArray[np.intp]],
                       NDArray[np.float64] | None] = (lambda a, rows: None if a is None
                                                      else a[rows])
        return ((X[train], Y[train], pick(sw, train)),
                (X[val], Y[val], y_out[val], pick(sw, val)))

    # -- prediction helpers ---------------------------------------------------------------

    def _logits(self, X: ArrayLike) -> tuple[FloatArray, type[np.float32] | type[np.float64]]:
        """Validated X -> the last layer's output (model dtype) and the output dtype (X's
        float dtype: float32 stays float32, anything else gives float64)."""
        check_is_fitted(self)
        model = self._model
        given = getattr(X, "dtype", None)  # (either byte order: ">f4" is float32 too)
        single = isinstance(given, np.dtype) and given.kind == "f" and given.itemsize == 4
        out_dtype = np.float32 if single else np.float64
        X = self._prepare_X(X, model.dtype, reset=False)
        return model._logits(X), out_dtype

    def _class_sample_weight(self, y_out: NDArray[Any], sw: NDArray[np.float64] | None,
                             incremental: bool) -> NDArray[np.float64] | None:
        return sw
