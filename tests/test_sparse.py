"""Sparse X (scipy.sparse, read as CSR rows) everywhere X is taken, never densified.

The contract checked here:
* the kernels (F.linear, F.linear_backward) on CSR rows give scipy's bits (fastnn.reference's
  sparse products sum each z_ij over a row's stored values in the same order), whether W is
  read in place or as a W^T copy, and agree with the dense path on the densified X to
  rounding; gradients agree with finite differences;
* every kind of sparse input: CSR/CSC/COO, sparse arrays and matrices, int32 and int64
  indices, unsorted and repeated indices, explicit zeros, empty rows, float32/float64/int
  values; bad sparse input gets a ValueError or TypeError naming X, never a crash;
* models (forward, decision_function, predict_proba, predict, loss, gradients, fit,
  train_on_batch) and the estimators agree with the dense copy of X; the native training
  loop's update is exact (SGD's lazy catch-up and Adam's dense step) for SGD, momentum,
  Nesterov, Adam and weight decay, on both backends, and gives the same bits on any thread
  count;
* nothing densifies X: memory follows the non-zeros and the weights.
"""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse

import fastnn
import fastnn.functional as F
from fastnn import MLP, Linear, Sequential
from fastnn.optim import SGD, Adam
from helpers import assert_same_weights, weights

threadpoolctl = pytest.importorskip("threadpoolctl")

ACTIVATIONS = ("identity", "relu", "step", "sigmoid", "tanh", "exp")
EXACT = ("identity", "relu", "step")  # no exp inside: fastnn's and NumPy's agree bit for bit


def make_csr(N, K, density=0.05, dtype=np.float64, seed=0, index=np.int32, messy=False,
             kind="array"):
    """A random CSR matrix built from its arrays (so scipy keeps them as given). ``messy``:
    unsorted indices within rows, repeated (row, column) pairs, explicit zeros and empty
    rows; otherwise sorted and unique."""
    rng = np.random.default_rng(seed)
    nnz = max(1, int(N * K * density))
    rows, cols = rng.integers(0, N, nnz), rng.integers(0, K, nnz)
    vals = rng.standard_normal(nnz)
    if messy:
        rows = np.where(rows % 4 == 1, (rows + 1) % N, rows)  # rows 1, 5, 9, ... empty
        dup = rng.integers(0, nnz, nnz // 5)  # some pairs twice, with other values
        rows, cols = np.concatenate([rows, rows[dup]]), np.concatenate([cols, cols[dup]])
        vals = np.concatenate([vals, rng.standard_normal(dup.size)])
        vals[::7] = 0  # explicit zeros
        order = np.lexsort((rng.random(rows.size), rows))  # by row, shuffled within rows
    else:
        pairs = np.unique(rows * K + cols)
        rows, cols = pairs // K, pairs % K
        vals = vals[:rows.size]
        order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=N))])
    cls = scipy.sparse.csr_array if kind == "array" else scipy.sparse.csr_matrix
    X = cls((vals.astype(dtype), cols.astype(index), indptr.astype(index)), shape=(N, K))
    if messy:
        assert not X.has_canonical_format
    return X


def dense(X):
    return X.toarray()  # (repeated pairs add up: scipy's meaning, and fastnn's)


# -- the kernels ----------------------------------------------------------------------------

@pytest.mark.parametrize("messy", [False, True], ids=["canonical", "messy"])
@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("N", [3, 400])  # few non-zeros (W read in place), many (W^T copied)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_on_csr_rows_is_scipys_product(dtype, activation, N, index, messy):
    X = make_csr(N, 300, 0.03, dtype, index=index, messy=messy)
    rng = np.random.default_rng(1)
    W = (rng.standard_normal((7, 300)) / 4).astype(dtype)
    b = rng.standard_normal(7).astype(dtype)
    U = F.linear(X, W, b, activation)
    with fastnn.use_backend("numpy"):
        U_ref = F.linear(X, W, b, activation)
    assert U.dtype == dtype and U.shape == (N, 7)
    if activation in EXACT:
        np.testing.assert_array_equal(U, U_ref)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(U, U_ref, **tol)
    np.testing.assert_allclose(U, F.linear(dense(X), W, b, activation), **tol)


