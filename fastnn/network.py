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
from typing import Any, Literal, TypeVar, cast, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _validation as _v
from . import backprop, serialization
from . import functional as F
from . import losses as _losses
from ._typing import FloatArray, Inputs, Loss, Params, SeedLike
from .backends import native, ops
from .layers import Linear, check_count, check_dtype, writable
from .optim import Optimizer
from .training import History, _fit, train_on_batch

__all__ = ["MLP", "Sequential", "Trace"]

LOSSES = tuple(_losses.LOSSES)  #: the losses a model may have (fastnn.losses)
OUTPUT_OF_LOSS = {name: loss.output for name, loss in _losses.LOSSES.items()}
#: the loss the notes pair with each output map (eq. 17, 18, 20; e^z: Poisson's)
LOSS_OF_OUTPUT = {output: _losses.loss_of_output(output)
                  for output in dict.fromkeys(OUTPUT_OF_LOSS.values())}

_MLP = TypeVar("_MLP", bound="MLP")
_Seq = TypeVar("_Seq", bound="Sequential")


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

    _file_kind = "Sequential"  # (the model file's "kind")
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
        _losses.get(loss)  # a loss of the registry, or a ValueError naming them
        self.layers = layers
        self.loss_name = loss
        self.history_ = None
        self.optimizer_state_ = None
        self._fit_lock = threading.Lock()
        self._fit_loop: Any = None  # the last fit's native loop (fastnn.training._KeptLoop)

    # -- structure ------------------------------------------------------------------------

    @property
    def loss_spec(self) -> _losses.Loss:
        """The model's loss: its entry of the registry (fastnn.losses)."""
        return _losses.get(self.loss_name)

    @property
    def output(self) -> str:
        """The output map g_out: "sigmoid" (eq. 3), "softmax" (eq. 5), "identity" (eq. 7), or
        "exp" (the Poisson loss's mean e^z)."""
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

    def freeze(self: _Seq) -> _Seq:
        """Fix the weights for serving predictions (each layer's ``Linear.freeze``): read-only
        arrays, and a float32 layer's W^T packed for the products of ``predict``,
        ``predict_proba`` and ``decision_function``. Training thaws the model (its arrays are
        replaced by writeable copies); writing into a frozen ``W`` raises a ValueError.

        Returns
        -------
        Sequential
            The model itself.

        Examples
        --------
        >>> from fastnn import MLP
        >>> net = MLP(784, 256, 10, random_state=0).freeze()
        >>> net.layers[0].W.flags.writeable
        False
        """
        self._check_layers()
        for layer in self.layers:
            layer.freeze()
        return self

    def _check_layers(self) -> None:
        """Every layer's activation known, its W a non-empty 2-D array, shapes chained and
        each b one per unit (a ValueError naming the layer otherwise)."""
        for l, layer in enumerate(self.layers):
            _v.activation(layer.activation, f"layers[{l}].activation")
            W, b = layer.W, layer.b
            if not isinstance(W, np.ndarray) or W.ndim != 2 or 0 in W.shape:
                raise ValueError(f"layers[{l}].W must be a non-empty 2-D array (n_out, n_in), "
                                 f"got {getattr(W, 'shape', type(W).__name__)}")
            if l and W.shape[1] != self.layers[l - 1].W.shape[0]:
                raise ValueError(f"layers[{l}].W takes {W.shape[1]} inputs but layers[{l - 1}] "
                                 f"gives {self.layers[l - 1].W.shape[0]} outputs")
            if b is not None and (not isinstance(b, np.ndarray) or b.shape != (W.shape[0],)):
                raise ValueError(f"layers[{l}].b must have shape ({W.shape[0]},), got "
                                 f"{getattr(b, 'shape', type(b).__name__)}")

    def _layer_arrays(self) -> backprop.Layers:
        """(W, b, activation) per layer as the backends compute on them: the model's dtype,
        C-contiguous (copies where the layer's arrays are not); the model is unchanged."""
        self._check_layers()
        dtype = self.dtype
        return [(np.require(layer.W, dtype, ["C", "A"]),
                 None if layer.b is None else np.require(layer.b, dtype, ["C", "A"]),
                 layer.activation) for layer in self.layers]

    def _trainable_parameters(self) -> Params:
        """The layers' arrays as the native training loop writes them: exact ndarrays of the
        model's dtype, C-contiguous, aligned, writeable, shapes chained. Arrays that are not
        (a read-only array from a Dask worker or np.load(mmap_mode="r"), a float64 W set into
        a float32 model, a Fortran-ordered W) are replaced by such copies; shapes that do not
        chain raise a ValueError naming the layer, and so do arrays shared between layers."""
        self._check_layers()
        dtype = self.dtype
        arrays: list[tuple[str, np.ndarray]] = []  # (name, array) seen so far
        for l, layer in enumerate(self.layers):
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
            W = writable(layer.W, dtype)
            if W is not layer.W:
                layer.W = W
                layer._packed = None  # (a frozen layer thawed: its packed W^T goes)
            if layer.b is not None:
                layer.b = writable(layer.b, dtype)
        return self.parameters()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_fit_lock"]
        state.pop("_fit_loop", None)  # (fit's native workspaces: rebuilt by the next fit)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fit_lock = threading.Lock()
        self._fit_loop = None

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"{type(self).__name__}([\n  {inner}\n], loss={self.loss_name!r})"

    # -- inputs ---------------------------------------------------------------------------

    def _inputs(self, X: ArrayLike, name: str = "X", in_place: bool = False
                ) -> tuple[Inputs, bool]:
        """X as what every method taking X (fit, predict, loss, ...) computes on, and whether
        it was one sample: a finite C-contiguous 2-D array of the model's dtype, or a sparse
        X's CSR rows (``_validation.sparse_rows``: read in place, never densified). With
        ``in_place`` (fit and the predictions), a dense float32/float64 X of another dtype or
        layout (``_validation.readable_rows``: float64 for a float32 model, Fortran order, a
        read-only memmap) is also kept as it lies, its rows converted as they are read."""
        if native().finite_input(X, self.layers[0].W):  # the common case, in one call
            return cast(FloatArray, X), False
        if _v.is_sparse(X):
            return _v.sparse_rows(X, name, self.dtype, self.n_inputs), False
        if in_place:
            A = _v.readable_rows(X)
            if A is not None and A.shape[0] and A.shape[1] == self.n_inputs:
                return _v.finite_rows(A, name, self.dtype), False
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
        targets = self.loss_spec.targets
        if single and targets in ("values", "counts"):
            (arr,), _ = _v.real_arrays((y, name))
            y = arr.reshape(1, -1) if arr.size == self.n_outputs and arr.ndim <= 1 else arr
        if targets == "classes":
            if native().plain_labels(y, N, self.n_outputs):  # the common case, in one call
                return cast("NDArray[np.intp]", y)  # (quoted: NDArray[...] costs ~4 us)
            return _v.class_labels(y, name, N, self.n_outputs)
        if targets == "binary":
            d = self.n_outputs
            if d == 1:  # labels (N,) or (N, 1)
                return _v.binary_labels(y, name, N, self.dtype).reshape(N, 1)
            y = _v.real_array(y, name)  # multi-label: an (N, d) indicator matrix
            y = y.reshape(1, d) if N == 1 and y.shape == (d,) else y  # one sample's labels
            _v.expect_shape(y, name, (N, d), "(N, n_outputs): one 0/1 label per output")
            return _v.binary_labels(y.reshape(-1), name, N * d, self.dtype).reshape(N, d)
        Y = _v.targets(y, name, (N, self.n_outputs), self.dtype)
        if targets == "counts" and (Y < 0).any():
            raise ValueError(f"{name} must hold counts >= 0 for the Poisson loss, found "
                             "negative values")
        return Y

    def _shape_out(self, A: NDArray[Any], single: bool) -> NDArray[Any] | Any:
        """(N, 1) results of a one-output model as (N,); a single sample without its batch axis."""
        if A.shape[1] == 1 and self.output != "softmax":
            A = A[:, 0]
        return A[0] if single else A

    # -- forward --------------------------------------------------------------------------

    def _logits(self, X: Inputs) -> FloatArray:
        """The last layer's output z^O on validated inputs (``_inputs``)."""
        return self._outputs(X, "identity")

    def _outputs(self, X: Inputs, output: str) -> FloatArray:
        """g_out(z^O) (the output map ``output``) on validated inputs (``_inputs``)."""
        layers: list[Linear] = self.layers
        if type(X) is not np.ndarray and _v.is_sparse(X):  # the first layer on the non-zeros
            # (eq. 10a), then dense
            first = layers[0]
            X = ops().linear(X, first.W, first.b, first.activation)
            layers = layers[1:]
            if not layers:
                return ops().output_map(X, output)
        Z = ops().network(X, layers, output)  # in one call where the backend can
        if Z is not None:
            return Z
        U = np.require(X, self.dtype, ["C", "A"])  # (an array read in place: converted)
        for layer in layers:
            U = F.linear(U, layer.W, layer.b, layer.activation)  # eq. 10, fused
        return ops().output_map(U, output)

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
        # eq. 3, 5 or 7 (or e^z) on the model's own (N, d) output
        return ops().output_map(Z, self.output)

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
        # in one call where X is the common case, a finite C array of the model's dtype (rows
        # of n_inputs columns), and the backend has such a call; else None: X is then checked
        # and converted first (``_inputs``, which names what is wrong)
        Z = ops().plain_network(X, self.layers, "identity")
        if Z is not None:
            return self._shape_out(Z, False)
        X, single = self._inputs(X, in_place=True)
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
        P = ops().plain_network(X, self.layers, self.output)  # (as in decision_function)
        if P is not None:
            return self._shape_out(P, False)
        X, single = self._inputs(X, in_place=True)
        return self._shape_out(self._outputs(X, self.output), single)

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
        X, single = self._inputs(X, in_place=True)
        Z = self._logits(X)
        if self.output == "softmax":
            pred: NDArray[np.intp] = Z.argmax(axis=1)
            return pred[0] if single else pred
        if self.output == "sigmoid":
            return self._shape_out((Z >= 0).astype(np.int64), single)
        return self._shape_out(self._output_map(Z), single)  # eq. 7 (or the mean e^z)

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
        X_in, single = self._inputs(X, in_place=True)
        y = self._targets(y, X_in.shape[0], single=single)
        loss = self._loss(self._logits(X_in), y, reduction)
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
        loss = self.loss_spec
        if loss.targets != "binary":
            result: Any = ops().loss(loss, Z, y, reduction, return_grad)
            return cast("Loss | tuple[Loss, FloatArray]", result)
        # eq. 17 on each of the d sigmoid outputs (d > 1: multi-label), summed per sample
        N = Z.shape[0]
        losses, dZ = backprop.loss_gradient(ops(), loss, Z, y, None) if return_grad \
            else (ops().loss(loss, Z.reshape(-1), y.reshape(-1), "none", False).reshape(N, -1)
                  .sum(axis=1, dtype=np.float64).astype(Z.dtype), None)
        if reduction == "none":
            result = losses
        else:
            result = Z.dtype.type(losses.sum(dtype=np.float64) / (N if reduction == "mean" else 1))
            if return_grad and reduction == "mean":
                dZ = dZ / Z.dtype.type(N)
        return (result, cast(FloatArray, dZ)) if return_grad else result

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
        X_in, single = self._inputs(X)
        y = self._targets(y, X_in.shape[0], single=single)
        layers = self._layer_arrays()
        outputs = backprop.forward(ops(), layers, X_in)
        N = X_in.shape[0]
        _, dU = backprop.loss_gradient(  # L -> the last layer's output
            ops(), self.loss_spec, outputs[-1], y,
            np.full(N, 1.0 / N) if reduction == "mean" else None)
        return backprop.backward(ops(), layers, outputs, dU)

    # -- training and persistence ---------------------------------------------------------

    def fit(self, X: ArrayLike, y: ArrayLike, *, epochs: int = 10, batch_size: int = 32,
            lr: float = 0.01, optimizer: str = "sgd", momentum: float = 0.0,
            nesterov: bool = False, weight_decay: float = 0.0, shuffle: bool = True,
            sample_weight: ArrayLike | None = None,
            validation_data: tuple[ArrayLike, ArrayLike] | None = None,
            early_stopping: bool = False, patience: int = 10, random_state: SeedLike = None,
            verbose: int | bool = 0, lr_schedule: str | Callable[[int], float] = "constant",
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
        # (training.fit's arguments in its order: passed by position, ~1 us less a call)
        return _fit(self, X, y, epochs, batch_size, lr, optimizer, momentum, nesterov,
                    weight_decay, shuffle, sample_weight, validation_data, early_stopping,
                    patience, random_state, verbose, lr_schedule, beta1, beta2, eps, warm_start,
                    callback)

    def train_on_batch(self, X: ArrayLike, y: ArrayLike, optimizer: Optimizer, *,
                       sample_weight: ArrayLike | None = None) -> float:
        """One training step on the batch (X, y), for a loop of your own: forward, loss,
        backward and the update of ``optimizer`` in one native call (the step ``fit`` takes).

        Parameters
        ----------
        X, y : array_like
            The batch, as for ``fit``: every row of it is one step's batch.
        optimizer : fastnn.optim.SGD or fastnn.optim.Adam
            Made for this model; it holds the update's state and step count. Its ``lr`` (and
            other hyperparameters) may change between steps.
        sample_weight : array_like (N,), optional

        Returns
        -------
        float
            The batch's mean loss before the update (sum_i w_i g_loss_i / N).

        Raises
        ------
        FloatingPointError
            The loss or the updated weights are not finite: the model and the optimizer keep
            their values from before the step.

        Examples
        --------
        >>> import numpy as np
        >>> from fastnn import MLP
        >>> from fastnn.optim import Adam
        >>> X, y = np.random.default_rng(0).random((64, 2)), np.arange(64) % 2
        >>> net = MLP(2, 8, 2, random_state=0)
        >>> opt = Adam(net, lr=0.01)
        >>> losses = [net.train_on_batch(X[i:i + 16], y[i:i + 16], opt)
        ...           for epoch in range(5) for i in range(0, 64, 16)]
        >>> opt.t
        20
        """
        return train_on_batch(self, X, y, optimizer, sample_weight=sample_weight)

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
        serialization.save(self, path)


def _loss_for(output: object, loss: str | None) -> str:
    """The loss of a model with output map ``output``: the one the notes pair with it, or
    ``loss`` when it has that output map."""
    if output not in LOSS_OF_OUTPUT:
        raise ValueError(f"output must be one of {tuple(LOSS_OF_OUTPUT)}, got {output!r}")
    if loss is None:
        return LOSS_OF_OUTPUT[output]
    if _losses.get(loss).output != output:
        raise ValueError(f"loss {loss!r} goes with the {_losses.get(loss).output!r} output, "
                         f"not {output!r}")
    return loss


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
    output : {"softmax", "sigmoid", "identity", "exp"}
        g_out, which fixes the loss the notes pair with it (eq. 18, 17, 20; e^z: Poisson).
    loss : str, optional
        Another loss of fastnn.losses with the same output map: "half_squared_error" for
        the identity output (scikit-learn's regression objective).
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

    _file_kind = "MLP"
    activation: str

    def __init__(self, n_inputs: int, hidden: int | Sequence[int], n_outputs: int, *,
                 activation: str = "relu", output: str = "softmax", loss: str | None = None,
                 dtype: DTypeLike = "float32", random_state: SeedLike = None) -> None:
        n_inputs = check_count(n_inputs, "n_inputs")
        n_outputs = check_count(n_outputs, "n_outputs")
        hidden = (list(hidden) if isinstance(hidden, (list, tuple, np.ndarray))
                  else [cast(int, hidden)])  # an int (else check_count says what is wrong)
        hidden = [check_count(h, "hidden") for h in hidden]
        loss = _loss_for(output, loss)
        activation = _v.activation(activation)
        dtype = check_dtype(dtype)
        rng = _v.rng(random_state)
        widths = [n_inputs, *hidden, n_outputs]
        acts = [activation] * len(hidden) + ["identity"]
        layers = [Linear(widths[l], widths[l + 1], acts[l], dtype=dtype, random_state=rng)
                  for l in range(len(acts))]
        super().__init__(layers, loss)
        self.activation = activation

    @classmethod
    def from_weights(cls: type[_MLP], weights: Iterable[tuple[ArrayLike, ArrayLike | None]],
                     activation: str = "relu", output: str = "softmax",
                     loss: str | None = None) -> _MLP:
        """The network with exactly these weights (copied), as the notes build them by hand.

        Parameters
        ----------
        weights : sequence of (W, b) pairs
            [(W_H, b_H), (W_O, b_O)] (any depth), each W of shape (n_out, n_in) as in the
            notes (a 1-D W is a single unit's row, a scalar b its bias); b may be None.
        activation : {"relu", "sigmoid", "tanh", "step", "identity", "exp"}
            g_act of the hidden layers.
        output : {"softmax", "sigmoid", "identity", "exp"}
            g_out, which fixes the loss (eq. 18, 17, 20; e^z: Poisson).
        loss : str, optional
            Another loss of fastnn.losses with that output map (see MLP).

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
        loss = _loss_for(output, loss)
        arrays = [np.asarray(a) for pair in weights for a in pair if a is not None]
        dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
        acts = [_v.activation(activation)] * (len(weights) - 1) + ["identity"]
        layers = [Linear.from_arrays(W, b, act, dtype=dtype) for (W, b), act in zip(weights, acts)]
        net = cls.__new__(cls)
        Sequential.__init__(net, layers, loss)
        net.activation = activation
        return net


def load(path: str | os.PathLike[str]) -> Sequential:
    """Read a model written by ``save`` (architecture, dtype, weights, optimizer state).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    MLP or Sequential
        The kind of model that was saved, with its optimizer state (for ``warm_start``).

    Raises
    ------
    ValueError
        The file is not a fastnn model, is truncated, or holds members a model does not
        have, arrays of the wrong shape or dtype, or an incomplete optimizer state (it is
        read member by member, each header checked before its data; nothing is unpickled).
    FileNotFoundError
        There is no such file.

    Examples
    --------
    >>> import numpy as np, fastnn
    >>> net = fastnn.MLP(4, 8, 3, random_state=0)
    >>> net.save("model.npz")
    >>> same = fastnn.load("model.npz")
    >>> X = np.ones((2, 4), np.float32)
    >>> bool((same.predict_proba(X) == net.predict_proba(X)).all())
    True
    """
    kind, loss, layers, optimizer_state = serialization.read(path)
    model: Sequential
    if kind == "MLP":
        model = MLP.__new__(MLP)
        Sequential.__init__(model, layers, loss)
        model.activation = layers[0].activation if len(layers) > 1 else "relu"
    else:
        model = Sequential(layers, loss)
    model.optimizer_state_ = optimizer_state
    return model
