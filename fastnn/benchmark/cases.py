"""The grid of benchmark cases and the one set of builders of their inputs.

A case is one workload at one shape with the contenders that take part. The parent process
builds every case's inputs (seeded arrays, the initial weights every contender starts from,
an ONNX file for ONNX Runtime) with fastnn and NumPy, and writes them as ``.npy`` files to a
folder that each contender's worker reads; the pytest-benchmark suites in ``bench/`` are
parametrised from the same list (``cases()``).

Workloads (float32 throughout, the MLPs relu hidden layers and a softmax output):

* ``peak``: X @ W.T on 2048 x 2048 x 2048, the machine's measured GEMM peak (the best
  contender's GFLOP/s), the denominator of "% of peak";
* ``forward``: the fused layer U = relu(X W^T + b) (eq. 10a);
* ``loss``: softmax cross-entropy (eq. 18), mean, and its gradient dL/dZ;
* ``backward``: a relu layer's dX, dW and db from dU;
* ``train``: k SGD steps (lr 0.01, no momentum) of an N_in-N_h-10 MLP on k batches of N
  rows, one call: fastnn ``MLP.fit`` over the k batches (shuffle off), PyTorch a loop of
  steps, JAX a ``lax.scan`` of jitted steps, scikit-learn ``partial_fit`` over the k
  batches; reported per step;
* ``fit_cost``: one ``fit`` call on one 4-row batch of a 64-128-10 MLP: a fit call's
  fixed cost (validation, workspaces) plus one tiny step;
* ``partial_fit``: ``partial_fit`` of a 16-row batch per call, ``MLPClassifier`` and
  ``MLPRegressor`` (64-128-10 and 64-128-1, adam, scikit-learn's defaults), fastnn's
  estimators against scikit-learn's;
* ``estimators``: fastnn's ``MLPClassifier`` / ``MLPRegressor`` against scikit-learn's,
  fit for fit with the same parameters (every epoch run: tol 0): digits with sgd, adam and
  lbfgs, and the diabetes regression (adam, alpha 1, 200 epochs), with the test score;
* ``digits``: the full fit on the bundled digits (64-128-10, 30 epochs, batch 32, SGD lr 0.1,
  momentum 0.9), with the test accuracy; JAX runs each epoch as one jitted ``lax.scan``;
* ``inference``: ``predict_proba`` of a trained 784-256-10 MLP at batch 1, 32 and 4096;
  ONNX Runtime runs ``fastnn.interop.to_onnx``'s graph with default session options;
* ``guest``: fastnn as a guest in someone else's process: a 200-step PyTorch loop (digits
  64-128-10, batch 32) in a process of its own, and in one that imported fastnn and ran a
  fit first;
* ``sparse`` (opt-in, minutes): ``MLPClassifier(hidden_layer_sizes=(64,), solver="adam",
  max_iter=3, batch_size=200)`` on the hashed TF-IDF of 20,000 documents of
  ``fastnn.datasets.make_documents`` (2^18 columns, ~125 non-zeros a row, 8 topics, CSR,
  80% to train, 20% held out) against scikit-learn's: time, peak memory, held-out
  accuracy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SEED = 20240607

# (N, N_in, N_out): the notes' tiny nets, a small layer, MNIST-sized layers, a large square
# layer, a large batch.
GRID = [(4, 1, 2), (4, 2, 3), (32, 64, 64), (128, 784, 128), (256, 784, 256),
        (1024, 1024, 1024), (4096, 256, 256)]
# (N, N_in, N_h, k): the train steps, k steps (k batches of N rows) per call; the grid and
# the (512, 784-512-10) MLP of the goals
TRAIN = [(4, 1, 2, 500), (4, 2, 3, 500), (32, 64, 64, 100), (128, 784, 128, 20),
         (256, 784, 256, 10), (512, 784, 512, 4), (1024, 1024, 1024, 2), (4096, 256, 256, 2)]
N_CLASSES = 10
TRAIN_LR = 0.01
PEAK_SIZE = 2048
INFERENCE_NET = (784, 256, 10)
INFERENCE_BATCHES = (1, 32, 4096)
DIGITS_NET = (64, 128, 10)
DIGITS_FIT = {"epochs": 30, "batch_size": 32, "lr": 0.1, "momentum": 0.9}
# fastnn's digits fit reaches 0.971 test accuracy on average over random_state 0-39
# (0.964-0.978); a fit is checked to have learned the digits before it is timed
DIGITS_FLOOR = {"fastnn": 0.96, "reference": 0.96}
PEER_DIGITS_FLOOR = 0.95
PARTIAL_FIT_BATCH = 16
ESTIMATOR_FITS = {  # name: (estimator, data, parameters of both contenders, score floor)
    "digits sgd": ("classifier", "digits", {"hidden_layer_sizes": [128], "solver": "sgd",
                                            "batch_size": 32, "max_iter": 30,
                                            "learning_rate_init": 0.1}, 0.95),
    "digits adam": ("classifier", "digits", {"hidden_layer_sizes": [128], "solver": "adam",
                                             "batch_size": 32, "max_iter": 30}, 0.95),
    "digits lbfgs": ("classifier", "digits", {"hidden_layer_sizes": [128],
                                              "solver": "lbfgs", "max_iter": 100}, 0.95),
    "diabetes adam": ("regressor", "diabetes", {"hidden_layer_sizes": [100],
                                                "solver": "adam", "alpha": 1.0,
                                                "max_iter": 200}, 0.2),
}
GUEST = {"steps": 200, "batch_size": 32, "lr": 0.1, "momentum": 0.9}
SPARSE = {"documents": 20_000, "columns": 2 ** 18, "classes": 8, "hidden": 64, "max_iter": 3,
          "batch_size": 200}
SPARSE_MEMORY_CAP_GIB = 6.0  # address space a sparse fit may add (see worker.py)

PEERS = ("torch", "jax", "onnxruntime", "sklearn")


@dataclass(frozen=True)
class Inputs:
    """What the parent writes for a case: arrays (``NAME.npy``) and other files."""

    arrays: dict[str, np.ndarray]
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One workload at one shape.

    ``params`` go to every worker as JSON. A call does ``steps`` units of work (train steps),
    and times are reported per unit; ``flops`` counts one unit's floating-point operations
    (0: no GFLOP/s). ``check`` says how a contender's outputs are checked before it is
    timed: "close" to the base contender's (``rtol``, ``atol``), "accuracy" (the share of
    ``outputs["pred"] == y_test`` at least ``floor[name]``), "score" (``outputs["score"]``,
    the estimator's test score, at least ``floor[name]``), or "none". A ``single_shot``
    case times one call per round with no calibration and no warm-up (a fit of minutes)
    and takes its outputs after timing.
    """

    id: str
    workload: str
    label: str
    contenders: tuple[str, ...]
    build: Callable[[], Inputs]
    params: dict[str, Any] = field(default_factory=dict)
    base: str = "fastnn"
    steps: int = 1
    flops: float = 0.0
    check: str = "close"
    rtol: float = 1e-4
    atol: float = 1e-5
    floor: dict[str, float] = field(default_factory=dict)
    single_shot: bool = False
    opt_in: bool = False

    def spec(self) -> dict[str, Any]:
        """What a worker is told about the case (JSON)."""
        return {"id": self.id, "workload": self.workload, "params": self.params}


