"""Analytic gradients against central finite differences (float64, eps = 1e-6), both backends.

linear_backward is checked through the scalar objective f = sum(dU * linear(X, W, b, g)),
whose gradient with respect to (X, W, b) is exactly what linear_backward(dU, ...) returns;
each loss's return_grad gradient through the loss itself (weighted per sample for "none").
"""

import numpy as np
import pytest

from fastnn import functional as F

DIFFERENTIABLE = ("identity", "sigmoid", "relu", "tanh", "exp")
FD_TOL = {"rtol": 1e-6, "atol": 1e-8}

LAYER_SHAPES = [
    pytest.param((3, 4, 2), id="tiny"),
    pytest.param((1, 3, 2), id="N=1"),
    pytest.param((5, 1, 3), id="N_in=1"),
    pytest.param((20, 16, 15), id="blas"),  # N*N_in*N_out = 4800 > 4096: the BLAS path
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


# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------


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


def test_notes_section3_problem2_exp_model(backend, rng, numerical_gradient):
    """Section 3, problem 2: z_i = W x_i + b, u = exp(z), y^_i = alpha^T u_i,
    L = sum (y_i - y^_i)^2: the output layer is linear without bias, then squared error."""
    X = rng.standard_normal((6, 2))
    W = 0.5 * rng.standard_normal((3, 2))
    b = 0.1 * rng.standard_normal(3)
    alpha = rng.standard_normal((1, 3))
    y = rng.standard_normal(6)

    def objective():
        return F.squared_error(F.linear(F.linear(X, W, b, "exp"), alpha), y, reduction="sum")

    U = F.linear(X, W, b, "exp")
    yhat = F.linear(U, alpha)
    _, dyhat = F.squared_error(yhat, y, reduction="sum", return_grad=True)
    # the notes: dL/dy^_i = 2 (y^_i - y_i)
    np.testing.assert_allclose(dyhat[:, 0], 2 * (yhat[:, 0] - y), rtol=1e-12)
    dU, dalpha, _ = F.linear_backward(dyhat, U, alpha, yhat)
    _, dW, db = F.linear_backward(dU, X, W, U, "exp", need_dX=False)
    # the notes: dL/dalpha_j = sum_i dL/dy^_i u_ij; dL/dz_ij = dL/dy^_i alpha_j exp(z_ij)
    np.testing.assert_allclose(dalpha[0], (dyhat[:, 0, None] * U).sum(axis=0), rtol=1e-12)
    dZ = dyhat[:, 0, None] * alpha[0] * U
    np.testing.assert_allclose(db, dZ.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dW, dZ.T @ X, rtol=1e-12)
    for analytic, param in ((dalpha, alpha), (dW, W), (db, b)):
        np.testing.assert_allclose(analytic, numerical_gradient(objective, param), **FD_TOL)
