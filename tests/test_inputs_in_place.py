"""A dense X of another dtype or layout than the model's, read where it lies.

A float64 X fed to a float32 model, a Fortran-ordered or strided X, a read-only np.memmap:
fit (the native loop converts each batch's rows as it gathers them), train_on_batch and the
predictions (each part of the rows converted as it starts) read X in place, with no whole
copy, and give the bits of the same X converted to a C array of the model's dtype first.
"""

import tracemalloc

import numpy as np
import pytest

import fastnn
from fastnn import MLP
from fastnn.optim import Adam
from helpers import assert_same_weights, weights

LAYOUTS = {  # what the model reads in place (byte-swapped and unaligned X are copied)
    "float64": lambda X: X.astype(np.float64),
    "fortran": np.asfortranarray,
    "float64 fortran": lambda X: np.asfortranarray(X, dtype=np.float64),
    "strided": lambda X: np.repeat(X, 2, axis=1)[:, ::2],
    "negative strides": lambda X: np.ascontiguousarray(X[::-1, ::-1])[::-1, ::-1],
    "read-only": lambda X: _readonly(X.astype(np.float64)),
}


def _readonly(V):
    V.flags.writeable = False
    return V


def _problem(N=300, K=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, K)).astype(np.float32), rng.integers(0, 3, N)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_fit_and_predictions_give_the_bits_of_the_converted_copy(layout, backend):
    X, y = _problem()
    given = LAYOUTS[layout](X)
    assert given.dtype != np.float32 or not given.flags.c_contiguous  # (not the C copy)
    fits = []
    for data in (X, given):
        net = MLP(20, (16, 8), 3, random_state=0)
        history = net.fit(data, y, epochs=3, batch_size=32, optimizer="adam", lr=0.01,
                          random_state=0, validation_data=(data[:50], y[:50]))
        fits.append((net, history))
    (a, h1), (b, h2) = fits
    assert_same_weights(a, b)
    assert h1.loss == h2.loss and h1.val_loss == h2.val_loss
    for method in ("predict_proba", "decision_function", "predict"):
        np.testing.assert_array_equal(getattr(a, method)(given), getattr(a, method)(X))
    assert a.loss(given, y) == a.loss(X, y)
    assert a.predict_proba(given).dtype == np.float32


def test_a_memmap_is_read_in_place(tmp_path):
    X, y = _problem(N=2000)
    path = tmp_path / "X.npy"
    np.save(path, X.astype(np.float64))
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    a, b = MLP(20, 16, 3, random_state=0), MLP(20, 16, 3, random_state=0)
    a.fit(mapped, y, epochs=2, batch_size=64, random_state=0)
    b.fit(X, y, epochs=2, batch_size=64, random_state=0)
    assert_same_weights(a, b)
    np.testing.assert_array_equal(a.predict_proba(mapped), a.predict_proba(X))


def test_train_on_batch_reads_float64_batches_in_place(backend):
    X, y = _problem(N=128)
    runs = []
    for data in (X, X.astype(np.float64)):
        net = MLP(20, 16, 3, random_state=0)
        opt = Adam(net, lr=0.01)
        losses = [net.train_on_batch(data[i:i + 32], y[i:i + 32], opt)
                  for _ in range(2) for i in range(0, 128, 32)]
        runs.append((weights(net), losses))
    assert runs[0][1] == runs[1][1]
    assert_same_weights(runs[0][0], runs[1][0])


def test_no_whole_copy_of_a_float64_X():
    """fit and predict_proba of a float32 model on a float64 X allocate (NumPy's memory,
    which tracemalloc sees) well under a tenth of X: its float32 copy would be half of it."""
    X, y = _problem(N=40_000, K=64)
    X64 = X.astype(np.float64)
    net = MLP(64, 32, 3, random_state=0)
    tracemalloc.start()
    try:
        net.fit(X64, y, epochs=1, batch_size=200, random_state=0)
        fit_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        net.predict_proba(X64)
        predict_peak = tracemalloc.get_traced_memory()[1] - 40_000 * 3 * 4  # (the result)
    finally:
        tracemalloc.stop()
    assert fit_peak < 0.1 * X64.nbytes, fit_peak / X64.nbytes
    assert predict_peak < 0.1 * X64.nbytes, predict_peak / X64.nbytes


def test_values_a_float32_model_cannot_hold(backend):
    X, y = _problem(N=20)
    net = MLP(20, 8, 3, random_state=0)
    big = X.astype(np.float64)
    big[3, 4] = 1e300
    nan = X.astype(np.float64)
    nan[5, 6] = np.nan
    for call in (lambda A: net.fit(A, y, epochs=1), net.predict_proba, net.predict,
                 lambda A: net.train_on_batch(A, y, Adam(net))):
        with pytest.raises(ValueError, match="X holds values too large for the model's float32"):
            call(np.asfortranarray(big))
        with pytest.raises(ValueError, match="X must be finite"):
            call(nan)


def test_estimators_read_float64_X_in_place():
    from fastnn import MLPClassifier, MLPRegressor

    X, y = _problem(N=400)
    for make, target in ((MLPClassifier, y), (MLPRegressor, y.astype(float))):
        for solver in ("adam", "lbfgs"):
            p = dict(hidden_layer_sizes=(16,), solver=solver, max_iter=20, random_state=0)
            with pytest.warns(Warning):
                a = make(**p).fit(X, target)
                b = make(**p).fit(np.asfortranarray(X, dtype=np.float64), target)
            for A, B in zip(a.coefs_, b.coefs_):
                np.testing.assert_array_equal(A, B)
            np.testing.assert_array_equal(a.predict(X.astype(np.float64)),
                                          b.predict(np.asfortranarray(X, dtype=np.float64)))
