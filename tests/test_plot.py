"""fastnn.plot: lazy matplotlib, and each figure's content (drawn with the Agg backend).

The drawing tests are skipped without matplotlib; the import behaviour is tested always.
"""

import subprocess
import sys

import numpy as np
import pytest

from fastnn import MLP, History
from fastnn.datasets import notes_problem1, notes_problem3
from fastnn.plot import decision_region, hidden_units, learning_curve


def _net(p):
    return MLP.from_weights([(p["W_H"], p["b_H"]), (p["W_O"], p["b_O"])],
                            activation="step", output="sigmoid")


def _history(n=5, validation=True):
    h = History("accuracy")
    h.loss = list(np.linspace(1.0, 0.2, n))
    if validation:
        h.val_loss = list(np.linspace(1.1, 0.4, n))
        h.val_metric = list(np.linspace(0.5, 0.9, n))
    return h


@pytest.fixture
def mpl():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    return matplotlib


@pytest.fixture
def ax(mpl):
    from matplotlib.figure import Figure

    return Figure().add_subplot()


# ---------------------------------------------------------------------------------------
# matplotlib is optional and lazy
# ---------------------------------------------------------------------------------------

def test_importing_fastnn_plot_does_not_import_matplotlib():
    code = ("import sys, fastnn, fastnn.plot, fastnn.datasets\n"
            "assert 'matplotlib' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("draw", [
    lambda: hidden_units(_net(notes_problem1()), (-1, 5)),
    lambda: decision_region(_net(notes_problem3()), (-1, 2), (-1, 2)),
    lambda: learning_curve(_history()),
], ids=["hidden_units", "decision_region", "learning_curve"])
def test_clear_import_error_without_matplotlib(monkeypatch, draw):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r'pip install "fastnn\[plot\]"'):
        draw()


# ---------------------------------------------------------------------------------------
# hidden_units
# ---------------------------------------------------------------------------------------

def test_hidden_units_lines(ax):
    net = _net(notes_problem1())
    assert hidden_units(net, (-1, 5), ax=ax) is ax
    assert len(ax.lines) == 4  # z_1, u_1, z_2, u_2
    (x, z1), (_, u1), (_, z2), (_, u2) = (line.get_data() for line in ax.lines)
    assert x[0] == -1 and x[-1] == 5
    np.testing.assert_array_equal(z1, x - 1)  # the notes' (b)
    np.testing.assert_array_equal(z2, x - 3)
    np.testing.assert_array_equal(u1, (x >= 1).astype(float))  # the notes' (c)
    np.testing.assert_array_equal(u2, (x >= 3).astype(float))


@pytest.mark.parametrize("which, n", [("z", 2), ("u", 2), ("both", 4)])
def test_hidden_units_which(ax, which, n):
    hidden_units(_net(notes_problem1()), [0.0, 1.0, 2.0, 3.0], ax=ax, which=which)
    assert len(ax.lines) == n
    assert all(len(line.get_xdata()) == 4 for line in ax.lines)


def test_hidden_units_rejects_bad_input(ax):
    with pytest.raises(ValueError, match="1 input"):
        hidden_units(_net(notes_problem3()), (-1, 1), ax=ax)
    with pytest.raises(ValueError, match="which"):
        hidden_units(_net(notes_problem1()), (-1, 1), ax=ax, which="w")
    with pytest.raises(ValueError, match="x_range"):
        hidden_units(_net(notes_problem1()), (0.0, np.nan), ax=ax)


def test_new_figure_when_no_axes_given(mpl):
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    for ax in (hidden_units(_net(notes_problem1()), (-1, 5)),
               decision_region(_net(notes_problem3()), (-1, 2), (-1, 2), resolution=20),
               learning_curve(_history())):
        assert isinstance(ax, Axes)
        plt.close(ax.figure)


# ---------------------------------------------------------------------------------------
# decision_region
# ---------------------------------------------------------------------------------------

