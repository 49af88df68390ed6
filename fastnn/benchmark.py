"""``python -m fastnn bench``: fastnn against its peers, side by side in one process.

    python -m fastnn bench [--quick] [--only WORKLOADS] [--json PATH] [--plot PNG]
                           [--samples S] [--target-ms MS] [--threads N]
                           [--openblas-timeout T]

Workloads (``--only`` takes a comma-separated subset; the GEMM peak is always measured,
it is the denominator of "% of peak"):

* ``forward``: the fused layer U = relu(X W^T + b) (eq. 10a) on the shape grid;
* ``loss``: softmax cross-entropy, loss and gradient, on (N, N_out) logits;
* ``backward``: the backward of a relu layer, dX, dW and db;
* ``train``: one SGD step (lr 0.01, no momentum) of an N_in-N_h-10 MLP (relu, softmax) on a
  batch of N, for every grid shape (N, N_in -> N_h), and at (512, 784-512-10);
* ``fit``: a full fit on the bundled digits (64-128-10, 30 epochs, batch 32, lr 0.1,
  momentum 0.9);
* ``inference``: ``predict_proba`` of a trained 784-256-10 net at batch 1, 32 and 4096.

Contenders: ``fastnn`` (the public API: ``fastnn.F`` and the models); ``reference``
(``fastnn.reference``, or the "numpy" backend for the model workloads); ``torch``, PyTorch
CPU in eager mode, float32, under ``torch.no_grad()`` for forward and inference, autograd for
the loss, backward and train step (``torch.optim.SGD``), with its default thread count;
``sklearn``, scikit-learn's ``MLPClassifier`` for the train step (``partial_fit`` on one
batch), the digits fit and ``predict_proba``. Peers that are not installed are reported as
"n/a (not installed)". Every contender starts from the same weights and the results are
checked against fastnn's before anything is timed.

The train step of fastnn is reported twice: "fastnn" is the time per step of one ``fit`` over
k batches (k * N samples, ``shuffle=False``) divided by k, the per-step cost without the
per-fit set-up (validation, workspaces); "fit(1 step)" is one ``fit(X, y, epochs=1,
batch_size=N)`` call. The ratios and the criteria use the per-step number.

Timing (the design of ``bench/compare.py``, which imports these helpers): the contenders of
one case run interleaved, round-robin, so that load from elsewhere hits all of them; one
sample is the median of a few timed loops whose length is calibrated to last about
``--target-ms``; a contender's time is the median of its samples, and ratios are ratios of
medians, with the interquartile range of the per-round ratios beside them.

OPENBLAS_THREAD_TIMEOUT: numpy and scipy (whose BLAS fastnn calls) each load their own
OpenBLAS, and an idle OpenBLAS worker busy-waits for 2**OPENBLAS_THREAD_TIMEOUT cycles
(2**28, ~0.1 s, by default) before it sleeps; interleaved calls into the two libraries then
run with the other library's workers spinning on the cores (``bench/compare.py`` explains
it). The shortest spin (4, compare.py's setting) has the opposite cost: every multi-threaded
product then wakes a sleeping worker, ~30 us on a virtual machine (a 128 x 784 -> 128 layer:
78 us -> 90 us). OpenBLAS reads the variable when it loads, so ``python -m fastnn bench``
restarts itself with OPENBLAS_THREAD_TIMEOUT=18 (2**18 cycles, ~0.1 ms: a worker stays awake
between the back-to-back calls of one sample, then sleeps) unless the caller set it;
``--openblas-timeout`` changes it.

GOMP_SPINCOUNT: fastnn and PyTorch share one OpenMP runtime (libgomp) in this process.
fastnn sets OMP_WAIT_POLICY=PASSIVE when imported (idle OpenMP workers sleep at once), which
costs PyTorch a thread wake-up in every small op that enters a parallel region (a 4 x 3
cross-entropy with its gradient: 18 us alone, ~150 us so). libgomp's own default (a spin of
300000 iterations, about a millisecond or more) is no better here: one library's idle workers
then spin on the cores the other's BLAS threads need (a 1024 x 1024 layer: 8 ms -> 27 ms).
The command therefore restarts with GOMP_SPINCOUNT=10000 (workers spin ~0.1 ms, which bridges
the gaps between the ops of one call, then sleep; the same as the OpenBLAS setting above),
unless the caller set it; PyTorch's small ops then run as fast as in a process of their own.
``--gomp-spincount 0`` measures with fastnn's passive default.

Absolute times are for reference; ratios measured in one run are what the criteria use.
The command exits with status 0 whatever the verdicts: it reports, it does not gate.
"""

import argparse
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

import fastnn
import fastnn.functional as F
from fastnn import reference

__all__ = [
    "GRID",
    "Plan",
    "Timing",
    "estimate_call",
    "interleave",
    "main",
    "plan_sample",
    "take_sample",
    "time_loop",
]

SEED = 20240607  # the seed of bench/conftest.py and bench/compare.py: the same inputs

# (N, N_in, N_out): the notes' tiny nets, a small layer, MNIST-sized layers, a large square
# layer, a large batch.
GRID = [(4, 1, 2), (4, 2, 3), (32, 64, 64), (128, 784, 128), (256, 784, 256),
        (1024, 1024, 1024), (4096, 256, 256)]
N_CLASSES = 10                   # the train step's MLP is N_in - N_h - 10
TRAIN_EXTRA = (512, 784, 512)    # the (512, 784-512-10) train step of the criteria
TRAIN_LR = 0.01
INFERENCE_NET = (784, 256, 10)
INFERENCE_BATCHES = (1, 32, 4096)
PEAK_SIZE = 2048                 # the GEMM peak: X @ W.T on (2048, 2048) x (2048, 2048)
DIGITS_FIT = dict(epochs=30, batch_size=32, lr=0.1, momentum=0.9, random_state=0)
# The digits fit's test accuracy is 0.971 on average over random_state 0-39 (0.964-0.978;
# 0.9711 for 0; scikit-learn's MLPClassifier with the same settings: 0.967). The models issue
# asks 0.97, which 60% of the seeds reach, so a timed fit is only required to learn the digits.
DIGITS_FLOOR = 0.96
WORKLOADS = ("forward", "loss", "backward", "train", "fit", "inference")
GOMP_SPINCOUNT = 10000  # see the module docstring: OpenMP workers spin ~0.1 ms, then sleep
OPENBLAS_THREAD_TIMEOUT = 18  # OpenBLAS workers spin 2**18 cycles (~0.1 ms), then sleep
NOT_INSTALLED = "n/a (not installed)"

# Sweeps for the scaling figure (--plot): batch size at a fixed width, width at a fixed batch.
SWEEP_N = (1, 4, 16, 64, 256, 1024, 4096)
SWEEP_N_WIDTH = 256
SWEEP_WIDTH = (16, 64, 256, 512, 1024, 2048)
SWEEP_WIDTH_N = 256


# ---------------------------------------------------------------------------------------
# Timing: interleaved round-robin samples, medians, interquartile ranges
# ---------------------------------------------------------------------------------------


