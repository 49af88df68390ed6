"""fit keeps its native loop (workspaces, transposed copies) on the model and reuses it when
the next fit has the same shapes and arrays: the results must be those of a new loop, and
anything that changed in between (an array replaced, an activation, the rule, the data's
shapes, the optimizer state) must build a new one. A fit of one epoch restores through the
loop's own copy (guard) instead of a Python copy."""

import pickle

import numpy as np
import pytest

import fastnn
from fastnn import MLP


def _data(N=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, 5)), rng.integers(0, 3, N)


def _fresh_copy(model):
    twin = pickle.loads(pickle.dumps(model))  # (drops the kept loop)
    assert twin._fit_loop is None
    return twin


@pytest.mark.parametrize("kwargs", [
    dict(optimizer="sgd", lr=0.1),
    dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    dict(optimizer="adam", lr=0.01),
])
def test_a_kept_loop_gives_what_a_new_loop_gives(backend, dtype, kwargs):
    X, y = _data()
    model = MLP(5, 8, 3, dtype=dtype, random_state=0)
    model.fit(X, y, epochs=2, batch_size=8, random_state=1, **kwargs)
    kept = model._fit_loop
    twin = _fresh_copy(model)
    for m in (model, twin):  # the same next fits: kept loop vs a new one
        m.fit(X, y, epochs=1, batch_size=8, random_state=2, warm_start=True, **kwargs)
        m.fit(X[:24], y[:24], epochs=2, batch_size=8, random_state=3, warm_start=True,
              **kwargs)
    assert model._fit_loop is not None
    for (W, b), (W2, b2) in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)
    # the second fit had other shapes (24 rows): it built a loop of its own
    assert model._fit_loop is not kept


def test_what_changed_between_fits_builds_a_new_loop(backend):
    X, y = _data()
    model = MLP(5, 8, 3, random_state=0)
    model.fit(X, y, epochs=1)
    loop = model._fit_loop
    model.fit(X, y, epochs=1)
    assert model._fit_loop is loop  # same shapes, arrays and rule: kept
    model.layers[0].W = model.layers[0].W.copy()  # an array replaced
    before = model.layers[0].W.copy()
    model.fit(X, y, epochs=1)
    assert model._fit_loop is not loop and not np.array_equal(model.layers[0].W, before)
    loop = model._fit_loop
    model.layers[0].activation = "tanh"
    model.fit(X, y, epochs=1)
    assert model._fit_loop is not loop
    loop = model._fit_loop
    model.fit(X, y, epochs=1, momentum=0.5)  # another rule (and state)
    assert model._fit_loop is not loop
    loop = model._fit_loop
    model.layers[1].W.flags.writeable = False  # (replaced by a writeable copy)
    model.fit(X, y, epochs=1, momentum=0.5)
    assert model._fit_loop is not loop and model.layers[1].W.flags.writeable


def test_a_damaged_kept_state_is_refused_by_its_values(backend):
    X, y = _data()
    model = MLP(5, 8, 3, random_state=0)
    model.fit(X, y, epochs=1, optimizer="adam", lr=0.01)
    model.optimizer_state_["state"][1][0][0][0, 0] = -1.0  # a negative second moment
    with pytest.warns(RuntimeWarning, match="second moment of layer 0's W holds negative"):
        model.fit(X, y, epochs=1, optimizer="adam", lr=0.01, warm_start=True)
    assert model.optimizer_state_["t"] == 2  # (a new state: 40 / 32 -> 2 steps)


def test_a_diverging_one_epoch_fit_keeps_the_weights(backend, dtype):
    X, _ = _data()
    model = MLP(5, 8, 2, output="identity", dtype=dtype, random_state=0)
    before = [A.copy() for pair in model.parameters() for A in pair]
    big = np.dtype(dtype) == np.float64
    y = np.full((40, 2), 1e100 if big else 1e18)
    with pytest.raises(FloatingPointError, match="diverged in epoch 1 of 1"):
        model.fit(X, y, epochs=1, lr=1e300 if big else 1e30, momentum=0.9)
    for A, A0 in zip([A for pair in model.parameters() for A in pair], before):
        np.testing.assert_array_equal(A, A0)
    assert model.optimizer_state_["t"] == 0


def test_ctrl_c_in_a_one_epoch_fit_puts_the_weights_back(monkeypatch):
    """The loop's own copy (guard) restores when Ctrl-C leaves the epoch: here the progress
    callback of the native loop raises it, as a signal noticed there would."""
    X, y = _data(N=400)
    model = MLP(5, 8, 3, random_state=0)
    before = [A.copy() for pair in model.parameters() for A in pair]
    from fastnn import _progress

    def interrupt(self, done):
        raise KeyboardInterrupt

    monkeypatch.setattr(_progress.EpochBar, "__call__", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=1, batch_size=4, verbose=2)
    for A, A0 in zip([A for pair in model.parameters() for A in pair], before):
        np.testing.assert_array_equal(A, A0)
    fastnn.MLP(5, 8, 3).fit(X, y, epochs=1)  # (fastnn still works afterwards)
