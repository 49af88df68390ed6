"""fastnn.backends: the layering (only the backend modules import the compiled extension; no
import cycles between fastnn's modules), the backends' agreement, method by method, and the
native backend's own float32 matrix product."""

import ast
import pathlib

import numpy as np
import pytest
import threadpoolctl

import fastnn
import fastnn.functional as F
from fastnn import MLP, _kernels, backends, losses, reference
from fastnn.backends import Ops, native
from helpers import tuning

PACKAGE = pathlib.Path(fastnn.__file__).parent
BACKEND_MODULES = {"fastnn.backends.native_ops"}
MODULES = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
           for p in PACKAGE.rglob("*.py")} | {"fastnn._kernels"}


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """The fastnn modules ``path`` imports when it runs (not those under TYPE_CHECKING)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # (annotations only)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            if base.startswith("fastnn"):
                # "from . import functional" imports a submodule, not the package's
                # __init__ (which Python runs first for any submodule anyway)
                names = {f"{base}.{alias.name}" for alias in node.names}
                submodules = names & MODULES
                found.update(submodules or {base})
                found.update(names - submodules and {base})
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("fastnn"))
    return found


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(p) if m in modules and m != name}
            for name, p in modules.items()}, modules


def test_only_the_backend_modules_import_the_extension():
    importers = {name for name, p in _graph()[1].items() if "fastnn._kernels" in _imports(p)}
    assert importers <= BACKEND_MODULES, importers


def test_fastnn_has_no_import_cycles():
    graph, _ = _graph()
    state = {}

    def visit(node, path):
        state[node] = "active"
        for nxt in graph[node]:
            if state.get(nxt) == "active":
                pytest.fail("import cycle: " + " -> ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])


def test_the_backends_are_objects_chosen_by_name():
    with fastnn.use_backend("numpy"):
        assert type(backends.ops()) is Ops and backends.ops().name == "numpy"
    assert backends.ops() is native() and native().name == "cython"
    assert isinstance(native(), Ops)
    with pytest.raises(ValueError, match="backend must be one of"):
        fastnn.set_backend("jax")


def test_native_ops_agree_with_the_reference_method_by_method(dtype, rng, assert_close):
    ref, nat = Ops(), native()
    X = rng.standard_normal((9, 5)).astype(dtype)
    W = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    for act in ("identity", "relu", "sigmoid", "tanh", "exp", "step"):
        U = nat.linear(X, W, b, act)
        assert_close(U, ref.linear(X, W, b, act), dtype)
        dU = rng.standard_normal(U.shape).astype(dtype)
        for got, want in zip(nat.linear_backward(dU, X, W, U, act, True),
                             ref.linear_backward(dU, X, W, U, act, True)):
            assert_close(got, want, dtype)
        assert_close(nat.activate(X, act), ref.activate(X, act), dtype)
    for log in (False, True):
        assert_close(nat.softmax(X, log), ref.softmax(X, log), dtype)
    for output in ("sigmoid", "softmax", "identity", "exp"):
        assert_close(nat.output_map(X, output), ref.output_map(X, output), dtype)
    Y = np.abs(rng.standard_normal((9, 5))).astype(dtype)
    for name in ("squared_error", "half_squared_error", "poisson"):
        loss = losses.get(name)
        for got, want in zip(nat.loss(loss, X, Y, "sum", True), ref.loss(loss, X, Y, "sum", True)):
            assert_close(np.asarray(got), np.asarray(want), dtype, scale=10.0)
    grad = rng.standard_normal(20).astype(dtype)
    theta = rng.standard_normal(20).astype(dtype)
    (g1, s1), (g2, s2) = nat.penalized_gradient(grad, theta, 12, 0.3), \
        ref.penalized_gradient(grad, theta, 12, 0.3)
    np.testing.assert_allclose(g1, g2, rtol=1e-12)
    assert s1 == pytest.approx(s2, rel=1e-12)


def test_the_plain_network_takes_only_a_finite_c_array_of_the_models_dtype(dtype, rng):
    # predict_proba's one call (``plain_network``): the bits of ``network`` for a finite C
    # array of the layers' dtype; None for anything else, which the model then checks (and
    # names) or converts first; the NumPy backend has no such call
    model = MLP(5, 7, 3, dtype=dtype, random_state=0)
    X = rng.standard_normal((9, 5)).astype(dtype)
    for output in ("softmax", "identity"):
        np.testing.assert_array_equal(native().plain_network(X, model.layers, output),
                                      native().network(X, model.layers, output))
    other = np.float32 if np.dtype(dtype) == np.float64 else np.float64
    bad = X.copy()
    bad[4, 2] = np.nan
    for A in (bad, np.asfortranarray(X), X.astype(other), X[:, :4].copy(), X[0], X[:0],
              X.tolist()):
        assert native().plain_network(A, model.layers, "softmax") is None
    assert Ops().plain_network(X, model.layers, "softmax") is None
    with pytest.raises(ValueError, match="X"):
        model.predict_proba(bad)


# ---------------------------------------------------------------------------------------
# fastnn's own float32 matrix product (fastnn/_gemm.h): C = alpha A B + beta C by register
# tiles with no packing, on an AVX-512 and an AVX2 path (BLAS where the CPU has neither).
#
# The kernels give it the float32 products up to the tuning table's own_gemm multiply-adds
# (those up to blas_small only where BLAS has no small-matrix kernels: own_small, set when
# fastnn.threads loads; X W^T with W as stored only up to own_nt_rows rows or own_nt_units
# units, which the path fixture lifts). Every path the CPU can run is checked against a
# float64 product on awkward shapes (edges of the 4- and 8-row tiles and of the 16- and
# 32-column panels, k = 1), with A read in place or transposed, alpha and beta; then
# through the kernels that use it (linear_backward, and the training loop's forward, dW^T and
# dX) against the NumPy reference, and for the fixed order of its sums (the same bits for a
# product cut into parts).
# ---------------------------------------------------------------------------------------

try:  # the hooks that select the path: the checked build's (FASTNN_CHECKED=1, CI's step 4)
    from fastnn import _testing
except ImportError:
    _testing = None

CPU_PATH = _kernels.gemm_path()
PATHS = [p for p in (2, 1) if p <= CPU_PATH]


@pytest.fixture(params=PATHS or [None], ids=lambda p: {2: "avx512", 1: "avx2"}.get(p, "none"))
def path(request):
    if request.param is None:
        pytest.skip("this CPU has neither AVX-512 nor AVX2 + FMA: BLAS does every product")
    if _testing is None:
        pytest.skip("needs the checked build's hooks (FASTNN_CHECKED=1)")
    assert _testing.gemm_path(request.param) == request.param
    small = _kernels.own_small_products()
    _kernels.own_small_products(True)  # every product up to own_gemm multiply-adds on the path
    with _testing.tuning(own_nt_rows=1 << 62):  # (X W^T's too)
        yield request.param
    _kernels.own_small_products(small)
    _testing.gemm_path(CPU_PATH)


def _product(A, B, C, alpha, beta, transpose_a):
    A64 = A.astype(np.float64)
    return alpha * ((A64.T if transpose_a else A64) @ B.astype(np.float64)) + beta * C


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (3, 7, 1), (4, 16, 5), (5, 17, 9), (8, 32, 3),
                                     (9, 31, 40), (12, 33, 64), (13, 65, 7), (17, 10, 128),
                                     (33, 128, 100), (2, 200, 3),
                                     # AVX2's cache blocks (alpha 1, beta 0): rows in blocks
                                     # of 144, k in 2 and 3 blocks, a masked stripe
                                     (150, 45, 260), (301, 17, 600), (7, 33, 300),
                                     (16, 128, 784)])
def test_the_product_on_awkward_shapes(path, m, n, k, transpose_a):
    rng = np.random.default_rng([m, n, k])
    A = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    for alpha, beta in ((1.0, 0.0), (-0.25, 1.0), (0.5, 0.9)):
        C0 = rng.standard_normal((m, n)).astype(np.float32)
        C = C0.copy()
        if beta == 0.0:
            C[...] = np.nan  # beta = 0: C is written, never read
        assert _testing.own_gemm(A, B, C, alpha, beta, transpose_a)
        want = _product(A, B, C0.astype(np.float64), alpha, beta, transpose_a)
        np.testing.assert_allclose(C, want, rtol=2e-5, atol=2e-5 * np.sqrt(k))


@pytest.mark.parametrize("m, n, k", [(3, 7, 5), (9, 33, 20), (16, 128, 64)])
def test_the_fused_step_adds_the_new_velocity(path, m, n, k):
    # SGD with momentum: v = mu v - lr dW (the product), then W += v on the same pass,
    # the same bits as the two steps apart
    rng = np.random.default_rng([m, n, k, 1])
    A = rng.standard_normal((k, m)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    V = rng.standard_normal((m, n)).astype(np.float32)
    W = rng.standard_normal((m, n)).astype(np.float32)
    V1, W1 = V.copy(), W.copy()
    assert _testing.own_gemm(A, B, V1, -0.1, 0.9, True, P=W1)
    V2 = V.copy()
    assert _testing.own_gemm(A, B, V2, -0.1, 0.9, True)
    np.testing.assert_array_equal(V1, V2)
    np.testing.assert_array_equal(W1, W + V2)


def test_every_entry_sums_in_the_same_order_wherever_it_sits(path):
    # the rows of a product computed alone, or inside tiles of 8, 4 and 1 rows, and inside
    # a panel of columns or at its edge: the same bits (so parts never change the result)
    rng = np.random.default_rng(7)
    A = rng.standard_normal((13, 50)).astype(np.float32)
    B = rng.standard_normal((50, 45)).astype(np.float32)
    whole = np.empty((13, 45), np.float32)
    assert _testing.own_gemm(A, B, whole, 1.0, 0.0)
    for i in range(13):
        for j0, j1 in ((0, 45), (3, 20), (40, 45)):
            part = np.empty((1, j1 - j0), np.float32)
            assert _testing.own_gemm(A[i:i + 1].copy(), B[:, j0:j1].copy(), part, 1.0, 0.0)
            np.testing.assert_array_equal(part[0], whole[i, j0:j1])


def test_a_product_in_cache_blocks_sums_each_entry_in_the_same_order(path):
    # a product large enough for AVX2's cache blocks (k cut into blocks, each tile's sums
    # going on from what C holds) against each row alone (no blocks): the same bits; and
    # against the same product with alpha 1 through the unblocked loop (beta 1 on zeros)
    rng = np.random.default_rng(8)
    for m, transpose_a in ((301, False), (301, True), (16, False)):
        A = rng.standard_normal((600, m) if transpose_a else (m, 600)).astype(np.float32)
        B = rng.standard_normal((600, 45)).astype(np.float32)
        whole = np.empty((m, 45), np.float32)
        assert _testing.own_gemm(A, B, whole, 1.0, 0.0, transpose_a)
        unblocked = np.zeros((m, 45), np.float32)
        assert _testing.own_gemm(A, B, unblocked, 1.0, 1.0, transpose_a)
        np.testing.assert_array_equal(whole, unblocked)
        for i in (0, 5, 12, 15) if m == 16 else (0, 5, 143, 144, 150, 300):
            row = np.empty((1, 45), np.float32)
            a = (A[:, i:i + 1] if transpose_a else A[i:i + 1]).copy()
            assert _testing.own_gemm(a, B, row, 1.0, 0.0, transpose_a)
            np.testing.assert_array_equal(row[0], whole[i])


def test_the_layer_product_sums_each_entry_alike_wherever_it_sits(path):
    # X W^T by fastnn's own product, W's rows as stored (the layers' forward): the 4 x 4 tiles
    # sum their 16 entries' lanes in one tree, the edge tiles one entry at a time, in the same
    # order; so the rows and units of a layer computed inside a tile, at its edges or in a
    # call of their own give the same bits (k = 150: full vectors and a masked tail)
    rng = np.random.default_rng(11)
    X = rng.standard_normal((13, 150)).astype(np.float32)
    W = rng.standard_normal((11, 150)).astype(np.float32)
    with _testing.tuning(small_gemm=0):  # (no product small enough for the scalar loop)
        whole = F.linear(X, W)
        np.testing.assert_allclose(whole, X.astype(np.float64) @ W.T.astype(np.float64),
                                   rtol=2e-5, atol=2e-5 * np.sqrt(150))
        for i0, i1 in ((0, 2), (1, 6), (3, 13), (11, 13)):
            for j0, j1 in ((0, 11), (0, 4), (2, 9), (8, 11), (10, 11)):
                np.testing.assert_array_equal(F.linear(X[i0:i1], W[j0:j1]),
                                              whole[i0:i1, j0:j1])


def test_nan_and_inf_propagate(path):
    A = np.zeros((5, 3), np.float32)
    B = np.ones((3, 20), np.float32)
    B[1, 4] = np.nan
    B[2, 7] = np.inf
    C = np.empty((5, 20), np.float32)
    assert _testing.own_gemm(A, B, C, 1.0, 0.0)
    assert np.isnan(C[:, 4]).all() and np.isnan(C[:, 7]).all()  # 0 * nan, 0 * inf
    assert (C[:, [0, 1, 2, 3, 5, 6] + list(range(8, 20))] == 0).all()


@pytest.mark.parametrize("N, K, M", [(7, 33, 130), (40, 100, 17), (64, 300, 128)])
def test_linear_backward_on_each_path(path, N, K, M, assert_close):
    rng = np.random.default_rng([N, K, M])
    X = rng.standard_normal((N, K)).astype(np.float32)
    W = rng.standard_normal((M, K)).astype(np.float32)
    U = np.maximum(rng.standard_normal((N, M)), 0).astype(np.float32)
    dU = rng.standard_normal((N, M)).astype(np.float32)
    got = F.linear_backward(dU, X, W, U, "relu")
    with fastnn.use_backend("numpy"):
        want = F.linear_backward(dU.astype(np.float64), X.astype(np.float64),
                                 W.astype(np.float64), U.astype(np.float64), "relu")
    for g, w in zip(got, want):
        assert_close(g, w, np.float32)


@pytest.mark.parametrize("N, K, M", [(300, 260, 300), (2000, 300, 10), (1, 3, 2)])
def test_linear_backward_in_parts_gives_the_same_bits_on_any_threads(dtype, N, K, M,
                                                                    assert_close):
    # F.linear_backward's parts (the batch's rows for dZ and dX, then dW's units, or its
    # inputs for a layer of 10 units) are cut by the shapes: the same bits on 1, 2 and 3
    # threads, against float64 NumPy; the fast path (C arrays) and the validating path (a
    # Fortran-ordered X, copied) give the same bits
    rng = np.random.default_rng([N, K, M])
    X = rng.standard_normal((N, K)).astype(dtype)
    W = rng.standard_normal((M, K)).astype(dtype)
    U = np.tanh(rng.standard_normal((N, M))).astype(dtype)
    dU = rng.standard_normal((N, M)).astype(dtype)
    got = []
    for threads in (1, 2, 3):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"):
            got.append(F.linear_backward(dU, X, W, U, "tanh"))
    for other in got[1:] + [F.linear_backward(dU, np.asfortranarray(X), W, U, "tanh")]:
        for g, o in zip(got[0], other):
            np.testing.assert_array_equal(g, o)
    want = reference.linear_backward(dU.astype(np.float64), X.astype(np.float64),
                                     W.astype(np.float64), U.astype(np.float64), "tanh")
    for g, w in zip(got[0], want):
        assert g.dtype == dtype
        assert_close(g, w, dtype, scale=max(N, K, M) ** 0.5)
    dX, dW, db = F.linear_backward(dU, X, W, U, "tanh", need_dX=False)
    assert dX is None
    np.testing.assert_array_equal(dW, got[0][1])
    np.testing.assert_array_equal(db, got[0][2])
    with pytest.raises(TypeError, match="need_dX"):
        F.linear_backward(dU, X, W, U, "tanh", need_dX=1)


@pytest.mark.parametrize("units", [129, 300])
def test_a_small_batchs_layer_split_by_units(dtype, units, assert_close):
    # F.linear of up to unit_rows rows and more than 128 units: its units in blocks shared
    # by the threads. Against float64 NumPy, the same bits on 1 and 2 threads, and (the
    # checked build) those of the same rows in one part
    rng = np.random.default_rng(units)
    W = rng.standard_normal((units, 200)).astype(dtype)
    b = rng.standard_normal(units).astype(dtype)
    for N in sorted({2, 5, tuning()["unit_rows"]}):
        X = rng.standard_normal((N, 200)).astype(dtype)
        got = []
        for threads in (1, 2):
            with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"):
                got.append(F.linear(X, W, b, "tanh"))
        np.testing.assert_array_equal(got[0], got[1])
        want = reference.linear(X.astype(np.float64), W.astype(np.float64),
                                b.astype(np.float64), "tanh")
        assert_close(got[0], want, dtype)
        if _testing is not None and N < 2 * tuning()["part_rows"]:
            with _testing.tuning(unit_rows=0):
                np.testing.assert_array_equal(F.linear(X, W, b, "tanh"), got[0])


def _frozen_layer(n_in, units, activation, N, seed):
    """A one-layer model of a frozen float32 Linear (its W^T in panels), N rows of X and the
    layer's output on them by fastnn.reference in float64."""
    layer = fastnn.Linear(n_in, units, activation, random_state=0).freeze()
    assert layer._packed is not None
    X = np.random.default_rng(seed).standard_normal((N, n_in)).astype(np.float32)
    want = reference.linear(X.astype(np.float64), layer.W.astype(np.float64),
                            layer.b.astype(np.float64), activation)
    return fastnn.Sequential([layer], loss="squared_error"), X, want


