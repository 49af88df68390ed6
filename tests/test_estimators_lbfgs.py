"""The lbfgs solver's objective: the native full-batch loss and gradient.

* ``_kernels.Trainer.loss_grad`` against the float64 NumPy reference (fastnn.reference):
  forward, per-sample losses, backward of sum_i w_i loss_i / norm, no update;
* the objective ``MLPClassifier`` / ``MLPRegressor`` hand to L-BFGS (captured from
  ``scipy.optimize.minimize``) on the native path against the Python formulation of the same
  objective (the numpy backend), and its gradient against central differences;
* whole lbfgs fits, native against the Python formulation.

Every loss the native path serves (cross-entropy, binary and multi-label binary cross-entropy,
multi-output squared error), with and without sample weights, float32 and float64, on a tiny
network, one with two hidden layers, and one whose products are split across threads
(N * n_in * n_hidden >= 2^21 multiply-adds).
"""

import os
import signal
import types
import warnings

import numpy as np
import pytest
import scipy.optimize

pytest.importorskip("sklearn")

import fastnn  # noqa: E402
import fastnn.losses  # noqa: E402
from fastnn.backends import TrainSpec  # noqa: E402
from fastnn import _kernels, reference  # noqa: E402
from fastnn.estimators import MLPClassifier, MLPRegressor  # noqa: E402

# name: (N, n_in, hidden layer sizes, hidden activation)
NETS = {
    "tiny": (9, 3, (4,), "tanh"),
    "deeper": (40, 5, (8, 6), "relu"),
    "split": (2048, 64, (1100,), "relu"),  # 2048 * 64 * 1100 = 144M multiply-adds
}
KINDS = ("multiclass", "binary", "multilabel", "regression")
LOSSES = {"multiclass": "cross_entropy", "binary": "binary_cross_entropy",
          "multilabel": "binary_cross_entropy", "regression": "squared_error"}
N_OUT = {"multiclass": 4, "binary": 1, "multilabel": 3, "regression": 3}


def _data(rng, kind, N, n_in):
    """X (N, n_in) and the targets as the estimators fit them (intp labels or (N, d) values)."""
    X = rng.standard_normal((N, n_in))
    score = X[:, :1] + 0.5 * rng.standard_normal((N, 1))
    if kind == "multiclass":
        y = np.digitize(score[:, 0], [-0.7, 0.0, 0.7])  # 4 classes
        y[:4] = np.arange(4)
        return X, y
    if kind == "binary":
        y = (score[:, 0] > 0).astype(int)
        y[:2] = [0, 1]
        return X, y
    if kind == "multilabel":
        return X, (score + rng.standard_normal((N, 3)) > 0).astype(int)
    return X, np.hstack([score, np.sin(X[:, 1:3])])


def _targets(kind, y, dtype):
    if kind == "multiclass":
        return np.ascontiguousarray(y, dtype=np.intp)
    return np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype)


def _reference_loss_grad(Ws, bs, acts, kind, X, Y, sw, norm):
    """float64: sum_i w_i loss_i and the gradient of sum_i w_i loss_i / norm (eq. 16-20 and
    section 3 on fastnn.reference)."""
    Ws = [W.astype(np.float64) for W in Ws]
    U, inputs, outputs = X.astype(np.float64), [], []
    for W, b, act in zip(Ws, bs, acts):
        inputs.append(U)
        U = reference.linear(U, W, b.astype(np.float64), act)
        outputs.append(U)
    N, d = U.shape
    if kind == "multiclass":
        losses, dZ = reference.cross_entropy(U, Y, reduction="none", return_grad=True)
    elif kind == "regression":
        losses, dZ = reference.squared_error(U, Y.astype(np.float64), reduction="none",
                                             return_grad=True)
    else:  # eq. 17 on each output, summed per sample
        losses, dZ = reference.binary_cross_entropy(U.ravel(), Y.ravel().astype(np.float64),
                                                    reduction="none", return_grad=True)
        losses, dZ = losses.reshape(N, d).sum(axis=1), dZ.reshape(N, d)
    w = np.ones(N) if sw is None else sw
    dU = dZ * (w / norm)[:, None]
    grads = []
    for l in range(len(Ws) - 1, -1, -1):
        dU, dW, db = reference.linear_backward(dU, inputs[l], Ws[l], outputs[l], acts[l],
                                               need_dX=l > 0)
        grads.insert(0, (dW, db))
    return float((w * losses).sum()), grads


