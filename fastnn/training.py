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
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as _v
from .backends import TrainSpec, ops
from ._typing import FloatArray, Inputs, LayerState, OptState, Params, SeedLike
from .layers import check_count, writable
from .updates import OPTIMIZERS, SCHEDULES, learning_rate, new_state, state_problem
from .optim import Optimizer
from .threads import one_blas_thread

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


def _start_state(previous: Any, params: Params, optimizer: str, momentum: float
                 ) -> tuple[OptState, int]:
    """The optimizer state a fit starts from and its step count: ``previous`` (a model's
    ``optimizer_state_``, for a warm start) when it is a complete state of this optimizer for
    ``params`` (``optim.state_problem``), else a new one. A previous state of the same
    optimizer that cannot be continued (the architecture changed, or it is incomplete or
    damaged) gives a warning: the native loop must never read a missing moment."""
    if previous is None:
        return new_state(params, optimizer, momentum), 0
    if not isinstance(previous, dict) or not {"optimizer", "momentum", "t", "state"} <= set(
            previous):
        problem: str | None = "optimizer_state_ is not a dict of a fit's state"
    elif previous["optimizer"] != optimizer or previous["momentum"] != momentum:
        return new_state(params, optimizer, momentum), 0  # another optimizer: a new start
    elif isinstance(previous["t"], (bool, np.bool_)) or not isinstance(
            previous["t"], numbers.Integral) or previous["t"] < 0:
        problem = f"its step count t must be an integer >= 0, got {previous['t']!r}"
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
    return all(ops().all_finite(W) and (b is None or ops().all_finite(b)) for W, b in params)


def _finite_loss(model: Any, X: Inputs, Y: NDArray[Any]) -> bool:
    """Whether the model's mean loss on (X, Y) is finite (one forward pass)."""
    with np.errstate(all="ignore"):
        return math.isfinite(float(model._loss(model._logits(X), Y, "mean")))


def _restore(saved: _Saved, params: Params, state: OptState, backwards: bool = False) -> None:
    """Copy saved values back into the model's own arrays (the native loop holds them);
    ``backwards``: the model's values into the saved arrays instead."""
    def put(A: FloatArray, A0: FloatArray) -> None:
        if backwards:
            np.copyto(A0, A)
        else:
            np.copyto(A, A0)

    for (W, b), (W0, b0) in zip(params, saved[0]):
        put(W, W0)
        if b is not None:
            assert b0 is not None  # saved from the same parameters
            put(b, b0)
    for states, saved_states in zip(state, saved[1]):
        for s, s0 in zip(states, saved_states):
            if s is not None:
                assert s0 is not None  # saved from the same state
                put(s[0], s0[0])
                if s[1] is not None:
                    assert s0[1] is not None
                    put(s[1], s0[1])


