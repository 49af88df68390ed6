"""The native loop's split step (fastnn/_train.pxi): a step of enough work is cut into fixed
parts (blocks of the batch's rows, then blocks of each layer's units) that fastnn's threads
share; a team whose threads wait long at the barriers disbands for the rest of a stretch.

The contract checked here: the weights do not depend on how many threads ran the parts (bit
for bit), they agree with the Python loop of the NumPy reference backend, and the choice of
threads behaves as documented. Every architecture below has enough work per step to be split
(3 * B * sum of N_in * N_out of the layers >= 2**16 multiply-adds)."""

import numpy as np
import pytest

import fastnn
from fastnn import MLP, Linear, Sequential, _kernels

threadpoolctl = pytest.importorskip("threadpoolctl")

OPTIMIZERS = {
    "sgd": dict(optimizer="sgd", lr=0.05),
    "momentum": dict(optimizer="sgd", momentum=0.9, lr=0.01),
    "nesterov+decay": dict(optimizer="sgd", momentum=0.9, nesterov=True, lr=0.01,
                           weight_decay=1e-3),
    "adam": dict(optimizer="adam", lr=0.003),
}


def _problem(kind, N, n_in, n_out, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n_in)).astype(dtype)
    if kind == "softmax":
        y = rng.integers(0, n_out, N)
    elif kind == "sigmoid":  # multi-label
        y = (rng.random((N, n_out)) < 0.4).astype(dtype)
    else:
        y = rng.standard_normal((N, n_out)).astype(dtype)
    return X, y


def _model(arch, dtype):
    n_in, hidden, n_out, act, output = arch
    return MLP(n_in, hidden, n_out, activation=act, output=output, dtype=dtype,
               random_state=1)


ARCHS = {
    # the digits fit's shape (64-128-10, relu, softmax)
    "digits": (64, (128,), 10, "relu", "softmax"),
    # deeper, an output layer with more units than parts, sigmoid outputs (multi-label)
    "deep multilabel": (24, (96, 80, 64), 12, "tanh", "sigmoid"),
    # regression with several outputs, exp-based activations
    "regression": (40, (150, 60), 3, "sigmoid", "identity"),
}


def _teams_possible():
    return fastnn.get_num_threads() > 1 and (__import__("os").cpu_count() or 1) > 1


def _weights(model):
    return [A.copy() for W, b in model.parameters() for A in (W, b) if A is not None]


def _fit(arch, dtype, threads, batch_size, opt, N=401, sample_weight=False, epochs=3,
         backend="cython"):
    n_in, _, n_out, _, output = arch
    X, y = _problem(output, N, n_in, n_out, dtype)
    sw = np.random.default_rng(3).uniform(0.2, 2.0, N) if sample_weight else None
    model = _model(arch, dtype)
    with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"), \
            fastnn.use_backend(backend):
        history = model.fit(X, y, epochs=epochs, batch_size=batch_size, sample_weight=sw,
                            random_state=2, **OPTIMIZERS[opt])
    return model, history


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("arch", list(ARCHS))
def test_one_and_two_threads_give_the_same_bits(trainers, arch, opt, dtype):
    # N = 401 with batches of 32: the last batch (17 rows) splits unevenly; an epoch is
    # enough work for the team (> TEAM_STRETCH)
    one, h1 = _fit(ARCHS[arch], dtype, 1, 32, opt)
    two, h2 = _fit(ARCHS[arch], dtype, 2, 32, opt)
    if _teams_possible():
        assert trainers[-1].team_stretches + trainers[-1].disbanded >= 1
    for A, B in zip(_weights(one), _weights(two)):
        np.testing.assert_array_equal(A, B)
    assert h1.loss == h2.loss


@pytest.mark.parametrize("batch_size", [1, 3, 203])
def test_batches_smaller_than_the_parts_and_the_whole_set(batch_size):
    # one row per batch (one part), three rows over two parts, everything in one batch
    arch = (512, (160,), 10, "relu", "softmax")  # B = 1 still has 2**16 multiply-adds
    N = 41 if batch_size < 203 else 203
    one, _ = _fit(arch, "float64", 1, batch_size, "momentum", N=N, epochs=2)
    two, _ = _fit(arch, "float64", 2, batch_size, "momentum", N=N, epochs=2)
    for A, B in zip(_weights(one), _weights(two)):
        np.testing.assert_array_equal(A, B)


@pytest.mark.parametrize("sample_weight", [False, True])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_the_split_step_agrees_with_the_reference_loop(arch, opt, sample_weight):
    native, hn = _fit(ARCHS[arch], "float64", 2, 32, opt, sample_weight=sample_weight)
    ref, hr = _fit(ARCHS[arch], "float64", 2, 32, opt, sample_weight=sample_weight,
                   backend="numpy")
    for A, B in zip(_weights(native), _weights(ref)):
        np.testing.assert_allclose(A, B, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hn.loss, hr.loss, rtol=1e-10)


