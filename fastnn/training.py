"""``fit``: mini-batch training of a ``Sequential`` (eq. 21 and its variants).

The epochs run on the backend (``fastnn.backends``, ``Ops.epochs``): on the "cython" backend
each epoch runs in native code (gather, forward, loss, backward, update, with workspaces
allocated once per fit); on the "numpy" backend the same steps run batch by batch in Python
on ``fastnn.reference`` (fastnn.backprop), which is what the native loop is measured against.
This module keeps what lies around the epochs: the arguments, the optimizer state a warm
start continues, the schedule, validation, early stopping, divergence and callbacks.
"""

from __future__ import annotations

import math
import numbers
import operator
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as _v
from ._progress import EpochBar, epoch_line, verbosity
from ._typing import FloatArray, Inputs, LayerState, OptState, Params, SeedLike
from .backends import TrainSpec, ops
from .layers import check_count, writable
from .optim import Optimizer
from .threads import one_blas_thread
from .updates import (
    OPTIMIZERS,
    SCHEDULES,
    learning_rate,
    new_state,
    state_problem,
    state_values,
    values_problem,
)

__all__ = ["History", "fit", "train_on_batch"]

if TYPE_CHECKING:
    from .network import Sequential

#: a copy of the parameters and of the optimizer state (``_copy``), to restore after a failure
_Saved = tuple[Params, list[list[LayerState]]]


class History:
    """What a fit did, one entry per epoch (``fit`` returns it and keeps it as ``history_``).

    Parameters
    ----------
    metric : {"accuracy", "r2"}
        The validation metric: accuracy of the hard decisions (eq. 4 / eq. 6) for
        classifiers, R^2 for regression.

    Attributes
    ----------
    loss : list of float
        The mean training loss of each epoch (L / N of eq. 16, sample-weighted).
    val_loss, val_metric : list of float
        The mean validation loss and metric after each epoch; empty without validation data.
    lr, seconds : list of float
        The learning rate (alpha of eq. 21) and the time of each epoch.
    best_epoch : int or None
        With early stopping, the epoch (0-based) whose weights the model kept.
    stopped_early : bool
        Whether early stopping ended the fit.
    epochs : int
        The number of epochs run.

    Examples
    --------
    >>> from fastnn import History
    >>> h = History("accuracy")
    >>> h.loss.extend([0.9, 0.5]); h
    History(2 epochs, last loss 0.5)
    """

    metric: str
    loss: list[float]
    val_loss: list[float]
    val_metric: list[float]
    lr: list[float]
    seconds: list[float]
    best_epoch: int | None
    stopped_early: bool

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.loss, self.val_loss, self.val_metric, self.lr, self.seconds = [], [], [], [], []
        self.best_epoch = None
        self.stopped_early = False

    @property
    def epochs(self) -> int:
        """The number of epochs run (the length of ``loss``)."""
        return len(self.loss)

    def _drop_last(self) -> None:
        """Forget the last epoch (fit stepped back over it after a divergence)."""
        n = self.epochs
        for values in (self.loss, self.lr, self.seconds, self.val_loss, self.val_metric):
            if len(values) == n:
                values.pop()
        if self.best_epoch is not None and self.best_epoch >= n - 1:
            self.best_epoch = None

    def __repr__(self) -> str:
        last = f", last loss {self.loss[-1]:.6g}" if self.loss else ""
        return f"History({self.epochs} epoch{'' if self.epochs == 1 else 's'}{last})"


def _sample_weight(sample_weight: ArrayLike | None, N: int) -> NDArray[np.float64] | None:
    if sample_weight is None:
        return None
    (sw,), _ = _v.real_arrays((sample_weight, "sample_weight"))
    sw = _v.as_float(sw, "sample_weight", np.float64, (1,))
    _v.expect_shape(sw, "sample_weight", (N,), "(one weight per sample)")
    if not np.isfinite(sw).all() or (sw < 0).any():
        raise ValueError("sample_weight must be finite and >= 0")
    return sw.astype(np.float64, copy=False)  # (already float64: typed as such)


