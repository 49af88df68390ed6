"""Fused forward of a layer, U = relu(X W^T + b) (eq. 10a), one group per shape and dtype.

Contenders:

* ``fastnn``: ``fastnn.F.linear(X, W, b, "relu")``, the validated public call;
* ``reference``: ``fastnn.reference.linear``, the NumPy formulas (product, bias, activation
  as three passes);
* ``matmul``: the bare ``X @ W.T`` (NumPy's BLAS), the floor for large layers: no bias, no
  activation, no validation;
* ``torch``: ``torch.nn.functional.linear`` + ``torch.relu`` under ``torch.no_grad``, at the
  same dtype, skipped when PyTorch is not installed.

Shapes (conftest.LAYER_SHAPES) go from the notes' tiny 2 -> 3 layer to 1024 -> 1024.
"""

import numpy as np
import pytest

import fastnn.functional as F
from fastnn import reference

CONTENDERS = ["fastnn", "reference", "matmul", "torch"]


def _label(layer_shape, dtype):
    N, n_in, n_out = layer_shape
    return f"forward N={N} {n_in}->{n_out} {np.dtype(dtype).name}"


def _forward(impl, d, peer):
    """A no-argument callable running contender ``impl`` on the arrays ``d``."""
    X, W, b = d["X"], d["W"], d["b"]
    if impl == "fastnn":
        return lambda: F.linear(X, W, b, "relu")
    if impl == "reference":
        return lambda: reference.linear(X, W, b, "relu")
    if impl == "matmul":
        return lambda: X @ W.T
    if impl == "torch":
        torch = peer("torch")
        tF = torch.nn.functional
        Xt, Wt, bt = (torch.from_numpy(np.array(a)) for a in (X, W, b))

        def run():
            with torch.no_grad():
                return torch.relu(tF.linear(Xt, Wt, bt))

        return run
    raise ValueError(impl)


@pytest.mark.parametrize("impl", CONTENDERS)
def test_linear_relu_forward(benchmark, impl, layer_shape, dtype, layer_data, peer):
    run = _forward(impl, layer_data, peer)
    benchmark.group = _label(layer_shape, dtype)
    benchmark.extra_info.update(workload="forward", impl=impl, shape=layer_shape)
    U = benchmark(run)
    N, _, n_out = layer_shape
    assert tuple(U.shape) == (N, n_out)
    if impl == "fastnn":
        assert U.dtype == np.dtype(dtype)
        np.testing.assert_allclose(U, layer_data["U"], rtol=1e-4, atol=1e-4)
