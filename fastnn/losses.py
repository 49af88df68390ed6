"""The losses, in one registry: each name with its output map, its targets, its NumPy
reference, the native kernel that computes it (loss and gradient in one pass, from the
logits) and the scale applied to that kernel.

The notes pair each output map with its loss (eq. 16-20): sigmoid with binary cross-entropy
(eq. 17), softmax with categorical cross-entropy (eq. 18), identity with squared error
(eq. 20). Two more serve scikit-learn's regressors: half the squared error (its objective:
the squared error's kernel at scale 1/2) and half the Poisson deviance with the log link
(output e^z, counts as targets). Adding a loss is one entry here plus its kernel in
fastnn/_losses.pyx (and its case in the training loop, fastnn/_train.pyx).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import reference

__all__ = ["LOSSES", "Loss", "get", "loss_of_output"]


@dataclass(frozen=True)
class Loss:
    """A loss of the registry.

    Attributes
    ----------
    name : str
        The public name (``Sequential(..., loss=name)``, ``F.loss(name, ...)``).
    output : {"sigmoid", "softmax", "identity", "exp"}
        The output map g_out that turns the last layer's output (the logits) into the
        prediction: predict_proba gives g_out(z).
    targets : {"binary", "classes", "values", "counts"}
        What y holds: 0/1 labels, class labels 0..K-1, real values, counts >= 0.
    reference : callable
        The NumPy reference (fastnn.reference), ``ref(Z, y, reduction=, return_grad=)``.
    kernel : int
        The native kernel: 0 binary cross-entropy, 1 cross-entropy, 2 squared error,
        3 Poisson (fastnn._losses; the training loop's codes too).
    scale : float
        The kernel's loss and gradient times this.
    equation : str
        Where the notes define it.
    """

    name: str
    output: str
    targets: str
    reference: Callable[..., Any]
    kernel: int
    scale: float
    equation: str


BCE, CE, SE, POISSON = 0, 1, 2, 3  # the native kernels (fastnn._losses, fastnn._train)

LOSSES: dict[str, Loss] = {
    loss.name: loss for loss in (
        Loss("binary_cross_entropy", "sigmoid", "binary", reference.binary_cross_entropy,
             BCE, 1.0, "eq. 17"),
        Loss("cross_entropy", "softmax", "classes", reference.cross_entropy, CE, 1.0,
             "eq. 18"),
        Loss("squared_error", "identity", "values", reference.squared_error, SE, 1.0,
             "eq. 20"),
        Loss("half_squared_error", "identity", "values", reference.half_squared_error, SE,
             0.5, "eq. 20 / 2"),
        Loss("poisson", "exp", "counts", reference.poisson, POISSON, 1.0,
             "half the Poisson deviance, log link"),
    )
}


def get(name: object) -> Loss:
    """The registry's entry for ``name``, or a ValueError naming the losses."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {name!r}")
    return LOSSES[name]


def loss_of_output(output: object) -> str:
    """The loss the notes pair with an output map (eq. 17, 18, 20; e^z: Poisson)."""
    for loss in LOSSES.values():
        if loss.output == output:
            return loss.name
    raise ValueError(f"output must be one of {tuple(dict.fromkeys(l.output for l in LOSSES.values()))}, "
                     f"got {output!r}")