def _metric(model: Sequential, X: Inputs, Y: NDArray[Any]) -> float:
    """Accuracy (eq. 4 / eq. 6 decisions) for classifiers, R^2 for regression."""
    Z = model._logits(X)
    targets = model.loss_spec.targets
    if targets == "classes":
        return float((Z.argmax(axis=1) == Y).mean())
    if targets == "binary":
        return float(((Z >= 0) == (Y == 1)).all(axis=1).mean())
    Z = model._output_map(Z)  # the predictions (e^z for the Poisson loss)
    ss_res = ((Y - Z) ** 2).sum(axis=0, dtype=np.float64)
    ss_tot = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, 0.0)
    return float(r2.mean())


def _copy(params: Params, state: OptState, into: _Saved | None = None) -> _Saved:
    """A copy of the parameters and optimizer state; ``into``: a copy made earlier of the same
    arrays (shapes), written over instead of new memory (a new copy of a large model faults
    in every page, each epoch: 0.35 s of a 2 s epoch at 2^18 x 64 with Adam)."""
    if into is None:
        return ([(W.copy(), None if b is None else b.copy()) for W, b in params],
                [[None if s is None else (s[0].copy(), None if s[1] is None else s[1].copy())
                  for s in states] for states in state])
    _restore(into, params, state, backwards=True)
    return into


def _layout(model: Sequential) -> tuple[str, list[tuple[tuple[int, ...], bool]]]:
    """What a fit's workspaces and optimizer state are built for: the loss and, per layer, W's
    shape and whether it has a bias."""
    return model.loss_name, [(tuple(layer.W.shape), layer.b is None) for layer in model.layers]


def _callback_parameters(model: Sequential, layout: tuple[Any, ...]) -> Params:
    """The model's trainable arrays after a fit's callback ran (which may have replaced arrays
    or changed activations, but not the architecture)."""
    try:
        params = model._trainable_parameters()
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"the callback changed the model so that fit cannot go on: {exc}"
                        ) from None
    if _layout(model) != layout:
        raise ValueError(
            f"the callback changed the model's architecture during fit (loss and per layer "
            f"(W's shape, no bias): {layout} -> {_layout(model)}); a callback may change "
            "weights and activations, not the shapes, the biases or the loss")
    return params


_STATE_KEYS = frozenset(("optimizer", "momentum", "t", "state"))  # an optimizer_state_'s


def _step_count(t: object) -> bool:
    """Whether t is an integer >= 0, not a bool (an int first: the ABC check costs ~2 us)."""
    if type(t) is int:
        return t >= 0
    return (not isinstance(t, (bool, np.bool_)) and isinstance(t, numbers.Integral)
            and int(t) >= 0)


def _start_state(previous: Any, params: Params, optimizer: str, momentum: float,
                 kept: _KeptLoop | None = None) -> tuple[OptState, int]:
    """The optimizer state a fit starts from and its step count: ``previous`` (a model's
    ``optimizer_state_``, for a warm start) when it is a complete state of this optimizer for
    ``params`` (``optim.state_problem``), else a new one. A previous state of the same
    optimizer that cannot be continued (the architecture changed, or it is incomplete or
    damaged) gives a warning: the native loop must never read a missing moment. ``kept``:
    the kept loop, whose state arrays are known to fit ``params``: when ``previous`` holds
    them, only their values are checked (one backend call)."""
    if previous is None:
        return new_state(params, optimizer, momentum), 0
    if not isinstance(previous, dict) or not previous.keys() >= _STATE_KEYS:
        problem: str | None = "optimizer_state_ is not a dict of a fit's state"
    elif previous["optimizer"] != optimizer or previous["momentum"] != momentum:
        return new_state(params, optimizer, momentum), 0  # another optimizer: a new start
    elif not _step_count(previous["t"]):
        problem = f"its step count t must be an integer >= 0, got {previous['t']!r}"
    elif kept is not None and _same_arrays(previous["state"], kept.state_arrays):
        # the kept loop's own arrays (C-contiguous, writeable): their values, in one backend call
        if ops().all_finite_arrays(*kept.state_values):
            return previous["state"], int(previous["t"])
        problem = values_problem(previous["state"], ops().all_finite_arrays)
    else:
        problem = state_problem(previous["state"], params, optimizer, momentum)
    if problem is not None:
        warnings.warn(f"warm_start: the previous optimizer state cannot be continued "
                      f"({problem}); starting from a new {optimizer} state",
                      RuntimeWarning, stacklevel=4)
        return new_state(params, optimizer, momentum), 0
    return [[None if s is None else (writable(s[0], s[0].dtype),
                                     None if s[1] is None else writable(s[1], s[1].dtype))
             for s in states] for states in previous["state"]], int(previous["t"])


