"""Subprocess sweep of fastnn's kernel-facing public API (run by test_hardening_sweep.py).

Run as a script: ``python tests/hardening/_sweep_worker.py [--progress FILE] [--quick]``. It calls every
public function of ``fastnn.functional`` (both backends) and the model methods (forward,
decision_function, predict_proba, predict, loss, gradients, fit) over a fixed grid of nasty
inputs, varying one argument at a time around valid arguments and then all array arguments
at once:

* dtypes: float16/32/64, int8/32/64, uint8/64, bool, complex64/128, object, str, datetime64;
* layouts: C, Fortran, negative strides, strided, non-aligned (a uint8 buffer offset by one
  byte), read-only, byte-swapped, zero-stride broadcast, ndarray subclass, nested list;
* values: normal, zeros, NaN, +inf, -inf, +1e30, -1e30, subnormals, a mix of all;
* shapes: (), (0,), (1,), (3,), (0, 3), (3, 0), (1, 1), (2, 3), (3, 1), (1, 3), (2, 2, 2),
  (2**31, 0); plus large arrays that take the BLAS and OpenMP paths;
* bad scalar arguments (activation, reduction, return_grad, need_dX) and bad ``out=`` buffers.

Every call is classified: returned, ValueError, TypeError, or *escaped* (any other
exception). It also checks that an error message starts with the name of one of the
function's arguments, that no input array was modified, that a result holds float32/float64
arrays, and that the two backends agree (same exception type, or results of the same shapes
and dtypes). A crash (segfault, abort) kills the process: the test sees a negative return
code, and ``--progress FILE`` holds the label of the call that was running.

The last line of stdout is a JSON summary.
"""

import faulthandler
import inspect
import json
import os
import sys
import time
import warnings

faulthandler.enable()

import numpy as np  # noqa: E402

import fastnn  # noqa: E402
from fastnn import functional as F  # noqa: E402

# the tests' shared helpers (tests/helpers.py), also when run as a script from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from helpers import with_layout  # noqa: E402

BACKENDS = ("cython", "numpy")
DTYPES = ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint64", "bool",
          "complex64", "complex128", "object", "str", "datetime64")
LAYOUTS = ("C", "fortran", "negative", "strided", "unaligned", "readonly", "byteswapped",
           "broadcast", "subclass", "list")
VALUES = ("normal", "zeros", "nan", "inf", "-inf", "1e30", "-1e30", "subnormal", "mixed")
SPECIALS = (np.nan, np.inf, -np.inf, 1e30, -1e30, 5e-324, 1e-40, 0.0, -0.0, 1.0)


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------

def values(shape, kind, rng):
    """float64 values of ``shape``."""
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if n > 10**7:
        raise ValueError("too large")
    if kind == "normal":
        V = rng.standard_normal(n)
    elif kind == "zeros":
        V = np.zeros(n)
    elif kind == "subnormal":
        V = np.resize(np.array([5e-324, -1e-40, 1e-310, 1e-45]), n)
    elif kind == "mixed":
        V = np.resize(np.array(SPECIALS), n)
    else:
        V = np.full(n, float(kind))
    return V.reshape(shape)


def cast(V, dtype):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype in ("int8", "int32", "int64", "uint8", "uint64"):
            info = np.iinfo(dtype)
            # NaN -> 0, +-inf and +-1e30 -> the extremes of the type
            W = np.nan_to_num(V, nan=0.0, posinf=float(info.max), neginf=float(info.min))
            W = np.clip(np.round(W * 3), float(info.min), float(info.max))
            flat = [int(w) if abs(w) < 2**62 else (int(info.max) if w > 0 else int(info.min))
                    for w in W.reshape(-1)]
            return np.array(flat, dtype=dtype).reshape(V.shape)
        if dtype == "bool":
            return V > 0
        if dtype == "str":
            return V.astype("U8")
        if dtype == "datetime64":
            return np.nan_to_num(V * 100, nan=0, posinf=1e9, neginf=-1e9).astype(
                np.int64).astype("datetime64[s]")
        return V.astype(dtype)


def make(shape, dtype="float64", vals="normal", lay="C", seed=0):
    rng = np.random.default_rng(seed)
    return with_layout(cast(values(shape, vals, rng), dtype), lay)


