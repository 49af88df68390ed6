"""``fit``: mini-batch training (eq. 21 and its variants) on both backends.

The native loop ("cython") and the batch-by-batch Python loop ("numpy") are checked against
each other, against an independent NumPy re-implementation of the update rules written here
(SGD, momentum, Nesterov, Adam, weight decay, sample weights) and against the properties of
the contract: the loss goes down, the same seed gives the same bits, divergence and bad
arguments raise, early stopping restores the best weights, threads cannot run two fits at once;
then the native loop kept between fits, its step split among fastnn's threads, and its
shuffle.
"""

import math
import pickle
import sys
import threading

import numpy as np
import pytest
import threadpoolctl

import fastnn
from fastnn import MLP, History, Linear, Sequential, _kernels
from fastnn.backends import ops
from helpers import assert_same_weights, blas_threads, tuning, weights

OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", lr=0.1),
    "momentum": dict(optimizer="sgd", momentum=0.9, lr=0.02),
    "nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True, lr=0.02),
    "adam": dict(optimizer="adam", lr=0.01),
}


def _blas_controllers():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers


def _set_blas_threads(counts):
    """Set each BLAS library's thread count ({filepath: n}) directly: threadpoolctl's public
    API ignores a thread that is not its 'controlling' thread, the test must not."""
    for lc in _blas_controllers():
        if lc.filepath in counts:
            getattr(lc, "_real_set_num_threads", lc.set_num_threads)(counts[lc.filepath])


@pytest.fixture(autouse=True)
def _keep_blas_threads():
    """Each test leaves BLAS's thread counts as it found them (a failing thread test must
    not change what the next test runs with)."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        yield
        return
    before = {lc.filepath: lc.num_threads for lc in _blas_controllers()}
    yield
    if {lc.filepath: lc.num_threads for lc in _blas_controllers()} != before:
        _set_blas_threads(before)


def _problem(output, rng, N=120, dtype=np.float64):
    """A learnable synthetic problem with 4 features."""
    X = rng.standard_normal((N, 4)).astype(dtype)
    if output == "softmax":
        centers = np.array([[2, 0, 0, 0], [-2, 1, 0, 0], [0, -2, 1, 0]])
        y = rng.integers(0, 3, N)
        X = (X + centers[y]).astype(dtype)
        return X, y, 3
    if output == "sigmoid":
        y = (X[:, 0] - X[:, 1] + 0.5 * X[:, 2] > 0).astype(int)
        return X, y, 1
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] - X[:, 2] * X[:, 3] / 4
    return X, y, 1


# ---------------------------------------------------------------------------------------
# the loss goes down
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_fit_reduces_the_loss(backend, dtype, output, opt, rng):
    X, y, n_out = _problem(output, rng, dtype=dtype)
    model = MLP(4, 16, n_out, activation="tanh", output=output, dtype=dtype, random_state=0)
    before = float(model.loss(X, y))
    history = model.fit(X, y, epochs=15, batch_size=16, random_state=0, **OPTIMIZERS[opt])
    after = float(model.loss(X, y))
    assert isinstance(history, History) and model.history_ is history
    assert history.epochs == 15 and len(history.loss) == 15
    assert all(math.isfinite(v) for v in history.loss)
    assert after < 0.5 * before, (before, after)
    assert history.loss[-1] < history.loss[0]
    assert model.dtype == dtype and all(W.dtype == dtype for W in weights(model))
    if output != "identity":  # the classifier learned something
        pred = model.predict(X)
        assert (pred == y).mean() > 0.85


def test_weight_decay_shrinks_the_weights(backend, rng):
    X, y, _ = _problem("softmax", rng)
    plain = MLP(4, 16, 3, dtype="float64", random_state=0)
    decayed = MLP(4, 16, 3, dtype="float64", random_state=0)
    plain.fit(X, y, epochs=10, lr=0.1, random_state=0)
    decayed.fit(X, y, epochs=10, lr=0.1, weight_decay=0.05, random_state=0)
    for (Wp, bp), (Wd, bd) in zip(plain.parameters(), decayed.parameters()):
        assert np.linalg.norm(Wd) < np.linalg.norm(Wp)
    assert decayed.loss(X, y) < MLP(4, 16, 3, dtype="float64", random_state=0).loss(X, y)


# ---------------------------------------------------------------------------------------
# the update rules against an independent NumPy implementation
# ---------------------------------------------------------------------------------------


def _manual_fit(W, b, X, Y, output, *, epochs, batch_size, lr, optimizer="sgd", momentum=0.0,
                nesterov=False, weight_decay=0.0, sample_weight=None, beta1=0.9, beta2=0.999,
                eps=1e-8, lrs=None):
    """Train a one-layer model z = W x + b (shuffle=False) by the documented rules:
    batch loss = sum_i w_i g_loss_i / B; g = dL/dP (+ weight_decay * W for weights);
    SGD P -= lr g; momentum v = mu v - lr g, P += v (Nesterov P += mu v - lr g);
    Adam m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, P -= lr_t m / (sqrt(v) + eps)."""
    W, b = W.copy(), b.copy()
    N = len(X)
    sw = np.ones(N) if sample_weight is None else np.asarray(sample_weight, np.float64)
    state = {k: [np.zeros_like(W), np.zeros_like(b)] for k in ("m", "v")}
    t = 0
    losses = []
    for epoch in range(epochs):
        rate = lr if lrs is None else lrs[epoch]
        total = 0.0
        for s in range(0, N, batch_size):
            Xb, Yb, wb = X[s:s + batch_size], Y[s:s + batch_size], sw[s:s + batch_size]
            B = len(Xb)
            Z = Xb @ W.T + b
            if output == "identity":
                per = ((Z - Yb) ** 2).sum(axis=1)
                dZ = 2 * (Z - Yb)
            else:  # softmax, labels
                R = np.zeros_like(Z)
                R[np.arange(B), Yb] = 1
                E = np.exp(Z - Z.max(axis=1, keepdims=True))
                P = E / E.sum(axis=1, keepdims=True)
                per = np.log(E.sum(axis=1)) + Z.max(axis=1) - (R * Z).sum(axis=1)
                dZ = P - R
            total += (wb * per).sum()
            dZ = dZ * (wb / B)[:, None]
            grads = [dZ.T @ Xb + weight_decay * W, dZ.sum(axis=0)]
            t += 1
            for k, (P_, g) in enumerate(zip((W, b), grads)):
                if optimizer == "adam":
                    m, v = state["m"][k], state["v"][k]
                    m[...] = beta1 * m + (1 - beta1) * g
                    v[...] = beta2 * v + (1 - beta2) * g * g
                    lr_t = rate * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
                    P_ -= lr_t * m / (np.sqrt(v) + eps)
                elif momentum > 0:
                    v = state["m"][k]
                    v[...] = momentum * v - rate * g
                    P_ += (momentum * v - rate * g) if nesterov else v
                else:
                    P_ -= rate * g  # eq. 21
        losses.append(total / N)
    return W, b, losses


RULES = {
    "sgd": dict(optimizer="sgd"),
    "sgd+decay": dict(optimizer="sgd", weight_decay=0.1),
    "momentum": dict(optimizer="sgd", momentum=0.8),
    "nesterov": dict(optimizer="sgd", momentum=0.8, nesterov=True),
    "nesterov+decay": dict(optimizer="sgd", momentum=0.5, nesterov=True, weight_decay=0.05),
    "adam": dict(optimizer="adam"),
    "adam+decay": dict(optimizer="adam", beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01),
}


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("output", ["identity", "softmax"])
def test_update_rules_match_a_manual_implementation(backend, rule, output, rng):
    N, d, k = 23, 3, 2 if output == "identity" else 3  # 23 = 3 batches of 8, the last of 7
    X = rng.standard_normal((N, d))
    Y = rng.standard_normal((N, k)) if output == "identity" else rng.integers(0, k, N)
    sw = rng.uniform(0, 2, N)
    model = MLP(d, (), k, output=output, dtype="float64", random_state=0)
    W0, b0 = model.layers[0].W.copy(), model.layers[0].b.copy()
    kwargs = RULES[rule]
    lr = 0.05 if kwargs["optimizer"] == "sgd" else 0.01
    history = model.fit(X, Y, epochs=3, batch_size=8, lr=lr, shuffle=False, sample_weight=sw,
                        **kwargs)
    W, b, losses = _manual_fit(W0, b0, X, Y, output, epochs=3, batch_size=8, lr=lr,
                               sample_weight=sw, **kwargs)
    np.testing.assert_allclose(model.layers[0].W, W, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(model.layers[0].b, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(history.loss, losses, rtol=1e-12)
    assert not np.allclose(W, W0)  # it moved
    assert model.optimizer_state_["t"] == 9


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "cosine", "callable"])
def test_lr_schedules(backend, schedule, rng):
    N, d = 16, 3
    X = rng.standard_normal((N, d))
    Y = rng.standard_normal((N, 1))
    lr, epochs = 0.05, 4
    expected = {
        "constant": [lr] * epochs,
        "invscaling": [lr / math.sqrt(e + 1) for e in range(epochs)],  # power_t = 0.5
        "cosine": [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)],
        "callable": [0.01, 0.02, 0.03, 0.04],
    }[schedule]
    arg = (lambda e: 0.01 * (e + 1)) if schedule == "callable" else schedule
    model = MLP(d, (), 1, output="identity", dtype="float64", random_state=0)
    W0, b0 = model.layers[0].W.copy(), model.layers[0].b.copy()
    history = model.fit(X, Y, epochs=epochs, batch_size=4, lr=lr, shuffle=False,
                        lr_schedule=arg)
    np.testing.assert_allclose(history.lr, expected, rtol=1e-15)
    # the rates were used: plain SGD with those per-epoch rates, computed by hand
    W, b, losses = _manual_fit(W0, b0, X, Y, "identity", epochs=epochs, batch_size=4, lr=lr,
                               lrs=expected)
    np.testing.assert_allclose(model.layers[0].W, W, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(model.layers[0].b, b, rtol=1e-12, atol=1e-13)
    assert history.loss[-1] < history.loss[0]


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "cosine", lambda e: 0.1 / (1 + e)])
def test_lr_schedules_reduce_the_loss(backend, schedule, rng):
    X, y, _ = _problem("softmax", rng)
    model = MLP(4, 8, 3, dtype="float64", random_state=0)
    before = model.loss(X, y)
    model.fit(X, y, epochs=10, lr=0.1, lr_schedule=schedule, random_state=0)
    assert model.loss(X, y) < 0.5 * before


def test_lr_schedule_callable_bad_value(backend, rng):
    X, y, _ = _problem("softmax", rng, N=20)
    model = MLP(4, 3, 3, random_state=0)
    for bad in (lambda e: 0.0, lambda e: -1.0, lambda e: float("nan"), lambda e: "x"):
        with pytest.raises(ValueError, match="lr_schedule"):
            model.fit(X, y, epochs=2, lr_schedule=bad)


# ---------------------------------------------------------------------------------------
# shuffling, sample weights
# ---------------------------------------------------------------------------------------


def test_shuffle_false_ignores_the_seed_and_shuffle_true_uses_it(backend, rng):
    X, y, _ = _problem("softmax", rng, N=40)

    def fit(**kw):
        m = MLP(4, 5, 3, dtype="float64", random_state=0)
        m.fit(X, y, epochs=2, batch_size=8, lr=0.1, **kw)
        return m

    assert_same_weights(fit(shuffle=False, random_state=1), fit(shuffle=False, random_state=2))
    assert_same_weights(fit(shuffle=True, random_state=1), fit(shuffle=True, random_state=1))
    a, b = fit(shuffle=True, random_state=1), fit(shuffle=True, random_state=2)
    assert not np.array_equal(weights(a)[0], weights(b)[0])
    # shuffle=False visits the rows in order: the same as fitting on the rows in order
    c = fit(shuffle=False)
    perm = np.random.default_rng(0).permutation(40)
    m = MLP(4, 5, 3, dtype="float64", random_state=0)
    m.fit(X[perm], y[perm], epochs=2, batch_size=8, lr=0.1, shuffle=False)
    assert not np.array_equal(weights(m)[0], weights(c)[0])


def test_random_state_none_draws_from_the_os_only_to_shuffle(backend, rng, monkeypatch):
    """random_state=None: each fit's shuffles from a seed the OS gives, drawn when the first
    shuffle needs it (a fit with shuffle=False makes no system call for it)."""
    import os

    from fastnn import _validation

    X, y, _ = _problem("softmax", rng, N=40)
    drawn, real = [], os.urandom

    def urandom(n):
        drawn.append(n)
        return real(n)

    monkeypatch.setattr(_validation.os, "urandom", urandom)
    m = MLP(4, 5, 3, dtype="float64", random_state=0)
    m.fit(X, y, epochs=2, batch_size=8, lr=0.1, shuffle=False)
    assert drawn == []
    m.fit(X, y, epochs=3, batch_size=8, lr=0.1)
    assert drawn == [8]  # one seed, its stream for the 3 epochs
    a, b = _validation.seeds(None), _validation.seeds(None)
    assert a() != b()


def test_sample_weight_two_equals_double_lr(backend, dtype, rng):
    X, y, _ = _problem("softmax", rng, N=50, dtype=dtype)
    a = MLP(4, 6, 3, dtype=dtype, random_state=0)
    b = MLP(4, 6, 3, dtype=dtype, random_state=0)
    ha = a.fit(X, y, epochs=3, batch_size=10, lr=0.02, random_state=3,
               sample_weight=np.full(50, 2.0))
    hb = b.fit(X, y, epochs=3, batch_size=10, lr=0.04, random_state=3)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    assert_same_weights(a, b, **tol)
    # the history reports the weighted mean loss: twice the unweighted one (epoch 1 starts
    # from the same weights)
    np.testing.assert_allclose(ha.loss[0], 2 * hb.loss[0], rtol=1e-5)


def test_sample_weight_zero_on_half_equals_fitting_the_other_half(backend, rng):
    # full-batch gradient descent: the batch mean divides by N, so zero weight on half the
    # samples is fitting the other half (N/2 samples) with half the learning rate
    X, y, _ = _problem("identity", rng, N=40)
    keep = np.zeros(40, dtype=bool)
    keep[rng.permutation(40)[:20]] = True
    a = MLP(4, 6, 1, output="identity", dtype="float64", random_state=0)
    b = MLP(4, 6, 1, output="identity", dtype="float64", random_state=0)
    ha = a.fit(X, y, epochs=5, batch_size=40, lr=0.02, shuffle=False,
               sample_weight=keep.astype(float))
    hb = b.fit(X[keep], y[keep], epochs=5, batch_size=20, lr=0.01, shuffle=False)
    assert_same_weights(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.array(ha.loss) * 2, hb.loss, rtol=1e-10)
    # and it differs from using all samples
    c = MLP(4, 6, 1, output="identity", dtype="float64", random_state=0)
    c.fit(X, y, epochs=5, batch_size=40, lr=0.02, shuffle=False)
    assert not np.allclose(weights(a)[0], weights(c)[0])


# ---------------------------------------------------------------------------------------
# validation data and early stopping
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_validation_data(backend, output, rng):
    X, y, n_out = _problem(output, rng, N=150)
    Xt, yt, Xv, yv = X[:100], y[:100], X[100:], y[100:]
    model = MLP(4, 8, n_out, activation="tanh", output=output, dtype="float64", random_state=0)
    h = model.fit(Xt, yt, epochs=4, lr=0.05, validation_data=(Xv, yv), random_state=0)
    assert len(h.loss) == len(h.val_loss) == len(h.val_metric) == len(h.lr) == len(h.seconds) == 4
    assert all(s >= 0 for s in h.seconds)
    # the last entries describe the final model
    np.testing.assert_allclose(h.val_loss[-1], model.loss(Xv, yv), rtol=1e-12)
    if output == "identity":
        assert h.metric == "r2"
        pred = model.predict(Xv)
        r2 = 1 - ((yv - pred) ** 2).sum() / ((yv - yv.mean()) ** 2).sum()
        np.testing.assert_allclose(h.val_metric[-1], r2, rtol=1e-10)
    else:
        assert h.metric == "accuracy"
        assert all(0 <= m <= 1 for m in h.val_metric)
        np.testing.assert_allclose(h.val_metric[-1], (model.predict(Xv) == yv).mean())
    # without validation data the validation lists stay empty
    h2 = model.fit(Xt, yt, epochs=2)
    assert h2.val_loss == [] and h2.val_metric == [] and len(h2.loss) == 2


def _overfitting_problem(rng):
    """16 noisy samples of sin(x) and a clean validation curve: the validation loss falls,
    then rises as a 64-unit network fits the noise."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, (16, 1))
    y = np.sin(X[:, 0]) + 0.5 * rng.standard_normal(16)
    Xv = np.linspace(-2, 2, 50)[:, None]
    return X, y, Xv, np.sin(Xv[:, 0])