def _finite(params: Params) -> bool:
    arrays = [A for W, b in params for A in (W, b) if A is not None]
    return ops().all_finite_arrays(arrays, [False] * len(arrays))


def _finite_loss(model: Any, X: Inputs, Y: NDArray[Any]) -> bool:
    """Whether the model's mean loss on (X, Y) is finite (one forward pass)."""
    with np.errstate(all="ignore"):
        return math.isfinite(float(model._loss(model._logits(X), Y, "mean")))


def _restore(saved: _Saved, params: Params, state: OptState, backwards: bool = False) -> None:
    """Copy saved values back into the model's own arrays (the native loop holds them);
    ``backwards``: the model's values into the saved arrays instead. One backend call copies
    them all (each epoch of a fit saves a copy: ~12 np.copyto calls a small model)."""
    model: list[FloatArray] = []
    kept: list[FloatArray] = []
    for (W, b), (W0, b0) in zip(params, saved[0]):
        model.append(W)
        kept.append(W0)
        if b is not None:
            assert b0 is not None  # saved from the same parameters
            model.append(b)
            kept.append(b0)
    for states, saved_states in zip(state, saved[1]):
        for s, s0 in zip(states, saved_states):
            if s is not None:
                assert s0 is not None  # saved from the same state
                model.append(s[0])
                kept.append(s0[0])
                if s[1] is not None:
                    assert s0[1] is not None
                    model.append(s[1])
                    kept.append(s0[1])
    if backwards:
        ops().copy_arrays(kept, model)
    else:
        ops().copy_arrays(model, kept)


def fit(model: Sequential, X: ArrayLike, y: ArrayLike, *, epochs: int = 10,
        batch_size: int = 32, lr: float = 0.01, optimizer: str = "sgd", momentum: float = 0.0,
        nesterov: bool = False, weight_decay: float = 0.0, shuffle: bool = True,
        sample_weight: ArrayLike | None = None,
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        early_stopping: bool = False, patience: int = 10, random_state: SeedLike = None,
        verbose: int | bool = 0, lr_schedule: str | Callable[[int], float] = "constant",
        beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, warm_start: bool = False,
        callback: Callable[[int, History], bool | None] | None = None) -> History:
    """Train ``model`` in place by mini-batch gradient descent.

    Parameters
    ----------
    X, y : array_like
        Inputs (N, n_inputs) and targets: labels 0..K-1 (softmax), 0/1 (sigmoid; (N, d) for
        d outputs), values (N,) or (N, d) (identity). X is read where it lies: a scipy.sparse
        X as CSR (the first layer adds a row of W^T per non-zero; never densified), a
        float32/float64 array of another dtype or layout than the model's (float64 for a
        float32 model, Fortran order, a read-only memmap) converted a batch's rows at a time.
    epochs, batch_size : int
    lr : float
        The step size alpha of eq. 21.
    optimizer : {"sgd", "adam"}
    momentum : float in [0, 1), nesterov : bool
        SGD's momentum: v = mu v - lr g, theta += v (Nesterov: theta += mu v - lr g).
    weight_decay : float
        L2 penalty on the weights (not the biases): g += weight_decay * W.
    shuffle : bool
        Visit the samples in a new random order every epoch.
    sample_weight : array_like (N,), optional
        Per-sample weights w_i >= 0; a batch's loss is sum_i w_i g_loss_i / batch size.
    validation_data : (X_val, y_val), optional
        Evaluated after every epoch: mean loss and metric (accuracy or R^2).
    early_stopping : bool, patience : int
        Stop when the validation loss has not improved for ``patience`` epochs and restore
        the weights of the best epoch (needs ``validation_data``).
    random_state : int, numpy.random.Generator or None
        Seeds the shuffling: the same seed gives the same weights bit for bit.
    verbose : {0, 1, 2} or bool
        0 (False): quiet; 1 (True): a line after each epoch with its loss (and validation),
        the epoch's own time, the time elapsed since the fit started and the epoch's rate; 2:
        also a progress bar within each epoch (tqdm's where tqdm is installed, else a line
        rewritten in place on stderr), fed from the native loop's periodic checks.
    lr_schedule : {"constant", "invscaling", "cosine"} or callable(epoch) -> lr
    beta1, beta2, eps : float
        Adam's parameters.
    warm_start : bool
        Keep the optimizer state of the previous fit (momentum, Adam moments and step).
    callback : callable(epoch, history) -> bool, optional
        Called after every epoch (0-based) once the history has its entries; returning True
        stops the fit there (a schedule may also read what the callback records).

    Returns
    -------
    History

    Raises
    ------
    FloatingPointError
        The loss became NaN or infinite: the model keeps the weights it had before that epoch
        (or before the one before, when those weights' loss on X is not finite either: the
        previous epoch then left huge finite weights, and ``history_`` drops it).
    RuntimeError
        ``fit`` is already running on this model in another thread.

    Examples
    --------
    Fit y = 2 x by squared error (eq. 20) with plain SGD (eq. 21):

    >>> import numpy as np
    >>> from fastnn import MLP
    >>> from fastnn.training import fit
    >>> X = np.linspace(-1, 1, 32)[:, None]
    >>> net = MLP(1, (), 1, output="identity", dtype="float64", random_state=0)
    >>> history = fit(net, X, 2 * X[:, 0], epochs=200, batch_size=8, lr=0.1, random_state=0)
    >>> round(float(net.layers[0].W[0, 0]), 4), history.loss[-1] < 1e-8
    (2.0, True)
    """
    return _fit(model, X, y, epochs, batch_size, lr, optimizer, momentum, nesterov,
                weight_decay, shuffle, sample_weight, validation_data, early_stopping, patience,
                random_state, verbose, lr_schedule, beta1, beta2, eps, warm_start, callback)


