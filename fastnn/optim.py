"""Optimizers for a training loop of your own: objects bound to a model, holding their state.

``fit`` runs whole epochs; a loop of your own steps one batch at a time, in either of two
ways (both apply eq. 21 and its variants, as ``fit`` does):

* ``model.train_on_batch(X, y, opt)``: forward, loss, backward and update in one native call
  (the step ``fit`` takes, on the batch you pass), returning the batch's mean loss;
* ``opt.step(model.gradients(X, y))``: gradients you have (and may change, say clip), then
  the update in NumPy (``fastnn.updates``, the native loop's reference).

>>> import numpy as np
>>> import fastnn
>>> from fastnn.optim import SGD
>>> X = np.linspace(-1, 1, 32)[:, None]
>>> net = fastnn.MLP(1, (), 1, output="identity", dtype="float64", random_state=0)
>>> opt = SGD(net, lr=0.1, momentum=0.5)
>>> for epoch in range(100):
...     for rows in np.split(np.arange(32), 4):
...         loss = net.train_on_batch(X[rows], 2 * X[rows, 0], opt)
>>> round(float(net.layers[0].W[0, 0]), 4), opt.t
(2.0, 400)

The update rules, ``new_state`` and the schedules are those of ``fastnn.updates``
(re-exported here).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from . import _validation as _v
from ._typing import FloatArray, OptState, Params
from .updates import (
    OPTIMIZERS,
    SCHEDULES,
    apply,
    learning_rate,
    new_state,
    state_problem,
    update,
)

if TYPE_CHECKING:
    from .network import Sequential

__all__ = ["OPTIMIZERS", "SCHEDULES", "SGD", "Adam", "Optimizer", "learning_rate", "new_state",
           "state_problem", "update"]


class Optimizer:
    """An update rule bound to one model's parameters, with its state (see ``SGD``, ``Adam``).

    Attributes
    ----------
    model : Sequential
        The model whose arrays the steps update in place.
    lr : float
        The step size alpha of eq. 21; change it between steps for a schedule of your own
        (``fastnn.optim.learning_rate`` computes the built-in ones).
    weight_decay : float
        L2 penalty on the weights (not the biases): g += weight_decay W.
    t : int
        Steps taken (Adam's bias correction reads it).
    state : (list, list)
        Per layer the (W-state, b-state) of the first and second moments, as
        ``new_state`` makes them; updated in place by every step.
    """

    name: ClassVar[str]
    #: the hyperparameters besides lr and weight_decay, in the order of ``_checked``
    _fields: ClassVar[tuple[str, ...]]

    model: Sequential
    lr: float
    weight_decay: float
    t: int
    state: OptState
    _momentum: float
    _loop: Any  # train_on_batch's loop (fastnn.training._KeptLoop), or None
    _settings_of: tuple[tuple[Any, ...], dict[str, Any]] | None  # (_raw(), _settings())

    def __init__(self, model: Sequential, lr: float, weight_decay: float,
                 momentum: float = 0.0) -> None:
        if not callable(getattr(model, "_trainable_parameters", None)):
            raise TypeError(f"model must be a fastnn Sequential or MLP, got "
                            f"{type(model).__name__}")
        self.model = model
        self.lr = _v.real(lr, "lr", 0, low_open=True)
        self.weight_decay = _v.real(weight_decay, "weight_decay", 0)
        self._momentum = momentum
        self.t = 0
        self.state = new_state(model._trainable_parameters(), self.name, momentum)
        self._loop = self._settings_of = None

    @property
    def momentum(self) -> float:
        """SGD's momentum (0 for Adam); fixed at construction: it decides the state kept."""
        return self._momentum

    def hyperparameters(self) -> dict[str, Any]:
        """The rule's hyperparameters, validated (a ValueError names a bad one)."""
        values = self._checked()
        return {"lr": values[0], "weight_decay": values[1],
                **dict(zip(self._fields, values[2:]))}

    def _raw(self) -> tuple[Any, ...]:
        """(lr, weight_decay, *fields) as set, unchecked: the objects, compared by identity to
        see whether an attribute was set since the last step."""
        return (self.lr, self.weight_decay, *(getattr(self, k) for k in self._fields))

    def _checked(self) -> tuple[Any, ...]:
        """(lr, weight_decay, *fields), each checked: attributes may change between steps."""
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        """lr and the rule as ``fastnn.updates.apply`` and a TrainSpec take them, checked
        (the values a rule does not use at their defaults)."""
        lr, weight_decay, *rest = self._checked()
        return {"lr": lr, "optimizer": self.name, "momentum": 0.0, "nesterov": False,
                "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": weight_decay,
                **dict(zip(self._fields, rest))}

    # -- a step from gradients ------------------------------------------------------------

    def step(self, grads: Sequence[tuple[Any, Any]]) -> None:
        """One update of the model's parameters in place from ``grads``.

        Parameters
        ----------
        grads : list of (dW, db) per layer
            As ``model.gradients`` returns them: arrays of each layer's W and b shapes (db
            None for a layer without bias); converted to the model's dtype.
        """
        params = self._params()
        if not isinstance(grads, (list, tuple)) or len(grads) != len(params):
            raise ValueError(f"grads must be a list of one (dW, db) pair per layer "
                             f"({len(params)}), as model.gradients returns, got "
                             f"{type(grads).__name__}"
                             + (f" of {len(grads)}" if isinstance(grads, (list, tuple)) else ""))
        checked: list[tuple[FloatArray, FloatArray | None]] = []
        for l, (pair, (W, b)) in enumerate(zip(grads, params)):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"grads[{l}] must be a (dW, db) pair")
            dW = self._gradient(pair[0], W, f"grads[{l}][0] (dW)")
            db = None if b is None else self._gradient(pair[1], b, f"grads[{l}][1] (db)")
            if b is None and pair[1] is not None:
                raise ValueError(f"grads[{l}][1] (db) must be None: layer {l} has no bias")
            checked.append((dW, db))
        self.t += 1
        apply(params, checked, self.state, t=self.t, **self._settings())

    @staticmethod
    def _gradient(G: Any, P: FloatArray, name: str) -> FloatArray:
        (arr,), _ = _v.real_arrays((G, name))
        arr = _v.as_float(arr, name, P.dtype, (P.ndim,))
        _v.expect_shape(arr, name, P.shape, "(the parameter's shape)")
        return _v.finite(arr, name)

    def _params(self) -> Params:
        """The model's trainable arrays, checked against the state this optimizer holds (the
        architecture must not have changed since the optimizer was made)."""
        params = self.model._trainable_parameters()
        problem = state_problem(self.state, params, self.name, self._momentum)
        if problem is not None:
            raise ValueError(f"the optimizer's state no longer fits the model ({problem}): "
                             f"make a new {type(self).__name__} after changing the model")
        return params

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """A copy of the hyperparameters, the step count and the state: the layout of a
        model's ``optimizer_state_`` after ``fit``, plus "lr"."""
        return {**self._settings(), "t": self.t,
                "state": [[None if s is None else (s[0].copy(), None if s[1] is None
                                                    else s[1].copy()) for s in states]
                          for states in self.state]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from ``state_dict`` (``state_dict()``'s, or a model's
        ``optimizer_state_`` after ``fit`` with this optimizer): the values are copied into
        this optimizer's arrays; the hyperparameters it holds are taken too."""
        if not isinstance(state_dict, dict) or not {"optimizer", "t", "state"} <= set(state_dict):
            raise TypeError("state_dict must be a dict with 'optimizer', 't' and 'state' (from "
                            "state_dict() or a model's optimizer_state_)")
        if state_dict["optimizer"] != self.name:
            raise ValueError(f"state_dict is {state_dict['optimizer']!r}'s state, not "
                             f"{self.name!r}'s")
        if state_dict.get("momentum", 0.0) != self._momentum:
            raise ValueError(f"state_dict has momentum {state_dict.get('momentum')}, this "
                             f"optimizer {self._momentum} (fixed at construction)")
        t = state_dict["t"]
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral) or t < 0:
            raise ValueError(f"state_dict's step count t must be an integer >= 0, got {t!r}")
        params = self.model._trainable_parameters()
        problem = state_problem(state_dict["state"], params, self.name, self._momentum)
        if problem is not None:
            raise ValueError(f"state_dict's state does not fit the model: {problem}")
        previous = {k: getattr(self, k) for k in ("lr", "weight_decay", *self._fields)
                    if k != "momentum"}  # (fixed at construction, checked above)
        try:
            for k in previous:
                if k in state_dict:
                    setattr(self, k, state_dict[k])
            self._checked()
        except (TypeError, ValueError):
            for k, value in previous.items():
                setattr(self, k, value)
            raise
        for states, given in zip(self.state, state_dict["state"]):
            for s, g in zip(states, given):
                if s is not None:
                    s[0][...] = g[0]
                    if s[1] is not None:
                        s[1][...] = g[1]
        self.t = int(t)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_loop"] = state["_settings_of"] = None  # (native workspaces: rebuilt)
        return state

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({values}, t={self.t})"