@pytest.mark.parametrize("n_in, units", [(1, 128), (40, 129), (33, 200), (300, 384)])
def test_a_frozen_layers_panels_on_each_path(path, n_in, units, assert_close):
    # the packed W^T of a frozen float32 layer (Linear.freeze): panels of 128 units, the last
    # narrower (1 or 72 units here: AVX2's masked halves, AVX-512's masked vectors). A sample
    # against float64 NumPy, and its bits against its row in a batch (fastnn's own product on
    # the same panels: each unit one fused chain over the inputs in order), on 1 and 2
    # threads
    model, X, want = _frozen_layer(n_in, units, "tanh", 6, [n_in, units])
    batch = model.predict(X)
    assert_close(batch, want, np.float32)
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"):
            for i in range(len(X)):
                np.testing.assert_array_equal(model.predict(X[i]), batch[i])


def test_a_frozen_layers_panels_by_the_plain_loop(assert_close):
    # a CPU with neither AVX-512 nor AVX2 + FMA: the panels' plain loop of fmaf chains
    if _testing is None:
        pytest.skip("needs the checked build's hooks (FASTNN_CHECKED=1)")
    model, X, want = _frozen_layer(33, 200, "sigmoid", 3, 4)
    fast = [model.predict(x) for x in X]
    try:
        assert _testing.gemm_path(0) == 0
        for x, w, f in zip(X, want, fast):
            got = model.predict(x)
            assert_close(got, w, np.float32)
            np.testing.assert_array_equal(got, f)  # (one fused chain a unit on every path)
    finally:
        _testing.gemm_path(CPU_PATH)


