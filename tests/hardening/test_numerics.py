"""Hardening, part 3: numerics at the extremes, on both backends and in float32 and float64.

* Logits of +-1e4 (e^1e4 overflows both dtypes, e^-1e4 underflows both): cross_entropy,
  binary_cross_entropy, softmax, log_softmax, sigmoid (and the models' loss and gradients) give
  finite losses and gradients equal to the exact values derived by hand below.
* Inputs of 1e30: linear and the losses are finite and exact in float64. In float32, 1e30
  itself is representable (max 3.4e38) and so are linear outputs and cross-entropy /
  binary-cross-entropy losses and every gradient below, which are finite and exact; but a
  squared error of 1e30 is 1e60, beyond float32: "correct" is then the true value rounded to
  float32 by IEEE round-to-nearest, which is +inf (overflow), as the reference gives, and never
  NaN or a wrong finite number; its gradient 2e30 stays finite and exact.
* float32 loss sums over 10^6 samples equal the float64 sums of the same logits within
  1e-6 relative (reductions "sum" and "mean"; both backends accumulate in float64).
"""

import math

import numpy as np
import pytest

import fastnn
from fastnn import functional as F

# the numpy backend's exp / square overflow on purpose here (exp(1e4), (1e30)^2 in float32)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

DTYPES = (np.float32, np.float64)
LN2 = math.log(2.0)
COUNTS = {"checks": 0, "calls": 0, "samples_summed": 0}


def exact(actual, expected, dtype, rel=4, what=""):
    """Finite, of ``dtype``, and equal to the exact ``expected`` up to ``rel`` ulps of the
    result (the rounding of the last operations; 0 means bit for bit)."""
    COUNTS["checks"] += 1
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype), (what, actual.dtype)
    assert np.isfinite(actual).all(), (what, actual)
    eps = float(np.finfo(dtype).eps)
    expected = np.asarray(expected, dtype=np.float64)
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rel * eps, atol=0,
                               err_msg=what)


def run(fn, *args, **kwargs):
    COUNTS["calls"] += 1
    return fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------
# Logits of +-1e4
# ---------------------------------------------------------------------------------------

# Rows of logits, labels, and per-sample losses / gradients derived by hand:
#   [ 1e4, -1e4], y=0: ln(e^1e4 + e^-1e4) - 1e4 = ln(1 + e^-2e4) = 0 (e^-2e4 underflows);
#                      softmax = [1, 0] -> dZ = [0, 0]
#   [ 1e4, -1e4], y=1: 1e4 - (-1e4) + ln(1 + e^-2e4) = 2e4;  dZ = [1, -1]
#   [-1e4,  1e4], y=0: 2e4;                                  dZ = [-1, 1]
#   [ 1e4,  1e4], y=0: ln(2 e^1e4) - 1e4 = ln 2;             dZ = [-1/2, 1/2]
#   [ 1e4, 9999], y=1: 1 + ln(1 + e^-1);                     dZ = [s, -s], s = 1 / (1 + e^-1)
S1 = 1 / (1 + math.exp(-1))
CE_Z = [[1e4, -1e4], [1e4, -1e4], [-1e4, 1e4], [1e4, 1e4], [1e4, 9999.0]]
CE_Y = [0, 1, 0, 0, 1]
CE_LOSS = [0.0, 2e4, 2e4, LN2, 1 + math.log1p(math.exp(-1))]
CE_GRAD = [[0, 0], [1, -1], [-1, 1], [-0.5, 0.5], [S1, -S1]]


def test_cross_entropy_of_huge_logits(backend, dtype):
    Z = np.array(CE_Z, dtype=dtype)
    losses, dZ = run(F.cross_entropy, Z, CE_Y, reduction="none", return_grad=True)
    exact(losses, CE_LOSS, dtype, what="losses")
    # an exact 0 where the loss is 0 (no -0, no 1e-300 noise); gradients of 0 and +-1 exactly
    assert losses[0] == 0 and losses[1] == 2e4 and losses[2] == 2e4
    exact(dZ, CE_GRAD, dtype, what="dZ")
    assert np.array_equal(dZ[:3], np.array(CE_GRAD[:3], dtype=dtype))
    total, dZ_sum = run(F.cross_entropy, Z, CE_Y, reduction="sum", return_grad=True)
    exact(total, math.fsum(CE_LOSS), dtype, what="sum")
    exact(dZ_sum, CE_GRAD, dtype, what="dZ (sum)")
    mean, dZ_mean = run(F.cross_entropy, Z, CE_Y, reduction="mean", return_grad=True)
    exact(mean, math.fsum(CE_LOSS) / 5, dtype, what="mean")
    exact(dZ_mean, np.array(CE_GRAD) / 5, dtype, what="dZ (mean)")


