"""Check fastnn's speed goals as ratios measured side by side in one process.

    python bench/compare.py [--quick] [--json PATH] [--only KEYS] [--threads N]
                            [--openblas-timeout T] [--samples S] [--target-ms MS]

Each criterion pits fastnn against a baseline (the NumPy reference, or NumPy's bare matrix
product) on the same read-only inputs. The machine may be small, shared and noisy, so:

* the contenders run interleaved, round-robin (A, B, A, B, ...), so that a burst of load
  from elsewhere hits both rather than one;
* one *sample* of a contender is the median of a few timed chunks, each chunk a loop of
  calls whose count is calibrated so that the sample takes about ``--target-ms``
  (default 10 ms); a call slower than that is a chunk of one call;
* a contender's time is the median of its samples (>= 15), and the verdict uses the ratio
  of the two medians. The interquartile range of the per-round ratios (the ratio of each
  round's two samples, taken back to back) is printed beside it: a verdict whose range
  straddles the goal is marked "borderline".

One artifact of interleaving is removed on purpose: numpy and scipy (whose BLAS fastnn's
kernels call) each load their own OpenBLAS, and an idle OpenBLAS worker busy-waits for
2**OPENBLAS_THREAD_TIMEOUT cycles (2**28, about 0.1 s, by default) before it sleeps. Calls
alternating between the two libraries then run with the other library's workers spinning
on their cores: on 2 cores every BLAS-bound time doubles and single runs swing by 10x (a
baseline slowed 13x once made a criterion "pass"). This script therefore sets
OPENBLAS_THREAD_TIMEOUT=4 (the shortest spin) before numpy is imported, unless the caller
set it; ``--openblas-timeout 28`` measures with OpenBLAS's default instead.

Absolute times are printed for reference only; they are not comparable between runs.
The script exits with status 0 whatever the verdicts: it reports, it does not gate.
"""

import os
import sys

# before numpy: OpenBLAS reads it when it is loaded (see the module docstring)
_NUMPY_PRELOADED = "numpy" in sys.modules
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402

import fastnn  # noqa: E402
import fastnn.functional as F  # noqa: E402
from fastnn import reference  # noqa: E402
# the timing harness (calibrated samples, interleaved round-robin, medians, IQR) lives in
# fastnn.benchmark, which `python -m fastnn bench` runs; the names stay importable from here
from fastnn.benchmark import (  # noqa: E402, F401
    DIGITS_FLOOR,
    Plan,
    Timing,
    estimate_call,
    interleave,
    plan_sample,
    take_sample,
    text_table,
    time_loop,
)

SEED = 20240607  # the seed of bench/conftest.py: the same inputs as the pytest suites


# ---------------------------------------------------------------------------------------
# Inputs (as bench/conftest.py builds them: seeded, C-contiguous, read-only)
# ---------------------------------------------------------------------------------------


def _frozen(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays


def build_layer(N, n_in, n_out, dtype):
    """X (N, n_in), W (n_out, n_in) scaled by 1/sqrt(n_in), b (n_out,)."""
    rng = np.random.default_rng([SEED, N, n_in, n_out])
    X = rng.standard_normal((N, n_in)).astype(dtype)
    W = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(dtype)
    b = (0.1 * rng.standard_normal(n_out)).astype(dtype)
    return _frozen(X, W, b)


def build_logits(N, K, dtype):
    """Logits Z (N, K) and integer labels y in 0..K-1."""
    rng = np.random.default_rng([SEED, 1, N, K])
    Z = (2.0 * rng.standard_normal((N, K))).astype(dtype)
    y = rng.integers(0, K, size=N).astype(np.intp)
    return _frozen(Z, y)


# ---------------------------------------------------------------------------------------
# The speed criteria
# ---------------------------------------------------------------------------------------


@dataclass
class Criterion:
    key: str
    title: str
    workload: str
    shape: str
    dtype: str
    fastnn: object  # no-argument callable
    baseline_name: str
    baseline: object
    kind: str  # "speedup": baseline / fastnn >= goal; "slowdown": fastnn / baseline <= goal
    goal: float
    check: object = None  # no-argument callable that raises if fastnn's result is wrong
    flops: float = 0.0  # floating-point operations per call, for GFLOP/s (0: not shown)


def _check_close(got, want, rtol, atol):
    def check():
        for g, w in zip(got(), want()):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)

    return check


