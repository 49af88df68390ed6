"""fastnn: the neural networks of the course notes as fast, typed Cython kernels for the CPU.

``fastnn.functional`` (also ``fastnn.F``) holds the validated kernels, ``fastnn.reference``
the same functions in plain NumPy (the correctness oracle).
"""

from . import functional, reference
from . import functional as F
from .functional import get_backend, set_backend, use_backend

__version__ = "0.1.0"

__all__ = ["F", "functional", "get_backend", "reference", "set_backend", "use_backend"]
