"""A fully connected layer: z = W u + b, u' = g(z) (eq. 1; eq. 10 for a batch)."""

from __future__ import annotations

import numbers
from typing import Any, TypeVar, cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _validation as _v
from . import functional as F
from .backends import native
from ._typing import FloatArray, SeedLike

__all__ = ["Linear"]

DTYPES = ("float32", "float64")

_Layer = TypeVar("_Layer", bound="Linear")


def check_dtype(dtype: DTypeLike) -> np.dtype[np.floating[Any]]:
    """'float32' or 'float64', however spelled (a NumPy dtype or type, ">f8", "=f4"), as the
    native-order NumPy dtype: the kernels read a model's arrays in the machine's byte order."""
    try:
        # np.dtype(None) would be float64
        dt: np.dtype[Any] | None = None if dtype is None else np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    native: np.dtype[np.floating[Any]] = np.dtype(dt.name)
    return native


def aligned_copy(A: ArrayLike, dtype: DTypeLike) -> FloatArray:
    """A C-ordered copy of ``A`` as ``dtype`` whose data starts on a 64-byte boundary (a cache
    line). NumPy puts a large array 16 bytes past one; the compiled kernels then read every
    vector of W across two lines: one sample's layer (matrix-vector product) ~10 % slower
    (784 x 256 at batch 1), and fastnn's own X W^T runs at 185-195 GFLOP/s a core instead of
    250-258 (16 to 256 rows, 784 -> 256, X at NumPy's offset as well)."""
    A = np.asarray(A)
    dtype = np.dtype(dtype)
    buf = np.empty(A.size * dtype.itemsize + 64, np.uint8)
    start = -buf.ctypes.data % 64
    out = buf[start:start + A.size * dtype.itemsize].view(dtype).reshape(A.shape)
    out[...] = A
    return out


def read_only(A: FloatArray) -> FloatArray:
    """``A`` made read-only for good: the array that owns its memory first (a view of a
    read-only array cannot be made writeable again), then ``A``."""
    owner = A
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    owner.flags.writeable = False
    A.flags.writeable = False
    return A


