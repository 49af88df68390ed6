"""Figures of the notes' networks: hidden units, decision regions and learning curves.

matplotlib is optional (``pip install "fastnn[plot]"``) and imported only when one of these
functions runs. Each function draws into ``ax`` (a new figure's axes when None) and returns
the Axes; nothing here calls ``plt.show`` or chooses a backend, so the functions work the
same in scripts (Agg), notebooks and GUIs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap

    from .network import Sequential
    from .training import History

__all__ = ["decision_region", "hidden_units", "learning_curve"]


def _axes(ax: Axes | None) -> Axes:
    """``ax``, or the axes of a new pyplot figure; a clear ImportError without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            'fastnn.plot needs matplotlib, which is not installed: pip install "fastnn[plot]"'
        ) from exc
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax


def _grid_1d(x_range: ArrayLike, num: int) -> NDArray[np.float64]:
    x = np.asarray(x_range, dtype=np.float64).reshape(-1)
    if x.size == 2:
        x = np.linspace(x[0], x[1], num)
    if x.size < 2 or not np.isfinite(x).all():
        raise ValueError(f"x_range must be (x_min, x_max) or an array of x values, got {x_range!r}")
    return x


def hidden_units(model: Sequential, x_range: ArrayLike, ax: Axes | None = None, *, layer: int = 0,
                 which: str = "both", num: int = 601) -> Axes:
    """Plot z_j^H and u_j^H (eq. 1a) of a 1-input network as functions of x, one line per unit.

    Parameters
    ----------
    model : fastnn.Sequential
        A network with one input (``model.n_inputs == 1``), e.g. the notes' section 1,
        problems 1 and 2.
    x_range : (x_min, x_max) or array_like of x values
        A pair is sampled at ``num`` evenly spaced points.
    ax : matplotlib Axes, optional
    layer : int, default 0
        Which layer's z and u to draw (0 is the notes' hidden layer H).
    which : {"both", "z", "u"}, default "both"
        "both" draws z_j dashed and u_j solid in unit j's colour: 2 * N_h lines.
    num : int, default 601

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from fastnn import MLP
    >>> from fastnn.plot import hidden_units
    >>> net = MLP.from_weights([([[1], [1]], [-1, -3]), ([-1, 2], 0.5)],
    ...                        activation="step", output="sigmoid")
    >>> ax = hidden_units(net, (-1, 5), ax=Figure().add_subplot())
    >>> len(ax.lines)  # z_1, u_1, z_2, u_2
    4
    """
    if which not in ("both", "z", "u"):
        raise ValueError(f"which must be 'both', 'z' or 'u', got {which!r}")
    if model.n_inputs != 1:
        raise ValueError(f"hidden_units needs a network with 1 input, got {model.n_inputs}")
    ax = _axes(ax)
    x = _grid_1d(x_range, num)
    trace = model.forward(x[:, None])  # the notes' z^H, u^H for every x
    Z, U = trace.z[layer], trace.u[layer]
    for j in range(Z.shape[1]):
        color = f"C{j % 10}"
        if which in ("both", "z"):
            ax.plot(x, Z[:, j], "--", color=color, label=f"$z_{{{j + 1}}}$")
        if which in ("both", "u"):
            ax.plot(x, U[:, j], "-", color=color, lw=2, label=f"$u_{{{j + 1}}}$")
    ax.set_xlabel("$x$")
    ax.set_ylabel("hidden unit value")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    return ax


