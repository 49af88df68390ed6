"""Hardening, part 1: property-based tests (hypothesis) of every public function of
``fastnn.functional`` on both backends and of the model methods (forward, decision_function,
predict_proba, predict, loss, gradients) of small networks.

Inputs: random shapes (0- and 1-sized dimensions included), dtypes (float16/32/64, ints, bool,
complex, object, str), memory layouts (C, Fortran, negative strides, strided, non-aligned views
of a uint8 buffer offset by one byte, read-only, byte-swapped, nested lists) and values (NaN,
+-inf, +-1e30, subnormals, +-0). Each call must either

* raise ValueError or TypeError whose message starts with the name of an argument that breaks
  the documented contract (``shared/DESIGN.md``), or
* return the answer of ``fastnn.reference`` run on the validated arguments (converted to the
  computing dtype as the contract says), compared as ``assert_matches`` defines: NaN exactly
  where the reference has NaN, the same infinity where it has one (or a finite value within the
  error bound of the overflow threshold), finite values within an error bound derived for each
  function from the magnitudes of the terms it sums (see the ``*_bound`` helpers),

and must never modify its input arrays.

Budget: ``FASTNN_HYPOTHESIS_EXAMPLES`` examples per test (default 200: ~15 s on 2 cores;
3000: ~4 min), derandomized and without an example database, so a CI run is deterministic.
The counts (inputs tried, calls made) are printed in the terminal summary under "fastnn
hardening counts".
"""

import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastnn
from fastnn import functional as F
from fastnn import reference as R
from helpers import Subclass, with_layout

