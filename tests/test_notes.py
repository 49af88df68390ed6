"""The worked problems of the course notes (shared/seed/neural-network-notes.md) as tests:
first through fastnn.functional, then through the models (MLP.from_weights, MLP, Sequential).

Expectations are written with the notes' own formulas, evaluated on small concrete numbers
with plain Python arithmetic (``math``) or written out in NumPy, never through fastnn or
fastnn.reference. Labels in the notes are 1..K; the API's are 0..K-1.
"""

import math

import numpy as np
import pytest

from fastnn import MLP, Linear, Sequential
from fastnn import functional as F


def _sigmoid_prime(z):
    """Section 2, problem 3(a): f'(z) = e^-z / (1 + e^-z)^2."""
    return math.exp(-z) / (1 + math.exp(-z)) ** 2


# ---------------------------------------------------------------------------------------
# Section 2, problem 2: the logistic loss and the chain rule
# ---------------------------------------------------------------------------------------

# N = 4 samples with p = 2 features, one weight vector w and a scalar bias b
P2_X = [[0.0, 1.0], [1.0, -1.0], [3.0, 0.5], [5.0, -2.0]]
P2_W = [0.5, -1.0]
P2_B = -1.0
P2_Y = [0, 0, 1, 0]


def test_section2_problem2_logistic_loss(backend, dtype, assert_close):
    X, w, b, y = P2_X, P2_W, P2_B, P2_Y
    N, p = len(X), len(w)
    # z_i = sum_j x_ij w_j + b
    z = [sum(X[i][j] * w[j] for j in range(p)) + b for i in range(N)]
    assert z == [-2.0, 0.5, 0.0, 3.5]
    # J = sum_i [ln(1 + e^z_i) - y_i z_i]
    J = sum(math.log(1 + math.exp(z[i])) - y[i] * z[i] for i in range(N))
    # (a) dJ/dz_i = -y_i + e^z_i / (1 + e^z_i)
    dJdz = [-y[i] + math.exp(z[i]) / (1 + math.exp(z[i])) for i in range(N)]
    # (b), (c) dz_i/dw_j = x_ij, dz_i/db = 1: dJ/dw_j = sum_i dJ/dz_i x_ij, dJ/db = sum_i dJ/dz_i
    dJdw = [sum(dJdz[i] * X[i][j] for i in range(N)) for j in range(p)]
    dJdb = sum(dJdz)

    Xa = np.array(X, dtype=dtype)
    Wa = np.array([w], dtype=dtype)  # the weight vector as a (1, p) layer
    ba = np.array([b], dtype=dtype)
    za = F.linear(Xa, Wa, ba)  # (N, 1) logits
    assert za.shape == (N, 1)
    assert_close(za[:, 0], z, dtype)
    loss, dz = F.binary_cross_entropy(za, y, reduction="sum", return_grad=True)
    assert_close(loss, J, dtype)
    assert dz.shape == (N, 1)
    assert_close(dz[:, 0], dJdz, dtype)
    _, dW, db = F.linear_backward(dz, Xa, Wa, za, "identity", need_dX=False)
    assert dW.shape == (1, p) and db.shape == (1,)
    assert_close(dW[0], dJdw, dtype)
    assert_close(db[0], dJdb, dtype)
    # "mean" is J / N, with gradients divided by N as well
    loss_mean, dz_mean = F.binary_cross_entropy(za, y, return_grad=True)
    assert_close(loss_mean, J / N, dtype)
    assert_close(dz_mean[:, 0], [g / N for g in dJdz], dtype)


# ---------------------------------------------------------------------------------------
# Section 2, problem 3: the gradients of a sigmoid layer u = f(W x + b)
# ---------------------------------------------------------------------------------------

P3_W = [[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]]
P3_X = [1.0, 0.5, -2.0]
P3_B = [0.5, -0.5]


def _p3_z():
    return [sum(P3_W[i][j] * P3_X[j] for j in range(3)) + P3_B[i] for i in range(2)]