def variants(shape):
    """Nasty versions of an argument of ``shape``: (label, array) pairs covering every pair of
    (dtype, layout), (values, layout), (dtype, values) and (values, shape)."""
    out = []
    for dt in DTYPES:
        for lay in LAYOUTS:
            out.append((f"{dt}/{lay}/mixed/{shape}",
                        lambda dt=dt, lay=lay: make(shape, dt, "mixed", lay)))
        for v in VALUES:
            out.append((f"{dt}/C/{v}/{shape}", lambda dt=dt, v=v: make(shape, dt, v, "C")))
    for v in VALUES:
        for lay in LAYOUTS:
            for dt in ("float32", "float64"):
                out.append((f"{dt}/{lay}/{v}/{shape}",
                            lambda dt=dt, lay=lay, v=v: make(shape, dt, v, lay)))
    for s in SHAPES:
        for v in ("normal", "nan", "mixed"):
            for dt in ("float32", "float64", "int64", "complex128"):
                out.append((f"{dt}/C/{v}/{s}", lambda s=s, dt=dt, v=v: make(s, dt, v, "C")))
    return out


SHAPES = ((), (0,), (1,), (3,), (0, 3), (3, 0), (1, 1), (2, 3), (3, 1), (1, 3), (2, 2, 2))
HUGE_EMPTY = (2**31, 0)

BAD_SCALARS = {
    "activation": ["softplus", "", None, 3, b"relu", ("relu",), ["relu"], "RELU"],
    "reduction": ["avg", "", None, 1, b"sum", ("sum",)],
    "return_grad": [1, 0, "yes", None, 2.0, np.array([True])],
    "need_dX": [1, "no", None, np.array([True, False])],
}


# ---------------------------------------------------------------------------------------
# Bookkeeping
# ---------------------------------------------------------------------------------------

class Sweep:
    def __init__(self, progress):
        self.progress = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) \
            if progress else None
        self.calls = 0
        self.cases = 0
        self.outcomes = {}          # "returned" / exception type name -> count
        self.escaped = []           # (label, type, message) of other exceptions
        self.unnamed = []           # errors whose message names no argument
        self.mutated = []           # calls that modified an input
        self.bad_results = []       # results that are not float32/float64 arrays
        self.disagreements = []     # the two backends differ in outcome or result structure
        self.nan_pattern_diffs = 0  # both returned, NaN positions differ (informational)

    def mark(self, label):
        if self.progress is not None:
            os.pwrite(self.progress, label.encode("utf-8", "replace")[:500].ljust(500), 0)

    def run(self, label, fn, args, kwargs, names):
        """Call fn(*args, **kwargs) on both backends; ``names``: the argument names an error
        message may start with."""
        self.cases += 1
        outcomes = []
        for backend in BACKENDS:
            inputs = list(args) + [v for k, v in kwargs.items() if k != "out"]
            snaps = [(A, A.tobytes()) for A in inputs
                     if isinstance(A, np.ndarray) and not A.dtype.hasobject]
            self.mark(f"{backend} {label}")
            self.calls += 1
            try:
                with fastnn.use_backend(backend), np.errstate(all="ignore"), \
                        warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = fn(*args, **kwargs)
            except (ValueError, TypeError) as exc:
                kind = type(exc).__name__
                message = str(exc)
                first = message.split(" ", 1)[0]
                # "path: ..." messages of load, and the notes' names
                if first not in names:
                    self.unnamed.append((backend, label, kind, message[:300]))
                outcomes.append((kind, None))
            except FloatingPointError as exc:  # fit's documented divergence error
                kind = "FloatingPointError"
                outcomes.append((kind, None))
                if "fit" not in label:
                    self.escaped.append((backend, label, "FloatingPointError", str(exc)[:300]))
            except Exception as exc:  # noqa: BLE001 - the point is to catch anything
                kind = type(exc).__name__
                self.escaped.append((backend, label, kind, str(exc)[:300]))
                outcomes.append((kind, None))
            else:
                kind = "returned"
                outcomes.append((kind, result))
                problem = check_result(result)
                if problem:
                    self.bad_results.append((backend, label, problem))
            self.outcomes[kind] = self.outcomes.get(kind, 0) + 1
            for A, data in snaps:
                if A.tobytes() != data:
                    self.mutated.append((backend, label))
        (k1, r1), (k2, r2) = outcomes
        if k1 != k2:
            self.disagreements.append((label, k1, k2))
        elif k1 == "returned":
            s1, s2 = structure(r1), structure(r2)
            if s1 != s2:
                self.disagreements.append((label, str(s1)[:200], str(s2)[:200]))
            elif nan_pattern(r1) != nan_pattern(r2):
                self.nan_pattern_diffs += 1

    def summary(self, seconds):
        return {
            "cases": self.cases, "calls": self.calls, "outcomes": self.outcomes,
            "escaped": self.escaped, "unnamed": self.unnamed, "mutated": self.mutated,
            "bad_results": self.bad_results, "disagreements": self.disagreements,
            "nan_pattern_diffs": self.nan_pattern_diffs, "seconds": round(seconds, 2),
        }