def linear_criterion(key, N, n_in, n_out, dtype, baseline, goal):
    X, W, b = build_layer(N, n_in, n_out, dtype)
    name = np.dtype(dtype).name
    fast = lambda: F.linear(X, W, b, "relu")  # noqa: E731
    ref = lambda: reference.linear(X, W, b, "relu")  # noqa: E731
    common = dict(workload="linear relu", shape=f"N={N} {n_in}->{n_out}", dtype=name,
                  fastnn=fast, check=_check_close(lambda: [fast()], lambda: [ref()], 1e-4, 1e-4),
                  flops=2.0 * N * n_in * n_out)
    if baseline == "reference":
        return Criterion(key, f"fused linear relu vs reference at ({N}, {n_in}->{n_out})",
                         baseline_name="reference", baseline=ref, kind="speedup", goal=goal,
                         **common)
    return Criterion(key, f"fused linear relu vs bare X @ W.T at ({N}, {n_in}->{n_out})",
                     baseline_name="X @ W.T", baseline=lambda: X @ W.T, kind="slowdown",
                     goal=goal, **common)


def cross_entropy_criterion(key, N, K, dtype, goal):
    Z, y = build_logits(N, K, dtype)
    fast = lambda: F.cross_entropy(Z, y, return_grad=True)  # noqa: E731
    ref = lambda: reference.cross_entropy(Z, y, return_grad=True)  # noqa: E731
    return Criterion(key, f"cross_entropy + gradient vs reference at (N={N}, K={K})",
                     workload="cross_entropy+grad", shape=f"N={N} K={K}",
                     dtype=np.dtype(dtype).name, fastnn=fast, baseline_name="reference",
                     baseline=ref, kind="speedup", goal=goal,
                     check=_check_close(fast, ref, 1e-4, 1e-7))


# The digits fit of the models issue: 64-128-10 relu/softmax, SGD lr 0.1, momentum 0.9,
# batch 32, 30 epochs, float32, on a fixed stratified 25% test split.
DIGITS_FIT = dict(epochs=30, batch_size=32, lr=0.1, momentum=0.9, random_state=0)


def digits_split():
    from fastnn.datasets import load_digits, train_test_split

    X, y = load_digits()
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0)


def fastnn_digits_fit(backend, X, y):
    def fit():
        model = fastnn.MLP(64, 128, 10, random_state=0)
        with fastnn.use_backend(backend):
            model.fit(X, y, **DIGITS_FIT)
        return model

    return fit


