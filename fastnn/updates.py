"""The optimizers' update rules and the learning-rate schedules, in NumPy.

The native training loop (fastnn/_train.pyx) applies the same rules in C; the functions here
are their reference, used by the "numpy" backend's training (fastnn.backprop), by the
optimizer objects of ``fastnn.optim`` and by the tests. This module imports no other part of
fastnn, so that every layer above can use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np

from ._typing import FloatArray, LayerState, OptState, Params

__all__ = ["OPTIMIZERS", "SCHEDULES", "apply", "learning_rate", "new_state", "state_problem",
           "update", "values_problem"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "invscaling", "cosine")


def new_state(params: Params, optimizer: str, momentum: float) -> OptState:
    """Zeroed optimizer state for ``params``.

    Parameters
    ----------
    params : list of (W, b or None)
        The model's parameters (``Sequential.parameters()``, the notes' theta of eq. 14).
    optimizer : {"sgd", "adam"}
    momentum : float
        SGD keeps a velocity only when ``momentum > 0``.

    Returns
    -------
    (first, second) : two lists with, per layer, a (W-state, b-state) pair or None
        SGD with momentum keeps a velocity (``first``), Adam the first and second moments;
        plain SGD (eq. 21) keeps nothing.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.updates import new_state
    >>> first, second = new_state([(np.ones((2, 3)), np.ones(2))], "sgd", momentum=0.9)
    >>> first[0][0].shape, first[0][1].shape, second
    ((2, 3), (2,), [None])
    """
    def zeros() -> list[LayerState]:
        return [(np.zeros_like(W), None if b is None else np.zeros_like(b)) for W, b in params]
    none: list[LayerState] = [None] * len(params)
    if optimizer == "adam":
        return zeros(), zeros()
    return (zeros() if momentum > 0 else none), none


def state_problem(state: object, params: Params, optimizer: str, momentum: float
                  ) -> str | None:
    """Why ``state`` cannot be the state of ``optimizer`` on ``params``, or None if it can.

    The state must be what ``new_state(params, optimizer, momentum)`` makes, with any values:
    per layer a (W-state, b-state) pair of arrays of W's and b's shapes and dtypes (b-state
    None exactly for a layer without bias) where the optimizer keeps state, None where it
    keeps none; finite values; Adam's second moments >= 0; no array shared with a weight or
    another state array. The native training loop trusts all of this, so every state that a
    fit continues (``warm_start``, a loaded file) is checked here first.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.updates import new_state, state_problem
    >>> params = [(np.ones((2, 3)), np.ones(2))]
    >>> state = new_state(params, "adam", 0.0)
    >>> state_problem(state, params, "adam", 0.0) is None
    True
    >>> state[1][0] = None
    >>> state_problem(state, params, "adam", 0.0)
    'adam keeps a second moment for layer 0, found None'
    """
    moments = ("first", "second")
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        return "the state must be a pair of lists (first and second moments)"
    names = (("velocity" if optimizer == "sgd" else "first moment"), "second moment")
    keeps = (optimizer == "adam" or momentum > 0, optimizer == "adam")
    seen: list[np.ndarray] = [A for W, b in params for A in (W, b) if A is not None]
    for k, states in enumerate(state):
        if not isinstance(states, (tuple, list)) or len(states) != len(params):
            return (f"the {moments[k]} moments must be a list of one entry per layer "
                    f"({len(params)}), got {type(states).__name__}"
                    + (f" of {len(states)}" if isinstance(states, (tuple, list)) else ""))
        for l, (s, (W, b)) in enumerate(zip(states, params)):
            if s is None:
                if keeps[k]:
                    return f"{optimizer} keeps a {names[k]} for layer {l}, found None"
                continue
            if not keeps[k]:
                return (f"{optimizer}" + (f" with momentum {momentum}" if optimizer == "sgd"
                                          else "") + f" keeps no {names[k]}, found one for "
                        f"layer {l}")
            if not isinstance(s, (tuple, list)) or len(s) != 2:
                return f"the {names[k]} of layer {l} must be a (W, b) pair of arrays"
            for part, A, P in (("W", s[0], W), ("b", s[1], b)):
                what = f"the {names[k]} of layer {l}'s {part}"
                if P is None:
                    if A is not None:
                        return f"{what} must be None (the layer has no bias)"
                    continue
                if not isinstance(A, np.ndarray) or A.shape != P.shape or A.dtype != P.dtype:
                    got = (f"{A.dtype} {A.shape}" if isinstance(A, np.ndarray)
                           else type(A).__name__)
                    return f"{what} must be a {P.dtype} array of shape {P.shape}, got {got}"
                bad = _bad_values(A, k == 1)
                if bad:
                    return f"{what} holds {bad}"
                if any(np.may_share_memory(A, B) for B in seen):
                    return f"{what} shares memory with a weight or another state array"
                seen.append(A)
    return None


def _bad_values(A: FloatArray, second: bool) -> str:
    """What is wrong with a state array's values ("" if nothing): every moment is finite,
    Adam's second moments (``second``) are >= 0."""
    if not np.isfinite(A).all():
        return "NaN or inf"
    return "negative values" if second and (A < 0).any() else ""


def values_problem(state: OptState,
                   all_finite: Callable[[list[FloatArray], list[bool]], bool]) -> str | None:
    """Why the values of ``state`` (of the layout ``state_problem`` accepts, C-contiguous
    arrays) cannot be continued, or None: ``state_problem``'s checks of the values alone, by
    ``all_finite(arrays, nonnegative)`` (a backend's ``all_finite_arrays``: one call)."""
    return None if all_finite(*state_values(state)) else _describe_bad_values(state)