@pytest.mark.parametrize("messy", [False, True], ids=["canonical", "messy"])
@pytest.mark.parametrize("N", [3, 400])
@pytest.mark.parametrize("activation", ["identity", "relu", "tanh"])
def test_linear_backward_on_csr_rows(dtype, activation, N, messy):
    X = make_csr(N, 300, 0.03, dtype, messy=messy)
    rng = np.random.default_rng(2)
    W = (rng.standard_normal((7, 300)) / 4).astype(dtype)
    U = F.linear(X, W, None, activation)
    dU = rng.standard_normal(U.shape).astype(dtype)
    dX, dW, db = F.linear_backward(dU, X, W, U, activation)
    with fastnn.use_backend("numpy"):
        dX_ref, dW_ref, db_ref = F.linear_backward(dU, X, W, U, activation)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    if activation in ("identity", "relu"):  # the same dZ (tanh's g' rounds once, in float64)
        np.testing.assert_array_equal(dW, dW_ref)  # dW^T = X^T dZ: scipy's order and bits
    np.testing.assert_allclose(dW, dW_ref, **tol)
    np.testing.assert_allclose(db, db_ref, **tol)
    np.testing.assert_allclose(dX, dX_ref, **tol)
    for got, want in zip((dX, dW, db), F.linear_backward(dU, dense(X), W, U, activation)):
        assert got.dtype == dtype and got.flags.c_contiguous
        np.testing.assert_allclose(got, want, **tol)
    assert F.linear_backward(dU, X, W, U, activation, need_dX=False)[0] is None


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr"])
@pytest.mark.parametrize("kind", ["array", "matrix"])
def test_every_sparse_format_and_value_dtype(fmt, kind, backend):
    X = make_csr(20, 30, 0.1, kind=kind)
    W = np.random.default_rng(3).standard_normal((4, 30))
    want = F.linear(dense(X), W, None, "relu")
    np.testing.assert_allclose(F.linear(X.asformat(fmt), W, None, "relu"), want, rtol=1e-12,
                               atol=1e-12)
    ints = scipy.sparse.csr_array(np.rint(dense(X) * 3).astype(np.int64))  # ints: float64
    U = F.linear(ints, W.astype(np.float32))
    assert U.dtype == np.float64
    np.testing.assert_allclose(U, F.linear(dense(ints), W.astype(np.float32)), rtol=1e-12)
    single = F.linear(scipy.sparse.csr_array(dense(X).astype(np.float32)), W.astype(np.float32))
    assert single.dtype == np.float32


def test_awkward_shapes(backend, dtype):
    rng = np.random.default_rng(4)
    for N, K, M in [(1, 1, 1), (1, 50, 1), (5, 1, 3), (2, 40, 1), (33, 65, 17)]:
        X = make_csr(N, K, 0.3, dtype, seed=N + K)
        W, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal(M).astype(dtype)
        np.testing.assert_allclose(F.linear(X, W, b, "tanh"), F.linear(dense(X), W, b, "tanh"),
                                   rtol=1e-5, atol=1e-6)
    empty = scipy.sparse.csr_array((4, 6), dtype=dtype)  # no stored value at all: z = b
    b = rng.standard_normal(3).astype(dtype)
    np.testing.assert_array_equal(F.linear(empty, np.ones((3, 6), dtype), b), np.tile(b, (4, 1)))
    out = np.empty((4, 3), dtype)
    assert F.linear(empty, np.ones((3, 6), dtype), b, out=out) is out


def test_a_linear_layer_on_csr_rows(backend, dtype):
    X = make_csr(30, 40, 0.1, dtype, messy=True)
    layer = Linear(40, 5, "relu", dtype=dtype, random_state=0)
    np.testing.assert_allclose(layer.forward(X), layer.forward(dense(X)), rtol=1e-5, atol=1e-6)