def test_early_stopping_restores_the_best_epoch(backend, rng):
    X, y, Xv, yv = _overfitting_problem(rng)
    model = MLP(1, 64, 1, activation="tanh", output="identity", dtype="float64",
                random_state=0)
    h = model.fit(X, y, epochs=300, batch_size=4, lr=0.02, optimizer="adam",
                  validation_data=(Xv, yv), early_stopping=True, patience=10, random_state=0)
    best = int(np.argmin(h.val_loss))
    assert h.stopped_early and h.best_epoch == best
    assert 0 < best < h.epochs - 1  # the scenario really has a minimum in the middle
    assert h.epochs == best + 10 + 1  # patience epochs without improvement, then stop
    assert len(h.val_loss) == h.epochs
    # the model holds the best epoch's weights, not the last epoch's
    np.testing.assert_allclose(model.loss(Xv, yv), min(h.val_loss), rtol=1e-12)
    assert model.loss(Xv, yv) < h.val_loss[-1]
    # the same weights as a fit that simply ran best + 1 epochs
    again = MLP(1, 64, 1, activation="tanh", output="identity", dtype="float64",
                random_state=0)
    again.fit(X, y, epochs=best + 1, batch_size=4, lr=0.02, optimizer="adam", random_state=0)
    assert_same_weights(model, again)


def test_early_stopping_restores_the_step_count(backend, rng):
    X, y, Xv, yv = _overfitting_problem(rng)
    model = MLP(1, 64, 1, activation="tanh", output="identity", dtype="float64",
                random_state=0)
    h = model.fit(X, y, epochs=300, batch_size=4, lr=0.02, optimizer="adam",
                  validation_data=(Xv, yv), early_stopping=True, patience=10, random_state=0)
    assert h.stopped_early
    again = MLP(1, 64, 1, activation="tanh", output="identity", dtype="float64",
                random_state=0)
    again.fit(X, y, epochs=h.best_epoch + 1, batch_size=4, lr=0.02, optimizer="adam",
              random_state=0)
    assert_same_weights(model, again)
    assert model.optimizer_state_["t"] == again.optimizer_state_["t"] == (h.best_epoch + 1) * 4


def test_early_stopping_needs_validation_data(backend, rng):
    X, y, _ = _problem("softmax", rng, N=20)
    model = MLP(4, 3, 3, random_state=0)
    with pytest.raises(ValueError, match="validation_data"):
        model.fit(X, y, epochs=2, early_stopping=True)


def test_no_early_stopping_keeps_the_last_weights(backend, rng):
    X, y, Xv, yv = _overfitting_problem(rng)
    model = MLP(1, 64, 1, activation="tanh", output="identity", dtype="float64",
                random_state=0)
    h = model.fit(X, y, epochs=30, batch_size=4, lr=0.02, optimizer="adam",
                  validation_data=(Xv, yv), random_state=0)
    assert h.epochs == 30 and not h.stopped_early
    np.testing.assert_allclose(model.loss(Xv, yv), h.val_loss[-1], rtol=1e-12)


# ---------------------------------------------------------------------------------------
# native loop vs the NumPy loop; determinism
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt", ["sgd", "momentum", "nesterov", "adam", "decay", "weights"])
@pytest.mark.parametrize("output, n_out", [("softmax", 3), ("sigmoid", 1), ("sigmoid", 2),
                                           ("identity", 2)])
def test_native_and_numpy_backends_agree(output, n_out, opt, rng):
    X = rng.standard_normal((50, 4))
    if output == "softmax":
        y = rng.integers(0, 3, 50)
    elif output == "sigmoid":
        y = rng.integers(0, 2, (50, n_out)) if n_out > 1 else rng.integers(0, 2, 50)
    else:
        y = rng.standard_normal((50, n_out))
    kwargs = {"sgd": {}, "momentum": dict(momentum=0.9), "adam": dict(optimizer="adam"),
              "nesterov": dict(momentum=0.9, nesterov=True), "decay": dict(weight_decay=0.1),
              "weights": dict(sample_weight=rng.uniform(0, 3, 50))}[opt]
    models, histories = [], []
    for backend in ("cython", "numpy"):
        with fastnn.use_backend(backend):
            m = MLP(4, (6, 5), n_out, activation="tanh", output=output, dtype="float64",
                    random_state=0)
            histories.append(m.fit(X, y, epochs=3, batch_size=16, lr=0.01, random_state=4,
                                   **kwargs))
            models.append(m)
    assert_same_weights(*models, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(histories[0].loss, histories[1].loss, rtol=1e-12)
    assert models[0].optimizer_state_["t"] == models[1].optimizer_state_["t"] == 12


@pytest.mark.parametrize("opt", ["momentum", "adam_decay"])
@pytest.mark.parametrize("n_in, hidden, n_out, batch", [
    (2, 200, 3, 4),   # the first layer's small products: 200 units, beyond one row of sums
    (3, 130, 2, 8),   # 130 units: two rows of sums and a remainder
    (1, 65, 70, 2),   # one input; the output layer's 70 units
    (130, 3, 1, 4),   # 130 inputs (the first layer's dW rows), one output
])
def test_small_products_agree_with_the_numpy_loop(n_in, hidden, n_out, batch, opt, rng):
    """Products under small_gemm multiply-adds run fastnn's direct loops, which keep up to 64
    sums at a time: layers of more units or inputs than that, and one-output layers, train as
    the NumPy loop does."""
    X = rng.standard_normal((32, n_in))
    y = rng.integers(0, n_out, 32) if n_out > 1 else rng.standard_normal((32, 1))
    output = "softmax" if n_out > 1 else "identity"
    kwargs = (dict(momentum=0.9) if opt == "momentum"
              else dict(optimizer="adam", weight_decay=0.01))
    models = []
    for backend in ("cython", "numpy"):
        with fastnn.use_backend(backend):
            m = MLP(n_in, hidden, n_out, output=output, dtype="float64", random_state=0)
            m.fit(X, y, epochs=3, batch_size=batch, lr=0.01, random_state=1, **kwargs)
            models.append(m)
    assert_same_weights(*models, rtol=1e-10, atol=1e-12)


def test_native_and_numpy_backends_agree_float32(rng):
    X, y, _ = _problem("softmax", rng, N=60, dtype=np.float32)
    models = []
    for backend in ("cython", "numpy"):
        with fastnn.use_backend(backend):
            m = MLP(4, 8, 3, output="softmax", dtype="float32", random_state=0)
            m.fit(X, y, epochs=3, batch_size=16, lr=0.01, optimizer="adam", random_state=1)
            models.append(m)
    assert_same_weights(*models, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_same_seed_gives_bit_identical_weights(backend, dtype, opt, rng):
    X, y, _ = _problem("softmax", rng, N=64, dtype=dtype)
    runs = []
    for _ in range(2):
        m = MLP(4, (8, 8), 3, dtype=dtype, random_state=5)
        h = m.fit(X, y, epochs=3, batch_size=10, random_state=7, **OPTIMIZERS[opt])
        runs.append((m, h))
    assert_same_weights(runs[0][0], runs[1][0])
    assert runs[0][1].loss == runs[1][1].loss


def _thread_problem():
    # large enough that BLAS and fastnn's threads take part: a 1024 x 256 tanh layer, as
    # many elements as the tuning table's parallel_elements holds today
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1024, 64))
    y = rng.integers(0, 10, 1024)
    return X, y


