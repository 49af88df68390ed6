"""fastnn: the neural networks of the course notes as fast, typed Cython kernels for the CPU.

``fastnn.functional`` (also ``fastnn.F``) holds the validated kernels, ``fastnn.reference``
the same functions in plain NumPy (the correctness oracle); ``Linear``, ``Sequential`` and
``MLP`` are the models, trained by ``fit`` in native code.
"""

from . import functional, reference
from . import functional as F
from .functional import get_backend, set_backend, use_backend
from .layers import Linear
from .network import MLP, Sequential, Trace
from .serialization import load
from .training import History

__version__ = "0.1.0"

__all__ = [
    "F",
    "History",
    "Linear",
    "MLP",
    "Sequential",
    "Trace",
    "functional",
    "get_backend",
    "load",
    "reference",
    "set_backend",
    "use_backend",
]