def test_a_frozen_layers_batch_takes_the_panels_product_up_to_own_panels(assert_close):
    # a frozen layer's batch up to own_panels (here above the tuning table's own_gemm, where
    # an unfrozen layer's product is BLAS's) is fastnn's own product on the panels: each row
    # gets the bits of its sample alone, whichever part of the batch it falls in
    N, n_in, units = 1100, 120, 260
    assert tuning()["own_gemm"] < N * n_in * units <= tuning()["own_panels"]
    model, X, want = _frozen_layer(n_in, units, "relu", N, 3)
    batch = model.predict(X)
    assert_close(batch, want, np.float32)
    for i in (0, 1, 517, N - 1):
        np.testing.assert_array_equal(model.predict(X[i]), batch[i])
    np.testing.assert_array_equal(model.predict(X[500:900]), batch[500:900])


def test_a_frozen_layers_batch_above_own_panels_is_blas_product_of_w(assert_close):
    # above own_panels (AVX2 CPUs: 2^28 multiply-adds) the batch is BLAS's product of W
    if _testing is None:
        pytest.skip("needs the checked build's hooks (FASTNN_CHECKED=1)")
    model, X, want = _frozen_layer(120, 260, "relu", 300, 5)
    with _testing.tuning(own_panels=300 * 120 * 260 - 1):
        got = model.predict(X)
    assert_close(got, want, np.float32)
    np.testing.assert_array_equal(model.predict(X[:10]), model.predict(X)[:10])


