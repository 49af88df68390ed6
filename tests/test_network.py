"""The models: ``Sequential`` and ``MLP`` (fastnn.network; DESIGN.md, "Models").

Expected values are computed in the test with plain NumPy in float64 from the model's own
weights (the notes' eq. 10: Z = U W^T + B, U = g(Z)), or by central finite differences of
``model.loss``; never through the code path under test. Both backends, both dtypes.
"""

import numpy as np
import pytest

import fastnn
from fastnn import MLP, Linear, Sequential, reference
from fastnn import functional as F
from helpers import same_bits, tuning

OUTPUTS = ("sigmoid", "softmax", "identity")
LOSS_OF_OUTPUT = {"sigmoid": "binary_cross_entropy", "softmax": "cross_entropy",
                  "identity": "squared_error"}
FD_TOL = {"rtol": 1e-5, "atol": 1e-7}


# ---------------------------------------------------------------------------------------
# helpers: the notes' formulas in plain NumPy, float64
# ---------------------------------------------------------------------------------------


def _g(Z, activation):
    """g_act of the notes (eq. 2 for step, g(0) = 1), written out."""
    if activation == "identity":
        return Z.copy()
    if activation == "step":
        return (Z >= 0).astype(np.float64)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-Z))
    if activation == "relu":
        return np.maximum(Z, 0.0)
    if activation == "tanh":
        return np.tanh(Z)
    if activation == "exp":
        return np.exp(Z)
    raise AssertionError(activation)


def _out(Z, output):
    """g_out: eq. 3 (sigmoid), eq. 5 (softmax), eq. 7 (identity)."""
    if output == "sigmoid":
        return 1.0 / (1.0 + np.exp(-Z))
    if output == "softmax":
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)
    return Z.copy()


def _manual_trace(model, X):
    """[(z, u), ...] per layer by eq. 10 in float64, the last u through the output map."""
    U = np.asarray(X, dtype=np.float64)
    zs, us = [], []
    for layer in model.layers:
        Z = U @ layer.W.astype(np.float64).T
        if layer.b is not None:
            Z = Z + layer.b.astype(np.float64)[None, :]
        U = _g(Z, layer.activation)
        zs.append(Z)
        us.append(U)
    us[-1] = _out(us[-1], model.output)  # u[-1] is the output map of the last layer's output
    return zs, us


def _labels(output, rng, N, n_out):
    if output == "softmax":
        return rng.integers(0, n_out, N)
    if output == "sigmoid":
        y = rng.integers(0, 2, (N, n_out))
        return y[:, 0] if n_out == 1 else y
    y = rng.standard_normal((N, n_out))
    return y[:, 0] if n_out == 1 else y


def _away_from_kinks(model, rng, N, margin=1e-3, scale=1.0):
    """N samples whose pre-activations in every hidden layer are at least ``margin`` from 0
    (relu and step are then differentiable there, also under a 1e-6 weight step)."""
    rows = []
    for _ in range(200):
        X = scale * rng.standard_normal((4 * N, model.n_inputs))
        zs, _ = _manual_trace(model, X)
        ok = np.ones(len(X), dtype=bool)
        for z in zs[:-1]:
            ok &= np.abs(z).min(axis=1) > margin
        rows.extend(X[ok])
        if len(rows) >= N:
            return np.array(rows[:N])
    raise AssertionError("could not draw samples away from the kinks")


# ---------------------------------------------------------------------------------------
# Sequential and MLP construction
# ---------------------------------------------------------------------------------------


def test_sequential_mismatched_widths():
    with pytest.raises(ValueError, match=r"layers\[1\].*3 inputs.*layers\[0\].*4 outputs"):
        Sequential([Linear(2, 4), Linear(3, 1)], loss="squared_error")


def test_sequential_mixed_dtypes():
    with pytest.raises(ValueError, match="dtype"):
        Sequential([Linear(2, 3, dtype="float32"), Linear(3, 1, dtype="float64")])


@pytest.mark.parametrize("loss", ["mse", "hinge", None, "softmax"])
def test_sequential_bad_loss(loss):
    with pytest.raises(ValueError, match="loss"):
        Sequential([Linear(2, 1)], loss=loss)


@pytest.mark.parametrize("layers", [[], [np.ones((2, 2))], "abc", [Linear(2, 2), "x"]])
def test_sequential_bad_layers(layers):
    with pytest.raises(TypeError, match="layers"):
        Sequential(layers, loss="squared_error")


@pytest.mark.parametrize("loss, output", [("binary_cross_entropy", "sigmoid"),
                                          ("cross_entropy", "softmax"),
                                          ("squared_error", "identity")])