def test_section2_problem3a_sigmoid_derivative(backend, dtype, assert_close):
    z = _p3_z()
    assert z == [0.0, 2.5]
    u = F.linear(np.array(P3_X, dtype), np.array(P3_W, dtype), np.array(P3_B, dtype),
                 "sigmoid")
    assert_close(u, [1 / (1 + math.exp(-zi)) for zi in z], dtype)
    # du/dz = diag(f'(z_1), ..., f'(z_N)), written from u alone by the library
    assert_close(F.activation_grad(u, "sigmoid"), [_sigmoid_prime(zi) for zi in z], dtype)
    assert_close(F.activation_grad(u, "sigmoid")[0], 0.25, dtype)  # f'(0) = 1/4
    zs = np.array([-3.0, -0.5, 0.0, 1.0, 4.0], dtype)
    assert_close(F.activation_grad(F.sigmoid(zs), "sigmoid"),
                 [_sigmoid_prime(float(v)) for v in zs], dtype)


@pytest.mark.parametrize("i", [0, 1])
def test_section2_problem3bc_sigmoid_layer_gradients(backend, dtype, i, assert_close):
    """du_i/dW_ij = f'(z_i) x_j, du_i/db_i = f'(z_i), du_i/dx_j = f'(z_i) W_ij, and u_i does
    not depend on row k != i of W nor on b_k: linear_backward with dU = e_i (the gradient of
    the scalar u_i with respect to u)."""
    W, x, b = P3_W, P3_X, P3_B
    fp = _sigmoid_prime(_p3_z()[i])
    dudW = [[fp * x[j] if k == i else 0.0 for j in range(3)] for k in range(2)]
    dudb = [fp if k == i else 0.0 for k in range(2)]
    dudx = [fp * W[i][j] for j in range(3)]

    xa, Wa, ba = np.array(x, dtype), np.array(W, dtype), np.array(b, dtype)
    u = F.linear(xa, Wa, ba, "sigmoid")
    e_i = np.zeros(2, dtype)
    e_i[i] = 1
    dx, dW, db = F.linear_backward(e_i, xa, Wa, u, "sigmoid")
    assert_close(dW, dudW, dtype)
    assert_close(db, dudb, dtype)
    assert_close(dx, dudx, dtype)


# ---------------------------------------------------------------------------------------
# Section 2, problem 4: squared error L = ||y - z||^2 of a linear layer z = W x + b
# ---------------------------------------------------------------------------------------

P4_W = [[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]]
P4_X = [2.0, -1.0]
P4_B = [0.5, 1.0, -1.0]
P4_Y = [1.0, -2.0, 0.0]


@pytest.mark.parametrize("reduction", ["sum", "mean"])  # one sample: both are L
def test_section2_problem4_squared_error(backend, dtype, reduction, assert_close):
    W, x, b, y = P4_W, P4_X, P4_B, P4_Y
    z = [sum(W[i][j] * x[j] for j in range(2)) + b[i] for i in range(3)]
    assert z == [0.5, -1.5, -4.0]
    L = sum((y[i] - z[i]) ** 2 for i in range(3))
    dLdz = [2 * (z[i] - y[i]) for i in range(3)]  # (a)
    dLdW = [[2 * (z[i] - y[i]) * x[j] for j in range(2)] for i in range(3)]  # (b)
    dLdb = [2 * (z[i] - y[i]) for i in range(3)]  # (b)
    dLdx = [sum(2 * (z[i] - y[i]) * W[i][j] for i in range(3)) for j in range(2)]  # (c)
    # the same numbers by hand
    assert (L, dLdz, dLdx) == (16.5, [-1.0, 1.0, -8.0], [-2.0, -25.5])

    xa, Wa, ba, ya = (np.array(v, dtype) for v in (x, W, b, y))
    za = F.linear(xa, Wa, ba)
    assert_close(za, z, dtype)
    loss, dz = F.squared_error(za[None, :], ya[None, :], reduction=reduction, return_grad=True)
    assert_close(loss, L, dtype)
    assert_close(dz[0], dLdz, dtype)
    dx, dW, db = F.linear_backward(dz[0], xa, Wa, za, "identity")
    assert_close(dW, dLdW, dtype)
    assert_close(db, dLdb, dtype)
    assert_close(dx, dLdx, dtype)


# ---------------------------------------------------------------------------------------
# Section 1, problem 5: the notes' NumPy snippets as the expected values
# ---------------------------------------------------------------------------------------