# ---------------------------------------------------------------------------------------
# Builders: seeded, float32 (labels intp), the same for every contender
# ---------------------------------------------------------------------------------------


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *key])


def layer_arrays(N: int, n_in: int, n_out: int) -> dict[str, np.ndarray]:
    """X (N, n_in), W (n_out, n_in) scaled by 1/sqrt(n_in), b (n_out,)."""
    rng = _rng(N, n_in, n_out)
    X = rng.standard_normal((N, n_in)).astype(np.float32)
    W = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
    b = (0.1 * rng.standard_normal(n_out)).astype(np.float32)
    return {"X": X, "W": W, "b": b}


def logits_arrays(N: int, K: int) -> dict[str, np.ndarray]:
    """Logits Z (N, K) and labels y in 0..K-1."""
    rng = _rng(1, N, K)
    return {"Z": (2.0 * rng.standard_normal((N, K))).astype(np.float32),
            "y": rng.integers(0, K, size=N).astype(np.intp)}


def backward_arrays(N: int, n_in: int, n_out: int) -> dict[str, np.ndarray]:
    """A layer's X, W, b, its forward U = relu(X W^T + b) and an upstream gradient dU."""
    from fastnn import reference

    arrays = layer_arrays(N, n_in, n_out)
    arrays["U"] = reference.linear(arrays["X"], arrays["W"], arrays["b"], "relu")
    arrays["dU"] = _rng(3, N, n_in, n_out).standard_normal((N, n_out)).astype(np.float32)
    return arrays