def test_sequential_structure(loss, output):
    layers = [Linear(3, 4, "exp", dtype="float64"), Linear(4, 2, bias=False, dtype="float64")]
    model = Sequential(layers, loss=loss)
    assert model.layers == layers and model.layers[0] is layers[0]
    assert model.output == output and model.loss_name == loss
    assert (model.n_inputs, model.n_outputs, model.dtype) == (3, 2, np.float64)
    assert [p for p in model.parameters()] == [(layers[0].W, layers[0].b), (layers[1].W, None)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hidden, widths", [
    ((), [(2, 5)]),
    (7, [(7, 5), (2, 7)]),
    ([7], [(7, 5), (2, 7)]),
    ((6, 4, 3), [(6, 5), (4, 6), (3, 4), (2, 3)]),
])
def test_mlp_any_depth(hidden, widths, dtype):
    model = MLP(5, hidden, 2, activation="tanh", output="softmax", dtype=dtype, random_state=0)
    assert [layer.W.shape for layer in model.layers] == widths
    assert [layer.b.shape for layer in model.layers] == [(w[0],) for w in widths]
    assert all(layer.dtype == np.dtype(dtype) for layer in model.layers)
    # hidden layers get the activation, the output layer is linear (its map is the loss's)
    assert [layer.activation for layer in model.layers] == ["tanh"] * (len(widths) - 1) + ["identity"]
    assert model.output == "softmax" and model.loss_name == "cross_entropy"


def test_mlp_defaults_and_determinism():
    a = MLP(4, 3, 2, random_state=7)
    b = MLP(4, 3, 2, random_state=7)
    c = MLP(4, 3, 2, random_state=8)
    assert a.dtype == np.float32 and a.output == "softmax"
    assert [layer.activation for layer in a.layers] == ["relu", "identity"]
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.W, lb.W)
        np.testing.assert_array_equal(la.b, lb.b)
    assert not np.array_equal(a.layers[0].W, c.layers[0].W)
    # the layers draw from one stream: not the same weights in two equal-shaped layers
    d = MLP(3, (3, 3), 3, random_state=0)
    assert not np.array_equal(d.layers[0].W, d.layers[1].W)


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(n_inputs=0), ValueError, "n_inputs"),
    (dict(n_outputs=0), ValueError, "n_outputs"),
    (dict(hidden=0), ValueError, "hidden"),
    (dict(hidden=(3, 0)), ValueError, "hidden"),
    (dict(hidden=2.5), TypeError, "hidden"),
    (dict(output="relu"), ValueError, "output"),
    (dict(activation="softmax"), ValueError, "activation"),
    (dict(dtype="float16"), ValueError, "dtype"),
])
def test_mlp_bad_arguments(kwargs, exc, name):
    args = dict(n_inputs=3, hidden=4, n_outputs=2)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        MLP(args.pop("n_inputs"), args.pop("hidden"), args.pop("n_outputs"), **args)


def test_from_weights_dtype_and_shapes():
    W1 = np.ones((3, 2), np.float32)
    b1 = np.zeros(3, np.float32)
    W2 = np.ones((1, 3), np.float32)
    net = MLP.from_weights([(W1, b1), (W2, np.zeros(1, np.float32))], activation="relu",
                           output="sigmoid")
    assert net.dtype == np.float32 and net.output == "sigmoid"
    assert [l.activation for l in net.layers] == ["relu", "identity"]
    net64 = MLP.from_weights([(W1, b1), (W2, 0.0)], activation="relu", output="sigmoid")
    assert net64.dtype == np.float64  # a Python float is not float32
    with pytest.raises(TypeError, match="weights"):
        MLP.from_weights([], output="sigmoid")
    with pytest.raises(TypeError, match="weights"):
        MLP.from_weights([W1], output="sigmoid")
    with pytest.raises(ValueError, match="output"):
        MLP.from_weights([(W1, b1)], output="tanh")
    with pytest.raises(ValueError, match="layers"):
        MLP.from_weights([(W1, b1), (np.ones((1, 4)), 0.0)], output="sigmoid")


# ---------------------------------------------------------------------------------------
# Forward trace and predictions
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("output, n_out", [("sigmoid", 1), ("sigmoid", 3), ("softmax", 4),
                                           ("identity", 1), ("identity", 2)])
@pytest.mark.parametrize("hidden", [(), 5, (6, 4, 3)], ids=["h0", "h1", "h3"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "step"])
def test_forward_trace_matches_numpy(backend, dtype, output, n_out, hidden, activation, rng,
                                     assert_close):
    model = MLP(3, hidden, n_out, activation=activation, output=output, dtype=dtype,
                random_state=3)
    X = rng.standard_normal((9, 3)).astype(dtype)
    if activation == "step":
        # keep every hidden pre-activation away from the threshold: float32 rounding must
        # not flip a unit
        X = _away_from_kinks(model, rng, 9, margin=1e-2).astype(dtype)
    trace = model.forward(X)
    zs, us = _manual_trace(model, X)
    assert len(trace.z) == len(trace.u) == len(model.layers)
    for l, (z, u, ez, eu) in enumerate(zip(trace.z, trace.u, zs, us)):
        assert z.dtype == dtype and u.dtype == dtype
        assert z.shape == ez.shape and u.shape == eu.shape
        assert_close(z, ez, dtype, err_msg=f"z[{l}]")
        assert_close(u, eu, dtype, err_msg=f"u[{l}]")
    # decision_function = the last z, predict_proba = the last u (1 output: (N,))
    squeeze = (lambda A: A[:, 0]) if n_out == 1 and output != "softmax" else (lambda A: A)
    assert_close(model.decision_function(X), squeeze(zs[-1]), dtype)
    assert_close(model.predict_proba(X), squeeze(us[-1]), dtype)


