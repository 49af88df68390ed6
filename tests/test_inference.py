"""One sample's layer (the compiled matrix-vector product) and the models' one-call inference.

* ``F.linear`` on one sample (N = 1) runs fastnn's own gemv, z_j = sum_k W_jk x_k + b_j in a
  fixed order (``fnn_gemv`` in _fastmath.h): against the NumPy reference on both dtypes, on
  awkward shapes (K = 1, K not a multiple of 16, M = 1, M odd, K = 784, a W large enough to
  split its rows among the threads), every activation, with and without bias; NaN and inf
  as the reference gives them; strided, Fortran-ordered and 1-D inputs through the public API.
* The same bits for 1 and 2 OpenMP threads (in process with threadpoolctl, and in a child
  process whose OpenMP threads spin, which is when 784 x 256 splits), and for every
  instruction-set build of the kernel (AVX-512, AVX2, the x86-64 baseline; needs gcc).
* ``predict_proba`` / ``decision_function`` / ``predict`` run all layers in one compiled call
  (``_kernels.network``) when X and the layers allow it: the bits of the per-layer path for
  every batch size, and the general path (with its validation) for everything else.
* Model weights start on a cache line (64 bytes), wherever the model comes from.
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

ACTIVATIONS = R.ACTIVATIONS
SPLIT = _kernels.tuning()["split_gemv"]  # M * K from which one sample's layer uses the threads
K_SPLIT = 1000
M_SPLIT = (SPLIT // K_SPLIT + 40) | 1  # odd, and M * K above the split size

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


def same_bits(a, b):
    if isinstance(a, list):
        return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def layer(M, K, dtype, seed=0):
    rng = np.random.default_rng([seed, M, K])
    x = rng.standard_normal((1, K)).astype(dtype)
    W = (rng.standard_normal((M, K)) / np.sqrt(K)).astype(dtype)
    b = (0.5 * rng.standard_normal(M)).astype(dtype)
    return x, W, b


def check_against_reference(U, x, W, b, activation, dtype, assert_close):
    """U against the float64 reference on the same values; step's outputs whose z is within
    rounding of 0 may go either way."""
    Z = R.linear(x.astype(np.float64), W.astype(np.float64),
                 None if b is None else b.astype(np.float64), "identity")
    expected = R.activate(Z, activation)
    if activation == "step":
        decided = np.abs(Z) > 1e-3
        np.testing.assert_array_equal(U[decided], expected[decided])
    else:
        assert_close(U, expected, dtype)


# ---------------------------------------------------------------------------------------
# The kernel against the reference
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", GEMV_SHAPES)
def test_one_sample_matches_reference(dtype, shape, activation, with_bias, assert_close):
    M, K = shape
    x, W, b = layer(M, K, dtype)
    b = b if with_bias else None
    U = F.linear(x, W, b, activation)
    assert U.shape == (1, M) and U.dtype == dtype
    check_against_reference(U, x, W, b, activation, dtype, assert_close)
    u = F.linear(x[0], W, b, activation)  # 1-D x: the same call without the batch axis
    assert u.shape == (M,) and same_bits(u, U[0])


@pytest.mark.parametrize("shape", [(4, 7), (5, 40), (M_SPLIT, K_SPLIT)], ids=["short", "long",
                                                                              "split"])
def test_one_sample_nan_and_inf_as_the_reference(dtype, shape):
    M, K = shape
    x, W, b = layer(M, K, dtype)
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
    x, W, b = layer(M, K, dtype)
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
    check_against_reference(got, x, W, b, "tanh", got.dtype, assert_close)


# ---------------------------------------------------------------------------------------
# Same bits for any thread count and any instruction set
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["identity", "relu", "sigmoid"])
def test_one_sample_same_bits_for_one_and_two_threads(dtype, activation):
    assert M_SPLIT * K_SPLIT >= SPLIT
    results = {}
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="openmp"):
            results[threads] = [F.linear(*layer(M, K, dtype), activation)
                                for M, K in [(M_SPLIT, K_SPLIT), (M_SPLIT + 16, 999), (48, 5000)]]
    assert same_bits(results[1], results[2])


CHILD = textwrap.dedent("""
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
        proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True,
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
# The models: all layers in one compiled call
# ---------------------------------------------------------------------------------------


def layer_by_layer(model, X, output):
    """The general path: F.linear per layer, then the output map."""
    U = X
    for lay in model.layers:
        U = F.linear(U, lay.W, lay.b, lay.activation)
    return {"softmax": F.softmax, "sigmoid": F.sigmoid, "identity": lambda Z: Z}[output](U)


MODELS = [
    pytest.param(dict(n_inputs=784, hidden=256, n_outputs=10), id="784-256-10"),
    pytest.param(dict(n_inputs=20, hidden=[33, 17, 5], n_outputs=3, activation="tanh"),
                 id="deep-tanh"),
    pytest.param(dict(n_inputs=13, hidden=[], n_outputs=4, output="identity"), id="linear"),
    pytest.param(dict(n_inputs=9, hidden=8, n_outputs=1, output="sigmoid",
                      activation="sigmoid"), id="binary"),
    pytest.param(dict(n_inputs=9, hidden=40, n_outputs=3, output="sigmoid",
                      activation="exp"), id="multilabel"),
    pytest.param(dict(n_inputs=64, hidden=[128], n_outputs=6, output="identity",
                      activation="step"), id="regression-step"),
]