def sklearn_digits_fit(X, y):
    """scikit-learn's MLPClassifier with the same settings (no L2, no early stopping)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def fit():
        clf = MLPClassifier(hidden_layer_sizes=(128,), activation="relu", solver="sgd",
                            alpha=0.0, batch_size=32, learning_rate_init=0.1, momentum=0.9,
                            nesterovs_momentum=False, max_iter=30, shuffle=True, tol=0.0,
                            n_iter_no_change=1000, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        return clf

    return fit


def digits_fit_criteria():
    X_train, X_test, y_train, y_test = digits_split()
    X_train = X_train.astype(np.float32)
    fast = fastnn_digits_fit("cython", X_train, y_train)

    def check():  # the fit must learn the digits before it is timed (see DIGITS_FLOOR)
        accuracy = (fast().predict(X_test) == y_test).mean()
        print(f"digits test accuracy {accuracy:.4f} (the models issue asks >= 0.97)")
        assert accuracy >= DIGITS_FLOOR, f"digits test accuracy {accuracy:.4f} < {DIGITS_FLOOR}"

    common = dict(workload="digits fit", shape="64-128-10 x30 epochs", dtype="float32",
                  fastnn=fast, kind="speedup", check=check)
    found = [Criterion("f", "digits fit vs the same fit on the NumPy reference backend",
                       baseline_name="numpy backend",
                       baseline=fastnn_digits_fit("numpy", X_train, y_train), goal=15.0,
                       **common)]
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("scikit-learn is not installed: criterion (e) skipped")
    else:
        found.insert(0, Criterion("e", "digits fit vs scikit-learn's MLPClassifier",
                                  baseline_name="sklearn MLP",
                                  baseline=sklearn_digits_fit(X_train, y_train), goal=10.0,
                                  **common))
    return found


def train_step_criterion(key, N, n_in, n_hidden, n_out, goal):
    """One SGD step of an n_in-n_hidden-n_out MLP on a batch of N, through the public fit."""
    rng = np.random.default_rng([SEED, 2, N, n_in])
    X = rng.standard_normal((N, n_in)).astype(np.float32)
    y = rng.integers(0, n_out, N)

    def step(backend):
        model = fastnn.MLP(n_in, n_hidden, n_out, random_state=0)

        def run():
            with fastnn.use_backend(backend):
                model.fit(X, y, epochs=1, batch_size=N, lr=0.01, shuffle=False)
            return model

        return run

    flops = 2.0 * N * (n_in * n_hidden + n_hidden * n_out) * 3  # forward + two backward products
    return Criterion(key, f"one train step at (N={N}, {n_in}-{n_hidden}-{n_out}) vs reference",
                     workload="train step", shape=f"N={N} {n_in}-{n_hidden}-{n_out}",
                     dtype="float32", fastnn=step("cython"), baseline_name="numpy backend",
                     baseline=step("numpy"), kind="speedup", goal=goal, flops=flops)


def criteria():
    """The issues' speed criteria, in order: (a)-(d) kernels, (e)-(g) training."""
    f32 = np.float32
    return [
        linear_criterion("a", 4, 2, 3, f32, "reference", 5.0),
        linear_criterion("b", 128, 784, 128, f32, "reference", 1.2),
        linear_criterion("c", 1024, 1024, 1024, f32, "matmul", 1.1),
        cross_entropy_criterion("d", 1024, 100, f32, 3.0),
        *digits_fit_criteria(),
        train_step_criterion("g", 128, 784, 128, 10, 3.0),
    ]


@dataclass
class Result:
    criterion: Criterion
    fastnn: Timing
    baseline: Timing

    @property
    def ratio(self):
        """speedup (baseline / fastnn) or slowdown (fastnn / baseline), from the medians."""
        f, b = self.fastnn.median, self.baseline.median
        return b / f if self.criterion.kind == "speedup" else f / b

    @property
    def paired_quartiles(self):
        """Quartiles (q1, q3) of the per-round ratios, each round's two samples back to back."""
        pairs = zip(self.fastnn.samples, self.baseline.samples)
        if self.criterion.kind == "speedup":
            ratios = [b / f for f, b in pairs]
        else:
            ratios = [f / b for f, b in pairs]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        return q1, q3

    def _meets(self, ratio):
        c = self.criterion
        return ratio >= c.goal if c.kind == "speedup" else ratio <= c.goal

    @property
    def passed(self):
        return self._meets(self.ratio)

    @property
    def borderline(self):
        q1, q3 = self.paired_quartiles
        return self._meets(q1) != self._meets(q3)

    @property
    def goal_text(self):
        c = self.criterion
        if c.kind == "speedup":
            return f"{c.baseline_name}/fastnn >= {c.goal:g}"
        return f"fastnn/{c.baseline_name} <= {c.goal:g}"

    def as_dict(self):
        c = self.criterion
        q1, q3 = self.paired_quartiles
        return {
            "key": c.key, "title": c.title, "workload": c.workload, "shape": c.shape,
            "dtype": c.dtype, "baseline": c.baseline_name, "kind": c.kind, "goal": c.goal,
            "ratio": self.ratio, "paired_ratio_q1": q1, "paired_ratio_q3": q3,
            "passed": self.passed, "borderline": self.borderline,
            "fastnn": _timing_dict(self.fastnn), "baseline_timing": _timing_dict(self.baseline),
            "flops": c.flops,
        }