def test_cross_entropy_of_huge_logits_one_sample(backend, dtype):
    loss, dz = run(F.cross_entropy, np.array([-1e4, 1e4, -1e4], dtype=dtype), 1,
                   reduction="none", return_grad=True)
    exact(loss, 0.0, dtype)
    exact(dz, [0, 0, 0], dtype)


# binary cross-entropy on the logit: ln(1 + e^z) - y z; d/dz = sigmoid(z) - y
#   z =  1e4, y=1: ln(1 + e^-1e4) = 0;  grad 1 - 1 = 0
#   z =  1e4, y=0: 1e4;                 grad 1
#   z = -1e4, y=1: 1e4;                 grad 0 - 1 = -1
#   z = -1e4, y=0: 0;                   grad 0
BCE_Z = [1e4, 1e4, -1e4, -1e4]
BCE_Y = [1, 0, 1, 0]
BCE_LOSS = [0.0, 1e4, 1e4, 0.0]
BCE_GRAD = [0.0, 1.0, -1.0, 0.0]


def test_binary_cross_entropy_of_huge_logits(backend, dtype):
    z = np.array(BCE_Z, dtype=dtype)
    losses, dz = run(F.binary_cross_entropy, z, BCE_Y, reduction="none", return_grad=True)
    assert np.array_equal(losses, np.array(BCE_LOSS, dtype=dtype)), losses
    assert np.array_equal(dz, np.array(BCE_GRAD, dtype=dtype)), dz
    exact(losses, BCE_LOSS, dtype, rel=0)
    total = run(F.binary_cross_entropy, z, BCE_Y, reduction="sum")
    exact(total, 2e4, dtype, rel=0)
    mean, dz_mean = run(F.binary_cross_entropy, z.reshape(-1, 1), BCE_Y, return_grad=True)
    exact(mean, 5e3, dtype, rel=0)
    exact(dz_mean, np.array(BCE_GRAD).reshape(-1, 1) / 4, dtype, rel=0)


def test_softmax_and_log_softmax_of_huge_logits(backend, dtype):
    Z = np.array([[1e4, -1e4], [1e4, 1e4], [-1e4, -1e4], [-1e4, 1e4]], dtype=dtype)
    P = run(F.softmax, Z)
    exact(P, [[1, 0], [0.5, 0.5], [0.5, 0.5], [0, 1]], dtype, rel=1)
    assert P[0, 1] == 0 and P[3, 0] == 0
    L = run(F.log_softmax, Z)
    exact(L, [[0, -2e4], [-LN2, -LN2], [-LN2, -LN2], [-2e4, 0]], dtype, rel=2)
    three = run(F.softmax, np.array([-1e4, -1e4, -1e4], dtype=dtype))
    exact(three, [1 / 3] * 3, dtype, rel=2)


def test_sigmoid_and_activations_of_huge_logits(backend, dtype):
    z = np.array([1e4, -1e4, 0.0], dtype=dtype)
    assert np.array_equal(run(F.sigmoid, z), np.array([1.0, 0.0, 0.5], dtype=dtype))
    assert np.array_equal(run(F.activate, z, "tanh"), np.array([1.0, -1.0, 0.0], dtype=dtype))
    assert np.array_equal(run(F.activate, z, "relu"), np.array([1e4, 0.0, 0.0], dtype=dtype))
    assert np.array_equal(run(F.activate, z, "step"), np.array([1.0, 0.0, 1.0], dtype=dtype))
    # exp(1e4) is beyond every float: +inf is its correct rounding; exp(-1e4) rounds to 0
    assert np.array_equal(run(F.activate, z, "exp"), np.array([np.inf, 0.0, 1.0], dtype=dtype))
    U = run(F.sigmoid, z)
    assert np.array_equal(run(F.activation_grad, U, "sigmoid"), np.array([0, 0, 0.25], dtype=dtype))


