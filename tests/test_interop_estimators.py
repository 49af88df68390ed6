"""Exporting fitted estimators (issue 13, item 11): ``to_onnx`` and ``to_state_dict`` of a
fitted ``MLPClassifier`` / ``MLPRegressor``, and ``to_onnx`` of a fitted scikit-learn
``Pipeline`` ending in one. onnxruntime runs each graph, and its outputs are compared with the
estimator's own ``predict`` and ``predict_proba`` (labels of ``classes_``, strings included;
(N, 2) probabilities for a binary classifier). Skipped where onnx, onnxruntime, scikit-learn or
(for pipelines) skl2onnx is not installed."""

import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastnn import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn.interop import to_onnx, to_state_dict  # noqa: E402
from helpers import run_onnx  # noqa: E402


def _X(n=80, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _targets(kind, n=80, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "binary-int": lambda: rng.integers(0, 2, n) * 3 + 4,  # classes 4, 7
        "binary-str": lambda: np.array(["no", "yes"])[rng.integers(0, 2, n)],
        "binary-bool": lambda: rng.integers(0, 2, n).astype(bool),
        "multiclass-int": lambda: rng.integers(0, 4, n) - 1,  # classes -1..2
        "multiclass-str": lambda: np.array(["cat", "dog", "emu"])[rng.integers(0, 3, n)],
        "multiclass-float": lambda: rng.integers(0, 3, n) * 2.0 + 1,  # classes 1.0, 3.0, 5.0
        "multilabel": lambda: rng.integers(0, 2, (n, 3)),
        "one-class": lambda: np.full(n, "only"),
    }[kind]()


def _fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def _atol(dtype):
    return 1e-6 if np.dtype(dtype) == np.float32 else 1e-12


def _assert_classifier_outputs(out, estimator, X, dtype):
    assert set(out) == {"label", "probabilities"}
    expected = estimator.predict(X)
    label = out["label"]
    assert label.shape == expected.shape
    if expected.dtype.kind == "U":  # onnxruntime gives ONNX strings as Python str objects
        assert label.dtype == object and all(isinstance(v, str) for v in label)
        label = label.astype(expected.dtype)
    else:
        assert label.dtype == expected.dtype
    np.testing.assert_array_equal(label, expected)
    proba = estimator.predict_proba(X)
    assert out["probabilities"].dtype == np.dtype(dtype) == proba.dtype
    assert out["probabilities"].shape == proba.shape
    np.testing.assert_allclose(out["probabilities"], proba, rtol=0, atol=_atol(dtype))


@pytest.mark.parametrize("kind", ["binary-int", "binary-str", "binary-bool", "multiclass-int",
                                  "multiclass-str", "multiclass-float", "multilabel",
                                  "one-class"])
def test_classifier_graph_gives_predict_and_predict_proba(kind, dtype):
    X = _X().astype(dtype)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(8, 6), max_iter=60, dtype=dtype,
                             random_state=0), X, _targets(kind))
    _assert_classifier_outputs(run_onnx(to_onnx(clf), X), clf, X, dtype)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_binary_classifier_probabilities_have_two_columns(solver):
    X = _X()
    clf = _fit(MLPClassifier(hidden_layer_sizes=(6,), solver=solver, max_iter=50,
                             dtype="float64", random_state=0), X, _targets("binary-str"))
    out = run_onnx(to_onnx(clf), X)
    assert out["probabilities"].shape == (80, 2)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert set(out["label"]) <= {"no", "yes"}


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_graph_gives_predict(n_outputs, loss, dtype):
    X = _X().astype(dtype)
    rng = np.random.default_rng(2)
    y = np.abs(rng.normal(size=(80, n_outputs)))
    y = y[:, 0] if n_outputs == 1 else y
    reg = _fit(MLPRegressor(loss=loss, hidden_layer_sizes=(7,), max_iter=60, dtype=dtype,
                            random_state=0), X, y)
    out = run_onnx(to_onnx(reg), X)
    assert set(out) == {"predictions"}
    expected = reg.predict(X)
    assert out["predictions"].shape == expected.shape and expected.ndim == (n_outputs > 1) + 1
    assert out["predictions"].dtype == expected.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out["predictions"], expected, rtol=_atol(dtype) * 10,
                               atol=_atol(dtype))


