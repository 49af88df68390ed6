"""Optimizers and learning-rate schedules for ``fit``.

The native training loop (``_kernels.Trainer``) applies the same update rules in C; the
functions here are their NumPy reference, used by the "numpy" backend's fit and by tests.
"""

import math
import numbers

import numpy as np

__all__ = ["OPTIMIZERS", "SCHEDULES", "learning_rate", "new_state", "update"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "invscaling", "cosine")


def new_state(params, optimizer, momentum):
    """Zeroed optimizer state for ``params`` = [(W, b or None), ...]: two lists with, per
    layer, a (W-state, b-state) pair or None. SGD with momentum keeps a velocity (first list),
    Adam the first and second moments."""
    def zeros():
        return [(np.zeros_like(W), None if b is None else np.zeros_like(b)) for W, b in params]
    none = [None] * len(params)
    if optimizer == "adam":
        return zeros(), zeros()
    return (zeros() if momentum > 0 else none), none


def update(P, G, M1, M2, *, optimizer, lr, momentum, nesterov, beta1, beta2, eps, t, decay):
    """One step on the array P (in place) with gradient G; t is the step number (from 1)."""
    dtype = P.dtype.type
    g = G + dtype(decay) * P
    if optimizer == "adam":
        # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  P -= lr_t m / (sqrt(v) + eps)
        b1, b2 = dtype(beta1), dtype(beta2)
        lr_t = dtype(lr * math.sqrt(1 - beta2**t) / (1 - beta1**t))
        M1 *= b1
        M1 += (1 - b1) * g
        M2 *= b2
        M2 += (1 - b2) * g * g
        P -= lr_t * M1 / (np.sqrt(M2) + dtype(eps))
    elif M1 is not None:
        # v = mu v - lr g;  P += v  (Nesterov: P += mu v - lr g)
        mu, lr_ = dtype(momentum), dtype(lr)
        M1 *= mu
        M1 -= lr_ * g
        P += (mu * M1 - lr_ * g) if nesterov else M1
    else:
        P -= dtype(lr) * g  # eq. 21


def learning_rate(schedule, lr, epoch, epochs, power_t=0.5):
    """The learning rate of ``epoch`` (0-based): "constant"; "invscaling" lr / (epoch + 1)^power_t;
    "cosine" lr (1 + cos(pi epoch / epochs)) / 2; or a callable ``schedule(epoch) -> lr``."""
    if callable(schedule):
        value = schedule(epoch)
        if not isinstance(value, numbers.Real) or not value > 0 or not math.isfinite(value):
            raise ValueError(f"lr_schedule({epoch}) must return a positive number, got {value!r}")
        return float(value)
    if schedule == "constant":
        return lr
    if schedule == "invscaling":
        return lr / (epoch + 1) ** power_t
    return lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