class SGD(Optimizer):
    """Stochastic gradient descent: theta -= lr g (eq. 21); with momentum v = mu v - lr g,
    theta += v (Nesterov: theta += mu v - lr g).

    Parameters
    ----------
    model : Sequential
    lr : float, default 0.01
    momentum : float in [0, 1), default 0
    nesterov : bool, default False
    weight_decay : float, default 0
        L2 penalty on the weights: g += weight_decay W.

    Examples
    --------
    >>> import fastnn
    >>> from fastnn.optim import SGD
    >>> net = fastnn.MLP.from_weights([([[1.0, -1.0]], [0.0])], output="identity")
    >>> opt = SGD(net, lr=0.25)
    >>> opt.step(net.gradients([[1.0, 0.0]], [0.0]))  # dL/dw = 2 (y_hat - y) x = [2, 0]
    >>> net.layers[0].W, net.layers[0].b
    (array([[ 0.5, -1. ]]), array([-0.5]))
    """

    name = "sgd"
    _fields = ("momentum", "nesterov")

    nesterov: bool

    def __init__(self, model: Sequential, lr: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        momentum = _v.real(momentum, "momentum", 0, 1, high_open=True)
        self.nesterov = _v.flag(nesterov, "nesterov")
        super().__init__(model, lr, weight_decay, momentum)

    def _checked(self) -> tuple[Any, ...]:
        return (_v.real(self.lr, "lr", 0, low_open=True),
                _v.real(self.weight_decay, "weight_decay", 0), self._momentum,
                _v.flag(self.nesterov, "nesterov"))


class Adam(Optimizer):
    """Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, theta -= lr_t m / (sqrt(v) + eps)
    with lr_t = lr sqrt(1 - b2^t) / (1 - b1^t).

    Parameters
    ----------
    model : Sequential
    lr : float, default 0.001
    beta1, beta2 : float in [0, 1), default 0.9, 0.999
    eps : float > 0, default 1e-8
    weight_decay : float, default 0
        L2 penalty on the weights: g += weight_decay W.
    """

    name = "adam"
    _fields = ("beta1", "beta2", "eps")

    beta1: float
    beta2: float
    eps: float

    def __init__(self, model: Sequential, lr: float = 0.001, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.beta1 = _v.real(beta1, "beta1", 0, 1, high_open=True)
        self.beta2 = _v.real(beta2, "beta2", 0, 1, high_open=True)
        self.eps = _v.real(eps, "eps", 0, low_open=True)
        super().__init__(model, lr, weight_decay)

    def _checked(self) -> tuple[Any, ...]:
        return (_v.real(self.lr, "lr", 0, low_open=True),
                _v.real(self.weight_decay, "weight_decay", 0),
                _v.real(self.beta1, "beta1", 0, 1, high_open=True),
                _v.real(self.beta2, "beta2", 0, 1, high_open=True),
                _v.real(self.eps, "eps", 0, low_open=True))
