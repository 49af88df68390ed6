"""The notes' worked problems (shared/seed/neural-network-notes.md) through the public model API
(``MLP.from_weights``, ``MLP``, ``Sequential``), with the notes' own numbers.

Expected values are the notes' closed forms (problems 1-3 of section 1), the notes' NumPy
snippets (problem 5) and the notes' backpropagation equations written out in NumPy (section 3),
never the code path under test. Labels are 0-based in the API.
"""

import numpy as np
import pytest

from fastnn import MLP, Linear, Sequential

FD_TOL = {"rtol": 1e-5, "atol": 1e-7}


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


def test_section1_problem2_table1(backend, dtype):
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
        np.testing.assert_allclose(gW, numerical_gradient(L, layer.W), **FD_TOL)
        np.testing.assert_allclose(gb, numerical_gradient(L, layer.b), **FD_TOL)


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

    np.testing.assert_allclose(galpha, numerical_gradient(L, model.layers[1].W), **FD_TOL)
    np.testing.assert_allclose(gW, numerical_gradient(L, model.layers[0].W), **FD_TOL)
    np.testing.assert_allclose(gb, numerical_gradient(L, model.layers[0].b), **FD_TOL)