def time_loop(fn, n):
    """Per-call seconds of ``n`` back-to-back calls of ``fn``."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def estimate_call(fn, min_time=2e-3):
    """A rough per-call time: loops of growing length until one lasts ``min_time``."""
    fn()  # warm up: first-call allocations, BLAS thread start-up
    n = 1
    while True:
        t = time_loop(fn, n)
        if t * n >= min_time or n >= 1 << 24:
            return t
        n *= 4


@dataclass
class Plan:
    """How one sample of a contender is taken: ``chunks`` timed loops of ``calls`` calls."""

    chunks: int
    calls: int


def plan_sample(per_call, target, max_chunks=5):
    """Split ``target`` seconds into up to ``max_chunks`` chunks of >= 1 calls each."""
    chunks = max(1, min(max_chunks, int(target / per_call)))
    calls = max(1, round(target / (chunks * per_call)))
    return Plan(chunks, calls)


def take_sample(fn, plan):
    """One sample: the median per-call time of ``plan.chunks`` timed loops."""
    return statistics.median(time_loop(fn, plan.calls) for _ in range(plan.chunks))


@dataclass
class Timing:
    name: str
    plan: Plan
    samples: list = field(default_factory=list)  # per-call seconds, one per round
    steps: int = 1  # units of work per call: the samples are per call / steps

    @property
    def median(self):
        return statistics.median(self.samples)

    @property
    def spread(self):
        """Interquartile range of the samples over their median."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4)
        return (q3 - q1) / self.median


def interleave(contenders, samples, target, *, steps=None, budget=None, min_samples=None,
               warmup_below=None):
    """Time ``contenders`` ({name: fn}) round-robin; return {name: Timing}.

    Every contender is calibrated first, then one unrecorded warm-up round runs, then
    ``samples`` rounds in which each contender takes one sample, in a fixed order.
    The garbage collector is off while timing.

    Options (all off by default, which is ``bench/compare.py``'s behaviour):

    * ``steps`` ({name: k}): a call of that contender does k units of work; its samples
      are per unit (per call / k);
    * ``budget`` (seconds) with ``min_samples``: fewer rounds (never fewer than
      ``min_samples``) when ``samples`` rounds would take longer than ``budget``;
    * ``warmup_below`` (seconds): only contenders faster than this per call take part in
      the warm-up round (slower ones were warmed by their calibration already).
    """
    steps = steps or {}
    timings = {}
    per_call = {}
    for name, fn in contenders.items():
        per_call[name] = estimate_call(fn)
        timings[name] = Timing(name, plan_sample(per_call[name], target),
                               steps=steps.get(name, 1))
    rounds = samples
    if budget is not None:
        per_round = sum(t.plan.chunks * t.plan.calls * per_call[n] for n, t in timings.items())
        fit = int(budget / per_round) if per_round > 0 else samples
        rounds = max(min_samples or 1, min(samples, fit))
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for rnd in range(rounds + 1):
            for name, fn in contenders.items():
                if not rnd and warmup_below is not None and per_call[name] >= warmup_below:
                    continue
                t = take_sample(fn, timings[name].plan)
                if rnd:  # round 0 is the warm-up
                    timings[name].samples.append(t / timings[name].steps)
    finally:
        if gc_was_enabled:
            gc.enable()
    return timings


# ---------------------------------------------------------------------------------------
# Inputs (as bench/conftest.py builds them: seeded, C-contiguous, read-only)
# ---------------------------------------------------------------------------------------


def _frozen(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays


def build_layer(N, n_in, n_out, dtype=np.float32):
    """X (N, n_in), W (n_out, n_in) scaled by 1/sqrt(n_in), b (n_out,), as the pytest
    suites build them."""
    rng = np.random.default_rng([SEED, N, n_in, n_out])
    X = rng.standard_normal((N, n_in)).astype(dtype)
    W = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(dtype)
    b = (0.1 * rng.standard_normal(n_out)).astype(dtype)
    return _frozen(X, W, b)


def build_logits(N, K, dtype=np.float32):
    """Logits Z (N, K) and integer labels y in 0..K-1."""
    rng = np.random.default_rng([SEED, 1, N, K])
    Z = (2.0 * rng.standard_normal((N, K))).astype(dtype)
    y = rng.integers(0, K, size=N).astype(np.intp)
    return _frozen(Z, y)


def build_batch(N, n_in, n_classes=N_CLASSES):
    """A float32 batch X (N, n_in) and labels y in 0..n_classes-1 for the train step."""
    rng = np.random.default_rng([SEED, 2, N, n_in])
    X = rng.standard_normal((N, n_in)).astype(np.float32)
    y = rng.integers(0, n_classes, N).astype(np.intp)
    return _frozen(X, y)


def digits_split():
    from fastnn.datasets import load_digits, train_test_split

    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25,
                                                        random_state=0)
    return X_train.astype(np.float32), X_test.astype(np.float32), y_train, y_test


# ---------------------------------------------------------------------------------------
# Peers, imported lazily
# ---------------------------------------------------------------------------------------

_PEERS = {}


def peer(name):
    """The module ``name`` ("torch" or "sklearn") or None when it is not installed."""
    if name not in _PEERS:
        try:
            module = importlib.import_module(name)
            if name == "sklearn":
                importlib.import_module("sklearn.neural_network")
        except ImportError:
            module = None
        _PEERS[name] = module
    return _PEERS[name]


def _torch_mlp(torch, model):
    """A torch.nn.Sequential with the weights of the fastnn MLP ``model`` (relu hidden
    layers): nn.Linear stores W as (out, in), exactly fastnn's layout."""
    modules = []
    for i, layer in enumerate(model.layers):
        lin = torch.nn.Linear(layer.n_in, layer.n_out)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(layer.W)))
            lin.bias.copy_(torch.from_numpy(np.array(layer.b)))
        modules.append(lin)
        if i < len(model.layers) - 1:
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules)


def _sklearn_mlp(model, X, y, **params):
    """scikit-learn's MLPClassifier initialised by one partial_fit, then given the weights of
    the fastnn MLP ``model`` (coefs_ are (n_in, n_out): W transposed)."""
    from sklearn.neural_network import MLPClassifier

    hidden = tuple(layer.n_out for layer in model.layers[:-1])
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X, y, classes=np.arange(model.n_outputs))
    clf.coefs_ = [np.array(layer.W.T) for layer in model.layers]
    clf.intercepts_ = [np.array(layer.b) for layer in model.layers]
    if hasattr(clf, "_optimizer"):  # the optimizer holds the parameter list: rebuild it
        del clf._optimizer
    return clf


def _copy_mlp(model):
    clone = fastnn.MLP(model.n_inputs, [layer.n_out for layer in model.layers[:-1]],
                       model.n_outputs, random_state=0)
    for dst, src in zip(clone.layers, model.layers):
        dst.W[...] = src.W
        dst.b[...] = src.b
    return clone


# ---------------------------------------------------------------------------------------
# Cases: one workload at one shape, with its contenders
# ---------------------------------------------------------------------------------------