def _fit_with_threads(n, dtype, backend, user_api=None):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    X, y = _thread_problem()
    with threadpoolctl.threadpool_limits(limits=n, user_api=user_api), \
            fastnn.use_backend(backend):
        m = MLP(64, (256,), 10, activation="tanh", dtype=dtype, random_state=0)
        m.fit(X, y, epochs=2, batch_size=1024, lr=0.05, optimizer="adam", random_state=0)
        m.fit(X, y, epochs=1, batch_size=100, lr=0.05, random_state=0)
    return m


@pytest.mark.parametrize("user_api", [None, "blas", "openmp"], ids=["all", "blas", "openmp"])
def test_one_and_two_threads_give_bit_identical_weights(backend, dtype, user_api):
    # (OpenBLAS's gemm rounds differently with 1 and 2 threads for some shapes, so this
    # holds only if fit keeps BLAS's thread count out of the result)
    pytest.importorskip("threadpoolctl")
    one = _fit_with_threads(1, dtype, backend, user_api)
    two = _fit_with_threads(2, dtype, backend, user_api)
    assert_same_weights(one, two)
    assert_same_weights(two, _fit_with_threads(2, dtype, backend, user_api))


def test_fit_leaves_the_thread_limits_as_they_were(backend, rng):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    X, y, _ = _problem("softmax", rng, N=30)
    model = MLP(4, 3, 3, random_state=0)
    model.fit(X, y, epochs=1)  # loads every library first

    def counts():
        return sorted((i["filepath"], i["num_threads"]) for i in threadpoolctl.threadpool_info())

    before = counts()
    model.fit(X, y, epochs=1)
    assert counts() == before
    with threadpoolctl.threadpool_limits(limits=1):
        inside = counts()
        model.fit(X, y, epochs=1)
        assert counts() == inside
    assert counts() == before


# ---------------------------------------------------------------------------------------
# divergence
# ---------------------------------------------------------------------------------------


def _regression(rng, N=40):
    X = rng.standard_normal((N, 3))
    return X, 100 * X[:, 0] + 10


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to inf
@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
def test_divergence_raises_and_keeps_the_previous_epoch(backend, opt, rng):
    X, y = _regression(rng)
    kwargs = {"sgd": {}, "momentum": dict(momentum=0.9), "adam": dict(optimizer="adam")}[opt]
    big = 1e100 if opt == "adam" else 1e6  # (Adam's steps are at most about lr)
    schedule = (lambda e: 1e-4 if e < 2 else big)  # two good epochs, then a huge lr
    model = MLP(3, 5, 1, output="identity", dtype="float64", random_state=0)
    with pytest.raises(FloatingPointError, match="epoch 3"):
        model.fit(X, y, epochs=5, batch_size=8, random_state=3, lr_schedule=schedule, **kwargs)
    assert all(np.isfinite(A).all() for A in weights(model))
    # exactly the weights after epoch 2: a fit that stops there
    ref = MLP(3, 5, 1, output="identity", dtype="float64", random_state=0)
    ref.fit(X, y, epochs=2, batch_size=8, random_state=3, lr=1e-4, **kwargs)
    assert_same_weights(model, ref)
    assert len(model.history_.loss) == 2  # the finished epochs are in the history
    # the optimizer state is that of epoch 2 too
    for k in range(2):
        for s, s_ref in zip(model.optimizer_state_["state"][k], ref.optimizer_state_["state"][k]):
            if s_ref is None:
                assert s is None
            else:
                np.testing.assert_array_equal(s[0], s_ref[0])
                np.testing.assert_array_equal(s[1], s_ref[1])
    # the model is usable afterwards
    model.fit(X, y, epochs=1, lr=1e-4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to inf
def test_divergence_restores_the_step_count(backend, rng):
    X, y = _regression(rng)
    model = MLP(3, 5, 1, output="identity", dtype="float64", random_state=0)
    with pytest.raises(FloatingPointError):
        model.fit(X, y, epochs=5, batch_size=8, random_state=3, optimizer="adam",
                  lr_schedule=lambda e: 1e-4 if e < 2 else 1e100)
    # the step count is that of the kept weights and moments: two epochs of 5 batches, so
    # that a warm_start fit continues with the right bias correction
    assert model.optimizer_state_["t"] == 2 * 5


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to inf
def test_divergence_in_the_first_epoch(backend, rng):
    X, y = _regression(rng)
    model = MLP(3, 5, 1, output="identity", dtype="float64", random_state=0)
    before = weights(model)
    with pytest.raises(FloatingPointError, match=r"epoch 1 of 3"):
        model.fit(X, y, epochs=3, batch_size=4, lr=1e6)
    assert_same_weights(before, model)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to inf
def test_divergence_in_the_last_update_is_detected(backend, rng):
    X, y = _regression(rng)
    model = MLP(3, 5, 1, output="identity", dtype="float32", random_state=0)
    before = weights(model)
    # one batch, one update that overflows the float32 weights: no later loss sees it
    with pytest.raises(FloatingPointError, match="epoch 1 of 1"):
        model.fit(X, y, epochs=1, batch_size=len(X), lr=1e38)
    assert_same_weights(before, model)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to inf
def test_fit_rejects_non_finite_X(backend, rng):
    X, y = _regression(rng)
    X[3, 1] = np.nan
    model = MLP(3, 5, 1, output="identity", random_state=0)
    with pytest.raises(ValueError, match="X"):
        model.fit(X, y, epochs=1)


# ---------------------------------------------------------------------------------------
# bad arguments
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(epochs=0), ValueError, "epochs"),
    (dict(epochs=2.5), TypeError, "epochs"),
    (dict(batch_size=-1), ValueError, "batch_size"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(lr=0), ValueError, "lr"),
    (dict(lr=-0.1), ValueError, "lr"),
    (dict(lr=float("nan")), TypeError, "lr"),
    (dict(lr="0.1"), TypeError, "lr"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(momentum=-0.5), ValueError, "momentum"),
    (dict(nesterov="yes"), TypeError, "nesterov"),
    (dict(weight_decay=-1.0), ValueError, "weight_decay"),
    (dict(shuffle=1), TypeError, "shuffle"),
    (dict(sample_weight=np.ones(7)), ValueError, "sample_weight"),
    (dict(sample_weight=-np.ones(20)), ValueError, "sample_weight"),
    (dict(sample_weight=np.full(20, np.inf)), ValueError, "sample_weight"),
    (dict(sample_weight=np.ones((20, 2))), ValueError, "sample_weight"),
    (dict(validation_data=(np.ones((3, 4)),)), TypeError, "validation_data"),
    (dict(validation_data=(np.ones((3, 5)), [0, 1, 2])), ValueError, "X_val"),
    (dict(validation_data=(np.ones((3, 4)), [0, 1, 3])), ValueError, "y_val"),
    (dict(early_stopping=True), ValueError, "validation_data"),
    (dict(patience=0), ValueError, "patience"),
    (dict(lr_schedule="step"), ValueError, "lr_schedule"),
    (dict(beta1=1.0), ValueError, "beta1"),
    (dict(beta2=-0.1), ValueError, "beta2"),
    (dict(eps=0.0), ValueError, "eps"),
    (dict(verbose="no"), TypeError, "verbose"),
    (dict(warm_start=None), TypeError, "warm_start"),
])
def test_bad_fit_arguments(backend, kwargs, exc, name, rng):
    X = rng.standard_normal((20, 4))
    y = rng.integers(0, 3, 20)
    model = MLP(4, 3, 3, random_state=0)
    before = weights(model)
    with pytest.raises(exc, match=name):
        model.fit(X, y, **{"epochs": 2, **kwargs})
    assert_same_weights(before, model)  # nothing was trained


def test_fit_checks_again_what_differs_from_the_last_fit(backend, rng):
    # a fit keeps the checked values of its scalar arguments for a next fit given the very
    # same objects: any other object is checked again, and a NumPy scalar is never kept
    from fastnn import training
    X, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    model = MLP(4, 3, 3, random_state=0)
    good = {"epochs": 1, "lr": 0.1, "momentum": 0.5, "nesterov": True}
    model.fit(X, y, **good)
    model.fit(X, y, **good)  # (the kept checks)
    before = weights(model)
    for kwargs, exc in [(dict(lr=-0.1), ValueError), (dict(nesterov=1), TypeError),
                        (dict(epochs=True), TypeError), (dict(lr=np.float64("nan")), TypeError),
                        (dict(momentum=1.0), ValueError), (dict(lr_schedule="step"), ValueError),
                        (dict(callback=3), TypeError)]:
        with pytest.raises(exc):
            model.fit(X, y, **{**good, **kwargs})
        assert_same_weights(before, model)  # nothing was trained
    lr = np.float64(0.1)
    model.fit(X, y, epochs=1, lr=lr)
    assert all(value is not lr for value in training._LAST_SETTINGS[0])
    model.fit(X, y, epochs=1, lr=0.1)
    assert any(value is good["lr"] for value in training._LAST_SETTINGS[0])
    # a callback (and what it holds) is not kept alive by the module after its fit
    model.fit(X, y, epochs=1, lr=0.1, callback=lambda epoch, history: None)
    assert all(not callable(value) for value in training._LAST_SETTINGS[0])


@pytest.mark.parametrize("output, y, match", [
    ("softmax", [0, 1, 3] * 5, "0..2"),
    ("softmax", [0, 1, -1] * 5, "y"),
    ("softmax", [0, 1] * 5, "y"),
    ("sigmoid", [0, 1, 2] * 5, "binary"),
    ("identity", [0.0, np.nan, 1.0] * 5, "y"),
])
def test_bad_fit_targets(backend, output, y, match, rng):
    model = MLP(4, 3, 3 if output == "softmax" else 1, output=output, random_state=0)
    with pytest.raises(ValueError, match=match):
        model.fit(rng.standard_normal((15, 4)), y, epochs=1)