@pytest.fixture
def hidden(rng, dtype):
    """(X, Uh) of problem 5(a): N = 6 samples, N_i = 3 inputs, N_h = 4 sigmoid units."""
    X = rng.standard_normal((6, 3)).astype(dtype)
    WH = rng.standard_normal((4, 3)).astype(dtype)
    bh = rng.standard_normal(4).astype(dtype)
    # the notes, 5(a):
    Zh = X.dot(WH.T) + bh[None, :]
    Uh = 1 / (1 + np.exp(-Zh))
    return X, WH, bh, Uh


def test_section1_problem5a_sigmoid_hidden_layer(backend, dtype, hidden, assert_close):
    X, WH, bh, Uh = hidden
    U = F.linear(X, WH, bh, "sigmoid")
    assert U.dtype == dtype
    assert_close(U, Uh, dtype)


def test_section1_problem5b_binary_output(backend, dtype, hidden, rng, assert_close):
    _, _, _, Uh = hidden
    Wo = rng.standard_normal(4).astype(dtype)
    bo = dtype(0.3)
    # the notes, 5(b): N_o = 1, the weights a vector, the bias a scalar
    Zo = Uh.dot(Wo) + bo
    Uo = 1 / (1 + np.exp(-Zo))

    z = F.linear(Uh, Wo[None, :], np.array([bo]))
    assert z.shape == (6, 1)
    assert_close(z[:, 0], Zo, dtype)
    assert_close(F.sigmoid(z[:, 0]), Uo, dtype)
    assert_close(F.linear(Uh, Wo[None, :], np.array([bo]), "sigmoid")[:, 0], Uo, dtype)
    # hard decision, eq. 4: y^ = 1 if z >= 0
    np.testing.assert_array_equal(F.linear(Uh, Wo[None, :], np.array([bo]), "step")[:, 0],
                                  (Zo >= 0).astype(dtype))


def test_section1_problem5c_softmax_output(backend, dtype, hidden, rng, assert_close):
    _, _, _, Uh = hidden
    Wo = rng.standard_normal((5, 4)).astype(dtype)
    bo = rng.standard_normal(5).astype(dtype)
    # the notes, 5(c): K = 5 classes
    Zo = Uh.dot(Wo.T) + bo[None, :]
    expZo = np.exp(Zo)
    Uo = expZo / np.sum(expZo, axis=1)[:, None]

    P = F.softmax(F.linear(Uh, Wo, bo))
    assert P.dtype == dtype
    assert_close(P, Uo, dtype)
    # hard decision, eq. 6: the argmax of the logits
    np.testing.assert_array_equal(P.argmax(axis=1), Zo.argmax(axis=1))


# ---------------------------------------------------------------------------------------
# Section 1, problems 1 and 2: the hand-built threshold networks
# ---------------------------------------------------------------------------------------


def _threshold_net(x, WH, bH, WO, bO, dtype):
    X = np.array(x, dtype)[:, None]
    UH = F.linear(X, np.array(WH, dtype), np.array(bH, dtype), "step")
    zO = F.linear(UH, np.array([WO], dtype), np.array([bO], dtype))[:, 0]
    yhat = F.linear(UH, np.array([WO], dtype), np.array([bO], dtype), "step")[:, 0]
    return UH, zO, yhat


def test_section1_problem1_threshold_network(backend, dtype):
    # W^H = [1, 1]^T, b^H = [-1, -3], W^O = [-1, 2], b^O = 0.5, hard thresholds (eq. 2, 4)
    x = [-2.0, 0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 4.0, 10.0]
    UH, zO, yhat = _threshold_net(x, [[1.0], [1.0]], [-1.0, -3.0], [-1.0, 2.0], 0.5, dtype)
    # (c) u^H = (1{x >= 1}, 1{x >= 3})
    np.testing.assert_array_equal(UH, [[xi >= 1, xi >= 3] for xi in x])
    # (d) z^O = 0.5 for x < 1, -0.5 on [1, 3), 1.5 for x >= 3
    np.testing.assert_array_equal(zO, [0.5 if xi < 1 else -0.5 if xi < 3 else 1.5 for xi in x])
    # (e) y^ = 0 on [1, 3), 1 elsewhere
    np.testing.assert_array_equal(yhat, [0.0 if 1 <= xi < 3 else 1.0 for xi in x])