@dataclass
class Case:
    workload: str
    shape: tuple
    label: str
    contenders: dict  # name -> no-argument callable (installed peers only), fastnn first
    columns: list  # every contender name of the workload, in display order
    missing: dict = field(default_factory=dict)  # name -> why it is not timed
    steps: dict = field(default_factory=dict)  # name -> units of work per call
    flops: float = 0.0  # per unit of work, for GFLOP/s (0: not shown)
    check: object = None  # no-argument callable raising if a contender's answer is wrong
    post: object = None  # no-argument callable run after timing (checks, facts for info)
    info: dict = field(default_factory=dict)  # extra facts to report (k, accuracies)


def _peers_of(names):
    """(available, missing) peers among ``names``."""
    missing = {name: NOT_INSTALLED for name in names if peer(name) is None}
    return missing


def _assert_close(name, got, want, rtol, atol):
    for g, w in zip(got, want):
        g = g.detach().numpy() if hasattr(g, "detach") else np.asarray(g)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol,
                                   err_msg=f"{name} disagrees with fastnn")


def _shape_label(N, n_in, n_out):
    return f"N={N} {n_in}->{n_out}"


def forward_case(N, n_in, n_out):
    X, W, b = build_layer(N, n_in, n_out)
    fns = {"fastnn": lambda: F.linear(X, W, b, "relu"),
           "reference": lambda: reference.linear(X, W, b, "relu")}
    missing = _peers_of(["torch"])
    torch = peer("torch")
    if torch is not None:
        tF = torch.nn.functional
        Xt, Wt, bt = (torch.from_numpy(np.array(a)) for a in (X, W, b))

        def run_torch():
            with torch.no_grad():
                return torch.relu(tF.linear(Xt, Wt, bt))

        fns["torch"] = run_torch

    def check():
        want = fns["fastnn"]()
        for name, fn in fns.items():
            _assert_close(name, [fn()], [want], 1e-4, 1e-4)

    return Case("forward", (N, n_in, n_out), _shape_label(N, n_in, n_out), fns,
                ["fastnn", "reference", "torch"], missing, flops=2.0 * N * n_in * n_out,
                check=check)


def loss_case(N, n_in, n_out):
    Z, y = build_logits(N, n_out)
    fns = {"fastnn": lambda: F.cross_entropy(Z, y, return_grad=True),
           "reference": lambda: reference.cross_entropy(Z, y, return_grad=True)}
    missing = _peers_of(["torch"])
    torch = peer("torch")
    if torch is not None:
        Zt = torch.from_numpy(np.array(Z)).requires_grad_(True)
        yt = torch.from_numpy(y.astype(np.int64))

        def run_torch():
            loss = torch.nn.functional.cross_entropy(Zt, yt)
            (dZ,) = torch.autograd.grad(loss, Zt)
            return loss.detach(), dZ

        fns["torch"] = run_torch

    def check():
        want = fns["fastnn"]()
        for name, fn in fns.items():
            _assert_close(name, fn(), want, 1e-4, 1e-6)

    return Case("loss", (N, n_in, n_out), f"N={N} K={n_out}", fns,
                ["fastnn", "reference", "torch"], missing, check=check)


def backward_case(N, n_in, n_out):
    X, W, b = build_layer(N, n_in, n_out)
    U = F.linear(X, W, b, "relu")
    dU = np.random.default_rng([SEED, 3, N, n_in, n_out]).standard_normal(
        (N, n_out)).astype(np.float32)
    _frozen(U, dU)
    fns = {"fastnn": lambda: F.linear_backward(dU, X, W, U, "relu"),
           "reference": lambda: reference.linear_backward(dU, X, W, U, "relu")}
    missing = _peers_of(["torch"])
    torch = peer("torch")
    if torch is not None:
        Xt, Wt, bt = (torch.from_numpy(np.array(a)).requires_grad_(True) for a in (X, W, b))
        Ut = torch.relu(torch.nn.functional.linear(Xt, Wt, bt))  # the graph, built once
        dUt = torch.from_numpy(np.array(dU))

        def run_torch():
            return torch.autograd.grad(Ut, (Xt, Wt, bt), dUt, retain_graph=True)

        fns["torch"] = run_torch

    def check():
        want = fns["fastnn"]()
        for name, fn in fns.items():
            _assert_close(name, fn(), want, 1e-3, 1e-3)

    return Case("backward", (N, n_in, n_out), _shape_label(N, n_in, n_out), fns,
                ["fastnn", "reference", "torch"], missing, flops=4.0 * N * n_in * n_out,
                check=check)