@pytest.mark.parametrize("output", OUTPUTS)
def test_output_maps(backend, dtype, output, rng):
    model = MLP(4, 8, 3, output=output, dtype=dtype, random_state=0)
    X = 3 * rng.standard_normal((50, 4)).astype(dtype)
    P = model.predict_proba(X)
    Z = model.decision_function(X)
    assert P.shape == Z.shape == (50, 3) and P.dtype == dtype
    if output == "softmax":
        np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-5)
        assert (P > 0).all()
    elif output == "sigmoid":
        assert ((P > 0) & (P < 1)).all()
        np.testing.assert_array_equal(P >= 0.5, Z >= 0)
    else:
        np.testing.assert_array_equal(P, Z)


def test_predict_eq4_threshold_at_zero(backend, dtype):
    # one linear unit z = x: eq. 4 says y_hat = 1 for z >= 0, so z = 0 gives class 1
    net = MLP.from_weights([(np.array([[1.0]], dtype), np.array([0.0], dtype))],
                           output="sigmoid")
    x = np.array([[-1.0], [-1e-30], [0.0], [-0.0], [1e-30], [2.0]], dtype)
    np.testing.assert_array_equal(net.predict(x), [0, 0, 1, 1, 1, 1])
    assert net.predict(x).dtype.kind == "i"


def test_predict_eq4_multi_output_sigmoid(backend, dtype, rng):
    model = MLP(3, 4, 2, output="sigmoid", dtype=dtype, random_state=0)
    X = rng.standard_normal((20, 3)).astype(dtype)
    Z = model.decision_function(X)
    pred = model.predict(X)
    assert pred.shape == (20, 2)
    np.testing.assert_array_equal(pred, (Z >= 0).astype(int))


