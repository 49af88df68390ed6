"""fastnn.losses (the registry) and F.loss: every loss against its NumPy reference on both
backends and both dtypes, its gradient against finite differences, its targets' checks, and
the models and the native loop with each loss."""

import numpy as np
import pytest

import fastnn
from fastnn import MLP, losses
from fastnn import functional as F
from fastnn import reference as R

REGRESSION = ["squared_error", "half_squared_error", "poisson"]


def _targets(name, rng, N, d, dtype):
    spec = losses.get(name)
    if spec.targets == "classes":
        return rng.integers(0, d, N)
    if spec.targets == "binary":
        return rng.integers(0, 2, N)
    if spec.targets == "counts":
        return rng.poisson(2.0, (N, d)).astype(dtype)
    return rng.standard_normal((N, d)).astype(dtype)


def _logits(name, rng, N, d, dtype):
    Z = rng.standard_normal((N, d)).astype(dtype)
    return Z[:, 0] if losses.get(name).targets == "binary" else Z


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_each_loss_matches_its_reference(backend, dtype, name, reduction, rng, assert_close):
    N, d = 37, 4
    Z = _logits(name, rng, N, d, dtype)
    y = _targets(name, rng, N, d, dtype)
    with fastnn.use_backend(backend):
        loss, dZ = F.loss(name, Z, y, reduction=reduction, return_grad=True)
    ref_loss, ref_dZ = losses.get(name).reference(
        Z.astype(np.float64), np.asarray(y, dtype=np.float64 if name != "cross_entropy"
                                         else np.intp),
        reduction=reduction, return_grad=True)
    assert np.asarray(loss).dtype == np.dtype(dtype) and dZ.dtype == np.dtype(dtype)
    assert_close(np.asarray(loss), np.asarray(ref_loss), dtype, scale=10.0)
    assert_close(dZ, ref_dZ, dtype)


@pytest.mark.parametrize("name", list(losses.LOSSES))
def test_each_gradient_matches_finite_differences(backend, name, rng):
    N, d, h = 5, 3, 1e-6
    Z = _logits(name, rng, N, d, np.float64)
    y = _targets(name, rng, N, d, np.float64)
    _, dZ = F.loss(name, Z, y, reduction="sum", return_grad=True)
    numeric = np.zeros_like(Z)
    for idx in np.ndindex(Z.shape):
        up, down = Z.copy(), Z.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (F.loss(name, up, y, reduction="sum")
                        - F.loss(name, down, y, reduction="sum")) / (2 * h)
    np.testing.assert_allclose(dZ, numeric, rtol=1e-6, atol=1e-7)


def test_half_squared_error_is_half_of_eq_20(rng):
    Z, Y = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    full, dfull = F.squared_error(Z, Y, reduction="sum", return_grad=True)
    half, dhalf = F.loss("half_squared_error", Z, Y, reduction="sum", return_grad=True)
    assert half == pytest.approx(full / 2, rel=1e-15)
    np.testing.assert_allclose(dhalf, dfull / 2, rtol=1e-15)
    np.testing.assert_allclose(dhalf, Z - Y, rtol=1e-15)  # scikit-learn's gradient


def test_poisson_is_scikit_learns_half_deviance(rng):
    from sklearn.neural_network._base import poisson_loss

    Z = rng.standard_normal((40, 2))
    Y = rng.poisson(1.5, (40, 2)).astype(float)  # zeros included: 0 ln 0 = 0
    assert F.loss("poisson", Z, Y, reduction="mean") == pytest.approx(
        poisson_loss(Y, np.exp(Z)), rel=1e-13)
    _, dZ = F.loss("poisson", Z, Y, reduction="sum", return_grad=True)
    np.testing.assert_allclose(dZ, np.exp(Z) - Y, rtol=1e-14)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: F.loss("hinge", [[0.0]], [[0.0]]), ValueError, "loss must be one of"),
    (lambda: F.loss("poisson", [[0.0]], [[-1.0]]), ValueError, "counts >= 0"),
    (lambda: F.loss("poisson", [[0.0]], [[np.nan]]), ValueError, "finite"),
    (lambda: F.loss("half_squared_error", [[0.0, 1.0]], [[0.0]]), ValueError, "shape"),
    (lambda: losses.loss_of_output("tanh"), ValueError, "output must be one of"),
])
def test_bad_losses_and_targets(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------------------------------
# models with each loss, trained natively and by the Python reference loop
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("output, loss", [("identity", "half_squared_error"),
                                          ("exp", "poisson")])
def test_models_train_natively_as_the_reference_loop(output, loss, rng):
    X = rng.standard_normal((90, 5))
    mean = np.exp(0.3 * X[:, :2])
    Y = rng.poisson(mean).astype(float) if loss == "poisson" else mean
    results = []
    for backend in ("cython", "numpy"):
        model = MLP(5, 8, 2, output=output, loss=loss, dtype="float64", random_state=0)
        assert model.loss_name == loss and model.output == output
        with fastnn.use_backend(backend):
            history = model.fit(X, Y, epochs=5, batch_size=16, lr=0.05, momentum=0.5,
                                random_state=0)
            results.append((history.loss, model.predict(X), model.gradients(X, Y)))
    (h1, p1, g1), (h2, p2, g2) = results
    np.testing.assert_allclose(h1, h2, rtol=1e-10)
    np.testing.assert_allclose(p1, p2, rtol=1e-10)
    for (dW, db), (dW2, db2) in zip(g1, g2):
        np.testing.assert_allclose(dW, dW2, rtol=1e-9, atol=1e-12)
    if loss == "poisson":  # predict gives the mean e^z
        np.testing.assert_allclose(p1, np.exp(model.decision_function(X)), rtol=1e-12)
        assert h1[-1] < h1[0]


def test_a_loss_must_go_with_the_output_map():
    with pytest.raises(ValueError, match="goes with the 'identity' output"):
        MLP(3, 4, 1, output="sigmoid", loss="half_squared_error")
    assert MLP(3, 4, 1, output="exp").loss_name == "poisson"


def test_poisson_models_save_and_load(tmp_path, rng):
    model = MLP(3, 4, 1, output="exp", random_state=0)
    model.fit(rng.standard_normal((20, 3)), rng.poisson(1.0, 20), epochs=2)
    model.save(tmp_path / "m.npz")
    same = fastnn.load(tmp_path / "m.npz")
    assert same.loss_name == "poisson"
    X = rng.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(same.predict(X), model.predict(X))
    with pytest.raises(ValueError, match="counts >= 0"):
        model.fit(X, [-1, 0, 1, 2])
