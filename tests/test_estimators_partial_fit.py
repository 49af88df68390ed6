"""The estimators' quick partial_fit path: after a checked call, a partial_fit whose
parameters are the very objects that call checked, with plain ndarray data, skips
scikit-learn's checks; it must train exactly as the full path does, and step aside (to the
full path and its errors) whenever anything it does not check could differ."""

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits  # noqa: E402

from fastnn.estimators import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn.estimators._base import _BaseMLP  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:480] / 16.0, y[:480]


def _batches(X, y, size=16):
    return [(X[i:i + size], y[i:i + size]) for i in range(0, len(X), size)]


def _assert_same(a, b):
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)
    assert a.loss_curve_ == b.loss_curve_ and a.t_ == b.t_ and a.n_iter_ == b.n_iter_
    assert a._model.optimizer_state_["t"] == b._model.optimizer_state_["t"]


def _run(est, batches, full, monkeypatch, **kwargs):
    taken = []
    real = _BaseMLP._quick_partial_fit

    def spy(self, *args):
        ran = False if full else real(self, *args)
        taken.append(ran)
        return ran

    with monkeypatch.context() as m:
        m.setattr(_BaseMLP, "_quick_partial_fit", spy)
        for X, y in batches:
            est.partial_fit(X, y, **kwargs)
    return taken


CLASSIFIERS = {
    "sgd": dict(solver="sgd", learning_rate_init=0.05, momentum=0.9),
    "sgd_invscaling": dict(solver="sgd", learning_rate="invscaling", nesterovs_momentum=False),
    "sgd_adaptive": dict(solver="sgd", learning_rate="adaptive", n_iter_no_change=2),
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "adam_float64": dict(solver="adam", dtype="float64"),
}


@pytest.mark.parametrize("params", list(CLASSIFIERS))
@pytest.mark.parametrize("random_state", [0, "RandomState"])
def test_classifier_quick_path_trains_as_the_full_path(digits, monkeypatch, params,
                                                       random_state):
    X, y = digits

    def make():
        rs = np.random.RandomState(3) if random_state == "RandomState" else random_state
        return MLPClassifier((24,), random_state=rs, **CLASSIFIERS[params])

    quick, full = make(), make()
    taken = _run(quick, _batches(X, y), False, monkeypatch, classes=np.arange(10))
    _run(full, _batches(X, y), True, monkeypatch, classes=np.arange(10))
    assert len(taken) == len(_batches(X, y)) - 1 and all(taken)  # quick from the second
    _assert_same(quick, full)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("outputs", [1, 2])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_regressor_quick_path_trains_as_the_full_path(digits, monkeypatch, loss, outputs,
                                                      solver):
    X, labels = digits
    y = labels / 9.0 if outputs == 1 else np.column_stack([labels / 9.0, X[:, 20]])
    quick, full = (MLPRegressor(hidden_layer_sizes=(24,), loss=loss, solver=solver,
                                learning_rate_init=0.01, random_state=0) for _ in range(2))
    taken = _run(quick, _batches(X, y), False, monkeypatch)
    _run(full, _batches(X, y), True, monkeypatch)
    assert len(taken) == len(_batches(X, y)) - 1 and all(taken)
    _assert_same(quick, full)


@pytest.mark.parametrize("labels", ["intp 0..9", "int32 0..9", "intp 1..10", "float 0..9",
                                    "intp 0..9 of 12 classes"])
def test_integer_labels_that_are_or_are_not_their_own_class_indices(digits, monkeypatch,
                                                                    labels):
    # labels 0..K-1 in an intp array are read as the class indices themselves; every other
    # kind is looked up in classes_: both train as the full path does
    X, y = digits
    classes = np.arange(12) if "12" in labels else np.arange(10)
    if labels.startswith("int32"):
        y = y.astype(np.int32)
    elif "1..10" in labels:
        y, classes = y + 1, classes + 1
    elif labels.startswith("float"):
        y, classes = y.astype(np.float64), classes.astype(np.float64)
    quick, full = (MLPClassifier((16,), random_state=0) for _ in range(2))
    taken = _run(quick, _batches(X, y), False, monkeypatch, classes=classes)
    _run(full, _batches(X, y), True, monkeypatch, classes=classes)
    assert len(taken) == len(_batches(X, y)) - 1 and all(taken)
    _assert_same(quick, full)
    # a label outside classes_ still takes the full path, and its error
    with pytest.raises(ValueError, match="classes not in"):
        quick.partial_fit(X[:16], np.full(16, classes[-1] + 1, dtype=y.dtype))
    with pytest.raises(ValueError, match="classes not in"):
        quick.partial_fit(X[:16], np.full(16, -1, dtype=y.dtype))