EXAMPLES = int(os.environ.get("FASTNN_HYPOTHESIS_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)
BACKENDS = ("cython", "numpy")
ACTIVATIONS = R.ACTIVATIONS
F64 = np.float64

COUNTS = {"inputs": 0, "calls": 0, "returned": 0, "raised": 0, "reference_calls": 0}


# ---------------------------------------------------------------------------------------
# Strategies: dtypes, values, layouts
# ---------------------------------------------------------------------------------------

GOOD_FLOAT = (np.float32, np.float64)
OTHER_REAL = (np.float16, np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_)
NOT_REAL = (np.complex64, np.complex128, np.object_, np.str_)

SPECIALS = np.array([
    np.nan, np.inf, -np.inf, 1e30, -1e30,
    5e-324, -5e-324, 1e-310,            # float64 subnormals (0 in float32)
    1e-45, -1e-40, 1e-39,               # float32 subnormals
    2.2250738585072014e-308,            # float64 smallest normal
    1.1754943508222875e-38,             # float32 smallest normal
    0.0, -0.0, 1.0, -1.0, 0.5, 2.0,
])

LAYOUTS = ("C", "C", "C", "fortran", "negative", "strided", "unaligned", "readonly",
           "byteswapped", "list")


def _float_values(special):
    finite = st.floats(-8, 8, allow_nan=False, allow_infinity=False)
    if not special:
        return finite
    return st.one_of(st.sampled_from(list(SPECIALS)), finite)


@st.composite
def arrays(draw, shape, dtype=None, special=None, layout=None, base=None):
    """An array (or nested list) of ``shape``: dtype mostly ``base`` (a float type), values
    finite or with special values, in a random memory layout."""
    if dtype is None:
        base = base if base is not None else draw(st.sampled_from(GOOD_FLOAT))
        dtype = draw(st.sampled_from((base,) * 12 + GOOD_FLOAT + OTHER_REAL + NOT_REAL))
    dtype = np.dtype(dtype)
    if special is None:
        special = draw(st.booleans())
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        ints = st.one_of(st.integers(-3, 3).filter(lambda v: info.min <= v <= info.max),
                         st.sampled_from([int(info.min), int(info.max)]))
        A = draw(hnp.arrays(np.int64 if dtype.kind == "i" else np.uint64, shape,
                            elements=ints if dtype.kind == "i" else ints.filter(lambda v: v >= 0)))
        A = A.astype(dtype)
    elif dtype.kind == "b":
        A = draw(hnp.arrays(np.bool_, shape, elements=st.booleans()))
    else:
        V = draw(hnp.arrays(F64, shape, elements=_float_values(special)))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            A = V.astype(dtype)
    if layout is None:
        layout = draw(st.sampled_from(LAYOUTS))
    return with_layout(A, layout)


def dims(lo=0, hi=4):
    return st.sampled_from([d for d in (0, 1, 1, 2, 3, 4) if lo <= d <= hi])


BAD_ACTIVATIONS = ("softplus", "", "RELU", None, 3, b"relu", ("relu",))
BAD_REDUCTIONS = ("avg", None, 1, b"sum", "")
BAD_FLAGS = (1, 0, "yes", None)


def activations():
    return st.sampled_from(ACTIVATIONS * 4 + BAD_ACTIVATIONS)


def reductions():
    return st.sampled_from(("mean", "sum", "none") * 4 + BAD_REDUCTIONS)


def flags():
    return st.sampled_from((True, False, np.True_, np.False_) * 3 + BAD_FLAGS)


# ---------------------------------------------------------------------------------------
# The contract, as a predicate: which arguments are bad, and the converted good ones
# ---------------------------------------------------------------------------------------

class Spec:
    """Collects the names of the arguments that break the contract."""

    def __init__(self):
        self.bad = set()

    def real(self, A, name, optional=False):
        """np.asarray(A) if it holds real numbers (kind b/i/u/f), else mark ``name`` bad."""
        if A is None:
            if not optional:
                self.bad.add(name)
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = np.asarray(A)
        except (ValueError, TypeError):
            self.bad.add(name)
            return None
        if arr.dtype.kind not in "biuf":
            self.bad.add(name)
            return None
        return arr

    def ndim(self, arr, name, ndims, allow_empty=False):
        if arr is None:
            return None
        if arr.ndim not in ndims or (arr.size == 0 and not allow_empty):
            self.bad.add(name)
            return None
        return arr

    def activation(self, act):
        if not (isinstance(act, str) and act in ACTIVATIONS):
            self.bad.add("activation")

    def reduction(self, red):
        if not (isinstance(red, str) and red in ("mean", "sum", "none")):
            self.bad.add("reduction")

    def flag(self, value, name):
        if not isinstance(value, (bool, np.bool_)):
            self.bad.add(name)


def computing_dtype(*arrays):
    """float32 if every array is float32 (any byte order), else float64 (the contract)."""
    arrays = [A for A in arrays if A is not None]
    if all(A.dtype.type is np.float32 for A in arrays):
        return np.dtype(np.float32)
    return np.dtype(F64)


def conv(A, dtype):
    if A is None:
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(A).astype(dtype, order="C")


def snapshot(*args):
    """Exact copies of the ndarray arguments (to check that no call modifies its inputs)."""
    return [(A, A.dtype, A.shape, A.tobytes()) for A in args
            if isinstance(A, np.ndarray) and not A.dtype.hasobject]


def assert_unmodified(snaps):
    for A, dtype, shape, data in snaps:
        assert A.dtype == dtype and A.shape == shape and A.tobytes() == data, \
            "an input array was modified"


def call(fn, *args, **kwargs):
    """Run a fastnn call (counted), with NumPy's floating-point warnings silenced."""
    COUNTS["calls"] += 1
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def ref(fn, *args, **kwargs):
    COUNTS["reference_calls"] += 1
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def expect_error(bad, fn, *args, **kwargs):
    """The call must raise ValueError/TypeError whose message starts with a name in ``bad``."""
    note(f"expected an error naming one of {sorted(bad)}")
    with pytest.raises((ValueError, TypeError)) as info:
        call(fn, *args, **kwargs)
    COUNTS["raised"] += 1
    message = str(info.value)
    first = message.split(" ", 1)[0] if message else ""
    assert first in bad, \
        f"{type(info.value).__name__}({message!r}) does not name one of {sorted(bad)}"


# ---------------------------------------------------------------------------------------
# Comparison with the reference
# ---------------------------------------------------------------------------------------

def eps_tiny(dtype):
    fi = np.finfo(dtype)
    return float(fi.eps), float(fi.smallest_subnormal)


def assert_matches(actual, expected, err, what=""):
    """``actual`` is the reference's ``expected`` up to the per-element bound ``err``:

    * same shape and dtype;
    * NaN exactly where ``expected`` is NaN;
    * an infinity where ``expected`` has the same infinity, except that a finite value and an
      infinity of the same sign are accepted when the finite one is within ``err`` of the
      dtype's overflow threshold, and within a factor 256 of it (the exact value may round
      either way);
    * finite values within ``err`` of each other.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    a = actual.astype(F64)
    e = expected.astype(F64)
    err = np.broadcast_to(np.asarray(err, dtype=F64), e.shape)
    big = float(np.finfo(expected.dtype).max)
    with np.errstate(all="ignore"):
        an, en = np.isnan(a), np.isnan(e)
        wrong = an != en
        nonfinite = (np.isinf(a) | np.isinf(e)) & ~an & ~en & (a != e)
        finite_side = np.where(np.isfinite(a), a, e)
        boundary = nonfinite & (np.sign(a) == np.sign(e)) & \
            (np.abs(finite_side) + err >= big * (1 - 1e-6)) & (np.abs(finite_side) >= big / 256)
        wrong |= nonfinite & ~boundary
        both = np.isfinite(a) & np.isfinite(e)
        wrong |= both & ~(np.abs(a - e) <= err)
    if wrong.any():
        idx = tuple(np.argwhere(wrong)[0])
        raise AssertionError(
            f"{what}: {int(wrong.sum())} of {wrong.size} elements differ from the reference; "
            f"first at {idx}: got {actual[idx]!r}, reference {expected[idx]!r}, "
            f"bound {err[idx]!r}")


def g64(Z, act):
    """The activation on float64 values (for the error intervals)."""
    with np.errstate(all="ignore"):
        return R.activate(np.asarray(Z, dtype=F64), act)


ROUND_ULPS = {"identity": 0, "step": 0, "relu": 0, "sigmoid": 16, "tanh": 16, "exp": 16}


def activation_bound(Z, U_ref, act, dtype, z_err=None):
    """Bound for g(Z) computed from values within ``z_err`` of ``Z``: every activation is
    monotone, so g of the interval [Z - z_err, Z + z_err], plus the rounding of g itself
    (16 ulp for sigmoid/tanh/exp: fastnn's exp is within 2 ulp of libm's, NumPy's within a
    few). Exact (0) where Z is not finite."""
    eps, tiny = eps_tiny(dtype)
    Z = np.asarray(Z, dtype=F64)
    u = np.asarray(U_ref, dtype=F64)
    with np.errstate(all="ignore"):
        if z_err is None:
            err = np.zeros_like(Z)
        else:
            lo, hi = g64(Z - z_err, act), g64(Z + z_err, act)
            err = np.maximum(np.abs(hi - u), np.abs(u - lo))
        k = ROUND_ULPS[act]
        err = err + k * (eps * np.abs(u) + tiny)
        return np.where(np.isfinite(Z), np.nan_to_num(err, nan=np.inf), 0.0)


def ieee_matmul(A, B):
    """A @ B with every product evaluated (IEEE: 0 * NaN = NaN), in A's dtype, without BLAS:
    BLAS may skip the terms of a zero operand (NumPy's dot of a single row does), so the NaN
    and inf of a product through BLAS depend on the library."""
    with np.errstate(all="ignore"):
        return (A[:, :, None] * B[None, :, :]).sum(axis=1)


def ieee_linear(X2, W, b, act):
    """The reference's linear (eq. 10a) with the product evaluated by ``ieee_matmul``."""
    COUNTS["reference_calls"] += 1
    Z = ieee_matmul(X2, W.T)
    if b is not None:
        with np.errstate(all="ignore"):
            Z = Z + b[None, :]
    return ref(R.activate, Z, act)


def ieee_linear_backward(dU, X, W, U, act, need_dX):
    """The reference's linear_backward with the products evaluated by ``ieee_matmul``."""
    COUNTS["reference_calls"] += 1
    with np.errstate(all="ignore"):
        dZ = dU * R.activation_grad(U, act)
        return (ieee_matmul(dZ, W) if need_dX else None), ieee_matmul(dZ.T, X), dZ.sum(axis=0)


def linear_bound(X2, W, b, dtype):
    """|fl(X W^T + b) - (X W^T + b)| <= (K + 2) eps (|X| |W|^T + |b|) (+ underflow), times 4,
    and twice that between two implementations (BLAS, direct loops, NumPy)."""
    eps, tiny = eps_tiny(dtype)
    K = X2.shape[1]
    with np.errstate(all="ignore"):
        M = np.abs(X2.astype(F64)) @ np.abs(W.astype(F64)).T
        if b is not None:
            M = M + np.abs(b.astype(F64))
        return 8 * (K + 2) * (eps * M + tiny)


# ---------------------------------------------------------------------------------------
# fastnn.functional.linear
# ---------------------------------------------------------------------------------------

@st.composite
def linear_cases(draw):
    base = draw(st.sampled_from(GOOD_FLOAT))
    N, K, M = draw(dims()), draw(dims()), draw(dims())
    single = draw(st.integers(0, 4)) == 0
    x_shape = (K,) if single else (N, K)
    if draw(st.integers(0, 9)) == 0:
        x_shape = draw(st.sampled_from([(N, K, 1), ()]))
    w_shape = draw(st.sampled_from([(M, K)] * 8 + [(M, K + 1), (M,), (M, K, 1)]))
    b_shape = draw(st.sampled_from([(M,)] * 6 + [None] * 3 + [(M + 1,), (M, 1), ()]))
    X = draw(arrays(x_shape, base=base))
    W = draw(arrays(w_shape, base=base))
    b = None if b_shape is None else draw(arrays(b_shape, base=base))
    act = draw(activations())
    out_kind = draw(st.sampled_from(["none"] * 6 + ["good", "unaligned", "fortran", "readonly",
                                                    "list", "wrong_dtype", "wrong_shape",
                                                    "is_X", "subclass"]))
    return X, W, b, act, out_kind


def _make_out(kind, shape, dtype, X):
    if kind == "none":
        return None
    if kind == "is_X":
        return X
    if kind == "list":
        return np.zeros(shape, dtype).tolist()
    if kind == "wrong_dtype":
        return np.zeros(shape, np.float32 if dtype == F64 else F64)
    if kind == "wrong_shape":
        return np.zeros(shape + (1,), dtype)
    A = np.full(shape, 7.0, dtype)
    if kind == "fortran":
        return np.asfortranarray(A) if len(shape) == 2 else A[::-1] if A.size > 1 else A
    if kind == "subclass":
        return A.view(Subclass)
    return with_layout(A, {"good": "C", "unaligned": "unaligned", "readonly": "readonly"}[kind])


def spec_linear(X, W, b, act, out):
    s = Spec()
    Xa, Wa = s.real(X, "X"), s.real(W, "W")
    ba = s.real(b, "b", optional=True)
    known = [A for A in (Xa, Wa, ba) if A is not None]
    dtype = computing_dtype(*known) if not s.bad else None
    Xa = s.ndim(Xa, "X", (1, 2))
    Wa = s.ndim(Wa, "W", (2,))
    if Xa is not None and Wa is not None and Wa.shape[1] != Xa.shape[-1]:
        s.bad |= {"W", "X"}
    if ba is not None:
        if ba.ndim != 1 or ba.size == 0:
            s.bad.add("b")
        elif Wa is not None and ba.shape[0] != Wa.shape[0]:
            s.bad |= {"b", "W"}
    s.activation(act)
    if out is not None and not s.bad:
        shape = (Wa.shape[0],) if Xa.ndim == 1 else (Xa.shape[0], Wa.shape[0])
        if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != shape \
                or not out.flags.c_contiguous or not out.flags.writeable \
                or any(np.may_share_memory(out, A) for A in (X, W, b)
                       if isinstance(A, np.ndarray) and A.dtype == dtype
                       and A.flags.c_contiguous and A.flags.aligned and A.dtype.isnative):
            s.bad.add("out")
    return s, dtype


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=linear_cases())
def test_linear(backend, case):
    COUNTS["inputs"] += 1
    X, W, b, act, out_kind = case
    s0, dtype0 = spec_linear(X, W, b, act, None)
    out = None
    if out_kind != "none" and not s0.bad:
        Xa, Wa = np.asarray(X), np.asarray(W)
        shape = (Wa.shape[0],) if Xa.ndim == 1 else (Xa.shape[0], Wa.shape[0])
        out = _make_out(out_kind, shape, dtype0, X)
    s, dtype = spec_linear(X, W, b, act, out)
    note(f"X={X!r}\nW={W!r}\nb={b!r}\nactivation={act!r}\nout={out_kind}")
    snaps = snapshot(X, W, b) if out is not X else snapshot(W, b)
    X_in = np.array(X, copy=True) if out is X else X  # (out = X: the call writes into X)
    with fastnn.use_backend(backend):
        if s.bad:
            expect_error(s.bad, F.linear, X, W, b, act, out=out)
            assert_unmodified(snaps)
            return
        U = call(F.linear, X, W, b, act, out=out)
    COUNTS["returned"] += 1
    assert_unmodified(snaps)
    if out is not None:
        assert U is out
    Xc, Wc, bc = conv(X_in, dtype), conv(W, dtype), conv(b, dtype)
    X2 = Xc.reshape(1, -1) if Xc.ndim == 1 else Xc
    Z_ref = ieee_linear(X2, Wc, bc, "identity")
    U_ref = ieee_linear(X2, Wc, bc, act)
    err = activation_bound(Z_ref, U_ref, act, dtype, z_err=linear_bound(X2, Wc, bc, dtype))
    U2 = np.asarray(U).reshape(U_ref.shape)
    assert np.asarray(U).shape == ((Wc.shape[0],) if Xc.ndim == 1 else U_ref.shape)
    assert_matches(U2, U_ref, err, f"linear({act})")


# ---------------------------------------------------------------------------------------
# fastnn.functional.linear_backward
# ---------------------------------------------------------------------------------------

def grad_magnitude(U, act):
    """An upper bound of |g'| computed from U, in float64."""
    U = np.abs(np.asarray(U, dtype=F64))
    with np.errstate(all="ignore"):
        return {"identity": np.ones_like(U), "step": np.zeros_like(U),
                "sigmoid": U * (1 + U), "relu": (U > 0).astype(F64),
                "tanh": 1 + U * U, "exp": U}[act]


def backward_bounds(dU, X, W, U, act, dtype, dU_err=None):
    """Bounds for (dX, dW, db) of one layer; ``dU_err`` bounds an error already in dU."""
    eps, tiny = eps_tiny(dtype)
    N, K = X.shape
    Mo = W.shape[0]
    G = grad_magnitude(U, act)
    with np.errstate(all="ignore"):
        dU_err = np.zeros(dU.shape) if dU_err is None else dU_err
        mag = (np.abs(dU.astype(F64)) + dU_err) * G
        dZ_err = dU_err * G + 4 * (eps * mag + tiny)
        aX, aW = np.abs(X.astype(F64)), np.abs(W.astype(F64))
        dW_err = dZ_err.T @ aX + 8 * (N + 4) * (eps * (mag.T @ aX) + tiny)
        db_err = dZ_err.sum(axis=0) + 8 * (N + 4) * (eps * mag.sum(axis=0) + tiny)
        dX_err = dZ_err @ aW + 8 * (Mo + 4) * (eps * (mag @ aW) + tiny)
    return dX_err, dW_err, db_err


@st.composite
def backward_cases(draw):
    base = draw(st.sampled_from(GOOD_FLOAT))
    N, K, M = draw(dims()), draw(dims()), draw(dims())
    single = draw(st.integers(0, 4)) == 0
    x_shape = (K,) if single else (N, K)
    u_shape = (M,) if single else (N, M)
    fault = draw(st.sampled_from([None] * 10 + ["X", "W", "dU", "U"]))
    shapes = {"X": x_shape, "W": (M, K), "dU": u_shape, "U": u_shape}
    if fault:
        s = shapes[fault]
        shapes[fault] = draw(st.sampled_from([s + (1,), s[:-1] + (s[-1] + 1,), ()]))
    args = {name: draw(arrays(shape, base=base)) for name, shape in shapes.items()}
    return args["dU"], args["X"], args["W"], args["U"], draw(activations()), draw(flags())


def spec_backward(dU, X, W, U, act, need_dX):
    s = Spec()
    arrs = {name: s.real(A, name) for name, A in (("dU", dU), ("X", X), ("W", W), ("U", U))}
    dtype = computing_dtype(*arrs.values()) if not s.bad else None
    Xa = s.ndim(arrs["X"], "X", (1, 2))
    Wa = s.ndim(arrs["W"], "W", (2,))
    if Xa is not None:
        nd = (Xa.ndim,)
        dUa, Ua = s.ndim(arrs["dU"], "dU", nd), s.ndim(arrs["U"], "U", nd)
        if Wa is not None:
            if Wa.shape[1] != Xa.shape[-1]:
                s.bad |= {"W", "X"}
            shape = (Wa.shape[0],) if Xa.ndim == 1 else (Xa.shape[0], Wa.shape[0])
            for name, A in (("dU", dUa), ("U", Ua)):
                if A is not None and A.shape != shape:
                    s.bad |= {name, "W", "X"}
    s.activation(act)
    s.flag(need_dX, "need_dX")
    return s, dtype


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=backward_cases())
def test_linear_backward(backend, case):
    COUNTS["inputs"] += 1
    dU, X, W, U, act, need_dX = case
    s, dtype = spec_backward(dU, X, W, U, act, need_dX)
    note(f"dU={dU!r}\nX={X!r}\nW={W!r}\nU={U!r}\nactivation={act!r} need_dX={need_dX!r}")
    snaps = snapshot(dU, X, W, U)
    with fastnn.use_backend(backend):
        if s.bad:
            expect_error(s.bad, F.linear_backward, dU, X, W, U, act, need_dX=need_dX)
            assert_unmodified(snaps)
            return
        dUc, Xc, Wc, Uc = (conv(A, dtype) for A in (dU, X, W, U))
        single = Xc.ndim == 1
        X2 = Xc.reshape(1, -1) if single else Xc
        dU2, U2 = dUc.reshape(X2.shape[0], -1), Uc.reshape(X2.shape[0], -1)
        rdX, rdW, rdb = ieee_linear_backward(dU2, X2, Wc, U2, act, bool(need_dX))
        dX, dW, db = call(F.linear_backward, dU, X, W, U, act, need_dX=need_dX)
    COUNTS["returned"] += 1
    assert_unmodified(snaps)
    eX, eW, eb = backward_bounds(dU2, X2, Wc, U2, act, dtype)
    assert_matches(dW, rdW, eW, "dW")
    assert_matches(db, rdb, eb, "db")
    if need_dX:
        assert dX.shape == Xc.shape
        assert_matches(dX.reshape(rdX.shape), rdX, eX, "dX")
    else:
        assert dX is None


# ---------------------------------------------------------------------------------------
# Elementwise: activate, activation_grad, sigmoid
# ---------------------------------------------------------------------------------------

@st.composite
def elementwise_cases(draw):
    if draw(st.integers(0, 19)) == 0:
        shape = (1,) * 33  # one dimension over the documented limit of 32
    else:
        shape = tuple(draw(st.lists(dims(), max_size=3)))
    return draw(arrays(shape)), draw(activations())


_NO_ACT = object()  # sigmoid(Z) takes no activation argument


def spec_elementwise(Z, name, act):
    s = Spec()
    Za = s.ndim(s.real(Z, name), name, range(0, 33), allow_empty=True)
    if act is not _NO_ACT:
        s.activation(act)
    return s, (computing_dtype(Za) if Za is not None else None)


def _check_elementwise(backend, Z, act, fn, name, reference, bound):
    COUNTS["inputs"] += 1
    s, dtype = spec_elementwise(Z, name, act)
    note(f"{name}={Z!r}\nactivation={act!r}")
    snaps = snapshot(Z)
    args = (Z,) if act is _NO_ACT else (Z, act)
    with fastnn.use_backend(backend):
        if s.bad:
            expect_error(s.bad, fn, *args)
            assert_unmodified(snaps)
            return
        out = call(fn, *args)
    COUNTS["returned"] += 1
    assert_unmodified(snaps)
    Zc = conv(Z, dtype)
    expected = np.asarray(ref(reference, Zc), dtype=dtype)
    assert_matches(np.asarray(out), expected, bound(Zc, expected, dtype), fn.__name__)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=elementwise_cases())