def test_predict_eq6_argmax(backend, dtype, rng):
    model = MLP(3, 6, 5, output="softmax", dtype=dtype, random_state=2)
    X = rng.standard_normal((40, 3)).astype(dtype)
    zs, _ = _manual_trace(model, X)
    pred = model.predict(X)
    assert pred.shape == (40,) and pred.dtype.kind == "i"
    np.testing.assert_array_equal(pred, np.argmax(model.decision_function(X), axis=1))
    # the float64 argmax agrees wherever the top two logits are not nearly tied
    top2 = np.sort(zs[-1], axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3
    np.testing.assert_array_equal(pred[clear], zs[-1].argmax(axis=1)[clear])
    assert set(pred) <= set(range(5))


def test_predict_eq6_ties_pick_the_first(backend, dtype):
    net = MLP.from_weights([(np.zeros((3, 2), dtype), np.zeros(3, dtype))], output="softmax")
    np.testing.assert_array_equal(net.predict(np.ones((4, 2), dtype)), [0, 0, 0, 0])
    np.testing.assert_allclose(net.predict_proba(np.ones((1, 2), dtype)), [[1 / 3] * 3],
                               rtol=1e-6)


@pytest.mark.parametrize("n_out", [1, 3])
def test_predict_eq7_identity(backend, dtype, n_out, rng, assert_close):
    model = MLP(2, 5, n_out, output="identity", dtype=dtype, random_state=0)
    X = rng.standard_normal((10, 2)).astype(dtype)
    zs, _ = _manual_trace(model, X)
    expected = zs[-1][:, 0] if n_out == 1 else zs[-1]
    pred = model.predict(X)
    assert pred.dtype == dtype and pred.shape == expected.shape
    assert_close(pred, expected, dtype)
    np.testing.assert_array_equal(pred, model.decision_function(X))
    np.testing.assert_array_equal(pred, model.predict_proba(X))


@pytest.mark.parametrize("output, n_out, proba_shape", [
    ("sigmoid", 1, ()), ("sigmoid", 2, (2,)), ("softmax", 3, (3,)),
    ("identity", 1, ()), ("identity", 2, (2,)),
])
def test_single_sample_gives_1d_or_scalar(backend, dtype, output, n_out, proba_shape, rng,
                                         assert_close):
    model = MLP(4, 5, n_out, output=output, dtype=dtype, random_state=0)
    X = rng.standard_normal((6, 4)).astype(dtype)
    x = X[2]
    for method in ("decision_function", "predict_proba", "predict"):
        one = getattr(model, method)(x)
        batch = getattr(model, method)(X)
        want = () if method == "predict" and output == "softmax" else proba_shape
        if method == "predict" and output == "sigmoid" and n_out > 1:
            want = (n_out,)
        assert np.shape(one) == want, method
        # (NumPy's one-row product may differ from the batch's in the last bit)
        assert_close(one, batch[2], dtype, err_msg=method)
    trace = model.forward(x)
    full = model.forward(X)
    for a, b in zip(trace.z + trace.u, full.z + full.u):
        assert a.ndim == 1
        assert_close(a, b[2], dtype)
    if output != "identity":  # (identity: see test_single_sample_loss_identity_targets)
        y = _labels(output, rng, 6, n_out)
        assert_close(np.ravel(model.loss(x, y[2], reduction="none")),
                     model.loss(X, y, reduction="none")[2:3], dtype)


@pytest.mark.parametrize("n_out", [1, 2])
def test_single_sample_loss_identity_targets(backend, n_out, rng):
    model = MLP(4, 5, n_out, output="identity", dtype="float64", random_state=0)
    X = rng.standard_normal((3, 4))
    Y = rng.standard_normal((3, n_out))
    y1 = Y[1, 0] if n_out == 1 else Y[1]  # the shape of predict(X[1])
    assert np.shape(y1) == np.shape(model.predict(X[1]))
    np.testing.assert_allclose(model.loss(X[1], y1, reduction="sum"),
                               model.loss(X, Y, reduction="none")[1], rtol=1e-12)
    np.testing.assert_allclose(model.gradients(X[1], y1)[0][0],
                               model.gradients(X[1:2], Y[1:2])[0][0], rtol=1e-12)


def test_inputs_of_other_dtypes_follow_the_model(backend, dtype):
    model = MLP(2, 3, 2, dtype=dtype, random_state=0)
    for X in ([[1, 2], [3, 4]], np.array([[1, 2]], np.int64), np.array([[1.0, 2.0]], np.float16),
              np.asfortranarray(np.ones((3, 2)))):
        assert model.predict_proba(X).dtype == dtype
        assert model.forward(X).z[0].dtype == dtype


@pytest.mark.parametrize("X, exc, match", [
    (np.ones((2, 3)), ValueError, "X must have 2 features"),
    (np.ones((2, 2, 2)), ValueError, "X"),
    (np.zeros((0, 2)), ValueError, "X"),
    (np.array([["a", "b"]]), TypeError, "X"),
    (None, TypeError, "X"),
    ([[1, 2], [3]], ValueError, "X"),
])
def test_bad_inputs(backend, X, exc, match):
    model = MLP(2, 3, 2, random_state=0)
    for method in ("predict", "predict_proba", "decision_function", "forward"):
        with pytest.raises(exc, match=match):
            getattr(model, method)(X)


# ---------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------


def _reference_losses(model, X, y):
    """Per-sample losses: fastnn.reference's loss on logits computed here in float64."""
    zs, _ = _manual_trace(model, X)
    Z = zs[-1]
    if model.output == "softmax":
        return reference.cross_entropy(Z, np.asarray(y), reduction="none")
    if model.output == "sigmoid":
        N, d = Z.shape
        per = reference.binary_cross_entropy(Z.reshape(-1), np.asarray(y, np.float64).reshape(-1),
                                             reduction="none")
        return per.reshape(N, d).sum(axis=1)
    return reference.squared_error(Z, np.asarray(y, np.float64).reshape(Z.shape),
                                   reduction="none")


@pytest.mark.parametrize("output, n_out", [("sigmoid", 1), ("sigmoid", 3), ("softmax", 4),
                                           ("identity", 1), ("identity", 3)])
def test_loss_reductions_match_reference(backend, dtype, output, n_out, rng, assert_close):
    model = MLP(3, (5, 4), n_out, activation="tanh", output=output, dtype=dtype, random_state=0)
    X = rng.standard_normal((11, 3)).astype(dtype)
    y = _labels(output, rng, 11, n_out)
    expected = _reference_losses(model, X, y)
    # an independent check of the reference on this data (eq. 17, 18, 20 written out)
    zs, _ = _manual_trace(model, X)
    Z = zs[-1]
    if output == "softmax":
        direct = np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(11), y]
    elif output == "sigmoid":
        Y = np.asarray(y, np.float64).reshape(Z.shape)
        direct = (np.log1p(np.exp(Z)) - Y * Z).sum(axis=1)
    else:
        direct = ((Z - np.asarray(y).reshape(Z.shape)) ** 2).sum(axis=1)
    np.testing.assert_allclose(expected, direct, rtol=1e-12)

    none = model.loss(X, y, reduction="none")
    assert none.shape == (11,) and none.dtype == dtype
    assert_close(none, expected, dtype)
    total = model.loss(X, y, reduction="sum")
    mean = model.loss(X, y)  # the default is "mean"
    assert np.ndim(total) == 0 and np.ndim(mean) == 0
    assert np.asarray(total).dtype == dtype and np.asarray(mean).dtype == dtype
    assert_close(total, expected.sum(), dtype)
    assert_close(mean, expected.sum() / 11, dtype)
    assert_close(model.loss(X, y, reduction="mean"), expected.mean(), dtype)


