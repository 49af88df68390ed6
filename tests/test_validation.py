"""Bad input raises a ValueError (bad value or shape) or TypeError (bad type) whose message
starts with the name of the offending argument, on both backends; good input of every
accepted kind (lists, bools, numpy scalars) works."""

import numpy as np
import pytest

from fastnn import functional as F


def _ro(A):
    A = np.array(A, dtype=np.float64)
    A.flags.writeable = False  # also proves that validation never writes to its input
    return A


_rng = np.random.default_rng(7)
X = _ro(_rng.standard_normal((5, 4)))
W = _ro(_rng.standard_normal((3, 4)))
B = _ro(_rng.standard_normal(3))
U = _ro(np.tanh(X @ W.T + B))
DU = _ro(_rng.standard_normal((5, 3)))
Z = _ro(_rng.standard_normal((5, 3)))
Y = np.array([0, 1, 2, 0, 1])
Z1 = _ro(_rng.standard_normal(5))
Y01 = np.array([0, 1, 1, 0, 1])

def _cases():
    """(id, call, exception, argument name) of every bad input."""
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


# ---------------------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------------------


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
    with pytest.raises(exc, match=r"^out\b"):
        F.linear(X, W, B, "relu", out=make_out())


def test_linear_out_dtype_follows_the_inputs(backend):
    with pytest.raises(TypeError, match=r"^out\b"):  # float32 inputs: a float32 result
        F.linear(X.astype(np.float32), W.astype(np.float32), out=np.empty((5, 3)))
    with pytest.raises(ValueError, match=r"^out\b"):  # one sample: a 1-D result
        F.linear(X[0], W, B, out=np.empty((1, 3)))


@pytest.mark.parametrize("which", ["X", "W", "b", "X-partial"])
def test_linear_out_overlapping_an_input(backend, which):
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
    buf = np.zeros((2, 5, 3))
    buf[0] = X[:, :3]
    result = F.linear(buf[0], W[:, :3], B, "tanh", out=buf[1])
    assert result is not None and np.shares_memory(result, buf)
    np.testing.assert_allclose(buf[1], np.tanh(X[:, :3] @ W[:, :3].T + B), rtol=1e-12)


# ---------------------------------------------------------------------------------------
# Accepted inputs
# ---------------------------------------------------------------------------------------


def test_python_lists_are_accepted(backend):
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
    _, g = F.cross_entropy(Z, Y, return_grad=np.bool_(True))
    assert g.shape == Z.shape
    dX, _, _ = F.linear_backward(DU, X, W, U, need_dX=np.bool_(False))
    assert dX is None
    for y in (np.int64(2), np.float32(2.0), 2, 2.0, True):
        loss = F.cross_entropy(Z[0], y, reduction="none")
        assert loss.shape == ()
    np.testing.assert_array_equal(F.activate(Z, np.str_("relu")), F.activate(Z, "relu"))


def test_labels_on_the_boundary_are_accepted(backend):
    K = Z.shape[1]
    F.cross_entropy(Z, [0, K - 1, 0, K - 1, 0])
    F.cross_entropy(Z, np.array([0, K - 1, 0, K - 1, 0], np.uint8))
    F.cross_entropy(Z, np.array([0.0, K - 1.0, 0.0, 1.0, 0.0]))  # integral floats
    F.binary_cross_entropy(Z1, np.array([0.0, 1.0, 1.0, 0.0, 1.0], np.float32))
    F.binary_cross_entropy(Z1[:, None], Y01[:, None])  # (N, 1) logits with (N, 1) labels
    assert F.cross_entropy(Z[:, :1], np.zeros(5, int)) == 0.0  # K = 1: a certain class


def test_error_messages_state_the_expectation(backend):
    with pytest.raises(ValueError, match=r"W must have shape \(3, 5\)"):
        F.linear(np.zeros((2, 5)), W)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        F.cross_entropy(Z, [0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match=r"'identity'.*'exp'"):
        F.activate(Z, "softmax")
    with pytest.raises(ValueError, match=r"'mean'.*'sum'.*'none'"):
        F.squared_error(Z, Z, reduction="avg")
