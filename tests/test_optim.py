"""fastnn.optim: the optimizer objects (SGD, Adam) and ``Sequential.train_on_batch``.

Each step is checked against the update rules of fastnn.updates applied by hand to
``model.gradients`` (the reference), on both backends and both dtypes; a loop of
train_on_batch calls against ``fit`` over the same batches; and what a user can get wrong.
"""

import pickle

import numpy as np
import pytest

import fastnn
from fastnn import MLP, updates
from fastnn.optim import SGD, Adam, Optimizer

RULES = {
    "sgd": (SGD, {"lr": 0.1}),
    "momentum": (SGD, {"lr": 0.1, "momentum": 0.9}),
    "nesterov": (SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    "adam": (Adam, {"lr": 0.01}),
    "adam_decay": (Adam, {"lr": 0.02, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6,
                          "weight_decay": 0.05}),
}
#: (output, n_outputs, targets of N rows)
TASKS = {
    "softmax": ("softmax", 3, lambda rng, N: rng.integers(0, 3, N)),
    "sigmoid": ("sigmoid", 2, lambda rng, N: rng.integers(0, 2, (N, 2))),
    "identity": ("identity", 2, lambda rng, N: rng.standard_normal((N, 2))),
}


def _rtol(dtype):
    return 2e-5 if np.dtype(dtype) == np.float32 else 1e-11


def _net(dtype, output="softmax", n_outputs=3, loss=None, seed=0):
    kwargs = {} if loss is None else {"loss": loss}
    return MLP(5, (7, 6), n_outputs, output=output, dtype=dtype, random_state=seed, **kwargs)


def _data(N=24, task="softmax", seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, 5)), TASKS[task][2](rng, N)


def _reference_step(net, X, y, rule, state, t, sample_weight=None):
    """One step by hand: model.gradients (mean over the batch), then updates.apply."""
    kind, params = RULES[rule]
    if sample_weight is None:
        grads = net.gradients(X, y)
    else:  # the gradient of sum_i w_i loss_i / N, one sample at a time
        grads = None
        for i, w in enumerate(sample_weight):
            g = net.gradients(X[i:i + 1], y[i:i + 1], reduction="sum")
            g = [(w * dW / len(X), None if db is None else w * db / len(X)) for dW, db in g]
            grads = g if grads is None else [(a + c, None if b is None else b + d)
                                             for (a, b), (c, d) in zip(grads, g)]
    settings = {"optimizer": "adam" if kind is Adam else "sgd", "momentum": 0.0,
                "nesterov": False, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                "weight_decay": 0.0, **params}
    updates.apply(net.parameters(), grads, state, t=t, **settings)


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("task", list(TASKS))
def test_train_on_batch_is_the_reference_step(backend, dtype, rule, task):
    output, d, _ = TASKS[task]
    kind, params = RULES[rule]
    X, y = _data(task=task)
    net, ref = _net(dtype, output, d), _net(dtype, output, d)
    opt = kind(net, **params)
    state = updates.new_state(ref.parameters(), opt.name, opt.momentum)
    for t in range(1, 4):  # three steps on three batches: state and t carry over
        rows = slice(8 * (t - 1), 8 * t)
        loss = net.train_on_batch(X[rows], y[rows], opt)
        expected_loss = float(ref.loss(X[rows], y[rows]))
        _reference_step(ref, X[rows], y[rows], rule, state, t)
        np.testing.assert_allclose(loss, expected_loss, rtol=_rtol(dtype))
        assert opt.t == t
    for (W, b), (W0, b0) in zip(net.parameters(), ref.parameters()):
        assert W.dtype == np.dtype(dtype)
        np.testing.assert_allclose(W, W0, rtol=_rtol(dtype), atol=_rtol(dtype))
        np.testing.assert_allclose(b, b0, rtol=_rtol(dtype), atol=_rtol(dtype))


@pytest.mark.parametrize("rule", list(RULES))
def test_step_from_gradients_is_the_reference_step(backend, dtype, rule):
    kind, params = RULES[rule]
    X, y = _data()
    net, ref = _net(dtype), _net(dtype)
    opt = kind(net, **params)
    state = updates.new_state(ref.parameters(), opt.name, opt.momentum)
    for t in (1, 2):
        opt.step(net.gradients(X, y))
        _reference_step(ref, X, y, rule, state, t)
    for (W, b), (W0, b0) in zip(net.parameters(), ref.parameters()):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    assert opt.t == 2


def test_sample_weights_weigh_each_sample(backend, dtype):
    X, y = _data()
    w = np.random.default_rng(2).uniform(0, 2, len(X))
    net, ref = _net(dtype), _net(dtype)
    opt = SGD(net, lr=0.1, momentum=0.9)
    net.train_on_batch(X, y, opt, sample_weight=w)
    _reference_step(ref, X, y, "momentum", updates.new_state(ref.parameters(), "sgd", 0.9), 1,
                    sample_weight=w)
    for (W, _), (W0, _) in zip(net.parameters(), ref.parameters()):
        np.testing.assert_allclose(W, W0, rtol=_rtol(dtype), atol=_rtol(dtype))