def test_model_loss_and_gradients_with_huge_logits(backend, dtype):
    """x = 1 through an identity unit and output weights +-1e4: logits [1e4, -1e4], y = 1.
    L = 2e4; dL/dz = [1, -1]; dW^O = dz u = [[1], [-1]]; db^O = [1, -1];
    dL/du = dz . W^O = 1e4 + 1e4 = 2e4; dW^H = 2e4 x = [[2e4]]; db^H = [2e4]."""
    net = fastnn.MLP.from_weights(
        [(np.array([[1.0]], dtype), np.array([0.0], dtype)),
         (np.array([[1e4], [-1e4]], dtype), np.array([0.0, 0.0], dtype))],
        activation="identity", output="softmax")
    x = np.array([[1.0]], dtype)
    exact(run(net.loss, x, [1], reduction="sum"), 2e4, dtype, rel=0)
    (dWH, dbH), (dWO, dbO) = run(net.gradients, x, [1], reduction="sum")
    exact(dWO, [[1], [-1]], dtype, rel=0)
    exact(dbO, [1, -1], dtype, rel=0)
    exact(dWH, [[2e4]], dtype, rel=0)
    exact(dbH, [2e4], dtype, rel=0)
    assert run(net.predict, x)[0] == 0
    exact(run(net.predict_proba, x), [[1, 0]], dtype, rel=0)
    # sigmoid output, logits [1e4, -1e4], y = [0, 0]: losses [1e4, 0], dz = [1, 0];
    # dW^O = 1 * 1 + 0 * (-1) = 1; db^O = 1; du = dz * 1e4 = [1e4, 0]; dW^H = 1e4; db^H = 1e4
    net = fastnn.MLP.from_weights(
        [(np.array([[1.0]], dtype), np.array([0.0], dtype)),
         (np.array([[1e4]], dtype), np.array([0.0], dtype))],
        activation="identity", output="sigmoid")
    x = np.array([[1.0], [-1.0]], dtype)
    exact(run(net.loss, x, [0, 0], reduction="none"), [1e4, 0], dtype, rel=0)
    (dWH, dbH), (dWO, dbO) = run(net.gradients, x, [0, 0], reduction="sum")
    exact(dWO, [[1]], dtype, rel=0)
    exact(dbO, [1], dtype, rel=0)
    exact(dWH, [[1e4]], dtype, rel=0)
    exact(dbH, [1e4], dtype, rel=0)


# ---------------------------------------------------------------------------------------
# Inputs of 1e30
# ---------------------------------------------------------------------------------------

def f(dtype, value):
    """``value`` as ``dtype`` would hold it, as an exact float64 (float32(1e30) != 1e30)."""
    return float(np.asarray(value, dtype=dtype))


def test_linear_with_inputs_of_1e30(backend, dtype):
    """X W^T with |x| = 1e30: every product and sum is exact (no cancellation between terms
    of different size), so the results are exact in both dtypes."""
    a = f(dtype, 1e30)
    X = np.array([[1e30, -1e30], [1e30, 1e30]], dtype=dtype)
    W = np.array([[1.0, 1.0], [0.5, 0.0], [1.0, -1.0]], dtype=dtype)
    expected = [[0.0, a / 2, 2 * a], [2 * a, a / 2, 0.0]]
    exact(run(F.linear, X, W), expected, dtype, rel=0, what="identity")
    exact(run(F.linear, X, W, np.zeros(3, dtype), "relu"),
          [[0.0, a / 2, 2 * a], [2 * a, a / 2, 0.0]], dtype, rel=0, what="relu")
    exact(run(F.linear, X, W, None, "sigmoid"), [[0.5, 1, 1], [1, 1, 0.5]], dtype, rel=0)
    exact(run(F.linear, X, W, None, "tanh"), [[0, 1, 1], [1, 1, 0]], dtype, rel=0)
    # backward through the identity layer: dX = dU W, dW = dU^T X, db = sum dU
    dU = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    dX, dW, db = run(F.linear_backward, dU, X, W, run(F.linear, X, W))
    exact(dX, [[1, 1], [1, -1]], dtype, rel=0, what="dX")
    exact(dW, [[a, -a], [0, 0], [a, a]], dtype, rel=0, what="dW")
    exact(db, [1, 0, 1], dtype, rel=0, what="db")


def test_cross_entropy_and_bce_with_logits_of_1e30(backend, dtype):
    a = f(dtype, 1e30)
    losses, dZ = run(F.cross_entropy, np.array([[1e30, 0.0], [0.0, 1e30]], dtype), [0, 0],
                     reduction="none", return_grad=True)
    exact(losses, [0.0, a], dtype, rel=0)
    exact(dZ, [[0, 0], [-1, 1]], dtype, rel=0)  # softmax [0, 1] minus one-hot [1, 0]
    losses, dz = run(F.binary_cross_entropy, np.array([1e30, -1e30, 1e30], dtype), [1, 1, 0],
                     reduction="none", return_grad=True)
    exact(losses, [0.0, a, a], dtype, rel=0)
    exact(dz, [0, -1, 1], dtype, rel=0)
    exact(run(F.cross_entropy, np.array([[1e30, -1e30]], dtype), [1], reduction="sum"),
          2 * a, dtype, rel=0)


def test_squared_error_with_inputs_of_1e30_float64(backend):
    """(1e30)^2 = 1e60 and (2e30)^2 = 4e60 are finite in float64; gradients 2 (z - y)."""
    Z = np.array([[1e30, 0.0], [-1e30, 1e30]])
    Y = np.array([[0.0, 0.0], [1e30, 1e30]])
    losses, dZ = run(F.squared_error, Z, Y, reduction="none", return_grad=True)
    exact(losses, [1e30 * 1e30, 4 * (1e30 * 1e30)], np.float64, rel=1)
    exact(dZ, [[2e30, 0], [-4e30, 0]], np.float64, rel=0)
    exact(run(F.squared_error, Z, Y, reduction="sum"), 5 * (1e30 * 1e30), np.float64, rel=2)
    exact(run(F.squared_error, Z, Y), 2.5 * (1e30 * 1e30), np.float64, rel=2)


