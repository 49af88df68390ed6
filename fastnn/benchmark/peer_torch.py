"""The contender "torch": PyTorch on the CPU in eager mode, float32, its default threads.

Imports only NumPy and PyTorch. ``torch.no_grad()`` for the forward, the GEMM peak and
inference; autograd for the loss and the backward (``torch.autograd.grad``); for training,
``nn.Sequential`` + ``cross_entropy`` + ``backward()`` + ``torch.optim.SGD`` in a Python
loop, as a PyTorch user writes it. Every model starts from the case's initial weights
(``nn.Linear`` stores W as (out, in), fastnn's layout).

The contender "torch+fastnn" (the guest case) is this module in a worker that imported
fastnn and ran a fit first (``worker.py --preload-fastnn``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


def describe() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"library": "PyTorch", "version": torch.__version__,
                             "threads": torch.get_num_threads(),
                             "mkl": torch.backends.mkl.is_available()}
    try:
        facts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # pragma: no cover - older PyTorch
        pass
    return facts


def _tensor(a: np.ndarray) -> Any:
    import torch

    return torch.tensor(np.array(a))  # a copy: the case's arrays are read-only


def _net(arrays: Arrays) -> Any:
    """nn.Sequential(Linear, ReLU, ..., Linear) with the case's initial weights."""
    import torch

    n = sum(1 for name in arrays if name.startswith("W") and name[1:].isdigit())
    modules: list[Any] = []
    for i in range(n):
        W, b = arrays[f"W{i}"], arrays[f"b{i}"]
        lin = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(_tensor(W))
            lin.bias.copy_(_tensor(b))
        modules += [lin, torch.nn.ReLU()] if i < n - 1 else [lin]
    return torch.nn.Sequential(*modules)


def _weights(net: Any) -> Arrays:
    layers = [m for m in net if hasattr(m, "weight")]
    out = {}
    for i, m in enumerate(layers):
        out[f"W{i}"] = m.weight.detach().numpy().copy()
        out[f"b{i}"] = m.bias.detach().numpy().copy()
    return out


class Steps:
    """SGD steps over a list of batches, on a model that keeps training from call to
    call; outputs: the weights after one call."""

    def __init__(self, arrays: Arrays, batches: list[tuple[Any, Any]], lr: float,
                 momentum: float = 0.0) -> None:
        import torch

        self.net = _net(arrays)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr, momentum=momentum)
        self.batches = batches
        self.cross_entropy = torch.nn.functional.cross_entropy

    def run(self) -> None:
        net, opt, ce = self.net, self.opt, self.cross_entropy
        for X, y in self.batches:
            opt.zero_grad()
            ce(net(X), y).backward()
            opt.step()

    def outputs(self) -> Arrays:
        self.run()
        return _weights(self.net)


def _batches(arrays: Arrays, size: int, count: int) -> list[tuple[Any, Any]]:
    """``count`` batches of ``size`` rows, in order, wrapping around the rows."""
    import torch

    X, y = _tensor(arrays["X"]), torch.tensor(arrays["y"].astype(np.int64))
    n = len(X)
    starts = [(i * size) % n for i in range(count)]
    return [(X[s:s + size], y[s:s + size]) for s in starts]


class DigitsFit:
    """30 epochs of shuffled mini-batches (``torch.randperm``, seeded), SGD with momentum,
    from the initial weights; outputs: test predictions."""

    def __init__(self, arrays: Arrays, params: dict[str, Any]) -> None:
        import torch

        self.arrays = arrays
        self.params = params
        self.X = _tensor(arrays["X"])
        self.y = torch.tensor(arrays["y"].astype(np.int64))

    def run(self) -> Any:
        import torch

        p = self.params
        net = _net(self.arrays)
        opt = torch.optim.SGD(net.parameters(), lr=p["lr"], momentum=p["momentum"])
        ce = torch.nn.functional.cross_entropy
        gen = torch.Generator().manual_seed(0)
        n, batch = len(self.X), p["batch_size"]
        for _ in range(p["epochs"]):
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, batch):
                idx = perm[s:s + batch]
                opt.zero_grad()
                ce(net(self.X[idx]), self.y[idx]).backward()
                opt.step()
        return net

    def outputs(self) -> Arrays:
        import torch

        net = self.run()
        with torch.no_grad():
            return {"pred": net(_tensor(self.arrays["X_test"])).argmax(dim=1).numpy()}


def setup(name: str, workload: str, params: dict[str, Any], arrays: Arrays,
          folder: str) -> Any:
    import torch

    tF = torch.nn.functional
    if workload == "peak":
        X, W = _tensor(arrays["X"]), _tensor(arrays["W"])

        def product() -> Any:
            with torch.no_grad():
                return X @ W.T

        return (product, ("U",))
    if workload == "forward":
        X, W, b = (_tensor(arrays[k]) for k in ("X", "W", "b"))

        def forward() -> Any:
            with torch.no_grad():
                return torch.relu(tF.linear(X, W, b))

        return (forward, ("U",))
    if workload == "loss":
        Z = _tensor(arrays["Z"]).requires_grad_(True)
        y = torch.tensor(arrays["y"].astype(np.int64))

        def loss_and_grad() -> Any:
            loss = tF.cross_entropy(Z, y)
            (dZ,) = torch.autograd.grad(loss, Z)
            return loss.detach(), dZ

        return (loss_and_grad, ("loss", "dZ"))
    if workload == "backward":
        X, W, b = (_tensor(arrays[k]).requires_grad_(True) for k in ("X", "W", "b"))
        U = torch.relu(tF.linear(X, W, b))  # the graph, built once
        dU = _tensor(arrays["dU"])
        return (lambda: torch.autograd.grad(U, (X, W, b), dU, retain_graph=True),
                ("dX", "dW", "db"))
    if workload == "train":
        size = params["batch_size"]
        return Steps(arrays, _batches(arrays, size, params["steps"]), params["lr"])
    if workload == "guest":
        return Steps(arrays, _batches(arrays, params["batch_size"], params["steps"]),
                     params["lr"], params["momentum"])
    if workload == "digits":
        return DigitsFit(arrays, params)
    if workload == "inference":
        net = _net(arrays).eval()
        X = _tensor(arrays["X"])

        def predict_proba() -> Any:
            with torch.no_grad():
                return torch.softmax(net(X), dim=1)

        return (predict_proba, ("P",))
    return None