def writable(A: np.ndarray, dtype: np.dtype[Any]) -> FloatArray:
    """``A`` itself if a native loop may write it in place, else a C-ordered copy of ``dtype``
    (on a cache line boundary, see ``aligned_copy``)."""
    flags = A.flags
    if type(A) is np.ndarray and A.dtype == dtype and flags.c_contiguous and flags.aligned \
            and flags.writeable:
        return A
    return aligned_copy(A, dtype)


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (TypeError for a non-integer or bool, else ValueError)."""
    if type(value) is not int and (  # (the common case first: an ABC check costs 0.2 us)
            isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class Linear:
    """A fully connected layer with an activation: U = g(X W^T + B) (eq. 10a).

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths; ``W`` has shape (n_out, n_in), ``b`` shape (n_out,).
    activation : {"identity", "step", "sigmoid", "relu", "tanh", "exp"}
    bias : bool
        Whether the layer has a bias ``b`` (``b`` is None otherwise).
    dtype : {"float32", "float64"}
    random_state : int, numpy.random.Generator or None
        Seeds the uniform initialisation of ``W`` and ``b`` on (-bound, bound). ``b`` and
        the ``W`` of non-ReLU units take scikit-learn's Glorot bound, sqrt(6 / (n_in + n_out))
        (sqrt(2 / (n_in + n_out)) for sigmoid units); the ``W`` of ReLU units takes He et
        al.'s sqrt(6 / n_in) (variance 2 / n_in, which keeps the scale of ReLU activations
        from layer to layer). The estimators keep scikit-learn's draws exactly.

    Examples
    --------
    >>> from fastnn import Linear
    >>> layer = Linear(2, 3, "relu", random_state=0)
    >>> layer.W.shape, layer.b.shape, layer.W.dtype
    ((3, 2), (3,), dtype('float32'))
    """

    W: FloatArray
    b: FloatArray | None
    activation: str
    _packed: tuple[FloatArray, FloatArray] | None  # (freeze) W, and W^T in panels

    def __init__(self, n_in: int, n_out: int, activation: str = "identity", bias: bool = True, *,
                 dtype: DTypeLike = "float32", random_state: SeedLike = None) -> None:
        n_in = check_count(n_in, "n_in")
        n_out = check_count(n_out, "n_out")
        self.activation = _v.activation(activation)
        dtype = check_dtype(dtype)
        rng = _v.rng(random_state)
        bound = np.sqrt((2.0 if self.activation == "sigmoid" else 6.0) / (n_in + n_out))
        w_bound = np.sqrt(6.0 / n_in) if self.activation == "relu" else bound
        self.W = aligned_copy(rng.uniform(-w_bound, w_bound, (n_out, n_in)), dtype)
        self.b = rng.uniform(-bound, bound, n_out).astype(dtype) if _v.flag(bias, "bias") else None

    @classmethod
    def from_arrays(cls: type[_Layer], W: ArrayLike, b: ArrayLike | None = None,
                    activation: str = "identity", *, dtype: DTypeLike | None = None) -> _Layer:
        """A layer with exactly the given weights (copied), as the notes' hand-built networks.

        Parameters
        ----------
        W : array_like, shape (n_out, n_in)
            The notes' W (eq. 1, eq. 10); a 1-D ``W`` is one unit's row, as the notes write
            W^O = [-1, 2]. Must be finite.
        b : array_like, shape (n_out,), optional
            The biases (a scalar for one unit); None for a layer without bias.
        activation : {"identity", "step", "sigmoid", "relu", "tanh", "exp"}
        dtype : {"float32", "float64"}, optional
            Default: float32 if the arrays are float32, else float64.

        Returns
        -------
        Linear

        Examples
        --------
        >>> from fastnn import Linear
        >>> Linear.from_arrays([-1, 2], 0.5)  # the output unit of section 1, problem 1
        Linear(2, 1, 'identity', dtype='float64')
        """
        (W_arr, b_arr), common = _v.real_arrays((W, "W"), (b, "b"), optional=("b",))
        dtype = common if dtype is None else check_dtype(dtype)
        if W_arr.ndim == 1:
            W_arr = W_arr.reshape(1, -1)
        W_arr = _v.finite(aligned_copy(_v.as_float(W_arr, "W", dtype, (2,)), dtype), "W")
        layer = cls.__new__(cls)
        layer.activation = _v.activation(activation)
        layer.W = W_arr
        layer.b = None
        if b_arr is not None:
            b_arr = _v.finite(_v.as_float(b_arr.reshape(-1), "b", dtype, (1,)).copy(), "b")
            _v.expect_shape(b_arr, "b", (W_arr.shape[0],), f"(n_out,) with n_out = {W_arr.shape[0]} from W")
            layer.b = b_arr
        return layer

    @property
    def n_in(self) -> int:
        """The number of inputs, N_in (``W.shape[1]``)."""
        return cast(int, self.W.shape[1])  # (NumPy types shapes as tuple[Any, ...])

    @property
    def n_out(self) -> int:
        """The number of units, N_out (``W.shape[0]``)."""
        return cast(int, self.W.shape[0])

    @property
    def dtype(self) -> np.dtype[np.floating[Any]]:
        """The dtype of ``W`` and ``b``: float32 or float64."""
        return self.W.dtype

    def parameters(self) -> list[FloatArray]:
        """The trainable arrays, the layer's own (not copies).

        Returns
        -------
        list of ndarray
            [W, b], or [W] without a bias.
        """
        return [self.W] if self.b is None else [self.W, self.b]

    def freeze(self: _Layer) -> _Layer:
        """Fix the layer's weights for serving predictions, as ONNX Runtime fixes a model's
        when it opens a session.

        ``W`` and ``b`` become new read-only arrays of the same values. A float32 layer of
        at least 128 units also keeps W^T packed in panels of 128 units, each one stretch of
        memory that a sample's product reads at the speed of the core's cache (1.6 times
        the speed of W's rows read beside the sample, on the machine of BENCHMARKS.md), and
        that a batch's product takes as they are (BLAS would copy W into such panels on
        every call), at the cost of a second copy of W's memory. The model's predictions use it while ``W``
        is that read-only array; the results differ from an unfrozen layer's in rounding
        only.

        Training (``fit``, ``train_on_batch``, an optimizer's step) replaces the read-only
        arrays by writeable copies and so thaws the layer; writing into a frozen ``W`` raises
        NumPy's ValueError ("assignment destination is read-only"): assign a new array
        instead (``layer.W = layer.W.copy()``). Pickles and saved models hold the weights,
        not the packed copy.

        Returns
        -------
        Linear
            The layer itself.

        Examples
        --------
        >>> from fastnn import Linear
        >>> layer = Linear(2, 3, "relu", random_state=0).freeze()
        >>> layer.W.flags.writeable
        False
        """
        W = read_only(aligned_copy(self.W, self.dtype))
        packed = native().packed_weights(W)
        if packed is not None:
            packed = read_only(aligned_copy(packed, W.dtype))
        if self.b is not None:
            self.b = read_only(aligned_copy(self.b, self.dtype))
        self.W = W
        self._packed = None if packed is None else (W, packed)
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_packed", None)  # (a frozen layer's packed W^T: rebuilt by freeze)
        return state

    def forward(self, X: ArrayLike) -> FloatArray:
        """U = g(X W^T + B) (eq. 10a; one sample: eq. 1a), fused in one kernel.

        Parameters
        ----------
        X : array_like, shape (N, n_in) or (n_in,)

        Returns
        -------
        U : ndarray, shape (N, n_out) or (n_out,), the layer's dtype

        Examples
        --------
        >>> from fastnn import Linear
        >>> Linear.from_arrays([[1.0], [1.0]], [-1.0, -3.0], "step").forward([2.0])
        array([1., 0.])
        """
        return F.linear(X, self.W, self.b, self.activation)

    def __repr__(self) -> str:
        bias = "" if self.b is not None else ", bias=False"
        return (f"Linear({self.n_in}, {self.n_out}, {self.activation!r}{bias}, "
                f"dtype='{self.dtype.name}')")