def mlp_weights(n_in: int, n_hidden: int, n_out: int) -> dict[str, np.ndarray]:
    """The initial weights of fastnn's ``MLP(n_in, n_hidden, n_out, random_state=0)``
    (He's bound for the relu layer) as W0, b0, W1, b1."""
    import fastnn

    model = fastnn.MLP(n_in, n_hidden, n_out, random_state=0)
    return weights_of(model)


def weights_of(model: Any) -> dict[str, np.ndarray]:
    out = {}
    for i, layer in enumerate(model.layers):
        out[f"W{i}"] = np.array(layer.W)
        out[f"b{i}"] = np.array(layer.b)
    return out


def train_arrays(N: int, n_in: int, n_hidden: int, k: int) -> dict[str, np.ndarray]:
    """k batches of N rows (X (k N, n_in), labels y) and the MLP's initial weights."""
    rng = _rng(2, N, n_in, k)
    X = rng.standard_normal((k * N, n_in)).astype(np.float32)
    y = rng.integers(0, N_CLASSES, k * N).astype(np.intp)
    return {"X": X, "y": y, **mlp_weights(n_in, n_hidden, N_CLASSES)}


@functools.lru_cache(maxsize=1)
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bundled digits scaled to [0, 1], float32, split 75/25 (random_state 0)."""
    from fastnn.datasets import load_digits, train_test_split

    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25,
                                                        random_state=0)
    return (X_train.astype(np.float32), X_test.astype(np.float32),
            y_train.astype(np.intp), y_test.astype(np.intp))


def digits_arrays() -> dict[str, np.ndarray]:
    X_train, X_test, y_train, y_test = digits_split()
    return {"X": X_train, "y": y_train, "X_test": X_test, "y_test": y_test,
            **mlp_weights(*DIGITS_NET)}


def partial_fit_arrays(estimator: str) -> dict[str, np.ndarray]:
    """The digits training rows (cut into 16-row batches by the contenders) and targets:
    the labels for the classifier, the standardised digit value for the regressor."""
    X_train, _, y_train, _ = digits_split()
    X = X_train.astype(np.float64)  # what a user holds: NumPy's default float
    if estimator == "classifier":
        return {"X": X, "y": y_train}
    target = (y_train - y_train.mean()) / y_train.std()
    return {"X": X, "y": target.astype(np.float64)}


@functools.lru_cache(maxsize=1)
def estimator_arrays(data: str) -> dict[str, np.ndarray]:
    """A training and a test split as users hold them (float64): the digits scaled to
    [0, 1], or scikit-learn's diabetes data with X and y standardised."""
    if data == "digits":
        X_train, X_test, y_train, y_test = digits_split()
        return {"X": X_train.astype(np.float64), "y": y_train,
                "X_test": X_test.astype(np.float64), "y_test": y_test}
    from sklearn.datasets import load_diabetes

    from fastnn.datasets import train_test_split

    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (y - y.mean()) / y.std()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=False)
    return {"X": X_train, "y": y_train, "X_test": X_test, "y_test": y_test}


