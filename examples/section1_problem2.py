"""Section 1, problem 2 of the notes: a 1-2-1 threshold network that fits four points
==================================================================================

Data x = [0, 1, 3, 5], y = [0, 0, 1, 0]; the notes' network has units 1{x >= 2}, 1{x >= 4}
(W^H = [1, 1]^T, b^H = [-2, -4]) and z^O = u_1 - 2 u_2 - 0.5 (W^O = [1, -2], b^O = -0.5).
The script prints Table 1 of the notes, every row, for the four training points and the
test point x = 3.5 of part (c), all computed by fastnn, and draws the hidden units and
y_hat over x (figure ``section1_problem2.png``).

Typos in the notes' Table 1, corrected here by following the math (eq. 1, 2, 4): the second
row's label reads z_i2 = x - 2 but is z_i2 = x - 4; the fourth reads u_i1 = g(z_i2) but is
u_i2 = g(z_i2); the fifth reads z^O = u_i1 - 2 u_i1 - 0.5 but is z^O = u_i1 - 2 u_i2 - 0.5;
and the test column's z_i2 at x = 3.5 is 3.5 - 4 = -0.5, not 0.5 (its u_i2 = 0 is right).

Run it from the repository's folder::

    python examples/section1_problem2.py [--out DIR] [--no-plot] [--show]
"""

import argparse
import os

import numpy as np

from fastnn import MLP
from fastnn.datasets import notes_problem2


def parse_args(argv, doc):
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--out", default=".", help="folder for the figures (default: .)")
    parser.add_argument("--no-plot", action="store_true", help="print only; no matplotlib")
    parser.add_argument("--show", action="store_true",
                        help="also show the figures (matplotlib's plt.show)")
    return parser.parse_args(argv)


def fmt(v):
    """A table entry as the notes print it: integers without decimals."""
    return f"{v:g}"


def main(argv=None):
    args = parse_args(argv, __doc__)
    p = notes_problem2()
    net = MLP.from_weights([(p["W_H"], p["b_H"]), (p["W_O"], p["b_O"])],
                           activation="step", output="sigmoid")
    x = np.append(p["x"], p["x_test"])  # the four training points, then the test point
    t = net.forward(x[:, None])  # eq. 1
    zH, uH, zO = t.z[0], t.u[0], t.z[1][:, 0]
    y_hat = net.predict(x[:, None])  # eq. 4

    print("Section 1, problem 2")
    print("(a) W^H = [1, 1]^T, b^H = [-2, -4], W^O = [1, -2], b^O = -0.5: "
          "z^H = (x - 2, x - 4), u^H = (1{x >= 2}, 1{x >= 4}),")
    print("    z^O = 1{x >= 2} - 2 1{x >= 4} - 0.5, y_hat = 1 exactly for x in [2, 4)")
    print("(b), (c) Table 1 (training points, then the test point):")
    print()
    rows = [
        ("x_i", x),
        ("z_i1 = x - 2", zH[:, 0]),
        ("z_i2 = x - 4", zH[:, 1]),
        ("u_i1 = g_act(z_i1)", uH[:, 0]),
        ("u_i2 = g_act(z_i2)", uH[:, 1]),
        ("z_i^O = u_i1 - 2 u_i2 - 0.5", zO),
        ("y_hat_i = g_out(z_i^O)", y_hat),
        ("y_i", list(p["y"]) + [None]),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}  {'Training':^27} | {'Test':>5}")
    for name, values in rows:
        cells = ["" if v is None else fmt(v) for v in values]
        print(f"{name:{width}}  " + " ".join(f"{c:>6}" for c in cells[:4]) + f" | {cells[4]:>5}")
    print()
    fits = bool(np.array_equal(y_hat[:4], p["y"]))
    print(f"y_hat_i = y_i on all four training points: {fits}")
    print(f"(c) prediction at the test point x = {p['x_test']:g}: y_hat = {y_hat[4]}")
    print("note: the notes' row labels z_i2 = x - 2, u_i1 = g(z_i2) and")
    print("      z^O = u_i1 - 2 u_i1 - 0.5 are typos for z_i2 = x - 4, u_i2 = g(z_i2) and")
    print("      z^O = u_i1 - 2 u_i2 - 0.5, and the test column's z_i2 is 3.5 - 4 = -0.5")
    print("      (the notes print 0.5); the table above follows the math")

    if not args.no_plot:
        import matplotlib.pyplot as plt

        from fastnn.plot import hidden_units

        fig = plt.figure(figsize=(10, 4), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        hidden_units(net, (-1, 6), ax=ax1)
        ax1.set_title(r"hidden units: $z_j^H$ (dashed), $u_j^H$ (solid)")
        xs = np.linspace(-1, 6, 701)
        ax2.plot(xs, net.decision_function(xs[:, None]), "-", label="$z^O$")
        ax2.plot(xs, net.predict(xs[:, None]), "-", lw=2, label=r"$\hat{y}$")
        ax2.plot(p["x"], p["y"], "ko", ms=7, label="training $(x_i, y_i)$")
        ax2.plot([p["x_test"]], [y_hat[4]], "r*", ms=14, label=r"test $x = 3.5$, $\hat{y}$")
        ax2.axhline(0, color="0.5", lw=0.8)
        ax2.set(xlabel="$x$", title=r"$z^O$, $\hat{y}$ and the data")
        ax2.grid(True, alpha=0.3)
        ax2.legend(loc="lower left")
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "section1_problem2.png")
        fig.savefig(path, dpi=100)
        print(f"saved {path}")
        if args.show:
            plt.show()
        else:
            plt.close(fig)
    return {"x": x, "z_H": zH, "u_H": uH, "z_O": zO, "y_hat": y_hat, "fits": fits}


# %%
# Run as a script, ``main()`` reads the command line, prints what this page shows below and,
# unless ``--no-plot``, draws the figure and saves it in ``--out``.

if __name__ == "__main__":
    main()