class _Settings(NamedTuple):
    """fit's scalar arguments, checked (``_settings``)."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    nesterov: bool
    weight_decay: float
    shuffle: bool
    early_stopping: bool
    patience: int
    verbose: int
    warm_start: bool
    beta1: float
    beta2: float
    eps: float
    lr_schedule: str | Callable[[int], float]
    callback: Callable[[int, History], bool | None] | None


#: the scalar arguments of the last fit whose checks passed, and what the checks returned:
#: a fit given the very same objects (immutable: see _remember) takes the checked values
#: (the checks cost ~6 us of a small fit's ~30)
_LAST_SETTINGS: tuple[tuple[Any, ...], _Settings | None] = ((), None)
_IMMUTABLE = frozenset((int, float, bool, str, type(None)))


def _settings(epochs: Any, batch_size: Any, lr: Any, optimizer: Any, momentum: Any,
              nesterov: Any, weight_decay: Any, shuffle: Any, early_stopping: Any,
              patience: Any, verbose: Any, warm_start: Any, beta1: Any, beta2: Any, eps: Any,
              lr_schedule: Any, callback: Any) -> _Settings:
    """fit's scalar arguments checked (the errors name the argument)."""
    epochs = check_count(epochs, "epochs")
    batch_size = check_count(batch_size, "batch_size")
    lr = _v.real(lr, "lr", 0, low_open=True)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    momentum = _v.real(momentum, "momentum", 0, 1, high_open=True)
    nesterov = _v.flag(nesterov, "nesterov")
    weight_decay = _v.real(weight_decay, "weight_decay", 0)
    shuffle = _v.flag(shuffle, "shuffle")
    early_stopping = _v.flag(early_stopping, "early_stopping")
    patience = check_count(patience, "patience")
    verbose = verbosity(verbose)
    warm_start = _v.flag(warm_start, "warm_start")
    beta1 = _v.real(beta1, "beta1", 0, 1, high_open=True)
    beta2 = _v.real(beta2, "beta2", 0, 1, high_open=True)
    eps = _v.real(eps, "eps", 0, low_open=True)
    if not callable(lr_schedule) and lr_schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {SCHEDULES} or a callable, got {lr_schedule!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")
    return _Settings(epochs, batch_size, lr, optimizer, momentum, nesterov, weight_decay,
                     shuffle, early_stopping, patience, verbose, warm_start, beta1, beta2, eps,
                     lr_schedule, callback)


def _remember(raw: tuple[Any, ...], checked: _Settings) -> None:
    """Keep (raw, checked) for the next fit when every argument of ``raw`` is a plain int,
    float, bool, str or None (the same object then has the same value): not a callable
    schedule or a callback, which the module would otherwise keep alive after the fit."""
    global _LAST_SETTINGS
    if all(type(value) in _IMMUTABLE for value in raw):
        _LAST_SETTINGS = (raw, checked)


def _fit(model: Sequential, X: ArrayLike, y: ArrayLike, epochs: int, batch_size: int, lr: float,
         optimizer: str, momentum: float, nesterov: bool, weight_decay: float, shuffle: bool,
         sample_weight: ArrayLike | None, validation_data: tuple[ArrayLike, ArrayLike] | None,
         early_stopping: bool, patience: int, random_state: SeedLike, verbose: int | bool,
         lr_schedule: str | Callable[[int], float], beta1: float, beta2: float, eps: float,
         warm_start: bool, callback: Callable[[int, History], bool | None] | None) -> History:
    """fit (which see), its arguments in order: the lock, BLAS held, the checks."""
    if not model._fit_lock.acquire(blocking=False):
        raise RuntimeError("fit is already running on this model in another thread; "
                           "train separate models, or wait for that fit to end")
    try:
        with one_blas_thread():
            raw = (epochs, batch_size, lr, optimizer, momentum, nesterov, weight_decay,
                   shuffle, early_stopping, patience, verbose, warm_start, beta1, beta2, eps,
                   lr_schedule, callback)
            seen, checked = _LAST_SETTINGS
            if checked is None or not all(map(operator.is_, raw, seen)):
                checked = _settings(*raw)
                _remember(raw, checked)
            # finite: NaN in X would look like a divergence. A sparse X or a dense one of
            # another dtype or layout is read in place: the loop gathers and converts each
            # batch's rows
            X_in = model._inputs(X, in_place=True)[0]
            N = X_in.shape[0]
            Y = model._targets(y, N)
            sw = _sample_weight(sample_weight, N)
            validation = None
            if validation_data is not None:
                if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                    raise TypeError("validation_data must be a pair (X_val, y_val)")
                X_val = model._inputs(validation_data[0], "X_val", in_place=True)[0]
                validation = (X_val, model._targets(validation_data[1], X_val.shape[0], "y_val"))
            elif checked.early_stopping:
                raise ValueError("early_stopping needs validation_data=(X_val, y_val)")
            return _train(model, X_in, Y, sw, validation, checked, random_state)
    finally:
        model._fit_lock.release()


def _fit_validated(model: Sequential, X: Inputs, Y: NDArray[Any],
                  sw: NDArray[np.float64] | None,
                  validation: tuple[Inputs, NDArray[Any]] | None, settings: _Settings, *,
                  random_state: SeedLike) -> History:
    """``fit`` on arguments already validated as ``fit`` validates them (X and Y as
    ``model._inputs`` and ``model._targets`` return them, sample weights float64 (N,),
    validation_data as ``validation``, (X_val, Y_val) or None, and fit's scalar keywords
    as ``_settings`` returns them, one ``_Settings`` tuple), for fastnn's own callers that
    checked them (the estimators: scikit-learn's checks ran, or a partial_fit repeats a
    checked call)."""
    if not model._fit_lock.acquire(blocking=False):
        raise RuntimeError("fit is already running on this model in another thread; "
                           "train separate models, or wait for that fit to end")
    try:
        with one_blas_thread():
            return _train(model, X, Y, sw, validation, settings, random_state)
    finally:
        model._fit_lock.release()


def _train(model: Sequential, X: Inputs, Y: NDArray[Any], sw: NDArray[np.float64] | None,
           validation: tuple[Inputs, NDArray[Any]] | None, checked: _Settings,
           random_state: SeedLike) -> History:
    """fit's epochs, on validated arguments."""
    (epochs, batch_size, lr, optimizer, momentum, nesterov, weight_decay, shuffle,
     early_stopping, patience, verbose, warm_start, beta1, beta2, eps, lr_schedule,
     callback) = checked
    N = X.shape[0]
    batch_size = min(batch_size, N)
    if validation is not None:
        X_val, Y_val = validation

    # the loop of the model's last fit goes on when this one has its shapes and arrays (an
    # estimator's partial_fit calls fit once per batch of data)
    last_loop: _KeptLoop | None = model._fit_loop
    reuse = last_loop is not None and last_loop.holds(model)
    params = model.parameters() if reuse else model._trainable_parameters()
    previous = model.optimizer_state_ if warm_start else None
    state, t0 = _start_state(previous, params, optimizer, momentum,
                             last_loop if reuse else None)
    # (_start_state hands back the previous state itself only when it holds the kept loop's
    # arrays, checked)
    kept_state = reuse and isinstance(previous, dict) and state is previous.get("state")
    settings = {"optimizer": optimizer, "momentum": momentum, "nesterov": nesterov,
                "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay}
    opt: dict[str, Any] = {**settings, "t": t0, "state": state}
    model.optimizer_state_ = opt
    next_seed = _v.seeds(random_state)
    backend = ops()

    def epochs_runner() -> Any:  # the backend's epochs over the model's arrays as they are now
        model._fit_loop = None
        loop = model._fit_loop = _KeptLoop(model, params, state, opt["t"], X, Y, sw,
                                           batch_size, settings, False)
        return loop.runner

    runner = None if not reuse or last_loop is None else last_loop.take(
        model, state, t0, X, Y, sw, batch_size, settings, False, held=True,
        state_held=kept_state)
    if runner is None:
        runner = epochs_runner()
    # (what a callback may not change: only checked when a callback runs between epochs)
    layout = _layout(model) if callback is not None and epochs > 1 else None

    history = History("accuracy" if model.loss_spec.targets in ("classes", "binary") else "r2")
    best_loss, best, waited = math.inf, None, 0
    # the state before this epoch (saved) and before the last finished one (before_last)
    saved: _Saved
    saved_t: int
    before_last: tuple[_Saved, int] | None = None
    start = time.perf_counter()
    # the samples' order: shuffled in place from epoch to epoch, or (unshuffled, a small N)
    # the kept read-only 0..N-1 of train_on_batch's steps (np.arange: ~1 us of a small fit)
    perm = np.arange(N, dtype=np.intp) if shuffle or N > _KEPT_ROWS else _rows(N)
    try:  # whatever ends the fit (a divergence, Ctrl-C), history_ has the finished epochs
        for epoch in range(epochs):
            lr_epoch = learning_rate(lr_schedule, lr, epoch, epochs)
            if shuffle:  # the previous epoch's order, shuffled again (both backends)
                backend.shuffle(perm, next_seed())
            spare = before_last[0] if before_last is not None else None  # (dropped now)
            if epoch:
                before_last = (saved, saved_t)
            # what a divergence or Ctrl-C puts back: a copy here, or (a fit of one epoch,
            # with no epoch before to step back over: an estimator's partial_fit) the loop's
            # own copy, taken in C (guard)
            saved, saved_t = (_copy(params, state, into=spare) if epochs > 1 else ([], [])), opt["t"]
            tick = time.perf_counter()
            bar = EpochBar(epoch, epochs, N) if verbose == 2 else None
            try:
                # the model's arrays changed since the last epoch only if a callback ran
                total = runner.run_epoch(perm, lr_epoch, epoch == 0 or callback is not None,
                                         guard=epochs == 1, progress=bar)
                opt["t"] = runner.t
            except KeyboardInterrupt:
                if epochs > 1:
                    _restore(saved, params, state)
                opt["t"] = saved_t
                model.history_ = history
                if verbose:
                    print(f"interrupted in epoch {epoch + 1}: the model keeps the weights of "
                          f"epoch {epoch}", flush=True)
                raise
            finally:
                if bar is not None:
                    bar.close()
            # a non-finite loss stops the epoch before its update; the epoch's last update is
            # checked on the weights themselves
            if not math.isfinite(total) or (epochs > 1 and not _finite(params)):
                if epochs > 1:
                    _restore(saved, params, state)
                opt["t"] = saved_t
                what = ("the weights became infinite or NaN" if math.isfinite(total)
                        else f"the loss became {total}" if epochs > 1 or not math.isnan(total)
                        else "the loss or the updated weights became NaN or infinite")
                kept = "its weights from before that epoch"
                # the previous epoch may have left finite weights whose loss overflows (the
                # next epoch's first loss is then the first non-finite one): step back over it
                if before_last is not None and not _finite_loss(model, X, Y):
                    _restore(before_last[0], params, state)
                    opt["t"] = before_last[1]
                    history._drop_last()
                    kept = (f"its weights from before epoch {epoch} (after which the loss of "
                            f"the training data was no longer finite)")
                model.history_ = history
                hint = "try a smaller lr"
                if sw is not None and float(sw.mean()) > 2:  # weights scale every step
                    hint += (f"; sample_weight multiplies each sample's loss and gradient, and "
                             f"its mean here is {float(sw.mean()):.3g}: divide it by its mean "
                             f"for steps of the size lr gives with weights 1")
                raise FloatingPointError(
                    f"training diverged in epoch {epoch + 1} of {epochs}: {what}; the model keeps "
                    f"{kept} ({hint})")
            seconds = time.perf_counter() - tick
            history.loss.append(total / N)
            history.lr.append(lr_epoch)
            history.seconds.append(seconds)
            shown = ""  # the validation part of the epoch's line
            if validation is not None:
                val_loss = float(model._loss(model._logits(X_val), Y_val, "mean"))
                history.val_loss.append(val_loss)
                history.val_metric.append(_metric(model, X_val, Y_val))
                shown = (f"  val_loss {val_loss:.5f}  "
                         f"val_{history.metric} {history.val_metric[-1]:.4f}")
                if early_stopping:
                    if val_loss < best_loss:
                        best_loss, best, waited = val_loss, (_copy(params, state), opt["t"]), 0
                        history.best_epoch = epoch
                    else:
                        waited += 1
            if verbose:
                print(epoch_line(epoch, epochs, total / N, seconds,
                                 time.perf_counter() - start, N, shown), flush=True)
            if early_stopping and waited >= patience:
                history.stopped_early = True
                break
            if callback is not None:
                if callback(epoch, history) or epoch + 1 == epochs:
                    break
                # the callback may have replaced arrays or changed activations: the loop then
                # goes on with the model as the callback left it, as the numpy backend does
                held = params, [layer.activation for layer in model.layers]
                assert layout is not None  # (set when a callback runs between epochs)
                params = _callback_parameters(model, layout)
                if (any(A is not B for p, q in zip(params, held[0]) for A, B in zip(p, q))
                        or held[1] != [layer.activation for layer in model.layers]):
                    runner = epochs_runner()
    finally:
        model.history_ = history
    if early_stopping and best is not None:
        _restore(best[0], params, state)
        opt["t"] = best[1]
    model.history_ = history
    return history


def train_on_batch(model: Sequential, X: ArrayLike, y: ArrayLike, optimizer: Optimizer, *,
                   sample_weight: ArrayLike | None = None) -> float:
    """One training step on the batch (X, y): forward, loss, backward and ``optimizer``'s
    update, in one native call on the "cython" backend (the step ``fit`` takes); returns the
    batch's mean loss before the update (sum_i w_i g_loss_i / N). See
    ``Sequential.train_on_batch``."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastnn.optim optimizer (SGD, Adam), got "
                        f"{type(optimizer).__name__}")
    if optimizer.model is not model:
        raise ValueError("optimizer was made for another model: make one with this model, "
                         "e.g. fastnn.optim.SGD(model, lr=...)")
    if not model._fit_lock.acquire(blocking=False):
        raise RuntimeError("fit or train_on_batch is already running on this model in "
                           "another thread")
    try:
        X_ = model._inputs(X, in_place=True)[0]
        N = X_.shape[0]
        Y = model._targets(y, N)
        sw = _sample_weight(sample_weight, N)
        raw = optimizer._raw()
        if optimizer._settings_of is None or any(  # an attribute was set since: check it
                a is not b for a, b in zip(raw, optimizer._settings_of[0])):
            optimizer._settings_of = raw, optimizer._settings()
        settings = dict(optimizer._settings_of[1])
        lr = settings.pop("lr")
        loop = optimizer._loop
        runner = None if loop is None else loop.take(model, optimizer.state, optimizer.t, X_,
                                                     Y, sw, N, settings, True)
        if runner is None:
            optimizer._loop = None
            params = optimizer._params()  # (checks the state against the model's arrays)
            loop = optimizer._loop = _KeptLoop(model, params, optimizer.state, optimizer.t,
                                               X_, Y, sw, N, settings, True)
            runner = loop.runner
        with one_blas_thread():
            total = runner.run_epoch(_rows(N), lr, guard=True)  # (NaN: diverged)
        if not math.isfinite(total):
            raise FloatingPointError(
                "the step diverged: the batch's loss or the updated weights are not finite "
                f"(lr {lr}); the model and the optimizer keep their values from before it")
        optimizer.t = runner.t
        return float(total / N)
    finally:
        model._fit_lock.release()


class _KeptLoop:
    """A backend's training loop over a model's arrays (its workspaces allocated once), kept
    between calls that train the model again with data of the same shapes: ``fit`` called
    again (an estimator's partial_fit) and train_on_batch's steps. ``take`` hands it over for
    the new data (only the data pointers move: ``bind``) when the model's arrays, the
    optimizer state's arrays, the rule and the shapes are the very ones it was built on."""

    def __init__(self, model: Sequential, params: Params, state: OptState, t: int,
                 X: Inputs, Y: NDArray[Any], sw: NDArray[np.float64] | None,
                 batch_size: int, settings: dict[str, Any], one_step: bool) -> None:
        self.backend, self.loss = ops(), model.loss_spec
        self.key = self._key(X, sw, batch_size, dict(settings), one_step)
        self.layers = [(layer.W, layer.b, layer.activation) for layer in model.layers]
        self.state_arrays = _state_arrays(state)
        self.state_values = state_values(state)  # (the arrays and their >= 0 flags)
        self.runner = self.backend.epochs(TrainSpec(
            weights=[W for W, _ in params], biases=[b for _, b in params],
            activations=[a for _, _, a in self.layers], loss=model.loss_spec, X=X, Y=Y,
            sample_weight=sw, batch_size=batch_size, state=state, t=t, one_step=one_step,
            **settings))

    @staticmethod
    def _key(X: Inputs, sw: NDArray[np.float64] | None, batch_size: int,
             settings: dict[str, Any], one_step: bool) -> tuple[Any, ...]:
        """What a call must share with the loop's first to reuse its workspaces (a loop on
        CSR rows holds no gathered batch: it binds only CSR rows)."""
        # (settings: a dict of its own, compared as a dict, in any order)
        return (X.shape[0], type(X) is not np.ndarray and _v.is_sparse(X), batch_size,
                sw is not None, one_step, settings)

    def holds(self, model: Sequential) -> bool:
        """Whether it was built on the model's arrays as they are now (the same objects, still
        writeable) and activations: what ``_trainable_parameters`` would check."""
        if len(model.layers) != len(self.layers):
            return False
        for layer, (W, b, activation) in zip(model.layers, self.layers):
            if (layer.W is not W or layer.b is not b or layer.activation != activation
                    or not W.flags.writeable or (b is not None and not b.flags.writeable)):
                return False
        return True

    def take(self, model: Sequential, state: OptState, t: int, X: Inputs,
             Y: NDArray[Any], sw: NDArray[np.float64] | None, batch_size: int,
             settings: dict[str, Any], one_step: bool, held: bool = False,
             state_held: bool = False) -> Any:
        """The runner, bound to (X, Y, sw) at step t, if it fits this call; else None.
        ``held``: the caller found ``holds(model)`` true already; ``state_held``: and that
        ``state`` holds the loop's state arrays."""
        if (self.backend is not ops() or model.loss_spec is not self.loss
                or self._key(X, sw, batch_size, settings, one_step) != self.key
                or not (held or self.holds(model))
                or not (state_held or _same_arrays(state, self.state_arrays))):
            return None
        self.runner.bind(X, Y, sw)
        self.runner.t = t
        return self.runner


def _state_arrays(state: OptState) -> list[Any]:
    return [A for states in state for s in states if s is not None for A in s]


def _same_arrays(state: Any, arrays: list[Any]) -> bool:
    """Whether ``state`` (a model's optimizer_state_["state"], as a user may have left it)
    holds exactly these array objects, in this order."""
    try:
        found = _state_arrays(state)
    except TypeError:
        return False
    return len(found) == len(arrays) and all(map(operator.is_, found, arrays))


_ROWS: dict[int, NDArray[np.intp]] = {}
_KEPT_ROWS = 1 << 14  # the largest N whose 0..N-1 a fit keeps (_rows) between calls


def _rows(N: int) -> NDArray[np.intp]:
    """0..N-1 (a batch's rows in order), kept for the few batch sizes a loop uses (and an
    unshuffled fit's order, up to _KEPT_ROWS samples); read-only."""
    rows = _ROWS.get(N)
    if rows is None:
        if len(_ROWS) > 8:
            _ROWS.clear()
        rows = _ROWS[N] = np.arange(N, dtype=np.intp)
        rows.flags.writeable = False
    return rows