def test_decision_region_triangle(ax):
    net = _net(notes_problem3())
    assert decision_region(net, (-1, 2), (-1, 2), ax=ax, resolution=300) is ax
    assert len(ax.images) == 1 and len(ax.lines) == 0
    img = np.asarray(ax.images[0].get_array())
    assert img.shape == (300, 300)
    assert set(np.unique(img).tolist()) == {0, 1}
    # the triangle (area 1/2) in the 3 x 3 square
    assert abs(img.mean() - 0.5 / 9) < 0.01
    # origin="lower": row 0 is x2 = -1, column 0 is x1 = -1; the pixel at (0.2, 0.2) is in
    i = j = int((0.2 + 1) / 3 * 300)
    assert img[i, j] == 1 and img[0, 0] == 0 and img[-1, -1] == 0


def test_decision_region_with_region_overlay(ax):
    decision_region(_net(notes_problem3()), (-1, 2), (-1, 2), ax=ax, resolution=50,
                    region=[(0, 0), (1, 0), (0, 1)])
    assert len(ax.images) == 1 and len(ax.lines) == 1
    x, y = ax.lines[0].get_data()
    assert list(zip(x, y)) == [(0, 0), (1, 0), (0, 1), (0, 0)]  # closed outline


@pytest.mark.parametrize("output, n_out", [("softmax", 4), ("identity", 1)])
def test_decision_region_other_outputs(ax, output, n_out):
    net = MLP(2, 8, n_out, output=output, dtype="float64", random_state=0)
    decision_region(net, (-2, 2), (-2, 2), ax=ax, resolution=30)
    img = np.asarray(ax.images[0].get_array())
    assert img.shape == (30, 30)
    if output == "softmax":
        assert set(np.unique(img).tolist()) <= set(range(4))


def test_decision_region_rejects_bad_input(ax):
    with pytest.raises(ValueError, match="2 inputs"):
        decision_region(_net(notes_problem1()), (-1, 1), (-1, 1), ax=ax)
    with pytest.raises(ValueError, match="resolution"):
        decision_region(_net(notes_problem3()), (-1, 1), (-1, 1), ax=ax, resolution=1)
    with pytest.raises(ValueError, match="one prediction per point"):
        decision_region(MLP(2, 3, 2, output="identity"), (-1, 1), (-1, 1), ax=ax)
    with pytest.raises(ValueError, match="region"):
        decision_region(_net(notes_problem3()), (-1, 1), (-1, 1), ax=ax, region=[1, 2, 3])


# ---------------------------------------------------------------------------------------
# learning_curve
# ---------------------------------------------------------------------------------------

def test_learning_curve_with_validation(ax):
    h = _history(7)
    assert learning_curve(h, ax=ax) is ax
    assert len(ax.lines) == 2  # training and validation loss
    assert len(ax.figure.axes) == 2  # the metric's twin axis
    twin = ax.figure.axes[-1]
    assert len(twin.lines) == 1
    np.testing.assert_allclose(ax.lines[0].get_ydata(), h.loss)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), h.val_loss)
    np.testing.assert_allclose(twin.lines[0].get_ydata(), h.val_metric)
    assert list(ax.lines[0].get_xdata()) == list(range(1, 8))


def test_learning_curve_without_validation(ax):
    learning_curve(_history(3, validation=False), ax=ax)
    assert len(ax.lines) == 1 and len(ax.figure.axes) == 1


def test_learning_curve_of_a_real_fit(ax, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    net = MLP(2, 8, 1, output="sigmoid", random_state=0)
    h = net.fit(X, y, epochs=4, lr=0.1, random_state=0, validation_data=(X, y))
    learning_curve(h, ax=ax)
    assert len(ax.lines) == 2 and len(ax.figure.axes[-1].lines) == 1
    ax.figure.savefig(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_learning_curve_rejects_an_empty_history(ax):
    with pytest.raises(ValueError, match="no epochs"):
        learning_curve(History("accuracy"), ax=ax)