def test_section1_problem2_table1(backend, dtype):
    # W^H = [1, 1]^T, b^H = [-2, -4], W^O = [1, -2], b^O = -0.5; training x = 0, 1, 3, 5
    # (labels 0, 0, 1, 0) and the test point 3.5. Table 1's z_2^H at x = 3.5 reads 0.5;
    # x - 4 = -0.5 (the table's u_2^H = 0 agrees).
    x = [0.0, 1.0, 3.0, 5.0, 3.5]
    UH, zO, yhat = _threshold_net(x, [[1.0], [1.0]], [-2.0, -4.0], [1.0, -2.0], -0.5, dtype)
    ZH = F.linear(np.array(x, dtype)[:, None], np.array([[1.0], [1.0]], dtype),
                  np.array([-2.0, -4.0], dtype))
    np.testing.assert_array_equal(ZH, [[-2, -4], [-1, -3], [1, -1], [3, 1], [1.5, -0.5]])
    np.testing.assert_array_equal(UH, [[0, 0], [0, 0], [1, 0], [1, 1], [1, 0]])
    np.testing.assert_array_equal(zO, [-0.5, -0.5, 0.5, -1.5, 0.5])
    np.testing.assert_array_equal(yhat, [0, 0, 1, 0, 1])
    np.testing.assert_array_equal(yhat[:4], [0, 0, 1, 0])  # y^_i = y_i on the training set


# ---------------------------------------------------------------------------------------
# Section 3, problem 2: the exponential model, its gradients by the notes and by differences
# ---------------------------------------------------------------------------------------


FD_TOL = {"rtol": 1e-6, "atol": 1e-8}  # central differences of float64 sums, eps = 1e-6


def test_section3_problem2_exp_model_by_the_kernels(backend, rng, numerical_gradient):
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


# =======================================================================================
# The same problems through the public model API (MLP.from_weights, MLP, Sequential), with
# the notes' own numbers: expected values are the notes' closed forms (problems 1-3 of
# section 1), the notes' NumPy snippets (problem 5) and the notes' backpropagation equations
# written out in NumPy (section 3), never the code path under test
# =======================================================================================

MODEL_FD_TOL = {"rtol": 1e-5, "atol": 1e-7}  # of model.loss, through every layer


def _grid_1d(dtype):
    """x on [-2, 5] in steps of 0.1, the breakpoints 1 and 3 exactly, and their neighbours
    one ulp below and above (in the model's dtype)."""
    x = np.arange(-20, 51, dtype=np.float64) / 10  # 1.0 and 3.0 are exact members
    near = [np.nextafter(dtype(v), dtype(-np.inf)) for v in (1, 2, 3, 4)]
    near += [np.nextafter(dtype(v), dtype(np.inf)) for v in (1, 2, 3, 4)]
    return np.sort(np.concatenate([x.astype(dtype), np.array(near, dtype)]))


# ---------------------------------------------------------------------------------------
# Section 1, problem 1
# ---------------------------------------------------------------------------------------


def _problem1(dtype):
    # W^H = [[1], [1]], b^H = [-1, -3], W^O = [-1, 2], b^O = 0.5; hard threshold (eq. 2),
    # threshold output (eq. 4) = the sigmoid output's hard decision
    return MLP.from_weights([(np.array([[1], [1]], dtype), np.array([-1, -3], dtype)),
                             (np.array([-1, 2], dtype), np.array(0.5, dtype))],
                            activation="step", output="sigmoid")


def test_section1_problem1_structure(dtype):
    net = _problem1(dtype)
    # (a) N_h = 2, N_o = 1
    assert [layer.W.shape for layer in net.layers] == [(2, 1), (1, 2)]
    assert (net.n_inputs, net.n_outputs) == (1, 1)
    assert net.dtype == dtype
    assert [layer.activation for layer in net.layers] == ["step", "identity"]