@pytest.mark.parametrize("output", [
    "sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("reduction", ["max", None])
def test_loss_bad_reduction(backend, output, reduction, rng):
    model = MLP(2, 3, 2 if output == "softmax" else 1, output=output, random_state=0)
    X = rng.standard_normal((4, 2))
    with pytest.raises(ValueError, match="reduction"):
        model.loss(X, [0, 1, 1, 0], reduction=reduction)


@pytest.mark.parametrize("reduction", ["none", "max"])
def test_gradients_bad_reduction(backend, reduction, rng):
    model = MLP(2, 3, 2, random_state=0)
    with pytest.raises(ValueError, match="reduction"):
        model.gradients(rng.standard_normal((4, 2)), [0, 1, 1, 0], reduction=reduction)


@pytest.mark.parametrize("output, n_out, y, match", [
    ("softmax", 3, [0, 1, 3, 0], "0..2"),
    ("softmax", 3, [0, 1, -1, 0], "y"),
    ("softmax", 3, [0, 1, 0.5, 0], "integral"),
    ("softmax", 3, [0, 1, 2], "y"),
    ("sigmoid", 1, [0, 1, 2, 0], "binary"),
    ("sigmoid", 1, [0, 1, np.nan, 0], "y"),
    ("identity", 1, [0.0, 1.0, np.inf, 0.0], "finite"),
    ("identity", 2, [0.0, 1.0, 2.0, 0.0], "y"),
])
def test_loss_bad_targets(backend, output, n_out, y, match, rng):
    model = MLP(2, 3, n_out, output=output, random_state=0)
    X = rng.standard_normal((4, 2))
    with pytest.raises(ValueError, match=match):
        model.loss(X, y)
    with pytest.raises(ValueError, match=match):
        model.gradients(X, y)


def test_multilabel_sigmoid_targets_must_be_n_by_d(backend, rng):
    # d > 1 sigmoid outputs take an (N, d) 0/1 indicator matrix, nothing else
    model = MLP(2, 3, 2, output="sigmoid", random_state=0)
    X = rng.standard_normal((5, 2))
    Y = rng.integers(0, 2, (5, 2))
    np.testing.assert_allclose(model.loss(X, Y, reduction="none"),
                               model.loss(X, Y.astype(float), reduction="none"))
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        model.loss(X, [0, 1, 0, 1, 1])
    with pytest.raises(ValueError, match="y"):
        model.loss(X, [0, 1, 0, 1, 1, 0, 0, 1, 1, 1])  # (10,) is not (5, 2)


# ---------------------------------------------------------------------------------------
# Gradients: backpropagation against central finite differences of loss()
# ---------------------------------------------------------------------------------------


def _check_gradients(model, X, y, reduction, numerical_gradient):
    grads = model.gradients(X, y, reduction=reduction)
    assert len(grads) == len(model.layers)

    def objective():
        return model.loss(X, y, reduction=reduction)

    biggest = 0.0
    for l, ((dW, db), layer) in enumerate(zip(grads, model.layers)):
        assert dW.shape == layer.W.shape and dW.dtype == np.float64
        np.testing.assert_allclose(dW, numerical_gradient(objective, layer.W), **FD_TOL,
                                   err_msg=f"dW of layer {l}")
        if layer.b is None:
            assert db is None
        else:
            assert db.shape == layer.b.shape and db.dtype == np.float64
            np.testing.assert_allclose(db, numerical_gradient(objective, layer.b), **FD_TOL,
                                       err_msg=f"db of layer {l}")
        biggest = max(biggest, np.abs(dW).max())
    assert biggest > 1e-3  # not vacuous


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("output, n_out", [("sigmoid", 1), ("sigmoid", 2), ("softmax", 3),
                                           ("identity", 1), ("identity", 2)])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_gradients_match_finite_differences(backend, output, n_out, activation, reduction, rng,
                                            numerical_gradient):
    model = MLP(3, (4, 3), n_out, activation=activation, output=output, dtype="float64",
                random_state=11)
    X = _away_from_kinks(model, rng, 6)
    y = _labels(output, rng, 6, n_out)
    _check_gradients(model, X, y, reduction, numerical_gradient)


@pytest.mark.parametrize("hidden", [(), 4, (3, 4, 3)], ids=["h0", "h1", "h3"])
@pytest.mark.parametrize("output", OUTPUTS)
def test_gradients_any_depth(backend, hidden, output, rng, numerical_gradient):
    n_out = 3 if output == "softmax" else 1
    model = MLP(2, hidden, n_out, activation="tanh", output=output, dtype="float64",
                random_state=5)
    X = rng.standard_normal((5, 2))
    _check_gradients(model, X, _labels(output, rng, 5, n_out), "mean", numerical_gradient)


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "exp", "identity"])
def test_gradients_without_bias(backend, output, activation, rng, numerical_gradient):
    n_out = 3 if output == "softmax" else 2
    layers = [Linear(3, 4, activation, bias=False, dtype="float64", random_state=1),
              Linear(4, 3, "tanh", bias=True, dtype="float64", random_state=2),
              Linear(3, n_out, bias=False, dtype="float64", random_state=3)]
    model = Sequential(layers, loss=LOSS_OF_OUTPUT[output])
    X = _away_from_kinks(model, rng, 5, scale=0.5)
    y = _labels(output, rng, 5, n_out)
    grads = model.gradients(X, y, reduction="sum")
    assert grads[0][1] is None and grads[1][1] is not None and grads[2][1] is None
    _check_gradients(model, X, y, "sum", numerical_gradient)


def test_gradients_step_hidden_layer_is_zero(backend, rng, numerical_gradient):
    # eq. 2 is flat away from 0: nothing flows back through a step layer
    model = MLP(2, 4, 3, activation="step", output="softmax", dtype="float64", random_state=0)
    X = _away_from_kinks(model, rng, 6, margin=1e-2)
    y = rng.integers(0, 3, 6)
    (dW0, db0), (dW1, db1) = model.gradients(X, y)
    np.testing.assert_array_equal(dW0, 0)
    np.testing.assert_array_equal(db0, 0)
    assert np.abs(dW1).max() > 0
    _check_gradients(model, X, y, "mean", numerical_gradient)