def steps_per_fit(model, backend, X, y, fit, *, memory=32 << 20, max_call=0.05):
    """k, the batches of the per-step fit, from a quick calibration on a scratch copy of
    ``model``: fits of 1 batch and of k0 batches (k0 grown until the k0 steps take at least
    as long as the 1-batch fit) give the time of a step s and the fixed cost of a fit call o
    (validation, set-up); k is large enough that o/k is at most 5% of s, within ``memory``
    bytes of inputs (k copies of the batch) and ``max_call`` seconds per call, and at least 2.
    Returns (k, s, o)."""
    scratch = _copy_mlp(model)
    N, n_in = X.shape
    k_max_memory = max(2, memory // (X.itemsize * N * n_in))

    def best(k):
        XX, yy = (X, y) if k == 1 else (np.tile(X, (k, 1)), np.tile(y, k))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            with fastnn.use_backend(backend):
                scratch.fit(XX, yy, **fit)
            times.append(time.perf_counter() - t0)
        return min(times)

    best(1)  # warm up
    t1 = best(1)
    k0 = 4
    while True:
        tk = best(k0)
        if tk >= 2 * t1 or k0 * 8 > k_max_memory or tk > max_call:
            break
        k0 *= 8
    step = max((tk - t1) / (k0 - 1), tk / k0 / 100, 1e-9)
    overhead = max(t1 - step, 0.0)
    k_max = max(2, min(k_max_memory, int(max_call / step)))
    k = int(min(k_max, max(2, -(-20 * overhead // step))))
    return k, step, overhead


def train_flops(N, n_in, n_hidden, n_out=N_CLASSES):
    """Floating-point operations of one SGD step of an n_in-n_hidden-n_out MLP on a batch of
    N: the forward products, dW of both layers and dX of the output layer (the input layer
    needs no dX), 2 flops per multiply-add; elementwise work and the update not counted."""
    return 2.0 * N * (2 * n_in * n_hidden + 3 * n_hidden * n_out)


def train_case(N, n_in, n_hidden, n_out=N_CLASSES):
    X, y = build_batch(N, n_in, n_out)
    init = fastnn.MLP(n_in, n_hidden, n_out, random_state=0)
    fit = dict(epochs=1, batch_size=N, lr=TRAIN_LR, shuffle=False)
    k, step, overhead = steps_per_fit(init, "cython", X, y, fit)
    k_ref, _, _ = steps_per_fit(init, "numpy", X, y, fit)

    def fastnn_steps(model, backend, XX, yy):
        def run():
            with fastnn.use_backend(backend):
                model.fit(XX, yy, **fit)
        return run

    models = {"fastnn": _copy_mlp(init), "fit(1 step)": _copy_mlp(init),
              "reference": _copy_mlp(init)}
    # k batches, each the same batch (shuffle=False): k steps per call
    fns = {"fastnn": fastnn_steps(models["fastnn"], "cython", np.tile(X, (k, 1)), np.tile(y, k)),
           "fit(1 step)": fastnn_steps(models["fit(1 step)"], "cython", X, y),
           "reference": fastnn_steps(models["reference"], "numpy", np.tile(X, (k_ref, 1)),
                                     np.tile(y, k_ref))}
    steps = {"fastnn": k, "reference": k_ref}
    missing = _peers_of(["torch", "sklearn"])

    torch = peer("torch")
    if torch is not None:
        net = _torch_mlp(torch, init)
        opt = torch.optim.SGD(net.parameters(), lr=TRAIN_LR)
        Xt, yt = torch.from_numpy(np.array(X)), torch.from_numpy(y.astype(np.int64))
        ce = torch.nn.functional.cross_entropy

        def run_torch():
            opt.zero_grad()
            loss = ce(net(Xt), yt)
            loss.backward()
            opt.step()
            return loss

        fns["torch"] = run_torch
        models["torch"] = net

    if peer("sklearn") is not None:
        clf = _sklearn_mlp(init, X, y, solver="sgd", batch_size=N, learning_rate_init=TRAIN_LR,
                           momentum=0.0, alpha=0.0, shuffle=False)

        def run_sklearn():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.partial_fit(X, y)

        fns["sklearn"] = run_sklearn
        models["sklearn"] = clf

    def weights(name, model):
        if name == "torch":
            return [p.detach().numpy().copy() for m in model if hasattr(m, "weight")
                    for p in (m.weight, m.bias)]
        if name == "sklearn":
            return [a.copy() for W, b in zip(model.coefs_, model.intercepts_) for a in (W.T, b)]
        return [a.copy() for layer in model.layers for a in (layer.W, layer.b)]

    def check():
        # one step from the same weights: every contender must reach the same weights
        # (fastnn's k-step fits are checked through the one-step fit)
        before = {name: weights(name, m) for name, m in models.items()}
        fns["fit(1 step)"]()
        want = weights("fit(1 step)", models["fit(1 step)"])
        for name in ("torch", "sklearn"):
            if name in fns:
                fns[name]()
                _assert_close(name, weights(name, models[name]), want, 1e-4, 1e-5)
        ref = models["reference"]
        with fastnn.use_backend("numpy"):
            ref.fit(X, y, **fit)
        _assert_close("reference", weights("reference", ref), want, 1e-4, 1e-5)
        # back to the common start (runs in the timing loop move every contender anyway)
        for name, m in models.items():
            _set_weights(name, m, before[name])

    return Case("train", (N, n_in, n_hidden, n_out), f"N={N} {n_in}-{n_hidden}-{n_out}", fns,
                ["fastnn", "fit(1 step)", "reference", "torch", "sklearn"], missing,
                steps=steps, flops=train_flops(N, n_in, n_hidden, n_out), check=check,
                info={"k": k, "k_reference": k_ref, "calibrated_step_us": step * 1e6,
                      "fit_call_overhead_us": overhead * 1e6,
                      "overhead_share_of_step": overhead / k / step})


def _set_weights(name, model, arrays):
    if name == "torch":
        import torch

        params = [p for m in model if hasattr(m, "weight") for p in (m.weight, m.bias)]
        with torch.no_grad():
            for p, a in zip(params, arrays):
                p.copy_(torch.from_numpy(a))
    elif name == "sklearn":
        model.coefs_ = [arrays[2 * i].T.copy() for i in range(len(arrays) // 2)]
        model.intercepts_ = [arrays[2 * i + 1].copy() for i in range(len(arrays) // 2)]
        if hasattr(model, "_optimizer"):
            del model._optimizer
    else:
        for i, layer in enumerate(model.layers):
            layer.W[...] = arrays[2 * i]
            layer.b[...] = arrays[2 * i + 1]


def fit_case():
    X_train, X_test, y_train, y_test = digits_split()
    _frozen(X_train, y_train)

    last = {}  # the model of each contender's latest fit, for the accuracies after timing

    def fastnn_fit(backend):
        def run():
            model = fastnn.MLP(64, 128, 10, random_state=0)
            with fastnn.use_backend(backend):
                model.fit(X_train, y_train, **DIGITS_FIT)
            last["fastnn" if backend == "cython" else "reference"] = model
            return model
        return run

    fns = {"fastnn": fastnn_fit("cython"), "reference": fastnn_fit("numpy")}
    missing = _peers_of(["torch", "sklearn"])
    accuracy = {}
    torch = peer("torch")
    if torch is not None:
        Xt = torch.from_numpy(np.array(X_train))
        yt = torch.from_numpy(y_train.astype(np.int64))
        ce = torch.nn.functional.cross_entropy
        batch, epochs = DIGITS_FIT["batch_size"], DIGITS_FIT["epochs"]

        def run_torch():
            gen = torch.Generator().manual_seed(0)
            torch.manual_seed(0)
            net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                      torch.nn.Linear(128, 10))
            opt = torch.optim.SGD(net.parameters(), lr=DIGITS_FIT["lr"],
                                  momentum=DIGITS_FIT["momentum"])
            n = len(Xt)
            for _ in range(epochs):
                perm = torch.randperm(n, generator=gen)
                for s in range(0, n, batch):
                    idx = perm[s:s + batch]
                    opt.zero_grad()
                    loss = ce(net(Xt[idx]), yt[idx])
                    loss.backward()
                    opt.step()
            last["torch"] = net
            return net

        fns["torch"] = run_torch

    if peer("sklearn") is not None:
        from sklearn.neural_network import MLPClassifier

        def run_sklearn():
            clf = MLPClassifier(hidden_layer_sizes=(128,), activation="relu", solver="sgd",
                                alpha=0.0, batch_size=DIGITS_FIT["batch_size"],
                                learning_rate_init=DIGITS_FIT["lr"],
                                momentum=DIGITS_FIT["momentum"], nesterovs_momentum=False,
                                max_iter=DIGITS_FIT["epochs"], shuffle=True, tol=0.0,
                                n_iter_no_change=1000, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(X_train, y_train)
            last["sklearn"] = clf
            return clf

        fns["sklearn"] = run_sklearn

    def check():  # before timing: fastnn's fit must reach the accuracy of the models issue
        fns["fastnn"]()
        post()

    def post():
        """The test accuracy of every contender's latest fit (after timing: no extra fits);
        each must learn the digits (fastnn >= DIGITS_FLOOR, peers >= 0.95)."""
        for name, model in last.items():
            if name == "torch":
                with torch.no_grad():
                    pred = model(torch.from_numpy(np.array(X_test))).argmax(dim=1).numpy()
            else:
                pred = model.predict(X_test)
            accuracy[name] = float((pred == y_test).mean())
            floor = DIGITS_FLOOR if name == "fastnn" else 0.95
            assert accuracy[name] >= floor, f"{name} digits test accuracy {accuracy[name]:.4f}"

    return Case("fit", ("digits", 64, 128, 10), "digits 64-128-10, 30 epochs", fns,
                ["fastnn", "reference", "torch", "sklearn"], missing, check=check, post=post,
                info={"test_accuracy": accuracy, "train_samples": len(X_train)})


def trained_inference_net():
    """The 784-256-10 net of the inference workload, trained for 2 epochs on 4096 synthetic
    784-pixel images whose labels a random linear teacher gives (weights, not data, matter)."""
    n_in, n_hidden, n_out = INFERENCE_NET
    rng = np.random.default_rng([SEED, 4])
    X = rng.random((4096, n_in), dtype=np.float32)
    teacher = rng.standard_normal((n_in, n_out)).astype(np.float32)
    y = (X @ teacher).argmax(axis=1)
    model = fastnn.MLP(n_in, n_hidden, n_out, random_state=0)
    model.fit(X, y, epochs=2, batch_size=64, lr=0.05, random_state=0)
    return model


def inference_case(batch, model):
    n_in = model.n_inputs
    X = np.random.default_rng([SEED, 5, batch]).random((batch, n_in), dtype=np.float32)
    _frozen(X)
    ref_model = _copy_mlp(model)

    def run_reference():
        with fastnn.use_backend("numpy"):
            return ref_model.predict_proba(X)

    fns = {"fastnn": lambda: model.predict_proba(X), "reference": run_reference}
    missing = _peers_of(["torch", "sklearn"])
    torch = peer("torch")
    if torch is not None:
        net = _torch_mlp(torch, model).eval()
        Xt = torch.from_numpy(np.array(X))

        def run_torch():
            with torch.no_grad():
                return torch.softmax(net(Xt), dim=1)

        fns["torch"] = run_torch
    if peer("sklearn") is not None:
        clf = _sklearn_mlp(model, X[:1].repeat(2, axis=0), np.array([0, 1]), solver="sgd")
        fns["sklearn"] = lambda: clf.predict_proba(X)

    def check():
        want = fns["fastnn"]()
        for name, fn in fns.items():
            _assert_close(name, [fn()], [want], 1e-4, 1e-6)

    n_hidden = model.layers[0].n_out
    flops = 2.0 * batch * (n_in * n_hidden + n_hidden * model.n_outputs)
    return Case("inference", (batch, *INFERENCE_NET),
                f"batch {batch}, 784-256-10", fns, ["fastnn", "reference", "torch", "sklearn"],
                missing, flops=flops, check=check)


def peak_case(n=PEAK_SIZE):
    """The GEMM peak: X @ W.T in float32 on (n, n) x (n, n): NumPy's matmul, fastnn's
    ``F.linear`` with the identity activation and no bias (the same product through
    scipy's BLAS), and torch's matmul."""
    rng = np.random.default_rng([SEED, 6, n])
    X = rng.standard_normal((n, n)).astype(np.float32)
    W = rng.standard_normal((n, n)).astype(np.float32)
    _frozen(X, W)
    fns = {"fastnn": lambda: F.linear(X, W), "numpy": lambda: X @ W.T}
    missing = _peers_of(["torch"])
    torch = peer("torch")
    if torch is not None:
        Xt, Wt = torch.from_numpy(np.array(X)), torch.from_numpy(np.array(W))

        def run_torch():
            with torch.no_grad():
                return Xt @ Wt.T

        fns["torch"] = run_torch

    def check():
        want = X[:64] @ W.T
        for name, fn in fns.items():
            _assert_close(name, [fn()[:64]], [want], 1e-3, 1e-2)

    return Case("peak", (n, n, n), f"{n}x{n} @ ({n}x{n}).T", fns,
                ["fastnn", "numpy", "torch"], missing, flops=2.0 * n ** 3, check=check)


BUILDERS = {
    "forward": lambda: [forward_case(*s) for s in GRID],
    "loss": lambda: [loss_case(*s) for s in GRID],
    "backward": lambda: [backward_case(*s) for s in GRID],
    "train": lambda: [train_case(*s) for s in [*GRID, TRAIN_EXTRA]],
    "fit": lambda: [fit_case()],
    "inference": lambda: _inference_cases(),
}


def _inference_cases():
    model = trained_inference_net()
    return [inference_case(b, model) for b in INFERENCE_BATCHES]


TITLES = {
    "peak": "GEMM peak: X @ W.T, float32, large square product",
    "forward": "forward: fused linear + relu, U = relu(X W^T + b), float32; "
               "torch eager under no_grad",
    "loss": "softmax cross-entropy, loss + gradient dL/dZ on (N, K) logits, mean; "
            "torch autograd.grad",
    "backward": "linear + relu backward: dX, dW, db from dU; torch autograd.grad on the "
                "retained graph",
    "train": f"train step: one SGD step (lr {TRAIN_LR}) of an N_in-N_h-10 relu/softmax MLP "
             "on a batch of N; torch autograd + optim.SGD, sklearn partial_fit",
    "fit": "full fit on digits: 64-128-10, 30 epochs, batch 32, SGD lr 0.1 momentum 0.9, "
           "float32",
    "inference": "inference: predict_proba of a trained 784-256-10 net; torch under no_grad",
}


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    timings: dict  # name -> Timing
    other_cpu: object = None  # share of the CPUs other processes used meanwhile (or None)

    def median(self, name):
        return self.timings[name].median

    def ratio(self, name, base="fastnn"):
        """``name``'s median over ``base``'s: > 1 means ``base`` is faster."""
        return self.median(name) / self.median(base)

    def paired_quartiles(self, name, base="fastnn"):
        """Quartiles (q1, q3) of the per-round ratios name/base (samples taken back to back)."""
        ratios = [a / b for a, b in zip(self.timings[name].samples, self.timings[base].samples)]
        if len(ratios) < 2:
            return ratios[0], ratios[0]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        return q1, q3

    def gflops(self, name="fastnn"):
        return self.case.flops / self.median(name) / 1e9 if self.case.flops else None

    def as_dict(self, peak=None):
        c = self.case
        out = {"workload": c.workload, "shape": list(c.shape), "label": c.label,
               "flops": c.flops, "info": c.info, "other_cpu": self.other_cpu,
               "contenders": {}}
        for name in c.columns:
            if name in self.timings:
                t = self.timings[name]
                entry = {"median_us": t.median * 1e6, "spread": t.spread,
                         "samples": len(t.samples), "steps_per_call": t.steps,
                         "chunks": t.plan.chunks, "calls_per_chunk": t.plan.calls,
                         "samples_us": [s * 1e6 for s in t.samples]}
                if name != "fastnn" and "fastnn" in self.timings:
                    q1, q3 = self.paired_quartiles(name)
                    entry.update(ratio=self.ratio(name), paired_ratio_q1=q1,
                                 paired_ratio_q3=q3)
                if c.flops:
                    entry["gflops"] = self.gflops(name)
                    if peak:
                        entry["percent_of_peak"] = 100 * self.gflops(name) / peak
                out["contenders"][name] = entry
            else:
                out["contenders"][name] = {"status": c.missing.get(name, "n/a")}
        return out


class CpuMeter:
    """The share of the machine's CPU time that other processes used since ``start()``: the
    busy time of all CPUs (/proc/stat) minus this process's own CPU time, over wall time x
    CPUs. None where /proc/stat is not readable."""

    def __init__(self):
        self.start_at = self._snap()

    @staticmethod
    def _snap():
        try:
            with open("/proc/stat") as fh:
                v = [int(x) for x in fh.readline().split()[1:9]]
            tick = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            return None
        t = os.times()
        return time.perf_counter(), (sum(v) - v[3] - v[4]) / tick, t.user + t.system

    def others(self):
        end = self._snap()
        if self.start_at is None or end is None or end[0] - self.start_at[0] < 0.5:
            return None
        wall = end[0] - self.start_at[0]
        other = (end[1] - self.start_at[1]) - (end[2] - self.start_at[2])
        return min(1.0, max(0.0, other / (wall * (os.cpu_count() or 1))))


BUSY = 0.10  # a case during which other processes used more than this share is marked


def run_case(case, args):
    if case.check is not None:
        case.check()  # never time a wrong answer
    meter = CpuMeter()
    timings = interleave(case.contenders, args.samples, args.target_ms / 1e3, steps=case.steps,
                         budget=args.budget, min_samples=args.min_samples, warmup_below=0.1)
    others = meter.others()
    if case.post is not None:
        case.post()
    return Result(case, timings, others)


def run_workload(name, args, progress=True):
    cases = BUILDERS[name]()
    results = []
    for case in cases:
        if progress:
            print(f"  {name:9s} {case.label}", file=sys.stderr, flush=True)
        results.append(run_case(case, args))
    return results


# ---------------------------------------------------------------------------------------
# The criteria of the benchmarks issue (ratios from one run)
# ---------------------------------------------------------------------------------------


@dataclass
class Verdict:
    title: str
    goal: str
    measured: str
    passed: object  # True / False / None (not measured)
    borderline: bool = False

    def as_dict(self):
        return {"title": self.title, "goal": self.goal, "measured": self.measured,
                "passed": self.passed, "borderline": self.borderline}


def _find(results, workload, shape):
    for r in results.get(workload, []):
        if tuple(r.case.shape) == tuple(shape):
            return r
    return None


def _ratio_verdict(title, rows, goal, name="torch"):
    """fastnn at least ``goal`` times faster than ``name`` (name/fastnn >= goal) at each row."""
    rows = [r for r in rows if r is not None and name in r.timings]
    if not rows:
        return Verdict(title, f"{name}/fastnn >= {goal:g}", "not measured", None)
    parts, ok, border = [], True, False
    for r in rows:
        ratio = r.ratio(name)
        q1, q3 = r.paired_quartiles(name)
        ok &= ratio >= goal
        border |= (q1 >= goal) != (q3 >= goal)
        parts.append(f"{r.case.label}: {ratio:.2f}")
    return Verdict(title, f"{name}/fastnn >= {goal:g}", "; ".join(parts), ok, border)


def _peak_verdict(title, row, peak, goal):
    if row is None or not peak:
        return Verdict(title, f">= {goal:.0%} of peak", "not measured", None)
    pct = row.gflops() / peak
    q = sorted(row.case.flops / s / 1e9 / peak for s in row.timings["fastnn"].samples)
    lo, hi = (statistics.quantiles(q, n=4)[0], statistics.quantiles(q, n=4)[2]) \
        if len(q) >= 2 else (q[0], q[0])
    return Verdict(title, f">= {goal:.0%} of peak",
                   f"{row.gflops():.1f} GFLOP/s = {pct:.1%} of {peak:.1f}", pct >= goal,
                   (lo >= goal) != (hi >= goal))


def criteria(results, peak):
    fwd = results.get("forward", [])
    train = [r for r in results.get("train", []) if tuple(r.case.shape[:3]) != TRAIN_EXTRA]
    tiny_fwd = [r for r in fwd if r.case.shape[0] == 4]
    tiny_train = [r for r in train if r.case.shape[0] == 4]
    extra = _find(results, "train", (*TRAIN_EXTRA, N_CLASSES))
    big = _find(results, "forward", (1024, 1024, 1024))
    batch1 = _find(results, "inference", (1, *INFERENCE_NET))
    return [
        _ratio_verdict("forward: fastnn at least as fast as PyTorch at every grid size", fwd, 1.0),
        _ratio_verdict("train step: fastnn at least as fast as PyTorch at every grid size",
                       train, 1.0),
        _ratio_verdict("forward at N=4: at least 5x faster than PyTorch", tiny_fwd, 5.0),
        _ratio_verdict("train step at N=4: at least 5x faster than PyTorch", tiny_train, 5.0),
        _ratio_verdict("train step at (512, 784-512-10): at least 1.2x faster than PyTorch",
                       [extra], 1.2),
        _peak_verdict("fused forward at (1024, 1024->1024): >= 85% of the GEMM peak", big,
                      peak, 0.85),
        _peak_verdict("train step at (512, 784-512-10): >= 70% of the GEMM peak", extra,
                      peak, 0.70),
        _ratio_verdict("inference at batch 1 (784-256-10): at least 5x faster than PyTorch",
                       [batch1], 5.0),
    ]


# ---------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------


def _read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def _cpu_model():
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib():
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2 ** 20, 1)
    return None


def _os_name():
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def _blas_pools():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: pool.get(k) for k in ("user_api", "internal_api", "num_threads", "version",
                                      "architecture", "filepath")}
            for pool in threadpool_info()]


def _loadavg():
    try:
        return os.getloadavg()
    except OSError:
        return None


THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
              "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def environment():
    import scipy

    env = {
        "cpu": _cpu_model(), "cpus": os.cpu_count(), "memory_gib": _memory_gib(),
        "os": _os_name(), "kernel": platform.release(), "machine": platform.machine(),
        "python": platform.python_version(), "fastnn": fastnn.__version__,
        "fastnn_backend": F.get_backend(), "numpy": np.__version__,
        "scipy": scipy.__version__,
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
        "loadavg": _loadavg(),
    }
    env["fastnn_threads"] = fastnn.get_num_threads()
    torch = peer("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        try:
            env["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        except Exception:  # pragma: no cover
            env["torch_cpu_capability"] = None
        env["torch_blas"] = "MKL" if torch.backends.mkl.is_available() else "other"
    else:
        env["torch"] = NOT_INSTALLED
    sk = peer("sklearn")
    env["sklearn"] = sk.__version__ if sk is not None else NOT_INSTALLED
    env["blas"] = _blas_pools()  # after the peers: their libraries are listed too
    return env


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def fmt_time(seconds):
    us = seconds * 1e6
    if us < 10:
        return f"{us:.2f} us"
    if us < 1000:
        return f"{us:.1f} us"
    if us < 1e6:
        return f"{us / 1e3:.2f} ms"
    return f"{us / 1e6:.2f} s"


def _cell(result, name):
    c = result.case
    if name not in result.timings:
        return c.missing.get(name, "n/a")
    t = fmt_time(result.median(name))
    if name == "fastnn" or "fastnn" not in result.timings:
        return t
    return f"{t} ({result.ratio(name):.2f}x)"


def format_section(workload, results, peak):
    columns = results[0].case.columns
    show_flops = any(r.case.flops for r in results) and workload != "peak"
    head = ["shape", *columns]
    if show_flops:
        head += ["GFLOP/s", "% peak"]
    rows = [head]
    for r in results:
        busy = r.other_cpu is not None and r.other_cpu > BUSY
        row = [r.case.label + (" *" if busy else ""), *(_cell(r, name) for name in columns)]
        if show_flops:
            g = r.gflops()
            row += [f"{g:.1f}" if g is not None else "",
                    f"{100 * g / peak:.0f}%" if g is not None and peak else ""]
        rows.append(row)
    return text_table(rows)


def text_table(rows, left=(0,)):
    """Rows of strings (the first the header, ruled off below it) as aligned text: the
    columns numbered in ``left`` flush left, the others flush right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [cell.ljust(w) if i in left else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_peak(result):
    parts = []
    for name in result.case.columns:
        if name in result.timings:
            parts.append(f"{name} {result.gflops(name):.1f} GFLOP/s "
                         f"({fmt_time(result.median(name))})")
        else:
            parts.append(f"{name} {result.case.missing.get(name, 'n/a')}")
    return ", ".join(parts)


def peak_of(result):
    """The machine's measured GEMM peak: the best GFLOP/s of the large square products."""
    return max(result.gflops(name) for name in result.timings)


def _describe_env(env):
    lines = [f"machine: {env['cpu']}, {env['cpus']} cpus, {env['memory_gib']} GiB, "
             f"{env['os']} (Linux {env['kernel']}), Python {env['python']}",
             f"versions: fastnn {env['fastnn']} (backend {env['fastnn_backend']}, OpenMP "
             f"threads {env['fastnn_openmp_threads']}), numpy {env['numpy']}, "
             f"scipy {env['scipy']}, torch {env['torch']}, scikit-learn {env['sklearn']}"]
    if env.get("torch_threads") is not None:
        lines.append(f"torch: {env['torch_threads']} threads (torch.get_num_threads(), "
                     f"default), CPU capability {env['torch_cpu_capability']}, "
                     f"BLAS {env['torch_blas']}")
    for pool in env["blas"]:
        if pool["user_api"] == "blas":
            lines.append(f"BLAS: {pool['internal_api']} {pool['version']} kernel "
                         f"{pool['architecture']}, {pool['num_threads']} threads, "
                         f"{os.path.basename(pool['filepath'] or '')}")
    setting = {k: v for k, v in env["thread_env"].items() if v is not None}
    lines.append("environment: " + (", ".join(f"{k}={v}" for k, v in setting.items())
                                    or "no thread settings"))
    return lines


def report(results, peak_result, verdicts, env, args, elapsed, out=sys.stdout):
    def p(*a):
        print(*a, file=out)

    p(f"fastnn {env['fastnn']} benchmarks: contenders interleaved round-robin in one process, "
      f"medians of up to {args.samples} samples of ~{args.target_ms:g} ms each")
    for line in _describe_env(env):
        p(line)
    if env.get("numpy_imported_before_env"):
        p("warning: OPENBLAS_THREAD_TIMEOUT and GOMP_SPINCOUNT were not set when the libraries "
          "loaded: BLAS-bound ratios may be distorted (run it as `python -m fastnn bench`)")
    p()
    p("Times are medians; (r.rx) is the ratio contender time / fastnn time: above 1, fastnn is "
      "faster. GFLOP/s and % peak are fastnn's.")
    peak = peak_of(peak_result)
    p()
    p(f"== {TITLES['peak']}")
    p(f"{peak_result.case.label}: {format_peak(peak_result)}; peak = {peak:.1f} GFLOP/s")
    for workload in WORKLOADS:
        if workload not in results:
            continue
        p()
        p(f"== {TITLES[workload]}")
        p(format_section(workload, results[workload], peak))
        if workload == "train":
            ks = ", ".join(f"{r.case.shape[0]}: {r.case.info['k']}" for r in results["train"])
            p("fastnn = per step: one fit over k copies of the batch (k steps, shuffle=False) "
              f"divided by k, with k per N {ks}; fit(1 step) = one fit(X, y, epochs=1, "
              "batch_size=N) call, set-up included (reference: also per step, its own k). "
              "The ratios and the criteria use the per-step times.")
            worst = max(results["train"], key=lambda r: r.case.info["overhead_share_of_step"])
            info = worst.case.info
            p(f"A fit call's fixed cost (calibrated): {info['fit_call_overhead_us']:.0f} us at "
              f"{worst.case.label}; its share in the per-step time is at most "
              f"{100 * info['overhead_share_of_step']:.1f}%.")
            p("GFLOP/s counts 2 * N * (2 * N_in * N_h + 3 * N_h * 10): the forward products, "
              "dW of both layers, dX of the output layer.")
        if workload == "fit":
            acc = results["fit"][0].case.info.get("test_accuracy", {})
            if acc:
                p("test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    p()
    p("== criteria (ratios from this run)")
    for v in verdicts:
        mark = {True: "PASS", False: "FAIL", None: "n/a"}[v.passed]
        if v.borderline and v.passed is not None:
            mark += " (borderline)"
        p(f"[{mark}] {v.title} ({v.goal}): {v.measured}")
    noisy = []
    for rows in results.values():
        for r in rows:
            for t in r.timings.values():
                if t.spread > 0.25:
                    noisy.append(f"{r.case.workload} {r.case.label} {t.name} "
                                 f"{100 * t.spread:.0f}%")
    if noisy:
        p("note: samples spread (IQR/median) above 25%: " + "; ".join(noisy))
    busy = [f"{r.case.workload} {r.case.label} {100 * r.other_cpu:.0f}%"
            for rows in [[peak_result], *results.values()] for r in rows
            if r.other_cpu is not None and r.other_cpu > BUSY]
    if busy:
        p(f"* other processes used more than {BUSY:.0%} of the CPUs while these cases ran "
          "(their times are suspect; rerun on an idle machine): " + "; ".join(busy))
    other = env.get("other_cpu")
    if other is not None:
        p(f"other processes used {100 * other:.1f}% of the {env['cpus']} CPUs during the run"
          + (" (warning: the machine was not idle)" if other > 0.05 else ""))
    p(f"{elapsed:.0f} s")


# ---------------------------------------------------------------------------------------
# The scaling figure (--plot)
# ---------------------------------------------------------------------------------------


def sweep(args):
    """Time forward and train step against N (width fixed) and against width (N fixed) for
    fastnn, the reference and torch; returns {panel: {contender: [(x, seconds), ...]}}."""
    panels = {}
    plan = [("forward", "N", [(n, SWEEP_N_WIDTH, SWEEP_N_WIDTH) for n in SWEEP_N]),
            ("forward", "width", [(SWEEP_WIDTH_N, w, w) for w in SWEEP_WIDTH]),
            ("train", "N", [(n, SWEEP_N_WIDTH, SWEEP_N_WIDTH) for n in SWEEP_N]),
            ("train", "width", [(SWEEP_WIDTH_N, w, w) for w in SWEEP_WIDTH])]
    for workload, axis, shapes in plan:
        panel = panels.setdefault(f"{workload} vs {axis}", {"flops": []})
        for shape in shapes:
            case = forward_case(*shape) if workload == "forward" else train_case(*shape)
            case.contenders = {k: v for k, v in case.contenders.items()
                               if k in ("fastnn", "reference", "torch")}
            print(f"  sweep {workload:7s} {case.label}", file=sys.stderr, flush=True)
            r = run_case(case, args)
            x = shape[0] if axis == "N" else shape[1]
            for name in r.timings:
                panel.setdefault(name, []).append((x, r.median(name)))
            panel["flops"].append((x, case.flops))
    return panels


def plot(panels, peak, path, env):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = {"fastnn": dict(color="C0", marker="o"), "reference": dict(color="C2", marker="s"),
             "torch": dict(color="C3", marker="^")}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    order = ["forward vs N", "forward vs width", "train vs N", "train vs width"]
    for ax, key in zip(axes.flat, order):
        data = panels[key]
        for name in ("fastnn", "reference", "torch"):
            if name in data:
                xs, ts = zip(*data[name])
                ax.plot(xs, [t * 1e6 for t in ts], label=name, **style[name])
        if peak:
            xs, fl = zip(*data["flops"])
            ax.plot(xs, [f / (peak * 1e9) * 1e6 for f in fl], "k--", lw=1,
                    label=f"flops at GEMM peak ({peak:.0f} GFLOP/s)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = [x for x, _ in data["flops"]]
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(x) for x in ticks])
        ax.minorticks_off()
        workload, axis = key.split(" vs ")
        what = ("forward relu(X W^T + b)" if workload == "forward"
                else "train step, MLP w-w-10" if axis == "width"
                else f"train step, MLP {SWEEP_N_WIDTH}-{SWEEP_N_WIDTH}-10")
        if axis == "N":
            ax.set_xlabel(f"batch size N (width {SWEEP_N_WIDTH} -> {SWEEP_N_WIDTH})")
        else:
            ax.set_xlabel(f"width w (w -> w, batch N = {SWEEP_WIDTH_N})")
        ax.set_ylabel("time per call (us)")
        ax.set_title(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"fastnn {env['fastnn']} vs NumPy reference vs PyTorch {env['torch']} "
                 f"(float32), {env['cpu']}, {env['cpus']} cores", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m fastnn bench",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="fewer, shorter samples: 9 of ~4 ms (the default: 21 of ~10 ms)")
    p.add_argument("--only", metavar="WORKLOADS",
                   help=f"comma-separated subset of {','.join(WORKLOADS)} "
                        "(the GEMM peak is always measured)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--plot", metavar="PNG",
                   help="also time the scaling sweeps (forward and train step against batch "
                        "size and width) and save the figure to PNG (needs matplotlib)")
    p.add_argument("--samples", type=int, help="interleaved samples per contender (>= 5)")
    p.add_argument("--target-ms", type=float, help="duration of one sample, ms")
    p.add_argument("--threads", type=int, metavar="N",
                   help="restart with OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=N")
    p.add_argument("--openblas-timeout", type=int, metavar="T",
                   help=f"restart with OPENBLAS_THREAD_TIMEOUT=T (default here "
                        f"{OPENBLAS_THREAD_TIMEOUT}; bench/compare.py uses 4, OpenBLAS's own "
                        "default is 28)")
    p.add_argument("--gomp-spincount", type=int, metavar="S",
                   help=f"restart with GOMP_SPINCOUNT=S (default here {GOMP_SPINCOUNT}: idle "
                        "OpenMP workers spin ~0.1 ms, then sleep; 0 is fastnn's own "
                        "OMP_WAIT_POLICY=PASSIVE, 300000 libgomp's default)")
    args = p.parse_args(argv)
    if args.samples is None:
        args.samples = 9 if args.quick else 21
    if args.target_ms is None:
        args.target_ms = 4.0 if args.quick else 10.0
    if args.samples < 5:
        p.error("--samples must be at least 5")
    args.budget = 2.0 if args.quick else 8.0  # seconds of timing per case, at most...
    args.min_samples = 3 if args.quick else 7  # ...unless that leaves fewer samples
    only = [w.strip() for w in (args.only or "").split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS and w != "peak"]
    if unknown:
        p.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    args.workloads = [w for w in WORKLOADS if not only or w in only]
    return args


def _restart_command():
    """How this process was started, if it is the command line (else None)."""
    if not sys.argv or not sys.argv[0]:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.abspath(sys.argv[0])
    if script == os.path.join(here, "__main__.py"):
        return [sys.executable, "-m", "fastnn", "bench"]
    if script == os.path.abspath(__file__):
        return [sys.executable, "-m", "fastnn.benchmark"]
    return None


def _restart_with(updates, argv):
    """Re-run the command with the environment ``updates`` applied, unless they already are
    (thread counts and OpenBLAS's spin are read when the libraries load). Returns False when
    this process is not the command line and cannot be restarted."""
    if all(os.environ.get(k) == v for k, v in updates.items()):
        return True
    command = _restart_command()
    if command is None:
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [*command, *argv], dict(os.environ, **updates))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    updates = {}
    if args.threads is not None:
        n = str(args.threads)
        updates.update(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
    timeout = args.openblas_timeout
    if timeout is not None:
        updates["OPENBLAS_THREAD_TIMEOUT"] = str(timeout)
    elif "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        updates["OPENBLAS_THREAD_TIMEOUT"] = str(OPENBLAS_THREAD_TIMEOUT)
    if args.gomp_spincount is not None:
        updates["GOMP_SPINCOUNT"] = str(args.gomp_spincount)
    elif "GOMP_SPINCOUNT" not in os.environ:
        updates["GOMP_SPINCOUNT"] = str(GOMP_SPINCOUNT)
    restarted = _restart_with(updates, argv)
    if not restarted and args.threads is not None:
        raise RuntimeError("--threads restarts the process: run `python -m fastnn bench`")
    start = time.perf_counter()
    meter = CpuMeter()
    print("fastnn bench: importing peers and measuring (progress on stderr)...",
          file=sys.stderr, flush=True)
    env = environment()
    env["numpy_imported_before_env"] = not restarted
    peak_result = run_case(peak_case(), args)
    peak = peak_of(peak_result)
    results = {w: run_workload(w, args) for w in args.workloads}
    verdicts = criteria(results, peak)
    panels = sweep(args) if args.plot else None
    elapsed = time.perf_counter() - start
    env["loadavg_end"] = _loadavg()
    env["other_cpu"] = meter.others()
    report(results, peak_result, verdicts, env, args, elapsed)
    if args.plot:
        plot(panels, peak, args.plot, env)
        print(f"figure written to {args.plot}")
    if args.json:
        payload = {
            "environment": env,
            "settings": {"samples": args.samples, "target_ms": args.target_ms,
                         "budget_s_per_case": args.budget, "min_samples": args.min_samples,
                         "quick": args.quick, "workloads": args.workloads},
            "peak": {"gflops": peak, **peak_result.as_dict()},
            "results": {w: [r.as_dict(peak) for r in rows] for w, rows in results.items()},
            "criteria": [v.as_dict() for v in verdicts],
            "elapsed_s": elapsed,
        }
        if panels is not None:
            payload["sweeps"] = {k: {n: [[x, t * 1e6] for x, t in pts] if n != "flops" else pts
                                     for n, pts in v.items()} for k, v in panels.items()}
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