def test_a_layer_without_bias_in_the_split_step():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 60)), rng.standard_normal((300, 1))  # a team-sized epoch
    fits = []
    for backend, threads in (("cython", 1), ("cython", 2), ("numpy", 2)):
        net = Sequential([Linear(60, 200, "tanh", dtype="float64", random_state=0),
                          Linear(200, 1, bias=False, dtype="float64", random_state=1)],
                         loss="squared_error")
        with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"), \
                fastnn.use_backend(backend):
            net.fit(X, y, epochs=2, batch_size=25, lr=0.01, momentum=0.5, random_state=0)
        fits.append(_weights(net))
    for A, B in zip(fits[0], fits[1]):
        np.testing.assert_array_equal(A, B)
    for A, B in zip(fits[0], fits[2]):
        np.testing.assert_allclose(A, B, rtol=1e-9, atol=1e-12)


@pytest.fixture
def trainers(monkeypatch):
    """The native Trainers that fits create (to look at how their stretches ran); a test may
    set ``disband_after`` to make each new Trainer's team disband after that many steps."""
    class Made(list):
        spy = None

    made = Made()
    real = _kernels.EpochRunner

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        if getattr(spy, "disband_after", None) is not None:
            from fastnn import _testing  # (the checked build's hooks)

            _testing.disband_after(made[-1], spy.disband_after)
        return made[-1]

    monkeypatch.setattr(_kernels, "EpochRunner", spy)
    made.spy = spy
    yield made


@pytest.mark.parametrize("at", [1, 2, 3])  # (team stretches have 4 steps or more)
@pytest.mark.parametrize("arch", ["digits", "deep multilabel"])
def test_a_team_that_disbands_mid_stretch_gives_the_same_bits(trainers, arch, at):
    # thread 0 finishes the stretch alone after ``at`` steps: every part still runs once
    alone, h1 = _fit(ARCHS[arch], "float32", 1, 32, "adam")
    pytest.importorskip("fastnn._testing", reason="needs the checked build's hooks")
    trainers.spy.disband_after = at
    split, h2 = _fit(ARCHS[arch], "float32", 2, 32, "adam")
    if _teams_possible():
        assert trainers[-1].disbanded >= 1
    for A, B in zip(_weights(alone), _weights(split)):
        np.testing.assert_array_equal(A, B)
    assert h1.loss == h2.loss


def test_a_short_stretch_runs_on_one_thread(trainers):
    # 3 epochs of 2 batches of a 10-100-1 net: about a million multiply-adds per epoch, too
    # little to wake a team for
    X, y = _problem("identity", 331, 10, 1, "float32")
    MLP(10, 100, 1, output="identity", random_state=0).fit(X, y, epochs=3, batch_size=200)
    trainer = trainers[-1]
    assert trainer.alone_stretches == 3 and trainer.team_stretches == trainer.disbanded == 0


def test_a_small_step_runs_on_one_thread(trainers):
    # 3 * 8 * (4 * 8 + 8 * 3) multiply-adds a step: no team at all
    X = np.random.default_rng(0).standard_normal((40, 4))
    y = np.arange(40) % 3
    MLP(4, 8, 3, random_state=0).fit(X, y, epochs=2, batch_size=8)
    assert trainers[-1].team_stretches == trainers[-1].disbanded == 0


def test_one_thread_allowed_means_no_team(trainers):
    X, y = _problem("softmax", 256, 64, 10, "float32")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        _model(ARCHS["digits"], "float32").fit(X, y, epochs=2, batch_size=32)
    assert trainers[-1].team_stretches == trainers[-1].disbanded == 0


@pytest.mark.parametrize("arch", ["digits", "regression"])  # first layer transposed / not
def test_weights_changed_by_a_callback_are_trained_on(arch):
    # the native loop holds a small first layer transposed during an epoch and copies it in
    # again only when something may have written the model's arrays: a callback may
    n_in, _, n_out, _, output = ARCHS[arch]
    X, y = _problem(output, 401, n_in, n_out, "float64")
    fits = []
    for backend in ("cython", "numpy"):
        model = _model(ARCHS[arch], "float64")

        def shrink(epoch, history, model=model):
            if epoch == 0:
                model.layers[0].W *= 0.5  # in place: the arrays the loop trains
                model.layers[0].b[:] = 0.25

        with fastnn.use_backend(backend):
            model.fit(X, y, epochs=3, batch_size=32, lr=0.01, momentum=0.9, random_state=0,
                      callback=shrink)
        fits.append(_weights(model))
    for A, B in zip(*fits):
        np.testing.assert_allclose(A, B, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("N, transposed", [(640, True), (384, False)])
def test_a_mid_size_first_layer_is_held_transposed_in_long_epochs(trainers, N, transposed):
    # 784 -> 128 on batches of 128: a product too large for BLAS's small-matrix kernels, which
    # the loop holds as W^T (OpenBLAS packs it faster) when an epoch has 4 steps or more to
    # pay for the two copies; either way the weights agree with the reference loop and do not
    # depend on the thread count
    arch = (784, (128,), 10, "relu", "softmax")
    fits = []
    for threads, backend in ((1, "cython"), (2, "cython"), (2, "numpy")):
        model, _ = _fit(arch, "float64", threads, 128, "momentum", N=N, epochs=2,
                        backend=backend)
        fits.append(_weights(model))
        if backend == "cython":
            assert trainers[-1].transposed is transposed
    for A, B in zip(fits[0], fits[1]):
        np.testing.assert_array_equal(A, B)
    for A, B in zip(fits[0], fits[2]):
        np.testing.assert_allclose(A, B, rtol=1e-9, atol=1e-12)