def _timing_dict(t):
    return {"median_us": t.median * 1e6, "spread": t.spread, "chunks": t.plan.chunks,
            "calls_per_chunk": t.plan.calls, "samples_us": [s * 1e6 for s in t.samples]}


def run_criterion(c, samples, target):
    if c.check is not None:
        c.check()  # never time a wrong answer
    timings = interleave({"fastnn": c.fastnn, c.baseline_name: c.baseline}, samples, target)
    return Result(c, timings["fastnn"], timings[c.baseline_name])


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def _blas(show_config):
    try:
        info = show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info.get('name')} {info.get('version')}"
    except Exception:
        return "unknown"


def environment():
    try:
        from fastnn import _kernels

        omp = _kernels.num_threads()
    except Exception:
        omp = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__, "numpy_blas": _blas(np.show_config),
        "scipy": scipy.__version__, "scipy_blas": _blas(scipy.show_config),
        "fastnn": getattr(fastnn, "__version__", "?"), "fastnn_backend": F.get_backend(),
        "fastnn_openmp_threads": omp,
        "thread_env": {k: os.environ[k] for k in
                       ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "OPENBLAS_THREAD_TIMEOUT")
                       if k in os.environ},
        "numpy_imported_before_env": _NUMPY_PRELOADED,
        "loadavg": _loadavg(),
    }


def _loadavg():
    try:
        return os.getloadavg()
    except OSError:
        return None


def _us(seconds):
    us = seconds * 1e6
    return f"{us:.3g}" if us < 100 else f"{us:,.0f}"


def format_table(results):
    head = ["", "workload", "shape", "dtype", "fastnn us", "baseline", "base us",
            "ratio", "ratio IQR", "goal", "result"]
    rows = [head]
    for r in results:
        c = r.criterion
        q1, q3 = r.paired_quartiles
        verdict = "PASS" if r.passed else "FAIL"
        if r.borderline:
            verdict += " (borderline)"
        rows.append([f"({c.key})", c.workload, c.shape, c.dtype, _us(r.fastnn.median),
                     c.baseline_name, _us(r.baseline.median), f"{r.ratio:.2f}",
                     f"{q1:.2f}-{q3:.2f}", r.goal_text, verdict])
    return text_table(rows, left={0, 1, 2, 3, 5, 9, 10})  # times and ratios flush right


def gflops(results):
    """GFLOP/s of both contenders where the criterion counts flops (the 1024 layer vs matmul)."""
    out = []
    for r in results:
        c = r.criterion
        if c.flops and c.kind == "slowdown":
            out.append({"shape": c.shape, "dtype": c.dtype, "baseline": c.baseline_name,
                        "baseline_gflops": c.flops / r.baseline.median / 1e9,
                        "fastnn_gflops": c.flops / r.fastnn.median / 1e9})
    return out


