"""The contender "jax": JAX on the CPU, every call a jitted function, float32.

Imports only NumPy and JAX. The strongest JAX form of each workload: the kernels jitted
(the backward as the expressions autograd would run, dZ = dU [U > 0], dX = dZ W,
dW = dZ^T X, db = sum dZ); k train steps as one jitted ``lax.scan`` over the k batches with
the parameters donated; the digits fit as one jitted function per epoch (the shuffle
``jax.random.permutation``, the full batches a ``lax.scan``, the last short batch one more
step), called 30 times; inference jitted. Every function is compiled at set-up (its first
call), which is not timed; each timed call waits for its result (``block_until_ready``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


def describe() -> dict[str, Any]:
    import jax

    return {"library": "JAX", "version": jax.__version__,
            "devices": [str(d) for d in jax.devices()]}


def _params(arrays: Arrays) -> list[tuple[Any, Any]]:
    import jax.numpy as jnp

    n = sum(1 for name in arrays if name.startswith("W") and name[1:].isdigit())
    return [(jnp.array(arrays[f"W{i}"]), jnp.array(arrays[f"b{i}"])) for i in range(n)]


def _logits(params: list[tuple[Any, Any]], X: Any) -> Any:
    import jax

    for W, b in params[:-1]:
        X = jax.nn.relu(X @ W.T + b)  # eq. 10
    W, b = params[-1]
    return X @ W.T + b


def _cross_entropy(Z: Any, y: Any) -> Any:
    """Mean softmax cross-entropy (eq. 18) from logits."""
    import jax
    import jax.numpy as jnp

    picked = jnp.take_along_axis(Z, y[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(Z, axis=1) - picked)


def _loss(params: list[tuple[Any, Any]], X: Any, y: Any) -> Any:
    return _cross_entropy(_logits(params, X), y)


def _sgd_step(lr: float, momentum: float) -> Callable[..., Any]:
    """state, (X, y) -> state after one SGD step (eq. 21: P -= lr g); with momentum the
    state is (params, velocity) and the step PyTorch's: v = mu v + g, P -= lr v."""
    import jax

    def plain(params: Any, batch: Any) -> Any:
        grads = jax.grad(_loss)(params, *batch)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads), None

    def with_momentum(state: Any, batch: Any) -> Any:
        params, velocity = state
        grads = jax.grad(_loss)(params, *batch)
        velocity = jax.tree.map(lambda v, g: momentum * v + g, velocity, grads)
        return (jax.tree.map(lambda p, v: p - lr * v, params, velocity), velocity), None

    return with_momentum if momentum else plain


def jitted(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """A no-argument call of ``jax.jit(fn)`` on ``args`` that waits for the result,
    compiled here by a first call."""
    import jax

    compiled = jax.jit(fn)

    def call() -> Any:
        return jax.block_until_ready(compiled(*args))

    call()
    return call


class Steps:
    """k SGD steps a call: one jitted ``lax.scan`` over the k batches; the parameters
    keep training from call to call; outputs: the weights after one call."""

    def __init__(self, arrays: Arrays, params: dict[str, Any]) -> None:
        import jax
        import jax.numpy as jnp

        k, size = params["steps"], params["batch_size"]
        self.X = jnp.array(arrays["X"]).reshape(k, size, -1)
        self.y = jnp.array(arrays["y"].astype(np.int32)).reshape(k, size)
        step = _sgd_step(params["lr"], 0.0)
        self.steps = jax.jit(lambda state, X, y: jax.lax.scan(step, state, (X, y))[0],
                             donate_argnums=0)
        self.state = _params(arrays)
        self.run()  # compile
        self.state = _params(arrays)

    def run(self) -> None:
        import jax

        self.state = jax.block_until_ready(self.steps(self.state, self.X, self.y))

    def outputs(self) -> Arrays:
        self.run()
        out = {}
        for i, (W, b) in enumerate(self.state):
            out[f"W{i}"], out[f"b{i}"] = np.asarray(W), np.asarray(b)
        return out


class DigitsFit:
    """30 calls of a jitted epoch: a shuffle, a ``lax.scan`` of steps over the full
    batches, one step on the last short batch; SGD with momentum from the initial weights;
    outputs: test predictions."""

    def __init__(self, arrays: Arrays, params: dict[str, Any]) -> None:
        import jax
        import jax.numpy as jnp

        self.arrays = arrays
        self.epochs = params["epochs"]
        X, y = jnp.array(arrays["X"]), jnp.array(arrays["y"].astype(np.int32))
        n, size = X.shape[0], params["batch_size"]
        full = n // size * size
        step = _sgd_step(params["lr"], params["momentum"])

        def epoch(state: Any, key: Any) -> Any:
            perm = jax.random.permutation(key, n)
            Xp, yp = X[perm], y[perm]
            batches = (Xp[:full].reshape(full // size, size, -1),
                       yp[:full].reshape(full // size, size))
            state = jax.lax.scan(step, state, batches)[0]
            if full < n:
                state = step(state, (Xp[full:], yp[full:]))[0]
            return state

        self.epoch = jax.jit(epoch, donate_argnums=0)
        self.keys = list(jax.random.split(jax.random.PRNGKey(0), self.epochs))
        self.run()  # compile

    def run(self) -> Any:
        import jax
        import jax.numpy as jnp

        initial = _params(self.arrays)
        state = (initial, jax.tree.map(jnp.zeros_like, initial))
        for key in self.keys:
            state = self.epoch(state, key)
        return jax.block_until_ready(state[0])

    def outputs(self) -> Arrays:
        params = self.run()
        return {"pred": np.asarray(_logits(params, self.arrays["X_test"]).argmax(axis=1))}


def setup(name: str, workload: str, params: dict[str, Any], arrays: Arrays,
          folder: str) -> Any:
    import jax
    import jax.numpy as jnp

    a = {k: jnp.array(v) for k, v in arrays.items() if k in ("X", "W", "b", "Z", "U", "dU")}
    if workload == "peak":
        return jitted(lambda X, W: X @ W.T, a["X"], a["W"]), ("U",)
    if workload == "forward":
        return jitted(lambda X, W, b: jax.nn.relu(X @ W.T + b), a["X"], a["W"], a["b"]), ("U",)
    if workload == "loss":
        y = jnp.array(arrays["y"].astype(np.int32))
        return jitted(jax.value_and_grad(_cross_entropy), a["Z"], y), ("loss", "dZ")
    if workload == "backward":
        def backward(dU: Any, X: Any, W: Any, U: Any) -> Any:
            dZ = dU * (U > 0)  # eq. 13 for relu
            return dZ @ W, dZ.T @ X, dZ.sum(axis=0)

        return jitted(backward, a["dU"], a["X"], a["W"], a["U"]), ("dX", "dW", "db")
    if workload == "train":
        return Steps(arrays, params)
    if workload == "digits":
        return DigitsFit(arrays, params)
    if workload == "inference":
        net = _params(arrays)
        return jitted(lambda X: jax.nn.softmax(_logits(net, X), axis=1), a["X"]), ("P",)
    return None
