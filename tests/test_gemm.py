"""fastnn's own float32 matrix product (fastnn/_gemm.h): C = alpha A B + beta C by register
tiles with no packing, on an AVX-512 and an AVX2 path (BLAS where the CPU has neither).

The kernels give it the float32 products up to 2^25 multiply-adds (those up to 2^20 only where
BLAS has no small-matrix kernels: fastnn.functional decides at import). Every path the CPU
can run is checked against a float64 product on awkward shapes (edges of
the 4- and 8-row tiles and of the 16- and 32-column panels, k = 1), with A read in place or
transposed, alpha and beta; then through the kernels that use it (linear_backward, and the
training loop's forward, dW^T and dX) against the NumPy reference, and for the fixed order of
its sums (the same bits for a product cut into parts)."""

import numpy as np
import pytest

import fastnn
import fastnn.functional as F
from fastnn import MLP, _kernels

threadpoolctl = pytest.importorskip("threadpoolctl")
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
    _kernels.own_small_products(True)  # every product up to 2^25 multiply-adds on the path
    yield request.param
    _kernels.own_small_products(small)
    _testing.gemm_path(CPU_PATH)


def _product(A, B, C, alpha, beta, transpose_a):
    A64 = A.astype(np.float64)
    return alpha * ((A64.T if transpose_a else A64) @ B.astype(np.float64)) + beta * C


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (3, 7, 1), (4, 16, 5), (5, 17, 9), (8, 32, 3),
                                     (9, 31, 40), (12, 33, 64), (13, 65, 7), (17, 10, 128),
                                     (33, 128, 100), (2, 200, 3)])
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


def test_small_products_go_to_blas_where_it_has_small_matrix_kernels():
    from fastnn import threads

    expected = any(lib.internal_api == "openblas" and str(lib.architecture).lower()
                   not in threads._SMALL_KERNEL_CORES for lib in threads._blas_libraries())
    assert _kernels.own_small_products() == expected