def report(results, env, args, elapsed):
    print(f"fastnn {env['fastnn']} speed criteria: interleaved round-robin, "
          f"{args.samples} samples of ~{args.target_ms:g} ms per contender, medians")
    print(f"python {env['python']} on {env['machine']}, {env['cpus']} cpus; "
          f"numpy {env['numpy']} [{env['numpy_blas']}], scipy {env['scipy']} "
          f"[{env['scipy_blas']}]; fastnn backend {env['fastnn_backend']}, "
          f"OpenMP threads {env['fastnn_openmp_threads']}; "
          f"thread env {env['thread_env'] or 'unset'}")
    if env["numpy_imported_before_env"]:
        print("warning: numpy was imported before this script could set "
              "OPENBLAS_THREAD_TIMEOUT; BLAS-bound ratios may be distorted")
    print()
    print(format_table(results))
    print()
    for g in gflops(results):
        print(f"GFLOP/s at {g['shape']} {g['dtype']} (2*N*N_in*N_out flops): "
              f"{g['baseline']} {g['baseline_gflops']:.1f}, "
              f"fastnn linear relu {g['fastnn_gflops']:.1f}")
    for r in results:
        for t in (r.fastnn, r.baseline):
            if t.spread > 0.25:
                print(f"note: ({r.criterion.key}) {t.name} samples spread "
                      f"{100 * t.spread:.0f}% (IQR/median): the machine was busy")
    load, load_end = env["loadavg"], env.get("loadavg_end")
    if load and load_end and max(load[0], load_end[0]) >= env["cpus"] / 2:
        print(f"warning: other work was running (1-min load average {load[0]:.2f} at start, "
              f"{load_end[0]:.2f} at end, {env['cpus']} cpus): multi-threaded kernels "
              "(BLAS, OpenMP) lose most when a core is taken; rerun when the machine is idle")
    passed = sum(r.passed for r in results)
    print(f"{passed}/{len(results)} criteria pass; {elapsed:.1f} s"
          + (f"; load average {load[0]:.2f} at start" if load else ""))


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="15 samples of ~5 ms (the default: 31 samples of ~10 ms)")
    p.add_argument("--samples", type=int, help="interleaved samples per contender (>= 15)")
    p.add_argument("--target-ms", type=float, help="duration of one sample, ms (5 to 20)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--threads", type=int, metavar="N",
                   help="rerun with OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=N (BLAS and "
                        "OpenMP read these at import, hence the restart)")
    p.add_argument("--openblas-timeout", type=int, metavar="T",
                   help="rerun with OPENBLAS_THREAD_TIMEOUT=T: idle BLAS workers spin for 2**T "
                        "cycles (default here 4; OpenBLAS's own default is 28)")
    p.add_argument("--only", metavar="KEYS", help="run only these criteria, e.g. 'ac'")
    args = p.parse_args(argv)
    if args.samples is None:
        args.samples = 15 if args.quick else 31
    if args.target_ms is None:
        args.target_ms = 5.0 if args.quick else 10.0
    if args.samples < 15:
        p.error("--samples must be at least 15")
    return args


def _restart_with(updates, argv):
    """Re-run this script with the environment ``updates`` applied, unless they already are
    (thread counts and OpenBLAS's spin are read when the libraries load, hence the restart)."""
    if all(os.environ.get(k) == v for k, v in updates.items()):
        return
    if os.path.abspath(sys.argv[0]) != os.path.abspath(__file__):
        raise RuntimeError("--threads and --openblas-timeout restart the process: "
                           "run bench/compare.py as a script to use them")
    sys.stdout.flush()
    env = dict(os.environ, **updates)
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], env)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    updates = {}
    if args.threads is not None:
        updates.update(OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads),
                       MKL_NUM_THREADS=str(args.threads))
    if args.openblas_timeout is not None:
        updates["OPENBLAS_THREAD_TIMEOUT"] = str(args.openblas_timeout)
    _restart_with(updates, argv)
    env = environment()
    selected = [c for c in criteria() if not args.only or c.key in args.only]
    start = time.perf_counter()
    results = [run_criterion(c, args.samples, args.target_ms / 1e3) for c in selected]
    elapsed = time.perf_counter() - start
    env["loadavg_end"] = _loadavg()
    report(results, env, args, elapsed)
    if args.json:
        payload = {"environment": env,
                   "settings": {"samples": args.samples, "target_ms": args.target_ms},
                   "criteria": [r.as_dict() for r in results],
                   "gflops": gflops(results),
                   "passed": all(r.passed for r in results)}
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