def test_activate(backend, case):
    Z, act = case
    a = act if isinstance(act, str) and act in ACTIVATIONS else "identity"
    _check_elementwise(backend, Z, act, F.activate, "Z", lambda Zc: R.activate(Zc, a),
                       lambda Zc, e, dt: activation_bound(Zc, e, a, dt))


def grad_bound(U, expected, act, dtype):
    """activation_grad: the same formula in both (sigmoid u(1-u), tanh 1 - u^2): a few
    roundings of the magnitudes of the terms (an FMA may round 1 - u*u once instead of twice)."""
    eps, tiny = eps_tiny(dtype)
    u = np.abs(np.asarray(U, dtype=F64))
    with np.errstate(all="ignore"):
        mag = {"sigmoid": u * (1 + u), "tanh": 1 + u * u}.get(act, np.zeros_like(u))
        return np.where(np.isfinite(u), 4 * (eps * mag + tiny), 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=elementwise_cases())
def test_activation_grad(backend, case):
    U, act = case
    a = act if isinstance(act, str) and act in ACTIVATIONS else "identity"
    _check_elementwise(backend, U, act, F.activation_grad, "U",
                       lambda Uc: R.activation_grad(Uc, a),
                       lambda Uc, e, dt: grad_bound(Uc, e, a, dt))


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=elementwise_cases())
def test_sigmoid(backend, case):
    Z, _ = case
    _check_elementwise(backend, Z, _NO_ACT, F.sigmoid, "Z", R.sigmoid,
                       lambda Zc, e, dt: activation_bound(Zc, e, "sigmoid", dt))