def leaves(result):
    if isinstance(result, (tuple, list)):
        for r in result:
            yield from leaves(r)
    elif isinstance(result, fastnn.Trace):
        yield from leaves(result.z)
        yield from leaves(result.u)
    elif isinstance(result, fastnn.History):
        return
    else:
        yield result


def check_result(result):
    for leaf in leaves(result):
        if leaf is None:
            continue
        if not isinstance(leaf, (np.ndarray, np.generic)):
            return f"a {type(leaf).__name__} in the result"
        if leaf.dtype.kind == "f" and leaf.dtype not in (np.float32, np.float64):
            return f"dtype {leaf.dtype}"
        if leaf.dtype.kind not in "fiu":
            return f"dtype {leaf.dtype}"
    return None


def structure(result):
    return [(np.shape(x), np.asarray(x).dtype.str) if x is not None else None
            for x in leaves(result)]


def nan_pattern(result):
    return [np.isnan(np.asarray(x, dtype=np.float64)).tobytes() if x is not None else None
            for x in leaves(result)]


def names_of(fn):
    return tuple(inspect.signature(fn).parameters)


# ---------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------

def base_args(N=2, K=3, M=4, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, K))
    W = rng.standard_normal((M, K))
    b = rng.standard_normal(M)
    U = rng.standard_normal((N, M))
    y = rng.integers(0, M, N)
    return X, W, b, U, y


def functional_calls(N=2, K=3, M=4):
    """(name, function, args dict, the array argument names, other kwargs) of valid calls."""
    X, W, b, U, y = base_args(N, K, M)
    z = X[:, 0].copy()
    yb = (z > 0).astype(np.int64)
    return [
        ("linear", F.linear, {"X": X, "W": W, "b": b}, {"activation": "relu"}),
        ("linear_backward", F.linear_backward, {"dU": U, "X": X, "W": W, "U": U},
         {"activation": "tanh"}),
        ("activate", F.activate, {"Z": U}, {"activation": "exp"}),
        ("activation_grad", F.activation_grad, {"U": U}, {"activation": "sigmoid"}),
        ("sigmoid", F.sigmoid, {"Z": U}, {}),
        ("softmax", F.softmax, {"Z": U}, {}),
        ("log_softmax", F.log_softmax, {"Z": U}, {}),
        ("cross_entropy", F.cross_entropy, {"Z": U, "y": y},
         {"reduction": "mean", "return_grad": True}),
        ("binary_cross_entropy", F.binary_cross_entropy, {"z": z, "y": yb},
         {"reduction": "sum", "return_grad": True}),
        ("squared_error", F.squared_error, {"Z": U, "Y": U * 0.5},
         {"reduction": "none", "return_grad": True}),
    ]


def call_with(fn, arrays, kwargs):
    names = list(inspect.signature(fn).parameters)
    positional = [arrays[n] for n in names if n in arrays]
    return positional, kwargs