def test_bad_fit_inputs(backend, rng):
    model = MLP(4, 3, 3, random_state=0)
    with pytest.raises(ValueError, match="X"):
        model.fit(rng.standard_normal((15, 5)), [0] * 15, epochs=1)
    with pytest.raises(ValueError, match="y"):
        model.fit(rng.standard_normal((15, 4)), [0] * 14, epochs=1)


# ---------------------------------------------------------------------------------------
# verbose, warm start, History
# ---------------------------------------------------------------------------------------


def test_verbose_prints_one_line_per_epoch(backend, capsys, rng):
    X, y, _ = _problem("softmax", rng, N=30)
    model = MLP(4, 3, 3, random_state=0)
    model.fit(X, y, epochs=3, verbose=True, validation_data=(X, y))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines, 1):
        assert "epoch" in line and "loss" in line and "samples/s" in line
        assert f"{i}/3" in line
        assert "val_loss" in line
    model.fit(X, y, epochs=2)
    assert capsys.readouterr().out == ""  # quiet by default


def test_verbose_line_labels_the_epoch_time_and_the_elapsed_time(capsys, rng):
    X, y, _ = _problem("softmax", rng, N=30)
    history = MLP(4, 3, 3, random_state=0).fit(X, y, epochs=2, verbose=1)
    lines = capsys.readouterr().out.strip().splitlines()
    elapsed = []

    def parse(text):  # "1.234s", "4.12ms", "87.3us"
        for unit, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
            if text.endswith(unit):
                return float(text[:-len(unit)]) * scale

    for line, seconds in zip(lines, history.seconds):
        fields = line.split()
        epoch_time = parse(fields[fields.index("epoch_time") + 1])
        elapsed.append(parse(fields[fields.index("elapsed") + 1]))
        assert epoch_time == pytest.approx(seconds, rel=5e-3)  # the epoch's own, 3 figures
    assert elapsed[1] >= elapsed[0]


@pytest.mark.parametrize("tqdm", ["plain", "tqdm"])
def test_verbose_2_shows_a_bar_within_each_epoch(backend, capsys, monkeypatch, rng, tqdm):
    """The bar is fed from the loop's periodic checks (the native loop's stretches, the NumPy
    loop's batches): a line rewritten in place on stderr, or tqdm's where installed; the
    epoch lines on stdout are verbose=1's."""
    if tqdm == "plain":
        monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # (import fails: not installed)
    else:
        pytest.importorskip("tqdm")
    from fastnn import _progress

    seen = []
    real_call = _progress.EpochBar.__call__
    monkeypatch.setattr(_progress.EpochBar, "__call__",
                        lambda self, done: (seen.append(done), real_call(self, done)))
    X, y, _ = _problem("softmax", rng, N=300)
    MLP(4, 3, 3, random_state=0).fit(X, y, epochs=2, batch_size=10, verbose=2)
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 2 and "epoch_time" in captured.out
    # per epoch: rising to all 300 samples (the NumPy loop reports each of its 30 batches;
    # the native loop each stretch of batches, ~10 ms of work, here the whole epoch)
    assert seen.count(300) == 2 and seen[-1] == 300
    first = seen[:seen.index(300) + 1]
    assert first == sorted(first) and (len(first) == 30 if backend == "numpy" else True)
    assert "epoch 1/2" in captured.err and "epoch 2/2" in captured.err
    if tqdm == "plain":
        assert "300/300 samples" in captured.err and "\r" in captured.err


def test_verbose_is_0_1_2_or_a_bool(rng):
    X, y, _ = _problem("softmax", rng, N=10)
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 2"):
        MLP(4, 3, 3).fit(X, y, epochs=1, verbose=3)
    with pytest.raises(TypeError, match="verbose must be 0, 1, 2 or a bool"):
        MLP(4, 3, 3).fit(X, y, epochs=1, verbose=1.5)


@pytest.mark.parametrize("opt", ["adam", "momentum"])
def test_warm_start_continues_the_optimizer(backend, opt, rng):
    X, y, _ = _problem("softmax", rng, N=40)
    kwargs = dict(optimizer="adam", lr=0.01) if opt == "adam" else dict(momentum=0.9, lr=0.02)
    steps = 40 // 8
    # 2 + 2 epochs with warm_start = 4 epochs in one go (shuffle=False: the same batches)
    a = MLP(4, 6, 3, dtype="float64", random_state=0)
    a.fit(X, y, epochs=2, batch_size=8, shuffle=False, **kwargs)
    assert a.optimizer_state_["t"] == 2 * steps
    a.fit(X, y, epochs=2, batch_size=8, shuffle=False, warm_start=True, **kwargs)
    assert a.optimizer_state_["t"] == 4 * steps
    b = MLP(4, 6, 3, dtype="float64", random_state=0)
    b.fit(X, y, epochs=4, batch_size=8, shuffle=False, **kwargs)
    assert_same_weights(a, b, rtol=1e-12, atol=1e-14)
    # without warm_start the optimizer starts afresh: a different result
    c = MLP(4, 6, 3, dtype="float64", random_state=0)
    c.fit(X, y, epochs=2, batch_size=8, shuffle=False, **kwargs)
    c.fit(X, y, epochs=2, batch_size=8, shuffle=False, **kwargs)
    assert c.optimizer_state_["t"] == 2 * steps
    assert not np.allclose(weights(c)[0], weights(b)[0], rtol=1e-9, atol=0)


def test_warm_start_across_backends(rng):
    X, y, _ = _problem("softmax", rng, N=40)
    model = MLP(4, 6, 3, dtype="float64", random_state=0)
    with fastnn.use_backend("cython"):
        model.fit(X, y, epochs=1, batch_size=8, optimizer="adam")
    with fastnn.use_backend("numpy"):
        model.fit(X, y, epochs=1, batch_size=8, optimizer="adam", warm_start=True)
    assert model.optimizer_state_["t"] == 10


def test_history_repr():
    h = History("accuracy")
    assert repr(h) == "History(0 epochs)"
    assert h.epochs == 0 and h.best_epoch is None and not h.stopped_early
    h.loss.extend([0.9, 0.123456789])
    assert repr(h) == "History(2 epochs, last loss 0.123457)"


def test_history_of_a_fit(backend, rng):
    X, y, _ = _problem("softmax", rng, N=30)
    h = MLP(4, 3, 3, random_state=0).fit(X, y, epochs=3)
    assert repr(h).startswith("History(3 epochs, last loss ")
    assert h.metric == "accuracy" and h.best_epoch is None and not h.stopped_early


def test_sequential_without_bias_trains(backend, rng):
    # the notes' section 3 problem 2 model trains too (exp units, alpha^T u, squared loss)
    X = rng.uniform(-1, 1, (60, 2))
    y = 0.5 * np.exp(X[:, 0]) - 0.2 * np.exp(-X[:, 1])
    model = Sequential([Linear(2, 4, "exp", dtype="float64", random_state=0),
                        Linear(4, 1, bias=False, dtype="float64", random_state=1)],
                       loss="squared_error")
    before = model.loss(X, y)
    model.fit(X, y, epochs=30, batch_size=10, lr=0.01, optimizer="adam", random_state=0)
    assert model.layers[1].b is None
    assert model.loss(X, y) < 0.2 * before


# ---------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------


def test_fit_while_the_lock_is_held_raises(backend, rng):
    X, y, _ = _problem("softmax", rng, N=20)
    model = MLP(4, 3, 3, random_state=0)
    before = weights(model)
    assert model._fit_lock.acquire(blocking=False)
    try:
        with pytest.raises(RuntimeError, match="already running"):
            model.fit(X, y, epochs=1)
    finally:
        model._fit_lock.release()
    assert_same_weights(before, model)
    model.fit(X, y, epochs=1)  # released: fits again
    # a fit that fails releases the lock too
    with pytest.raises(ValueError):
        model.fit(X, y, epochs=0)
    model.fit(X, y, epochs=1)


def test_two_threads_fitting_one_model(backend, rng):
    # thread A's fit pauses inside its first epoch (its lr_schedule waits), thread B calls
    # fit on the same model meanwhile and must get RuntimeError; then A finishes normally
    X, y, _ = _problem("softmax", rng, N=40)
    model = MLP(4, 5, 3, random_state=0)
    inside, b_done = threading.Event(), threading.Event()
    results = {}

    def schedule(epoch):
        if epoch == 0:
            inside.set()
            assert b_done.wait(10)
        return 0.05

    def thread_a():
        try:
            results["a"] = model.fit(X, y, epochs=2, lr_schedule=schedule)
        except BaseException as exc:  # pragma: no cover - reported below
            results["a"] = exc

    def thread_b():
        assert inside.wait(10)
        try:
            model.fit(X, y, epochs=1)
            results["b"] = None
        except BaseException as exc:
            results["b"] = exc
        finally:
            b_done.set()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert isinstance(results["b"], RuntimeError), results
    assert isinstance(results["a"], History) and results["a"].epochs == 2


def test_two_models_fit_in_two_threads(backend, rng):
    # separate models are independent: concurrent fits give the sequential fits' weights
    X, y, _ = _problem("softmax", rng, N=200)
    seq = []
    for seed in (0, 1):
        m = MLP(4, 16, 3, dtype="float64", random_state=seed)
        m.fit(X, y, epochs=3, batch_size=8, random_state=seed)
        seq.append(m)
    par = [MLP(4, 16, 3, dtype="float64", random_state=seed) for seed in (0, 1)]
    barrier = threading.Barrier(2)

    def run(i):
        barrier.wait()
        par[i].fit(X, y, epochs=3, batch_size=8, random_state=i)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for a, b in zip(seq, par):
        assert_same_weights(a, b)