def test_squared_error_with_inputs_of_1e30_float32(backend):
    """1e60 overflows float32: the loss is +inf (the IEEE rounding of the true value, as the
    reference gives), never NaN or a wrong finite value; the gradient 2e30 is finite and exact;
    equal inputs of 1e30 give an exact 0."""
    Z = np.array([[1e30, 0.0], [1e30, 1e30]], np.float32)
    Y = np.array([[0.0, 0.0], [1e30, 1e30]], np.float32)
    a = f(np.float32, 1e30)
    losses, dZ = run(F.squared_error, Z, Y, reduction="none", return_grad=True)
    assert losses.dtype == np.float32
    assert losses[0] == np.inf and losses[1] == 0.0
    exact(dZ, [[2 * a, 0], [0, 0]], np.float32, rel=0)
    for reduction in ("sum", "mean"):
        total = run(F.squared_error, Z, Y, reduction=reduction)
        assert total.dtype == np.float32 and total == np.inf
    with fastnn.use_backend("numpy"):
        assert fastnn.reference.squared_error(Z, Y, reduction="none")[0] == np.inf


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
def test_models_with_inputs_of_1e30(backend, dtype):
    """x = 1e30 through an identity unit into logits [x, -x], y = 1: L = 2x; dz = [1, -1];
    dW^O = dz u = [[x], [-x]]; db^O = [1, -1]; du = dz . W^O = 2; dW^H = 2x; db^H = 2."""
    a = f(dtype, 1e30)
    net = fastnn.MLP.from_weights(
        [(np.array([[1.0]], dtype), np.array([0.0], dtype)),
         (np.array([[1.0], [-1.0]], dtype), np.array([0.0, 0.0], dtype))],
        activation="identity", output="softmax")
    x = np.array([[1e30]], dtype)
    exact(run(net.loss, x, [1], reduction="sum"), 2 * a, dtype, rel=0)
    (dWH, dbH), (dWO, dbO) = run(net.gradients, x, [1], reduction="sum")
    exact(dWO, [[a], [-a]], dtype, rel=0)
    exact(dbO, [1, -1], dtype, rel=0)
    exact(dWH, [[2 * a]], dtype, rel=0)
    exact(dbH, [2], dtype, rel=0)
    assert run(net.predict, x)[0] == 0


# ---------------------------------------------------------------------------------------
# float32 sums over 10^6 samples
# ---------------------------------------------------------------------------------------

N_SAMPLES = 1_000_000


@pytest.fixture(scope="module")
def million():
    rng = np.random.default_rng(12345)
    Z = (3 * rng.standard_normal((N_SAMPLES, 10))).astype(np.float32)
    Z[::1000] *= 1e3  # a few huge logits among them (up to ~1e4)
    y = rng.integers(0, 10, N_SAMPLES)
    z = (4 * rng.standard_normal(N_SAMPLES)).astype(np.float32)
    yb = rng.integers(0, 2, N_SAMPLES)
    S = rng.standard_normal((N_SAMPLES, 4)).astype(np.float32)
    T = rng.standard_normal((N_SAMPLES, 4)).astype(np.float32)
    return {"cross_entropy": (Z, y), "binary_cross_entropy": (z, yb), "squared_error": (S, T)}


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "squared_error"])
def test_float32_loss_over_a_million_samples_matches_float64(backend, million, loss, reduction):
    """The same values in float32 and float64 (float32 values are exact in float64): the
    float32 loss, accumulated in float64 per sample, is within 1e-6 of the float64 loss."""
    A, B = million[loss]
    fn = getattr(F, loss)
    l32 = run(fn, A, B, reduction=reduction)
    l64 = run(fn, A.astype(np.float64), B if loss != "squared_error" else B.astype(np.float64),
              reduction=reduction)
    COUNTS["samples_summed"] += 2 * N_SAMPLES
    assert l32.dtype == np.float32 and l64.dtype == np.float64
    assert np.isfinite(l32) and np.isfinite(l64)
    rel = abs(float(l32) - float(l64)) / abs(float(l64))
    assert rel <= 1e-6, \
        f"{loss} {reduction}: float32 {float(l32)!r} vs float64 {float(l64)!r}, rel {rel:.2e}"


# ---------------------------------------------------------------------------------------
# Counts in the terminal summary
# ---------------------------------------------------------------------------------------