@functools.lru_cache(maxsize=1)
def inference_weights() -> dict[str, np.ndarray]:
    """The 784-256-10 net of the inference workload, trained for 2 epochs on 4096
    synthetic 784-pixel images whose labels a random linear teacher gives."""
    import fastnn

    n_in, n_hidden, n_out = INFERENCE_NET
    rng = _rng(4)
    X = rng.random((4096, n_in), dtype=np.float32)
    teacher = rng.standard_normal((n_in, n_out)).astype(np.float32)
    y = (X @ teacher).argmax(axis=1)
    model = fastnn.MLP(n_in, n_hidden, n_out, random_state=0)
    model.fit(X, y, epochs=2, batch_size=64, lr=0.05, random_state=0)
    return weights_of(model)


def onnx_model(weights: dict[str, np.ndarray]) -> dict[str, bytes]:
    """``fastnn.interop.to_onnx`` of the net (no file when the onnx package is missing:
    ONNX Runtime's worker then reports it)."""
    import fastnn
    from fastnn.interop import to_onnx

    n_layers = len(weights) // 2
    model = fastnn.MLP.from_weights([(weights[f"W{i}"], weights[f"b{i}"])
                                     for i in range(n_layers)],
                                    activation="relu", output="softmax")
    try:
        return {"model.onnx": to_onnx(model).SerializeToString()}
    except ImportError:
        return {}


def inference_inputs(batch: int) -> Inputs:
    weights = inference_weights()
    X = _rng(5, batch).random((batch, INFERENCE_NET[0]), dtype=np.float32)
    return Inputs({"X": X, **weights}, onnx_model(weights))


def peak_arrays(n: int) -> dict[str, np.ndarray]:
    rng = _rng(6, n)
    return {"X": rng.standard_normal((n, n)).astype(np.float32),
            "W": rng.standard_normal((n, n)).astype(np.float32)}


def sparse_arrays() -> dict[str, np.ndarray]:
    """The sparse case's CSR matrices (float64 TF-IDF of hashed words) and labels: a corpus
    of ``fastnn.datasets.make_documents`` (``SPARSE["documents"]`` documents of invented
    words, ``SPARSE["classes"]`` topics), scikit-learn's ``HashingVectorizer`` into 2^18
    columns (no alternating signs, no norm) then ``TfidfTransformer``, split 80/20
    (stratified): X, y to train on, T, y_test held out. Needs scikit-learn, as the case's
    peer does."""
    try:
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - scikit-learn is in the bench extra
        raise ImportError("the sparse case builds its matrix with scikit-learn: "
                          'pip install "fastnn[bench]"') from exc
    from fastnn.datasets import make_documents

    documents, labels = make_documents(SPARSE["documents"], n_classes=SPARSE["classes"],
                                       random_state=0)
    counts = HashingVectorizer(n_features=SPARSE["columns"], alternate_sign=False, norm=None)
    M = TfidfTransformer().fit_transform(counts.transform(documents)).tocsr()
    X, T, y, y_test = train_test_split(M, labels, test_size=0.2, random_state=0,
                                       stratify=labels)
    out = {"y": np.asarray(y, dtype=np.intp), "y_test": np.asarray(y_test, dtype=np.intp)}
    for prefix, part in (("X", X), ("T", T)):
        out.update({f"{prefix}_data": part.data, f"{prefix}_indices": part.indices,
                    f"{prefix}_indptr": part.indptr, f"{prefix}_shape": np.array(part.shape)})
    return out


def guest_arrays() -> dict[str, np.ndarray]:
    X_train, _, y_train, _ = digits_split()
    return {"X": X_train, "y": y_train, **mlp_weights(*DIGITS_NET)}