def test_overlapping_fits_restore_the_blas_thread_count(backend, rng):
    X, y, _ = _problem("softmax", rng, N=20)
    a, b = MLP(4, 3, 3, random_state=0), MLP(4, 3, 3, random_state=1)
    a.fit(X, y, epochs=1)  # load every library first
    _set_blas_threads({lc.filepath: 2 for lc in _blas_controllers()})
    before = blas_threads()
    if not before or before != [2] * len(before):
        pytest.skip("needs BLAS with 2 threads")
    a_inside, b_inside, a_done = threading.Event(), threading.Event(), threading.Event()
    seen, errors = {}, []

    # the order: A enters its fit; B enters its fit; A leaves; B leaves
    def schedule_a(epoch):
        a_inside.set()
        assert b_inside.wait(10)
        return 0.01

    def schedule_b(epoch):
        b_inside.set()
        assert a_done.wait(10)
        seen["b after a"] = blas_threads()
        return 0.01

    def run(model, schedule, wait=None, done=None):
        try:
            if wait is not None:
                assert wait.wait(10)
            model.fit(X, y, epochs=1, lr_schedule=schedule)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            if done is not None:
                done.set()

    threads = [threading.Thread(target=run, args=(a, schedule_a, None, a_done)),
               threading.Thread(target=run, args=(b, schedule_b, a_inside))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert blas_threads() == before  # the process's BLAS threads are as they were
    assert all(n == 1 for n in seen["b after a"])  # B's fit stayed on one BLAS thread


def test_fit_in_a_worker_thread_is_deterministic():
    # (the native loop: the numpy backend's products of these shapes happen to round alike)
    threadpoolctl = pytest.importorskip("threadpoolctl")
    X, y = _thread_problem()
    results = []

    def run():
        m = MLP(64, (256,), 10, activation="tanh", dtype="float64", random_state=0)
        m.fit(X, y, epochs=1, batch_size=100, lr=0.05, random_state=0)
        results.append(m)

    for n in (1, 2):
        with threadpoolctl.threadpool_limits(limits=n, user_api="blas"):
            t = threading.Thread(target=run)
            t.start()
            t.join(60)
    assert_same_weights(*results)


# ---------------------------------------------------------------------------------------
# the messages name what the user passed
# ---------------------------------------------------------------------------------------


def test_a_1d_X_in_fit_is_reported_as_passed(backend, rng):
    X, y, K = _problem("softmax", rng, N=100)
    with fastnn.use_backend(backend), \
            pytest.raises(ValueError, match=r"1-D array of shape \(100,\).*reshape\(-1, 1\)"):
        MLP(4, 5, K).fit(X[:, 0], y)


# ---------------------------------------------------------------------------------------
# a warm start continues only a complete optimizer state
# ---------------------------------------------------------------------------------------


def _adam_fitted(rng, momentum=0.0, optimizer="adam"):
    X, y, K = _problem("softmax", rng, N=64)
    model = MLP(4, 6, K, random_state=0)
    model.fit(X, y, epochs=2, optimizer=optimizer, momentum=momentum, random_state=0)
    return model, X, y


DAMAGES = {
    "second moment missing": lambda st: st["state"][1].__setitem__(1, None),
    "first moment missing": lambda st: st["state"][0].__setitem__(0, None),
    "bias moment missing": lambda st: st["state"][1].__setitem__(
        0, (st["state"][1][0][0], None)),
    "wrong shape": lambda st: st["state"][0].__setitem__(
        0, (np.zeros((2, 2), np.float32), st["state"][0][0][1])),
    "wrong dtype": lambda st: st["state"][0].__setitem__(
        0, (st["state"][0][0][0].astype(np.float64), st["state"][0][0][1])),
    "not an array": lambda st: st["state"][0].__setitem__(0, ([[0.0]], None)),
    "one list short": lambda st: st["state"][0].pop(),
    "negative second moment": lambda st: st["state"][1][0][0].__setitem__((0, 0), -1.0),
    "NaN moment": lambda st: st["state"][0][1][1].__setitem__(0, np.nan),
    "moment is a weight": lambda st: None,  # set below (needs the model)
    "bad step count": lambda st: st.__setitem__("t", -3),
    "not a pair": lambda st: st.__setitem__("state", ([],)),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_warm_start_with_a_damaged_optimizer_state_starts_afresh(backend, damage, rng):
    model, X, y = _adam_fitted(rng)
    if damage == "moment is a weight":
        model.optimizer_state_["state"][0][0] = (model.layers[0].W, model.layers[0].b)
    else:
        DAMAGES[damage](model.optimizer_state_)
    fresh = MLP(4, 6, 3, random_state=0)
    for layer, twin in zip(fresh.layers, model.layers):
        layer.W[...], layer.b[...] = twin.W, twin.b
    with fastnn.use_backend(backend):
        with pytest.warns(RuntimeWarning, match="cannot be continued"):
            model.fit(X, y, epochs=2, optimizer="adam", random_state=1, warm_start=True)
        fresh.fit(X, y, epochs=2, optimizer="adam", random_state=1)  # no warm start
    assert model.optimizer_state_["t"] == fresh.optimizer_state_["t"]
    for (W, b), (W2, b2) in zip(model.parameters(), fresh.parameters()):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)


def test_momentum_state_without_its_velocity_starts_afresh(backend, rng):
    model, X, y = _adam_fitted(rng, momentum=0.9, optimizer="sgd")
    model.optimizer_state_["state"][0][1] = None
    with fastnn.use_backend(backend), pytest.warns(RuntimeWarning, match="velocity"):
        model.fit(X, y, epochs=1, momentum=0.9, warm_start=True)
    assert model.optimizer_state_["t"] == 2  # one epoch of two batches, from a new state


def test_warm_start_with_another_optimizer_starts_afresh_quietly(backend, rng, recwarn):
    model, X, y = _adam_fitted(rng)
    with fastnn.use_backend(backend):
        model.fit(X, y, epochs=1, optimizer="sgd", warm_start=True)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert model.optimizer_state_["t"] == 2


# ---------------------------------------------------------------------------------------
# a callback may replace the layers' arrays or change their activations
# ---------------------------------------------------------------------------------------


def _clip_callback(model):
    def callback(epoch, history):
        for layer in model.layers:
            layer.W = np.clip(layer.W, -0.3, 0.3)  # a new array each time
            layer.b = layer.b.astype(np.float64)   # and one of another dtype (converted)
        if epoch == 1:
            model.layers[0].activation = "tanh"
    return callback


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_callback_that_replaces_arrays_trains_the_same_on_both_backends(dtype, rng):
    X, y, K = _problem("softmax", rng, N=96)
    results = []
    for backend in ("cython", "numpy"):
        model = MLP(4, 16, K, dtype=dtype, random_state=0)
        with fastnn.use_backend(backend):
            history = model.fit(X, y, epochs=6, lr=0.2, momentum=0.5, random_state=0,
                                callback=_clip_callback(model))
        results.append((model, history))
    (a, ha), (b, hb) = results
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-4 if dtype == "float32" else 1e-10)
    assert a.layers[0].activation == b.layers[0].activation == "tanh"
    for (W, bias), (W2, bias2) in zip(a.parameters(), b.parameters()):
        assert W.dtype == W2.dtype == np.dtype(dtype)
        np.testing.assert_allclose(W, W2, atol=1e-5 if dtype == "float32" else 1e-12)
        np.testing.assert_allclose(bias, bias2, atol=1e-5 if dtype == "float32" else 1e-12)
    # trained after each replacement: not the clipped weights of the first callback
    assert np.abs(a.layers[0].W).max() <= 0.3 + 0.2 * 10  # (bounded) and moved on
    assert ha.loss[-1] < ha.loss[1]


def test_a_callback_may_not_change_the_architecture(backend, rng):
    X, y, K = _problem("softmax", rng, N=32)
    model = MLP(4, 5, K, random_state=0)

    def grow(epoch, history):
        model.layers[0].W = np.zeros((6, 4), np.float32)

    with fastnn.use_backend(backend), pytest.raises(ValueError, match="callback changed"):
        model.fit(X, y, epochs=3, callback=grow)


def test_huge_sample_weights_name_the_weights_when_training_diverges(backend, rng):
    X, y, K = _problem("softmax", rng, N=64)
    with fastnn.use_backend(backend), \
            pytest.raises(FloatingPointError, match="sample_weight.*mean here is 1e\\+30"):
        MLP(4, 5, K, random_state=0).fit(X, y, sample_weight=np.full(64, 1e30), lr=0.1)


# ---------------------------------------------------------------------------------------
# fit keeps its native loop (workspaces, transposed copies) on the model and reuses it when
# the next fit has the same shapes and arrays: the results must be those of a new loop, and
# anything that changed in between (an array replaced, an activation, the rule, the data's
# shapes, the optimizer state) must build a new one. A fit of one epoch restores through the
# loop's own copy (guard) instead of a Python copy.
# ---------------------------------------------------------------------------------------


def _kept_loop_data(N=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, 5)), rng.integers(0, 3, N)


def _fresh_copy(model):
    twin = pickle.loads(pickle.dumps(model))  # (drops the kept loop)
    assert twin._fit_loop is None
    return twin


@pytest.mark.parametrize("kwargs", [
    dict(optimizer="sgd", lr=0.1),
    dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(optimizer="adam", lr=0.01),
])
def test_a_kept_loop_gives_what_a_new_loop_gives(backend, dtype, kwargs):
    X, y = _kept_loop_data()
    model = MLP(5, 8, 3, dtype=dtype, random_state=0)
    model.fit(X, y, epochs=2, batch_size=8, random_state=1, **kwargs)
    kept = model._fit_loop
    twin = _fresh_copy(model)
    for m in (model, twin):  # the same next fits: kept loop vs a new one
        m.fit(X, y, epochs=1, batch_size=8, random_state=2, warm_start=True, **kwargs)
        m.fit(X[:24], y[:24], epochs=2, batch_size=8, random_state=3, warm_start=True,
              **kwargs)
    assert model._fit_loop is not None
    for (W, b), (W2, b2) in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)
    # the second fit had other shapes (24 rows): it built a loop of its own
    assert model._fit_loop is not kept


def test_what_changed_between_fits_builds_a_new_loop(backend):
    X, y = _kept_loop_data()
    model = MLP(5, 8, 3, random_state=0)
    model.fit(X, y, epochs=1)
    loop = model._fit_loop
    model.fit(X, y, epochs=1)
    assert model._fit_loop is loop  # same shapes, arrays and rule: kept
    model.layers[0].W = model.layers[0].W.copy()  # an array replaced
    before = model.layers[0].W.copy()
    model.fit(X, y, epochs=1)
    assert model._fit_loop is not loop and not np.array_equal(model.layers[0].W, before)
    loop = model._fit_loop
    model.layers[0].activation = "tanh"
    model.fit(X, y, epochs=1)
    assert model._fit_loop is not loop
    loop = model._fit_loop
    model.fit(X, y, epochs=1, momentum=0.5)  # another rule (and state)
    assert model._fit_loop is not loop
    loop = model._fit_loop
    model.layers[1].W.flags.writeable = False  # (replaced by a writeable copy)
    model.fit(X, y, epochs=1, momentum=0.5)
    assert model._fit_loop is not loop and model.layers[1].W.flags.writeable


def test_a_damaged_kept_state_is_refused_by_its_values(backend):
    X, y = _kept_loop_data()
    model = MLP(5, 8, 3, random_state=0)
    model.fit(X, y, epochs=1, optimizer="adam", lr=0.01)
    model.optimizer_state_["state"][1][0][0][0, 0] = -1.0  # a negative second moment
    with pytest.warns(RuntimeWarning, match="second moment of layer 0's W holds negative"):
        model.fit(X, y, epochs=1, optimizer="adam", lr=0.01, warm_start=True)
    assert model.optimizer_state_["t"] == 2  # (a new state: 40 / 32 -> 2 steps)


def test_a_diverging_one_epoch_fit_keeps_the_weights(backend, dtype):
    X, _ = _kept_loop_data()
    model = MLP(5, 8, 2, output="identity", dtype=dtype, random_state=0)
    before = [A.copy() for pair in model.parameters() for A in pair]
    big = np.dtype(dtype) == np.float64
    y = np.full((40, 2), 1e100 if big else 1e18)
    with pytest.raises(FloatingPointError, match="diverged in epoch 1 of 1"):
        model.fit(X, y, epochs=1, lr=1e300 if big else 1e30, momentum=0.9)
    for A, A0 in zip([A for pair in model.parameters() for A in pair], before):
        np.testing.assert_array_equal(A, A0)
    assert model.optimizer_state_["t"] == 0


