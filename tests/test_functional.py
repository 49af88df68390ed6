"""fastnn.functional against the NumPy oracle fastnn.reference, on both backends and dtypes,
and its gradients against central finite differences.

The expected values are the reference evaluated in float64 on the very values the tested
call sees (float32 inputs are cast up after rounding), so a float32 result is judged only by
its own rounding, with the tolerances of conftest.TOLERANCES.
"""

import os
import platform
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastnn
from fastnn import _kernels
from fastnn import functional as F
from fastnn import reference as R
from helpers import same_bits, tuning

ACTIVATIONS = R.ACTIVATIONS
REDUCTIONS = ("mean", "sum", "none")

# Shapes on both sides of the tuning table's thresholds (fastnn/_tuning.pyx; read, never
# asserted): the compiled kernel takes direct loops while N*N_in*N_out <= small_gemm and BLAS
# above; its elementwise passes that evaluate exp use the threads from parallel_elements
# elements (N*N_out) on.
SMALL_GEMM = tuning()["small_gemm"]
PARALLEL = tuning()["parallel_elements"]
_N_GEMM = max(2, SMALL_GEMM // 256)  # (N, 16, 16): N*256 multiply-adds
_N_OMP = max(2, PARALLEL // 512)  # (N, 4, 512): N*512 elements

# (N, N_in, N_out)
LINEAR_SHAPES = [
    pytest.param((1, 1, 1), id="1x1->1"),
    pytest.param((1, 5, 3), id="N=1"),
    pytest.param((6, 1, 4), id="N_in=1"),
    pytest.param((5, 3, 1), id="N_out=1"),
    pytest.param((4, 2, 3), id="tiny-4x2->3"),
    pytest.param((_N_GEMM - 1, 16, 16), id="gemm-below-small_gemm"),
    pytest.param((_N_GEMM, 16, 16), id="gemm-at-small_gemm"),
    pytest.param((_N_GEMM + 1, 16, 16), id="gemm-above-small_gemm"),
    pytest.param((255, 8, 128), id="255x8->128"),
    pytest.param((256, 8, 128), id="256x8->128"),
    pytest.param((_N_OMP - 1, 4, 512), id="omp-below-parallel_elements"),
    pytest.param((_N_OMP, 4, 512), id="omp-at-parallel_elements"),
    pytest.param((128, 784, 128), id="mid-128x784->128"),
    pytest.param((2, 50, 1000), id="N_out=1000"),
]


def _check_linear(U, X, W, b, activation, dtype, assert_close):
    """U against the reference, forgiving only step's outputs whose Z is within rounding of 0."""
    X64, W64 = X.astype(np.float64), W.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    Z = R.linear(X64, W64, b64, "identity")
    expected = R.activate(Z, activation)
    if activation == "step":
        decided = np.abs(Z) > 1e-3
        assert np.isin(U, (0, 1)).all()
        np.testing.assert_array_equal(U[decided], expected[decided])
    else:
        assert_close(U, expected, dtype)


# ---------------------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", LINEAR_SHAPES)
def test_linear_matches_reference(backend, dtype, shape, activation, with_bias, make_layer,
                                  assert_close):
    N, n_in, n_out = shape
    X, W, b = make_layer(N, n_in, n_out, dtype)
    b = b if with_bias else None
    U = F.linear(X, W, b, activation)
    assert isinstance(U, np.ndarray)
    assert U.dtype == dtype
    assert U.shape == (N, n_out)
    assert U.flags.c_contiguous
    _check_linear(U, X, W, b, activation, dtype, assert_close)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_default_activation_is_identity(backend, dtype, activation, make_layer):
    X, W, b = make_layer(4, 3, 2, dtype)
    Z = F.linear(X, W, b)
    np.testing.assert_array_equal(Z, F.linear(X, W, b, "identity"))
    np.testing.assert_array_equal(F.linear(X, W, b, activation), F.activate(Z, activation))


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("activation", ["identity", "relu", "sigmoid", "exp"])
@pytest.mark.parametrize("shape", [(4, 2, 3), (_N_GEMM + 1, 16, 16), (256, 8, 128),
                                   (_N_OMP, 4, 512)], ids=["tiny", "blas", "mid", "omp"])
def test_linear_out(backend, dtype, shape, activation, with_bias, make_layer):
    X, W, b = make_layer(*shape, dtype)
    b = b if with_bias else None
    expected = F.linear(X, W, b, activation)
    out = np.full((shape[0], shape[2]), np.nan, dtype=dtype)
    result = F.linear(X, W, b, activation, out=out)
    assert result is out
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_out_single_sample(backend, dtype, activation, make_layer, assert_close):
    X, W, b = make_layer(3, 5, 4, dtype)
    out = np.full(4, np.nan, dtype=dtype)
    result = F.linear(X[1], W, b, activation, out=out)
    assert result is out
    assert_close(out, F.linear(X, W, b, activation)[1], dtype)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(4, 2, 3), (3, 1, 1), (5, 64, 100)],
                         ids=["tiny", "N_in=1", "blas"])
def test_linear_single_sample_is_row_of_batch(backend, dtype, shape, activation, with_bias,
                                              make_layer, assert_close):
    X, W, b = make_layer(*shape, dtype)
    b = b if with_bias else None
    batch = F.linear(X, W, b, activation)
    for i in range(X.shape[0]):
        u = F.linear(X[i], W, b, activation)
        assert u.shape == (shape[2],)
        assert u.dtype == dtype
        assert_close(u, batch[i], dtype)


# ---------------------------------------------------------------------------------------
# linear on one sample (N = 1): fastnn's own gemv, z_j = sum_k W_jk x_k + b_j in a fixed
# order (fnn_gemv in _fastmath.h): on awkward shapes (K = 1, K not a multiple of 16, M = 1,
# M odd, K = 784, a W large enough to split its rows among the threads), every activation,
# with and without bias; NaN and inf as the reference gives them; strided, Fortran-ordered and
# 1-D inputs; the same bits for 1, 2 and 3 threads and for every instruction-set build
# ---------------------------------------------------------------------------------------

ONE_SAMPLE_SPLIT = tuning()["split_gemv"]  # M * K from which one sample's layer uses threads
K_SPLIT = 1000
M_SPLIT = (ONE_SAMPLE_SPLIT // K_SPLIT + 40) | 1  # odd, and M * K above the split size

# (M, K) = (N_out, N_in) of one sample's layer
GEMV_SHAPES = [
    pytest.param((1, 1), id="1x1"),
    pytest.param((3, 1), id="K=1"),
    pytest.param((1, 784), id="M=1"),
    pytest.param((5, 16), id="K=16"),
    pytest.param((7, 17), id="K=17"),
    pytest.param((33, 15), id="M=33,K=15"),
    pytest.param((10, 256), id="10x256"),
    pytest.param((256, 784), id="256x784"),
    pytest.param((31, 1000), id="M=31,K=1000"),
    pytest.param((M_SPLIT, K_SPLIT), id="split"),
]


def _one_sample_layer(M, K, dtype, seed=0):
    rng = np.random.default_rng([seed, M, K])
    x = rng.standard_normal((1, K)).astype(dtype)
    W = (rng.standard_normal((M, K)) / np.sqrt(K)).astype(dtype)
    b = (0.5 * rng.standard_normal(M)).astype(dtype)
    return x, W, b


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", GEMV_SHAPES)
def test_one_sample_matches_reference(dtype, shape, activation, with_bias, assert_close):
    M, K = shape
    x, W, b = _one_sample_layer(M, K, dtype)
    b = b if with_bias else None
    U = F.linear(x, W, b, activation)
    assert U.shape == (1, M) and U.dtype == dtype
    _check_linear(U, x, W, b, activation, dtype, assert_close)
    u = F.linear(x[0], W, b, activation)  # 1-D x: the same call without the batch axis
    assert u.shape == (M,) and same_bits(u, U[0])


@pytest.mark.parametrize("shape", [(4, 7), (5, 40), (M_SPLIT, K_SPLIT)], ids=["short", "long",
                                                                              "split"])
def test_one_sample_nan_and_inf_as_the_reference(dtype, shape):
    M, K = shape
    x, W, b = _one_sample_layer(M, K, dtype)
    x[0, 3] = np.inf
    W[0, 3] = 0.0  # 0 * inf = NaN
    W[1, 3] = 2.0  # + inf
    W[2, 3] = -2.0  # - inf
    if K > 5:
        x[0, 5] = -np.inf
        W[:3, 5] = 0.0, -1.0, 1.0  # rows 0 to 2 as above
        W[3, 3], W[3, 5] = 1.0, 1.0  # inf - inf = NaN
    W[M - 1, K - 1] = np.nan  # NaN in the last term (the tail of a row)
    b[1] = -np.inf  # inf + -inf = NaN
    with np.errstate(invalid="ignore", over="ignore"):
        # the reference on the same values, and the product written term by term (no term
        # skipped: 0 * inf is NaN)
        Z = R.linear(x.astype(np.float64), W.astype(np.float64), b.astype(np.float64))
        terms = (x.astype(np.float64)[:, None, :] * W.astype(np.float64)[None]).sum(-1) + b
        np.testing.assert_array_equal(np.isnan(Z), np.isnan(terms))
        assert np.isnan(Z[0, [0, 1, M - 1]]).all() and Z[0, 2] == -np.inf
        for activation in ACTIVATIONS:
            U = F.linear(x, W, b, activation)
            expected = R.activate(Z, activation)
            special = ~np.isfinite(expected) | ~np.isfinite(Z)
            np.testing.assert_array_equal(U[special], expected[special].astype(dtype),
                                          err_msg=activation)
        x[0, 0] = np.nan  # a NaN input: every z is NaN; step maps NaN to 0 as the reference
        for activation in ACTIVATIONS:
            U = F.linear(x, W, b, activation)
            assert (U == 0).all() if activation == "step" else np.isnan(U).all(), activation


@pytest.mark.parametrize("shape", [(9, 33), (256, 784), (M_SPLIT, K_SPLIT)],
                         ids=["small", "256x784", "split"])
def test_one_sample_any_layout(dtype, shape, assert_close):
    """Strided, Fortran-ordered, read-only and list inputs go through the validation (copies)
    and then the same kernel: the bits of the plain call."""
    M, K = shape
    x, W, b = _one_sample_layer(M, K, dtype)
    want = F.linear(x, W, b, "tanh")
    big = np.zeros((3, 2 * K), dtype)
    big[1, ::2] = x[0]
    x_strided = big[1:2, ::2]
    W_readonly = W.copy()
    W_readonly.flags.writeable = False
    b_reversed = b[::-1].copy()[::-1]  # negative stride
    for X1, W1, b1 in [(x_strided, W, b), (np.asfortranarray(x), np.asfortranarray(W), b),
                       (x, W_readonly, b_reversed), (x[0], W[:, :], b)]:
        got = F.linear(X1, W1, b1, "tanh")
        assert same_bits(got.reshape(want.shape), want)
    got = F.linear(x.tolist(), W, b, "tanh")  # computed in the dtype the validation picks
    _check_linear(got, x, W, b, "tanh", got.dtype, assert_close)


# the same bits for any thread count and any instruction set


@pytest.mark.parametrize("activation", ["identity", "relu", "sigmoid"])
def test_one_sample_same_bits_for_one_and_two_threads(dtype, activation):
    assert M_SPLIT * K_SPLIT >= ONE_SAMPLE_SPLIT
    results = {}
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="openmp"):
            results[threads] = [F.linear(*_one_sample_layer(M, K, dtype), activation)
                                for M, K in [(M_SPLIT, K_SPLIT), (M_SPLIT + 16, 999), (48, 5000)]]
    assert same_bits(results[1], results[2])


