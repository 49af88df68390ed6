"""fastnn's estimators on a Dask cluster: a real distributed.LocalCluster (2 worker processes,
on loopback), and every result equal to the same computation done locally.

* dask-ml's ``Incremental`` runs ``partial_fit`` over the chunks of a dask array on the
  workers (the model travels between them pickled);
* the same with plain ``distributed``: the client chains one ``partial_fit`` task per chunk;
* ``GridSearchCV`` fans its fits out through joblib's "dask" backend.

The workers run one thread each and distributed pins their BLAS and OpenMP to one thread
(OMP_NUM_THREADS=1 ...): a product's last bits depend on how BLAS splits it across threads, so
the local reference runs under ``threadpool_limits(1)`` too, and the results are compared
exactly.
"""

import functools
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
joblib = pytest.importorskip("joblib")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from fastnn.estimators import MLPClassifier  # noqa: E402

CHUNK = 300
TIMEOUT = 120  # seconds for any one remote computation (they take about one)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close(timeout=30)
        cluster.close(timeout=30)


@pytest.fixture
def bounded(client):
    """``bounded(fn)``: fn() run in a thread with a deadline, so that a cluster that stops
    answering (say its worker processes were killed from outside) fails the test instead of
    hanging it; the workers are checked to be up first."""
    client.wait_for_workers(2, timeout=60)

    def run(fn):
        out = {}

        def target():
            try:
                out["value"] = fn()
            except BaseException as exc:  # re-raised in the test's thread
                out["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(TIMEOUT)
        if thread.is_alive():
            workers = list(client.scheduler_info()["workers"])
            pytest.fail(f"the Dask cluster did not finish within {TIMEOUT} s "
                        f"(workers now: {workers})")
        if "error" in out:
            raise out["error"]
        return out["value"]

    return run


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


def _local_partial_fits(est, X, y, classes):
    """The reference: partial_fit over the same chunks, in order, in this process."""
    est = clone(est)
    with threadpool_limits(1):
        for start in range(0, len(y), CHUNK):
            est.partial_fit(X[start:start + CHUNK], y[start:start + CHUNK], classes=classes)
    return est


def _assert_same_model(a, b):
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)
    assert a.t_ == b.t_ and a.loss_curve_ == b.loss_curve_


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_dask_ml_incremental_equals_local(bounded, digits, solver):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = digits
    Xd = da.from_array(X, chunks=(CHUNK, X.shape[1]))
    yd = da.from_array(y, chunks=CHUNK)
    est = MLPClassifier((32,), solver=solver, learning_rate_init=0.01, random_state=0)
    classes = np.arange(10)
    inc = wrappers.Incremental(clone(est), shuffle_blocks=False)
    bounded(lambda: inc.fit(Xd, yd, classes=classes))
    assert inc.estimator_.t_ == len(y)  # every chunk went through partial_fit once
    local = _local_partial_fits(est, X, y, classes)
    _assert_same_model(inc.estimator_, local)
    assert bounded(lambda: inc.score(Xd, yd)) == local.score(X, y)


def test_plain_distributed_partial_fit_equals_local(client, bounded, digits):
    """Without dask-ml: the client submits one partial_fit per chunk, each task taking the
    previous task's model (a future), so the chain runs on the workers in order."""
    X, y = digits
    Xd = da.from_array(X, chunks=(CHUNK, X.shape[1]))
    yd = da.from_array(y, chunks=CHUNK)
    est = MLPClassifier((32,), solver="adam", learning_rate_init=0.01, random_state=0)
    classes = np.arange(10)
    model = clone(est)
    for xb, yb in zip(Xd.to_delayed().ravel(), yd.to_delayed().ravel()):
        x_future, y_future = client.compute([xb, yb])
        # a task function the workers can import (this test module is not importable there)
        step = functools.partial(MLPClassifier.partial_fit, classes=classes)
        model = client.submit(step, model, x_future, y_future, pure=False)
    remote = model.result(timeout=TIMEOUT)
    _assert_same_model(remote, _local_partial_fits(est, X, y, classes))


def test_grid_search_on_dask_backend_equals_local(client, bounded, digits):
    X, y = digits
    base = MLPClassifier(solver="adam", max_iter=15, learning_rate_init=0.01, random_state=0)
    grid = {"hidden_layer_sizes": [(16,), (32,)], "alpha": [1e-4, 1e-1]}

    def remote_search():  # joblib's backend setting is per thread: set it in bounded's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with joblib.parallel_config(backend="dask"):
                return GridSearchCV(base, grid, cv=3, n_jobs=-1).fit(X, y)

    with distributed.get_task_stream(client) as stream:
        remote = bounded(remote_search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with threadpool_limits(1):
            local = GridSearchCV(base, grid, cv=3, n_jobs=1).fit(X, y)
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.cv_results_["mean_test_score"],
                                  local.cv_results_["mean_test_score"])
    _assert_same_model(remote.best_estimator_, local.best_estimator_)
    # the fits ran as tasks on the cluster's workers (joblib batches them)
    assert any("fit_and_score" in task["key"] for task in stream.data)
    assert {task["worker"] for task in stream.data} <= set(client.scheduler_info()["workers"])
