"""fastnn's estimators on a Dask cluster: a real distributed.LocalCluster (2 worker processes,
on loopback), and every result equal to the same computation done locally.

* dask-ml's ``Incremental`` runs ``partial_fit`` over the chunks of a dask array on the
  workers (the model travels between them pickled);
* the same with plain ``distributed``: the client chains one ``partial_fit`` task per chunk;
* ``GridSearchCV`` fans its fits out through joblib's "dask" backend;
* a fitted model predicts over a dask array and a dask dataframe: scattered to every worker
  once (``client.scatter(model, broadcast=True)``), then one task per block or partition
  (``map_blocks`` / ``map_partitions``), and through dask-ml's ``ParallelPostFit``.

The workers run one thread each and distributed pins their BLAS and OpenMP to one thread
(OMP_NUM_THREADS=1 ...): a product's last bits depend on how BLAS splits it across threads, so
the local reference runs under ``threadpool_limits(1)`` too, and the results are compared
exactly. For prediction the local reference is the same method on the same blocks of rows:
OpenBLAS's GEMM may round a row's products differently depending on how many rows share the
call (its kernels handle a block's tail rows apart), so a row's last bit can depend on its
block; against one call on the whole array the results agree to rounding.
"""

import functools
import sys
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
cloudpickle = pytest.importorskip("cloudpickle")
joblib = pytest.importorskip("joblib")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from fastnn.estimators import MLPClassifier, MLPRegressor  # noqa: E402

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


# -- prediction over dask collections, the model shipped to each worker once ------------------

class _ByValue:
    """A function of this module that travels by value inside a Dask graph too. ``by_value``
    makes cloudpickle carry the module's functions by value, but distributed pickles a graph
    with plain pickle first, which names a function nested in it by its module; the workers
    cannot import the test module (only an editable install of the repository lets them), so
    a task holding such a name kills the worker that unpickles it."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __reduce__(self):
        return cloudpickle.loads, (cloudpickle.dumps(self.fn),)


def _proba_frame(part, model):
    """A dask.dataframe partition -> its class probabilities, a frame on the same index."""
    return pd.DataFrame(model.predict_proba(part), index=part.index, columns=model.classes_)


def _predict_series(part, model):
    """A dask.dataframe partition -> its predictions, a series on the same index."""
    return pd.Series(model.predict(part), index=part.index)


def _count_unpickled():
    """On a worker: from now on, count the fastnn estimators unpickled in this process
    (scikit-learn's ``BaseEstimator.__setstate__`` runs once for each)."""
    from fastnn.estimators import MLPClassifier, MLPRegressor

    for cls in (MLPClassifier, MLPRegressor):
        if "_unpickled" not in vars(cls):
            original = cls.__setstate__

            def counting(self, state, original=original, cls=cls):
                cls._unpickled += 1
                return original(self, state)

            cls.__setstate__ = counting
        cls._unpickled = 0


def _unpickled():
    from fastnn.estimators import MLPClassifier, MLPRegressor

    return sum(cls.__dict__.get("_unpickled", 0) for cls in (MLPClassifier, MLPRegressor))


def _assert_scattered_once(client, tasks):
    """Each worker unpickled the model when it was scattered, and no task carried a copy: at
    least once per worker and far fewer times than the ``tasks``. At most twice: about one
    run in four on a loaded 2-core machine, one worker unpickles it a second time (inside
    distributed, not pinned down); a copy per task would count one per task."""
    counts = client.run(_unpickled)
    assert all(1 <= n <= 2 for n in counts.values()), counts
    assert sum(counts.values()) < tasks, (counts, tasks)


@pytest.fixture(scope="module")
def by_value():
    """This module's functions pickled by value: the workers cannot import the test module,
    and a task (or ``client.run``) must carry its function, as a script's ``__main__`` does."""
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


@pytest.fixture(scope="module", params=["classifier", "regressor"])
def kind(request):
    return request.param


@pytest.fixture(scope="module", params=["float32", "float64"])
def fitted(request, kind, digits):
    """A model fitted here, on digits in the model's dtype (a regressor learns the digit as a
    number), and X in that dtype: predictions come back in X's dtype."""
    X, y = digits
    X = X.astype(request.param)
    if kind == "classifier":
        est = MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, random_state=0,
                            dtype=request.param)
    else:
        est = MLPRegressor(hidden_layer_sizes=(32,), max_iter=30, random_state=0,
                           dtype=request.param)
        y = y.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return est, X, y


def _methods(est):
    return ["predict", "predict_proba"] if hasattr(est, "predict_proba") else ["predict"]