# ---------------------------------------------------------------------------------------
# The grid
# ---------------------------------------------------------------------------------------


def _built(fn: Callable[..., Any], *args: Any) -> Inputs:
    return Inputs(fn(*args))


def _builder(fn: Callable[..., Any], *args: Any) -> Callable[[], Inputs]:
    """A case's builder: ``fn(*args)``'s arrays as the case's inputs."""
    return functools.partial(_built, fn, *args)


def layer_tag(N: int, n_in: int, n_out: int) -> str:
    return f"N={N} {n_in}->{n_out}"


def mlp_tag(N: int, n_in: int, n_hidden: int, n_out: int = N_CLASSES) -> str:
    return f"N={N} {n_in}-{n_hidden}-{n_out}"


def train_flops(N: int, n_in: int, n_hidden: int, n_out: int = N_CLASSES) -> float:
    """Floating-point operations of one SGD step: the forward products, dW of both layers
    and dX of the output layer (the input layer needs no dX), 2 a multiply-add."""
    return 2.0 * N * (2 * n_in * n_hidden + 3 * n_hidden * n_out)


KERNEL_PEERS = ("fastnn", "reference", "torch", "jax")
MODEL_PEERS = ("fastnn", "reference", "torch", "jax", "sklearn")
INFERENCE_PEERS = ("fastnn", "reference", "torch", "jax", "onnxruntime", "sklearn")


def cases() -> list[Case]:
    """Every case, in the order they run and are reported."""
    n = PEAK_SIZE
    out = [Case(f"peak/{n}", "peak", f"{n}x{n} @ ({n}x{n}).T", KERNEL_PEERS,
                _builder(peak_arrays, n), flops=2.0 * n ** 3, rtol=1e-3, atol=1e-2)]
    for N, n_in, n_out in GRID:
        tag = layer_tag(N, n_in, n_out)
        out.append(Case(f"forward/{tag}", "forward", tag, KERNEL_PEERS,
                        _builder(layer_arrays, N, n_in, n_out),
                        flops=2.0 * N * n_in * n_out, atol=1e-4))
    for N, _, K in GRID:
        tag = f"N={N} K={K}"
        out.append(Case(f"loss/{tag}", "loss", tag, KERNEL_PEERS,
                        _builder(logits_arrays, N, K), atol=1e-6))
    for N, n_in, n_out in GRID:
        tag = layer_tag(N, n_in, n_out)
        out.append(Case(f"backward/{tag}", "backward", tag, KERNEL_PEERS,
                        _builder(backward_arrays, N, n_in, n_out),
                        flops=4.0 * N * n_in * n_out, rtol=1e-3, atol=1e-3))
    for N, n_in, n_hidden, k in TRAIN:
        tag = mlp_tag(N, n_in, n_hidden)
        out.append(Case(f"train/{tag}", "train", f"{tag}, {k} steps a call", MODEL_PEERS,
                        _builder(train_arrays, N, n_in, n_hidden, k),
                        params={"batch_size": N, "steps": k, "lr": TRAIN_LR}, steps=k,
                        flops=train_flops(N, n_in, n_hidden), rtol=1e-3, atol=1e-4))
    out.append(Case("fit_cost/N=4 64-128-10", "fit_cost",
                    "fit(X, y) on one 4-row batch, 64-128-10", ("fastnn",),
                    _builder(train_arrays, 4, 64, 128, 1),
                    params={"batch_size": 4, "steps": 1, "lr": TRAIN_LR}, check="none"))
    for estimator, n_out in (("classifier", 10), ("regressor", 1)):
        out.append(Case(f"partial_fit/{estimator}", "partial_fit",
                        f"MLP{estimator.capitalize()} 64-128-{n_out}, 16-row batch",
                        ("fastnn", "sklearn"), _builder(partial_fit_arrays, estimator),
                        params={"estimator": estimator, "hidden": 128,
                                "batch_size": PARTIAL_FIT_BATCH}, rtol=1e-3, atol=1e-4))
    for name, (estimator, data, settings, floor) in ESTIMATOR_FITS.items():
        out.append(Case(f"estimators/{name}", "estimators",
                        f"MLP{estimator.capitalize()} {name}", ("fastnn", "sklearn"),
                        _builder(estimator_arrays, data),
                        params={"estimator": estimator, "settings": settings},
                        check="score", floor=dict.fromkeys(("fastnn", "sklearn"), floor)))
    peer_floor = dict.fromkeys(("torch", "jax", "sklearn"), PEER_DIGITS_FLOOR)
    out.append(Case("digits/64-128-10", "digits", "digits 64-128-10, 30 epochs, batch 32",
                    MODEL_PEERS, _builder(digits_arrays), params=dict(DIGITS_FIT),
                    check="accuracy", floor={**DIGITS_FLOOR, **peer_floor}))
    n_in, n_hidden, n_out = INFERENCE_NET
    for batch in INFERENCE_BATCHES:
        out.append(Case(f"inference/batch {batch}", "inference",
                        f"batch {batch}, {n_in}-{n_hidden}-{n_out}", INFERENCE_PEERS,
                        functools.partial(inference_inputs, batch),
                        flops=2.0 * batch * (n_in * n_hidden + n_hidden * n_out), atol=1e-6))
    out.append(Case("guest/torch 64-128-10", "guest",
                    "PyTorch, 200 SGD steps, 64-128-10, batch 32", ("torch", "torch+fastnn"),
                    _builder(guest_arrays), params=dict(GUEST), base="torch", rtol=1e-5,
                    atol=1e-6))
    out.append(Case("sparse/20000x2^18", "sparse",
                    f"{SPARSE['documents']:,} documents, hashed TF-IDF, 2^18 columns, "
                    f"{SPARSE['classes']} topics", ("fastnn", "sklearn"),
                    _builder(sparse_arrays),
                    params={**SPARSE, "measure_memory": True,
                            "memory_cap_gib": SPARSE_MEMORY_CAP_GIB},
                    check="accuracy", single_shot=True, opt_in=True))
    return out