def test_ctrl_c_in_a_one_epoch_fit_puts_the_weights_back(monkeypatch):
    """The loop's own copy (guard) restores when Ctrl-C leaves the epoch: here the progress
    callback of the native loop raises it, as a signal noticed there would."""
    X, y = _kept_loop_data(N=400)
    model = MLP(5, 8, 3, random_state=0)
    before = [A.copy() for pair in model.parameters() for A in pair]
    from fastnn import _progress

    def interrupt(self, done):
        raise KeyboardInterrupt

    monkeypatch.setattr(_progress.EpochBar, "__call__", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=1, batch_size=4, verbose=2)
    for A, A0 in zip([A for pair in model.parameters() for A in pair], before):
        np.testing.assert_array_equal(A, A0)
    fastnn.MLP(5, 8, 3).fit(X, y, epochs=1)  # (fastnn still works afterwards)


# ---------------------------------------------------------------------------------------
# The native loop's split step (fastnn/_train.pyx): a step of enough work is cut into fixed
# parts (blocks of the batch's rows, then blocks of each layer's units) that fastnn's threads
# share; a team whose threads wait long at the barriers disbands for the rest of a stretch.
# The contract: the weights do not depend on how many threads ran the parts (bit for bit),
# they agree with the Python loop of the NumPy reference backend, and the choice of threads
# behaves as documented. Sizes that must reach one side of a threshold of the tuning table
# (fastnn/_tuning.pyx) are computed from its values, which no test asserts. Every
# architecture below has a step of two parts or more on batches of 32 rows: the first test
# checks that its two-thread fits ran a team.
# ---------------------------------------------------------------------------------------

TUNING = tuning()

TEAM_OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", lr=0.05),
    "momentum": dict(optimizer="sgd", momentum=0.9, lr=0.01),
    "nesterov+decay": dict(optimizer="sgd", momentum=0.9, nesterov=True, lr=0.01,
                           weight_decay=1e-3),
    "adam": dict(optimizer="adam", lr=0.003),
}


def _team_problem(kind, N, n_in, n_out, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n_in)).astype(dtype)
    if kind == "softmax":
        y = rng.integers(0, n_out, N)
    elif kind == "sigmoid":  # multi-label
        y = (rng.random((N, n_out)) < 0.4).astype(dtype)
    else:
        y = rng.standard_normal((N, n_out)).astype(dtype)
    return X, y


def _team_model(arch, dtype):
    n_in, hidden, n_out, act, output = arch
    return MLP(n_in, hidden, n_out, activation=act, output=output, dtype=dtype,
               random_state=1)


ARCHS = {
    # the digits fit's shape (64-128-10, relu, softmax)
    "digits": (64, (128,), 10, "relu", "softmax"),
    # deeper, an output layer with more units than parts, sigmoid outputs (multi-label)
    "deep multilabel": (24, (96, 80, 64), 12, "tanh", "sigmoid"),
    # regression with several outputs, exp-based activations
    "regression": (40, (150, 60), 3, "sigmoid", "identity"),
}


def _teams_possible():
    return fastnn.get_num_threads() > 1 and (__import__("os").cpu_count() or 1) > 1


def _epoch_work(arch, N):
    """Multiply-adds of an epoch of N rows through ``arch`` (3 a weight a row: the forward,
    dU and dW), as the tuning table's team_epoch counts them."""
    sizes = [arch[0], *arch[1], arch[2]]
    return 3 * N * sum(k * m for k, m in zip(sizes[:-1], sizes[1:]))


def _team_fit(arch, dtype, threads, batch_size, opt, N=401, sample_weight=False, epochs=3,
              backend="cython"):
    n_in, _, n_out, _, output = arch
    X, y = _team_problem(output, N, n_in, n_out, dtype)
    sw = np.random.default_rng(3).uniform(0.2, 2.0, N) if sample_weight else None
    model = _team_model(arch, dtype)
    with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"), \
            fastnn.use_backend(backend):
        history = model.fit(X, y, epochs=epochs, batch_size=batch_size, sample_weight=sw,
                            random_state=2, **TEAM_OPTIMIZERS[opt])
    return model, history


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", list(TEAM_OPTIMIZERS))
@pytest.mark.parametrize("arch", list(ARCHS))
def test_one_and_two_threads_give_the_same_bits(trainers, arch, opt, dtype):
    # N = 401 with batches of 32: the last batch (17 rows) splits unevenly
    one, h1 = _team_fit(ARCHS[arch], dtype, 1, 32, opt)
    two, h2 = _team_fit(ARCHS[arch], dtype, 2, 32, opt)
    if _teams_possible():  # (else nothing was shared: the test would compare one with one)
        assert trainers[-1].team_stretches + trainers[-1].disbanded >= 1, \
            "no team ran: resize the architectures for the tuning table"
    for A, B in zip(weights(one), weights(two)):
        np.testing.assert_array_equal(A, B)
    assert h1.loss == h2.loss


@pytest.mark.parametrize("batch_size", [1, 2 * TUNING["part_rows"] + 1, 203])
def test_batches_smaller_than_the_parts_and_the_whole_set(batch_size):
    # one row per batch (one part), 2 part_rows + 1 rows (two parts of unequal rows),
    # everything in one batch
    arch = (512, (160,), 10, "relu", "softmax")
    N = max(41, batch_size + 8) if batch_size < 203 else 203
    one, _ = _team_fit(arch, "float64", 1, batch_size, "momentum", N=N, epochs=2)
    two, _ = _team_fit(arch, "float64", 2, batch_size, "momentum", N=N, epochs=2)
    for A, B in zip(weights(one), weights(two)):
        np.testing.assert_array_equal(A, B)


@pytest.mark.parametrize("sample_weight", [False, True])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_the_split_step_agrees_with_the_reference_loop(arch, opt, sample_weight):
    native, hn = _team_fit(ARCHS[arch], "float64", 2, 32, opt, sample_weight=sample_weight)
    ref, hr = _team_fit(ARCHS[arch], "float64", 2, 32, opt, sample_weight=sample_weight,
                        backend="numpy")
    for A, B in zip(weights(native), weights(ref)):
        np.testing.assert_allclose(A, B, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hn.loss, hr.loss, rtol=1e-10)


def test_a_layer_without_bias_in_the_split_step():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 60)), rng.standard_normal((300, 1))  # a team-sized epoch
    fits = []
    for backend, threads in (("cython", 1), ("cython", 2), ("numpy", 2)):
        net = Sequential([Linear(60, 200, "tanh", dtype="float64", random_state=0),
                          Linear(200, 1, bias=False, dtype="float64", random_state=1)],
                         loss="squared_error")
        with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"), \
                fastnn.use_backend(backend):
            net.fit(X, y, epochs=2, batch_size=25, lr=0.01, momentum=0.5, random_state=0)
        fits.append(weights(net))
    for A, B in zip(fits[0], fits[1]):
        np.testing.assert_array_equal(A, B)
    for A, B in zip(fits[0], fits[2]):
        np.testing.assert_allclose(A, B, rtol=1e-9, atol=1e-12)


# A network of one hidden layer on dense rows splits its step by hidden units (_units_steps
# in _train.pyx): two parts from 2 part_units hidden units, four from 4 many_part_units
UNITS_SPLIT = {  # parts: (n_in, hidden, batch), each batch's product over 2 (4) part_work
    2: (64, max(128, 2 * TUNING["part_units"]), 32),
    4: (16, max(1024, 4 * TUNING["many_part_units"]), 64),
}


def _units_problem(output, N, n_in, n_out, dtype):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((N, n_in)).astype(dtype)
    if output == "softmax":
        y = rng.integers(0, n_out, N)
    elif output == "sigmoid":  # multi-label
        y = (rng.random((N, n_out)) < 0.4).astype(dtype)
    elif output == "exp":  # counts (the Poisson loss)
        y = rng.poisson(1.5, (N, n_out)).astype(dtype)
    else:
        y = rng.standard_normal((N, n_out)).astype(dtype)
    return X, y


def _units_fit(parts, output, opt, dtype, threads, backend="cython", X=None, y=None,
               N=401, act="relu", shuffle=True):
    # N rows: the last batch is smaller than the others; an epoch's work above team_epoch
    n_in, hidden, batch = UNITS_SPLIT[parts]
    if X is None:
        X, y = _units_problem(output, N, n_in, 3, dtype)
    model = MLP(n_in, hidden, 3, activation=act, output=output, dtype=dtype, random_state=1)
    with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"), \
            fastnn.use_backend(backend):
        history = model.fit(X, y, epochs=2, batch_size=batch, random_state=2, shuffle=shuffle,
                            sample_weight=np.linspace(0.5, 2, len(X)) if opt == "adam" else None,
                            **{**TEAM_OPTIMIZERS[opt], "lr": 1e-3})
    return model, history


@pytest.mark.parametrize("parts", list(UNITS_SPLIT))
def test_a_one_hidden_layer_step_is_split_by_units(trainers, parts):
    _units_fit(parts, "softmax", "momentum", "float32", 2)
    assert trainers[-1].by_units == parts
    _team_fit(ARCHS["deep multilabel"], "float32", 2, 32, "sgd")  # deeper: by rows and units
    assert trainers[-1].by_units == 0


@pytest.mark.parametrize("opt", list(TEAM_OPTIMIZERS))
@pytest.mark.parametrize("output, act", [("softmax", "relu"), ("sigmoid", "tanh"),
                                         ("identity", "sigmoid"), ("exp", "tanh")])
@pytest.mark.parametrize("parts", list(UNITS_SPLIT))
def test_the_step_split_by_units_agrees_with_the_reference_loop(trainers, parts, output, act,
                                                                opt):
    # every output map and optimizer (adam: with sample weights), float64: the reference
    # loop's weights, and the same bits on 1, 2 and 3 threads (3: more threads than parts
    # or an uneven share)
    fits = []
    for threads in (1, 2, 3):
        fits.append(_units_fit(parts, output, opt, "float64", threads, act=act))
        if threads > 1 and _teams_possible():
            assert trainers[-1].team_stretches + trainers[-1].disbanded >= 1
    ref, h_ref = _units_fit(parts, output, opt, "float64", 2, backend="numpy", act=act)
    for model, history in fits[1:]:
        for A, B in zip(weights(fits[0][0]), weights(model)):
            np.testing.assert_array_equal(A, B)
        assert history.loss == fits[0][1].loss
    for A, B in zip(weights(fits[0][0]), weights(ref)):
        np.testing.assert_allclose(A, B, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fits[0][1].loss, h_ref.loss, rtol=1e-10)


def test_a_loops_first_stretch_is_not_timed():
    # the first stretch of a loop (its team's, probe_steps steps) pays its cold start and
    # does not decide between the team and one thread; the next stretch times the team
    if not _teams_possible():
        pytest.skip("needs two threads")
    n_in, hidden, batch = UNITS_SPLIT[4]
    N = batch * TUNING["probe_steps"]  # one stretch an epoch
    per_row = 3 * (n_in * hidden + hidden * 3)
    if N * per_row < TUNING["team_epoch"]:
        pytest.skip("an epoch too small for a team with this tuning table")
    X, y = _units_problem("softmax", N, n_in, 3, "float32")
    model = MLP(n_in, hidden, 3, random_state=0)
    with threadpoolctl.threadpool_limits(limits=2, user_api="openmp"):
        model.fit(X, y, epochs=1, batch_size=batch, shuffle=False)
        runner = model._fit_loop.runner
        assert runner.team_stretches + runner.disbanded == 1
        assert runner.team_speed == runner.alone_speed == 0
        model.fit(X, y, epochs=1, batch_size=batch, shuffle=False)
        assert model._fit_loop.runner is runner
        assert runner.team_stretches + runner.disbanded == 2
        assert runner.team_speed > 0 and runner.alone_speed == 0