def test_gradients_of_a_sparse_model_match_finite_differences(numerical_gradient, backend):
    X = make_csr(12, 20, 0.15, messy=True)
    y = np.random.default_rng(5).integers(0, 3, 12)
    net = MLP(20, 6, 3, activation="tanh", dtype="float64", random_state=0)
    grads = net.gradients(X, y, reduction="sum")
    for (W, b), (dW, db) in zip(net.parameters(), grads):
        np.testing.assert_allclose(dW, numerical_gradient(lambda: net.loss(X, y, "sum"), W),
                                   rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(db, numerical_gradient(lambda: net.loss(X, y, "sum"), b),
                                   rtol=1e-6, atol=1e-8)


# -- bad sparse input -----------------------------------------------------------------------

def _broken(what):
    X = make_csr(6, 5, 0.4, seed=6)
    if what == "nan":
        X.data[1] = np.nan
    elif what == "inf":
        X.data[-1] = -np.inf
    elif what == "index too large":
        X.indices[0] = 5
    elif what == "negative index":
        X.indices[0] = -1
    elif what == "indptr decreases":
        X.indptr[3] = X.indptr[2] - 1 if X.indptr[2] else 1
        X.indptr[2] = max(X.indptr[2], X.indptr[3] + 1)
    elif what == "indptr from 1":
        X.indptr[0] = 1
    elif what == "indptr too long":
        X.indptr = np.append(X.indptr, X.indptr[-1])
    elif what == "more values than stored":
        X.indptr[-1] = X.indices.size + 3
    return X


BROKEN = {
    "nan": (ValueError, "X must be finite"),
    "inf": (ValueError, "X must be finite"),
    "index too large": (ValueError, r"X.indices must be column numbers in 0..4"),
    "negative index": (ValueError, r"X.indices must be column numbers in 0..4"),
    "indptr decreases": (ValueError, "X.indptr must not decrease"),
    "indptr from 1": (ValueError, "X.indptr must start at 0"),
    "indptr too long": (ValueError, "X.indptr must have N \\+ 1 = 7 entries"),
    "more values than stored": (ValueError, "X.indptr says"),
}


@pytest.mark.parametrize("what", list(BROKEN))
def test_bad_sparse_input_is_refused_by_name(what, backend):
    error, message = BROKEN[what]
    W = np.ones((3, 5))
    net = MLP(5, 4, 3, dtype="float64", random_state=0)
    y = np.zeros(6, dtype=int)
    for call in (lambda X: F.linear(X, W), lambda X: F.linear_backward(np.ones((6, 3)), X, W,
                                                                       np.ones((6, 3))),
                 net.predict, net.predict_proba, net.decision_function, net.forward,
                 lambda X: net.loss(X, y), lambda X: net.gradients(X, y),
                 lambda X: net.fit(X, y, epochs=1)):
        with pytest.raises(error, match=message):
            call(_broken(what))
    with pytest.raises(error, match=message):
        net.train_on_batch(_broken(what), y, SGD(net, lr=0.1))


def test_sparse_input_of_the_wrong_shape_or_kind():
    net = MLP(5, 4, 3, random_state=0)
    with pytest.raises(ValueError, match=r"X must have 5 features \(columns\), got shape \(6, 4\)"):
        net.predict(make_csr(6, 4, 0.5))
    with pytest.raises(ValueError, match=r"W must have shape \(3, 4\)"):
        F.linear(make_csr(6, 4, 0.5), np.ones((3, 5)))
    with pytest.raises(ValueError, match="X must not be empty"):
        net.predict(scipy.sparse.csr_array((0, 5)))
    with pytest.raises(TypeError, match="X must hold real numbers"):
        net.predict(scipy.sparse.csr_array(np.ones((2, 5), dtype=complex)))
    with pytest.raises(ValueError, match="X must be a 2-D sparse matrix"):
        net.predict(scipy.sparse.coo_array(np.ones(5)))
    with pytest.raises(ValueError, match="X_val must be finite"):
        net.fit(make_csr(6, 5, 0.5), np.zeros(6, int), validation_data=(_broken("nan"), np.zeros(6, int)))


# -- models --------------------------------------------------------------------------------

PROBLEMS = {  # output -> targets for N rows
    "softmax": lambda rng, N: rng.integers(0, 4, N),
    "sigmoid": lambda rng, N: (rng.random((N, 4)) < 0.4).astype(float),
    "identity": lambda rng, N: rng.standard_normal((N, 4)),
}


@pytest.mark.parametrize("output", list(PROBLEMS))
def test_model_methods_agree_with_the_dense_copy(backend, dtype, output):
    X = make_csr(50, 80, 0.05, dtype, messy=True)
    y = PROBLEMS[output](np.random.default_rng(7), 50)
    net = MLP(80, (16, 8), 4, activation="tanh", output=output, dtype=dtype, random_state=0)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for method in ("predict_proba", "decision_function"):
        np.testing.assert_allclose(getattr(net, method)(X), getattr(net, method)(dense(X)), **tol)
    if output != "identity":
        assert np.mean(net.predict(X) == net.predict(dense(X))) > 0.95
    np.testing.assert_allclose(net.loss(X, y), net.loss(dense(X), y), **tol)
    np.testing.assert_allclose(net.loss(X, y, "none"), net.loss(dense(X), y, "none"), **tol)
    trace, want = net.forward(X), net.forward(dense(X))
    for a, b in zip(trace.z + trace.u, want.z + want.u):
        np.testing.assert_allclose(a, b, **tol)
    for (dW, db), (dW2, db2) in zip(net.gradients(X, y), net.gradients(dense(X), y)):
        np.testing.assert_allclose(dW, dW2, **tol)
        np.testing.assert_allclose(db, db2, **tol)


OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", lr=0.1),
    "sgd+decay": dict(optimizer="sgd", lr=0.1, weight_decay=0.05),
    "momentum": dict(optimizer="sgd", lr=0.05, momentum=0.9),
    "momentum+decay": dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.05),
    "nesterov+decay": dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                           weight_decay=0.05),
    "adam": dict(optimizer="adam", lr=0.01),
    "adam+decay": dict(optimizer="adam", lr=0.01, weight_decay=0.05),
}


