"""fastnn: the neural networks of the course notes as fast, typed Cython kernels for the CPU.

``fastnn.functional`` (also ``fastnn.F``) holds the validated kernels, ``fastnn.reference``
the same functions in plain NumPy (the correctness oracle); ``Linear``, ``Sequential`` and
``MLP`` are the models, trained by ``fit`` in native code.
"""

import os

# OpenMP threads that spin after a parallel pass steal the core from the BLAS threads of the
# next matrix product; fastnn's parallel passes are large enough to pay for a wake-up instead.
# Set before the extension loads OpenMP; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import functional, reference  # noqa: E402
from . import functional as F  # noqa: E402
from .config import show_config  # noqa: E402
from .functional import get_backend, set_backend, use_backend  # noqa: E402
from .layers import Linear  # noqa: E402
from .network import MLP, Sequential, Trace  # noqa: E402
from .serialization import load  # noqa: E402
from .training import History  # noqa: E402

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
    "show_config",
    "use_backend",
]