WORKLOADS = ("peak", "forward", "loss", "backward", "train", "fit_cost", "partial_fit",
             "estimators", "digits", "inference", "guest", "sparse")
TITLES = {
    "peak": "GEMM peak: X @ W.T, float32, 2048 x 2048 x 2048 (the best contender is the "
            "machine's peak)",
    "forward": "forward: fused linear + relu, U = relu(X W^T + b)",
    "loss": "softmax cross-entropy on (N, K) logits, mean, loss + gradient dL/dZ",
    "backward": "linear + relu backward: dX, dW, db from dU",
    "train": f"train steps: SGD (lr {TRAIN_LR}) of an N_in-N_h-10 relu/softmax MLP, k "
             "batches of N rows a call; time per step",
    "fit_cost": "a fit call's fixed cost: fastnn MLP.fit on one 4-row batch (one step "
                "included)",
    "partial_fit": "partial_fit of a 16-row batch per call (adam, scikit-learn's defaults; "
                   "float64 input)",
    "estimators": "estimator fits, fastnn's against scikit-learn's, same parameters, every "
                  "epoch run (tol 0); float64 input, fastnn's default float32 model",
    "digits": "full fit on digits: 64-128-10, 30 epochs, batch 32, SGD lr 0.1, momentum 0.9",
    "inference": "inference: predict_proba of a trained 784-256-10 MLP",
    "guest": "fastnn as a guest: a PyTorch loop alone and after `import fastnn` and a fit "
             "in its process (ratio to PyTorch alone)",
    "sparse": "sparse input: MLPClassifier(hidden_layer_sizes=(64,), solver='adam', "
              "max_iter=3, batch_size=200), one fit",
}