def test_the_step_split_by_units_converts_rows_as_it_gathers_them():
    # a float64 X in Fortran order trains a float32 model as its float32 copy does
    n_in = UNITS_SPLIT[2][0]
    X, y = _units_problem("softmax", 401, n_in, 3, "float64")
    X = np.asfortranarray(X)
    fits = [_units_fit(2, "softmax", "adam", "float32", 2, X=A, y=y)[0]
            for A in (X, np.ascontiguousarray(X, dtype=np.float32))]
    for A, B in zip(weights(fits[0]), weights(fits[1])):
        np.testing.assert_array_equal(A, B)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_step_split_by_units_reads_unshuffled_batches_in_place(threads):
    # without shuffling, the batches of a C X of the model's dtype are runs of its rows, read
    # where they lie; those of a Fortran copy are gathered (converted) a batch at a time:
    # the same bits
    X, y = _units_problem("softmax", 401, UNITS_SPLIT[2][0], 3, "float32")
    fits = [_units_fit(2, "softmax", "momentum", "float32", threads, X=A, y=y,
                       shuffle=False)[0] for A in (X, np.asfortranarray(X))]
    for A, B in zip(weights(fits[0]), weights(fits[1])):
        np.testing.assert_array_equal(A, B)


@pytest.fixture
def trainers(monkeypatch):
    """The native Trainers that fits create (to look at how their stretches ran); a test may
    set ``disband_after`` to make each new Trainer's team disband after that many steps."""
    class Made(list):
        spy = None

    made = Made()
    real = _kernels.EpochRunner

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        if getattr(spy, "disband_after", None) is not None:
            from fastnn import _testing  # (the checked build's hooks)

            _testing.disband_after(made[-1], spy.disband_after)
        return made[-1]

    monkeypatch.setattr(_kernels, "EpochRunner", spy)
    made.spy = spy
    yield made