@pytest.mark.parametrize("N", [1, 2, 32, 300])
@pytest.mark.parametrize("spec", MODELS)
def test_models_one_call_equals_layer_by_layer(dtype, spec, N, assert_close):
    # A batch of one part (fastnn._tuning.parts) gives layer by layer's bits; a larger one is
    # cut into parts of rows, which the one call takes through every layer and F.linear takes
    # layer by layer, each layer's parts by its own work: the products then round alike only
    # where the parts coincide.
    model = fastnn.MLP(**spec, dtype=dtype, random_state=0)
    X = np.random.default_rng(N).standard_normal((N, model.n_inputs)).astype(dtype)
    output = model.output
    P = layer_by_layer(model, X, output)
    Z = layer_by_layer(model, X, "identity")
    squeeze = model.n_outputs == 1 and output != "softmax"
    tuning = _kernels.tuning()
    work = N * sum(layer.W.size for layer in model.layers)
    if N < 2 * tuning["part_rows"] or work < 2 * tuning["part_work"]:  # one part
        same = same_bits
    else:
        def same(a, b):
            assert_close(a, b, np.dtype(dtype), scale=10.0)
            return True
    assert same(model.predict_proba(X), P[:, 0] if squeeze else P)
    assert same(model.decision_function(X), Z[:, 0] if squeeze else Z)
    if output == "softmax" and same is same_bits:
        assert same_bits(model.predict(X), Z.argmax(axis=1))
    assert same(model.forward(X).u[-1], P)


def test_models_one_call_with_layers_without_bias(dtype):
    model = fastnn.Sequential([fastnn.Linear(30, 20, "relu", bias=False, dtype=dtype,
                                             random_state=0),
                               fastnn.Linear(20, 4, dtype=dtype, random_state=1)],
                              loss="cross_entropy")
    for N in (1, 5):
        X = np.random.default_rng(N).standard_normal((N, 30)).astype(dtype)
        assert same_bits(model.predict_proba(X), layer_by_layer(model, X, "softmax"))


def test_models_general_path_for_everything_else(dtype, assert_close):
    """Inputs and layers the one call does not take (a 1-D sample, lists, another dtype,
    Fortran order, a Fortran or float64 W in a layer, 70 layers) give the reference's
    results, with the same shapes and the same errors."""
    model = fastnn.MLP(12, [16, 8], 3, dtype=dtype, random_state=0)
    X = np.random.default_rng(0).standard_normal((4, 12)).astype(dtype)
    with fastnn.use_backend("numpy"):
        want = model.predict_proba(X)
    for X1 in (X, np.asfortranarray(X), X.tolist(), X.astype(np.float64), X[:, None, :][:, 0]):
        assert_close(model.predict_proba(X1), want, dtype)
    single = model.predict_proba(X[0])
    assert single.shape == (3,)
    assert_close(single, want[0], dtype)
    assert np.ndim(model.predict(X[0])) == 0
    with pytest.raises(ValueError, match="features"):
        model.predict_proba(X[:, :5])
    with pytest.raises(ValueError):
        model.predict_proba(np.zeros((0, 12), dtype))
    model.layers[0].W = np.asfortranarray(model.layers[0].W)
    assert_close(model.predict_proba(X), want, dtype)
    model.layers[1].W = model.layers[1].W.astype(np.float64)
    assert_close(model.predict_proba(X), want, dtype)
    deep = fastnn.Sequential([fastnn.Linear(3, 3, "tanh", dtype=dtype, random_state=i)
                              for i in range(70)], loss="squared_error")
    X3 = np.random.default_rng(1).standard_normal((2, 3)).astype(dtype)
    with fastnn.use_backend("numpy"):
        want3 = deep.predict_proba(X3)
    assert_close(deep.predict_proba(X3), want3, dtype)


def test_models_one_call_matches_reference_at_batch_one(dtype, assert_close):
    """The inference workload's net at batch 1 (the benchmark's criterion) and 4096."""
    model = fastnn.MLP(784, 256, 10, dtype=dtype, random_state=0)
    rng = np.random.default_rng(5)
    for N in (1, 4096):
        X = rng.random((N, 784)).astype(dtype)
        with fastnn.use_backend("numpy"):
            want = model.predict_proba(X)
        assert_close(model.predict_proba(X), want, dtype)


def test_model_weights_start_on_a_cache_line(dtype, tmp_path):
    """New models keep W on a 64-byte boundary (layers.aligned_copy): built, from weights,
    loaded, after fit (in place), and after a W the native loops cannot write is replaced."""
    from fastnn.layers import aligned_copy

    def lines(model):
        return [layer.W.ctypes.data % 64 for layer in model.layers]

    model = fastnn.MLP(784, [256, 33], 10, dtype=dtype, random_state=0)
    assert lines(model) == [0, 0, 0]
    W = np.arange(12.0).reshape(3, 4)
    same = fastnn.MLP.from_weights([(W, None), (np.ones((2, 3)), np.zeros(2))])
    assert lines(same) == [0, 0] and same.layers[0].W.dtype == np.float64
    np.testing.assert_array_equal(same.layers[0].W, W)
    model.save(tmp_path / "m.npz")
    assert lines(fastnn.load(tmp_path / "m.npz")) == [0, 0, 0]
    X = np.random.default_rng(0).random((64, 784)).astype(dtype)
    model.layers[1].W = np.asfortranarray(model.layers[1].W)  # replaced by fit with a C copy
    model.fit(X, np.arange(64) % 10, epochs=1, random_state=0)
    assert lines(model) == [0, 0, 0]
    A = np.random.default_rng(1).standard_normal((5, 7))
    for dt in (np.float32, np.float64):
        C = aligned_copy(A, dt)
        assert C.ctypes.data % 64 == 0 and C.flags.c_contiguous and C.flags.writeable
        assert C.dtype == dt and same_bits(C, A.astype(dt))