def test_gradients_float32(backend, rng):
    # float32 gradients are float32 and agree with the float64 model's to float32 precision
    m64 = MLP(3, (5,), 3, activation="tanh", dtype="float64", random_state=0)
    m32 = MLP.from_weights([(l.W.astype(np.float32), l.b.astype(np.float32)) for l in m64.layers],
                           activation="tanh", output="softmax")
    X = rng.standard_normal((8, 3))
    y = rng.integers(0, 3, 8)
    for (dW32, db32), (dW64, db64) in zip(m32.gradients(X.astype(np.float32), y),
                                          m64.gradients(X, y)):
        assert dW32.dtype == np.float32 and db32.dtype == np.float32
        np.testing.assert_allclose(dW32, dW64, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(db32, db64, rtol=1e-4, atol=1e-6)


def test_gradients_do_not_change_the_model(backend, rng):
    model = MLP(3, 4, 2, dtype="float64", random_state=0)
    before = [(l.W.copy(), l.b.copy()) for l in model.layers]
    X = rng.standard_normal((5, 3))
    model.gradients(X, [0, 1, 1, 0, 1])
    model.loss(X, [0, 1, 1, 0, 1])
    for (W, b), l in zip(before, model.layers):
        np.testing.assert_array_equal(W, l.W)
        np.testing.assert_array_equal(b, l.b)


def test_repr():
    model = Sequential([Linear(2, 3, "relu"), Linear(3, 1, bias=False)], loss="squared_error")
    text = repr(model)
    assert "Sequential" in text and "bias=False" in text and "squared_error" in text
    assert repr(MLP(2, 3, 2)).startswith("MLP(")
    assert "Trace" in repr(model.forward([[0.0, 1.0]]))


# ---------------------------------------------------------------------------------------
# a model's dtype is native-order float32 or float64, however it is spelled
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [">f8", "<f8", "=f8", np.dtype(">f8"), "double",
                                      ">f4", "<f4", np.dtype(">f4"), "single"])
def test_byte_swapped_dtype_spellings_give_native_models(backend, spelling, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = (X[:, 0] > 0).astype(int)
    native = np.dtype(np.dtype(spelling).name)
    with fastnn.use_backend(backend):
        model = MLP(3, 5, 2, dtype=spelling, random_state=0)
        twin = MLP(3, 5, 2, dtype=native, random_state=0)
        assert model.dtype == native and model.dtype.isnative
        assert all(A.dtype.isnative for W, b in model.parameters() for A in (W, b))
        h1 = model.fit(X, y, epochs=3, random_state=0)
        h2 = twin.fit(X, y, epochs=3, random_state=0)
        assert h1.loss == h2.loss and np.isfinite(h1.loss).all()
        np.testing.assert_array_equal(model.predict_proba(X), twin.predict_proba(X))
    model.save(tmp_path / "m.npz")
    assert fastnn.load(tmp_path / "m.npz").dtype == native


def test_byte_swapped_arrays_are_read_by_value(backend):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 4))
    net = MLP(4, 6, 3, dtype="float64", random_state=0)
    expected = net.predict_proba(X)
    with fastnn.use_backend(backend):
        np.testing.assert_array_equal(net.predict_proba(X.astype(">f8")), expected)
        np.testing.assert_array_equal(net.decision_function(X.astype(">f8")),
                                      net.decision_function(X))
        for layer in net.layers:  # weights set byte-swapped (e.g. from a foreign file)
            layer.W = layer.W.astype(">f8")
            layer.b = layer.b.astype(">f8")
        np.testing.assert_allclose(net.predict_proba(X), expected, rtol=1e-15)
        W = rng.standard_normal((3, 4))
        np.testing.assert_array_equal(F.linear(X.astype(">f8"), W.astype(">f8")),
                                      F.linear(X, W))


# ---------------------------------------------------------------------------------------
# shared (tied) weights are refused, on both backends alike
# ---------------------------------------------------------------------------------------


def test_the_same_layer_twice_is_refused():
    layer = Linear(4, 4, "relu")
    with pytest.raises(ValueError, match=r"layers\[1\] is the same Linear as layers\[0\]"):
        Sequential([layer, layer], loss="squared_error")


@pytest.mark.parametrize("how", ["same W", "W view", "b in W", "appended layer"])
def test_layers_sharing_arrays_cannot_be_trained(backend, how):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 4)), rng.standard_normal(16)
    first = Linear(4, 4, "tanh", random_state=0)
    second = Linear(4, 4, "tanh", random_state=1)
    model = Sequential([first, second, Linear(4, 1, random_state=2)], loss="squared_error")
    if how == "same W":
        second.W = first.W
    elif how == "W view":
        second.W = first.W[:, :]
    elif how == "b in W":
        second.b = first.W[0]
    else:
        model.layers.insert(1, first)
    before = [A.copy() for W, b in model.parameters() for A in (W, b)]
    with fastnn.use_backend(backend), pytest.raises(ValueError, match="shares memory"):
        model.fit(X, y, epochs=1)
    after = [A for W, b in model.parameters() for A in (W, b)]
    assert all(np.array_equal(A, B) for A, B in zip(before, after))


# ---------------------------------------------------------------------------------------
# every method taking X refuses non-finite input, as fit does
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, match", [
    (np.nan, "must be finite"), (np.inf, "must be finite"), (-np.inf, "must be finite"),
    (1e39, "holds values too large for the model's float32")])