# ---------------------------------------------------------------------------------------
# Row-wise: softmax, log_softmax
# ---------------------------------------------------------------------------------------

@st.composite
def row_cases(draw):
    N, K = draw(dims()), draw(dims())
    shape = draw(st.sampled_from([(N, K)] * 4 + [(K,)] * 2 + [(), (N, K, 1)]))
    return draw(arrays(shape))


def _shift_stats(Z2):
    """Per element |z - m|, per row ln s (s = sum e^{z - m}) and K, in float64."""
    Z = Z2.astype(F64)
    with np.errstate(all="ignore"):
        m = Z.max(axis=1, keepdims=True)
        shifted = Z - m
        s = np.exp(shifted).sum(axis=1, keepdims=True)
    return np.abs(shifted), np.log(s), Z.shape[1]


def softmax_bound(Z2, expected, dtype):
    eps, tiny = eps_tiny(dtype)
    K = Z2.shape[1]
    with np.errstate(all="ignore"):
        err = 4 * (K + 8) * (eps * np.abs(expected.astype(F64)) + tiny)
    return np.nan_to_num(err, nan=0.0)  # NaN only where the expected value is NaN


def log_softmax_bound(Z2, expected, dtype):
    eps, tiny = eps_tiny(dtype)
    dist, logs, K = _shift_stats(Z2)
    with np.errstate(all="ignore"):
        err = 4 * (eps * (dist + np.abs(logs) + K + 8) + tiny)
    # NaN or inf only where the expected value is not finite (a -inf logit, a NaN row)
    return np.where(np.isfinite(expected), np.nan_to_num(err, nan=0.0), 0.0)


def _check_rows(backend, Z, fn, reference, bound):
    COUNTS["inputs"] += 1
    s = Spec()
    Za = s.ndim(s.real(Z, "Z"), "Z", (1, 2))
    note(f"Z={Z!r}")
    snaps = snapshot(Z)
    with fastnn.use_backend(backend):
        if s.bad:
            expect_error(s.bad, fn, Z)
            assert_unmodified(snaps)
            return
        out = call(fn, Z)
    COUNTS["returned"] += 1
    assert_unmodified(snaps)
    dtype = computing_dtype(Za)
    Zc = conv(Z, dtype)
    Z2 = Zc.reshape(1, -1) if Zc.ndim == 1 else Zc
    expected = ref(reference, Z2)
    assert np.asarray(out).shape == Zc.shape
    assert_matches(np.asarray(out).reshape(Z2.shape), expected, bound(Z2, expected, dtype),
                   fn.__name__)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(Z=row_cases())
def test_softmax(backend, Z):
    _check_rows(backend, Z, F.softmax, R.softmax, softmax_bound)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(Z=row_cases())
def test_log_softmax(backend, Z):
    _check_rows(backend, Z, F.log_softmax, R.log_softmax, log_softmax_bound)


# ---------------------------------------------------------------------------------------
# Losses: cross_entropy, binary_cross_entropy, squared_error
# ---------------------------------------------------------------------------------------

def _labels(draw, n, low, high, shape=None, allow_bad=True):
    """n labels in [low, high] in a random dtype and layout; sometimes broken."""
    shape = (n,) if shape is None else shape
    kind = draw(st.sampled_from(["int"] * 6 + ["float", "bool", "uint8", "list"] +
                                (["out_of_range", "fraction", "nan", "complex", "shape",
                                  "none"] if allow_bad else [])))
    vals = draw(hnp.arrays(np.int64, shape, elements=st.integers(low, max(low, high))))
    if kind == "bool":
        return vals.astype(bool) if high >= 1 else vals.astype(np.int8)
    if kind == "float":
        return with_layout(vals.astype(draw(st.sampled_from([np.float16, np.float32, F64]))),
                           draw(st.sampled_from(LAYOUTS)))
    if kind == "uint8":
        return vals.astype(np.uint8)
    if kind == "list":
        return vals.tolist()
    if kind == "out_of_range" and vals.size:
        vals = vals.copy()
        vals.flat[draw(st.integers(0, vals.size - 1))] = draw(st.sampled_from([-1, high + 1,
                                                                               2**62]))
        return vals
    if kind == "fraction" and vals.size:
        return vals + 0.5
    if kind == "nan" and vals.size:
        v = vals.astype(F64)
        v.flat[0] = np.nan
        return v
    if kind == "complex":
        return vals.astype(np.complex128)
    if kind == "shape":
        return np.append(vals.reshape(-1), low)
    if kind == "none":
        return None
    return with_layout(vals, draw(st.sampled_from(LAYOUTS)))


def spec_labels(s, y, name):
    """Labels: real numbers; finite and integral if floats (the range is the caller's)."""
    arr = s.real(y, name)
    if arr is None:
        return None
    if arr.dtype.kind == "f":
        with np.errstate(all="ignore"):
            if not np.isfinite(arr).all() or (arr != np.floor(arr)).any():
                s.bad.add(name)
                return None
    return arr


