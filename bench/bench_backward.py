"""Backward of a relu layer (eq. 13 and the chain rule), one group per shape and dtype.

Given dU = dL/dU and the forward's X, W, U: dZ = dU * [U > 0], dW = dZ^T X,
db = sum_i dZ_i, dX = dZ W.

Contenders:

* ``fastnn``: ``fastnn.F.linear_backward(dU, X, W, U, "relu")``;
* ``reference``: ``fastnn.reference.linear_backward``, the same formulas in NumPy;
* ``torch``: the same four expressions on tensors under ``torch.no_grad`` (what autograd
  runs for linear + relu, without re-running the forward), at the same dtype, skipped when
  PyTorch is not installed.

Same shape grid as bench_forward.py.
"""

import numpy as np
import pytest

import fastnn.functional as F
from fastnn import reference

CONTENDERS = ["fastnn", "reference", "torch"]


def _label(layer_shape, dtype):
    N, n_in, n_out = layer_shape
    return f"backward N={N} {n_in}->{n_out} {np.dtype(dtype).name}"


def _backward(impl, d, peer):
    dU, X, W, U = d["dU"], d["X"], d["W"], d["U"]
    if impl == "fastnn":
        return lambda: F.linear_backward(dU, X, W, U, "relu")
    if impl == "reference":
        return lambda: reference.linear_backward(dU, X, W, U, "relu")
    if impl == "torch":
        torch = peer("torch")
        dUt, Xt, Wt, Ut = (torch.from_numpy(np.array(a)) for a in (dU, X, W, U))

        def run():
            with torch.no_grad():
                dZ = dUt * (Ut > 0)
                return dZ @ Wt, dZ.T @ Xt, dZ.sum(dim=0)

        return run
    raise ValueError(impl)


@pytest.mark.parametrize("impl", CONTENDERS)
def test_linear_relu_backward(benchmark, impl, layer_shape, dtype, layer_data, peer):
    run = _backward(impl, layer_data, peer)
    benchmark.group = _label(layer_shape, dtype)
    benchmark.extra_info.update(workload="backward", impl=impl, shape=layer_shape)
    dX, dW, db = benchmark(run)
    N, n_in, n_out = layer_shape
    assert tuple(dX.shape) == (N, n_in)
    assert tuple(dW.shape) == (n_out, n_in)
    assert tuple(db.shape) == (n_out,)
    if impl == "fastnn":
        d = layer_data
        expected = reference.linear_backward(d["dU"], d["X"], d["W"], d["U"], "relu")
        for got, want in zip((dX, dW, db), expected):
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