def _blockwise(method, X, rows):
    """The local result: ``method`` over the same blocks of rows (of an array or a frame), in
    this process, BLAS on one thread as on the workers."""
    take = X.iloc if isinstance(X, pd.DataFrame) else X
    bounds = np.cumsum([0, *rows])
    with threadpool_limits(1):
        return np.concatenate([method(take[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])


def _assert_agrees_with_whole(got, method, X, dtype):
    """One call on the whole array rounds some rows' products differently (see the module's
    docstring): the same to the rounding of the model's ``dtype``, labels alike."""
    with threadpool_limits(1):
        whole = method(X)
    if got.dtype.kind == "f":
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(got, whole, rtol=64 * eps, atol=64 * eps)
    else:
        np.testing.assert_array_equal(got, whole)


def test_predict_dask_array_equals_local(client, bounded, by_value, fitted):
    """``client.scatter(model, broadcast=True)`` puts the model on every worker once; each
    block's task takes it by its key (``da.map_blocks`` with the future as an argument)."""
    est, X, _ = fitted
    Xd = da.from_array(X, chunks=(CHUNK, X.shape[1]))
    client.run(_count_unpickled)
    model = client.scatter(est, broadcast=True)
    assert set(client.who_has(model)[model.key]) == set(client.scheduler_info()["workers"])
    for name in _methods(est):
        method = getattr(type(est), name)  # unbound: method(model, block), importable
        sample = getattr(est, name)(X[:2])
        if sample.ndim == 1:
            out = da.map_blocks(method, model, Xd, dtype=sample.dtype, drop_axis=1)
        else:
            out = da.map_blocks(method, model, Xd, dtype=sample.dtype,
                                chunks=(Xd.chunks[0], (sample.shape[1],)))
        got = bounded(out.compute)
        assert got.dtype == sample.dtype and got.shape == (len(X),) + sample.shape[1:]
        np.testing.assert_array_equal(got, _blockwise(getattr(est, name), X, Xd.chunks[0]))
        _assert_agrees_with_whole(got, getattr(est, name), X, X.dtype)
    _assert_scattered_once(client, tasks=len(_methods(est)) * len(Xd.chunks[0]))


def test_predict_dask_dataframe_equals_local(client, bounded, by_value, fitted):
    """A dataframe's partitions are pandas frames with the column names the model was
    fitted with; the predictions come back as a dask series / frame on the same index."""
    est, X, y = fitted
    df = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(X.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = clone(est).fit(df, y)  # feature_names_in_ = the frame's columns
    ddf = dd.from_pandas(df, npartitions=5)
    rows = ddf.map_partitions(len).compute().tolist()
    client.run(_count_unpickled)
    model = client.scatter(est, broadcast=True)
    labels = ddf.map_partitions(_ByValue(_predict_series), model,
                                meta=pd.Series([], dtype=est.predict(df.iloc[:1]).dtype))
    got = bounded(labels.compute)
    assert got.index.equals(df.index)
    np.testing.assert_array_equal(got.to_numpy(), _blockwise(est.predict, df, rows))
    _assert_agrees_with_whole(got.to_numpy(), est.predict, df, X.dtype)
    if hasattr(est, "predict_proba"):
        dtype = est.predict_proba(df.iloc[:1]).dtype  # float64: a frame has no one dtype
        meta = pd.DataFrame({c: np.array([], dtype) for c in est.classes_})
        proba = bounded(ddf.map_partitions(_ByValue(_proba_frame), model, meta=meta).compute)
        assert proba.index.equals(df.index) and list(proba.columns) == list(est.classes_)
        np.testing.assert_array_equal(proba.to_numpy(),
                                      _blockwise(est.predict_proba, df, rows))
        _assert_agrees_with_whole(proba.to_numpy(), est.predict_proba, df, X.dtype)
    _assert_scattered_once(client, tasks=len(_methods(est)) * ddf.npartitions)


def test_parallel_post_fit_equals_local(bounded, fitted):
    """dask-ml's ``ParallelPostFit`` (one ``predict`` task per block or partition, the model
    pickled into each task): the same bits as the same blocks predicted locally."""
    wrappers = pytest.importorskip("dask_ml.wrappers")
    est, X, _ = fitted
    Xd = da.from_array(X, chunks=(CHUNK, X.shape[1]))
    df = pd.DataFrame(X)  # no column names: the model was fitted on an array
    ddf = dd.from_pandas(df, npartitions=5)
    rows = ddf.map_partitions(len).compute().tolist()
    post = wrappers.ParallelPostFit(est)
    for name in _methods(est):
        got = bounded(getattr(post, name)(Xd).compute)
        np.testing.assert_array_equal(got, _blockwise(getattr(est, name), X, Xd.chunks[0]))
        got = bounded(getattr(post, name)(ddf).compute)
        np.testing.assert_array_equal(np.asarray(got),
                                      _blockwise(getattr(est, name), df, rows))
