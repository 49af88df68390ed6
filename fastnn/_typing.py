"""Type aliases of fastnn's annotations (for type checkers and readers; nothing here runs code).

``FloatArray`` is what the kernels compute on and return: an ndarray of float32 or float64
(the functions keep the dtype they are given). ``ArrayLike`` (from ``numpy.typing``) is what
the public functions accept: ndarrays, nested lists, scalars, memoryviews and other buffers,
and any object with an ``__array__`` method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ArrayLike", "FloatArray", "Inputs", "IntArray", "LayerState", "Loss", "OptState",
           "Params", "SeedLike"]

#: an ndarray of float32 or float64
FloatArray = NDArray[np.floating[Any]]
#: a layer's validated input X: a FloatArray, or (the first layer's) a scipy.sparse CSR matrix
#: checked by fastnn._validation.sparse_rows (scipy is not typed: Any)
Inputs = Any
#: an ndarray of integers (class labels, sample indices)
IntArray = NDArray[np.integer[Any]]
#: a reduced loss (a NumPy scalar of the computing dtype) or the per-sample losses ("none")
Loss = Union[np.floating[Any], FloatArray]
#: a model's parameters: per layer (W, b), b None for a layer without bias
Params = list[Tuple[FloatArray, Optional[FloatArray]]]
#: one layer's optimizer state: (W-state, b-state or None), or None when the optimizer keeps none
LayerState = Optional[Tuple[FloatArray, Optional[FloatArray]]]
#: an optimizer's state: two lists (a pair; ``optim.new_state`` makes a tuple, a warm start a
#: list) of per-layer first (velocity, Adam's m) and second (Adam's v) moments
OptState = Sequence[list[LayerState]]
#: what ``numpy.random.default_rng`` takes as a seed
SeedLike = Union[None, int, np.random.SeedSequence, np.random.BitGenerator, np.random.Generator]