def decision_region(model: Sequential, xlim: tuple[float, float], ylim: tuple[float, float],
                    ax: Axes | None = None, *, resolution: int = 300,
                    region: ArrayLike | None = None, cmap: str | Colormap | None = None) -> Axes:
    """Show y_hat (``model.predict``, eq. 4 / eq. 6) over a grid of the (x1, x2) plane.

    Parameters
    ----------
    model : fastnn.Sequential
        A network with two inputs (``model.n_inputs == 2``).
    xlim, ylim : (min, max)
        The ranges of x1 (horizontal) and x2 (vertical).
    ax : matplotlib Axes, optional
    resolution : int, default 300
        Pixels along each axis; y_hat is evaluated at their centres.
    region : sequence of (x1, x2) vertices, optional
        A polygon drawn as a closed outline over the image, e.g. the notes' triangle (12),
        ``[(0, 0), (1, 0), (0, 1)]``.
    cmap : matplotlib colormap or name, optional
        Defaults to two colours for 0/1 decisions, "tab10" for classes, "viridis" otherwise.

    Returns
    -------
    matplotlib.axes.Axes
        With one image (y_hat) and, with ``region``, one line.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from fastnn import MLP
    >>> from fastnn.datasets import notes_problem3
    >>> from fastnn.plot import decision_region
    >>> p = notes_problem3()
    >>> net = MLP.from_weights([(p["W_H"], p["b_H"]), (p["W_O"], p["b_O"])],
    ...                        activation="step", output="sigmoid")
    >>> ax = decision_region(net, (-1, 2), (-1, 2), ax=Figure().add_subplot(),
    ...                      region=[(0, 0), (1, 0), (0, 1)])
    >>> len(ax.images), len(ax.lines)
    (1, 1)
    """
    if model.n_inputs != 2:
        raise ValueError(f"decision_region needs a network with 2 inputs, got {model.n_inputs}")
    if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    if region is not None:
        pts = np.asarray(region, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
            raise ValueError("region must be a sequence of (x1, x2) vertices")
    ax = _axes(ax)
    (x0, x1), (y0, y1) = map(float, xlim), map(float, ylim)
    n = int(resolution)
    g1 = x0 + (np.arange(n) + 0.5) * (x1 - x0) / n  # the centres of the image's pixels
    g2 = y0 + (np.arange(n) + 0.5) * (y1 - y0) / n
    G1, G2 = np.meshgrid(g1, g2)  # rows follow x2, columns x1
    y_hat = np.asarray(model.predict(np.column_stack([G1.ravel(), G2.ravel()])))
    if y_hat.ndim != 1:
        raise ValueError("decision_region needs one prediction per point: a softmax classifier "
                         f"or a network with one output, got {model.n_outputs} outputs")
    y_hat = y_hat.reshape(G1.shape)
    if cmap is None:
        from matplotlib.colors import ListedColormap

        if model.output == "sigmoid":
            cmap = ListedColormap(["#f0f0f0", "#4c72b0"])
        else:
            cmap = "tab10" if model.output == "softmax" else "viridis"
    # 0/1 decisions (eq. 4) span the two colours; class k (eq. 6) gets tab10's colour k
    vmin, vmax = {"sigmoid": (0, 1), "softmax": (-0.5, 9.5)}.get(model.output, (None, None))
    ax.imshow(y_hat, origin="lower", extent=(x0, x1, y0, y1), cmap=cmap, vmin=vmin, vmax=vmax,
              interpolation="nearest", aspect="auto")
    if region is not None:
        pts = np.vstack([pts, pts[:1]])  # close the polygon
        ax.plot(pts[:, 0], pts[:, 1], "-", color="C3", lw=1.5, label="region")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(r"$\hat{y}$ over the $(x_1, x_2)$ plane")
    return ax


def learning_curve(history: History, ax: Axes | None = None) -> Axes:
    """Plot a fit's training loss, validation loss and validation metric per epoch.

    Parameters
    ----------
    history : fastnn.History
        What ``fit`` returned: ``loss``, ``val_loss`` and ``val_metric`` per epoch.
    ax : matplotlib Axes, optional
        The losses go on ``ax``; the validation metric (accuracy or R^2) on a twin y axis
        on the right (``ax.figure.axes[-1]``), when there is one.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``, with the loss lines (1, or 2 with validation data).

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> from fastnn import History
    >>> from fastnn.plot import learning_curve
    >>> h = History("accuracy")
    >>> h.loss, h.val_loss, h.val_metric = [1.0, 0.5, 0.3], [1.1, 0.6, 0.5], [0.6, 0.8, 0.9]
    >>> ax = learning_curve(h, ax=Figure().add_subplot())
    >>> len(ax.lines), len(ax.figure.axes[-1].lines)
    (2, 1)
    """
    if not len(history.loss):
        raise ValueError("history has no epochs to plot")
    ax = _axes(ax)
    epochs = np.arange(1, len(history.loss) + 1)
    ax.plot(epochs, history.loss, "-o", ms=3, color="C0", label="training loss")
    handles = list(ax.get_lines())
    if len(history.val_loss):
        handles += ax.plot(epochs[: len(history.val_loss)], history.val_loss, "-s", ms=3,
                           color="C1", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (mean per sample)")
    ax.grid(True, alpha=0.3)
    top = ax  # the legend goes on the topmost axes, so no line crosses it
    if len(history.val_metric):
        metric = getattr(history, "metric", "metric")
        top = ax.twinx()
        handles += top.plot(epochs[: len(history.val_metric)], history.val_metric, "-^",
                            ms=3, color="C2", label=f"validation {metric}")
        top.set_ylabel(f"validation {metric}")
    top.legend(handles=handles, loc="center right")
    return ax