def test_own_panels_weighs_the_whole_batch_not_its_parts():
    # the threshold compares the batch's product, which the call cuts into parts (each
    # under it here): one above it is BLAS's product of W in every part, one at it the panels
    if _testing is None:
        pytest.skip("needs the checked build's hooks (FASTNN_CHECKED=1)")
    N, n_in, units = 4096, 120, 260
    model, X, want = _frozen_layer(n_in, units, "relu", N, 6)
    with _testing.tuning(own_panels=0):
        blas = model.predict(X)
    with _testing.tuning(own_panels=1 << 62):
        panels = model.predict(X)
    assert not np.array_equal(blas, panels)  # (the two round differently somewhere)
    with _testing.tuning(own_panels=N * n_in * units - 1):
        np.testing.assert_array_equal(model.predict(X), blas)
    with _testing.tuning(own_panels=N * n_in * units):
        np.testing.assert_array_equal(model.predict(X), panels)


@pytest.mark.parametrize("shape", [(64, (128,), 10, 32, 400),    # small: W^T, small products
                                   (784, (128,), 10, 128, 640),  # mid-size, held transposed
                                   (30, (50, 40), 3, 16, 200)])  # deeper, dX of hidden layers
def test_a_float32_fit_on_each_path_agrees_with_the_reference(path, shape):
    # (and gives the same bits with 1 and 2 threads)
    n_in, hidden, n_out, batch, N = shape
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, n_in)).astype(np.float32)
    y = rng.integers(0, n_out, N)
    fits = []
    for backend, threads in (("cython", 1), ("cython", 2), ("numpy", 2)):
        model = MLP(n_in, hidden, n_out, random_state=0)
        with fastnn.use_backend(backend), \
                threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"):
            model.fit(X, y, epochs=2, batch_size=batch, lr=0.02, momentum=0.9, random_state=0)
        fits.append([A for W, b in model.parameters() for A in (W, b)])
    for A, B in zip(fits[0], fits[1]):  # 1 and 2 threads: the same bits
        np.testing.assert_array_equal(A, B)
    for A, B in zip(fits[0], fits[2]):
        np.testing.assert_allclose(A, B, rtol=2e-3, atol=2e-4)