def sweep_functional(sw, quick):
    for name, fn, arrays, kwargs in functional_calls():
        names = names_of(fn)
        # one argument at a time
        for arg, A in arrays.items():
            for label, build in variants(A.shape)[:: 7 if quick else 1]:
                try:
                    V = build()
                except ValueError:
                    continue
                a = dict(arrays, **{arg: V})
                args, kw = call_with(fn, a, kwargs)
                sw.run(f"{name} {arg}={label}", fn, args, kw, names)
            V = np.empty(HUGE_EMPTY)
            args, kw = call_with(fn, dict(arrays, **{arg: V}), kwargs)
            sw.run(f"{name} {arg}=empty{HUGE_EMPTY}", fn, args, kw, names)
            for bad in (None, "abc", [[1.0, 2.0], [3.0]], {"a": 1}, 3.5, object()):
                args, kw = call_with(fn, dict(arrays, **{arg: bad}), kwargs)
                sw.run(f"{name} {arg}={bad!r}", fn, args, kw, names)
        # every array argument in the same nasty version
        for dt in DTYPES[:: 2 if quick else 1]:
            for lay in LAYOUTS:
                for v in VALUES:
                    a = {arg: make(A.shape, dt, v, lay) for arg, A in arrays.items()}
                    if name == "cross_entropy":
                        a["y"] = arrays["y"]
                    args, kw = call_with(fn, a, kwargs)
                    sw.run(f"{name} all={dt}/{lay}/{v}", fn, args, kw, names)
        # bad scalar arguments
        for key in kwargs:
            for bad in BAD_SCALARS.get(key, []):
                args, kw = call_with(fn, arrays, dict(kwargs, **{key: bad}))
                sw.run(f"{name} {key}={bad!r}", fn, args, kw, names)
        if name == "linear_backward":
            for bad in BAD_SCALARS["need_dX"]:
                args, kw = call_with(fn, arrays, dict(kwargs, need_dX=bad))
                sw.run(f"{name} need_dX={bad!r}", fn, args, kw, names)
    # out= buffers of linear
    X, W, b, _, _ = base_args()
    for dt in ("float32", "float64", "float16", "int64", "object"):
        for lay in LAYOUTS:
            for shape in ((2, 4), (4, 2), (8,), (2, 4, 1), ()):
                try:
                    out = make(shape, dt, "zeros", lay)
                except ValueError:
                    continue
                sw.run(f"linear out={dt}/{lay}/{shape}", F.linear, (X, W, b, "identity"),
                       {"out": out}, names_of(F.linear))
    Xs = np.ones((4, 4))
    sw.run("linear out=X (overlap)", F.linear, (Xs, np.eye(4)), {"out": Xs}, names_of(F.linear))


def sweep_large(sw, quick):
    """Values through the BLAS / OpenMP paths: large enough shapes."""
    for dt in ("float32", "float64"):
        for v in VALUES[:: 2 if quick else 1]:
            for lay in ("C", "fortran", "unaligned"):
                X = make((300, 40), dt, v, lay, seed=2)
                W = make((50, 40), dt, "normal", "C", seed=3)
                b = make((50,), dt, "normal", "C", seed=4)
                Z = make((600, 500), dt, v, lay, seed=5)  # 300,000 elements: OpenMP passes
                y = np.random.default_rng(6).integers(0, 500, 600)
                U = make((300, 50), dt, v, lay, seed=7)
                sw.run(f"large linear {dt}/{lay}/{v}", F.linear, (X, W, b, "sigmoid"), {},
                       names_of(F.linear))
                sw.run(f"large linear W {dt}/{lay}/{v}", F.linear, (W[:, :40].T.copy(), X, None,
                                                                    "exp"), {}, names_of(F.linear))
                sw.run(f"large backward {dt}/{lay}/{v}", F.linear_backward,
                       (U, X, W, U, "relu"), {}, names_of(F.linear_backward))
                for fn in (F.activate, F.activation_grad):
                    sw.run(f"large {fn.__name__} {dt}/{lay}/{v}", fn, (Z, "tanh"), {},
                           names_of(fn))
                for fn in (F.softmax, F.log_softmax, F.sigmoid):
                    sw.run(f"large {fn.__name__} {dt}/{lay}/{v}", fn, (Z,), {}, names_of(fn))
                sw.run(f"large cross_entropy {dt}/{lay}/{v}", F.cross_entropy, (Z, y),
                       {"return_grad": True}, names_of(F.cross_entropy))
                sw.run(f"large squared_error {dt}/{lay}/{v}", F.squared_error, (Z, Z[::-1]),
                       {"return_grad": True, "reduction": "sum"}, names_of(F.squared_error))
                sw.run(f"large bce {dt}/{lay}/{v}", F.binary_cross_entropy,
                       (Z.reshape(-1), (np.arange(Z.size) % 2)), {"return_grad": True},
                       names_of(F.binary_cross_entropy))


