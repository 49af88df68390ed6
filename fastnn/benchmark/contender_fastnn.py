"""The contenders "fastnn" (the public API on the compiled backend) and "reference" (the
same calls on the NumPy reference: ``fastnn.reference`` for the kernels, the "numpy"
backend for the models, NumPy's own ``X @ W.T`` for the GEMM peak).

Loaded by ``worker.py`` in a worker that imports fastnn; see ``cases.py`` for the
workloads. The estimator workloads (``partial_fit``, ``estimators``, ``sparse``) are fastnn's only, and
use the same tasks as scikit-learn's (``peer_sklearn.py``) with fastnn's estimators.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import fastnn
import fastnn.functional as F
from fastnn import reference
from fastnn._version import __version__

from fastnn.benchmark import peer_sklearn  # loaded by path: no relative imports
from fastnn.benchmark.cases import weights_of

Arrays = dict[str, np.ndarray]


def describe() -> dict[str, Any]:
    facts: dict[str, Any] = {"library": "fastnn", "version": __version__,
                             "fastnn_file": fastnn.__file__,
                             "threads": fastnn.get_num_threads()}
    try:
        from threadpoolctl import threadpool_info

        facts["blas"] = [{k: pool.get(k) for k in ("internal_api", "version", "architecture",
                                                   "num_threads", "filepath")}
                         for pool in threadpool_info() if pool.get("user_api") == "blas"]
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency of fastnn
        pass
    return facts


def mlp(arrays: Arrays) -> fastnn.MLP:
    """The relu/softmax MLP with the case's initial weights (copied: the inputs are
    read-only)."""
    n_layers = sum(1 for name in arrays if name.startswith("W") and name[1:].isdigit())
    return fastnn.MLP.from_weights([(arrays[f"W{i}"], arrays[f"b{i}"])
                                    for i in range(n_layers)], activation="relu",
                                   output="softmax")


class Fit:
    """``model.fit`` over the case's rows (k batches of N, shuffle off) on the model,
    which keeps training from call to call; outputs: the weights after one call."""

    def __init__(self, arrays: Arrays, params: dict[str, Any], backend: str) -> None:
        self.model = mlp(arrays)
        self.X, self.y = arrays["X"], arrays["y"]
        self.settings = {"epochs": 1, "batch_size": params["batch_size"],
                         "lr": params["lr"], "shuffle": False}
        self.backend = backend

    def run(self) -> None:
        if self.backend == F.get_backend():  # no wrapper around the call that is timed
            self.model.fit(self.X, self.y, **self.settings)
            return
        with fastnn.use_backend(self.backend):
            self.model.fit(self.X, self.y, **self.settings)

    def outputs(self) -> Arrays:
        self.run()
        return weights_of(self.model)


class DigitsFit:
    """A fresh MLP from the initial weights, fitted on digits; outputs: test predictions."""

    def __init__(self, arrays: Arrays, params: dict[str, Any], backend: str) -> None:
        self.arrays = arrays
        self.settings = {**params, "random_state": 0}
        self.backend = backend

    def run(self) -> fastnn.MLP:
        model = mlp(self.arrays)
        with fastnn.use_backend(self.backend):
            model.fit(self.arrays["X"], self.arrays["y"], **self.settings)
        return model

    def outputs(self) -> Arrays:
        model = self.run()
        with fastnn.use_backend(self.backend):
            return {"pred": np.asarray(model.predict(self.arrays["X_test"]))}


def setup(name: str, workload: str, params: dict[str, Any], arrays: Arrays,
          folder: str) -> Any:
    ref = name == "reference"
    backend = "numpy" if ref else F.get_backend()
    K = reference if ref else F
    a = arrays
    if workload == "peak":
        product = (lambda: a["X"] @ a["W"].T) if ref else (lambda: F.linear(a["X"], a["W"]))
        return (product, ("U",))
    if workload == "forward":
        return (lambda: K.linear(a["X"], a["W"], a["b"], "relu"), ("U",))
    if workload == "loss":
        return (lambda: K.cross_entropy(a["Z"], a["y"], return_grad=True), ("loss", "dZ"))
    if workload == "backward":
        return (lambda: K.linear_backward(a["dU"], a["X"], a["W"], a["U"], "relu"),
                ("dX", "dW", "db"))
    if workload in ("train", "fit_cost"):
        return Fit(arrays, params, backend)
    if workload == "digits":
        return DigitsFit(arrays, params, backend)
    if workload == "inference":
        model = mlp(arrays)
        if not ref:  # fixed for serving (its W^T packed), as ONNX Runtime's session is
            model.freeze()
            return (lambda: model.predict_proba(a["X"]), ("P",))

        def predict_proba() -> Any:
            with fastnn.use_backend("numpy"):
                return model.predict_proba(a["X"])

        return (predict_proba, ("P",))
    if ref:
        return None
    if workload not in ("partial_fit", "estimators", "sparse"):
        return None
    # (not fastnn.MLPClassifier: fastnn's __init__ does not re-export it for mypy --strict)
    from fastnn.estimators import MLPClassifier, MLPRegressor  # scikit-learn: first use only

    if workload == "partial_fit":
        return peer_sklearn.PartialFit(MLPClassifier, MLPRegressor, params, arrays)
    if workload == "estimators":
        return peer_sklearn.EstimatorFit(MLPClassifier, MLPRegressor, params, arrays)
    return peer_sklearn.SparseFit(MLPClassifier, params, arrays)


def preload_fit() -> dict[str, Any]:
    """What the guest case does before PyTorch runs: import fastnn and fit a digits MLP."""
    from fastnn.datasets import load_digits

    X, y = load_digits()
    fastnn.MLP(64, 128, 10, random_state=0).fit(X / 16.0, y, epochs=1, random_state=0)
    return {"fastnn": __version__}
