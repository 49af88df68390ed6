"""fastnn: the neural networks of the course notes as fast, typed Cython kernels for the CPU.

``fastnn.functional`` (also ``fastnn.F``) holds the validated kernels, ``fastnn.reference``
the same functions in plain NumPy (the correctness oracle); ``Linear``, ``Sequential`` and
``MLP`` are the models, trained by ``fit`` in native code.

Examples
--------
The notes' section 1, problem 2: two hard-threshold units (eq. 2) and a thresholded logit
(eq. 4) that say 1 exactly for x in [2, 4):

>>> import fastnn
>>> net = fastnn.MLP.from_weights([([[1], [1]], [-2, -4]), ([1, -2], -0.5)],
...                               activation="step", output="sigmoid")
>>> net.predict([[0.0], [1.0], [3.0], [5.0], [3.5]])
array([0, 0, 1, 0, 1])
"""

import os
import sys
from typing import Any


def _compiled(folder: str) -> bool:
    return any(name.startswith("_kernels.") and name.endswith((".so", ".pyd"))
               for name in os.listdir(folder))


def _installed_copy(here: str) -> str | None:
    """Where an installed fastnn lies when this one is a source checkout without its compiled
    extension (``python -m fastnn`` run in the repository folder finds the folder first)."""
    if _compiled(here):
        return None
    for entry in sys.path:
        candidate = os.path.join(os.path.abspath(entry or os.curdir), "fastnn")
        if os.path.abspath(candidate) != here and os.path.isfile(
                os.path.join(candidate, "__init__.py")) and _compiled(candidate):
            return candidate
    raise ImportError(
        f"fastnn's compiled extension is not built in {here} and no installed fastnn was "
        "found: run `pip install .` (then use fastnn from anywhere, this folder included), "
        "or build in place with `python setup.py build_ext --inplace`")


_installed = _installed_copy(os.path.dirname(os.path.abspath(__file__)))
if _installed is not None:  # import every submodule from the installed copy instead
    __path__[:] = [_installed]
    __file__ = os.path.join(_installed, "__init__.py")

from . import functional, reference  # noqa: E402
from . import functional as F  # noqa: E402
from .config import show_config  # noqa: E402
from .functional import get_backend, set_backend, use_backend  # noqa: E402
from .layers import Linear  # noqa: E402
from .network import MLP, Sequential, Trace  # noqa: E402
from .serialization import load  # noqa: E402
from .threads import get_num_threads, set_num_threads  # noqa: E402
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
    "get_num_threads",
    "load",
    "reference",
    "set_backend",
    "set_num_threads",
    "show_config",
    "use_backend",
]


def __getattr__(name: str) -> Any:  # scikit-learn is optional: the estimators load it on first use
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators
        return getattr(estimators, name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