# (a team's first stretch times it: probe_steps steps)
@pytest.mark.parametrize("at", sorted({1, max(1, TUNING["probe_steps"] // 2),
                                       max(1, TUNING["probe_steps"] - 1)}))
@pytest.mark.parametrize("arch", ["digits", "deep multilabel"])
def test_a_team_that_disbands_mid_stretch_gives_the_same_bits(trainers, arch, at):
    # thread 0 finishes the stretch alone after ``at`` steps: every part still runs once
    alone, h1 = _team_fit(ARCHS[arch], "float32", 1, 32, "adam")
    pytest.importorskip("fastnn._testing", reason="needs the checked build's hooks")
    trainers.spy.disband_after = at
    split, h2 = _team_fit(ARCHS[arch], "float32", 2, 32, "adam")
    if _teams_possible():
        assert trainers[-1].disbanded >= 1
    for A, B in zip(weights(alone), weights(split)):
        np.testing.assert_array_equal(A, B)
    assert h1.loss == h2.loss


def test_a_team_that_disbands_is_tried_again_soon_then_less_often(trainers):
    # every team stretch disbands after its first step: the fit goes on alone and tries the
    # team again after probe_steps (P) steps, then 2, 4, ... times as many. In 12 P steps:
    # the untimed first stretch (P steps), the team's timing (P), one thread's (P), the team
    # (P), 2 P alone, the team, 4 P alone, the team: five disbands, the next try after 8 P.
    # (Before, a team that disbanded once waited hold_steps, 64 then: two disbands.)
    pytest.importorskip("fastnn._testing", reason="needs the checked build's hooks")
    if not _teams_possible():
        pytest.skip("needs two threads")
    P = TUNING["probe_steps"]
    arch = ARCHS["digits"]
    # batches large enough that a stretch of P of them pays for the team (team_epoch)
    batch = max(32, -(-TUNING["team_epoch"] // (P * _epoch_work(arch, 1))))
    if 8 * P > TUNING["max_hold_steps"] or 4 * P > TUNING["signal_batches"]:
        pytest.skip("a hold or stretch beyond this tuning table's limits")
    trainers.spy.disband_after = 1
    X, y = _team_problem("softmax", 12 * P * batch, arch[0], arch[2], "float32")
    with threadpoolctl.threadpool_limits(limits=2, user_api="openmp"):
        _team_model(arch, "float32").fit(X, y, epochs=1, batch_size=batch, shuffle=False)
    runner = trainers[-1]
    assert (runner.disbanded, runner.team_stretches, runner.alone_stretches) == (5, 0, 3)
    assert runner.retry == runner.hold == 8 * P


@pytest.mark.parametrize("team_faster", [True, False])
def test_a_team_much_faster_than_one_thread_is_timed_alone_seldom(trainers, team_faster):
    # a step 1 ms on the team and 2 ms alone: after timing each (probe_steps, P), the hold on
    # the team is long enough that timing one thread again (P steps, 1 ms extra each) costs
    # at most probe_share of its time, and doubles; the other way round (a team slowed by
    # another process), the team is timed again hold_steps after it was, then 2, 4, ... times
    _testing = pytest.importorskip("fastnn._testing", reason="needs the checked build's hooks")
    P, share = TUNING["probe_steps"], TUNING["probe_share"]
    arch = ARCHS["digits"]
    batch = max(32, -(-TUNING["team_epoch"] // (P * _epoch_work(arch, 1))))
    X, y = _team_problem("softmax", 4 * P * batch, arch[0], arch[2], "float32")
    with threadpoolctl.threadpool_limits(limits=2, user_api="openmp"):
        _team_model(arch, "float32").fit(X, y, epochs=1, batch_size=batch, shuffle=False)
        runner = trainers[-1]
        runner.team_speed = runner.alone_speed = 0.0  # (a fresh choice, the loop warm)
        runner.since_probe, runner.hold, runner.retry = 0, TUNING["hold_steps"], 0
        team, alone = (1e-3, 2e-3) if team_faster else (2e-3, 1e-3)
        ran = [_testing.choose_and_time(runner, team, alone) for _ in range(6)]
    if max(threads for threads, _ in ran) == 1:
        pytest.skip("no team for this step with this tuning table")
    on = [threads > 1 for threads, _ in ran]
    assert on[:2] == [True, False] and [steps for _, steps in ran[:2]] == [P, P]
    H = TUNING["hold_steps"]
    if team_faster:
        hold = max(H, math.ceil(P * (2 - 1) / share))
        expected = [(True, hold), (False, P), (True, min(2 * hold, TUNING["max_hold_steps"])),
                    (False, P)]
    else:
        expected = [(False, H - P), (True, P), (False, 2 * H), (True, P)]
    assert [(o, steps) for o, (_, steps) in zip(on[2:], ran[2:])] == expected


def test_a_team_stretch_that_loses_its_partners_core_runs_alone_for_twice_that(trainers):
    # a team stretch that took off_core more than its steps outside them (a worker that did
    # not get its core to start or to end: another thread spinning there) counts as a
    # disband: one thread from there, the team tried again once one thread has run twice
    # what the stretch lost against it; less lost than off_core, or than the steps took
    # (a large step), is the team's usual stretch
    _testing = pytest.importorskip("fastnn._testing", reason="needs the checked build's hooks")
    P, off_core = TUNING["probe_steps"], TUNING["off_core"]
    arch = ARCHS["digits"]
    batch = max(32, -(-TUNING["team_epoch"] // (P * _epoch_work(arch, 1))))
    X, y = _team_problem("softmax", 4 * P * batch, arch[0], arch[2], "float32")
    team, alone = 14e-6, 20e-6
    with threadpoolctl.threadpool_limits(limits=2, user_api="openmp"):
        _team_model(arch, "float32").fit(X, y, epochs=1, batch_size=batch, shuffle=False)
        runner = trainers[-1]
        runner.team_speed = runner.alone_speed = 0.0  # (a fresh choice, the loop warm)
        runner.since_probe, runner.hold, runner.retry = 0, TUNING["hold_steps"], 0
        ran = [_testing.choose_and_time(runner, team, alone) for _ in range(2)]
        if max(threads for threads, _ in ran) == 1:
            pytest.skip("no team for this step with this tuning table")
        assert [threads > 1 for threads, _ in ran] == [True, False]
        disbanded = runner.disbanded
        threads, steps = _testing.choose_and_time(runner, team, alone, lost=off_core / 2)
        assert threads > 1 and runner.disbanded == disbanded and runner.team_speed == team
        assert _testing.choose_and_time(runner, team, alone) == (1, P)  # one thread's probe
        threads, steps = _testing.choose_and_time(runner, team, alone, lost=4 * off_core)
        assert threads > 1 and runner.disbanded == disbanded + 1
        assert runner.team_speed == math.inf
        whole = steps * team + 4 * off_core
        expected = max(P, math.ceil(2 * (whole / alone - steps)))  # twice the time lost
        assert expected > P
        assert _testing.choose_and_time(runner, team, alone) == (1, expected)
        # tried again; losing its core again, it waits twice as long at least
        threads, steps = _testing.choose_and_time(runner, team, alone, lost=4 * off_core)
        assert threads > 1 and runner.retry >= 2 * expected
        # a large step: the time lost is less than the stretch's steps took
        runner.team_speed = runner.alone_speed = 0.0
        runner.since_probe, runner.hold, runner.retry = 0, TUNING["hold_steps"], 0
        big = 4 * off_core
        ran = [_testing.choose_and_time(runner, big, 2 * big) for _ in range(2)]
        threads, steps = _testing.choose_and_time(runner, big, 2 * big, lost=2 * off_core)
        assert threads > 1 and runner.team_speed == big


def test_a_short_stretch_runs_on_one_thread(trainers):
    # 3 epochs of 2 batches of a 10-100-1 net, less work an epoch than the tuning table's
    # team_epoch: too little to wake a team for
    arch = (10, (100,), 1)
    N = max(1, min(331, TUNING["team_epoch"] // _epoch_work(arch, 1) - 1))
    X, y = _team_problem("identity", N, 10, 1, "float32")
    MLP(10, 100, 1, output="identity", random_state=0).fit(X, y, epochs=3, batch_size=200)
    trainer = trainers[-1]
    assert trainer.alone_stretches >= 1 and trainer.team_stretches == trainer.disbanded == 0


def test_a_small_step_runs_on_one_thread(trainers):
    # a step of fewer rows and units than two parts take (the tuning table's part_rows) is
    # one part: no team at all, even in an epoch long enough for one (team_epoch)
    B = TUNING["part_rows"]
    N = max(40, TUNING["team_epoch"] // _epoch_work((4, (8,), 3), 1) + B)
    X = np.random.default_rng(0).standard_normal((N, 4))
    y = np.arange(N) % 3
    MLP(4, 8, 3, random_state=0).fit(X, y, epochs=2, batch_size=B)
    assert trainers[-1].team_stretches == trainers[-1].disbanded == 0


def test_one_thread_allowed_means_no_team(trainers):
    # an epoch long enough for a team (the tuning table's team_epoch), one thread allowed
    N = max(256, TUNING["team_epoch"] // _epoch_work(ARCHS["digits"], 1) + 64)
    X, y = _team_problem("softmax", N, 64, 10, "float32")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        _team_model(ARCHS["digits"], "float32").fit(X, y, epochs=2, batch_size=32)
    assert trainers[-1].team_stretches == trainers[-1].disbanded == 0


@pytest.mark.parametrize("arch", ["digits", "regression"])  # first layer transposed / not
def test_weights_changed_by_a_callback_are_trained_on(arch):
    # the native loop holds a small first layer transposed during an epoch and copies it in
    # again only when something may have written the model's arrays: a callback may
    n_in, _, n_out, _, output = ARCHS[arch]
    X, y = _team_problem(output, 401, n_in, n_out, "float64")
    fits = []
    for backend in ("cython", "numpy"):
        model = _team_model(ARCHS[arch], "float64")

        def shrink(epoch, history, model=model):
            if epoch == 0:
                model.layers[0].W *= 0.5  # in place: the arrays the loop trains
                model.layers[0].b[:] = 0.25

        with fastnn.use_backend(backend):
            model.fit(X, y, epochs=3, batch_size=32, lr=0.01, momentum=0.9, random_state=0,
                      callback=shrink)
        fits.append(weights(model))
    for A, B in zip(*fits):
        np.testing.assert_allclose(A, B, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("N, transposed", [(128 * (TUNING["mirror_steps"] + 1), True),
                                          (128 * max(1, TUNING["mirror_steps"] - 1), False)])
def test_a_mid_size_first_layer_is_held_transposed_in_long_epochs(trainers, N, transposed):
    # 784 -> 128 on batches of 128: a product too large for BLAS's small-matrix kernels, which
    # the loop holds as W^T (OpenBLAS packs it faster) when it has at most mirror_weights
    # weights and an epoch has mirror_steps steps or more (the tuning table's) to pay for the
    # two copies; either way the weights agree with the reference loop and do not depend on
    # the thread count
    arch = (min(784, TUNING["mirror_weights"] // 128), (128,), 10, "relu", "softmax")
    fits = []
    for threads, backend in ((1, "cython"), (2, "cython"), (2, "numpy")):
        model, _ = _team_fit(arch, "float64", threads, 128, "momentum", N=N, epochs=2,
                             backend=backend)
        fits.append(weights(model))
        if backend == "cython":
            assert trainers[-1].transposed is transposed
    for A, B in zip(fits[0], fits[1]):
        np.testing.assert_array_equal(A, B)
    for A, B in zip(fits[0], fits[2]):
        np.testing.assert_allclose(A, B, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------
# The loop's two small helpers in the extension: the epoch's shuffle (both backends visit the
# samples in its order) and the finiteness check of the weights after an epoch
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 1347])
def test_shuffle_gives_a_permutation_that_depends_on_the_seed_only(n):
    a, b, c = (np.arange(n, dtype=np.intp) for _ in range(3))
    _kernels.shuffle(a, 12345)
    _kernels.shuffle(b, 12345)
    _kernels.shuffle(c, 54321)
    assert sorted(a) == list(range(n))
    np.testing.assert_array_equal(a, b)
    if n > 3:
        assert not np.array_equal(a, c)


def test_shuffle_puts_every_value_everywhere_about_equally_often():
    # 6 items, 60000 seeds: each (value, position) pair about 10000 times; Fisher-Yates with a
    # biased or off-by-one draw misses pairs or skews them far beyond this tolerance
    n, trials = 6, 60000
    counts = np.zeros((n, n))
    for seed in range(trials):
        p = np.arange(n, dtype=np.intp)
        _kernels.shuffle(p, seed * 0x9E3779B97F4A7C15 % 2**64)
        counts[p, np.arange(n)] += 1
    expected = trials / n
    assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite(dtype):
    info = np.finfo(dtype)
    ok = np.array([0.0, -0.0, 1.0, info.max, -info.max, info.tiny, info.tiny / 4, -3.5],
                  dtype=dtype)
    assert _kernels.all_finite(ok)
    assert _kernels.all_finite(np.empty(0, dtype))
    assert _kernels.all_finite(np.ones((7, 9), dtype))
    for bad in (np.inf, -np.inf, np.nan, -np.nan):
        for at in (0, 3, 64, 100):  # the first element, inside the vector body, the tail
            x = np.ones(101, dtype)
            x[at] = bad
            assert not _kernels.all_finite(x)
            assert not _kernels.all_finite(x.reshape(1, 101))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_squares(backend, dtype):
    """The L2 penalty's sum ||W||^2 over a model's weights (an estimator's reported loss), in
    float64 on both backends: equal to the float64 sum (the vector body and the tail; no
    array, an empty one); any layout (a transposed view, a reversed one, byte-swapped) by
    value; an overflow of float64 is inf, never an error."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(dtype) for n in (1, 7, 8, 9, 64, 1001)]
    arrays += [np.zeros(0, dtype), rng.standard_normal((13, 5)).astype(dtype)]
    exact = math.fsum(float(x) ** 2 for A in arrays for x in A.ravel())
    assert ops().sum_squares(arrays) == pytest.approx(exact, rel=1e-13)
    assert ops().sum_squares([]) == 0.0
    A = rng.standard_normal((6, 9)).astype(dtype)
    for view in (A.T, A[::-1, ::2], A.astype(np.dtype(dtype).newbyteorder())):
        assert ops().sum_squares([view]) == pytest.approx(
            math.fsum(float(x) ** 2 for x in np.asarray(view).ravel()), rel=1e-13)
    big = np.full(3, np.finfo(dtype).max, dtype)
    assert ops().sum_squares([big]) == (np.inf if dtype == np.float64 else
                                        pytest.approx(3 * float(np.finfo(dtype).max) ** 2))
    assert ops().sum_squares([np.array([1.0, np.inf], dtype)]) == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_arrays(backend, dtype):
    """A fit's per-epoch save and restore, on both backends: every pair copied, C arrays (by
    memcpy in the compiled one), any other layout (a transposed view, a byte-swapped array)
    by value."""
    rng = np.random.default_rng(0)
    src = [rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal(3).astype(dtype),
           rng.standard_normal((7, 5)).astype(dtype).T,
           rng.standard_normal(4).astype(np.dtype(dtype).newbyteorder())]
    dst = [np.zeros((5, 7), dtype), np.zeros(3, dtype), np.zeros((5, 7), dtype),
           np.zeros(4, dtype)]
    ops().copy_arrays(dst, src)
    for D, S in zip(dst, src):
        np.testing.assert_array_equal(D, S)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_arrays_and_finite_input_agree_on_both_backends(backend, dtype):
    """The backends' one-call checks give the same answers: all_finite_arrays (a state's
    values, >= 0 where flagged) and finite_input (a model's common X: an exact 2-D C array of
    the weights' dtype and width, at least one row, finite)."""
    W = np.ones((4, 3), dtype)
    good = [np.ones(3, dtype), np.zeros((2, 2), dtype)]
    assert ops().all_finite_arrays(good, [False, True])
    assert ops().all_finite_arrays([], [])
    assert not ops().all_finite_arrays([good[0], -good[1] - 1], [False, True])
    assert ops().all_finite_arrays([good[0], -good[1] - 1], [False, False])
    assert not ops().all_finite_arrays([np.array([1, np.nan], dtype)], [False])
    X = np.ones((5, 3), dtype)
    assert ops().finite_input(X, W)
    other = np.float64 if dtype == np.float32 else np.float32
    for bad in (X.tolist(), X.astype(other), np.asfortranarray(np.ones((5, 3), dtype))[:, :],
                np.ones((5, 6), dtype)[:, ::2], np.ones((0, 3), dtype), np.ones((5, 4), dtype),
                np.ones(3, dtype), X.astype(np.dtype(dtype).newbyteorder()),
                np.where(np.eye(5, 3, dtype=bool), np.inf, X).astype(dtype)):
        assert not ops().finite_input(bad, W), bad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_readable_finite_rows_agree_on_both_backends(backend, dtype):
    """An estimator's quick partial_fit checks X in one call: an ndarray the kernels read where
    it lies (any strides of whole elements, reversed too) with every value finite, and finite
    as float32 for a float32 model; anything else is turned down (the full path converts or
    names it)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 8)).astype(dtype)
    for good in (X, X.T, X[::-1], X[::2, ::-3], np.asfortranarray(X)):
        assert ops().readable_finite_rows(good, False)
        assert ops().readable_finite_rows(good, True)
    buffer = np.zeros(X.nbytes + 1, np.uint8)[1:]  # an unaligned copy of X
    unaligned = np.frombuffer(buffer, dtype).reshape(X.shape)
    for bad in (X.tolist(), X[0], X.astype(np.dtype(dtype).newbyteorder()), unaligned,
                X.astype(np.float16), X.astype(np.int64), X.reshape(2, 3, 8)):
        assert not ops().readable_finite_rows(bad, False), bad
    wide = np.ones((6, 16), dtype)
    wide[5, 2] = np.nan  # in the view below, past its first 6 x 8 values in memory
    assert not ops().readable_finite_rows(wide[:, ::2], False)
    if dtype == np.float64:
        big = np.full((2, 3), 1e300)
        assert ops().readable_finite_rows(big, False)
        assert not ops().readable_finite_rows(big, True)


def test_plain_labels_agree_on_both_backends_and_fall_back_to_the_checks(backend):
    """plain_labels (a classifier's common y: an exact 1-D C array of intp, N labels in
    0..K-1) gives the same answers on both backends; whatever it turns down, fit checks in
    full and names (or converts) as before."""
    y = np.array([0, 3, 1, 2, 2], dtype=np.intp)
    assert ops().plain_labels(y, 5, 4)
    assert ops().plain_labels(np.zeros(0, np.intp), 0, 4)
    for bad, N in ((y, 4), (y.tolist(), 5), (y.astype(np.int32), 5), (y.astype(float), 5),
                   (np.repeat(y, 2)[::2], 5), (y.astype(np.dtype(np.intp).newbyteorder()), 5),
                   (y - 1, 5), (y + 1, 5), (y.reshape(5, 1), 5),
                   (np.array([0, 1, 2, 3, np.iinfo(np.intp).min], np.intp), 5)):
        assert not ops().plain_labels(bad, N, 4), bad
    net = MLP(3, 4, 4, random_state=0)
    X = np.ones((5, 3), np.float32)
    for labels in (y - 1, y + 1):
        with pytest.raises(ValueError, match="class labels in 0..3"):
            net.fit(X, labels, epochs=1)
    net.fit(X, y.astype(np.int32), epochs=1)  # (converted)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_nonnegative(dtype):
    """Adam's second moments: finite and >= 0, -0.0 included; a negative, NaN (of either
    sign) or inf anywhere (first element, vector body, tail) fails, and so does any pair of
    the list form that fails."""
    info = np.finfo(dtype)
    ok = np.array([0.0, -0.0, 1.0, info.max, info.tiny, info.tiny / 4], dtype=dtype)
    assert _kernels.all_finite(ok, True)
    assert _kernels.all_finite(np.empty(0, dtype), True)
    for bad in (-1.0, -info.tiny / 4, -info.max, np.inf, -np.inf, np.nan, -np.nan):
        for at in (0, 3, 64, 100):
            x = np.ones(101, dtype)
            x[at] = bad
            assert not _kernels.all_finite(x, True), (bad, at)
            assert _kernels.all_finite(x, False) == bool(np.isfinite(bad))
            assert not _kernels.all_finite_arrays([np.ones(3, dtype), x], [False, True])
            assert _kernels.all_finite_arrays([x, np.ones(3, dtype)], [False, False]) \
                == bool(np.isfinite(bad))
