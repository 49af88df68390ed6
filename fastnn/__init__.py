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

from typing import TYPE_CHECKING, Any

# (first: threadpoolctl asks it while the imports run; "as": re-exported, for type checkers)
from ._version import __version__ as __version__

from . import functional, reference
from . import functional as F
from .config import show_config
from .functional import get_backend, set_backend, use_backend
from .layers import Linear
from .network import MLP, Sequential, Trace, load
from .threads import get_num_threads, set_num_threads
from .training import History


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
    "__version__",
]


if TYPE_CHECKING:  # what the lazy attributes below are, for type checkers and IDEs
    # (re-exported by name: strict type checkers take no implicit re-export; not in __all__,
    # where a star import would load scikit-learn, an optional dependency)
    from .estimators import MLPClassifier as MLPClassifier
    from .estimators import MLPRegressor as MLPRegressor


def __getattr__(name: str) -> Any:  # scikit-learn is optional: the estimators load it on first use
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators
        return getattr(estimators, name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