def fit(model: Sequential, X: ArrayLike, y: ArrayLike, *, epochs: int = 10,
        batch_size: int = 32, lr: float = 0.01, optimizer: str = "sgd", momentum: float = 0.0,
        nesterov: bool = False, weight_decay: float = 0.0, shuffle: bool = True,
        sample_weight: ArrayLike | None = None,
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        early_stopping: bool = False, patience: int = 10, random_state: SeedLike = None,
        verbose: bool = False, lr_schedule: str | Callable[[int], float] = "constant",
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
    verbose : bool
        Print one progress line per epoch.
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
    if not model._fit_lock.acquire(blocking=False):
        raise RuntimeError("fit is already running on this model in another thread; "
                           "train separate models, or wait for that fit to end")
    try:
        with one_blas_thread():
            return _fit(model, X, y, epochs, batch_size, lr, optimizer, momentum, nesterov,
                        weight_decay, shuffle, sample_weight, validation_data, early_stopping,
                        patience, random_state, verbose, lr_schedule, beta1, beta2, eps,
                        warm_start, callback)
    finally:
        model._fit_lock.release()


def _fit(model: Sequential, X: ArrayLike, y: ArrayLike, epochs: int, batch_size: int, lr: float,
         optimizer: str, momentum: float, nesterov: bool, weight_decay: float, shuffle: bool,
         sample_weight: ArrayLike | None, validation_data: tuple[ArrayLike, ArrayLike] | None,
         early_stopping: bool, patience: int, random_state: SeedLike, verbose: bool,
         lr_schedule: str | Callable[[int], float], beta1: float, beta2: float, eps: float,
         warm_start: bool, callback: Callable[[int, History], bool | None] | None) -> History:
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
    verbose = _v.flag(verbose, "verbose")
    warm_start = _v.flag(warm_start, "warm_start")
    beta1 = _v.real(beta1, "beta1", 0, 1, high_open=True)
    beta2 = _v.real(beta2, "beta2", 0, 1, high_open=True)
    eps = _v.real(eps, "eps", 0, low_open=True)
    if not callable(lr_schedule) and lr_schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {SCHEDULES} or a callable, got {lr_schedule!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")
    # finite: NaN in X would look like a divergence. A sparse X or a dense one of another
    # dtype or layout is read in place: the loop gathers and converts each batch's rows
    X_in = model._inputs(X, in_place=True)[0]
    N = X_in.shape[0]
    Y = model._targets(y, N)
    sw = _sample_weight(sample_weight, N)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, y_val)")
        X_val = model._inputs(validation_data[0], "X_val", in_place=True)[0]
        Y_val = model._targets(validation_data[1], X_val.shape[0], "y_val")
    elif early_stopping:
        raise ValueError("early_stopping needs validation_data=(X_val, y_val)")
    batch_size = min(batch_size, N)

    params = model._trainable_parameters()
    state, t0 = _start_state(model.optimizer_state_ if warm_start else None, params, optimizer,
                             momentum)
    opt: dict[str, Any] = {
        "optimizer": optimizer, "momentum": momentum, "nesterov": nesterov, "beta1": beta1,
        "beta2": beta2, "eps": eps, "weight_decay": weight_decay, "t": t0, "state": state}
    model.optimizer_state_ = opt
    rng = _v.rng(random_state)
    backend = ops()

    def epochs_runner() -> Any:  # the backend's epochs over the model's arrays as they are now
        return backend.epochs(TrainSpec(
            weights=[W for W, _ in params], biases=[b for _, b in params],
            activations=[layer.activation for layer in model.layers], loss=model.loss_spec,
            X=X_in, Y=Y, sample_weight=sw, batch_size=batch_size, optimizer=optimizer,
            momentum=momentum, nesterov=nesterov, beta1=beta1, beta2=beta2, eps=eps,
            weight_decay=weight_decay, state=state, t=opt["t"]))

    runner = epochs_runner()
    layout = _layout(model)

    history = History("accuracy" if model.loss_spec.targets in ("classes", "binary") else "r2")
    best_loss, best, waited = math.inf, None, 0
    # the state before this epoch (saved) and before the last finished one (before_last)
    saved: _Saved
    saved_t: int
    before_last: tuple[_Saved, int] | None = None
    start = time.perf_counter()
    perm = np.arange(N, dtype=np.intp)
    try:  # whatever ends the fit (a divergence, Ctrl-C), history_ has the finished epochs
        for epoch in range(epochs):
            lr_epoch = learning_rate(lr_schedule, lr, epoch, epochs)
            if shuffle:  # the previous epoch's order, shuffled again (both backends)
                backend.shuffle(perm, int(rng.integers(0, 2**63)))
            spare = before_last[0] if before_last is not None else None  # (dropped now)
            if epoch:
                before_last = (saved, saved_t)
            saved, saved_t = _copy(params, state, into=spare), opt["t"]
            tick = time.perf_counter()
            try:
                # the model's arrays changed since the last epoch only if a callback ran
                total = runner.run_epoch(perm, lr_epoch, epoch == 0 or callback is not None)
                opt["t"] = runner.t
            except KeyboardInterrupt:
                _restore(saved, params, state)
                opt["t"] = saved_t
                model.history_ = history
                if verbose:
                    print(f"interrupted in epoch {epoch + 1}: the model keeps the weights of "
                          f"epoch {epoch}", flush=True)
                raise
            # a non-finite loss stops the epoch before its update; the epoch's last update is
            # checked on the weights themselves
            if not math.isfinite(total) or not _finite(params):
                _restore(saved, params, state)
                opt["t"] = saved_t
                what = f"the loss became {total}" if not math.isfinite(total) \
                    else "the weights became infinite or NaN"
                kept = "its weights from before that epoch"
                # the previous epoch may have left finite weights whose loss overflows (the
                # next epoch's first loss is then the first non-finite one): step back over it
                if before_last is not None and not _finite_loss(model, X_in, Y):
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
            line = f"epoch {epoch + 1:>{len(str(epochs))}}/{epochs}  loss {total / N:.5f}" \
                if verbose else ""
            if validation_data is not None:
                val_loss = float(model._loss(model._logits(X_val), Y_val, "mean"))
                history.val_loss.append(val_loss)
                history.val_metric.append(_metric(model, X_val, Y_val))
                line += f"  val_loss {val_loss:.5f}  val_{history.metric} {history.val_metric[-1]:.4f}"
                if early_stopping:
                    if val_loss < best_loss:
                        best_loss, best, waited = val_loss, (_copy(params, state), opt["t"]), 0
                        history.best_epoch = epoch
                    else:
                        waited += 1
            if verbose:
                print(f"{line}  {time.perf_counter() - start:.2f}s  "
                      f"{N / max(seconds, 1e-9):,.0f} samples/s", flush=True)
            if early_stopping and waited >= patience:
                history.stopped_early = True
                break
            if callback is not None:
                if callback(epoch, history):
                    break
                # the callback may have replaced arrays or changed activations: the loop then
                # goes on with the model as the callback left it, as the numpy backend does
                held = params, [layer.activation for layer in model.layers]
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
        backend = ops()
        loop = optimizer._loop
        if loop is not None and loop.fits(model, optimizer, backend, N, sw is not None,
                                          _v.is_sparse(X_)):
            loop.runner.bind(X_, Y, sw)
            loop.runner.t = optimizer.t
        else:
            optimizer._loop = None
            loop = optimizer._loop = _StepLoop(model, optimizer, backend, X_, Y, sw)
        with one_blas_thread():
            total = loop.runner.run_epoch(_rows(N), loop.lr, guard=True)  # (NaN: diverged)
        if not math.isfinite(total):
            raise FloatingPointError(
                "the step diverged: the batch's loss or the updated weights are not finite "
                f"(lr {loop.lr}); the model and the optimizer keep their values from before it")
        optimizer.t = loop.runner.t
        return float(total / N)
    finally:
        model._fit_lock.release()


class _StepLoop:
    """train_on_batch's loop for one optimizer: the backend's epochs over one batch of N rows
    (workspaces allocated once), and what they were built on. The next batch of the same
    shapes only moves the loop's data (``bind``), while the model's arrays, the optimizer's
    state arrays and its hyperparameters are the ones it was built on."""

    def __init__(self, model: Sequential, optimizer: Optimizer, backend: Any, X: Inputs,
                 Y: NDArray[Any], sw: NDArray[np.float64] | None) -> None:
        params = optimizer._params()  # (checks the state against the model's arrays)
        self.raw = optimizer._raw()
        self.settings = optimizer._settings()
        self.lr: float = self.settings.pop("lr")
        self.backend, self.N, self.weighted, self.loss = backend, X.shape[0], sw is not None, \
            model.loss_spec
        self.sparse = _v.is_sparse(X)  # (a loop on CSR rows holds no gathered batch)
        self.layers = [(layer.W, layer.b, layer.activation) for layer in model.layers]
        self.state_arrays = _state_arrays(optimizer.state)
        self.runner = backend.epochs(TrainSpec(
            weights=[W for W, _ in params], biases=[b for _, b in params],
            activations=[a for _, _, a in self.layers], loss=model.loss_spec, X=X, Y=Y,
            sample_weight=sw, batch_size=self.N, state=optimizer.state, t=optimizer.t,
            one_step=True, **self.settings))

    def fits(self, model: Sequential, optimizer: Optimizer, backend: Any, N: int,
             weighted: bool, sparse: bool) -> bool:
        """Whether this loop can take the next batch: the same backend, batch size, kind of
        X (dense or sparse), loss, model arrays (the very objects, still writeable) and
        activations, the optimizer's state arrays and rule (a new lr is taken here)."""
        if (backend is not self.backend or N != self.N or weighted != self.weighted
                or sparse != self.sparse
                or model.loss_spec is not self.loss or len(model.layers) != len(self.layers)):
            return False
        for layer, (W, b, activation) in zip(model.layers, self.layers):
            if (layer.W is not W or layer.b is not b or layer.activation != activation
                    or not W.flags.writeable or (b is not None and not b.flags.writeable)):
                return False
        arrays = _state_arrays(optimizer.state)
        if len(arrays) != len(self.state_arrays) or any(
                A is not B for A, B in zip(arrays, self.state_arrays)):
            return False
        raw = optimizer._raw()
        if any(a is not b for a, b in zip(raw, self.raw)):  # an attribute was set
            settings = optimizer._settings()
            lr = settings.pop("lr")
            if settings != self.settings:
                return False
            self.raw, self.lr = raw, lr
        return True


def _state_arrays(state: OptState) -> list[Any]:
    return [A for states in state for s in states if s is not None for A in s]


_ROWS: dict[int, NDArray[np.intp]] = {}


def _rows(N: int) -> NDArray[np.intp]:
    """0..N-1 (a batch's rows in order), kept for the few batch sizes a loop uses."""
    rows = _ROWS.get(N)
    if rows is None:
        if len(_ROWS) > 8:
            _ROWS.clear()
        rows = _ROWS[N] = np.arange(N, dtype=np.intp)
        rows.flags.writeable = False
    return rows
