"""Type stubs of ``fastnn._kernels``, the entry of the compiled native layer (it gathers what
Python calls from fastnn._layers, _inputs, _losses, _inference, _train, _parallel, _blas,
_tuning).

Nothing in the extension validates its arguments (``linear`` excepted: it returns None for
anything outside its fast path): callers pass C-contiguous float32/float64 arrays of one
dtype and matching shapes, labels as intp, sample weights as float64.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

_FloatArray = NDArray[np.floating[Any]]
_IntArray = NDArray[np.integer[Any]]
_Out = TypeVar("_Out", bound=NDArray[np.floating[Any]])
_LayerState = tuple[_FloatArray, _FloatArray | None] | None

ACTIVATION_CODES: dict[str, int]
REDUCTION_CODES: dict[str, int]
LOSS_CODES: dict[str, int]
OPTIMIZER_CODES: dict[str, int]
OUTPUT_CODES: dict[str, int]
CHECKED: bool  # built with FASTNN_CHECKED=1 (Cython's bounds checks on)

def linear(X: object, W: object, b: object, activation: object, out: object) -> _FloatArray | None:
    """U = g(X W^T + B) (eq. 10a) for 2-D C-contiguous arrays of one float dtype, or None
    for anything else (the caller then validates in Python)."""

def network(X: object, layers: object, output: object,
            finite: bool = ...) -> _FloatArray | None:
    """g_out(g_L(... g_1(X W_1^T + B_1) ...)) for ``layers`` (objects with W, b, activation)
    and g_out in "identity", "sigmoid", "softmax"; None outside the common case (2-D
    C-contiguous arrays of one float dtype, chained shapes): the caller takes the general path.
    ``finite``: also None unless X is a C array of the layers' dtype with every value finite."""

def linear_backward(
    dU: _FloatArray, X: _FloatArray, W: _FloatArray, U: _FloatArray, code: int, need_dX: bool
) -> tuple[_FloatArray | None, _FloatArray, _FloatArray]:
    """(dX or None, dW, db) for U = g(X W^T + b) given dU = dL/dU; 2-D batches."""

def linear_backward_fast(
    dU: object, X: object, W: object, U: object, activation: object, need_dX: object
) -> tuple[_FloatArray | None, _FloatArray, _FloatArray] | None:
    """``linear_backward`` for 2-D C-contiguous arrays of one float dtype, a known activation
    and a bool ``need_dX``, or None for anything else (the caller then validates in Python)."""

def activate(Z: _FloatArray, code: int, out: _Out) -> _Out:
    """out = g(Z) elementwise; returns ``out``."""

def activation_grad(U: _FloatArray, code: int, out: _Out) -> _Out:
    """out = g'(Z) from U = g(Z), elementwise; returns ``out``."""

def softmax(Z: _FloatArray, take_log: bool, out: _Out) -> _Out:
    """out = softmax(Z) (eq. 5) or log_softmax(Z), row by row of a 2-D Z; returns ``out``."""

def cross_entropy(
    Z: _FloatArray, y: NDArray[np.intp], losses: _FloatArray, dZ: _FloatArray | None,
    scale: float,
) -> float:
    """Per-sample eq. 18 losses into ``losses``, scale * gradient into dZ; the float64 sum."""

def binary_cross_entropy(
    z: _FloatArray, y: _FloatArray, losses: _FloatArray, dz: _FloatArray | None, scale: float
) -> float:
    """Per-sample eq. 17 losses into ``losses``, scale * gradient into dz; the float64 sum."""

def poisson(Z: _FloatArray, Y: _FloatArray, losses: _FloatArray, dZ: _FloatArray | None,
            scale: float) -> float:
    """Half the Poisson deviance (log link) per sample into ``losses``, e^z - y times scale
    into dZ unless None; the float64 sum."""

def squared_error(
    Z: _FloatArray, Y: _FloatArray, losses: _FloatArray, dZ: _FloatArray | None, scale: float
) -> float:
    """Per-sample eq. 20 losses into ``losses``, scale * gradient into dZ; the float64 sum."""

def gemm_path() -> int:
    """fastnn's own float32 product: 2 (AVX-512), 1 (AVX2 + FMA) or 0 (none: BLAS)."""

def panel_units() -> int:
    """The units a panel of a frozen float32 layer's packed W^T holds (Linear.freeze)."""

def own_small_products(flag: bool | None = None) -> bool:
    """Whether fastnn's own float32 product also takes the small products (up to 2^20
    multiply-adds); ``flag`` sets it (once, at import)."""

def hold_blas() -> None:
    """BLAS on one thread until the matching release_blas() (counted: the last restores)."""

def release_blas() -> None: ...

def drive_blas_threads(functions: list[tuple[int, int]]) -> None:
    """The (get, set) thread-count C functions of the BLAS libraries, by address."""