def _fit(X, y, output, dtype, backend="cython", threads=None, hidden=12, **kwargs):
    net = MLP(X.shape[1], hidden, y.shape[1] if y.ndim == 2 else int(y.max()) + 1,
              activation="relu", output=output, dtype=dtype, random_state=0)
    options = dict(epochs=3, batch_size=16, random_state=1)
    options.update(kwargs)
    with fastnn.use_backend(backend), threadpoolctl.threadpool_limits(threads, "openmp"):
        history = net.fit(X, y, **options)
    return net, history


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_the_update_is_exact_the_dense_copys_to_rounding(dtype, opt):
    """The native loop on CSR rows against the same loop on the dense copy: SGD's rows are
    caught up lazily and Adam steps every row, both exactly (to rounding). Row 0 holds the
    only non-zero of column 0 (reached once an epoch), rows 0 and 70 those of column 1."""
    X = make_csr(101, 150, 0.03, dtype, messy=True).tolil()
    X[:, :2] = 0
    X[0, 0], X[0, 1], X[70, 1] = 1.5, -2.0, 0.5
    X = X.tocsr()
    y = np.random.default_rng(8).integers(0, 3, 101)
    sparse, h1 = _fit(X, y, "softmax", dtype, **OPTIMIZERS[opt])
    full, h2 = _fit(dense(X), y, "softmax", dtype, **OPTIMIZERS[opt])
    # (Adam's m / sqrt(v) magnifies the rounding of tiny gradients, float32's the most)
    atol = {np.float64: 1e-12, np.float32: 1e-4 if opt.startswith("adam") else 2e-6}[dtype]
    assert_same_weights(sparse, full, rtol=0, atol=atol)
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("output", list(PROBLEMS))
@pytest.mark.parametrize("opt", ["momentum+decay", "adam+decay"])
def test_the_native_loop_agrees_with_the_numpy_loop(opt, output):
    X = make_csr(90, 120, 0.04, messy=True, index=np.int64)
    y = PROBLEMS[output](np.random.default_rng(9), 90)
    sw = np.random.default_rng(10).uniform(0.2, 2.0, 90)
    native, h1 = _fit(X, y, output, "float64", sample_weight=sw, **OPTIMIZERS[opt])
    ref, h2 = _fit(X, y, output, "float64", backend="numpy", sample_weight=sw,
                   **OPTIMIZERS[opt])
    assert_same_weights(native, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-10)


