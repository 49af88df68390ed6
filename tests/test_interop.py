"""fastnn.interop: PyTorch-style state_dicts and ONNX export run by onnxruntime (the fitted
estimators' export, which needs scikit-learn, is in test_interop_estimators.py).

PyTorch and onnxruntime are oracles here, as in micrograd's tests: each test that needs one
is skipped when it is not installed.
"""

import sys

import numpy as np
import pytest

import fastnn
from fastnn import MLP, Linear, Sequential
from fastnn.datasets import load_digits, train_test_split
from fastnn.interop import from_state_dict, to_onnx, to_state_dict
from helpers import run_onnx

ACTIVATIONS = ("identity", "step", "sigmoid", "relu", "tanh", "exp")


def _inputs(n_inputs, dtype, n=17, seed=0):
    return np.random.default_rng(seed).normal(size=(n, n_inputs)).astype(dtype)


def _model(kind, dtype):
    """A few shapes of model: MLPs of each output, and a Sequential with a bias-less layer and
    a different activation per layer."""
    if kind == "softmax":
        return MLP(5, [7, 6], 4, activation="relu", dtype=dtype, random_state=0)
    if kind == "sigmoid":
        return MLP(5, 7, 1, activation="tanh", output="sigmoid", dtype=dtype, random_state=1)
    if kind == "identity":
        return MLP(5, [3], 2, activation="sigmoid", output="identity", dtype=dtype,
                   random_state=2)
    return Sequential([Linear(5, 6, "exp", dtype=dtype, random_state=3),
                       Linear(6, 4, "step", bias=False, dtype=dtype, random_state=4),
                       Linear(4, 3, "identity", dtype=dtype, random_state=5)],
                      loss="binary_cross_entropy")


@pytest.fixture(scope="module")
def digits_model():
    """MLP(64, 128, 10) trained a few epochs on the bundled digits, and its test images."""
    X, y = load_digits()
    X_train, X_test, y_train, _ = train_test_split(X / 16, y, test_size=0.25)
    model = MLP(64, 128, 10, random_state=0)
    model.fit(X_train, y_train, epochs=5, batch_size=32, lr=0.1, momentum=0.9, random_state=0)
    return model, X_test


# ---------------------------------------------------------------------------------------
# state_dict
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "identity", "sequential"])
def test_state_dict_round_trip_is_bit_identical(kind, dtype):
    model = _model(kind, dtype)
    state = to_state_dict(model)
    activation = [layer.activation for layer in model.layers] if kind == "sequential" \
        else model.layers[0].activation
    same = from_state_dict(state, activation=activation, output=model.output)
    assert type(same) is type(model)
    assert same.loss_name == model.loss_name and same.dtype == model.dtype
    assert [(L.activation, L.b is None) for L in same.layers] == \
        [(L.activation, L.b is None) for L in model.layers]
    X = _inputs(5, dtype)
    for method in ("decision_function", "predict_proba", "predict"):
        expected, got = getattr(model, method)(X), getattr(same, method)(X)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_state_dict_names_and_copies():
    model = _model("sequential", np.float32)
    state = to_state_dict(model)
    assert list(state) == ["0.weight", "0.bias", "2.weight", "4.weight", "4.bias"]
    assert state["2.weight"].shape == (4, 6)  # (out_features, in_features), as torch
    state["0.weight"][...] = 0
    assert model.layers[0].W.any(), "to_state_dict must return copies"
    same = from_state_dict(to_state_dict(model), ["exp", "step", "identity"],
                           loss="binary_cross_entropy")
    same.layers[0].W[...] = 0
    assert model.layers[0].W.any(), "from_state_dict must copy"


def test_from_state_dict_takes_lists_and_sparse_indices():
    # a torch.nn.Sequential(Linear, ReLU, Dropout, Linear) names its second Linear "3"
    state = {"0.weight": [[1.0, 0.0], [0.0, 1.0]], "0.bias": [0.0, 0.0],
             "3.weight": [[1.0, -1.0]], "3.bias": [0.5]}
    net = from_state_dict(state, activation="relu", output="sigmoid")
    assert isinstance(net, MLP) and net.dtype == np.float64 and net.loss_name == \
        "binary_cross_entropy"
    np.testing.assert_array_equal(net.decision_function([[2.0, 1.0], [-1.0, 3.0]]), [1.5, -2.5])


@pytest.mark.parametrize("state, key", [
    ({"0.weight": np.ones((3, 2)), "0.bais": np.ones(3)}, "'0.bais'"),
    ({"weight": np.ones((3, 2))}, "'weight'"),
    ({"00.weight": np.ones((3, 2))}, "'00.weight'"),
    ({"0.weight": np.ones((3, 2)), "2.bias": np.ones(2)}, "'2.bias'"),
    ({"0.weight": np.ones(3)}, "'0.weight'"),
    ({"0.weight": np.ones((3, 2, 1))}, "'0.weight'"),
    ({"0.weight": np.ones((0, 2))}, "'0.weight'"),
    ({"0.weight": np.ones((3, 2)), "0.bias": np.ones(2)}, "'0.bias'"),
    ({"0.weight": np.ones((3, 2)), "0.bias": np.ones((3, 1))}, "'0.bias'"),
    ({"0.weight": np.ones((3, 2)), "2.weight": np.ones((1, 4))}, "'2.weight'"),
    ({"0.weight": np.full((3, 2), np.nan)}, "'0.weight'"),
    ({"0.weight": np.ones((3, 2)), "0.bias": [1.0, np.inf, 0.0]}, "'0.bias'"),
    ({"0.weight": [[1.0, 2.0], [3.0]]}, "'0.weight'"),
])
def test_from_state_dict_bad_input_names_the_key(state, key):
    with pytest.raises(ValueError, match=key):
        from_state_dict(state)