def loss_bound(losses_err, total_err_ref, reduction, N):
    if reduction == "none":
        return losses_err
    total = np.nansum(losses_err) if np.isfinite(losses_err).all() else np.inf
    return (total + total_err_ref) / (N if reduction == "mean" else 1)


def _check_loss(backend, fn, args, kwargs, s, compute_expected, note_text, snaps):
    COUNTS["inputs"] += 1
    note(note_text)
    with fastnn.use_backend(backend):
        if s.bad:
            expect_error(s.bad, fn, *args, **kwargs)
            assert_unmodified(snaps)
            return None
        out = call(fn, *args, **kwargs)
    COUNTS["returned"] += 1
    assert_unmodified(snaps)
    compute_expected(out)
    return out


def _compare_loss(out, expected, loss_err, grad_err, reduction, return_grad, N, grad_shape,
                  single_none, dtype, what):
    loss, grad = out if return_grad else (out, None)
    exp_loss, exp_grad = expected if return_grad else (expected, None)
    eps, _ = eps_tiny(dtype)
    if reduction == "none":
        exp_loss = np.asarray(exp_loss)
        if single_none:
            exp_loss = exp_loss.reshape(())
        assert isinstance(loss, np.ndarray)
        assert_matches(loss, exp_loss, loss_err.reshape(exp_loss.shape), what + " losses")
    else:
        assert isinstance(loss, np.generic) and loss.dtype == dtype, repr(loss)
        tot = float(exp_loss)
        # the rounding of the float64 total (a sum; the mean's sum is tot * N)
        tot_err = 4 * eps * abs(tot) * (N if reduction == "mean" else 1) \
            if math.isfinite(tot) else 0.0
        total_err = loss_bound(loss_err, tot_err, reduction, N)
        assert_matches(np.asarray(loss), np.asarray(exp_loss), total_err, what + " loss")
    if return_grad:
        assert grad.shape == grad_shape, (grad.shape, grad_shape)
        assert_matches(grad.reshape(np.shape(exp_grad)), exp_grad, grad_err, what + " gradient")


@st.composite
def cross_entropy_cases(draw):
    N, K = draw(dims()), draw(dims())
    shape = draw(st.sampled_from([(N, K)] * 5 + [(K,)] * 2 + [(), (N, K, 1)]))
    Z = draw(arrays(shape))
    n = shape[0] if len(shape) == 2 else 1
    y_shape = draw(st.sampled_from([(n,)] * 5 + [(n, 1), ()])) if len(shape) != 2 or n != 1 \
        else draw(st.sampled_from([(1,), ()]))
    y = _labels(draw, n, 0, max(K - 1, 0), shape=y_shape)
    return Z, y, draw(reductions()), draw(flags())


def ce_bounds(Z2, yc, dtype, scale):
    """Per-sample loss bound: eps (|m - z_y| + |ln s| + K + 8); gradient bound:
    (K + 8) eps scale (p_k + r_k)."""
    eps, tiny = eps_tiny(dtype)
    Z = Z2.astype(F64)
    N, K = Z.shape
    with np.errstate(all="ignore"):
        m = Z.max(axis=1)
        zy = Z[np.arange(N), yc]
        s = np.exp(Z - m[:, None]).sum(axis=1)
        loss_err = 8 * (eps * (np.abs(m - zy) + np.abs(np.log(s)) + K + 8) + tiny)
        P = np.exp(Z - m[:, None]) / s[:, None]
        Rm = np.zeros_like(P)
        Rm[np.arange(N), yc] = 1
        grad_err = 8 * (K + 8) * (eps * scale * (P + Rm) + tiny)
    # a -inf logit leaves the row finite; NaN bounds only where the expected value is NaN
    return np.nan_to_num(loss_err, nan=0.0), np.nan_to_num(grad_err, nan=0.0)


def ce_neg_inf_bug(Z2, yc):
    """The reference's (R * Z).sum() is NaN when a non-label logit is -inf (0 * -inf); the
    kernel gives the finite loss (see test_cross_entropy_neg_inf_logit_of_another_class)."""
    mask = np.ones(Z2.shape, bool)
    mask[np.arange(Z2.shape[0]), yc] = False
    return bool((np.isneginf(Z2) & mask).any())


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=cross_entropy_cases())
def test_cross_entropy(backend, case):
    Z, y, reduction, return_grad = case
    s = Spec()
    Za = s.ndim(s.real(Z, "Z"), "Z", (1, 2))
    ya = spec_labels(s, y, "y")
    if Za is not None and ya is not None:
        N, K = (1, Za.shape[0]) if Za.ndim == 1 else Za.shape
        y1 = ya.reshape(-1) if ya.ndim == 0 else ya
        if y1.shape != (N,):
            s.bad.add("y")
        elif (y1 < 0).any() or (y1 > K - 1).any():
            s.bad.add("y")
    s.reduction(reduction)
    s.flag(return_grad, "return_grad")
    snaps = snapshot(Z, y)

    def expected(out):
        dtype = computing_dtype(Za)
        Zc = conv(Z, dtype)
        Z2 = Zc.reshape(1, -1) if Zc.ndim == 1 else Zc
        yc = np.asarray(ya).reshape(-1).astype(np.intp)
        N = Z2.shape[0]
        exp = ref(R.cross_entropy, Z2, yc, reduction=reduction, return_grad=bool(return_grad))
        scale = 1.0 / N if reduction == "mean" else 1.0
        le, ge = ce_bounds(Z2, yc, dtype, scale)
        _compare_loss(out, exp, le, ge, reduction, bool(return_grad), N, Zc.shape,
                      Zc.ndim == 1, dtype, "cross_entropy")

    _check_loss(backend, F.cross_entropy, (Z, y),
                dict(reduction=reduction, return_grad=return_grad), s, expected,
                f"Z={Z!r}\ny={y!r}\nreduction={reduction!r} return_grad={return_grad!r}", snaps)


@st.composite
def bce_cases(draw):
    N = draw(dims())
    shape = draw(st.sampled_from([(N,)] * 4 + [(N, 1)] * 2 + [(), (N, 2), (N, 1, 1)]))
    z = draw(arrays(shape))
    n = 1 if shape == () else shape[0]
    y_shape = draw(st.sampled_from([(n,)] * 5 + [(n, 1), ()] if n == 1 else [(n,)] * 5 + [(n, 1)]))
    y = _labels(draw, n, 0, 1, shape=y_shape)
    return z, y, draw(reductions()), draw(flags())


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=bce_cases())
def test_binary_cross_entropy(backend, case):
    z, y, reduction, return_grad = case
    s = Spec()
    za = s.real(z, "z")
    if za is not None and (za.ndim > 2 or (za.ndim == 2 and za.shape[1] != 1) or za.size == 0):
        s.bad.add("z")
        za = None
    ya = spec_labels(s, y, "y")
    if za is not None and ya is not None:
        N = za.size
        y1 = ya.reshape(-1) if ya.ndim <= 1 or ya.shape == (N, 1) else ya
        if y1.shape != (N,) or not ((y1 == 0) | (y1 == 1)).all():
            s.bad.add("y")
    s.reduction(reduction)
    s.flag(return_grad, "return_grad")
    snaps = snapshot(z, y)

    def expected(out):
        dtype = computing_dtype(za)
        zc = conv(z, dtype).reshape(-1)
        yc = conv(np.asarray(ya).reshape(-1), dtype)
        N = zc.shape[0]
        exp = ref(R.binary_cross_entropy, zc, yc, reduction=reduction,
                  return_grad=bool(return_grad))
        eps, tiny = eps_tiny(dtype)
        scale = 1.0 / N if reduction == "mean" else 1.0
        zz = zc.astype(F64)
        with np.errstate(all="ignore"):
            le = 8 * (eps * (np.log1p(np.exp(-np.abs(zz))) + np.abs(zz)) + tiny)
            ge = 8 * (eps * scale * (1 / (1 + np.exp(-zz)) + yc) + tiny)
        le = np.where(np.isfinite(zz), le, 0.0)
        ge = np.where(np.isfinite(zz), ge, 0.0)
        _compare_loss(out, exp, le, ge, reduction, bool(return_grad), N, np.shape(za),
                      za.ndim == 0, dtype, "binary_cross_entropy")

    _check_loss(backend, F.binary_cross_entropy, (z, y),
                dict(reduction=reduction, return_grad=return_grad), s, expected,
                f"z={z!r}\ny={y!r}\nreduction={reduction!r} return_grad={return_grad!r}", snaps)


