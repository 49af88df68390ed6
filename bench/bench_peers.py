"""fastnn against its peers: one group per workload and shape, on a subset of the grid of
``python -m fastnn bench`` (``fastnn.benchmark``, which builds every case used here).

Contenders, where the workload has them: ``fastnn`` (the public API), ``reference`` (the
NumPy reference, or the "numpy" backend for models), ``torch`` (PyTorch CPU, eager,
float32: ``no_grad`` for forward and inference, autograd and ``optim.SGD`` for the rest) and
``sklearn`` (``MLPClassifier``: ``partial_fit`` on one batch, ``fit``, ``predict_proba``).
A peer that is not installed is skipped, not failed. Every case checks, before it is timed,
that each contender's answer agrees with fastnn's (the same weights after one train step,
the same probabilities, ...).

The train step has two fastnn contenders: ``fit1`` is one ``fit(X, y, epochs=1,
batch_size=N)`` call (one step, with the per-fit set-up), and ``fastnn_k_steps`` is one
``fit`` over k copies of the batch: **k steps per call** (k, calibrated so that the per-fit
set-up is a small share, is ``steps_per_call`` in ``extra_info``); divide by k for the
per-step time that ``python -m fastnn bench`` reports. ``reference_k_steps`` likewise.

Read the tables as ratios within a group; ``python -m fastnn bench`` measures the contenders
interleaved in one process and prints the ratios the speed goals are judged on.
"""

import functools

import pytest

from fastnn import benchmark as B

FORWARD = [(4, 2, 3), (128, 784, 128), (1024, 1024, 1024)]
LOSS = [(4, 2, 3), (1024, 1024, 1024)]
BACKWARD = [(4, 2, 3), (128, 784, 128)]
TRAIN = [(4, 2, 3), (128, 784, 128), B.TRAIN_EXTRA]
INFERENCE = [1, 32]


def _id(shape):
    return "x".join(str(s) for s in shape)


@functools.lru_cache(maxsize=None)
def _inference_net():
    return B.trained_inference_net()


@functools.lru_cache(maxsize=None)
def _case(workload, shape):
    """The case, built once per session and checked before its first timing."""
    if workload == "forward":
        case = B.forward_case(*shape)
    elif workload == "loss":
        case = B.loss_case(*shape)
    elif workload == "backward":
        case = B.backward_case(*shape)
    elif workload == "train":
        case = B.train_case(*shape)
    elif workload == "fit":
        case = B.fit_case()
    else:
        case = B.inference_case(shape, _inference_net())
    case.check()
    return case


def _run(benchmark, workload, shape, impl):
    case = _case(workload, shape)
    if impl not in case.contenders:
        pytest.skip(f"{impl}: {case.missing.get(impl, 'not a contender of ' + workload)}")
    benchmark.group = f"peers {workload} {case.label}"
    steps = case.steps.get(impl, 1)
    benchmark.extra_info.update(workload=workload, impl=impl, shape=list(case.shape),
                                steps_per_call=steps)
    benchmark(case.contenders[impl])
    if case.post is not None:
        case.post()  # e.g. the digits fits' test accuracies


@pytest.mark.parametrize("impl", ["fastnn", "reference", "torch"])
@pytest.mark.parametrize("shape", FORWARD, ids=_id)
def test_forward(benchmark, shape, impl):
    _run(benchmark, "forward", shape, impl)


@pytest.mark.parametrize("impl", ["fastnn", "reference", "torch"])
@pytest.mark.parametrize("shape", LOSS, ids=_id)
def test_cross_entropy(benchmark, shape, impl):
    _run(benchmark, "loss", shape, impl)


@pytest.mark.parametrize("impl", ["fastnn", "reference", "torch"])
@pytest.mark.parametrize("shape", BACKWARD, ids=_id)
def test_backward(benchmark, shape, impl):
    _run(benchmark, "backward", shape, impl)


def _train_ids(shape):
    N, n_in, n_h = shape
    return f"N{N}_{n_in}-{n_h}-10"


@pytest.mark.parametrize("impl", ["fastnn", "fit(1 step)", "reference", "torch", "sklearn"],
                         ids=["fastnn_k_steps", "fit1", "reference_k_steps", "torch", "sklearn"])
@pytest.mark.parametrize("shape", TRAIN, ids=_train_ids)
def test_train_step(benchmark, shape, impl):
    _run(benchmark, "train", (*shape, B.N_CLASSES), impl)


@pytest.mark.parametrize("impl", ["fastnn", "reference", "torch", "sklearn"])
def test_digits_fit(benchmark, impl):
    _run(benchmark, "fit", ("digits", 64, 128, 10), impl)


@pytest.mark.parametrize("impl", ["fastnn", "reference", "torch", "sklearn"])
@pytest.mark.parametrize("batch", INFERENCE, ids=lambda b: f"batch{b}")
def test_inference(benchmark, batch, impl):
    _run(benchmark, "inference", batch, impl)