def test_section1_problem1_on_a_grid(backend, dtype):
    net = _problem1(dtype)
    x = _grid_1d(dtype)
    X = x[:, None]
    trace = net.forward(X)
    xd = x.astype(np.float64)
    # (b) z^H = (x - 1, x - 3)
    np.testing.assert_allclose(trace.z[0], np.stack([xd - 1, xd - 3], axis=1),
                               rtol=0, atol=4 * np.finfo(dtype).eps)
    # (c) u^H = (1{x >= 1}, 1{x >= 3})
    np.testing.assert_array_equal(trace.u[0], np.stack([xd >= 1, xd >= 3], axis=1))
    # (d) z^O = 0.5 for x < 1, -0.5 on [1, 3), 1.5 for x >= 3
    zO = np.where(xd < 1, 0.5, np.where(xd < 3, -0.5, 1.5))
    np.testing.assert_array_equal(trace.z[1][:, 0], zO)
    np.testing.assert_array_equal(net.decision_function(X), zO)
    # (e) y^ = 0 on [1, 3), 1 elsewhere
    yhat = np.where((xd >= 1) & (xd < 3), 0, 1)
    np.testing.assert_array_equal(net.predict(X), yhat)
    # the sigmoid output's probability agrees with the decision
    np.testing.assert_allclose(net.predict_proba(X), 1 / (1 + np.exp(-zO)), rtol=1e-6)
    # the breakpoints themselves: g(0) = 1 (eq. 2) and z^O >= 0 is class 1 (eq. 4)
    np.testing.assert_array_equal(net.predict(np.array([[1.0], [3.0]], dtype)), [0, 1])
    np.testing.assert_array_equal(net.forward(np.array([1.0], dtype)).u[0], [1, 0])
    np.testing.assert_array_equal(net.forward(np.array([3.0], dtype)).u[0], [1, 1])
    assert net.predict(np.array([0.0], dtype)) == 1  # a single sample gives a scalar


# ---------------------------------------------------------------------------------------
# Section 1, problem 2 (Table 1)
# ---------------------------------------------------------------------------------------


def test_section1_problem2_table1_from_weights(backend, dtype):
    # W^H = [[1], [1]], b^H = [-2, -4], W^O = [1, -2], b^O = -0.5
    net = MLP.from_weights([([[1], [1]], [-2, -4]), ([1, -2], -0.5)], activation="step",
                           output="sigmoid")
    net = MLP.from_weights([(l.W.astype(dtype), l.b.astype(dtype)) for l in net.layers],
                           activation="step", output="sigmoid")
    x = np.array([0, 1, 3, 5, 3.5], dtype)  # the four training points and the test point
    y = [0, 0, 1, 0]
    trace = net.forward(x[:, None])
    # Table 1, row by row. The notes print z_2^H = 0.5 at x = 3.5; the math (x - 4) gives
    # -0.5, and the table's own u_2^H = 0 agrees with -0.5.
    np.testing.assert_array_equal(trace.z[0][:, 0], [-2, -1, 1, 3, 1.5])     # z_1^H = x - 2
    np.testing.assert_array_equal(trace.z[0][:, 1], [-4, -3, -1, 1, -0.5])   # z_2^H = x - 4
    np.testing.assert_array_equal(trace.u[0][:, 0], [0, 0, 1, 1, 1])         # u_1^H
    np.testing.assert_array_equal(trace.u[0][:, 1], [0, 0, 0, 1, 0])         # u_2^H
    np.testing.assert_array_equal(trace.z[1][:, 0], [-0.5, -0.5, 0.5, -1.5, 0.5])  # z^O
    np.testing.assert_array_equal(net.predict(x[:, None]), [0, 0, 1, 0, 1])  # y^
    # (b) y^_i = y_i on all four training points; (c) y^ = 1 at x = 3.5
    np.testing.assert_array_equal(net.predict(x[:4, None]), y)
    assert net.predict(x[4:]) == 1
    # the network is the notes' closed form y^ = 1{x in [2, 4)} on a grid
    g = _grid_1d(dtype)
    gd = g.astype(np.float64)
    np.testing.assert_array_equal(net.predict(g[:, None]), ((gd >= 2) & (gd < 4)).astype(int))
    # and classifies the training set perfectly by the loss too (all z^O of the right sign)
    assert net.loss(x[:4, None], y, reduction="none").max() < np.log1p(np.exp(-0.5)) + 1e-6


# ---------------------------------------------------------------------------------------
# Section 1, problem 3
# ---------------------------------------------------------------------------------------