def models():
    return [
        ("mlp32-relu-softmax", fastnn.MLP(3, [4], 4, activation="relu", output="softmax",
                                          dtype="float32", random_state=0)),
        ("mlp64-tanh-sigmoid2", fastnn.MLP(3, [4, 2], 2, activation="tanh", output="sigmoid",
                                           dtype="float64", random_state=1)),
        ("seq64-exp-identity", fastnn.Sequential(
            [fastnn.Linear(3, 4, "exp", dtype="float64", random_state=2),
             fastnn.Linear(4, 1, bias=False, dtype="float64", random_state=3)],
            loss="squared_error")),
    ]


def model_targets(model, N):
    rng = np.random.default_rng(9)
    if model.loss_name == "cross_entropy":
        return rng.integers(0, model.n_outputs, N)
    if model.loss_name == "binary_cross_entropy":
        return rng.integers(0, 2, (N, model.n_outputs))
    return rng.standard_normal(N)


FIT_KW = {"epochs": 1, "batch_size": 2, "random_state": 0}
FIT_NAMES = names_of(fastnn.Sequential.fit)


def fit_fresh(mname):
    """fit on a new copy of the model at every call: each backend starts from the same weights."""
    def fit(X, y, **kwargs):
        return dict(models())[mname].fit(X, y, **kwargs)
    return fit


def sweep_models(sw, quick):
    X0 = np.random.default_rng(8).standard_normal((5, 3))
    for mname, model in models():
        y0 = model_targets(model, 5)
        methods = [("forward", model.forward), ("decision_function", model.decision_function),
                   ("predict_proba", model.predict_proba), ("predict", model.predict)]
        for label, build in variants(X0.shape)[:: 9 if quick else 3]:
            try:
                X = build()
            except ValueError:
                continue
            for meth, fn in methods:
                sw.run(f"{mname}.{meth} X={label}", fn, (X,), {}, names_of(fn))
            sw.run(f"{mname}.loss X={label}", model.loss, (X, y0), {}, names_of(model.loss))
            sw.run(f"{mname}.gradients X={label}", model.gradients, (X, y0), {},
                   names_of(model.gradients))
        for label, build in variants(y0.shape)[:: 9 if quick else 3]:
            try:
                y = build()
            except ValueError:
                continue
            sw.run(f"{mname}.loss y={label}", model.loss, (X0, y), {"reduction": "none"},
                   names_of(model.loss))
            sw.run(f"{mname}.gradients y={label}", model.gradients, (X0, y), {},
                   names_of(model.gradients))
        for label, build in variants(X0.shape)[:: 27 if quick else 9]:
            try:
                X = build()
            except ValueError:
                continue
            sw.run(f"{mname}.fit X={label}", fit_fresh(mname), (X, y0), FIT_KW, FIT_NAMES)
        for label, build in variants(y0.shape)[:: 27 if quick else 9]:
            try:
                y = build()
            except ValueError:
                continue
            sw.run(f"{mname}.fit y={label}", fit_fresh(mname), (X0, y), FIT_KW, FIT_NAMES)
        for bad in BAD_SCALARS["reduction"]:
            sw.run(f"{mname}.loss reduction={bad!r}", model.loss, (X0, y0), {"reduction": bad},
                   names_of(model.loss))
            sw.run(f"{mname}.gradients reduction={bad!r}", model.gradients, (X0, y0),
                   {"reduction": bad}, names_of(model.gradients))


def main(argv):
    progress = argv[argv.index("--progress") + 1] if "--progress" in argv else None
    quick = "--quick" in argv
    sw = Sweep(progress)
    start = time.perf_counter()
    sweep_functional(sw, quick)
    sweep_large(sw, quick)
    sweep_models(sw, quick)
    sw.mark("done")
    print(json.dumps(sw.summary(time.perf_counter() - start)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
