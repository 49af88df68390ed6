"""fastnn's scikit-learn estimators against scikit-learn's own, fit for fit.

Groups (the same hyperparameters for both contenders; see ``WORKLOADS``):

* ``estimators digits sgd``: MLPClassifier on digits (64-128-10 relu), sgd, batch 32,
  30 epochs (learning_rate_init 0.1, scikit-learn's default Nesterov momentum 0.9);
* ``estimators digits adam``: the same with adam (learning_rate_init 0.001);
* ``estimators digits lbfgs``: the same network with lbfgs, 100 iterations;
* ``estimators diabetes regressor``: MLPRegressor on diabetes (standardised X and y), adam,
  hidden (100,), alpha 1, batch "auto" (200), 200 epochs.

Every fit runs to its epoch/iteration budget (tol=0, n_iter_no_change=1000: no early stop),
on the 75% training split (stratified for digits, scaled to [0, 1]); fastnn in its default
float32, scikit-learn in float64 (the input's dtype).

    pytest bench/bench_estimators.py --benchmark-only --benchmark-group-by=group
    python bench/bench_estimators.py [--samples N] [--blas-threads N]   # interleaved medians

The goals (the estimators issue): digits sgd >= 10x, adam >= 10x, lbfgs >= 3x, diabetes
regressor >= 5x (scikit-learn time / fastnn time).
"""

import os
import sys

# before numpy: OpenBLAS reads it when it is loaded (see bench/compare.py's docstring)
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import functools  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# name: (estimator, data set, parameters shared by both contenders, goal)
WORKLOADS = {
    "digits sgd": ("MLPClassifier", "digits",
                   dict(hidden_layer_sizes=(128,), solver="sgd", batch_size=32, max_iter=30,
                        learning_rate_init=0.1), 10.0),
    "digits adam": ("MLPClassifier", "digits",
                    dict(hidden_layer_sizes=(128,), solver="adam", batch_size=32, max_iter=30),
                    10.0),
    "digits lbfgs": ("MLPClassifier", "digits",
                     dict(hidden_layer_sizes=(128,), solver="lbfgs", max_iter=100), 3.0),
    "diabetes regressor": ("MLPRegressor", "diabetes",
                           dict(hidden_layer_sizes=(100,), solver="adam", alpha=1.0,
                                max_iter=200), 5.0),
}
COMMON = dict(tol=0.0, n_iter_no_change=1000, random_state=0)


@functools.lru_cache(maxsize=None)
def load(name):
    """(X_train, X_test, y_train, y_test), read-only."""
    from sklearn.datasets import load_diabetes, load_digits
    from sklearn.model_selection import train_test_split

    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        split = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    else:
        X, y = load_diabetes(return_X_y=True)
        X = (X - X.mean(axis=0)) / X.std(axis=0)
        y = (y - y.mean()) / y.std()
        split = train_test_split(X, y, test_size=0.25, random_state=0)
    for a in split:
        a.setflags(write=False)
    return tuple(split)


def make(lib, workload):
    """A no-argument callable fitting a fresh estimator of ``lib`` on the workload's data."""
    kind, data, params, _ = WORKLOADS[workload]
    if lib == "fastnn":
        import fastnn.estimators as mod
    else:
        import sklearn.neural_network as mod
    cls = getattr(mod, kind)
    X, _, y, _ = load(data)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: the budget is the point
            return cls(**params, **COMMON).fit(X, y)

    return fit


@pytest.mark.parametrize("lib", ["fastnn", "sklearn"])
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_estimator_fit(benchmark, workload, lib):
    pytest.importorskip("sklearn")
    fit = make(lib, workload)
    benchmark.group = f"estimators {workload}"
    benchmark.extra_info.update(workload=workload, impl=lib)
    est = benchmark.pedantic(fit, rounds=3, iterations=1, warmup_rounds=0) \
        if benchmark.enabled else benchmark(fit)
    _, X_test, _, y_test = load(WORKLOADS[workload][1])
    score = est.score(X_test, y_test)
    # the timed fit must be a good one (scikit-learn reaches these on the same split)
    assert score >= (0.95 if WORKLOADS[workload][0] == "MLPClassifier" else 0.2), score


def _limited(fn, controller, threads):
    def run():
        with controller.limit(limits=threads, user_api="blas"):
            return fn()

    return run


def main(argv=None):
    """Interleaved medians (bench/compare.py's timing helpers) and the ratios to the goals."""
    import argparse
    import time

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from compare import _loadavg, interleave, text_table

    p = argparse.ArgumentParser(description="fastnn vs scikit-learn MLP estimators")
    p.add_argument("--samples", type=int, default=7, help="interleaved fits per contender")
    p.add_argument("--only", nargs="*", choices=list(WORKLOADS), help="workloads to run")
    p.add_argument("--blas-threads", type=int, metavar="N",
                   help="run both contenders with N BLAS threads (threadpoolctl); fastnn's "
                        "fits use one anyway, scikit-learn's default is one per core")
    args = p.parse_args(argv)
    import sklearn

    import fastnn

    controller = None
    if args.blas_threads:
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()  # built once: it scans the loaded libraries
    threads = f"BLAS threads {args.blas_threads}" if args.blas_threads else "default threads"
    print(f"fastnn {fastnn.__version__} vs scikit-learn {sklearn.__version__}: fits interleaved "
          f"round-robin, {args.samples} per contender after a warm-up, medians; "
          f"{os.cpu_count()} cpus, {threads}, load average {_loadavg()[0]:.2f}")
    head = ["workload", "fastnn s", "sklearn s", "ratio", "ratio IQR", "goal", "result",
            "fastnn score", "sklearn score"]
    rows = [head]
    start = time.perf_counter()
    for name in args.only or WORKLOADS:
        kind, data, _, goal = WORKLOADS[name]
        contenders = {"fastnn": make("fastnn", name), "sklearn": make("sklearn", name)}
        if args.blas_threads:
            contenders = {k: _limited(fn, controller, args.blas_threads)
                          for k, fn in contenders.items()}
        timings = interleave(contenders, args.samples, target=0.0)
        f, s = timings["fastnn"], timings["sklearn"]
        ratio = s.median / f.median
        per_round = sorted(b / a for a, b in zip(f.samples, s.samples))
        q1, q3 = np.percentile(per_round, [25, 75])
        _, X_test, _, y_test = load(data)
        scores = [contenders[k]().score(X_test, y_test) for k in ("fastnn", "sklearn")]
        rows.append([name, f"{f.median:.4f}", f"{s.median:.4f}", f"{ratio:.1f}",
                     f"{q1:.1f}-{q3:.1f}", f">= {goal:g}", "PASS" if ratio >= goal else "FAIL",
                     f"{scores[0]:.4f}", f"{scores[1]:.4f}"])
    print(text_table(rows, left=(0, 5, 6)))
    print(f"{time.perf_counter() - start:.1f} s; load average {_loadavg()[0]:.2f} at the end "
          "(ratios fall when other work takes a core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
