"""The contender "sklearn": scikit-learn's ``MLPClassifier`` / ``MLPRegressor``.

Imports only NumPy and scikit-learn (and scipy, which scikit-learn needs, for CSR input).
The estimator tasks (``PartialFit``, ``EstimatorFit``, ``SparseFit``) take the estimator classes, so that
fastnn's drop-in estimators run exactly the same calls (``contender_fastnn.py``).

Where every contender starts from the case's initial weights (train steps, digits fit),
the estimator's ``_initialize`` is followed by setting them (a subclass, so that each fit
is still a fresh estimator's ``fit``, as a user runs it).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


def describe() -> dict[str, Any]:
    import sklearn
    import sklearn.neural_network  # noqa: F401  (what the tasks use)

    return {"library": "scikit-learn", "version": sklearn.__version__}


def _layers(arrays: Arrays) -> list[tuple[np.ndarray, np.ndarray]]:
    n = sum(1 for name in arrays if name.startswith("W") and name[1:].isdigit())
    return [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n)]


def _seeded_classifier(layers: list[tuple[np.ndarray, np.ndarray]], **params: Any) -> Any:
    """An ``MLPClassifier`` that starts from ``layers`` ((W, b) pairs, W (n_out, n_in))."""
    from sklearn.neural_network import MLPClassifier

    class Seeded(MLPClassifier):  # type: ignore[misc]
        def _initialize(self, y: Any, layer_units: Any, dtype: Any) -> None:
            super()._initialize(y, layer_units, dtype)
            self.coefs_ = [np.array(W.T, dtype=dtype) for W, _ in layers]
            self.intercepts_ = [np.array(b, dtype=dtype) for _, b in layers]

    hidden = tuple(W.shape[0] for W, _ in layers[:-1])
    return Seeded(hidden_layer_sizes=hidden, activation="relu", **params)


def _weights(clf: Any) -> Arrays:
    out = {}
    for i, (W, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        out[f"W{i}"] = np.array(W.T)
        out[f"b{i}"] = np.array(b)
    return out


class TrainSteps:
    """``partial_fit`` over the k batches (batch_size N, no shuffle, plain SGD): k steps a
    call; outputs: the weights after one call."""

    def __init__(self, params: dict[str, Any], arrays: Arrays) -> None:
        self.clf = _seeded_classifier(_layers(arrays), solver="sgd",
                                      batch_size=params["batch_size"],
                                      learning_rate_init=params["lr"], momentum=0.0,
                                      alpha=0.0, shuffle=False)
        self.X, self.y = arrays["X"], arrays["y"]
        self.classes = np.arange(arrays[f"W{len(_layers(arrays)) - 1}"].shape[0])

    def run(self) -> None:
        self.clf.partial_fit(self.X, self.y, classes=self.classes)

    def outputs(self) -> Arrays:
        self.run()
        return _weights(self.clf)


class DigitsFit:
    """A fresh estimator's ``fit``: SGD with (plain) momentum, no L2, every epoch run
    (tol 0); outputs: test predictions."""

    def __init__(self, params: dict[str, Any], arrays: Arrays) -> None:
        self.arrays = arrays
        self.settings = dict(solver="sgd", alpha=0.0, batch_size=params["batch_size"],
                             learning_rate_init=params["lr"], momentum=params["momentum"],
                             nesterovs_momentum=False, max_iter=params["epochs"],
                             shuffle=True, tol=0.0, n_iter_no_change=10 ** 6, random_state=0)

    def run(self) -> Any:
        clf = _seeded_classifier(_layers(self.arrays), **self.settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: the budget is the point
            return clf.fit(self.arrays["X"], self.arrays["y"])

    def outputs(self) -> Arrays:
        return {"pred": self.run().predict(self.arrays["X_test"])}


class PredictProba:
    def __init__(self, arrays: Arrays) -> None:
        layers = _layers(arrays)
        self.X = arrays["X"]
        n_in, n_out = layers[0][0].shape[1], layers[-1][0].shape[0]
        self.clf = _seeded_classifier(layers, solver="sgd")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # initialise (one step on two zero rows), then the case's weights
            self.clf.partial_fit(np.zeros((2, n_in), np.float32), np.arange(2),
                                 classes=np.arange(n_out))
        self.clf.coefs_ = [np.array(W.T) for W, _ in layers]
        self.clf.intercepts_ = [np.array(b) for _, b in layers]

    def run(self) -> np.ndarray:
        return self.clf.predict_proba(self.X)  # type: ignore[no-any-return]

    def outputs(self) -> Arrays:
        return {"P": self.run()}


class PartialFit:
    """``partial_fit`` of one 16-row batch per call (the next batch each time, cycling),
    on ``MLPClassifier(hidden_layer_sizes=(128,), random_state=0)`` or the regressor, all
    else scikit-learn's defaults (adam); the first call, with ``classes``, is made at set-up.
    Outputs: the weights after one more call."""

    def __init__(self, classifier: Any, regressor: Any, params: dict[str, Any],
                 arrays: Arrays) -> None:
        size = params["batch_size"]
        n = len(arrays["X"]) // size
        self.batches = [(arrays["X"][i * size:(i + 1) * size],
                         arrays["y"][i * size:(i + 1) * size]) for i in range(n)]
        hidden = (params["hidden"],)
        self.next = 1
        X, y = self.batches[0]
        if params["estimator"] == "classifier":
            self.est = classifier(hidden_layer_sizes=hidden, random_state=0)
            self.est.partial_fit(X, y, classes=np.unique(arrays["y"]))
        else:
            self.est = regressor(hidden_layer_sizes=hidden, random_state=0)
            self.est.partial_fit(X, y)

    def run(self) -> None:
        X, y = self.batches[self.next]
        self.next = (self.next + 1) % len(self.batches)
        self.est.partial_fit(X, y)

    def outputs(self) -> Arrays:
        self.run()
        return {f"{kind}{i}": np.array(a, dtype=np.float64)
                for kind, arrays in (("W", self.est.coefs_), ("b", self.est.intercepts_))
                for i, a in enumerate(arrays)}


class EstimatorFit:
    """A fresh estimator's ``fit`` with the case's parameters (every epoch run: tol 0,
    random_state 0); outputs: its test score."""

    def __init__(self, classifier: Any, regressor: Any, params: dict[str, Any],
                 arrays: Arrays) -> None:
        self.arrays = arrays
        self.make = classifier if params["estimator"] == "classifier" else regressor
        settings = dict(params["settings"])
        settings["hidden_layer_sizes"] = tuple(settings["hidden_layer_sizes"])
        self.settings = {**settings, "tol": 0.0, "n_iter_no_change": 10 ** 6,
                         "random_state": 0}

    def run(self) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: the budget is the point
            return self.make(**self.settings).fit(self.arrays["X"], self.arrays["y"])

    def outputs(self) -> Arrays:
        score = self.run().score(self.arrays["X_test"], self.arrays["y_test"])
        return {"score": np.array(score)}


def csr(arrays: Arrays, prefix: str) -> Any:
    import scipy.sparse as sp

    return sp.csr_matrix((arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"],
                          arrays[f"{prefix}_indptr"]),
                         shape=tuple(int(n) for n in arrays[f"{prefix}_shape"]))


class SparseFit:
    """A fresh ``MLPClassifier(hidden_layer_sizes=(64,), solver="adam", max_iter=3,
    batch_size=200, random_state=0)`` fitted on the CSR matrix; outputs: the predictions of
    the last fit on the held-out rows (the case takes them after timing)."""

    def __init__(self, classifier: Any, params: dict[str, Any], arrays: Arrays) -> None:
        self.X, self.T = csr(arrays, "X"), csr(arrays, "T")
        self.y = arrays["y"]
        self.classifier = classifier
        self.settings = dict(hidden_layer_sizes=(params["hidden"],), solver="adam",
                             max_iter=params["max_iter"], batch_size=params["batch_size"],
                             random_state=0)
        self.model: Any = None

    def run(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning after 3 epochs
            self.model = self.classifier(**self.settings).fit(self.X, self.y)

    def outputs(self) -> Arrays:
        if self.model is None:
            self.run()
        return {"pred": self.model.predict(self.T)}


def setup(name: str, workload: str, params: dict[str, Any], arrays: Arrays,
          folder: str) -> Any:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    if workload == "train":
        return TrainSteps(params, arrays)
    if workload == "digits":
        return DigitsFit(params, arrays)
    if workload == "inference":
        return PredictProba(arrays)
    if workload == "partial_fit":
        return PartialFit(MLPClassifier, MLPRegressor, params, arrays)
    if workload == "estimators":
        return EstimatorFit(MLPClassifier, MLPRegressor, params, arrays)
    if workload == "sparse":
        return SparseFit(MLPClassifier, params, arrays)
    return None