@st.composite
def squared_error_cases(draw):
    base = draw(st.sampled_from(GOOD_FLOAT))
    N, d = draw(dims()), draw(dims())
    shape = draw(st.sampled_from([(N, d)] * 4 + [(N,)] * 2 + [(), (N, d, 1)]))
    Z = draw(arrays(shape, base=base))
    y_shape = draw(st.sampled_from([shape] * 6 + [shape[:1]] + [shape + (1,)]))
    if shape == (N, 1) and draw(st.booleans()):
        y_shape = (N,)
    Y = draw(arrays(y_shape, base=base, special=draw(st.integers(0, 3)) == 0))
    return Z, Y, draw(reductions()), draw(flags())


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=squared_error_cases())
def test_squared_error(backend, case):
    Z, Y, reduction, return_grad = case
    s = Spec()
    Za, Ya = s.real(Z, "Z"), s.real(Y, "Y")
    dtype = computing_dtype(Za, Ya) if Za is not None and Ya is not None else None
    Za = s.ndim(Za, "Z", (1, 2))
    if Za is not None and Ya is not None:
        shape_ok = Ya.shape == Za.shape or (Za.ndim == 2 and Za.shape[1] == 1
                                             and Ya.shape == Za.shape[:1])
        with np.errstate(all="ignore"):
            finite = Ya.dtype.kind != "f" or np.isfinite(Ya).all()
        if not shape_ok or not finite:
            s.bad.add("Y")
    s.reduction(reduction)
    s.flag(return_grad, "return_grad")
    snaps = snapshot(Z, Y)

    def expected(out):
        Zc = conv(Z, dtype)
        Yc = conv(Y, dtype).reshape(Zc.shape)
        N = Zc.shape[0]
        exp = ref(R.squared_error, Zc, Yc, reduction=reduction, return_grad=bool(return_grad))
        eps, tiny = eps_tiny(dtype)
        d = Zc.size // N
        with np.errstate(all="ignore"):
            diff = np.abs(Zc.astype(F64) - Yc.astype(F64)).reshape(N, d)
            le = 8 * (d + 4) * (eps * (diff * diff).sum(axis=1) + tiny)
            ge = 8 * (eps * 2 * diff * (1.0 / N if reduction == "mean" else 1.0) + tiny)
        fin = np.isfinite(diff)
        le = np.where(fin.all(axis=1), le, 0.0)
        ge = np.where(fin, ge, 0.0).reshape(np.shape(exp[1]) if return_grad else Zc.shape)
        _compare_loss(out, exp, le, ge, reduction, bool(return_grad), N, Zc.shape, False,
                      dtype, "squared_error")

    _check_loss(backend, F.squared_error, (Z, Y),
                dict(reduction=reduction, return_grad=return_grad), s, expected,
                f"Z={Z!r}\nY={Y!r}\nreduction={reduction!r} return_grad={return_grad!r}", snaps)


# ---------------------------------------------------------------------------------------
# Models: forward, decision_function, predict_proba, predict, loss, gradients
# ---------------------------------------------------------------------------------------

OUTPUTS = ("softmax", "sigmoid", "identity")
LOSS_OF = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy",
           "identity": "squared_error"}


@st.composite
def models(draw):
    dtype = draw(st.sampled_from(GOOD_FLOAT))
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    hidden = draw(st.lists(st.integers(1, 4), max_size=2))
    act = draw(st.sampled_from(ACTIVATIONS))
    output = draw(st.sampled_from(OUTPUTS))
    seed = draw(st.integers(0, 2**16))
    if draw(st.integers(0, 3)) == 0:  # a Sequential, some layers without bias
        widths = [n_in, *hidden, n_out]
        layers = [fastnn.Linear(widths[l], widths[l + 1],
                                act if l < len(hidden) else "identity",
                                bias=draw(st.booleans()), dtype=dtype, random_state=seed + l)
                  for l in range(len(widths) - 1)]
        model = fastnn.Sequential(layers, LOSS_OF[output])
    else:
        model = fastnn.MLP(n_in, hidden, n_out, activation=act, output=output, dtype=dtype,
                           random_state=seed)
    if draw(st.integers(0, 4)) == 0:  # nasty weights
        for layer in model.layers:
            for P in layer.parameters():
                k = draw(st.integers(0, P.size - 1))
                P.flat[k] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0,
                                                  1e-40]))
    return model


@st.composite
def model_cases(draw):
    model = draw(models())
    N = draw(dims())
    single = draw(st.integers(0, 4)) == 0
    n_in = model.n_inputs
    x_shape = draw(st.sampled_from([(n_in,)] if single else [(N, n_in)] * 8 +
                                   [(N, n_in + 1), (N, n_in, 1)]))
    X = draw(arrays(x_shape, base=model.dtype.type))
    n = 1 if len(x_shape) == 1 else N
    d = model.n_outputs
    one = [()] if n == 1 else []
    if model.loss_name == "cross_entropy":
        y = _labels(draw, n, 0, d - 1, shape=draw(st.sampled_from([(n,)] * 4 + one + [(n, 1)])))
    elif model.loss_name == "binary_cross_entropy":
        shapes = ([(n,)] * 3 + [(n, 1)] + one) if d == 1 else \
            ([(n, d)] * 3 + ([(d,)] if n == 1 else []) + [(n * d,), (n, d + 1)])
        y = _labels(draw, n, 0, 1, shape=draw(st.sampled_from(shapes)))
    else:
        shapes = [(n, d)] * 3 + ([(n,)] if d == 1 else []) + ([(d,)] if single else []) + \
            [(n, d + 1)]
        y = draw(arrays(draw(st.sampled_from(shapes)), special=draw(st.integers(0, 3)) == 0))
    return model, X, y, draw(reductions())


def spec_model_X(s, model, X):
    """A model's inputs: 1-D or 2-D real numbers, n_inputs columns, finite once in the
    model's dtype (every method taking X refuses NaN and inf, as fit does)."""
    Xa = s.ndim(s.real(X, "X"), "X", (1, 2))
    if Xa is not None and Xa.shape[-1] != model.n_inputs:
        s.bad.add("X")
        return None
    if Xa is not None:
        with np.errstate(all="ignore"):
            if not np.isfinite(Xa.astype(model.dtype)).all():
                s.bad.add("X")
                return None
    return Xa