def test_section1_problem3_triangle(backend, dtype):
    # W^H = [[1, 0], [0, 1], [1, 1]], b^H = [0, 0, -1], W^O = [1, 1, -1], b^O = -1.5
    net = MLP.from_weights([(np.array([[1, 0], [0, 1], [1, 1]], dtype), np.array([0, 0, -1], dtype)),
                            (np.array([1, 1, -1], dtype), np.array(-1.5, dtype))],
                           activation="step", output="sigmoid")
    # a dense grid over [-1, 2]^2 with step 1/32: every x1 + x2 is exact, and the lines
    # x1 = 0, x2 = 0, x1 + x2 = 1 are on the grid
    t = np.arange(-32, 65) / 32
    x1, x2 = (a.ravel() for a in np.meshgrid(t, t))
    X = np.stack([x1, x2], axis=1).astype(dtype)
    trace = net.forward(X)
    # (a) z^H = (x1, x2, x1 + x2 - 1), u^H = (1{x1 >= 0}, 1{x2 >= 0}, 1{x1 + x2 >= 1})
    np.testing.assert_array_equal(trace.z[0], np.stack([x1, x2, x1 + x2 - 1], axis=1))
    np.testing.assert_array_equal(trace.u[0], np.stack([x1 >= 0, x2 >= 0, x1 + x2 >= 1], axis=1))
    # (b) y^ = 1 exactly in the triangle x1 >= 0, x2 >= 0, x1 + x2 < 1 (12)
    inside = (x1 >= 0) & (x2 >= 0) & (x1 + x2 < 1)
    assert 0 < inside.sum() < len(inside)
    np.testing.assert_array_equal(net.predict(X), inside.astype(int))
    zO = net.decision_function(X)
    np.testing.assert_array_equal(zO[inside], 0.5)  # (1) + (1) - (0) - 1.5
    assert (zO[~inside] < 0).all()
    np.testing.assert_array_equal(
        zO, (x1 >= 0).astype(float) + (x2 >= 0) - (x1 + x2 >= 1) - 1.5)


# ---------------------------------------------------------------------------------------
# Section 1, problem 4: architectures
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("h", [16, 100])
def test_section1_problem4_architectures(backend, activation, h, rng):
    # (a) 20x20 images, 26 letters: N_i = 400, N_o = 26, softmax; N_h and g_act free
    letters = MLP(400, h, 26, activation=activation, output="softmax", random_state=0)
    assert [l.W.shape for l in letters.layers] == [(h, 400), (26, h)]
    assert letters.output == "softmax" and letters.loss_name == "cross_entropy"
    X = rng.random((3, 400))
    P = letters.predict_proba(X)
    assert P.shape == (3, 26)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5)
    assert set(letters.predict(X)) <= set(range(26))
    # (b) 120 speech features, male/female: N_i = 120, N_o = 1, sigmoid
    speech = MLP(120, h, 1, activation=activation, output="sigmoid", random_state=0)
    assert [l.W.shape for l in speech.layers] == [(h, 120), (1, h)]
    assert speech.output == "sigmoid" and speech.loss_name == "binary_cross_entropy"
    X = rng.standard_normal((4, 120))
    p = speech.predict_proba(X)
    assert p.shape == (4,) and ((p > 0) & (p < 1)).all()
    assert set(speech.predict(X)) <= {0, 1}
    # (c) stock price from the last five days: N_i = 5, N_o = 1, identity
    stock = MLP(5, h, 1, activation=activation, output="identity", random_state=0)
    assert [l.W.shape for l in stock.layers] == [(h, 5), (1, h)]
    assert stock.output == "identity" and stock.loss_name == "squared_error"
    X = rng.standard_normal((4, 5))
    np.testing.assert_array_equal(stock.predict(X), stock.decision_function(X))
    assert stock.predict(X).shape == (4,)


# ---------------------------------------------------------------------------------------
# Section 1, problem 5: the notes' NumPy snippets equal the model's forward trace
# ---------------------------------------------------------------------------------------


