"""The native loop's split step (fastnn/_train.pxi): a step of enough work is cut into fixed
parts (blocks of the batch's rows, then blocks of each layer's units) that a team of OpenMP
threads shares, and the team's size changes from stretch to stretch with the machine's load.

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


def _weights(model):
    return [A.copy() for W, b in model.parameters() for A in (W, b) if A is not None]


def _fit(arch, dtype, threads, batch_size, opt, N=203, sample_weight=False, epochs=3,
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
def test_one_and_two_threads_give_the_same_bits(arch, opt, dtype):
    # N = 203 with batches of 32: the last batch (11 rows) splits unevenly
    one, h1 = _fit(ARCHS[arch], dtype, 1, 32, opt)
    two, h2 = _fit(ARCHS[arch], dtype, 2, 32, opt)
    for A, B in zip(_weights(one), _weights(two)):
        np.testing.assert_array_equal(A, B)
    assert h1.loss == h2.loss


@pytest.mark.parametrize("batch_size", [1, 3, 203])
def test_batches_smaller_than_the_parts_and_the_whole_set(batch_size):
    # one row per batch (one part), three rows over two parts, everything in one batch
    arch = (512, (160,), 10, "relu", "softmax")  # B = 1 still has 2**16 multiply-adds
    one, _ = _fit(arch, "float64", 1, batch_size, "momentum", N=41 if batch_size < 203 else 203,
                  epochs=2)
    two, _ = _fit(arch, "float64", 2, batch_size, "momentum", N=41 if batch_size < 203 else 203,
                  epochs=2)
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
    X, y = rng.standard_normal((150, 60)), rng.standard_normal((150, 1))
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
    """The native Trainers that fits create, for a look at their choice of threads."""
    made = []
    real = _kernels.Trainer

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(_kernels, "Trainer", spy)
    return made


def test_a_fit_on_a_quiet_machine_runs_the_team(trainers):
    _fit(ARCHS["digits"], "float32", 2, 32, "momentum", N=1024, epochs=4)
    choice = trainers[-1].threads
    if _kernels.openmp_max_threads() > 1 and (__import__("os").cpu_count() or 1) > 1:
        # the team ran and was timed (one thread only if the team waited on a busy machine)
        assert 0 < choice.team_speed < np.inf
        assert choice.stretches >= 4


def test_a_small_step_runs_on_one_thread(trainers):
    # 3 * 8 * (4 * 8 + 8 * 3) multiply-adds: far below the split's threshold
    X = np.random.default_rng(0).standard_normal((40, 4))
    y = np.arange(40) % 3
    MLP(4, 8, 3, random_state=0).fit(X, y, epochs=2, batch_size=8)
    choice = trainers[-1].threads
    assert choice.team_speed == np.inf and not choice.probing


def test_one_thread_allowed_means_no_team(trainers):
    X, y = _problem("softmax", 256, 64, 10, "float32")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        _model(ARCHS["digits"], "float32").fit(X, y, epochs=2, batch_size=32)
    assert trainers[-1].threads.team_speed == np.inf


# the choice of threads as a state machine, on made-up timings

def _stretch(choice, team, speeds, wait):
    threads = choice.plan(team)
    choice.observe(threads, speeds[threads > 1], wait if threads > 1 else 0.0)
    return threads


def test_the_team_runs_while_it_does_not_wait():
    choice = _kernels.ThreadChoice()
    assert [_stretch(choice, 2, (2e-6, 1e-6), 0.1) for _ in range(20)] == [2] * 20
    assert choice.alone_speed == np.inf  # one thread was never timed


def test_a_waiting_team_gives_way_to_one_thread_and_is_retried_ever_less_often():
    choice = _kernels.ThreadChoice()
    assert _stretch(choice, 2, (2e-6, 1e-6), 0.1) == 2
    # the machine gets busy: the team's threads wait at the barriers, each step takes 5x
    runs = [_stretch(choice, 2, (2e-6, 5e-6), 0.8) for _ in range(40)]
    # the waiting stretch, then one thread timed (probing) and kept; the team retried
    # after 1, 2, 4, 8, 16 stretches of one thread, losing every time
    assert runs[:3] == [2, 1, 1]
    team_runs = [i for i, t in enumerate(runs) if t == 2]
    assert team_runs == [0, 3, 6, 11, 20, 37]
    assert choice.alone and choice.gap == 32
    # the machine is quiet again: the next retry wins and the team stays
    while _stretch(choice, 2, (2e-6, 1e-6), 0.05) == 1:
        pass
    assert not choice.alone and choice.gap == 1
    assert [_stretch(choice, 2, (2e-6, 1e-6), 0.05) for _ in range(10)] == [2] * 10


def test_a_team_that_waits_but_is_still_faster_stays():
    # an uneven split (not a busy machine): the team waits, but one thread is slower; it is
    # timed again after 2, 4, 8, 16 stretches, and the team runs the rest
    choice = _kernels.ThreadChoice()
    runs = [_stretch(choice, 2, (2e-6, 1.2e-6), 0.4) for _ in range(40)]
    assert [i for i, t in enumerate(runs) if t == 1] == [1, 4, 9, 18, 35]
    assert not choice.alone and choice.alone_speed == 2e-6


def test_without_a_team_one_thread_runs():
    choice = _kernels.ThreadChoice()
    assert [_stretch(choice, 1, (2e-6, 1e-6), 0.0) for _ in range(5)] == [1] * 5
    assert not choice.alone and not choice.probing