def _trainer(Ws, bs, acts, kind, X, Y, sw, gWs, gbs, first_transposed=False):
    """A loss_grad Trainer over all of X; with ``first_transposed`` it gets W^T (n_in, width)
    and a gradient array of that shape for the first layer (the estimators' layout)."""
    return _kernels.Objective(TrainSpec(
        weights=Ws, biases=bs, activations=acts, loss=fastnn.losses.get(LOSSES[kind]), X=X,
        Y=Y, sample_weight=sw, batch_size=X.shape[0], grad_weights=gWs, grad_biases=gbs,
        first_transposed=first_transposed))


@pytest.mark.parametrize("layout", ["W", "first W^T"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("kind", KINDS)
def test_trainer_loss_grad_matches_reference(kind, net, weighted, layout, dtype, rng):
    N, n_in, hidden, act = NETS[net]
    X, y = _data(rng, kind, N, n_in)
    X = np.ascontiguousarray(X, dtype=dtype)
    Y = _targets(kind, y, dtype)
    sizes = [n_in, *hidden, N_OUT[kind]]
    Ws = [(rng.standard_normal((m, k)) / np.sqrt(k)).astype(dtype)
          for k, m in zip(sizes[:-1], sizes[1:])]
    bs = [(0.1 * rng.standard_normal(m)).astype(dtype) for m in sizes[1:]]
    acts = [act] * len(hidden) + ["identity"]
    sw = rng.uniform(0.2, 3.0, N) if weighted else None
    transposed = layout == "first W^T"
    held = [np.ascontiguousarray(W.T) if l == 0 and transposed else W for l, W in enumerate(Ws)]
    gWs = [np.full_like(W, np.nan) for W in held]  # every entry must be written
    gbs = [np.full_like(b, np.nan) for b in bs]
    trainer = _trainer(held, bs, acts, kind, X, Y, sw, gWs, gbs, first_transposed=transposed)
    before = [p.copy() for p in held + bs]
    norm = 0.37 * N
    total = trainer.loss_grad(norm)
    expected, grads = _reference_loss_grad(Ws, bs, acts, kind, X, Y, sw, norm)
    outputs = gWs + gbs
    first = [g.copy() for g in outputs]
    if transposed:
        gWs = [gWs[0].T, *gWs[1:]]

    rtol = 1e-4 if dtype == np.float32 else 1e-10
    assert total == pytest.approx(expected, rel=rtol)
    for (dW, db), gW, gb in zip(grads, gWs, gbs):
        scale = max(np.abs(dW).max(), np.abs(db).max())
        np.testing.assert_allclose(gW, dW, rtol=rtol, atol=rtol * scale)
        np.testing.assert_allclose(gb, db, rtol=rtol, atol=rtol * scale)
    for p, q in zip(before, held + bs):  # no update
        np.testing.assert_array_equal(p, q)
    # a second call on the same weights gives the same numbers, bit for bit
    assert trainer.loss_grad(norm) == total
    for g, h in zip(first, outputs):
        np.testing.assert_array_equal(g, h)


@pytest.mark.parametrize("kind", ["multiclass", "binary"])
@pytest.mark.parametrize("net", ["deeper", "split"])
def test_trainer_loss_grad_same_bits_for_any_thread_count(kind, net, rng):
    """The rows are cut into parts by the processor count alone (each part's share of the
    gradient summed in part order), so 1 thread and the team give the same bits."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    N, n_in, hidden, act = NETS[net]
    X, y = _data(rng, kind, N, n_in)
    X = np.ascontiguousarray(X, dtype=np.float32)
    Y = _targets(kind, y, np.float32)
    sizes = [n_in, *hidden, N_OUT[kind]]
    Ws = [(rng.standard_normal((k, m) if l == 0 else (m, k)) / np.sqrt(k)).astype(np.float32)
          for l, (k, m) in enumerate(zip(sizes[:-1], sizes[1:]))]
    bs = [(0.1 * rng.standard_normal(m)).astype(np.float32) for m in sizes[1:]]
    acts = [act] * len(hidden) + ["identity"]
    results = []
    for threads in (1, 2):
        gWs, gbs = [np.empty_like(W) for W in Ws], [np.empty_like(b) for b in bs]
        trainer = _trainer(Ws, bs, acts, kind, X, Y, None, gWs, gbs, first_transposed=True)
        with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"):
            results.append((trainer.loss_grad(float(N)), gWs + gbs))
    assert results[0][0] == results[1][0]
    for g, h in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(g, h)


def test_trainer_loss_grad_needs_the_whole_set_in_one_batch():
    X = np.zeros((5, 2))
    W, b = [np.zeros((3, 2))], [np.zeros(3)]
    trainer = _kernels.Objective(TrainSpec(
        weights=W, biases=b, activations=["identity"], loss=fastnn.losses.get("squared_error"),
        X=X, Y=np.zeros((5, 3)), batch_size=4, grad_weights=[np.zeros((3, 2))],
        grad_biases=[np.zeros(3)]))
    with pytest.raises(ValueError, match="batch_size >= N"):
        trainer.loss_grad(5.0)


# ---------------------------------------------------------------------------------------
# The estimators' objective
# ---------------------------------------------------------------------------------------

def _estimator(kind, net, dtype, activation=None, **params):
    _, _, hidden, act = NETS[net]
    cls = MLPRegressor if kind == "regression" else MLPClassifier
    return cls(hidden_layer_sizes=hidden, activation=activation or act, solver="lbfgs",
               dtype=np.dtype(dtype).name, random_state=0, **params)


def _objective(monkeypatch, est, X, y, sw):
    """(fun, x0): the objective L-BFGS gets from ``est.fit`` as one function x -> (value,
    gradient), and the start (the fit stops there)."""
    seen = {}

    def minimize(fun, x0, jac, **kwargs):
        seen["fun"], seen["x0"] = (lambda x: (fun(x), jac(x))), x0.copy()
        return types.SimpleNamespace(x=x0, fun=fun(x0), nit=0, status=0, message="")

    monkeypatch.setattr(scipy.optimize, "minimize", minimize)
    est.fit(X, y, sample_weight=sw)
    monkeypatch.undo()
    return seen["fun"], seen["x0"]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("kind", KINDS)
def test_objective_matches_python_formulation(kind, net, weighted, dtype, rng, monkeypatch):
    """The native objective (cython backend) equals the one the numpy backend builds from
    fastnn's per-layer functions and _data_losses (the Python formulation), L2 term included,
    at the start and at a random point."""
    N, n_in, _, _ = NETS[net]
    X, y = _data(rng, kind, N, n_in)
    sw = rng.uniform(0.2, 3.0, N) if weighted else None
    native, x0 = _objective(monkeypatch, _estimator(kind, net, dtype, alpha=0.3), X, y, sw)
    with fastnn.use_backend("numpy"):
        python, x0_py = _objective(monkeypatch, _estimator(kind, net, dtype, alpha=0.3), X, y,
                                   sw)
        np.testing.assert_array_equal(x0, x0_py)
        x1 = x0 + 0.3 * rng.standard_normal(x0.shape)
        expected = [python(x) for x in (x0, x1)]
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    for x, (f_py, g_py) in zip((x0, x1), expected):
        f, g = native(x)
        assert g.dtype == np.float64 and g.shape == x.shape
        assert f == pytest.approx(f_py, rel=rtol)
        np.testing.assert_allclose(g, g_py, rtol=rtol, atol=rtol * np.abs(g_py).max())


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("kind", KINDS)
def test_objective_gradient_matches_finite_differences(kind, net, rng, monkeypatch):
    """float64: the native gradient's directional derivatives g . v against central
    differences of the objective, for random directions v (sample weights, L2 term; tanh
    units, so that no step crosses a kink)."""
    N, n_in, _, _ = NETS[net]
    X, y = _data(rng, kind, N, n_in)
    sw = rng.uniform(0.2, 3.0, N)
    est = _estimator(kind, net, np.float64, activation="tanh", alpha=0.3)
    fun, x0 = _objective(monkeypatch, est, X, y, sw)
    x = x0 + 0.1 * rng.standard_normal(x0.shape)
    _, g = fun(x)
    g = g.copy()
    eps = 1e-6
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        v /= np.linalg.norm(v)
        numeric = (fun(x + eps * v)[0] - fun(x - eps * v)[0]) / (2 * eps)
        assert g @ v == pytest.approx(numeric, rel=1e-5, abs=1e-8 * np.abs(g).sum())


@pytest.mark.parametrize("kind", KINDS)
def test_lbfgs_fit_matches_python_formulation(kind, rng):
    """Whole float64 fits (two hidden layers, sample weights, L2): the native objective and
    the Python one (numpy backend) take the same L-BFGS path; loss_ (scikit-learn's scale:
    the squared error's mean over the outputs) agrees too."""
    X, y = _data(rng, kind, 120, 5)
    sw = rng.uniform(0.2, 3.0, len(y))
    fits = []
    for backend in ("cython", "numpy"):
        with fastnn.use_backend(backend), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: the budget is the point
            est = _estimator(kind, "deeper", np.float64, alpha=0.01, max_iter=25)
            fits.append(est.fit(X, y, sample_weight=sw))
    native, python = fits
    assert native.n_iter_ == python.n_iter_ == 25
    assert native.loss_ == pytest.approx(python.loss_, rel=1e-8)
    for a, b in zip(native.coefs_ + native.intercepts_, python.coefs_ + python.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_lbfgs_evaluates_each_point_once(rng, monkeypatch):
    """scipy asks for the objective and its gradient at each x one after the other: the
    estimator evaluates the network once for both (loss_grad calls == scipy's nfev)."""
    X, y = _data(rng, "multiclass", 120, 5)
    calls, results = [0], []
    real_trainer, real_minimize = _kernels.Objective, scipy.optimize.minimize

    class Counting:
        def __init__(self, *args, **kwargs):
            self.trainer = real_trainer(*args, **kwargs)

        def loss_grad(self, norm):
            calls[0] += 1
            return self.trainer.loss_grad(norm)

    def minimize(*args, **kwargs):
        results.append(real_minimize(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(_kernels, "Objective", Counting)
    monkeypatch.setattr(scipy.optimize, "minimize", minimize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _estimator("multiclass", "deeper", np.float32, max_iter=30).fit(X, y)
    assert results[0].nit == 30 and calls[0] == results[0].nfev


@pytest.mark.parametrize("n", [0, 7, 19])
def test_penalized_gradient(n, dtype, rng):
    """The lbfgs objective's float64 gradient: the data gradient plus a * theta on the first
    n entries (the weights), and the sum of their squares."""
    grad = rng.standard_normal(19).astype(dtype)
    theta = rng.standard_normal(19).astype(dtype)
    g, s = _kernels.penalized_gradient(grad, theta, n, 0.3)
    assert g.dtype == np.float64
    expected = grad.astype(np.float64)
    expected[:n] += 0.3 * theta[:n].astype(np.float64)
    np.testing.assert_allclose(g, expected, rtol=1e-15)
    assert s == pytest.approx(float(np.sum(theta[:n].astype(np.float64) ** 2)), rel=1e-14)
    theta[0] = np.inf  # weights that overflowed: an infinite penalty
    assert _kernels.penalized_gradient(grad, theta, 19, 0.3)[1] == np.inf


def _team_of_two(threadpoolctl):
    """Two of fastnn's threads and one BLAS thread, as the estimators' lbfgs runs loss_grad."""
    return threadpoolctl.threadpool_limits(limits={"openmp": 2, "blas": 1})


def _split_trainer(rng, net=NETS["split"]):
    """A float32 loss_grad Trainer big enough to run on a team, and its gradient arrays."""
    N, n_in, hidden, act = net
    X, y = _data(rng, "multiclass", N, n_in)
    sizes = [n_in, *hidden, N_OUT["multiclass"]]
    Ws = [(rng.standard_normal((m, k)) / np.sqrt(k)).astype(np.float32)
          for k, m in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(m, np.float32) for m in sizes[1:]]
    gWs, gbs = [np.empty_like(W) for W in Ws], [np.empty_like(b) for b in bs]
    trainer = _trainer(Ws, bs, [act, "identity"], "multiclass", X.astype(np.float32),
                       _targets("multiclass", y, np.float32), None, gWs, gbs)
    return trainer, gWs + gbs


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_loss_grad_in_a_forked_child(rng):
    """A fork copies a Trainer but not fastnn's threads: the child's loss_grad starts threads
    of its own instead of waiting on ones that are not there, and gives the same numbers."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    trainer, grads = _split_trainer(rng)
    with _team_of_two(threadpoolctl):  # (the child inherits the thread limits)
        expected = trainer.loss_grad(1.0)
        expected_grads = [g.copy() for g in grads]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: writes 1 if its numbers match (killed after 60 s)
            try:
                signal.alarm(60)
                ok = trainer.loss_grad(1.0) == expected and all(
                    np.array_equal(g, h) for g, h in zip(grads, expected_grads))
                os.write(write, b"1" if ok else b"0")
            finally:
                os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0


def test_late_threads_give_the_same_numbers(rng):
    """Threads that start late (another process on their core) make thread 0 wait at the
    barriers and, after four long waits, go on alone: the numbers stay the same."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    _testing = pytest.importorskip("fastnn._testing", reason="needs the checked build's hooks")
    trainer, grads = _split_trainer(rng)
    with _team_of_two(threadpoolctl):
        first = trainer.loss_grad(1.0)
        expected = [g.copy() for g in grads]
        _testing.start_late(trainer, 0.02)
        assert trainer.loss_grad(1.0) == first
        assert all(np.array_equal(g, h) for g, h in zip(grads, expected))


def test_a_partner_off_its_core_for_a_time_slice_disbands_the_team_at_once(rng):
    """A partner 50 ms late on a step whose parts take well under a millisecond (as when
    another thread holds its core for an OS time slice) makes thread 0 wait at its first
    barrier more than off_core and 4 times what it worked: the team disbands there, and
    the numbers stay the same. (50 ms: room for a slow machine's parts.)"""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    _testing = pytest.importorskip("fastnn._testing", reason="needs the checked build's hooks")
    trainer, grads = _split_trainer(rng, (512, 64, (256,), "relu"))  # 8.4M multiply-adds
    with _team_of_two(threadpoolctl):
        first = trainer.loss_grad(1.0)
        expected = [g.copy() for g in grads]
        if trainer.team_stretches + trainer.disbanded == 0:
            pytest.skip("no team for this step with this tuning table")
        _testing.start_late(trainer, 0.05)
        trainer.team_speed = trainer.alone_speed = 0.0  # (the team is timed next, whatever
        trainer.retry = 0                                # the first call's cold start did)
        disbanded = trainer.disbanded
        assert trainer.loss_grad(1.0) == first
        assert trainer.disbanded == disbanded + 1
    assert all(np.array_equal(g, h) for g, h in zip(grads, expected))
