"""Loss and its gradient in one call (eq. 16-20), reduction="mean", one group per shape and dtype.

* softmax + categorical cross-entropy (eq. 18): ``cross_entropy(Z, y, return_grad=True)``
  on (N, K) logits, from the notes' 3 classes to 1000;
* sigmoid + binary cross-entropy on the logit (eq. 17), N logits;
* identity + squared error (eq. 20), (N, d) predictions.

Contenders: ``fastnn`` (``fastnn.F``), ``reference`` (``fastnn.reference``, the NumPy
formulas) and ``torch`` where installed: the loss's forward plus ``torch.autograd.grad``
(what a PyTorch training step pays for the same loss and gradient), at the same dtype.
"""

import numpy as np
import pytest

import fastnn.functional as F
from fastnn import reference

CONTENDERS = ["fastnn", "reference", "torch"]


def _label(workload, shape, dtype):
    dims = " ".join(f"{k}={v}" for k, v in shape.items())
    return f"{workload} {dims} {np.dtype(dtype).name}"


def _torch_loss_and_grad(peer, loss_fn, Z, *targets):
    """A callable computing ``loss_fn(Zt, *targets)`` and d loss / d Zt with torch autograd."""
    torch = peer("torch")
    Zt = torch.from_numpy(np.array(Z)).requires_grad_(True)
    tt = [torch.from_numpy(np.array(t)) for t in targets]

    def run():
        loss = loss_fn(torch, Zt, *tt)
        (dZ,) = torch.autograd.grad(loss, Zt)
        return loss.detach(), dZ

    return run


def _check(result, shape):
    loss, dZ = result
    assert np.ndim(loss) == 0
    assert tuple(dZ.shape) == tuple(shape)


@pytest.mark.parametrize("impl", CONTENDERS)
def test_cross_entropy(benchmark, impl, ce_shape, dtype, logits_data, peer):
    Z, y = logits_data["Z"], logits_data["y"]
    if impl == "fastnn":
        run = lambda: F.cross_entropy(Z, y, return_grad=True)  # noqa: E731
    elif impl == "reference":
        run = lambda: reference.cross_entropy(Z, y, return_grad=True)  # noqa: E731
    else:
        run = _torch_loss_and_grad(
            peer, lambda torch, Zt, yt: torch.nn.functional.cross_entropy(Zt, yt),
            Z, y.astype(np.int64))
    N, K = ce_shape
    benchmark.group = _label("cross_entropy", {"N": N, "K": K}, dtype)
    benchmark.extra_info.update(workload="cross_entropy", impl=impl, shape=ce_shape)
    result = benchmark(run)
    _check(result, (N, K))
    if impl == "fastnn":
        ref_loss, ref_dZ = reference.cross_entropy(Z, y, return_grad=True)
        np.testing.assert_allclose(result[0], ref_loss, rtol=1e-4)
        np.testing.assert_allclose(result[1], ref_dZ, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("impl", CONTENDERS)
def test_binary_cross_entropy(benchmark, impl, bce_size, dtype, binary_data, peer):
    z, y = binary_data["z"], binary_data["y"]
    if impl == "fastnn":
        run = lambda: F.binary_cross_entropy(z, y, return_grad=True)  # noqa: E731
    elif impl == "reference":
        run = lambda: reference.binary_cross_entropy(z, y, return_grad=True)  # noqa: E731
    else:
        run = _torch_loss_and_grad(
            peer,
            lambda torch, zt, yt: torch.nn.functional.binary_cross_entropy_with_logits(zt, yt),
            z, y.astype(z.dtype))
    benchmark.group = _label("binary_cross_entropy", {"N": bce_size}, dtype)
    benchmark.extra_info.update(workload="binary_cross_entropy", impl=impl, shape=bce_size)
    result = benchmark(run)
    _check(result, (bce_size,))


@pytest.mark.parametrize("impl", CONTENDERS)
def test_squared_error(benchmark, impl, se_shape, dtype, regression_data, peer):
    Z, Y = regression_data["Z"], regression_data["Y"]
    if impl == "fastnn":
        run = lambda: F.squared_error(Z, Y, return_grad=True)  # noqa: E731
    elif impl == "reference":
        run = lambda: reference.squared_error(Z, Y, return_grad=True)  # noqa: E731
    else:
        # eq. 20 summed over the d outputs, mean over the N samples (not torch's MSELoss,
        # which divides by N * d)
        run = _torch_loss_and_grad(
            peer, lambda torch, Zt, Yt: ((Zt - Yt) ** 2).sum(dim=1).mean(), Z, Y)
    N, d = se_shape
    benchmark.group = _label("squared_error", {"N": N, "d": d}, dtype)
    benchmark.extra_info.update(workload="squared_error", impl=impl, shape=se_shape)
    result = benchmark(run)
    _check(result, (N, d))