def tuning() -> dict[str, Any]:
    """fastnn's tuning thresholds {name: value} (fastnn._tuning.NOTES says what each trades)."""

def all_finite(a: _FloatArray, nonnegative: bool = False) -> bool:
    """Whether no entry of the C-contiguous float array ``a`` is inf or NaN."""

def sum_squares(arrays: list[_FloatArray]) -> float:
    """sum ||A||^2 over the arrays, in float64 (8 lanes, a fixed order; any layout)."""

def copy_arrays(dst: list[_FloatArray], src: list[_FloatArray]) -> None:
    """``dst[i][...] = src[i]`` for each pair (the same shapes and dtypes)."""

def all_finite_arrays(arrays: list[_FloatArray], nonnegative: list[bool]) -> bool:
    """``all_finite(A, nonneg)`` of every pair of the two lists, in one call."""

def finite_input(X: object, W: _FloatArray) -> bool:
    """Whether X is a model's input in the common case (a 2-D C array of W's dtype, native
    order, aligned, rows >= 1, W.shape[1] columns), every value finite."""

def plain_labels(y: object, N: int, K: int) -> bool:
    """Whether y is a classifier's labels in the common case (a 1-D C array of intp, native
    order, aligned, N labels in 0..K-1)."""

def readable_finite_rows(X: object, single: bool) -> bool:
    """Whether X is a 2-D float32/float64 ndarray the kernels read where it lies (aligned,
    native byte order, strides of whole elements) and ``finite_rows(X, single)``."""

def finite_rows(X: _FloatArray, single: bool) -> bool:
    """Whether every entry of the 2-D float32/float64 array X (aligned, native byte order, any
    strides) is finite, and stays so as float32 when ``single``."""

def sparse_linear(data: _FloatArray, indices: _IntArray, indptr: _IntArray, K: int,
                  W: _FloatArray, b: _FloatArray | None, code: int,
                  out: _FloatArray | None) -> _FloatArray:
    """U = g(X W^T + B) (eq. 10a) for the CSR X (data, indices, indptr) of K columns."""

def sparse_linear_backward(
    dU: _FloatArray, data: _FloatArray, indices: _IntArray, indptr: _IntArray, K: int,
    W: _FloatArray, U: _FloatArray, code: int, need_dX: bool
) -> tuple[_FloatArray | None, _FloatArray, _FloatArray]:
    """(dX or None, dW, db) for U = g(X W^T + b), X the CSR matrix (data, indices, indptr)."""

def penalized_gradient(
    grad: _FloatArray, theta: _FloatArray, n: int, a: float
) -> tuple[NDArray[np.float64], float]:
    """(grad + a theta on the first n entries, in float64; sum of their squares)."""

def shuffle(perm: NDArray[np.intp], seed: int) -> None:
    """Shuffle ``perm`` in place (Fisher-Yates on the splitmix64 stream of ``seed``)."""

def num_threads() -> int:
    """The number of threads fastnn's parallel work may use."""

def set_num_threads(n: int) -> None:
    """Let fastnn's parallel work use at most n threads (1..64)."""

def pool_info() -> dict[str, int]:
    """(Tests) {"workers": threads started in this process, "forks": forks since load}."""

class _Loop:  # a cdef class: one fit's native state, built from a fastnn.backends.TrainSpec
    def __init__(self, spec: Any) -> None: ...
    team_stretches: int  # (stretches on the team; the objective's calls, one step each)
    alone_stretches: int
    disbanded: int
    team_speed: float
    alone_speed: float
    @property
    def t(self) -> int:
        """Optimizer steps taken (Adam's bias correction uses it)."""
    @t.setter
    def t(self, value: int) -> None: ...
    def bind(self, X: NDArray[Any], Y: NDArray[Any],
             sample_weight: NDArray[np.float64] | None) -> None:
        """Go on with new data of the shapes and dtypes the loop was built for."""
    @property
    def transposed(self) -> bool:
        """(Tests, diagnostics) whether the first layer is held transposed in an epoch."""

class EpochRunner(_Loop):
    """Mini-batch epochs in native code over the spec's arrays (updated in place)."""
    def run_epoch(self, perm: NDArray[np.intp], lr: float, reload: bool = True,
                  guard: bool = False, progress: Callable[[int], object] | None = None
                  ) -> float:
        """Train on the samples in the order ``perm`` in mini-batches; the summed (weighted)
        loss, or a non-finite number as soon as one batch diverges (``guard``: the arrays
        are then put back as they were); ``progress(samples done)`` after each stretch."""

class Objective(_Loop):
    """The full-batch loss and its gradient (the lbfgs solver's objective)."""
    def loss_grad(self, norm: float) -> float:
        """Forward, loss and backward over all N samples (batch_size >= N), no update: the
        gradient of sum_i w_i loss_i / norm into the gradient arrays; sum_i w_i loss_i."""
