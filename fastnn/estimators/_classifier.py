"""MLPClassifier: scikit-learn's multi-layer perceptron classifier on fastnn."""

from __future__ import annotations

from typing import Any, TypeVar, cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from .. import functional as F
from .._typing import FloatArray, Inputs
from ..backends import native
from ._base import (_STOCHASTIC_SOLVERS, FloatDtype, StrOptions, _BaseMLP, _dtypes,
                    available_if)

__all__ = ["MLPClassifier"]

_Classifier = TypeVar("_Classifier", bound="MLPClassifier")
#: ``class_weight``: {label: weight}, "balanced", a list of {0: w, 1: w} (multi-label) or None
ClassWeight = dict[Any, float] | list[dict[Any, float]] | str | None


class MLPClassifier(ClassifierMixin, _BaseMLP):  # type: ignore[misc]  # (scikit-learn: Any)
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
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start
        As scikit-learn's.
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
    classes_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_
        As scikit-learn's.
    n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_
        As scikit-learn's.
    coefs_, intercepts_
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

    def __init__(self, hidden_layer_sizes: ArrayLike = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: int | np.random.RandomState | None = None, tol: float = 1e-4,
                 verbose: bool | int = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int | float = 10,
                 max_fun: int = 15000, dtype: DTypeLike = "float32",
                 class_weight: ClassWeight = None) -> None:
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

    class_weight: ClassWeight
    classes_: NDArray[Any]
    _label_binarizer: Any  # scikit-learn's LabelBinarizer (not typed)
    _quick_classes: object  # the ``classes`` a quick partial_fit last checked
    _indices_of: tuple[NDArray[Any], bool]  # (classes_, whether it is 0..K-1)

    _parameter_constraints = {
        **_BaseMLP._parameter_constraints,
        **({"class_weight": [dict, list, StrOptions({"balanced"}), None]}
           if StrOptions is not None else {}),
    }

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _fastnn_loss(self) -> str:
        return "cross_entropy" if self._label_binarizer.y_type_ == "multiclass" \
            else "binary_cross_entropy"

    def _out_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _n_outputs(self, Y: NDArray[Any]) -> int:
        return len(self.classes_) if Y.ndim == 1 else Y.shape[1]

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool,
                        dtype: FloatDtype) -> tuple[Inputs, NDArray[Any], NDArray[Any]]:
        # (X, y: as the user passed them, then as scikit-learn's validate_data returns them)
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=_dtypes(dtype), reset=reset)
        X = self._model_input(X, dtype)
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

    def _class_sample_weight(self, y: NDArray[Any], sw: NDArray[np.float64] | None,
                             incremental: bool) -> NDArray[np.float64] | None:
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

    def _score_logits(self, Z: FloatArray, y: NDArray[Any], sw: NDArray[np.float64] | None
                      ) -> float:
        if not np.isfinite(Z).all():
            return np.nan
        return float(accuracy_score(y, self._labels(Z), sample_weight=sw))

    def _labels(self, Z: FloatArray) -> NDArray[Any]:
        lb = self._label_binarizer
        if lb.y_type_ == "multiclass":
            return cast("NDArray[Any]", self.classes_.take(Z.argmax(axis=1)))
        return cast("NDArray[Any]", lb.inverse_transform((Z > 0).astype(np.int64)))

    def fit(self: _Classifier, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None
            ) -> _Classifier:
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

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    @available_if(lambda est: est._check_solver())
    def partial_fit(self: _Classifier, X: ArrayLike, y: ArrayLike,
                    sample_weight: ArrayLike | None = None, classes: ArrayLike | None = None
                    ) -> _Classifier:
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
        elif self._quick_partial_fit(X, y, sample_weight, classes):
            return self
        elif classes is not None:
            if not np.array_equal(self.classes_, unique_labels(classes)):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _quick_allowed(self) -> bool:
        return self.class_weight is None and self._label_binarizer.y_type_ in (
            "binary", "multiclass")

    def _quick_targets(self, y: ArrayLike, n: int, classes: ArrayLike | None
                       ) -> tuple[NDArray[Any], NDArray[Any]] | None:
        # labels of a plain 1-D ndarray, each one of classes_ (and ``classes``, if passed,
        # the same as classes_): the 0..K-1 indices (multiclass) or the 0/1 column (binary)
        if type(y) is not np.ndarray or y.shape != (n,) or y.dtype.kind not in "iufUSb":
            return None
        if classes is not None and classes is not self.__dict__.get("_quick_classes"):
            given = np.asarray(classes)
            if given.ndim != 1 or not np.array_equal(self.classes_, np.unique(given)):
                return None
            self._quick_classes = classes  # (the same object next time: not compared again)
        K = len(self.classes_)
        multiclass = self._label_binarizer.y_type_ == "multiclass"
        if multiclass and self._classes_are_indices() and native().plain_labels(y, n, K):
            return y, y  # labels 0..K-1 of an intp array: each its own place in classes_
        try:
            idx = np.searchsorted(self.classes_, y)
            idx[idx == K] = 0
            if not (self.classes_[idx] == y).all():
                return None
        except (TypeError, ValueError):  # labels not comparable with classes_
            return None
        if multiclass:
            return np.ascontiguousarray(idx, dtype=np.intp), y
        return np.ascontiguousarray(idx.reshape(n, 1), dtype=self._model.dtype), y

    def _classes_are_indices(self) -> bool:
        """Whether ``classes_`` is 0..K-1 in integers (kept for the ``classes_`` object
        checked: one comparison per fit, not per partial_fit call)."""
        classes = self.classes_
        seen = self.__dict__.get("_indices_of")
        if seen is None or seen[0] is not classes:
            seen = self._indices_of = (classes, classes.dtype.kind in "iu" and np.array_equal(
                classes, np.arange(len(classes))))
        return bool(seen[1])

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """Class labels (of ``classes_``), or a label indicator matrix for multi-label."""
        Z, _ = self._logits(X)
        return self._labels(Z)

    def predict_proba(self, X: ArrayLike) -> FloatArray:
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

    def predict_log_proba(self, X: ArrayLike) -> FloatArray:
        """``log(predict_proba(X))``, as scikit-learn's (-inf where a probability is 0)."""
        P = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(P, out=P)