ONE_SAMPLE_CHILD = textwrap.dedent("""
    import hashlib
    import numpy as np
    import fastnn
    from fastnn import functional as F
    h = hashlib.sha256()
    for dtype in ("float32", "float64"):
        net = fastnn.MLP(784, 256, 10, dtype=dtype, random_state=0)
        X = np.random.default_rng(1).random((3, 784)).astype(dtype)
        for x in (X[:1], X[1:2], X):
            h.update(net.predict_proba(x).tobytes())
            h.update(net.decision_function(x).tobytes())
        rng = np.random.default_rng(2)
        for M, K in [(161, 1000), (1024, 129), (33, 4000), (2048, 2100)]:
            W = rng.standard_normal((M, K)).astype(dtype)
            h.update(F.linear(rng.standard_normal(K).astype(dtype), W, None, "exp").tobytes())
    print(fastnn.get_num_threads(), h.hexdigest())
""")


def test_one_sample_same_bits_for_any_omp_num_threads():
    """fastnn takes its thread count from OMP_NUM_THREADS when it loads: one sample's layers
    and small batches give the same bits on 1, 2 and 3 threads."""
    digests = set()
    for threads in ("1", "2", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        proc = subprocess.run([sys.executable, "-c", ONE_SAMPLE_CHILD], capture_output=True,
                              text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        count, digest = proc.stdout.split()
        assert count == threads
        digests.add(digest)
    assert len(digests) == 1


C_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "_fastmath.h"
/* stdin: M K, then W (M*K) and x (K) as float32, then the same as float64;
   stdout: z = W x for both, raw bytes */
int main(void) {
    long M, K;
    if (scanf("%ld %ld", &M, &K) != 2) return 1;
    getchar();
    float *Wf = malloc(4 * M * K), *xf = malloc(4 * K), *zf = malloc(4 * M);
    double *Wd = malloc(8 * M * K), *xd = malloc(8 * K), *zd = malloc(8 * M);
    if (fread(Wf, 4, M * K, stdin) != (size_t)(M * K) || fread(xf, 4, K, stdin) != (size_t)K
        || fread(Wd, 8, M * K, stdin) != (size_t)(M * K) || fread(xd, 8, K, stdin) != (size_t)K)
        return 2;
    fnn_gemv_f(Wf, xf, NULL, zf, 1, M, 0, M, K);
    fnn_gemv_d(Wd, xd, NULL, zd, 1, M, 0, M, K);
    fwrite(zf, 4, M, stdout);
    fwrite(zd, 8, M, stdout);
    return 0;
}
"""


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@pytest.mark.skipif(platform.machine() != "x86_64" or sys.platform != "linux"
                    or shutil.which("gcc") is None, reason="gcc on x86-64 Linux")
def test_every_instruction_set_gives_the_same_bits(tmp_path):
    """The kernel built for AVX-512, AVX2 and the x86-64 baseline alone (no clones) gives
    the bits of the extension on the same inputs (with the extension's floating-point flags)."""
    header = os.path.join(os.path.dirname(os.path.abspath(_kernels.__file__)), "_fastmath.h")
    if not os.path.exists(header):
        pytest.skip("_fastmath.h is not installed next to the extension")
    source = tmp_path / "driver.c"
    source.write_text(C_DRIVER)
    flags = _cpu_flags()
    targets = {"baseline": [], "avx2": ["-mavx2"], "avx512f": ["-mavx512f"]}
    targets = {k: v for k, v in targets.items() if not v or v[0][2:] in flags}
    rng = np.random.default_rng(3)
    for M, K in [(1, 1), (7, 17), (33, 784), (5, 1003)]:
        W = rng.standard_normal((M, K)) * rng.choice([1e-3, 1.0, 1e3], size=(M, K))
        x = rng.standard_normal(K)
        data = (f"{M} {K}\n".encode() + W.astype(np.float32).tobytes()
                + x.astype(np.float32).tobytes() + W.tobytes() + x.tobytes())
        want = (F.linear(x.astype(np.float32), W.astype(np.float32)).tobytes()
                + F.linear(x, W).tobytes())
        for name, march in targets.items():
            exe = tmp_path / name
            if not exe.exists():
                subprocess.run(["gcc", "-O3", "-DFNN_NO_CLONES", "-fno-trapping-math",
                                "-ffp-contract=off", "-fno-math-errno", *march,
                                "-I", os.path.dirname(header), str(source), "-o", str(exe)],
                               check=True, capture_output=True)
            out = subprocess.run([str(exe)], input=data, capture_output=True, check=True)
            assert out.stdout == want, (name, M, K)


# ---------------------------------------------------------------------------------------
# linear_backward
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("need_dX", [True, False], ids=["dX", "no-dX"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", LINEAR_SHAPES)
def test_linear_backward_matches_reference(backend, dtype, shape, activation, need_dX,
                                           make_layer, rng, assert_close):
    N, n_in, n_out = shape
    X, W, b = make_layer(N, n_in, n_out, dtype)
    U = R.linear(X, W, b, activation).astype(dtype)  # the forward output fed back
    dU = rng.standard_normal((N, n_out)).astype(dtype)
    dX, dW, db = F.linear_backward(dU, X, W, U, activation, need_dX=need_dX)
    eX, eW, eb = R.linear_backward(*(A.astype(np.float64) for A in (dU, X, W, U)), activation)
    assert dW.shape == (n_out, n_in) and dW.dtype == dtype
    assert db.shape == (n_out,) and db.dtype == dtype
    assert_close(dW, eW, dtype)
    assert_close(db, eb, dtype)
    if need_dX:
        assert dX.shape == (N, n_in) and dX.dtype == dtype
        assert_close(dX, eX, dtype)
    else:
        assert dX is None
    if activation == "step":  # flat almost everywhere: no gradient flows
        assert not dW.any() and not db.any()
        assert dX is None or not dX.any()


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_backward_default_activation_is_identity(backend, dtype, activation, make_layer,
                                                        rng):
    X, W, b = make_layer(5, 4, 3, dtype)
    U = F.linear(X, W, b)
    dU = rng.standard_normal(U.shape).astype(dtype)
    default = F.linear_backward(dU, X, W, U)
    explicit = F.linear_backward(dU, X, W, U, "identity", need_dX=True)
    for a, e in zip(default, explicit):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("need_dX", [True, False], ids=["dX", "no-dX"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_backward_single_sample(backend, dtype, activation, need_dX, make_layer, rng,
                                       assert_close):
    X, W, b = make_layer(3, 4, 5, dtype)
    U = F.linear(X, W, b, activation)
    dU = rng.standard_normal(U.shape).astype(dtype)
    for i in range(3):
        dx, dW, db = F.linear_backward(dU[i], X[i], W, U[i], activation, need_dX=need_dX)
        eX, eW, eb = F.linear_backward(dU[i:i + 1], X[i:i + 1], W, U[i:i + 1], activation)
        assert dW.shape == (5, 4) and db.shape == (5,)
        assert_close(dW, eW, dtype)
        assert_close(db, eb, dtype)
        if need_dX:
            assert dx.shape == (4,) and dx.dtype == dtype
            assert_close(dx, eX[0], dtype)
        else:
            assert dx is None


def test_linear_backward_sums_over_the_batch(backend, dtype, make_layer, rng, assert_close):
    """dW and db of a batch are the sums of the per-sample gradients (eq. 16: L = sum_i)."""
    X, W, b = make_layer(6, 3, 2, dtype)
    U = F.linear(X, W, b, "tanh")
    dU = rng.standard_normal(U.shape).astype(dtype)
    _, dW, db = F.linear_backward(dU, X, W, U, "tanh")
    per_sample = [F.linear_backward(dU[i], X[i], W, U[i], "tanh") for i in range(6)]
    assert_close(dW, sum(g[1].astype(np.float64) for g in per_sample), dtype)
    assert_close(db, sum(g[2].astype(np.float64) for g in per_sample), dtype)


# ---------------------------------------------------------------------------------------
# activate, activation_grad, sigmoid
# ---------------------------------------------------------------------------------------

ELEMENTWISE_SHAPES = [
    pytest.param((1,), id="1"),
    pytest.param((7,), id="7"),
    pytest.param((3, 4), id="3x4"),
    pytest.param((2, 3, 4), id="2x3x4"),
    pytest.param((4097,), id="4097"),
    pytest.param((200, 200), id="200x200"),
    pytest.param((int(PARALLEL ** 0.5) + 1,) * 2, id="square-openmp"),
    pytest.param((0,), id="empty"),
    pytest.param((0, 3), id="empty-0x3"),
]


def _elementwise_input(rng, shape, dtype):
    Z = (2 * rng.standard_normal(shape)).astype(dtype)
    if Z.size:
        Z.flat[0] = 0.0  # g(0): step 1 (eq. 2), relu 0
    if Z.size > 1:
        Z.flat[-1] = -0.0
    return Z


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_activate_matches_reference(backend, dtype, shape, activation, rng, assert_close):
    Z = _elementwise_input(rng, shape, dtype)
    U = F.activate(Z, activation)
    assert U.shape == shape and U.dtype == dtype
    expected = R.activate(Z.astype(np.float64), activation)
    if activation in ("step", "relu", "identity"):
        np.testing.assert_array_equal(U, expected)  # exact: no rounding involved
    else:
        assert_close(U, expected, dtype)
    if Z.size and activation == "step":
        assert U.flat[0] == 1  # eq. 2: g(0) = 1
    if Z.size and activation == "relu":
        assert U.flat[0] == 0


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_activation_grad_matches_reference(backend, dtype, shape, activation, rng,
                                           assert_close):
    U = R.activate(_elementwise_input(rng, shape, np.float64), activation).astype(dtype)
    G = F.activation_grad(U, activation)
    assert G.shape == shape and G.dtype == dtype
    assert_close(G, R.activation_grad(U.astype(np.float64), activation), dtype)


@pytest.mark.parametrize(
    "activation, z, u, g",
    [
        ("identity", [-2.0, 0.0, 3.0], [-2.0, 0.0, 3.0], [1.0, 1.0, 1.0]),
        ("step", [-2.0, 0.0, 3.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]),
        ("relu", [-2.0, 0.0, 3.0], [0.0, 0.0, 3.0], [0.0, 0.0, 1.0]),
        ("sigmoid", [0.0, np.log(3.0)], [0.5, 0.75], [0.25, 0.1875]),
        ("tanh", [0.0, np.log(2.0)], [0.0, 0.6], [1.0, 0.64]),
        ("exp", [0.0, np.log(2.0)], [1.0, 2.0], [1.0, 2.0]),
    ],
)
def test_activation_known_values(backend, dtype, activation, z, u, g, assert_close):
    U = F.activate(np.array(z, dtype=dtype), activation)
    assert_close(U, u, dtype)
    assert_close(F.activation_grad(U, activation), g, dtype)


@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_sigmoid(backend, dtype, shape, rng, tol, assert_close):
    Z = _elementwise_input(rng, shape, dtype)
    S = F.sigmoid(Z)
    assert S.shape == shape and S.dtype == dtype
    np.testing.assert_allclose(S, 1 / (1 + np.exp(-Z.astype(np.float64))), **tol)
    assert_close(S, R.sigmoid(Z.astype(np.float64)), dtype)
    np.testing.assert_array_equal(S, F.activate(Z, "sigmoid"))


@pytest.mark.parametrize("func", [
    pytest.param(lambda z: F.activate(z, "relu"), id="activate"),
    pytest.param(lambda z: F.activation_grad(z, "tanh"), id="activation_grad"),
    pytest.param(F.sigmoid, id="sigmoid"),
])
def test_elementwise_keeps_0d_shape(backend, dtype, func):
    result = func(np.array(0.5, dtype=dtype))
    assert result.shape == ()


# ---------------------------------------------------------------------------------------
# softmax, log_softmax
# ---------------------------------------------------------------------------------------

SOFTMAX_SHAPES = [
    pytest.param((1, 1), id="1x1"),
    pytest.param((1, 2), id="1x2"),
    pytest.param((4, 2), id="K=2"),
    pytest.param((5, 3), id="5x3"),
    pytest.param((3, 1000), id="K=1000"),
    pytest.param((300, 128), id="300x128"),
    pytest.param((40, 1000), id="K=1000-40k"),
    pytest.param((PARALLEL // 1000 + 1, 1000), id="openmp-K=1000"),
]


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_softmax_matches_reference(backend, dtype, shape, rng, assert_close):
    Z = (3 * rng.standard_normal(shape)).astype(dtype)
    P = F.softmax(Z)
    assert P.shape == shape and P.dtype == dtype
    assert_close(P, R.softmax(Z.astype(np.float64)), dtype)
    assert (P >= 0).all()
    assert_close(P.sum(axis=1), np.ones(shape[0]), dtype)


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_log_softmax_matches_reference(backend, dtype, shape, rng, assert_close):
    Z = (3 * rng.standard_normal(shape)).astype(dtype)
    L = F.log_softmax(Z)
    assert L.shape == shape and L.dtype == dtype
    assert_close(L, R.log_softmax(Z.astype(np.float64)), dtype)
    assert (L <= 0).all()
    assert_close(np.exp(L.astype(np.float64)), F.softmax(Z), dtype)


@pytest.mark.parametrize("func", [F.softmax, F.log_softmax], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("K", [1, 2, 7, 1000])
def test_softmax_single_sample_is_row_of_batch(backend, dtype, func, K, rng, assert_close):
    Z = rng.standard_normal((3, K)).astype(dtype)
    batch = func(Z)
    for i in range(3):
        row = func(Z[i])
        assert row.shape == (K,) and row.dtype == dtype
        assert_close(row, batch[i], dtype)


def test_softmax_known_values(backend, dtype, assert_close):
    # eq. 5 by hand: e^z / sum e^z for z = (0, ln 2, ln 5) is (1, 2, 5) / 8
    z = np.array([0.0, np.log(2.0), np.log(5.0)], dtype=dtype)
    assert_close(F.softmax(z), [1 / 8, 2 / 8, 5 / 8], dtype)
    assert_close(F.log_softmax(z), np.log([1 / 8, 2 / 8, 5 / 8]), dtype)
    # shift invariance: adding a constant to every logit changes nothing
    assert_close(F.softmax(z + dtype(100)), [1 / 8, 2 / 8, 5 / 8], dtype)


# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------


def _check_loss(result, expected, return_grad, reduction, N, grad_shape, dtype, assert_close):
    loss, grad = result if return_grad else (result, None)
    eloss, egrad = expected if return_grad else (expected, None)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == (N,)
    else:
        assert np.ndim(loss) == 0
    assert loss.dtype == dtype
    assert_close(loss, eloss, dtype)
    if return_grad:
        assert isinstance(grad, np.ndarray)
        assert grad.shape == grad_shape and grad.dtype == dtype
        assert_close(grad, egrad, dtype)
    else:
        assert not isinstance(result, tuple)


@pytest.mark.parametrize("return_grad", [False, True], ids=["loss", "loss+grad"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zshape", ["(N,)", "(N,1)"])
@pytest.mark.parametrize("N", [1, 4, 1000, 40000])
def test_binary_cross_entropy_matches_reference(backend, dtype, N, zshape, reduction,
                                                return_grad, rng, assert_close):
    z = (3 * rng.standard_normal(N)).astype(dtype)
    y = rng.integers(0, 2, N)
    if zshape == "(N,1)":
        z = z[:, None]
    result = F.binary_cross_entropy(z, y, reduction=reduction, return_grad=return_grad)
    expected = R.binary_cross_entropy(z.astype(np.float64).reshape(-1), y,
                                      reduction=reduction, return_grad=return_grad)
    if return_grad:
        expected = (expected[0], expected[1].reshape(z.shape))
    _check_loss(result, expected, return_grad, reduction, N, z.shape, dtype, assert_close)


@pytest.mark.parametrize("return_grad", [False, True], ids=["loss", "loss+grad"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [
    pytest.param((1, 1), id="K=1"),
    pytest.param((1, 2), id="N=1,K=2"),
    pytest.param((6, 2), id="K=2"),
    pytest.param((4, 3), id="tiny"),
    pytest.param((300, 10), id="300x10"),
    pytest.param((3, 1000), id="K=1000"),
    pytest.param((40, 1000), id="K=1000-40k"),
    pytest.param((PARALLEL // 1000 + 1, 1000), id="openmp-K=1000"),
])
def test_cross_entropy_matches_reference(backend, dtype, shape, reduction, return_grad, rng,
                                         assert_close):
    N, K = shape
    Z = (3 * rng.standard_normal(shape)).astype(dtype)
    y = rng.integers(0, K, N)
    result = F.cross_entropy(Z, y, reduction=reduction, return_grad=return_grad)
    expected = R.cross_entropy(Z.astype(np.float64), y, reduction=reduction,
                               return_grad=return_grad)
    _check_loss(result, expected, return_grad, reduction, N, shape, dtype, assert_close)


@pytest.mark.parametrize("return_grad", [False, True], ids=["loss", "loss+grad"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zshape, yshape", [
    pytest.param((1,), (1,), id="N=1"),
    pytest.param((7,), (7,), id="(N,)"),
    pytest.param((7, 1), (7, 1), id="(N,1)"),
    pytest.param((7, 1), (7,), id="(N,1)-Y(N,)"),
    pytest.param((5, 3), (5, 3), id="(N,d)"),
    pytest.param((1, 4), (1, 4), id="N=1,d=4"),
    pytest.param((40000,), (40000,), id="N=40000"),
    pytest.param((300, 128), (300, 128), id="300x128"),
    pytest.param((600, 500), (600, 500), id="600x500"),
])
def test_squared_error_matches_reference(backend, dtype, zshape, yshape, reduction,
                                         return_grad, rng, assert_close):
    Z = rng.standard_normal(zshape).astype(dtype)
    Y = rng.standard_normal(yshape).astype(dtype)
    result = F.squared_error(Z, Y, reduction=reduction, return_grad=return_grad)
    expected = R.squared_error(Z.astype(np.float64), Y.astype(np.float64).reshape(zshape),
                               reduction=reduction, return_grad=return_grad)
    _check_loss(result, expected, return_grad, reduction, zshape[0], zshape, dtype,
                assert_close)


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "cross_entropy", "squared_error"])
def test_loss_reductions_agree(backend, dtype, loss, rng, assert_close):
    """mean = sum / N (not / (N*d)), sum = sum of "none"; gradients scale the same way;
    the default reduction is "mean"."""
    N = 9
    Z = rng.standard_normal((N, 3)).astype(dtype)
    if loss == "binary_cross_entropy":
        args = (Z[:, 0], rng.integers(0, 2, N))
    elif loss == "cross_entropy":
        args = (Z, rng.integers(0, 3, N))
    else:
        args = (Z, rng.standard_normal((N, 3)))
    fn = getattr(F, loss)
    s, gs = fn(*args, reduction="sum", return_grad=True)
    m, gm = fn(*args, reduction="mean", return_grad=True)
    n, gn = fn(*args, reduction="none", return_grad=True)
    assert_close(m, s / N, dtype)
    assert_close(n.sum(dtype=np.float64), s, dtype)
    assert_close(gm, gs / N, dtype)
    assert_close(gn, gs, dtype)
    assert_close(fn(*args), m, dtype)
    np.testing.assert_array_equal(fn(*args, reduction="sum"), s)


def test_cross_entropy_single_sample(backend, dtype, rng, assert_close):
    Z = rng.standard_normal((4, 5)).astype(dtype)
    y = np.array([0, 4, 2, 2])
    batch, gbatch = F.cross_entropy(Z, y, reduction="none", return_grad=True)
    for i in range(4):
        for label in (y[i], int(y[i]), [y[i]]):
            loss, g = F.cross_entropy(Z[i], label, reduction="none", return_grad=True)
            assert np.shape(loss) == () and loss.dtype == dtype
            assert g.shape == (5,) and g.dtype == dtype
            assert_close(loss, batch[i], dtype)
            assert_close(g, gbatch[i], dtype)


@pytest.mark.parametrize("shape", [(5, 1), (7, 10), (300, 17), (1100, 300)])
def test_cross_entropy_loss_alone_equals_loss_with_gradient(shape, dtype, rng):
    """The native kernel sums the exps in the same order with or without the gradient (the
    rows at once, or blocks of 256 across threads), so both give the same losses, bit for
    bit; a NaN logit makes its row's loss and gradient NaN, a label's logit of -inf (with
    other classes) its loss inf."""
    N, K = shape
    Z = (4 * rng.standard_normal(shape)).astype(dtype)
    y = rng.integers(0, K, N)
    Z[1, 0] = np.nan
    Z[2, y[2]] = -np.inf
    alone = F.cross_entropy(Z, y, reduction="none")
    loss, dZ = F.cross_entropy(Z, y, reduction="none", return_grad=True)
    np.testing.assert_array_equal(alone, loss)
    assert np.isnan(loss[1]) and np.isnan(dZ[1]).all()
    assert loss[2] == np.inf or K == 1
    assert np.isfinite(np.delete(loss, [1, 2])).all()


def test_binary_cross_entropy_scalar_logit(backend, dtype, assert_close):
    loss, g = F.binary_cross_entropy(dtype(0.0), 1, reduction="none", return_grad=True)
    assert np.shape(loss) == () and np.shape(g) == ()
    assert_close(loss, np.log(2.0), dtype)
    assert_close(g, -0.5, dtype)


def test_losses_accept_python_lists_and_label_dtypes(backend, assert_close):
    Z = [[0.0, 0.0], [2.0, -1.0]]
    for y in ([1, 0], (1, 0), np.array([1, 0], np.int8), np.array([1.0, 0.0]),
              np.array([True, False])):
        loss = F.cross_entropy(Z, y, reduction="sum")
        assert_close(loss, np.log(2.0) + np.log1p(np.exp(-3.0)), np.float64)
    for y in ([1, 0], np.array([True, False]), np.array([1.0, 0.0], np.float32),
              np.array([[1], [0]])):
        assert_close(F.binary_cross_entropy([0.0, 0.0], y, reduction="sum"), 2 * np.log(2.0),
                     np.float64)


# ---------------------------------------------------------------------------------------
# Numerical stability
# ---------------------------------------------------------------------------------------


def test_cross_entropy_extreme_logits(backend, dtype):
    # eq. 18 with a max shift: ln(e^1e4 + e^-1e4) - z_y = 1e4 - z_y exactly in floating point
    loss, g = F.cross_entropy(np.array([[1e4, -1e4]], dtype), [1], reduction="sum",
                              return_grad=True)
    assert loss.dtype == dtype and np.isfinite(loss)
    assert loss == 2e4
    np.testing.assert_array_equal(g, [[1.0, -1.0]])

    Z = np.array([[1e4, -1e4], [-1e4, 1e4], [-1e4, 1e4]], dtype)
    losses, G = F.cross_entropy(Z, [1, 1, 0], reduction="none", return_grad=True)
    assert np.isfinite(losses).all() and np.isfinite(G).all()
    np.testing.assert_array_equal(losses, [2e4, 0.0, 2e4])
    np.testing.assert_array_equal(G, [[1, -1], [0, 0], [-1, 1]])


def test_cross_entropy_tied_extreme_logits(backend, dtype):
    # ln(e^1e4 + e^1e4) - 1e4 = ln 2: the loss is small although the logits are huge, so it
    # must be formed as (m - z_y) + ln sum e^(z - m), not as (m + ln sum) - z_y, which
    # rounds ln 2 to the float32 spacing at 1e4 (2^-10)
    Z = np.array([[1e4, 1e4], [-1e4, -1e4]], dtype)
    losses, G = F.cross_entropy(Z, [0, 1], reduction="none", return_grad=True)
    np.testing.assert_allclose(losses, [np.log(2.0), np.log(2.0)], rtol=1e-6)
    np.testing.assert_array_equal(G, [[-0.5, 0.5], [0.5, -0.5]])


def test_binary_cross_entropy_extreme_logits(backend, dtype):
    # eq. 17: ln(1 + e^z) - y z; e^1e4 overflows, the loss must not
    z = np.array([1e4, -1e4, 1e4, -1e4], dtype)
    losses, g = F.binary_cross_entropy(z, [1, 0, 0, 1], reduction="none", return_grad=True)
    assert np.isfinite(losses).all() and np.isfinite(g).all()
    np.testing.assert_array_equal(losses, [0.0, 0.0, 1e4, 1e4])
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0, -1.0])
    assert F.binary_cross_entropy(z, [1, 0, 0, 1], reduction="sum") == 2e4


def test_binary_cross_entropy_no_cancellation(backend, dtype):
    # ln(1 + e^z) - y z at z = 40, y = 1 is ln(1 + e^-40) = 4.248e-18: computed as
    # ln(1 + e^-|z|) + (1 - y) z (the design's log1p(exp(-|z|))) it keeps its relative
    # accuracy; ln(1 + e^40) - 40 cancels to 0
    z = np.array([-40.0, 40.0, -40.0, 40.0], dtype)
    losses = F.binary_cross_entropy(z, [0, 1, 1, 0], reduction="none")
    tiny = np.log1p(np.exp(-40.0))
    np.testing.assert_allclose(losses, [tiny, tiny, 40.0, 40.0], rtol=1e-5)


def test_output_maps_extreme_logits(backend, dtype):
    z = np.array([1e4, -1e4], dtype)
    np.testing.assert_array_equal(F.softmax(z), [1.0, 0.0])
    np.testing.assert_array_equal(F.log_softmax(z), [0.0, -2e4])
    np.testing.assert_array_equal(F.sigmoid(z), [1.0, 0.0])
    P = F.softmax(np.array([[1e4, 1e4, -1e4]], dtype))
    np.testing.assert_allclose(P, [[0.5, 0.5, 0.0]], rtol=1e-6)
    # the stable sigmoid keeps its relative accuracy far in the left tail
    np.testing.assert_allclose(F.sigmoid(np.array([-30.0], dtype)),
                               [np.exp(-30.0) / (1 + np.exp(-30.0))], rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Dtypes
# ---------------------------------------------------------------------------------------


def test_integer_and_bool_inputs_give_float64(backend, assert_close):
    X = np.array([[1, 2], [3, -4], [0, 1]])
    W = np.array([[1, 0], [2, -1]], dtype=np.int32)
    b = np.array([True, False])
    U = F.linear(X, W, b, "relu")
    assert U.dtype == np.float64
    np.testing.assert_array_equal(U, [[2.0, 0.0], [4.0, 10.0], [1.0, 0.0]])
    dX, dW, db = F.linear_backward(np.ones((3, 2), np.int64), X, W, U.astype(np.int64), "relu")
    assert dX.dtype == dW.dtype == db.dtype == np.float64
    np.testing.assert_array_equal(db, [3.0, 1.0])
    for func in (lambda A: F.activate(A, "identity"), lambda A: F.activation_grad(A, "exp"),
                 F.sigmoid, F.softmax, F.log_softmax):
        for A in (np.array([[0, 1]], np.int16), np.array([[True, False]]),
                  np.array([[0, 1]], np.uint8)):
            result = func(A)
            assert result.dtype == np.float64
            assert_close(result, func(A.astype(np.float64)), np.float64)
    assert F.cross_entropy(np.array([[0, 0]]), [1]).dtype == np.float64
    assert F.binary_cross_entropy(np.array([0, 0]), [1, 0]).dtype == np.float64
    loss, g = F.squared_error(np.array([1, 2]), np.array([0, 0]), return_grad=True)
    assert loss.dtype == g.dtype == np.float64
    assert loss == 2.5  # (1 + 4) / N


def test_mixed_float32_float64_gives_float64(backend, make_layer, assert_close):
    X, W, b = make_layer(4, 3, 2, np.float64)
    X32, W32, b32 = (A.astype(np.float32) for A in (X, W, b))
    for args in ((X32, W, b32), (X, W32, b32), (X32, W32, b), (X32, W, None)):
        U = F.linear(*args, "tanh")
        assert U.dtype == np.float64
        assert_close(U, R.linear(*(None if A is None else A.astype(np.float64) for A in args),
                                 "tanh"), np.float64)
    U = F.linear(X32, W32, b32, "tanh")
    assert U.dtype == np.float32
    dU = np.ones(U.shape, np.float64)
    for grad in F.linear_backward(dU, X32, W32, U, "tanh"):
        assert grad.dtype == np.float64
    loss, g = F.squared_error(U, U.astype(np.float64) + 1, return_grad=True)
    assert loss.dtype == g.dtype == np.float64
    # labels carry no dtype: the logits' dtype wins
    Z32 = np.zeros((2, 3), np.float32)
    assert F.cross_entropy(Z32, np.array([0, 2], np.int64)).dtype == np.float32
    assert F.binary_cross_entropy(Z32[:, 0], np.array([0.0, 1.0])).dtype == np.float32


# ---------------------------------------------------------------------------------------
# Gradients against central finite differences (float64, eps = 1e-6)
#
# linear_backward through the scalar objective f = sum(dU * linear(X, W, b, g)), whose
# gradient with respect to (X, W, b) is exactly what linear_backward(dU, ...) returns; each
# loss's return_grad gradient through the loss itself (weighted per sample for "none").
# ---------------------------------------------------------------------------------------

DIFFERENTIABLE = ("identity", "sigmoid", "relu", "tanh", "exp")
FD_TOL = {"rtol": 1e-6, "atol": 1e-8}

LAYER_SHAPES = [
    pytest.param((3, 4, 2), id="tiny"),
    pytest.param((1, 3, 2), id="N=1"),
    pytest.param((5, 1, 3), id="N_in=1"),
    pytest.param((_N_GEMM + 1, 16, 16), id="blas"),  # above small_gemm: the BLAS path
]


def _layer(rng, N, n_in, n_out, margin=1e-3):
    """(X, W, b, dU) in float64 with every pre-activation at least ``margin`` away from 0, so
    that relu and step are differentiable at the point and stay so under an eps step
    (|x|, |w| < 10, so a 1e-6 step moves a pre-activation by less than 1e-5)."""
    for _ in range(1000):
        X = rng.standard_normal((N, n_in))
        W = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        b = 0.5 * rng.standard_normal(n_out)
        if np.abs(X @ W.T + b).min() > margin:
            return X, W, b, rng.standard_normal((N, n_out))
    raise AssertionError("could not draw a layer away from the kinks")


@pytest.mark.parametrize("activation", DIFFERENTIABLE)
@pytest.mark.parametrize("shape", LAYER_SHAPES)
def test_linear_backward_matches_finite_differences(backend, shape, activation, rng,
                                                    numerical_gradient):
    X, W, b, dU = _layer(rng, *shape)

    def objective():
        return np.sum(dU * F.linear(X, W, b, activation))

    U = F.linear(X, W, b, activation)
    dX, dW, db = F.linear_backward(dU, X, W, U, activation)
    np.testing.assert_allclose(dX, numerical_gradient(objective, X), **FD_TOL)
    np.testing.assert_allclose(dW, numerical_gradient(objective, W), **FD_TOL)
    np.testing.assert_allclose(db, numerical_gradient(objective, b), **FD_TOL)
    assert np.abs(dW).max() > 1e-3  # the check is not vacuous


@pytest.mark.parametrize("activation", DIFFERENTIABLE)
def test_linear_backward_single_sample_matches_finite_differences(backend, activation, rng,
                                                                  numerical_gradient):
    X, W, b, dU = _layer(rng, 1, 4, 3)
    x, du = X[0].copy(), dU[0]

    def objective():
        return np.sum(du * F.linear(x, W, b, activation))

    dx, dW, db = F.linear_backward(du, x, W, F.linear(x, W, b, activation), activation)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, numerical_gradient(objective, x), **FD_TOL)
    np.testing.assert_allclose(dW, numerical_gradient(objective, W), **FD_TOL)
    np.testing.assert_allclose(db, numerical_gradient(objective, b), **FD_TOL)


@pytest.mark.parametrize("shape", LAYER_SHAPES)
def test_step_has_zero_gradient(backend, shape, rng, numerical_gradient):
    X, W, b, dU = _layer(rng, *shape)

    def objective():
        return np.sum(dU * F.linear(X, W, b, "step"))

    dX, dW, db = F.linear_backward(dU, X, W, F.linear(X, W, b, "step"), "step")
    for analytic, A in ((dX, X), (dW, W), (db, b)):
        np.testing.assert_array_equal(analytic, np.zeros_like(A))
        np.testing.assert_array_equal(numerical_gradient(objective, A), np.zeros_like(A))


@pytest.mark.parametrize("activation", DIFFERENTIABLE)
def test_activation_grad_matches_finite_differences(backend, activation, rng):
    Z = rng.standard_normal(50)
    Z = Z[np.abs(Z) > 0.05]  # relu: away from the kink
    eps = 1e-6
    numeric = (F.activate(Z + eps, activation) - F.activate(Z - eps, activation)) / (2 * eps)
    analytic = F.activation_grad(F.activate(Z, activation), activation)
    np.testing.assert_allclose(analytic, numeric, **FD_TOL)


# the losses' own gradients (return_grad=True)


def _loss_case(name, rng, N):
    if name == "binary_cross_entropy":
        return F.binary_cross_entropy, 3 * rng.standard_normal(N), rng.integers(0, 2, N)
    if name == "binary_cross_entropy-(N,1)":
        return F.binary_cross_entropy, 3 * rng.standard_normal((N, 1)), rng.integers(0, 2, N)
    if name == "cross_entropy":
        return F.cross_entropy, 2 * rng.standard_normal((N, 4)), rng.integers(0, 4, N)
    if name == "squared_error":
        return F.squared_error, rng.standard_normal((N, 3)), rng.standard_normal((N, 3))
    if name == "squared_error-(N,)":
        return F.squared_error, rng.standard_normal(N), rng.standard_normal(N)
    raise AssertionError(name)


LOSSES = ["binary_cross_entropy", "binary_cross_entropy-(N,1)", "cross_entropy",
          "squared_error", "squared_error-(N,)"]


@pytest.mark.parametrize("N", [1, 6])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss", LOSSES)
def test_loss_gradient_matches_finite_differences(backend, loss, reduction, N, rng,
                                                  numerical_gradient):
    fn, Z, y = _loss_case(loss, rng, N)
    # "none" returns each sample's gradient with respect to its own logits: the gradient of
    # the weighted sum c . losses is c_i times row i of it
    c = rng.uniform(0.5, 2.0, N) if reduction == "none" else 1.0

    def objective():
        return np.sum(c * fn(Z, y, reduction=reduction))

    loss_value, G = fn(Z, y, reduction=reduction, return_grad=True)
    np.testing.assert_allclose(loss_value, fn(Z, y, reduction=reduction), rtol=1e-12)
    assert G.shape == Z.shape
    if reduction == "none":
        weighted = G * np.reshape(c, (N,) + (1,) * (Z.ndim - 1))
    else:
        weighted = G
    np.testing.assert_allclose(weighted, numerical_gradient(objective, Z), **FD_TOL)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_backpropagation_through_two_layers(backend, activation, rng, numerical_gradient):
    """Section 3, problem 1: hidden layer g_act, softmax output, cross-entropy (eq. 16, 18);
    chaining cross_entropy's gradient through two linear_backward calls gives dL/dtheta."""
    X, WH, bH, _ = _layer(rng, 7, 4, 5)
    WO = rng.standard_normal((3, 5)) / np.sqrt(5)
    bO = rng.standard_normal(3)
    y = rng.integers(0, 3, 7)

    def objective():
        UH = F.linear(X, WH, bH, activation)
        return F.cross_entropy(F.linear(UH, WO, bO), y, reduction="sum")

    UH = F.linear(X, WH, bH, activation)
    ZO = F.linear(UH, WO, bO)
    _, dZO = F.cross_entropy(ZO, y, reduction="sum", return_grad=True)
    dUH, dWO, dbO = F.linear_backward(dZO, UH, WO, ZO, "identity")
    dX, dWH, dbH = F.linear_backward(dUH, X, WH, UH, activation)
    for analytic, param in ((dWO, WO), (dbO, bO), (dWH, WH), (dbH, bH), (dX, X)):
        np.testing.assert_allclose(analytic, numerical_gradient(objective, param), **FD_TOL)


# ---------------------------------------------------------------------------------------
# Memory layouts: every input layout gives the C-contiguous result
# ---------------------------------------------------------------------------------------


def _layout_case(name, rng, dtype):
    """(function, args) of one call with array arguments in C order."""
    r = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    if name == "linear":
        return lambda X, W, b: F.linear(X, W, b, "tanh"), (r(6, 5), r(4, 5), r(4))
    if name == "linear-blas":
        return lambda X, W, b: F.linear(X, W, b, "sigmoid"), (r(20, 16), r(17, 16), r(17))
    if name == "linear-single":
        return lambda x, W, b: F.linear(x, W, b, "relu"), (r(5), r(4, 5), r(4))
    if name == "linear_backward":
        X, W, dU = r(20, 16), r(17, 16), r(20, 17)
        U = np.tanh(X @ W.T).astype(dtype)
        return lambda *a: F.linear_backward(*a, "tanh"), (dU, X, W, U)
    if name == "linear_backward-identity":  # the kernel may use dU itself as dZ
        X, W, dU = r(20, 16), r(17, 16), r(20, 17)
        return lambda *a: F.linear_backward(*a, "identity"), (dU, X, W, (X @ W.T).astype(dtype))
    if name == "activate":
        return lambda Z: F.activate(Z, "relu"), (r(6, 5),)
    if name == "activation_grad":
        return lambda U: F.activation_grad(U, "sigmoid"), (r(6, 5),)
    if name == "softmax":
        return F.softmax, (r(6, 5),)
    if name == "log_softmax":
        return F.log_softmax, (r(6, 5),)
    if name == "cross_entropy":
        return (lambda Z, y: F.cross_entropy(Z, y, reduction="none", return_grad=True),
                (r(6, 5), rng.integers(0, 5, 6)))
    if name == "binary_cross_entropy":
        return (lambda z, y: F.binary_cross_entropy(z, y, reduction="none", return_grad=True),
                (r(6), rng.integers(0, 2, 6).astype(dtype)))
    if name == "squared_error":
        return (lambda Z, Y: F.squared_error(Z, Y, reduction="none", return_grad=True),
                (r(6, 5), r(6, 5)))
    raise AssertionError(name)


LAYOUT_CASES = ["linear", "linear-blas", "linear-single", "linear_backward",
                "linear_backward-identity", "activate",
                "activation_grad", "softmax", "log_softmax", "cross_entropy",
                "binary_cross_entropy", "squared_error"]


def _flatten(result):
    return [a for a in (result if isinstance(result, tuple) else (result,)) if a is not None]


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_input_layouts_give_the_c_contiguous_result(backend, dtype, layout, case, rng,
                                                    assert_close):
    name, transform = layout
    func, args = _layout_case(case, rng, dtype)
    expected = _flatten(func(*args))
    moved = [transform(A) for A in args]
    for A, M in zip(args, moved):
        np.testing.assert_array_equal(M, A)
    result = _flatten(func(*moved))
    assert len(result) == len(expected)
    for got, want in zip(result, expected):
        assert isinstance(got, np.ndarray) or np.ndim(got) == 0
        assert got.dtype == dtype
        assert got.shape == want.shape
        assert_close(got, want, dtype)


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_inputs_are_not_modified(backend, dtype, case, rng):
    func, args = _layout_case(case, rng, dtype)
    saved = [A.copy() for A in args]
    func(*args)
    for A, S in zip(args, saved):
        np.testing.assert_array_equal(A, S)


# ---------------------------------------------------------------------------------------
# The functional API on any array-like
# ---------------------------------------------------------------------------------------


class WithArray:
    """An array-like that is not an ndarray: only ``__array__`` (NumPy 2's signature)."""

    def __init__(self, data):
        self.data = np.asarray(data)

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)


class OldWithArray(WithArray):
    """``__array__`` without the ``copy`` argument, as older libraries write it."""

    def __array__(self, dtype=None):
        return self.data if dtype is None else self.data.astype(dtype)


CONVERTERS = {
    "list": lambda a: a.tolist(),
    "memoryview": memoryview,
    "readonly_memoryview": lambda a: memoryview(a.tobytes()).cast(a.dtype.char, a.shape),
    "__array__": WithArray,
    "old__array__": OldWithArray,
}


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("convert", list(CONVERTERS), ids=list(CONVERTERS))
def test_functional_accepts_array_likes(convert, backend, dtype):
    to = CONVERTERS[convert]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 4)).astype(dtype)
    W = rng.normal(size=(3, 4)).astype(dtype)
    b = rng.normal(size=3).astype(dtype)
    labels = np.array([0, 2, 1, 1, 0, 2])
    if convert == "list":  # a list of Python floats is float64 data
        X, W, b = X.astype(np.float64), W.astype(np.float64), b.astype(np.float64)
    U = F.linear(X, W, b, "tanh")
    calls = [
        (F.linear(to(X), to(W), to(b), "tanh"), U),
        (F.activate(to(X), "relu"), F.activate(X, "relu")),
        (F.activation_grad(to(U), "tanh"), F.activation_grad(U, "tanh")),
        (F.sigmoid(to(X)), F.sigmoid(X)),
        (F.softmax(to(X)), F.softmax(X)),
        (F.log_softmax(to(X)), F.log_softmax(X)),
        (F.cross_entropy(to(U), to(labels), return_grad=True)[1],
         F.cross_entropy(U, labels, return_grad=True)[1]),
        (F.binary_cross_entropy(to(U[:, 0]), to(labels == 1), reduction="none"),
         F.binary_cross_entropy(U[:, 0], labels == 1, reduction="none")),
        (F.squared_error(to(U), to(U[::-1].copy()), reduction="none"),
         F.squared_error(U, U[::-1], reduction="none")),
    ]
    calls += list(zip(F.linear_backward(to(U), to(X), to(W), to(U), "tanh"),
                      F.linear_backward(U, X, W, U, "tanh")))
    for got, expected in calls:
        assert type(got) is np.ndarray
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------------------
# Bad input raises a ValueError (bad value or shape) or TypeError (bad type) whose message
# starts with the name of the offending argument; good input of every accepted kind works
# ---------------------------------------------------------------------------------------


def _ro(A):
    A = np.array(A, dtype=np.float64)
    A.flags.writeable = False  # also proves that validation never writes to its input
    return A


def _valid():
    """The valid arguments the bad-input cases start from: X, W, B, U, DU, Z, Y, Z1, Y01
    (float64, read-only)."""
    rng = np.random.default_rng(7)
    X = _ro(rng.standard_normal((5, 4)))
    W = _ro(rng.standard_normal((3, 4)))
    B = _ro(rng.standard_normal(3))
    U = _ro(np.tanh(X @ W.T + B))
    DU = _ro(rng.standard_normal((5, 3)))
    Z = _ro(rng.standard_normal((5, 3)))
    Y = np.array([0, 1, 2, 0, 1])
    Z1 = _ro(rng.standard_normal(5))
    Y01 = np.array([0, 1, 1, 0, 1])
    return X, W, B, U, DU, Z, Y, Z1, Y01


def _cases():
    """(id, call, exception, argument name) of every bad input."""
    X, W, B, U, DU, Z, Y, Z1, Y01 = _valid()
    c = []

    def add(id_, call, exc, arg, marks=()):
        c.append(pytest.param(call, exc, arg, id=id_, marks=marks))

    # --- shapes
    add("linear-W-columns", lambda: F.linear(X, W[:, :3]), ValueError, "W")
    add("linear-W-columns-single", lambda: F.linear(X[0], W[:, :3]), ValueError, "W")
    add("linear-b-length", lambda: F.linear(X, W, B[:2]), ValueError, "b")
    add("linear-b-too-long", lambda: F.linear(X, W, np.zeros(4)), ValueError, "b")
    add("backward-W-columns", lambda: F.linear_backward(DU, X, W[:, :3], U), ValueError, "W")
    add("backward-dU-shape", lambda: F.linear_backward(DU[:, :2], X, W, U), ValueError, "dU")
    add("backward-dU-rows", lambda: F.linear_backward(DU[:4], X, W, U), ValueError, "dU")
    add("backward-U-shape", lambda: F.linear_backward(DU, X, W, U[:4]), ValueError, "U")
    add("backward-U-transposed", lambda: F.linear_backward(DU, X, W, U.T), ValueError, "U")
    add("backward-dU-2d-for-single", lambda: F.linear_backward(DU[:1], X[0], W, U[0]),
        ValueError, "dU")
    add("ce-y-length", lambda: F.cross_entropy(Z, Y[:4]), ValueError, "y")
    add("ce-y-too-long", lambda: F.cross_entropy(Z, np.append(Y, 0)), ValueError, "y")
    add("ce-y-2d", lambda: F.cross_entropy(Z, Y[:, None]), ValueError, "y")
    add("ce-single-y-length", lambda: F.cross_entropy(Z[0], [0, 1]), ValueError, "y")
    add("bce-y-length", lambda: F.binary_cross_entropy(Z1, Y01[:3]), ValueError, "y")
    add("bce-y-scalar-for-batch", lambda: F.binary_cross_entropy(Z1, 1), ValueError, "y")
    add("bce-z-K-columns", lambda: F.binary_cross_entropy(Z, Y01), ValueError, "z")
    add("se-Y-columns", lambda: F.squared_error(Z, Z[:, :2]), ValueError, "Y")
    add("se-Y-rows", lambda: F.squared_error(Z, Z[:4]), ValueError, "Y")
    add("se-Y-transposed", lambda: F.squared_error(Z, Z.T), ValueError, "Y")
    # --- ndim
    add("linear-X-3d", lambda: F.linear(X[None], W), ValueError, "X")
    add("linear-X-0d", lambda: F.linear(np.float64(1.0), W[:, :1]), ValueError, "X")
    add("linear-W-0d", lambda: F.linear(X, np.float64(1.0)), ValueError, "W")
    add("linear-W-1d", lambda: F.linear(X, W[0]), ValueError, "W")
    add("linear-W-3d", lambda: F.linear(X, W[None]), ValueError, "W")
    add("linear-b-2d", lambda: F.linear(X, W, B[None]), ValueError, "b")
    add("linear-b-0d", lambda: F.linear(X, W, 1.0), ValueError, "b")
    add("backward-X-3d", lambda: F.linear_backward(DU, X[None], W, U), ValueError, "X")
    add("backward-W-0d", lambda: F.linear_backward(DU, X, np.float64(1.0), U), ValueError, "W")
    add("softmax-3d", lambda: F.softmax(Z[None]), ValueError, "Z")
    add("softmax-0d", lambda: F.softmax(np.float64(1.0)), ValueError, "Z")
    add("log_softmax-3d", lambda: F.log_softmax(Z[None]), ValueError, "Z")
    add("ce-Z-3d", lambda: F.cross_entropy(Z[None], Y), ValueError, "Z")
    add("bce-z-3d", lambda: F.binary_cross_entropy(Z1[:, None, None], Y01), ValueError, "z")
    add("se-Z-3d", lambda: F.squared_error(Z[None], Z[None]), ValueError, "Z")
    # --- empty
    add("linear-N=0", lambda: F.linear(X[:0], W), ValueError, "X")
    add("linear-N_in=0", lambda: F.linear(X[:, :0], W[:, :0]), ValueError, "X")
    add("linear-N_out=0", lambda: F.linear(X, W[:0]), ValueError, "W")
    add("linear-single-empty", lambda: F.linear(X[0, :0], W[:, :0]), ValueError, "X")
    add("backward-N=0", lambda: F.linear_backward(DU[:0], X[:0], W, U[:0]), ValueError, "X")
    add("backward-N_in=0", lambda: F.linear_backward(DU, X[:, :0], W[:, :0], U),
        ValueError, "X")
    add("softmax-N=0", lambda: F.softmax(Z[:0]), ValueError, "Z")
    add("softmax-K=0", lambda: F.softmax(Z[:, :0]), ValueError, "Z")
    add("log_softmax-K=0", lambda: F.log_softmax(Z[:, :0]), ValueError, "Z")
    add("ce-N=0", lambda: F.cross_entropy(Z[:0], Y[:0]), ValueError, "Z")
    add("ce-K=0", lambda: F.cross_entropy(Z[:, :0], Y), ValueError, "Z")
    add("bce-N=0", lambda: F.binary_cross_entropy(Z1[:0], Y01[:0]), ValueError, "z")
    add("se-N=0", lambda: F.squared_error(Z[:0], Z[:0]), ValueError, "Z")
    # --- activations
    for name in ("softmax", "ReLU", "Sigmoid", "relu ", "", "linear", "threshold"):
        add(f"linear-activation-{name!r}", lambda n=name: F.linear(X, W, B, n), ValueError,
            "activation")
        add(f"backward-activation-{name!r}", lambda n=name: F.linear_backward(DU, X, W, U, n),
            ValueError, "activation")
    for name in ("softmax", "ReLU"):
        add(f"activate-activation-{name!r}", lambda n=name: F.activate(Z, n), ValueError,
            "activation")
        add(f"activation_grad-activation-{name!r}", lambda n=name: F.activation_grad(Z, n),
            ValueError, "activation")
    for bad in (1, None, b"relu", 2.5):
        add(f"linear-activation-{bad!r}", lambda a=bad: F.linear(X, W, B, a), TypeError,
            "activation")
        add(f"backward-activation-{bad!r}", lambda a=bad: F.linear_backward(DU, X, W, U, a),
            TypeError, "activation")
        add(f"activate-activation-{bad!r}", lambda a=bad: F.activate(Z, a), TypeError,
            "activation")
        add(f"activation_grad-activation-{bad!r}", lambda a=bad: F.activation_grad(Z, a),
            TypeError, "activation")
    for bad in (["relu"], {"relu": 1}):  # unhashable
        add(f"linear-activation-{type(bad).__name__}", lambda a=bad: F.linear(X, W, B, a),
            TypeError, "activation")
        add(f"activate-activation-{type(bad).__name__}", lambda a=bad: F.activate(Z, a),
            TypeError, "activation")
    # --- reductions and flags
    losses = {
        "ce": lambda **kw: F.cross_entropy(Z, Y, **kw),
        "bce": lambda **kw: F.binary_cross_entropy(Z1, Y01, **kw),
        "se": lambda **kw: F.squared_error(Z, Z, **kw),
    }
    for lname, fn in losses.items():
        for bad in ("avg", "MEAN", "sum ", "", None, 0):
            add(f"{lname}-reduction-{bad!r}", lambda f=fn, r=bad: f(reduction=r), ValueError,
                "reduction")
        for bad in (1, 0, "yes", None, "True"):
            add(f"{lname}-return_grad-{bad!r}", lambda f=fn, g=bad: f(return_grad=g), TypeError,
                "return_grad")
    for bad in (1, 0, "yes", None):
        add(f"backward-need_dX-{bad!r}", lambda g=bad: F.linear_backward(DU, X, W, U, need_dX=g),
            TypeError, "need_dX")
    # --- labels
    for id_, bad in (("-1", -1), ("K", 3), ("huge", 10**9), ("0.5", 0.5), ("2.5", 2.5),
                     ("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
        add(f"ce-y-{id_}", lambda v=bad: F.cross_entropy(Z, np.array([v, 0, 1, 2, 0])),
            ValueError, "y")
        add(f"ce-single-y-{id_}", lambda v=bad: F.cross_entropy(Z[0], v), ValueError, "y")
    for id_, y in (("2", [0, 1, 2, 0, 1]), ("-1", [0, 1, -1, 0, 1]), ("0.5", [0, 1, 0.5, 0, 1]),
                   ("nan", [0, 1, np.nan, 0, 1]), ("inf", [np.inf, 1, 0, 0, 1])):
        add(f"bce-y-{id_}", lambda v=y: F.binary_cross_entropy(Z1, np.array(v)), ValueError, "y")
    add("se-Y-nan", lambda: F.squared_error(Z, np.where(Z > 0, np.nan, Z)), ValueError, "Y")
    add("se-Y-inf", lambda: F.squared_error(Z, np.full_like(Z, np.inf)), ValueError, "Y")
    for lname, fn in (("ce", lambda y: F.cross_entropy(Z, y)),
                      ("bce", lambda y: F.binary_cross_entropy(Z1, y))):
        add(f"{lname}-y-strings", lambda f=fn: f(["a", "b", "c", "a", "b"]), TypeError, "y")
        add(f"{lname}-y-object", lambda f=fn: f(np.array([0, 1, 1, 0, 1], dtype=object)),
            TypeError, "y")
        add(f"{lname}-y-complex", lambda f=fn: f(np.array([0, 1, 1, 0, 1], dtype=complex)),
            TypeError, "y")
        add(f"{lname}-y-None", lambda f=fn: f(None), TypeError, "y")
        add(f"{lname}-y-ragged", lambda f=fn: f([[0], [1, 1], 0, 0, 1]), ValueError, "y")
    # --- dtypes
    for kind, dt in (("object", object), ("complex", np.complex128), ("str", str)):
        add(f"linear-X-{kind}", lambda d=dt: F.linear(X.astype(d), W), TypeError, "X")
        add(f"linear-W-{kind}", lambda d=dt: F.linear(X, W.astype(d)), TypeError, "W")
        add(f"linear-b-{kind}", lambda d=dt: F.linear(X, W, B.astype(d)), TypeError, "b")
        add(f"backward-dU-{kind}", lambda d=dt: F.linear_backward(DU.astype(d), X, W, U),
            TypeError, "dU")
        add(f"backward-U-{kind}", lambda d=dt: F.linear_backward(DU, X, W, U.astype(d)),
            TypeError, "U")
        add(f"activate-{kind}", lambda d=dt: F.activate(Z.astype(d), "relu"), TypeError, "Z")
        add(f"activation_grad-{kind}", lambda d=dt: F.activation_grad(Z.astype(d), "relu"),
            TypeError, "U")
        add(f"sigmoid-{kind}", lambda d=dt: F.sigmoid(Z.astype(d)), TypeError, "Z")
        add(f"softmax-{kind}", lambda d=dt: F.softmax(Z.astype(d)), TypeError, "Z")
        add(f"log_softmax-{kind}", lambda d=dt: F.log_softmax(Z.astype(d)), TypeError, "Z")
        add(f"ce-Z-{kind}", lambda d=dt: F.cross_entropy(Z.astype(d), Y), TypeError, "Z")
        add(f"bce-z-{kind}", lambda d=dt: F.binary_cross_entropy(Z1.astype(d), Y01), TypeError,
            "z")
        add(f"se-Z-{kind}", lambda d=dt: F.squared_error(Z.astype(d), Z), TypeError, "Z")
        add(f"se-Y-{kind}", lambda d=dt: F.squared_error(Z, Z.astype(d)), TypeError, "Y")
    add("linear-X-datetime", lambda: F.linear(np.zeros((5, 4), "M8[s]"), W), TypeError, "X")
    add("linear-X-timedelta", lambda: F.linear(np.zeros((5, 4), "m8[s]"), W), TypeError, "X")
    # --- None for a required array
    add("linear-X-None", lambda: F.linear(None, W), TypeError, "X")
    add("linear-W-None", lambda: F.linear(X, None), TypeError, "W")
    add("backward-dU-None", lambda: F.linear_backward(None, X, W, U), TypeError, "dU")
    add("backward-X-None", lambda: F.linear_backward(DU, None, W, U), TypeError, "X")
    add("backward-U-None", lambda: F.linear_backward(DU, X, W, None), TypeError, "U")
    add("activate-None", lambda: F.activate(None, "relu"), TypeError, "Z")
    add("activation_grad-None", lambda: F.activation_grad(None, "relu"), TypeError, "U")
    add("sigmoid-None", lambda: F.sigmoid(None), TypeError, "Z")
    add("softmax-None", lambda: F.softmax(None), TypeError, "Z")
    add("log_softmax-None", lambda: F.log_softmax(None), TypeError, "Z")
    add("ce-Z-None", lambda: F.cross_entropy(None, Y), TypeError, "Z")
    add("bce-z-None", lambda: F.binary_cross_entropy(None, Y01), TypeError, "z")
    add("se-Z-None", lambda: F.squared_error(None, Z), TypeError, "Z")
    add("se-Y-None", lambda: F.squared_error(Z, None), TypeError, "Y")
    # --- ragged lists
    ragged = [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]]
    add("linear-X-ragged", lambda: F.linear(ragged, W), ValueError, "X")
    add("linear-W-ragged", lambda: F.linear(X, ragged), ValueError, "W")
    add("linear-b-ragged", lambda: F.linear(X, W, [1.0, [2.0, 3.0]]), ValueError, "b")
    add("backward-dU-ragged", lambda: F.linear_backward([[1.0], [1.0, 2.0]], X, W, U),
        ValueError, "dU")
    add("activate-ragged", lambda: F.activate(ragged, "relu"), ValueError, "Z")
    add("softmax-ragged", lambda: F.softmax(ragged), ValueError, "Z")
    add("ce-Z-ragged", lambda: F.cross_entropy(ragged, [0, 1]), ValueError, "Z")
    add("se-Y-ragged", lambda: F.squared_error([[1.0, 2.0], [3.0, 4.0]], [[1.0], [1.0, 2.0]]),
        ValueError, "Y")
    # --- sizes over BLAS's 32-bit limit (zero-stride views: no memory is allocated)
    add("linear-X-too-long", lambda: F.linear(np.broadcast_to(np.float64(1), (1, 2**31)), W),
        ValueError, "X")
    add("softmax-too-long", lambda: F.softmax(np.broadcast_to(np.float64(1), (2**31, 1))),
        ValueError, "Z")
    return c


@pytest.mark.parametrize("call, exc, arg", _cases())
def test_bad_input_raises_naming_the_argument(backend, call, exc, arg):
    with pytest.raises(exc, match=rf"^{arg}\b"):
        call()


# linear's out=


def _readonly_out():
    out = np.empty((5, 3))
    out.flags.writeable = False
    return out


@pytest.mark.parametrize("make_out, exc", [
    pytest.param(lambda: np.empty((5, 4)), ValueError, id="wrong-shape"),
    pytest.param(lambda: np.empty((3, 5)), ValueError, id="transposed-shape"),
    pytest.param(lambda: np.empty(15), ValueError, id="flat"),
    pytest.param(lambda: np.empty((1, 5, 3)), ValueError, id="3d"),
    pytest.param(lambda: np.empty((5, 3), np.float32), TypeError, id="float32-for-float64"),
    pytest.param(lambda: np.empty((5, 3), np.int64), TypeError, id="int"),
    pytest.param(lambda: np.empty((5, 3), ">f8"), TypeError, id="byteswapped"),
    pytest.param(lambda: np.empty((5, 3), order="F"), ValueError, id="fortran"),
    pytest.param(lambda: np.empty((5, 6))[:, ::2], ValueError, id="strided"),
    pytest.param(lambda: np.empty((5, 3))[::-1], ValueError, id="negative-strides"),
    pytest.param(_readonly_out, ValueError, id="read-only"),
    pytest.param(lambda: np.empty((5, 3)).tolist(), TypeError, id="list"),
])
def test_linear_bad_out(backend, make_out, exc):
    X, W, B, U, DU, Z, Y, Z1, Y01 = _valid()
    with pytest.raises(exc, match=r"^out\b"):
        F.linear(X, W, B, "relu", out=make_out())


def test_linear_out_dtype_follows_the_inputs(backend):
    X, W, B, U, DU, Z, Y, Z1, Y01 = _valid()
    with pytest.raises(TypeError, match=r"^out\b"):  # float32 inputs: a float32 result
        F.linear(X.astype(np.float32), W.astype(np.float32), out=np.empty((5, 3)))
    with pytest.raises(ValueError, match=r"^out\b"):  # one sample: a 1-D result
        F.linear(X[0], W, B, out=np.empty((1, 3)))


@pytest.mark.parametrize("which", ["X", "W", "b", "X-partial"])
def test_linear_out_overlapping_an_input(backend, which):
    X, W, B, U, DU, Z, Y, Z1, Y01 = _valid()
    buf = np.zeros(64)
    out = buf[:15].reshape(5, 3)
    x, w, b = X.copy(), W[:, :3].copy(), B.copy()
    if which == "X":  # N_in = N_out = 3, out is X itself
        x = out
        x[...] = X[:, :3]
    elif which == "W":
        x = X[:3, :3].copy()
        out = buf[:9].reshape(3, 3)
        w = out
        w[...] = W[:, :3]
    elif which == "b":
        b = buf[3:6]
        b[...] = B
        x = X[:, :3].copy()
    else:  # the last row of X is the first row of out
        x = buf[12:27].reshape(5, 3)
        x[...] = X[:, :3]
        out = buf[:15].reshape(5, 3)
    x_before = x.copy()
    with pytest.raises(ValueError, match=r"^out\b"):
        F.linear(x, w, b, "tanh", out=out)
    np.testing.assert_array_equal(x, x_before)  # nothing was written


def test_linear_out_disjoint_views_of_one_buffer_are_fine(backend):
    X, W, B, U, DU, Z, Y, Z1, Y01 = _valid()
    buf = np.zeros((2, 5, 3))
    buf[0] = X[:, :3]
    result = F.linear(buf[0], W[:, :3], B, "tanh", out=buf[1])
    assert result is not None and np.shares_memory(result, buf)
    np.testing.assert_allclose(buf[1], np.tanh(X[:, :3] @ W[:, :3].T + B), rtol=1e-12)


# accepted inputs of every kind (lists, bools, numpy scalars)


def test_python_lists_are_accepted(backend):
    X, W, B, U, DU, Z, Y, Z1, Y01 = _valid()
    Xl, Wl, bl = X.tolist(), W.tolist(), B.tolist()
    np.testing.assert_array_equal(F.linear(Xl, Wl, bl, "relu"), F.linear(X, W, B, "relu"))
    np.testing.assert_array_equal(F.linear(Xl[0], Wl, bl), F.linear(X[0], W, B))
    for got, want in zip(F.linear_backward(DU.tolist(), Xl, Wl, U.tolist(), "tanh"),
                         F.linear_backward(DU, X, W, U, "tanh")):
        np.testing.assert_array_equal(got, want)
    Zl = Z.tolist()
    np.testing.assert_array_equal(F.activate(Zl, "exp"), F.activate(Z, "exp"))
    np.testing.assert_array_equal(F.activation_grad(Zl, "tanh"), F.activation_grad(Z, "tanh"))
    np.testing.assert_array_equal(F.sigmoid(Zl), F.sigmoid(Z))
    np.testing.assert_array_equal(F.softmax(Zl), F.softmax(Z))
    np.testing.assert_array_equal(F.log_softmax(Zl), F.log_softmax(Z))
    assert F.cross_entropy(Zl, Y.tolist()) == F.cross_entropy(Z, Y)
    assert F.binary_cross_entropy(Z1.tolist(), Y01.tolist()) == F.binary_cross_entropy(Z1, Y01)
    assert F.squared_error(Zl, Zl) == 0.0
    assert F.linear([[1, 2]], [[3, 4]], [5]).tolist() == [[16.0]]
    assert F.linear((1.0, 2.0), ((3.0, 4.0),)).tolist() == [11.0]


def test_scalar_flags_and_labels_of_numpy_types(backend):
    X, W, B, U, DU, Z, Y, Z1, Y01 = _valid()
    _, g = F.cross_entropy(Z, Y, return_grad=np.bool_(True))
    assert g.shape == Z.shape
    dX, _, _ = F.linear_backward(DU, X, W, U, need_dX=np.bool_(False))
    assert dX is None
    for y in (np.int64(2), np.float32(2.0), 2, 2.0, True):
        loss = F.cross_entropy(Z[0], y, reduction="none")
        assert loss.shape == ()
    np.testing.assert_array_equal(F.activate(Z, np.str_("relu")), F.activate(Z, "relu"))


def test_labels_on_the_boundary_are_accepted(backend):
    X, W, B, U, DU, Z, Y, Z1, Y01 = _valid()
    K = Z.shape[1]
    F.cross_entropy(Z, [0, K - 1, 0, K - 1, 0])
    F.cross_entropy(Z, np.array([0, K - 1, 0, K - 1, 0], np.uint8))
    F.cross_entropy(Z, np.array([0.0, K - 1.0, 0.0, 1.0, 0.0]))  # integral floats
    F.binary_cross_entropy(Z1, np.array([0.0, 1.0, 1.0, 0.0, 1.0], np.float32))
    F.binary_cross_entropy(Z1[:, None], Y01[:, None])  # (N, 1) logits with (N, 1) labels
    assert F.cross_entropy(Z[:, :1], np.zeros(5, int)) == 0.0  # K = 1: a certain class


def test_error_messages_state_the_expectation(backend):
    X, W, B, U, DU, Z, Y, Z1, Y01 = _valid()
    with pytest.raises(ValueError, match=r"W must have shape \(3, 5\)"):
        F.linear(np.zeros((2, 5)), W)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        F.cross_entropy(Z, [0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match=r"'identity'.*'exp'"):
        F.activate(Z, "softmax")
    with pytest.raises(ValueError, match=r"'mean'.*'sum'.*'none'"):
        F.squared_error(Z, Z, reduction="avg")


def test_backend_switching():
    start = fastnn.get_backend()  # "cython" unless FASTNN_BACKEND says otherwise
    other = "numpy" if start == "cython" else "cython"
    with fastnn.use_backend(other):
        assert fastnn.get_backend() == other
        with fastnn.use_backend(start):
            assert fastnn.get_backend() == start
        assert fastnn.get_backend() == other
    assert fastnn.get_backend() == start
    with pytest.raises(ZeroDivisionError), fastnn.use_backend(other):
        1 / 0
    assert fastnn.get_backend() == start
    with pytest.raises(ValueError, match="backend"):
        fastnn.set_backend("torch")
    assert fastnn.get_backend() == start
    assert fastnn.functional is fastnn.F