def test_from_state_dict_other_bad_arguments():
    good = {"0.weight": np.ones((3, 2)), "2.weight": np.ones((1, 3))}
    with pytest.raises(ValueError, match="empty"):
        from_state_dict({})
    with pytest.raises(ValueError, match="one activation per layer"):
        from_state_dict(good, activation=["relu"])
    with pytest.raises(ValueError, match="activation"):
        from_state_dict(good, activation="softplus")
    with pytest.raises(ValueError, match="disagree"):
        from_state_dict(good, output="softmax", loss="squared_error")
    with pytest.raises(ValueError, match="output"):
        from_state_dict(good, output="logits")
    with pytest.raises(ValueError, match="loss"):
        from_state_dict(good, loss="hinge")
    with pytest.raises(TypeError, match="'0.weight'"):
        from_state_dict({"0.weight": np.ones((3, 2), complex)})
    with pytest.raises(TypeError, match="mapping"):
        from_state_dict([("0.weight", np.ones((3, 2)))])
    with pytest.raises(TypeError, match="Sequential"):
        to_state_dict("model")
    assert from_state_dict(good, loss="squared_error").output == "identity"


# ---------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------


def _torch_sequential(torch, model):
    modules = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
               "identity": torch.nn.Identity}
    layers = []
    for layer in model.layers:
        layers += [torch.nn.Linear(layer.n_in, layer.n_out, bias=layer.b is not None),
                   modules[layer.activation]()]
    net = torch.nn.Sequential(*layers[:-1])  # the last activation (identity) is not a module
    return net.double() if model.dtype == np.float64 else net


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_state_dict_loads_into_torch(activation, dtype):
    torch = pytest.importorskip("torch")
    model = MLP(6, [9, 8], 5, activation=activation, dtype=dtype, random_state=0)
    net = _torch_sequential(torch, model)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in to_state_dict(model).items()})
    X = _inputs(6, dtype, n=33)
    with torch.no_grad():
        logits = net(torch.from_numpy(X)).numpy()
    assert logits.dtype == model.dtype
    np.testing.assert_allclose(logits, model.decision_function(X), rtol=0, atol=1e-6)
    # and back: torch's own state_dict (tensors, through __array__) gives the same model
    same = from_state_dict(net.state_dict(), activation=activation)
    np.testing.assert_array_equal(same.decision_function(X), model.decision_function(X))


def test_torch_trained_weights_into_fastnn():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 3)).double()
    X = _inputs(4, np.float64, n=50, seed=1)
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(X)), dim=1).numpy()
    model = from_state_dict({k: v.numpy() for k, v in net.state_dict().items()},
                            activation="tanh", output="softmax")
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------


def test_onnx_digits_model_matches_fastnn(digits_model, tmp_path):
    pytest.importorskip("onnx")
    model, X_test = digits_model
    path = str(tmp_path / "digits.onnx")
    proto = to_onnx(model, path)
    assert [node.op_type for node in proto.graph.node] == ["Gemm", "Relu", "Gemm", "Softmax"]
    out = run_onnx(path, X_test)  # the file written, as a user would load it
    assert out["probabilities"].dtype == np.float32 and out["probabilities"].shape == (450, 10)
    np.testing.assert_array_equal(out["probabilities"].argmax(axis=1), model.predict(X_test))
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(X_test), rtol=0,
                               atol=1e-5)
    np.testing.assert_allclose(out["logits"], model.decision_function(X_test), rtol=0,
                               atol=1e-4)


def test_onnx_float64_digits_model(digits_model):
    pytest.importorskip("onnx")
    model32, X_test = digits_model
    model = from_state_dict({k: v.astype(np.float64) for k, v in to_state_dict(model32).items()})
    X = X_test.astype(np.float64)
    out = run_onnx(to_onnx(model), X)
    assert out["probabilities"].dtype == np.float64
    np.testing.assert_array_equal(out["probabilities"].argmax(axis=1), model.predict(X))
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_onnx_every_activation_and_output(activation, output, dtype):
    pytest.importorskip("onnx")
    model = Sequential([Linear(4, 6, activation, dtype=dtype, random_state=0),
                        Linear(6, 5, activation, bias=False, dtype=dtype, random_state=1),
                        Linear(5, 3, "identity", dtype=dtype, random_state=2)],
                       loss=fastnn.network.LOSS_OF_OUTPUT[output])
    X = _inputs(4, dtype, n=64)
    out = run_onnx(to_onnx(model, opset=13), X)
    atol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out["logits"], model.decision_function(X), rtol=atol, atol=atol)
    if output == "identity":
        assert set(out) == {"logits"}
    else:
        np.testing.assert_allclose(out["probabilities"], model.predict_proba(X).reshape(64, 3),
                                   rtol=0, atol=atol)


def test_onnx_last_layer_activation_and_one_output():
    pytest.importorskip("onnx")
    model = Sequential([Linear(3, 5, "exp", random_state=0),
                        Linear(5, 1, "tanh", bias=False, random_state=1)], loss="squared_error")
    X = _inputs(3, np.float32)
    out = run_onnx(to_onnx(model), X)
    assert out["logits"].shape == (17, 1)  # ONNX keeps the output axis
    np.testing.assert_allclose(out["logits"][:, 0], model.predict(X), rtol=0, atol=1e-6)


def test_onnx_bad_arguments_and_missing_package(monkeypatch):
    model = MLP(2, 3, 2, random_state=0)
    with pytest.raises(ValueError, match="opset"):
        to_onnx(model, opset=11)
    with pytest.raises(TypeError, match="Sequential"):
        to_onnx(object())
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastnn\[onnx\]"'):
        to_onnx(model)