def test_fit_options_on_sparse_input():
    X = make_csr(120, 60, 0.08)
    y = np.random.default_rng(11).integers(0, 3, 120)
    X_val, y_val = make_csr(30, 60, 0.08, seed=2), np.random.default_rng(12).integers(0, 3, 30)
    kwargs = dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.01, batch_size=7,
                  shuffle=False)
    sparse, h1 = _fit(X, y, "softmax", "float64", validation_data=(X_val, y_val),
                      early_stopping=True, patience=2, epochs=6, **kwargs)
    full, h2 = _fit(dense(X), y, "softmax", "float64", validation_data=(dense(X_val), y_val),
                    early_stopping=True, patience=2, epochs=6, **kwargs)
    assert h1.best_epoch == h2.best_epoch and h1.epochs == h2.epochs
    np.testing.assert_allclose(h1.val_loss, h2.val_loss, rtol=1e-12)
    assert_same_weights(sparse, full, rtol=0, atol=1e-12)
    # a warm start goes on from the optimizer state, sparse or dense
    sparse.fit(X, y, epochs=2, warm_start=True, random_state=3, **kwargs)
    full.fit(dense(X), y, epochs=2, warm_start=True, random_state=3, **kwargs)
    assert_same_weights(sparse, full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("make_opt", [lambda net: SGD(net, lr=0.1, momentum=0.9,
                                                      weight_decay=0.01),
                                      lambda net: Adam(net, lr=0.01, weight_decay=0.01)])
def test_train_on_batch(backend, make_opt):
    X = make_csr(64, 90, 0.05, np.float32, messy=True)
    y = np.random.default_rng(13).integers(0, 3, 64)
    runs = []
    for kinds in (["sparse"], ["dense"], ["sparse", "dense"]):  # the last alternates
        net = MLP(90, 8, 3, random_state=0)
        opt = make_opt(net)
        losses = [net.train_on_batch(X[i:i + 16] if kinds[(i // 16) % len(kinds)] == "sparse"
                                     else dense(X[i:i + 16]), y[i:i + 16], opt)
                  for epoch in range(3) for i in range(0, 64, 16)]
        runs.append((weights(net), losses))
    for other in runs[1:]:
        np.testing.assert_allclose(runs[0][1], other[1], rtol=1e-5)
        assert_same_weights(runs[0][0], other[0], rtol=0, atol=1e-4)


def test_a_model_without_hidden_layers_and_a_layer_without_bias(backend):
    X = make_csr(40, 30, 0.1, messy=True)
    y = np.random.default_rng(14).integers(0, 2, 40)
    for make in (lambda: MLP(30, (), 1, output="sigmoid", dtype="float64", random_state=0),
                 lambda: Sequential([Linear(30, 5, "tanh", bias=False, dtype="float64",
                                            random_state=0),
                                     Linear(5, 1, dtype="float64", random_state=1)],
                                    loss="binary_cross_entropy")):
        a, b = make(), make()
        np.testing.assert_allclose(a.predict_proba(X), a.predict_proba(dense(X)), rtol=1e-12)
        a.fit(X, y, epochs=3, batch_size=8, lr=0.1, momentum=0.5, random_state=0)
        b.fit(dense(X), y, epochs=3, batch_size=8, lr=0.1, momentum=0.5, random_state=0)
        assert_same_weights(a, b, rtol=0, atol=1e-12)


def test_one_and_two_threads_give_the_same_bits(dtype, monkeypatch):
    # 2^16 inputs x 32 units: Adam steps 2^21 weights a batch, a team's worth of work (the
    # lazy SGD steps of a batch's rows are too little: the checked build's test below forces
    # teams on them)
    from fastnn import _kernels

    made, real = [], _kernels.EpochRunner
    monkeypatch.setattr(_kernels, "EpochRunner", lambda spec: made.append(real(spec)) or made[-1])
    X = make_csr(600, 2**16, 0.001, dtype, messy=True)
    y = np.random.default_rng(15).integers(0, 3, 600)
    one, h1 = _fit(X, y, "softmax", dtype, threads=1, batch_size=50, epochs=2, hidden=32,
                   **OPTIMIZERS["adam+decay"])
    two, h2 = _fit(X, y, "softmax", dtype, threads=2, batch_size=50, epochs=2, hidden=32,
                   **OPTIMIZERS["adam+decay"])
    if fastnn.get_num_threads() > 1 and (__import__("os").cpu_count() or 1) > 1:
        assert made[-1].team_stretches + made[-1].disbanded >= 1
    assert_same_weights(one, two)
    assert h1.loss == h2.loss


def test_teams_forced_on_every_part_of_a_sparse_step():
    _testing = pytest.importorskip("fastnn._testing", reason="needs the checked build's hooks")
    X = make_csr(200, 3000, 0.01, messy=True)
    y = np.random.default_rng(16).integers(0, 3, 200)
    runs = {}
    with _testing.tuning(part_work=1, part_rows=1, team_epoch=0, wake_work=0):
        for opt in ("momentum+decay", "adam+decay"):
            for threads in (1, 2):
                runs[opt, threads] = _fit(X, y, "softmax", "float64", threads=threads,
                                          batch_size=20, **OPTIMIZERS[opt])
    for opt in ("momentum+decay", "adam+decay"):
        assert_same_weights(runs[opt, 1][0], runs[opt, 2][0])
        dense_fit, _ = _fit(dense(X), y, "softmax", "float64", batch_size=20,
                            **OPTIMIZERS[opt])
        assert_same_weights(runs[opt, 1][0], dense_fit, rtol=0, atol=1e-12)


def test_both_ways_of_reading_W_give_the_same_bits():
    _testing = pytest.importorskip("fastnn._testing", reason="needs the checked build's hooks")
    X = make_csr(30, 200, 0.05, messy=True)
    W = np.random.default_rng(17).standard_normal((6, 200))
    dU = np.random.default_rng(18).standard_normal((30, 6))
    results = []
    for ratio in (0.0, 1e9):  # W^T copied, W read in place
        with _testing.tuning(sparse_transpose=ratio):
            U = F.linear(X, W, None, "relu")
            results.append((U,) + F.linear_backward(dU, X, W, U, "relu"))
    for A, B in zip(*results):
        np.testing.assert_array_equal(A, B)


# -- the estimators -------------------------------------------------------------------------

@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_estimators_on_sparse_input(solver):
    from fastnn import MLPClassifier, MLPRegressor

    X = make_csr(150, 200, 0.05, messy=True)
    rng = np.random.default_rng(19)
    y, t = rng.integers(0, 3, 150), rng.standard_normal(150)
    p = dict(hidden_layer_sizes=(10,), solver=solver, max_iter=15, batch_size=32,
             random_state=0, dtype="float64")
    for make, target in ((MLPClassifier, y), (MLPRegressor, t)):
        with pytest.warns(Warning) if solver != "lbfgs" else np.errstate():
            sparse = make(**p).fit(X, target)
            full = make(**p).fit(dense(X), target)
        for A, B in zip(sparse.coefs_, full.coefs_):
            np.testing.assert_allclose(A, B, rtol=0, atol=1e-9)
        np.testing.assert_allclose(sparse.predict(X.tocsc()), full.predict(dense(X)),
                                   rtol=1e-9, atol=1e-9)
        assert sparse.score(X.tocoo(), target) == pytest.approx(full.score(dense(X), target))
    clf = MLPClassifier(**p).fit(X, y) if solver == "lbfgs" else None
    if clf is not None:
        np.testing.assert_allclose(clf.predict_log_proba(X), clf.predict_log_proba(dense(X)),
                                   rtol=1e-9, atol=1e-9)


def test_estimator_partial_fit_and_early_stopping_on_sparse_input():
    from fastnn import MLPClassifier

    X = make_csr(200, 100, 0.05, np.float32, messy=True, kind="matrix")
    y = np.random.default_rng(20).integers(0, 3, 200)
    a, b = MLPClassifier((8,), random_state=0), MLPClassifier((8,), random_state=0)
    for i in range(0, 200, 50):
        a.partial_fit(X[i:i + 50], y[i:i + 50], classes=[0, 1, 2])
        b.partial_fit(dense(X[i:i + 50]), y[i:i + 50], classes=[0, 1, 2])
    for A, B in zip(a.coefs_, b.coefs_):
        np.testing.assert_allclose(A, B, rtol=0, atol=1e-5)
    p = dict(hidden_layer_sizes=(8,), early_stopping=True, max_iter=8, n_iter_no_change=2,
             random_state=0)
    with pytest.warns(Warning):
        es = MLPClassifier(**p).fit(X, y)
        es_dense = MLPClassifier(**p).fit(dense(X), y)
    np.testing.assert_allclose(es.validation_loss_curve_, es_dense.validation_loss_curve_,
                               rtol=1e-4)


def test_dask_arrays_of_sparse_chunks():
    from fastnn import MLPClassifier

    da = pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X = make_csr(300, 120, 0.05, kind="matrix")
    y = np.random.default_rng(21).integers(0, 3, 300)
    dX = da.from_array(X, chunks=(75, 120), asarray=False)
    dy = da.from_array(y, chunks=75)
    with pytest.warns(Warning):
        clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, y)
    post = wrappers.ParallelPostFit(clf)
    np.testing.assert_allclose(post.predict_proba(dX).compute(scheduler="sync"),
                               clf.predict_proba(X), rtol=1e-6, atol=1e-7)
    inc = wrappers.Incremental(MLPClassifier((8,), random_state=0), shuffle_blocks=False)
    inc.fit(dX, dy, classes=[0, 1, 2])
    local = MLPClassifier((8,), random_state=0)
    for i in range(0, 300, 75):
        local.partial_fit(X[i:i + 75], y[i:i + 75], classes=[0, 1, 2])
    for A, B in zip(inc.estimator_.coefs_, local.coefs_):
        np.testing.assert_array_equal(A, B)


# -- never densified ------------------------------------------------------------------------

def test_memory_follows_the_non_zeros_and_the_weights():
    """2,000 rows of 2^20 inputs: densified, one batch of all the rows would be 8 GB, X 8 GB
    too; a fit, its predictions and gradients stay within a few copies of the weights."""
    from fastnn import MLPClassifier

    N, K = 2000, 2**20
    X = make_csr(N, K, 10 / K, np.float32, index=np.int64)  # ~10 non-zeros a row
    y = np.random.default_rng(22).integers(0, 2, N)
    net = MLP(K, 2, 2, random_state=0)
    size = net.layers[0].W.nbytes  # 8 MB
    tracemalloc.start()
    try:
        net.fit(X, y, epochs=2, batch_size=N, optimizer="adam", weight_decay=1e-4,
                random_state=0)
        net.predict_proba(X)
        net.gradients(X, y)
        fit_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        MLPClassifier((2,), max_iter=2, batch_size=N, random_state=0).fit(X, y).predict(X)
        estimator_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fit_peak < 16 * size + 2 * X.data.nbytes * 3, fit_peak / size
    assert estimator_peak < 24 * size + 2 * X.data.nbytes * 3, estimator_peak / size