@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function", "loss",
                                    "forward", "gradients", "fit"])
@pytest.mark.parametrize("single", [False, True])
def test_non_finite_X_is_refused_by_every_method(backend, value, match, method, single):
    net = MLP(3, 4, 2, random_state=0)  # float32
    X = np.zeros((5, 3))
    X[2, 1] = value
    x = X[2] if single else X
    args = (x,) if method in ("predict", "predict_proba", "decision_function", "forward") \
        else (x, 1 if single else np.ones(5, int))
    with fastnn.use_backend(backend), pytest.raises(ValueError, match="X " + match):
        getattr(net, method)(*args)


def test_non_finite_X_in_the_models_own_dtype_is_refused(backend):
    net = MLP(3, 4, 2, dtype="float64", random_state=0)
    X = np.zeros((4, 3))
    X[0, 0] = np.nan
    with fastnn.use_backend(backend), pytest.raises(ValueError, match="X must be finite"):
        net.predict(X)  # the fast path: C-contiguous float64 of the model's dtype


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("row", [0, 2047, 4095])
def test_non_finite_X_is_refused_where_a_batch_is_cut_into_parts(dtype, row):
    # a batch of 4096 rows runs as parts on fastnn's threads, each checking its own rows:
    # a NaN in any part's rows refuses the whole call
    net = MLP(784, 256, 10, dtype=dtype, random_state=0)
    X = np.zeros((4096, 784), dtype)
    X[row, 783] = np.nan
    with pytest.raises(ValueError, match="X must be finite"):
        net.predict_proba(X)
    X[row, 783] = 0
    # every part computes its rows alike: the same bits in every row; a sample alone takes
    # the one-sample kernel, whose sums run in another order than the product's on AVX2
    P = net.predict_proba(X)
    np.testing.assert_array_equal(P, P[[0] * 4096])
    np.testing.assert_allclose(P[0], net.predict_proba(X[:1])[0], rtol=1e-6)


def test_sparse_input_names_what_was_passed():
    sparse = pytest.importorskip("scipy.sparse")
    net = MLP(3, 4, 2, random_state=0)
    with pytest.raises(TypeError, match="y must be a dense array, got a scipy.sparse "
                                        "csr_matrix of shape"):  # (X may be sparse, y not)
        net.loss(np.ones((2, 3)), sparse.csr_matrix(np.ones((2, 1))))


# ---------------------------------------------------------------------------------------
# predict_proba / decision_function / predict: all layers in one compiled call
# (_kernels.network) when X and the layers allow it, the bits of the per-layer path for every
# batch size; the general path (with its validation) for everything else
# ---------------------------------------------------------------------------------------


def layer_by_layer(model, X, output):
    """The general path: F.linear per layer, then the output map."""
    U = X
    for lay in model.layers:
        U = F.linear(U, lay.W, lay.b, lay.activation)
    return {"softmax": F.softmax, "sigmoid": F.sigmoid, "identity": lambda Z: Z}[output](U)