def test_estimator_graph_written_to_a_file(tmp_path):
    X = _X()
    clf = _fit(MLPClassifier(hidden_layer_sizes=(6,), max_iter=30, dtype="float64",
                             random_state=0), X, _targets("multiclass-str"))
    path = str(tmp_path / "clf.onnx")
    to_onnx(clf, path)
    _assert_classifier_outputs(run_onnx(path, X), clf, X, np.float64)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_state_dict_of_an_estimator_is_its_models(kind):
    X = _X()
    if kind == "classifier":
        est = _fit(MLPClassifier(hidden_layer_sizes=(6,), max_iter=20, random_state=0), X,
                   _targets("multiclass-str"))
    else:
        est = _fit(MLPRegressor(hidden_layer_sizes=(6,), max_iter=20, random_state=0), X,
                   X[:, 0])
    state = to_state_dict(est)
    expected = to_state_dict(est.model_)
    assert list(state) == list(expected) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for key in state:
        np.testing.assert_array_equal(state[key], expected[key])
    np.testing.assert_array_equal(state["0.weight"], est.coefs_[0].T)
    state["0.weight"][...] = 0  # a copy
    assert est.coefs_[0].any()


# ---------------------------------------------------------------------------------------
# Pipelines: the steps before the estimator by skl2onnx
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["binary-str", "multiclass-int", "multilabel"])
def test_pipeline_scaler_classifier(kind, dtype):
    pytest.importorskip("skl2onnx")
    X = (_X() * 20 + 5).astype(dtype)  # far from standard: the scaler matters
    pipe = _fit(make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,),
                                                              max_iter=60, dtype=dtype,
                                                              random_state=0)),
                X, _targets(kind))
    out = run_onnx(to_onnx(pipe), X)
    _assert_classifier_outputs(out, pipe, X, dtype)


def test_pipeline_with_passthrough_and_regressor(dtype):
    pytest.importorskip("skl2onnx")
    X = (_X() * 20 + 5).astype(dtype)
    pipe = _fit(Pipeline([("scale", StandardScaler()), ("nothing", "passthrough"),
                          ("mlp", MLPRegressor(hidden_layer_sizes=(7,), max_iter=60,
                                               dtype=dtype, random_state=0))]),
                X, X[:, :2] / 20)
    out = run_onnx(to_onnx(pipe), X)
    np.testing.assert_allclose(out["predictions"], pipe.predict(X), rtol=_atol(dtype) * 10,
                               atol=_atol(dtype) * 10)
    # a Pipeline of the estimator alone is the estimator's graph
    alone = _fit(Pipeline([("nothing", None), ("mlp", MLPRegressor(
        hidden_layer_sizes=(7,), max_iter=60, dtype=dtype, random_state=0))]), X / 20, X[:, 0])
    proto = to_onnx(alone)
    assert [node.op_type for node in proto.graph.node] == ["Gemm", "Relu", "Gemm", "Squeeze"]
    np.testing.assert_allclose(run_onnx(proto, X / 20)["predictions"], alone.predict(X / 20),
                               rtol=_atol(dtype) * 10, atol=_atol(dtype) * 10)


class _NoConverter(TransformerMixin, BaseEstimator):
    """A transformer skl2onnx has no converter for."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.shape(X)[1]
        return self

    def transform(self, X):
        return np.asarray(X) * 2


def test_pipeline_step_without_converter_is_a_type_error():
    pytest.importorskip("skl2onnx")
    X = _X()
    pipe = _fit(make_pipeline(_NoConverter(), MLPClassifier(hidden_layer_sizes=(4,), max_iter=5,
                                                            dtype="float64")),
                X, _targets("binary-int"))
    with pytest.raises(TypeError, match="skl2onnx"):
        to_onnx(pipe)


def test_pipeline_without_skl2onnx_is_an_import_error(monkeypatch):
    X = _X()
    pipe = _fit(make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(4,),
                                                              max_iter=5)),
                X, _targets("binary-int"))
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # import skl2onnx now fails
    with pytest.raises(ImportError, match=r'skl2onnx.*pip install "fastnn\[onnx\]"'):
        to_onnx(pipe)


# ---------------------------------------------------------------------------------------
# what cannot be exported
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("export", [to_onnx, to_state_dict])
@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_unfitted_estimator_is_a_type_error(export, estimator):
    with pytest.raises(TypeError, match=f"unfitted {estimator.__name__}"):
        export(estimator())


def test_unsupported_objects_are_type_errors():
    X = _X()
    y = _targets("binary-int")
    sk = _fit(SkMLPClassifier(hidden_layer_sizes=(3,), max_iter=5), X, y)
    for export in (to_onnx, to_state_dict):
        with pytest.raises(TypeError, match="SkMLPClassifier|MLPClassifier"):
            export(sk)
    with pytest.raises(TypeError, match="must end in a fastnn"):
        to_onnx(_fit(make_pipeline(StandardScaler(), LogisticRegression()), X, y))
    fitted = _fit(make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(3,),
                                                                max_iter=5)), X, y)
    with pytest.raises(TypeError, match="Pipeline"):
        to_state_dict(fitted)
    with pytest.raises(TypeError, match="unfitted MLPClassifier"):
        to_onnx(make_pipeline(StandardScaler(), MLPClassifier()))