def state_values(state: OptState) -> tuple[list[FloatArray], list[bool]]:
    """The arrays of ``state`` (of the layout ``state_problem`` accepts) and, for each,
    whether its values must be >= 0 (Adam's second moments)."""
    arrays, nonnegative = [], []
    for k, states in enumerate(state):
        for s in states:
            for A in s or ():
                if A is not None:
                    arrays.append(A)
                    nonnegative.append(k == 1)
    return arrays, nonnegative


def _describe_bad_values(state: OptState) -> str | None:
    """(values_problem found a bad array) which one, and what is wrong, in words."""
    for k, states in enumerate(state):
        for l, s in enumerate(states):
            for part, A in zip(("W", "b"), s or ()):
                bad = "" if A is None else _bad_values(A, k == 1)
                if bad:
                    return f"the {('first', 'second')[k]} moment of layer {l}'s {part} holds {bad}"
    return None


def update(P: FloatArray, G: FloatArray, M1: FloatArray | None, M2: FloatArray | None, *,
           optimizer: str, lr: float, momentum: float, nesterov: bool, beta1: float,
           beta2: float, eps: float, t: int, decay: float) -> None:
    """One step on the array P (in place) with gradient G; the NumPy reference of the native loop.

    SGD: P -= lr g (eq. 21); with momentum: v = mu v - lr g, P += v (Nesterov: P += mu v -
    lr g); Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, P -= lr_t m / (sqrt(v) +
    eps) with lr_t = lr sqrt(1 - b2^t) / (1 - b1^t). Here g = G + decay P (L2 penalty).

    Parameters
    ----------
    P, G : ndarray
        A parameter array (updated in place) and its gradient dL/dP.
    M1, M2 : ndarray or None
        Its optimizer state (``new_state``), updated in place: the velocity (SGD with
        momentum) or Adam's moments; None when the optimizer keeps none.
    optimizer : {"sgd", "adam"}
    lr, momentum, beta1, beta2, eps : float
    nesterov : bool
    t : int
        The step number, from 1 (Adam's bias correction).
    decay : float
        The weight decay for this array (0 for biases).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.updates import update
    >>> P = np.array([1.0, -1.0])
    >>> update(P, np.array([0.5, 0.5]), None, None, optimizer="sgd", lr=0.1, momentum=0.0,
    ...        nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8, t=1, decay=0.0)
    >>> P  # eq. 21: theta - alpha dL/dtheta
    array([ 0.95, -1.05])
    """
    dtype = P.dtype.type
    g = G + dtype(decay) * P
    if optimizer == "adam":
        # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  P -= lr_t m / (sqrt(v) + eps)
        b1, b2 = dtype(beta1), dtype(beta2)
        lr_t = dtype(lr * math.sqrt(1 - beta2**t) / (1 - beta1**t))
        assert M1 is not None and M2 is not None  # Adam keeps both moments
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


def apply(params: Params, grads: Sequence[tuple[FloatArray, FloatArray | None]],
          state: OptState, *, optimizer: str, lr: float, momentum: float, nesterov: bool,
          beta1: float, beta2: float, eps: float, t: int, weight_decay: float) -> None:
    """One step (``update``) on every layer's W and b in place: step ``t`` (from 1), the
    weight decay on the weights only, each array with its own state of ``new_state``."""
    for l, ((W, b), (dW, db)) in enumerate(zip(params, grads)):
        for k, (P, G) in enumerate(((W, dW), (b, db))):
            if P is None:
                continue
            M1, M2 = (None if s[l] is None else s[l][k] for s in state)  # type: ignore[index]
            update(P, cast(FloatArray, G), M1, M2, optimizer=optimizer, lr=lr,
                   momentum=momentum, nesterov=nesterov, beta1=beta1, beta2=beta2, eps=eps,
                   t=t, decay=weight_decay if k == 0 else 0.0)


def learning_rate(schedule: str | Callable[[int], float], lr: float, epoch: int, epochs: int,
                  power_t: float = 0.5) -> float:
    """The learning rate (alpha of eq. 21) of ``epoch`` under a schedule.

    Parameters
    ----------
    schedule : {"constant", "invscaling", "cosine"} or callable
        "constant": lr; "invscaling": lr / (epoch + 1)^power_t; "cosine":
        lr (1 + cos(pi epoch / epochs)) / 2; a callable: ``schedule(epoch)``, which must
        return a positive finite number.
    lr : float
        The initial learning rate.
    epoch, epochs : int
        The epoch (0-based) and the number of epochs.
    power_t : float, default 0.5

    Returns
    -------
    float

    Examples
    --------
    >>> from fastnn.updates import learning_rate
    >>> [learning_rate("cosine", 0.1, epoch, 4) for epoch in range(4)]  # doctest: +ELLIPSIS
    [0.1, 0.085..., 0.05..., 0.014...]
    """
    if callable(schedule):
        value = schedule(epoch)
        if not isinstance(value, numbers.Real) or not value > 0 or not math.isfinite(value):
            raise ValueError(f"lr_schedule({epoch}) must return a positive number, got {value!r}")
        return float(value)
    if schedule == "constant":
        return lr
    if schedule == "invscaling":
        return cast(float, lr / (epoch + 1) ** power_t)  # (int ** float is typed Any)
    return lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