ONE_CALL_MODELS = [
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
@pytest.mark.parametrize("spec", ONE_CALL_MODELS)
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
    parts = tuning()
    work = N * sum(layer.W.size for layer in model.layers)
    if N < 2 * parts["part_rows"] or work < 2 * parts["part_work"]:  # one part
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


# ---------------------------------------------------------------------------------------
# Frozen models (Sequential.freeze): read-only weights, float32 layers' W^T in panels
# ---------------------------------------------------------------------------------------


def _twin(model):
    """A model with copies of ``model``'s weights, activations and output (not frozen)."""
    layers = [Linear.from_arrays(layer.W, layer.b, layer.activation, dtype=layer.dtype)
              for layer in model.layers]
    return Sequential(layers, loss=model.loss_name)


@pytest.mark.parametrize("output, n_out", [("softmax", 10), ("sigmoid", 1), ("identity", 3)])
@pytest.mark.parametrize("hidden", [256, (300, 129), 64], ids=["h256", "h300-129", "h64"])
def test_a_frozen_model_predicts_as_the_notes_say(dtype, output, n_out, hidden, rng,
                                                  assert_close):
    # eq. 10 then eq. 5, 3 or 7 in float64 NumPy from the model's weights; layers of 128
    # units or more (more than one panel, and a last panel narrower than the rest) take the
    # packed product in float32, the narrower ones W's
    model = MLP(70, hidden, n_out, output=output, dtype=dtype, random_state=0)
    plain = _twin(model)
    assert model.freeze() is model
    for layer in model.layers:
        packed = getattr(layer, "_packed", None)
        assert (packed is not None) == (np.dtype(dtype) == np.float32 and layer.n_out >= 128)
    for N in (1, 2, 5, 33, 300):
        X = rng.standard_normal((N, 70)).astype(dtype)
        want = _manual_trace(model, X)[1][-1]
        got = model.predict_proba(X)
        assert_close(got.reshape(want.shape), want, dtype)
        assert_close(model.decision_function(X), plain.decision_function(X), dtype)
        if output != "identity":
            np.testing.assert_array_equal(model.predict(X), plain.predict(X))
        if np.dtype(dtype) == np.float64:  # (no packed copy: the very same products)
            assert same_bits(got, plain.predict_proba(X))
    x = rng.standard_normal(70).astype(dtype)
    assert_close(model.predict_proba(x), plain.predict_proba(x), dtype)


@pytest.mark.parametrize("kind", ["frozen", "float32", "float64"])
@pytest.mark.parametrize("hidden, output", [((256,), "softmax"), ((200, 140), "sigmoid"),
                                            ((), "identity"), ((), "softmax")],
                         ids=["784-256-10", "deeper", "one-layer", "one-layer-softmax"])
def test_a_small_batch_split_by_units(kind, hidden, output, rng, assert_close):
    # a batch of up to unit_rows rows shares its first layer's units (blocks of a panel's
    # width; a frozen float32 layer's panels) among the threads: the network's output as the
    # notes say, the same bits on 1 and 2 threads and (the checked build) as the same batch
    # in one part of rows
    import threadpoolctl

    try:
        from fastnn import _testing
    except ImportError:
        _testing = None
    dtype = np.float64 if kind == "float64" else np.float32
    if hidden:
        model = MLP(784, list(hidden), 1 if output == "sigmoid" else 10, output=output,
                    dtype=dtype, random_state=0)
    else:  # one layer of 300 units (3 blocks, the last narrower) and its output map
        loss = "squared_error" if output == "identity" else "cross_entropy"
        model = Sequential([Linear(784, 300, "relu", dtype=dtype, random_state=0)],
                           loss=loss)
    if kind == "frozen":
        model.freeze()
    out = model.predict if output == "identity" else model.predict_proba
    for N in sorted({2, 3, 17, tuning()["unit_rows"]}):
        X = rng.standard_normal((N, 784)).astype(dtype)
        got = []
        for threads in (1, 2):
            with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"):
                got.append(out(X))
        np.testing.assert_array_equal(got[0], got[1])
        assert_close(got[0].reshape(N, -1), _manual_trace(model, X)[1][-1], dtype)
        if _testing is not None and N < 2 * tuning()["part_rows"]:  # (rows: one part)
            with _testing.tuning(unit_rows=0):
                np.testing.assert_array_equal(out(X), got[0])


def test_frozen_weights_are_read_only(dtype):
    model = MLP(5, 130, 2, dtype=dtype, random_state=0).freeze()
    for layer in model.layers:
        for A in (layer.W, layer.b):
            with pytest.raises(ValueError, match="read-only"):
                A[0] = 1.0
            with pytest.raises(ValueError):
                A.flags.writeable = True
            with pytest.raises(ValueError):
                A.base[...] = 0  # (nor through the buffer W is a view of)


def test_training_thaws_a_frozen_model(rng):
    X = rng.standard_normal((64, 20)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = MLP(20, 200, 3, random_state=0)
    twin = _twin(model)
    model.freeze()
    frozen_W = model.layers[0].W
    model.fit(X, y, epochs=2, batch_size=16, random_state=0)
    twin.fit(X, y, epochs=2, batch_size=16, random_state=0)
    assert model.layers[0].W is not frozen_W and model.layers[0].W.flags.writeable
    assert model.layers[0]._packed is None  # (its memory is not held on)
    assert same_bits(model.parameters(), twin.parameters())
    assert same_bits(model.predict_proba(X), twin.predict_proba(X))
    model.layers[0].W[0, 0] += 1.0  # writeable again, and used as written
    twin.layers[0].W[0, 0] += 1.0
    assert same_bits(model.predict_proba(X), twin.predict_proba(X))


def test_a_frozen_layer_follows_a_new_W(rng, assert_close):
    model = MLP(30, 160, 4, random_state=0).freeze()
    X = rng.standard_normal((3, 30)).astype(np.float32)
    W = rng.standard_normal((160, 30)).astype(np.float32)
    model.layers[0].W = W  # (the packed copy is of the frozen W: no longer used)
    assert_close(model.predict_proba(X), _manual_trace(model, X)[1][-1], "float32")
    for x in X:
        assert_close(model.predict_proba(x), _manual_trace(model, x[None])[1][-1][0], "float32")
    model.layers[0].W = np.array(W)  # read-only but not the frozen array: W's own product
    model.layers[0].W.flags.writeable = False
    assert_close(model.predict_proba(X), _manual_trace(model, X)[1][-1], "float32")
    layer = model.freeze().layers[0]
    layer._packed = (layer.W, np.zeros(3, np.float32))  # not W's size: not used
    assert_close(model.predict_proba(X), _manual_trace(model, X)[1][-1], "float32")


def test_a_frozen_model_still_checks_its_inputs():
    model = MLP(6, 140, 2, random_state=0).freeze()
    X = np.ones((4, 6), np.float32)
    X[2, 3] = np.nan
    with pytest.raises(ValueError, match="X"):
        model.predict_proba(X)
    with pytest.raises(ValueError, match="features"):
        model.predict_proba(np.ones((4, 5), np.float32))


def test_a_frozen_model_pickles_and_copies_its_weights_only(rng):
    import copy
    import pickle

    model = MLP(40, 300, 5, random_state=0).freeze()
    X = rng.standard_normal((7, 40)).astype(np.float32)
    want = model.predict_proba(X)
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert all(getattr(layer, "_packed", None) is None for layer in other.layers)
        assert same_bits(other.parameters(), model.parameters())
        assert same_bits(other.freeze().predict_proba(X), want)