def test_section1_problem5_binary(backend, dtype, rng, assert_close):
    X = rng.standard_normal((6, 3)).astype(dtype)
    WH = rng.standard_normal((4, 3)).astype(dtype)
    bh = rng.standard_normal(4).astype(dtype)
    Wo = rng.standard_normal(4).astype(dtype)   # N_o = 1: a vector
    bo = dtype(0.3)                             # and a scalar
    # the notes, 5(a) and 5(b):
    Zh = X.dot(WH.T) + bh[None, :]
    Uh = 1 / (1 + np.exp(-Zh))
    Zo = Uh.dot(Wo) + bo
    Uo = 1 / (1 + np.exp(-Zo))

    net = MLP.from_weights([(WH, bh), (Wo, np.array(bo))], activation="sigmoid",
                           output="sigmoid")
    assert net.dtype == dtype
    trace = net.forward(X)
    assert_close(trace.z[0], Zh, dtype)
    assert_close(trace.u[0], Uh, dtype)
    assert_close(trace.z[1][:, 0], Zo, dtype)
    assert_close(trace.u[1][:, 0], Uo, dtype)
    assert_close(net.predict_proba(X), Uo, dtype)
    clear = np.abs(Zo) > 1e-3
    np.testing.assert_array_equal(net.predict(X)[clear], (Zo >= 0)[clear])  # eq. 4


def test_section1_problem5_softmax(backend, dtype, rng, assert_close):
    X = rng.standard_normal((6, 3)).astype(dtype)
    WH = rng.standard_normal((4, 3)).astype(dtype)
    bh = rng.standard_normal(4).astype(dtype)
    Wo = rng.standard_normal((5, 4)).astype(dtype)
    bo = rng.standard_normal(5).astype(dtype)
    # the notes, 5(a) and 5(c):
    Zh = X.dot(WH.T) + bh[None, :]
    Uh = 1 / (1 + np.exp(-Zh))
    Zo = Uh.dot(Wo.T) + bo[None, :]
    expZo = np.exp(Zo)
    Uo = expZo / np.sum(expZo, axis=1)[:, None]

    net = MLP.from_weights([(WH, bh), (Wo, bo)], activation="sigmoid", output="softmax")
    trace = net.forward(X)
    assert_close(trace.z[0], Zh, dtype)
    assert_close(trace.u[0], Uh, dtype)
    assert_close(trace.z[1], Zo, dtype)
    assert_close(trace.u[1], Uo, dtype)
    assert_close(net.predict_proba(X), Uo, dtype)
    np.testing.assert_array_equal(net.predict(X), Zo.argmax(axis=1))  # eq. 6


# ---------------------------------------------------------------------------------------
# Section 3, problem 1: ReLU hidden layer, softmax output, categorical cross-entropy
# ---------------------------------------------------------------------------------------


def _relu_softmax_batch(rng, N=8, Ni=3, Nh=5, K=4, margin=1e-3):
    for _ in range(100):
        WH = rng.standard_normal((Nh, Ni))
        bH = 0.5 * rng.standard_normal(Nh)
        WO = rng.standard_normal((K, Nh))
        bO = 0.5 * rng.standard_normal(K)
        X = rng.standard_normal((N, Ni))
        if np.abs(X @ WH.T + bH).min() > margin and (X @ WH.T + bH > 0).any(axis=0).all():
            return X, rng.integers(0, K, N), WH, bH, WO, bO
    raise AssertionError("no batch away from the ReLU kink")