def test_small_products_agree_with_the_reference_on_either_side_of_own_small(assert_close):
    """fastnn's own product or BLAS's small-matrix kernels take the float32 products between
    the tuning table's small_gemm and blas_small, as own_small says (set at import from the
    BLAS loaded; a speed choice, not asserted here): either way linear and linear_backward
    give the reference's values."""
    T = tuning()
    N = max(2, (T["small_gemm"] + T["blas_small"]) // 2 // (64 * 100))  # between the two
    rng = np.random.default_rng(4)
    X = rng.standard_normal((N, 64)).astype(np.float32)
    W = (rng.standard_normal((100, 64)) / 8).astype(np.float32)
    b = rng.standard_normal(100).astype(np.float32)
    dU = rng.standard_normal((N, 100)).astype(np.float32)
    with fastnn.use_backend("numpy"):
        U64 = F.linear(*(A.astype(np.float64) for A in (X, W, b)), "tanh")
        want = F.linear_backward(dU.astype(np.float64), X.astype(np.float64),
                                 W.astype(np.float64), U64, "tanh")
    before = _kernels.own_small_products()
    try:
        for own in (False, True):
            _kernels.own_small_products(own)
            U = F.linear(X, W, b, "tanh")
            assert_close(U, U64, np.float32)
            for got, expected in zip(F.linear_backward(dU, X, W, U64.astype(np.float32),
                                                       "tanh"), want):
                assert_close(got, expected, np.float32, scale=10.0)
    finally:
        _kernels.own_small_products(before)