@pytest.mark.parametrize("loss", ["poisson", "half_squared_error"])
def test_every_loss_of_the_registry_steps(backend, loss):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((16, 5))
    y = rng.poisson(2.0, (16, 1)).astype(float) if loss == "poisson" else rng.standard_normal(
        (16, 1))
    output = "exp" if loss == "poisson" else "identity"
    net, ref = _net(np.float64, output, 1, loss=loss), _net(np.float64, output, 1, loss=loss)
    opt = Adam(net, lr=0.01)
    state = updates.new_state(ref.parameters(), "adam", 0.0)
    net.train_on_batch(X, y, opt)
    _reference_step(ref, X, y, "adam", state, 1)
    for (W, _), (W0, _) in zip(net.parameters(), ref.parameters()):
        np.testing.assert_allclose(W, W0, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("rule", ["momentum", "adam"])
def test_a_loop_of_steps_is_fit_over_the_same_batches(backend, dtype, rule):
    """fit without shuffling visits the batches in order: the same steps as a loop of
    train_on_batch over them (the last batch shorter), to rounding."""
    kind, params = RULES[rule]
    X, y = _data(N=50)
    net, ref = _net(dtype), _net(dtype)
    opt = kind(net, **params)
    losses = []
    for epoch in range(3):
        total = 0.0
        for start in range(0, 50, 16):
            rows = slice(start, start + 16)
            total += net.train_on_batch(X[rows], y[rows], opt) * len(X[rows])
        losses.append(total / 50)
    history = ref.fit(X, y, epochs=3, batch_size=16, shuffle=False, optimizer=kind.name,
                      **params)
    np.testing.assert_allclose(losses, history.loss, rtol=10 * _rtol(dtype))
    for (W, _), (W0, _) in zip(net.parameters(), ref.parameters()):
        np.testing.assert_allclose(W, W0, rtol=10 * _rtol(dtype), atol=10 * _rtol(dtype))
    assert opt.t == ref.optimizer_state_["t"] == 12


def test_state_dict_round_trip_and_fit_state(dtype):
    X, y = _data()
    net = _net(dtype)
    opt = Adam(net, lr=0.01)
    net.train_on_batch(X, y, opt)
    saved, weights = opt.state_dict(), [A.copy() for pair in net.parameters() for A in pair]
    assert saved["optimizer"] == "adam" and saved["t"] == 1 and saved["lr"] == 0.01
    after_one = net.train_on_batch(X, y, opt)
    # back to the saved state and weights: the same second step, bit for bit
    opt.load_state_dict(saved)
    for A, A0 in zip([A for pair in net.parameters() for A in pair], weights):
        A[...] = A0
    assert net.train_on_batch(X, y, opt) == after_one and opt.t == 2
    # state_dict() holds copies, not the optimizer's arrays
    assert not any(np.shares_memory(a, b) for s, s2 in zip(saved["state"], opt.state)
                   for x, x2 in zip(s, s2) for a, b in zip(x, x2))
    # a fit's state continues in an optimizer, and back
    net.fit(X, y, epochs=2, optimizer="adam", lr=0.01)
    opt2 = Adam(net, lr=0.01)
    opt2.load_state_dict(net.optimizer_state_)
    assert opt2.t == net.optimizer_state_["t"]
    np.testing.assert_array_equal(opt2.state[0][0][0], net.optimizer_state_["state"][0][0][0])


def test_load_state_dict_refuses_what_does_not_fit():
    net = _net(np.float64)
    opt = SGD(net, lr=0.1, momentum=0.9)
    good = opt.state_dict()
    with pytest.raises(ValueError, match="'adam'"):
        opt.load_state_dict(Adam(net).state_dict())
    with pytest.raises(ValueError, match="momentum"):
        opt.load_state_dict(SGD(net, lr=0.1, momentum=0.5).state_dict())
    with pytest.raises(ValueError, match="step count"):
        opt.load_state_dict({**good, "t": -1})
    bad = opt.state_dict()
    bad["state"][0][0] = (np.zeros((2, 2)), np.zeros(7))
    with pytest.raises(ValueError, match="does not fit the model"):
        opt.load_state_dict(bad)
    with pytest.raises(TypeError, match="state_dict must be a dict"):
        opt.load_state_dict([1, 2])
    with pytest.raises(TypeError, match="lr must be a finite number"):
        opt.load_state_dict({**good, "lr": "fast"})
    assert opt.lr == 0.1  # a refused state_dict leaves the optimizer as it was


def test_hyperparameters_may_change_between_steps(backend):
    X, y = _data()
    net, ref = _net(np.float64), _net(np.float64)
    opt = SGD(net, lr=0.1)
    net.train_on_batch(X, y, opt)
    opt.lr = 0.5  # a schedule of the user's own
    net.train_on_batch(X, y, opt)
    ref_opt = SGD(ref, lr=0.1)
    ref_opt.step(ref.gradients(X, y))
    ref_opt.lr = 0.5
    ref_opt.step(ref.gradients(X, y))
    for (W, _), (W0, _) in zip(net.parameters(), ref.parameters()):
        np.testing.assert_allclose(W, W0, rtol=1e-12, atol=1e-13)
    opt.lr = -1.0
    with pytest.raises(ValueError, match="lr must be > 0"):
        net.train_on_batch(X, y, opt)
    with pytest.raises(AttributeError):
        opt.momentum = 0.5  # fixed: it decides the state the optimizer keeps


def test_replaced_arrays_and_batch_sizes(backend):
    """A step after the model's arrays were replaced updates the new arrays; batches of
    other sizes build their own loop."""
    X, y = _data(N=30)
    net = _net(np.float64)
    opt = SGD(net, lr=0.1)
    net.train_on_batch(X[:10], y[:10], opt)
    net.layers[0].W = net.layers[0].W.copy()
    before = net.layers[0].W.copy()
    net.train_on_batch(X[:7], y[:7], opt)
    assert not np.array_equal(net.layers[0].W, before)
    net.train_on_batch(X[7:30], y[7:30], opt)
    assert opt.t == 3


def test_divergence_keeps_the_model_and_the_optimizer(backend, dtype):
    X, y = _data()
    net = _net(dtype, "identity", 2)
    y = np.full((len(X), 2), 1e30 if dtype == np.float64 else 1e18)
    opt = SGD(net, lr=1e30, momentum=0.9)
    before = [(W.copy(), b.copy()) for W, b in net.parameters()]
    with pytest.raises(FloatingPointError, match="keep their values from before"):
        for _ in range(3):
            net.train_on_batch(X, y, opt)
    finite_steps = opt.t
    for (W, b), (W0, b0) in zip(net.parameters(), before):
        assert np.isfinite(W).all() and np.isfinite(b).all()
    assert all(np.isfinite(a).all() for s in opt.state[0] for a in s)
    if finite_steps == 0:
        for (W, b), (W0, b0) in zip(net.parameters(), before):
            np.testing.assert_array_equal(W, W0)


def test_bad_arguments_are_named(backend):
    X, y = _data()
    net, other = _net(np.float64), _net(np.float64)
    opt = SGD(net, lr=0.1)
    with pytest.raises(TypeError, match="optimizer must be a fastnn.optim optimizer"):
        net.train_on_batch(X, y, "sgd")
    with pytest.raises(ValueError, match="another model"):
        other.train_on_batch(X, y, opt)
    with pytest.raises(ValueError, match="lr must be > 0"):
        SGD(net, lr=0)
    with pytest.raises(ValueError, match="momentum must be < 1"):
        SGD(net, momentum=1.0)
    with pytest.raises(ValueError, match="beta2 must be < 1"):
        Adam(net, beta2=1.0)
    with pytest.raises(TypeError, match="model must be a fastnn Sequential"):
        SGD("model")
    with pytest.raises(ValueError, match="X must have 5 features"):
        net.train_on_batch(X[:, :3], y, opt)
    with pytest.raises(ValueError, match="class labels in 0..2"):
        net.train_on_batch(X, y + 5, opt)
    with pytest.raises(ValueError, match="grads must be a list of one"):
        opt.step([])
    grads = net.gradients(X, y)
    with pytest.raises(ValueError, match=r"grads\[1\]\[0\] \(dW\) must have shape"):
        opt.step([grads[0], (grads[1][0].T, grads[1][1]), grads[2]])
    grads[0][0][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"grads\[0\]\[0\] \(dW\).*NaN"):
        opt.step(grads)
    assert opt.t == 0
    net.layers.append(fastnn.Linear(3, 3, dtype=np.float64))
    with pytest.raises(ValueError, match="no longer fits the model"):
        opt.step(grads)


def test_pickle_and_repr():
    X, y = _data()
    net = _net(np.float64)
    opt = Adam(net, lr=0.01)
    net.train_on_batch(X, y, opt)
    copy = pickle.loads(pickle.dumps(opt))
    assert isinstance(copy, Optimizer) and copy.t == 1 and copy.model is not net
    assert copy.model.train_on_batch(X, y, copy) == net.train_on_batch(X, y, opt)
    assert repr(opt).startswith("Adam(lr=0.01, weight_decay=0.0, beta1=0.9")
