"""Networks: a stack of layers with an output map and its loss (sections 1 and 3 of the notes).

``Sequential`` is any stack of ``Linear`` layers with a loss; ``MLP`` builds the usual
multi-layer perceptron (the notes' one-hidden-layer network at any depth). The output map
follows from the loss, as the notes pair them: sigmoid with binary cross-entropy (eq. 3, 17),
softmax with categorical cross-entropy (eq. 5, 18), identity with squared error (eq. 7, 20).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _kernels
from . import _validation as _v
from . import functional as F
from ._typing import FloatArray, Loss, Params, SeedLike
from .layers import Linear, aligned_copy, check_count, check_dtype

if TYPE_CHECKING:
    from .training import History

__all__ = ["MLP", "Sequential", "Trace"]

LOSSES = ("binary_cross_entropy", "cross_entropy", "squared_error")
OUTPUT_OF_LOSS = {"binary_cross_entropy": "sigmoid", "cross_entropy": "softmax",
                  "squared_error": "identity"}
LOSS_OF_OUTPUT = {output: loss for loss, output in OUTPUT_OF_LOSS.items()}

_MLP = TypeVar("_MLP", bound="MLP")


def _writable(A: np.ndarray, dtype: np.dtype[Any]) -> FloatArray:
    """``A`` itself if a native loop may write it in place, else a C-ordered copy of ``dtype``
    (on a cache line boundary, see ``layers.aligned_copy``)."""
    flags = A.flags
    if type(A) is np.ndarray and A.dtype == dtype and flags.c_contiguous and flags.aligned \
            and flags.writeable:
        return A
    return aligned_copy(A, dtype)


class Trace:
    """The intermediate values of a forward pass (eq. 10), as ``Sequential.forward`` returns them.

    Parameters
    ----------
    z : list of ndarray
        ``z[l]`` = U_{l-1} W_l^T + B_l, layer l's pre-activation (the notes' z^H, z^O).
    u : list of ndarray
        ``u[l]`` = g_l(z[l]) (the notes' u^H, u^O); ``u[-1]`` is the output map (sigmoid,
        softmax or identity) applied to the last layer's output.

    Examples
    --------
    The notes' section 1, problem 1 at x = 2 and x = 4:

    >>> from fastnn import MLP
    >>> net = MLP.from_weights([([[1], [1]], [-1, -3]), ([-1, 2], 0.5)],
    ...                        activation="step", output="sigmoid")
    >>> trace = net.forward([[2.0], [4.0]])
    >>> trace.z[0], trace.u[0]  # z^H = (x - 1, x - 3), u^H = step(z^H) (eq. 2)
    (array([[ 1., -1.],
           [ 3.,  1.]]), array([[1., 0.],
           [1., 1.]]))
    >>> trace.z[1]  # z^O = -u_1 + 2 u_2 + 0.5
    array([[-0.5],
           [ 1.5]])
    """

    z: list[FloatArray]
    u: list[FloatArray]

    def __init__(self, z: list[FloatArray], u: list[FloatArray]) -> None:
        self.z = z
        self.u = u

    def __repr__(self) -> str:
        return f"Trace(z={self.z!r}, u={self.u!r})"


class Sequential:
    """A stack of layers, U_l = g_l(U_{l-1} W_l^T + B_l) (eq. 10), with a loss on the last output.

    Parameters
    ----------
    layers : sequence of Linear
        Consecutive widths must match; all layers share one dtype.
    loss : {"binary_cross_entropy", "cross_entropy", "squared_error"}
        The loss on the last layer's output, which fixes the output map: sigmoid, softmax or
        identity.

    Examples
    --------
    The notes' section 3, problem 2 model, y_hat = alpha^T exp(W x + b) with squared loss:

    >>> from fastnn import Linear, Sequential
    >>> model = Sequential([Linear(3, 4, "exp", random_state=0),
    ...                     Linear(4, 1, bias=False, random_state=1)], loss="squared_error")
    >>> model.predict([[0.1, 0.2, 0.3]]).shape
    (1,)
    """

    layers: list[Linear]
    loss_name: str
    history_: History | None
    optimizer_state_: dict[str, Any] | None

    def __init__(self, layers: Iterable[Linear], loss: str = "squared_error") -> None:
        layers = list(layers)
        if not layers or not all(isinstance(layer, Linear) for layer in layers):
            raise TypeError("layers must be a non-empty sequence of fastnn.Linear")
        for l in range(1, len(layers)):
            if layers[l].n_in != layers[l - 1].n_out:
                raise ValueError(
                    f"layers[{l}] takes {layers[l].n_in} inputs but layers[{l - 1}] gives "
                    f"{layers[l - 1].n_out} outputs"
                )
        for l, layer in enumerate(layers):
            if any(layer is other for other in layers[:l]):
                first = next(k for k, other in enumerate(layers) if other is layer)
                raise ValueError(
                    f"layers[{l}] is the same Linear as layers[{first}]: shared (tied) weights "
                    "are not supported; use copy.deepcopy(layer) for a layer of its own")
        if len({layer.dtype for layer in layers}) != 1:
            raise ValueError("all layers must have the same dtype")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.layers = layers
        self.loss_name = loss
        self.history_ = None
        self.optimizer_state_ = None
        self._fit_lock = threading.Lock()

    # -- structure ------------------------------------------------------------------------

    @property
    def output(self) -> str:
        """The output map g_out: "sigmoid" (eq. 3), "softmax" (eq. 5) or "identity" (eq. 7)."""
        return OUTPUT_OF_LOSS[self.loss_name]

    @property
    def dtype(self) -> np.dtype[np.floating[Any]]:
        """The dtype of every layer's weights: float32 or float64."""
        return self.layers[0].dtype

    @property
    def n_inputs(self) -> int:
        """N_i, the number of inputs (features)."""
        return self.layers[0].n_in

    @property
    def n_outputs(self) -> int:
        """N_o, the number of outputs of the last layer."""
        return self.layers[-1].n_out

    def parameters(self) -> Params:
        """The weights of every layer: the notes' theta (eq. 14), the model's own arrays.

        Returns
        -------
        list of (W, b) per layer
            b is None for a layer without bias; the arrays are not copies.
        """
        return [(layer.W, layer.b) for layer in self.layers]

    def _trainable_parameters(self) -> Params:
        """The layers' arrays as the native training loop writes them: exact ndarrays of the
        model's dtype, C-contiguous, aligned, writeable, shapes chained. Arrays that are not
        (a read-only array from a Dask worker or np.load(mmap_mode="r"), a float64 W set into
        a float32 model, a Fortran-ordered W) are replaced by such copies; shapes that do not
        chain raise a ValueError naming the layer."""
        dtype = self.dtype
        arrays: list[tuple[str, np.ndarray]] = []  # (name, array) seen so far
        for l, layer in enumerate(self.layers):
            _v.activation(layer.activation, f"layers[{l}].activation")
            for name in ("W", "b"):
                A = getattr(layer, name)
                for other, B in arrays:
                    if isinstance(A, np.ndarray) and np.may_share_memory(A, B):
                        raise ValueError(
                            f"layers[{l}].{name} shares memory with {other}: shared (tied) "
                            "weights are not supported (training would update them once per "
                            "use); give each layer arrays of its own (e.g. W.copy())")
                if isinstance(A, np.ndarray):
                    arrays.append((f"layers[{l}].{name}", A))
            W, b = layer.W, layer.b
            if not isinstance(W, np.ndarray) or W.ndim != 2 or 0 in W.shape:
                raise ValueError(f"layers[{l}].W must be a non-empty 2-D array (n_out, n_in), "
                                 f"got {getattr(W, 'shape', type(W).__name__)}")
            if l and W.shape[1] != self.layers[l - 1].W.shape[0]:
                raise ValueError(f"layers[{l}].W takes {W.shape[1]} inputs but layers[{l - 1}] "
                                 f"gives {self.layers[l - 1].W.shape[0]} outputs")
            layer.W = _writable(W, dtype)
            if b is not None:
                if not isinstance(b, np.ndarray) or b.shape != (W.shape[0],):
                    raise ValueError(f"layers[{l}].b must have shape ({W.shape[0]},), got "
                                     f"{getattr(b, 'shape', type(b).__name__)}")
                layer.b = _writable(b, dtype)
        return self.parameters()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_fit_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fit_lock = threading.Lock()

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"{type(self).__name__}([\n  {inner}\n], loss={self.loss_name!r})"

    # -- inputs ---------------------------------------------------------------------------

    def _inputs(self, X: ArrayLike, name: str = "X") -> tuple[FloatArray, bool]:
        """X as a finite C-contiguous 2-D array of the model's dtype and whether it was one
        sample: what every method taking X (fit, predict, loss, ...) computes on."""
        if type(X) is np.ndarray and X.ndim == 2 and X.dtype == self.dtype and X.shape[0] \
                and X.shape[1] == self.n_inputs and X.flags.c_contiguous and X.flags.aligned:
            return _v.finite(X, name), False  # the common case, checked cheaply
        (given,), _ = _v.real_arrays((X, name))
        with np.errstate(over="ignore"):  # an overflow to inf is reported below, by name
            arr = _v.as_float(given, name, self.dtype, (1, 2))
        single = arr.ndim == 1
        if arr.shape[-1] != self.n_inputs:
            if single:
                raise ValueError(
                    f"{name} must have {self.n_inputs} features (columns): got a 1-D array of "
                    f"shape {arr.shape}, which is read as one sample; pass {name}.reshape(-1, 1) "
                    f"for {arr.shape[0]} samples of one feature")
            raise ValueError(
                f"{name} must have {self.n_inputs} features (columns), got shape {arr.shape}")
        arr = arr.reshape(1, -1) if single else arr
        try:
            return _v.finite(arr, name), single
        except ValueError:
            if given.dtype.kind == "f" and given.dtype.itemsize > self.dtype.itemsize \
                    and bool(np.isfinite(given).all()):  # finite until converted
                raise ValueError(f"{name} holds values too large for the model's {self.dtype} "
                                 f"(|x| > {np.finfo(self.dtype).max:.3g})") from None
            raise

    def _targets(self, y: ArrayLike, N: int, name: str = "y", single: bool = False
                 ) -> NDArray[Any]:
        """Validated targets for N samples, as the loss kernels take them; ``single``: the
        inputs were one 1-D sample, whose target may come without the batch axis."""
        if single and self.loss_name == "squared_error":
            (arr,), _ = _v.real_arrays((y, name))
            y = arr.reshape(1, -1) if arr.size == self.n_outputs and arr.ndim <= 1 else arr
        if self.loss_name == "cross_entropy":
            return _v.class_labels(y, name, N, self.n_outputs)
        if self.loss_name == "binary_cross_entropy":
            d = self.n_outputs
            if d == 1:  # labels (N,) or (N, 1)
                return _v.binary_labels(y, name, N, self.dtype).reshape(N, 1)
            y = _v.real_array(y, name)  # multi-label: an (N, d) indicator matrix
            y = y.reshape(1, d) if N == 1 and y.shape == (d,) else y  # one sample's labels
            _v.expect_shape(y, name, (N, d), "(N, n_outputs): one 0/1 label per output")
            return _v.binary_labels(y.reshape(-1), name, N * d, self.dtype).reshape(N, d)
        return _v.targets(y, name, (N, self.n_outputs), self.dtype)

    def _shape_out(self, A: NDArray[Any], single: bool) -> NDArray[Any] | Any:
        """(N, 1) results of a one-output model as (N,); a single sample without its batch axis."""
        if A.shape[1] == 1 and self.output != "softmax":
            A = A[:, 0]
        return A[0] if single else A

    # -- forward --------------------------------------------------------------------------

    def _logits(self, X: FloatArray) -> FloatArray:
        if F._backend == "cython":  # all layers in one compiled call when they allow it
            Z = _kernels.network(X, self.layers, "identity")
            if Z is not None:
                return Z
        U = X
        for layer in self.layers:
            U = F.linear(U, layer.W, layer.b, layer.activation)  # eq. 10, fused
        return U

    def forward(self, X: ArrayLike) -> Trace:
        """The forward pass with every intermediate value (eq. 1 / eq. 10).

        Parameters
        ----------
        X : array_like, shape (N, n_inputs) or (n_inputs,)

        Returns
        -------
        Trace
            ``z[l] = U_{l-1} W_l^T + B_l`` and ``u[l] = g_l(z[l])``, (N, width) each; the last
            ``u`` is the output map (sigmoid, softmax or identity) of the last layer's output.
            One sample (1-D x) gives 1-D values. See ``Trace`` for an example.
        """
        U, single = self._inputs(X)
        zs, us = [], []
        for layer in self.layers:
            Z = F.linear(U, layer.W, layer.b, "identity")
            U = F.activate(Z, layer.activation)
            zs.append(Z)
            us.append(U)
        us[-1] = self._output_map(us[-1])
        if single:
            zs, us = [z[0] for z in zs], [u[0] for u in us]
        return Trace(zs, us)

    def _output_map(self, Z: FloatArray) -> FloatArray:
        if self.output == "sigmoid":
            return F.sigmoid(Z)  # eq. 3
        if self.output == "softmax":  # eq. 5; Z is the model's own (N, K) output
            if F.get_backend() == "cython":
                return _kernels.softmax(Z, False, np.empty_like(Z))
            return F.softmax(Z)
        return Z  # eq. 7

    def decision_function(self, X: ArrayLike) -> FloatArray | np.floating[Any]:
        """The logits z^O: the last layer's output, before the output map (eq. 1b / eq. 10b).

        Parameters
        ----------
        X : array_like, shape (N, n_inputs) or (n_inputs,)

        Returns
        -------
        ndarray, shape (N,) for one output, (N, n_outputs) otherwise
            Without the batch axis for a single sample x (a scalar for one output).

        Examples
        --------
        >>> from fastnn import MLP
        >>> net = MLP.from_weights([([[1], [1]], [-1, -3]), ([-1, 2], 0.5)],
        ...                        activation="step", output="sigmoid")
        >>> net.decision_function([[2.0], [4.0]])
        array([-0.5,  1.5])
        """
        X, single = self._inputs(X)
        return self._shape_out(self._logits(X), single)

    def predict_proba(self, X: ArrayLike) -> FloatArray | np.floating[Any]:
        """u^O = g_out(z^O): P(y = 1 | x) for a sigmoid output (eq. 3), P(y = k | x) for softmax
        (eq. 5), the prediction itself for identity (eq. 7).

        Parameters
        ----------
        X : array_like, shape (N, n_inputs) or (n_inputs,)

        Returns
        -------
        ndarray, shape (N, K) for softmax, (N,) for one sigmoid or identity output,
        (N, n_outputs) otherwise
            Without the batch axis for a single sample x.

        Examples
        --------
        >>> from fastnn import MLP
        >>> net = MLP.from_weights([([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])], output="softmax")
        >>> net.predict_proba([[0.0, 0.0], [1.0, 0.0]])
        array([[0.5       , 0.5       ],
               [0.73105858, 0.26894142]])
        """
        X, single = self._inputs(X)
        if F._backend == "cython":  # all layers and the output map in one compiled call
            P = _kernels.network(X, self.layers, self.output)
            if P is not None:
                return self._shape_out(P, single)
        return self._shape_out(self._output_map(self._logits(X)), single)

    def predict(self, X: ArrayLike) -> NDArray[Any] | np.generic:
        """Hard decisions: z^O >= 0 for sigmoid (eq. 4), argmax_k z_k^O for softmax (eq. 6),
        y_hat = z^O for identity (eq. 7).

        Parameters
        ----------
        X : array_like, shape (N, n_inputs) or (n_inputs,)

        Returns
        -------
        ndarray
            Labels 0..K-1 (softmax, int) or 0/1 (sigmoid, int64), shape (N,) (or (N, d) for d
            sigmoid outputs); the predictions (N,) or (N, d) for identity. A single sample x
            gives its label (a scalar) or its (d,) predictions.

        Examples
        --------
        >>> from fastnn import MLP
        >>> net = MLP.from_weights([([[1.0, -1.0]], [0.0])], output="identity")
        >>> net.predict([[1.0, 0.0], [0.0, 2.0]])  # y_hat = x_1 - x_2
        array([ 1., -2.])
        """
        X, single = self._inputs(X)
        Z = self._logits(X)
        if self.output == "softmax":
            pred: NDArray[np.intp] = Z.argmax(axis=1)
            return pred[0] if single else pred
        if self.output == "sigmoid":
            return self._shape_out((Z >= 0).astype(np.int64), single)
        return self._shape_out(Z, single)

    # -- loss and gradients ---------------------------------------------------------------

    def loss(self, X: ArrayLike, y: ArrayLike, reduction: str = "mean") -> Loss:
        """The loss L (eq. 16 with the g_loss of eq. 17, 18 or 20) of the batch.

        Parameters
        ----------
        X : array_like, shape (N, n_inputs) or (n_inputs,)
        y : array_like
            Labels 0..K-1 (softmax), 0/1 (sigmoid; (N, d) for d outputs) or targets (N,) /
            (N, d) (identity).
        reduction : {"mean", "sum", "none"}
            "sum" is the notes' L, "mean" L / N, "none" the N per-sample losses.

        Returns
        -------
        loss : scalar of the model's dtype, or ndarray (N,) for reduction="none"

        Examples
        --------
        >>> from fastnn import MLP
        >>> net = MLP.from_weights([([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])], output="softmax")
        >>> float(net.loss([[0.0, 0.0]], [1]))  # eq. 18: ln(e^0 + e^0) - 0
        0.6931471805599453
        """
        X, single = self._inputs(X)
        y = self._targets(y, X.shape[0], single=single)
        loss = self._loss(self._logits(X), y, reduction)
        return loss.reshape(()) if single and reduction == "none" else loss

    @overload
    def _loss(self, Z: FloatArray, y: NDArray[Any], reduction: str,
              return_grad: Literal[False] = ...) -> Loss: ...
    @overload
    def _loss(self, Z: FloatArray, y: NDArray[Any], reduction: str,
              return_grad: Literal[True]) -> tuple[Loss, FloatArray]: ...
    def _loss(self, Z: FloatArray, y: NDArray[Any], reduction: str,
              return_grad: bool = False) -> Loss | tuple[Loss, FloatArray]:
        """The loss (and dL/dZ) on the last layer's output Z (N, d) with validated targets."""
        reduction = _v.reduction(reduction)
        if self.loss_name == "cross_entropy":
            return F.cross_entropy(Z, y, reduction=reduction, return_grad=return_grad)
        if self.loss_name == "squared_error":
            return F.squared_error(Z, y, reduction=reduction, return_grad=return_grad)
        # eq. 17 on each of the d sigmoid outputs (d > 1: multi-label), summed per sample
        N, d = Z.shape
        res: Any = F.binary_cross_entropy(Z.reshape(-1), y.reshape(-1), reduction="none",
                                          return_grad=return_grad)
        dZ: Any  # dL/dZ, None without return_grad
        losses, dZ = res if return_grad else (res, None)
        losses = losses.reshape(N, d).sum(axis=1, dtype=np.float64)
        if reduction == "none":
            loss = losses.astype(Z.dtype)
        else:
            loss = Z.dtype.type(losses.sum() / (N if reduction == "mean" else 1))
            if return_grad and reduction == "mean":
                dZ = dZ / Z.dtype.type(N)
        return (loss, cast(FloatArray, dZ).reshape(N, d)) if return_grad else loss

    def gradients(self, X: ArrayLike, y: ArrayLike, reduction: str = "mean"
                  ) -> list[tuple[FloatArray, FloatArray | None]]:
        """dL/dW_l and dL/db_l of every layer by backpropagation along the computation graph
        (section 3): L -> z^O, then for each layer z -> (W, b, u_prev) (eq. 13) and
        u_prev -> z_prev.

        Parameters
        ----------
        X : array_like, shape (N, n_inputs) or (n_inputs,)
        y : array_like
            The targets, as for ``loss``.
        reduction : {"mean", "sum"}
            The gradient of L (eq. 16, "sum") or of L / N ("mean").

        Returns
        -------
        list of (dW, db) per layer
            Of the shapes of (W, b); db is None for a layer without bias.

        Examples
        --------
        y_hat = w^T x + b with squared error (eq. 20): dL/dw = 2 (y_hat - y) x and
        dL/db = 2 (y_hat - y):

        >>> from fastnn import MLP
        >>> net = MLP.from_weights([([[1.0, -1.0]], [0.0])], output="identity")
        >>> net.gradients([[1.0, 0.0]], [0.0], reduction="sum")
        [(array([[2., 0.]]), array([2.]))]
        """
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum' for gradients, got {reduction!r}")
        X, single = self._inputs(X)
        y = self._targets(y, X.shape[0], single=single)
        inputs, outputs = [], []
        U = X
        for layer in self.layers:
            inputs.append(U)
            U = F.linear(U, layer.W, layer.b, layer.activation)
            outputs.append(U)
        dU: Any  # dL/dU of the layer below; None once the first layer is done
        _, dU = self._loss(U, y, reduction, return_grad=True)  # L -> last layer's output
        grads = []
        for l in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[l]
            dU, dW, db = F.linear_backward(dU, inputs[l], layer.W, outputs[l], layer.activation,
                                           need_dX=l > 0)
            grads.append((dW, db if layer.b is not None else None))
        return grads[::-1]

    # -- training and persistence ---------------------------------------------------------

    def fit(self, X: ArrayLike, y: ArrayLike, *, epochs: int = 10, batch_size: int = 32,
            lr: float = 0.01, optimizer: str = "sgd", momentum: float = 0.0,
            nesterov: bool = False, weight_decay: float = 0.0, shuffle: bool = True,
            sample_weight: ArrayLike | None = None,
            validation_data: tuple[ArrayLike, ArrayLike] | None = None,
            early_stopping: bool = False, patience: int = 10, random_state: SeedLike = None,
            verbose: bool = False, lr_schedule: str | Callable[[int], float] = "constant",
            beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
            warm_start: bool = False,
            callback: Callable[[int, History], bool | None] | None = None) -> History:
        """Train by mini-batch SGD (eq. 21), optionally with momentum / Nesterov, or Adam.

        The parameters are those of ``fastnn.training.fit`` (which see), with this model.

        Returns
        -------
        History
            Also kept as ``history_``.

        Examples
        --------
        >>> from fastnn import MLP
        >>> from fastnn.datasets import load_digits
        >>> X, y = load_digits()
        >>> net = MLP(64, 32, 10, random_state=0)
        >>> history = net.fit(X / 16, y, epochs=5, lr=0.1, momentum=0.9, random_state=0)
        >>> history.epochs, history.loss[-1] < history.loss[0]
        (5, True)
        """
        from .training import fit

        return fit(self, X, y, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                   momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                   shuffle=shuffle, sample_weight=sample_weight, validation_data=validation_data,
                   early_stopping=early_stopping, patience=patience, random_state=random_state,
                   verbose=verbose, lr_schedule=lr_schedule, beta1=beta1, beta2=beta2, eps=eps,
                   warm_start=warm_start, callback=callback)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model (architecture, dtype, weights, optimizer state) to a .npz file,
        atomically: a temporary file in the same folder, then a rename (through a symlink, to
        its target; an existing file's mode is kept). See ``fastnn.serialization.save``.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (conventionally ``.npz``); ``fastnn.load`` reads it back.

        Examples
        --------
        >>> import fastnn
        >>> net = fastnn.MLP(4, 8, 3, random_state=0)
        >>> net.save("net.npz")
        >>> fastnn.load("net.npz")  # doctest: +ELLIPSIS
        MLP([
          Linear(4, 8, 'relu', dtype='float32'),
          Linear(8, 3, 'identity', dtype='float32')
        ], loss='cross_entropy')
        """
        from .serialization import save

        save(self, path)


class MLP(Sequential):
    """A multi-layer perceptron: hidden layers of one activation, then the output layer.

    Parameters
    ----------
    n_inputs : int
        N_i, the input dimension.
    hidden : int or sequence of int
        The widths of the hidden layers (N_h for the notes' one hidden layer); () for none.
    n_outputs : int
        N_o: 1 for binary classification (sigmoid), K for K classes (softmax), d for regression.
    activation : {"relu", "sigmoid", "tanh", "step", "identity", "exp"}
        g_act of the hidden layers.
    output : {"softmax", "sigmoid", "identity"}
        g_out, which fixes the loss (eq. 18, 17, 20).
    dtype : {"float32", "float64"}
    random_state : int or None
        Seeds the weight initialisation.

    Examples
    --------
    >>> from fastnn import MLP
    >>> net = MLP(64, 128, 10, random_state=0)
    >>> [layer.W.shape for layer in net.layers]
    [(128, 64), (10, 128)]
    """

    activation: str

    def __init__(self, n_inputs: int, hidden: int | Sequence[int], n_outputs: int, *,
                 activation: str = "relu", output: str = "softmax", dtype: DTypeLike = "float32",
                 random_state: SeedLike = None) -> None:
        n_inputs = check_count(n_inputs, "n_inputs")
        n_outputs = check_count(n_outputs, "n_outputs")
        hidden = (list(hidden) if isinstance(hidden, (list, tuple, np.ndarray))
                  else [cast(int, hidden)])  # an int (else check_count says what is wrong)
        hidden = [check_count(h, "hidden") for h in hidden]
        if output not in LOSS_OF_OUTPUT:
            raise ValueError(f"output must be one of {tuple(LOSS_OF_OUTPUT)}, got {output!r}")
        activation = _v.activation(activation)
        dtype = check_dtype(dtype)
        rng = _v.rng(random_state)
        widths = [n_inputs, *hidden, n_outputs]
        acts = [activation] * len(hidden) + ["identity"]
        layers = [Linear(widths[l], widths[l + 1], acts[l], dtype=dtype, random_state=rng)
                  for l in range(len(acts))]
        super().__init__(layers, LOSS_OF_OUTPUT[output])
        self.activation = activation

    @classmethod
    def from_weights(cls: type[_MLP], weights: Iterable[tuple[ArrayLike, ArrayLike | None]],
                     activation: str = "relu", output: str = "softmax") -> _MLP:
        """The network with exactly these weights (copied), as the notes build them by hand.

        Parameters
        ----------
        weights : sequence of (W, b) pairs
            [(W_H, b_H), (W_O, b_O)] (any depth), each W of shape (n_out, n_in) as in the
            notes (a 1-D W is a single unit's row, a scalar b its bias); b may be None.
        activation : {"relu", "sigmoid", "tanh", "step", "identity", "exp"}
            g_act of the hidden layers.
        output : {"softmax", "sigmoid", "identity"}
            g_out, which fixes the loss (eq. 18, 17, 20).

        Returns
        -------
        MLP
            float32 if every array is float32, else float64.

        Examples
        --------
        The notes' section 1, problem 1 (hard threshold units, threshold output, eq. 4):

        >>> from fastnn import MLP
        >>> net = MLP.from_weights([([[1], [1]], [-1, -3]), ([-1, 2], 0.5)],
        ...                        activation="step", output="sigmoid")
        >>> net.predict([[0.0], [2.0], [4.0]])
        array([1, 0, 1])
        """
        weights = list(weights)
        if not weights or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in weights):
            raise TypeError("weights must be a non-empty list of (W, b) pairs")
        if output not in LOSS_OF_OUTPUT:
            raise ValueError(f"output must be one of {tuple(LOSS_OF_OUTPUT)}, got {output!r}")
        arrays = [np.asarray(a) for pair in weights for a in pair if a is not None]
        dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
        acts = [_v.activation(activation)] * (len(weights) - 1) + ["identity"]
        layers = [Linear.from_arrays(W, b, act, dtype=dtype) for (W, b), act in zip(weights, acts)]
        net = cls.__new__(cls)
        Sequential.__init__(net, layers, LOSS_OF_OUTPUT[output])
        net.activation = activation
        return net