def spec_model_y(s, model, y, N, single):
    """The targets' contract (network.Sequential._targets): labels 0..K-1 (N,) for softmax;
    0/1 labels (N,) or (N, 1) for one sigmoid output, an (N, d) 0/1 matrix for d; values
    (N, d) ((N,) for d = 1) for identity; one sample's targets may come without batch axis."""
    d = model.n_outputs
    if model.loss_name == "squared_error":
        ya = s.real(y, "y")
        if ya is not None:
            if single and ya.size == d and ya.ndim <= 1:
                ya = ya.reshape(1, -1)
            shape_ok = ya.shape == (N, d) or (d == 1 and ya.shape == (N,))
            with np.errstate(all="ignore"):
                finite = ya.dtype.kind != "f" or np.isfinite(ya).all()
            if not (shape_ok and finite):
                s.bad.add("y")
        return
    ya = spec_labels(s, y, "y")
    if ya is None:
        return
    if model.loss_name == "cross_entropy":
        y1 = ya.reshape(-1) if ya.ndim == 0 else ya
        if y1.shape != (N,) or (y1 < 0).any() or (y1 > d - 1).any():
            s.bad.add("y")
    elif d == 1:
        y1 = ya.reshape(-1) if ya.ndim <= 1 or ya.shape == (N, 1) else ya
        if y1.shape != (N,) or not ((y1 == 0) | (y1 == 1)).all():
            s.bad.add("y")
    else:
        y1 = ya.reshape(1, d) if N == 1 and ya.shape == (d,) else ya
        if y1.shape != (N, d) or not ((y1 == 0) | (y1 == 1)).all():
            s.bad.add("y")


def _model_inputs(model, X):
    Xc = conv(X, model.dtype)
    return Xc.reshape(1, -1) if Xc.ndim == 1 else Xc, Xc.ndim == 1


def _model_targets(model, y, N):
    if model.loss_name == "cross_entropy":
        return np.asarray(y).reshape(-1).astype(np.intp)
    return conv(y, model.dtype).reshape(N, model.n_outputs)


def _params_snapshot(model):
    return snapshot(*[P for layer in model.layers for P in layer.parameters()])


def _layer_reference(backend, U, layer, act):
    """The layer's reference output on U, every product in its sum (IEEE: 0 * inf = NaN)."""
    return ieee_linear(U, layer.W, layer.b, act)


def check_forward_trace(backend, model, X2, trace, single):
    """Each layer of the trace against the reference applied to the trace's own input (so no
    error propagates from layer to layer): z_l = linear(u_{l-1}), u_l = g_l(z_l), and the
    output map on the last z."""
    dtype = model.dtype
    U = X2
    zs = [np.asarray(z).reshape(X2.shape[0], -1) for z in trace.z]
    us = [np.asarray(u).reshape(X2.shape[0], -1) for u in trace.u]
    for l, layer in enumerate(model.layers):
        if single:
            assert trace.z[l].ndim == 1 and trace.u[l].ndim == 1
        Z_ref = _layer_reference(backend, U, layer, "identity")
        assert_matches(zs[l], Z_ref, linear_bound(U, layer.W, layer.b, dtype), f"z[{l}]")
        if l < len(model.layers) - 1:
            U_ref = ref(R.activate, zs[l], layer.activation)
            assert_matches(us[l], U_ref, activation_bound(zs[l], U_ref, layer.activation, dtype),
                           f"u[{l}]")
            U = us[l]
    check_output_map(model, zs[-1], us[-1])


def check_output_map(model, Z, P):
    dtype = model.dtype
    if model.output == "softmax":
        exp = ref(R.softmax, Z)
        assert_matches(P, exp, softmax_bound(Z, exp, dtype), "softmax output")
    elif model.output == "sigmoid":
        exp = ref(R.sigmoid, Z)
        assert_matches(P, exp, activation_bound(Z, exp, "sigmoid", dtype), "sigmoid output")
    else:
        assert_matches(P, Z, 0.0, "identity output")


def _shape_out(model, A, single):
    if A.shape[1] == 1 and model.output != "softmax":
        A = A[:, 0]
    return A[0] if single else A


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=model_cases())
def test_model_forward_and_predictions(backend, case):
    """forward, Linear.forward, decision_function, predict_proba, predict."""
    COUNTS["inputs"] += 1
    model, X, _, _ = case
    s = Spec()
    spec_model_X(s, model, X)
    note(f"{model!r}\nweights={model.parameters()!r}\nX={X!r}")
    snaps = snapshot(X) + _params_snapshot(model)
    with fastnn.use_backend(backend):
        if s.bad:
            for method in (model.forward, model.decision_function, model.predict_proba,
                           model.predict):
                expect_error(s.bad, method, X)
            assert_unmodified(snaps)
            return
        trace = call(model.forward, X)
        logits = call(model.decision_function, X)
        proba = call(model.predict_proba, X)
        pred = call(model.predict, X)
    COUNTS["returned"] += 4
    assert_unmodified(snaps)
    X2, single = _model_inputs(model, X)
    check_forward_trace(backend, model, X2, trace, single)
    # Linear.forward of each layer on the trace's input to that layer
    U = X2
    for l, layer in enumerate(model.layers):
        with fastnn.use_backend(backend):
            out = call(layer.forward, U)
        expected = _layer_reference(backend, U, layer, layer.activation)
        Z_ref = ieee_linear(U, layer.W, layer.b, "identity")
        err = activation_bound(Z_ref, expected, layer.activation, model.dtype,
                               z_err=linear_bound(U, layer.W, layer.b, model.dtype))
        assert_matches(out, expected, err, f"layers[{l}].forward")
        U = np.asarray(trace.u[l]).reshape(X2.shape[0], -1)
    # decision_function: the last layer on the trace's last hidden output
    U_prev = X2 if len(model.layers) == 1 else np.asarray(trace.u[-2]).reshape(X2.shape[0], -1)
    last = model.layers[-1]
    Z_ref = _layer_reference(backend, U_prev, last, "identity")
    Z_ref_shaped = _shape_out(model, Z_ref, single)
    assert np.shape(logits) == np.shape(Z_ref_shaped)
    Z = np.asarray(logits).reshape(Z_ref.shape)
    assert_matches(Z, Z_ref, linear_bound(U_prev, last.W, last.b, model.dtype), "logits")
    # predict_proba: the output map of those logits
    P = np.asarray(proba)
    assert P.shape == np.shape(Z_ref_shaped)
    check_output_map(model, Z, P.reshape(Z.shape))
    # predict: the decision rule of eq. 4 / 6 / 7 on the logits, exactly
    if model.output == "softmax":
        expected = Z.argmax(axis=1)
        expected = expected[0] if single else expected
    elif model.output == "sigmoid":
        expected = _shape_out(model, (Z >= 0).astype(np.int64), single)
    else:
        expected = _shape_out(model, Z, single)
    assert np.array_equal(np.asarray(pred), np.asarray(expected), equal_nan=True)
    assert np.asarray(pred).dtype == np.asarray(expected).dtype


def ref_model_loss(model, Z, Y, reduction, return_grad):
    """The model's loss on logits Z (N, d) by the reference, as Sequential._loss defines it."""
    if model.loss_name == "cross_entropy":
        return ref(R.cross_entropy, Z, Y, reduction=reduction, return_grad=return_grad)
    if model.loss_name == "squared_error":
        return ref(R.squared_error, Z, Y, reduction=reduction, return_grad=return_grad)
    N, d = Z.shape
    losses, dz = ref(R.binary_cross_entropy, Z.reshape(-1), Y.reshape(-1), reduction="none",
                     return_grad=True)
    losses = losses.reshape(N, d).sum(axis=1, dtype=F64)
    if reduction == "none":
        loss = losses.astype(Z.dtype)
    else:
        loss = Z.dtype.type(losses.sum() / (N if reduction == "mean" else 1))
        if reduction == "mean":
            dz = dz / Z.dtype.type(N)
    return (loss, dz.reshape(N, d)) if return_grad else loss