def test_section3_problem1_backprop_equations(backend, rng, numerical_gradient):
    X, y, WH, bH, WO, bO = _relu_softmax_batch(rng)
    N, K = len(y), WO.shape[0]
    net = MLP.from_weights([(WH, bH), (WO, bO)], activation="relu", output="softmax")
    assert net.dtype == np.float64

    # forward, eq. 10
    ZH = X @ WH.T + bH
    UH = np.maximum(ZH, 0)
    ZO = UH @ WO.T + bO
    # L -> z^O: dL/dz_ij^O = e^{z_ij} / sum_l e^{z_il} - r_ij
    R = np.zeros((N, K))
    R[np.arange(N), y] = 1
    P = np.exp(ZO) / np.exp(ZO).sum(axis=1, keepdims=True)
    dZO = P - R
    # z^O -> W^O, b^O, u^H
    dWO = dZO.T @ UH                  # sum_i dL/dz_ij^O u_ik^H
    dbO = dZO.sum(axis=0)             # sum_i dL/dz_ij^O
    dUH = dZO @ WO                    # sum_j dL/dz_ij^O W_jk^O
    # u^H -> z^H: 1 if z^H > 0, 0 if z^H < 0
    dZH = dUH * (ZH > 0)
    # z^H -> W^H, b^H
    dWH = dZH.T @ X                   # sum_i dL/dz_ij^H x_ik
    dbH = dZH.sum(axis=0)

    (gWH, gbH), (gWO, gbO) = net.gradients(X, y, reduction="sum")
    for got, want in ((gWH, dWH), (gbH, dbH), (gWO, dWO), (gbO, dbO)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.abs(dWH).max() > 1e-2  # the hidden layer's gradient is not trivially zero

    # "mean" is the sum divided by N
    for (m_W, m_b), (s_W, s_b) in zip(net.gradients(X, y), net.gradients(X, y, reduction="sum")):
        np.testing.assert_allclose(m_W, s_W / N, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(m_b, s_b / N, rtol=1e-12, atol=1e-14)

    # and central finite differences of the notes' L (eq. 16, 18)
    def L():
        return net.loss(X, y, reduction="sum")

    assert abs(L() - (np.log(np.exp(ZO).sum(axis=1)) - (R * ZO).sum(axis=1)).sum()) < 1e-12
    for layer, (gW, gb) in zip(net.layers, ((gWH, gbH), (gWO, gbO))):
        np.testing.assert_allclose(gW, numerical_gradient(L, layer.W), **MODEL_FD_TOL)
        np.testing.assert_allclose(gb, numerical_gradient(L, layer.b), **MODEL_FD_TOL)


# ---------------------------------------------------------------------------------------
# Section 3, problem 2: z = W x + b, u = exp(z), y^ = alpha^T u, squared loss
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("N, d, M", [(6, 3, 4), (1, 2, 3), (10, 1, 1)])
def test_section3_problem2_exp_model(backend, N, d, M, rng, numerical_gradient):
    W = 0.5 * rng.standard_normal((M, d))
    b = 0.3 * rng.standard_normal(M)
    alpha = rng.standard_normal(M)
    X = rng.standard_normal((N, d))
    y = rng.standard_normal(N)
    model = Sequential([Linear.from_arrays(W, b, "exp"),
                        Linear.from_arrays(alpha, None)], loss="squared_error")
    assert model.layers[1].b is None and model.output == "identity"

    # forward: z_i = W x_i + b, u_ij = exp(z_ij), y^_i = alpha^T u_i
    Z = X @ W.T + b
    U = np.exp(Z)
    yhat = U @ alpha
    np.testing.assert_allclose(model.predict(X), yhat, rtol=1e-12)
    np.testing.assert_allclose(model.loss(X, y, reduction="sum"), ((y - yhat) ** 2).sum(),
                               rtol=1e-12)
    # backprop, the notes' formulas:
    dyhat = 2 * (yhat - y)                          # dL/dy^_i
    dalpha = (dyhat[:, None] * U).sum(axis=0)       # sum_i 2 (y^_i - y_i) u_ij
    dZ = dyhat[:, None] * alpha[None, :] * np.exp(Z)  # 2 (y^_i - y_i) alpha_j exp(z_ij)
    dW = dZ.T @ X                                   # sum_i dL/dz_ij x_ik
    db = dZ.sum(axis=0)                             # sum_i dL/dz_ij

    (gW, gb), (galpha, gnone) = model.gradients(X, y, reduction="sum")
    assert gnone is None  # the output layer has no bias
    assert galpha.shape == (1, M)
    np.testing.assert_allclose(galpha[0], dalpha, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gW, dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gb, db, rtol=1e-12, atol=1e-12)

    def L():
        return model.loss(X, y, reduction="sum")

    np.testing.assert_allclose(galpha, numerical_gradient(L, model.layers[1].W), **MODEL_FD_TOL)
    np.testing.assert_allclose(gW, numerical_gradient(L, model.layers[0].W), **MODEL_FD_TOL)
    np.testing.assert_allclose(gb, numerical_gradient(L, model.layers[0].b), **MODEL_FD_TOL)