def test_binary_and_string_labels(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 5))
    y = np.where(X[:, 0] > 0, "yes", "no")
    quick, full = (MLPClassifier((8,), random_state=0) for _ in range(2))
    taken = _run(quick, _batches(X, y), False, monkeypatch, classes=["no", "yes"])
    _run(full, _batches(X, y), True, monkeypatch, classes=["no", "yes"])
    assert len(taken) == 5 and all(taken)
    _assert_same(quick, full)


def test_what_the_quick_path_does_not_check_takes_the_full_path(digits):
    X, y = digits
    clf = MLPClassifier((16,), random_state=0)
    clf.partial_fit(X[:16], y[:16], classes=np.arange(10))
    # labels it has not seen: the full path's error
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X[:16], np.full(16, 12))
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X[:16], y[:16], classes=np.arange(11))
    bad = X[:16].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.partial_fit(bad, y[:16])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:16, :10], y[:16])
    # a parameter set since the last call is checked, and used
    clf.set_params(learning_rate_init=-1.0)
    with pytest.raises(ValueError, match="learning_rate_init"):
        clf.partial_fit(X[:16], y[:16])
    clf.set_params(learning_rate_init=0.5)
    before = clf.coefs_[0].copy()
    clf.partial_fit(X[:16], y[:16])
    after_big = clf.coefs_[0] - before
    assert np.abs(after_big).max() > 0
    # sample weights, lists and frames go the full way (and still train)
    t = clf.t_
    clf.partial_fit(X[:16], y[:16], sample_weight=np.ones(16))
    clf.partial_fit(X[:16].tolist(), y[:16].tolist())
    assert clf.t_ == t + 32


def test_feature_names_keep_the_full_path(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    df = pd.DataFrame(X[:32], columns=[f"p{i}" for i in range(64)])
    reg = MLPRegressor(hidden_layer_sizes=(8,), random_state=0)
    reg.partial_fit(df[:16], y[:16].astype(float))
    assert "_quick" not in reg.__dict__  # (fitted with names: every call checks them)
    with pytest.warns(UserWarning, match="feature names"):
        reg.partial_fit(X[16:32], y[16:32].astype(float))


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_the_quick_path_reads_a_strided_or_reversed_x_where_it_lies(digits, Estimator,
                                                                    monkeypatch):
    # a view's values are checked (and read) row by row, never as a block from its first
    # element: a NaN past that block is found, and a reversed view reads no memory beyond it
    X, y = digits
    y = y if Estimator is MLPClassifier else y / 9.0
    kwargs = {"classes": np.arange(10)} if Estimator is MLPClassifier else {}
    make = lambda: Estimator(hidden_layer_sizes=(8,), random_state=0)  # noqa: E731
    est = make().partial_fit(X[:16], y[:16], **kwargs)
    wide = np.zeros((16, 128))
    wide[:, ::2] = X[16:32]
    wide[15, 2] = np.nan  # row 15 of the view: past the first 16 x 64 values of `wide`
    with pytest.raises(ValueError, match="Input X contains NaN"):  # (scikit-learn's check)
        est.partial_fit(wide[:, ::2], y[16:32])
    # too large for the float32 model: the full path's error, the weights kept
    wide[15, 2] = 1e300
    before = [A.copy() for A in est.coefs_ + est.intercepts_]
    with pytest.raises(ValueError, match="large values"):
        est.partial_fit(wide[:, ::2], y[16:32])
    for A, B in zip(est.coefs_ + est.intercepts_, before):
        np.testing.assert_array_equal(A, B)
    # a reversed view (negative strides: its data pointer at its last row, in the middle of
    # its base) trains quick, as its C-contiguous copy does; the base's NaN after the view's
    # last row is not the view's
    same = make().partial_fit(X[:16], y[:16], **kwargs)
    est = make().partial_fit(X[:16], y[:16], **kwargs)
    base = np.vstack([X[16:32][::-1], np.full((16, 64), np.nan)])
    backwards = base[15::-1]
    assert backwards.strides[0] < 0
    assert _run(est, [(backwards, y[16:32])], False, monkeypatch) == [True]
    same.partial_fit(np.ascontiguousarray(backwards), y[16:32])
    _assert_same(est, same)