def model_loss_bounds(model, Z, Y, reduction):
    """Per-sample loss bounds and the gradient bound dL/dZ on logits Z (N, d)."""
    dtype = model.dtype
    eps, tiny = eps_tiny(dtype)
    N, d = Z.shape
    scale = 1.0 / N if reduction == "mean" else 1.0
    ZZ = Z.astype(F64)
    with np.errstate(all="ignore"):
        if model.loss_name == "cross_entropy":
            return ce_bounds(Z, Y, dtype, scale)
        if model.loss_name == "squared_error":
            diff = np.abs(ZZ - Y.astype(F64))
            le = 8 * (d + 4) * (eps * (diff * diff).sum(axis=1) + tiny)
            ge = 8 * (eps * 2 * diff * scale + tiny)
            fin = np.isfinite(diff)
            return np.where(fin.all(axis=1), le, 0.0), np.where(fin, ge, 0.0)
        le = 8 * (d + 4) * (eps * (np.log1p(np.exp(-np.abs(ZZ))) + np.abs(ZZ)) + tiny).sum(axis=1)
        ge = 8 * (eps * scale * (1 / (1 + np.exp(-ZZ)) + Y) + tiny)
        fin = np.isfinite(ZZ)
        return np.where(fin.all(axis=1), le, 0.0), np.where(fin, ge, 0.0)


def _spec_model_call(model, X, y, reduction, reductions_ok):
    s = Spec()
    Xa = spec_model_X(s, model, X)
    if Xa is not None:
        spec_model_y(s, model, y, 1 if Xa.ndim == 1 else Xa.shape[0], Xa.ndim == 1)
    if not (isinstance(reduction, str) and reduction in reductions_ok):
        s.bad.add("reduction")
    return s


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=model_cases())
def test_model_loss(backend, case):
    COUNTS["inputs"] += 1
    model, X, y, reduction = case
    s = _spec_model_call(model, X, y, reduction, ("mean", "sum", "none"))
    note(f"{model!r}\nweights={model.parameters()!r}\nX={X!r}\ny={y!r}\nreduction={reduction!r}")
    snaps = snapshot(X, y) + _params_snapshot(model)
    with fastnn.use_backend(backend):
        if s.bad:
            expect_error(s.bad, model.loss, X, y, reduction)
            assert_unmodified(snaps)
            return
        loss = call(model.loss, X, y, reduction)
        trace = call(model.forward, X)
    COUNTS["returned"] += 2
    assert_unmodified(snaps)
    X2, single = _model_inputs(model, X)
    N = X2.shape[0]
    check_forward_trace(backend, model, X2, trace, single)
    Z = np.asarray(trace.z[-1]).reshape(N, -1)
    Y = _model_targets(model, y, N)
    expected = ref_model_loss(model, Z, Y, reduction, False)
    le, _ = model_loss_bounds(model, Z, Y, reduction)
    eps, _ = eps_tiny(model.dtype)
    if reduction == "none":
        if single:
            expected, le = expected.reshape(()), le.reshape(())
        assert_matches(loss, expected, le, "losses")
    else:
        assert isinstance(loss, np.generic) and loss.dtype == model.dtype
        tot = float(expected)
        tot_err = 4 * eps * abs(tot) * (N if reduction == "mean" else 1) \
            if math.isfinite(tot) else 0.0
        err = loss_bound(le, tot_err, reduction, N)
        assert_matches(np.asarray(loss), np.asarray(expected), err, "loss")


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(case=model_cases())
def test_model_gradients(backend, case):
    """gradients() against the reference's backpropagation run on fastnn's own forward values,
    with error bounds propagated layer by layer (``backward_bounds``)."""
    COUNTS["inputs"] += 1
    model, X, y, reduction = case
    s = _spec_model_call(model, X, y, reduction, ("mean", "sum"))
    note(f"{model!r}\nweights={model.parameters()!r}\nX={X!r}\ny={y!r}\nreduction={reduction!r}")
    snaps = snapshot(X, y) + _params_snapshot(model)
    with fastnn.use_backend(backend):
        if s.bad:
            expect_error(s.bad, model.gradients, X, y, reduction)
            assert_unmodified(snaps)
            return
        trace = call(model.forward, X)
    X2, single = _model_inputs(model, X)
    N = X2.shape[0]
    check_forward_trace(backend, model, X2, trace, single)
    us = [np.asarray(u).reshape(N, -1) for u in trace.u]
    zs = [np.asarray(z).reshape(N, -1) for z in trace.z]
    outputs = us[:-1] + [zs[-1]]  # each layer's output (the last one before the output map)
    inputs = [X2] + outputs[:-1]
    Y = _model_targets(model, y, N)
    _, dU = ref_model_loss(model, zs[-1], Y, reduction, True)
    _, dU_err = model_loss_bounds(model, zs[-1], Y, reduction)
    expected = []
    for l in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[l]
        dX, dW, db = ieee_linear_backward(dU, inputs[l], layer.W, outputs[l], layer.activation,
                                          l > 0)
        eX, eW, eb = backward_bounds(dU, inputs[l], layer.W, outputs[l], layer.activation,
                                     model.dtype, dU_err)
        expected.append((dW, db, eW, eb))
        dU, dU_err = dX, (None if dX is None else 2 * eX)
    expected = expected[::-1]
    with fastnn.use_backend(backend):
        grads = call(model.gradients, X, y, reduction)
    COUNTS["returned"] += 2
    assert_unmodified(snaps)
    assert len(grads) == len(model.layers)
    for l, ((gW, gb), (dW, db, eW, eb), layer) in enumerate(zip(grads, expected, model.layers)):
        assert_matches(gW, dW, 2 * eW, f"dW[{l}]")
        if layer.b is None:
            assert gb is None
        else:
            assert_matches(gb, db, 2 * eb, f"db[{l}]")

# ---------------------------------------------------------------------------------------
# Bugs these properties found, fixed: each pinned by a test of its own
# ---------------------------------------------------------------------------------------

def _unaligned_out(shape, dtype):
    return with_layout(np.zeros(shape, dtype), "unaligned")


def test_linear_unaligned_out_cython():
    X, W, b = np.ones((2, 3)), np.ones((4, 3)), np.zeros(4)
    out = _unaligned_out((2, 4), F64)
    with fastnn.use_backend("cython"):
        U = F.linear(X, W, b, out=out)
    assert U is out and np.array_equal(out, np.full((2, 4), 3.0))


def test_linear_subclass_out_cython(tmp_path):
    X, W, b = np.ones((2, 3)), np.ones((4, 3)), np.zeros(4)
    out = np.memmap(tmp_path / "out.dat", dtype=F64, mode="w+", shape=(2, 4))
    with fastnn.use_backend("cython"):
        U = F.linear(X, W, b, out=out)
    assert U is out and np.array_equal(out, np.full((2, 4), 3.0))


def test_step_backward_with_non_finite_dU_agrees_across_backends():
    dU = np.array([[np.inf, np.nan, 1.0]])
    X, W, U = np.ones((1, 2)), np.ones((3, 2)), np.ones((1, 3))
    results = []
    for backend in BACKENDS:
        with fastnn.use_backend(backend), np.errstate(all="ignore"):
            results.append(F.linear_backward(dU, X, W, U, "step"))
    for a, b in zip(*results):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("dtype", GOOD_FLOAT)
def test_cross_entropy_neg_inf_logit_of_another_class(dtype):
    Z = np.array([[0.0, -np.inf, 1.0]], dtype=dtype)
    expected = math.log(1 + math.e)
    for backend in BACKENDS:
        with fastnn.use_backend(backend), np.errstate(all="ignore"):
            loss = F.cross_entropy(Z, [0], reduction="sum")
        assert np.isfinite(loss) and abs(float(loss) - expected) <= 1e-6 * expected, backend


def test_zero_d_results_have_the_same_type_on_both_backends():
    Z = np.array(0.5)
    types = []
    for backend in BACKENDS:
        with fastnn.use_backend(backend):
            types.append(tuple(type(f()) for f in (lambda: F.activate(Z, "exp"),
                                                   lambda: F.sigmoid(Z),
                                                   lambda: F.activation_grad(Z, "tanh"))))
    assert types[0] == types[1], types
