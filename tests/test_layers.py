"""fastnn.layers: ``Linear`` (DESIGN.md, "Models"), its initialisation, ``from_arrays``, its
forward on both backends and dtypes against plain NumPy, and the weights' alignment.
"""

import numpy as np
import pytest

import fastnn
from fastnn import Linear
from helpers import same_bits


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.dtype("float64")])
def test_linear_shapes_and_dtype(dtype):
    layer = Linear(3, 5, "tanh", dtype=dtype, random_state=0)
    want = np.dtype(dtype)
    assert layer.W.shape == (5, 3) and layer.b.shape == (5,)
    assert layer.W.dtype == want and layer.b.dtype == want and layer.dtype == want
    assert (layer.n_in, layer.n_out, layer.activation) == (3, 5, "tanh")
    assert layer.W.flags.c_contiguous
    assert layer.parameters()[0] is layer.W and layer.parameters()[1] is layer.b


def test_linear_default_dtype_is_float32_and_activation_identity():
    layer = Linear(2, 3)
    assert layer.dtype == np.float32 and layer.activation == "identity"


def test_linear_without_bias():
    layer = Linear(4, 2, "relu", bias=False, random_state=0)
    assert layer.b is None
    assert len(layer.parameters()) == 1 and layer.parameters()[0] is layer.W
    assert "bias=False" in repr(layer)


def test_linear_init_is_deterministic_with_random_state():
    a = Linear(6, 4, "relu", dtype="float64", random_state=123)
    b = Linear(6, 4, "relu", dtype="float64", random_state=123)
    c = Linear(6, 4, "relu", dtype="float64", random_state=124)
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.b, b.b)
    assert not np.array_equal(a.W, c.W)
    # a Generator is accepted and advanced
    g = np.random.default_rng(5)
    d, e = Linear(6, 4, random_state=g), Linear(6, 4, random_state=g)
    assert not np.array_equal(d.W, e.W)


def test_linear_init_bounds():
    # b, and W of non-ReLU units: scikit-learn's Glorot bound sqrt(6 / (fan_in + fan_out)),
    # sqrt(2 / (fan_in + fan_out)) for logistic units; W of ReLU units: He's sqrt(6 / fan_in)
    n_in, n_out = 40, 60
    for act, w_bound, b_bound in (("relu", np.sqrt(6.0 / n_in), np.sqrt(6.0 / (n_in + n_out))),
                                  ("tanh", np.sqrt(6.0 / (n_in + n_out)), None),
                                  ("identity", np.sqrt(6.0 / (n_in + n_out)), None),
                                  ("sigmoid", np.sqrt(2.0 / (n_in + n_out)), None)):
        b_bound = w_bound if b_bound is None else b_bound
        layer = Linear(n_in, n_out, act, dtype="float64", random_state=0)
        assert np.abs(layer.W).max() <= w_bound and np.abs(layer.b).max() <= b_bound
        # uniform on the whole interval, not a smaller one
        assert np.abs(layer.W).max() > 0.95 * w_bound
        assert np.abs(layer.b).max() > 0.8 * b_bound
        assert abs(layer.W.mean()) < 0.1 * w_bound


def test_linear_forward_matches_numpy(backend, dtype, rng, assert_close):
    layer = Linear(3, 4, "sigmoid", dtype=dtype, random_state=1)
    X = rng.standard_normal((7, 3)).astype(dtype)
    U = layer.forward(X)
    assert U.dtype == dtype and U.shape == (7, 4)
    expected = 1 / (1 + np.exp(-(X.astype(np.float64) @ layer.W.astype(np.float64).T
                                 + layer.b.astype(np.float64))))
    assert_close(U, expected, dtype)


def test_from_arrays_1d_W_and_scalar_b():
    # the notes write W^O = [-1, 2], b^O = 0.5 for one output unit
    layer = Linear.from_arrays([-1, 2], 0.5, "identity")
    assert layer.W.shape == (1, 2) and layer.b.shape == (1,)
    np.testing.assert_array_equal(layer.W, [[-1.0, 2.0]])
    np.testing.assert_array_equal(layer.b, [0.5])
    assert layer.dtype == np.float64  # Python numbers give float64
    assert (layer.n_in, layer.n_out) == (2, 1)


def test_from_arrays_dtype_and_copy():
    W = np.arange(6, dtype=np.float32).reshape(3, 2)
    b = np.ones(3, np.float32)
    layer = Linear.from_arrays(W, b, "relu")
    assert layer.dtype == np.float32 and layer.b.dtype == np.float32
    assert not np.shares_memory(layer.W, W) and not np.shares_memory(layer.b, b)
    W[0, 0] = 99
    assert layer.W[0, 0] == 0
    assert Linear.from_arrays(W, b.astype(np.float64)).dtype == np.float64  # mixed -> float64
    assert Linear.from_arrays(W, None, dtype="float64").dtype == np.float64
    assert Linear.from_arrays(W, None).b is None


@pytest.mark.parametrize("call, exc, name", [
    pytest.param(lambda: Linear(0, 3), ValueError, "n_in", id="n_in=0"),
    pytest.param(lambda: Linear(2.0, 3), TypeError, "n_in", id="n_in-float"),
    pytest.param(lambda: Linear(True, 3), TypeError, "n_in", id="n_in-bool"),
    pytest.param(lambda: Linear(2, -1), ValueError, "n_out", id="n_out<0"),
    pytest.param(lambda: Linear(2, "3"), TypeError, "n_out", id="n_out-str"),
    pytest.param(lambda: Linear(2, 3, "softmax"), ValueError, "activation", id="activation"),
    pytest.param(lambda: Linear(2, 3, 1), TypeError, "activation", id="activation-int"),
    pytest.param(lambda: Linear(2, 3, bias=1), TypeError, "bias", id="bias"),
    pytest.param(lambda: Linear(2, 3, dtype="int32"), ValueError, "dtype", id="dtype"),
    pytest.param(lambda: Linear(2, 3, dtype="float16"), ValueError, "dtype", id="dtype16"),
    pytest.param(lambda: Linear.from_arrays([[1.0, 2.0]], [1.0, 2.0]), ValueError, "b",
                 id="from_arrays-b-shape"),
    pytest.param(lambda: Linear.from_arrays(np.ones((1, 1, 1))), ValueError, "W",
                 id="from_arrays-W-3d"),
    pytest.param(lambda: Linear.from_arrays(np.zeros((0, 2))), ValueError, "W",
                 id="from_arrays-W-empty"),
    pytest.param(lambda: Linear.from_arrays([["a"]]), TypeError, "W", id="from_arrays-W-str"),
    pytest.param(lambda: Linear.from_arrays([[1.0]], activation="bogus"), ValueError,
                 "activation", id="from_arrays-activation"),
    pytest.param(lambda: Linear.from_arrays([[1.0]], dtype="int8"), ValueError, "dtype",
                 id="from_arrays-dtype"),
    pytest.param(lambda: Linear.from_arrays(None), TypeError, "W", id="from_arrays-W-None"),
    pytest.param(lambda: Linear(2, 3, random_state="seed"), TypeError, "random_state",
                 id="random_state-str"),
])
def test_linear_bad_arguments(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


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
