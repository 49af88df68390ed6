"""Section 1, problem 1 of the notes: a 1-2-1 network of hard-threshold units on a scalar x
========================================================================================

W^H = [1, 1]^T, b^H = [-1, -3], W^O = [-1, 2], b^O = 0.5, hard threshold activation (eq. 2)
and threshold output (eq. 4). The script prints the notes' answers (a)-(e) as formulas, a
table of z^H, u^H, z^O and y_hat over a grid of x computed by fastnn, checks the table
against the formulas, and draws the hidden units (figure ``section1_problem1.png``).

Run it from the repository's folder::

    python examples/section1_problem1.py [--out DIR] [--no-plot] [--show]
"""

import argparse
import os

import numpy as np

from fastnn import MLP
from fastnn.datasets import notes_problem1


def parse_args(argv, doc):
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--out", default=".", help="folder for the figures (default: .)")
    parser.add_argument("--no-plot", action="store_true", help="print only; no matplotlib")
    parser.add_argument("--show", action="store_true",
                        help="also show the figures (matplotlib's plt.show)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv, __doc__)
    p = notes_problem1()
    net = MLP.from_weights([(p["W_H"], p["b_H"]), (p["W_O"], p["b_O"])],
                           activation="step", output="sigmoid")
    print("Section 1, problem 1")
    print(f"(a) N_h = {net.layers[0].n_out} hidden units, N_o = {net.n_outputs} output unit")
    print("(b) z^H = W^H x + b^H = (x - 1, x - 3)")
    print("(c) u^H = g_act(z^H) = (1{x >= 1}, 1{x >= 3})          [eq. 2, g(0) = 1]")
    print("(d) z^O = -u_1 + 2 u_2 + 0.5 = 0.5 (x < 1), -0.5 (1 <= x < 3), 1.5 (x >= 3)")
    print("(e) y_hat = 1{z^O >= 0} = 0 for x in [1, 3), 1 otherwise   [eq. 4]")

    x = np.arange(-1.0, 5.01, 0.5)  # includes the jumps x = 1 and x = 3 exactly
    t = net.forward(x[:, None])  # eq. 1: t.z = [z^H, z^O], t.u = [u^H, u^O]
    zH, uH, zO = t.z[0], t.u[0], t.z[1][:, 0]
    y_hat = net.predict(x[:, None])
    print()
    print(f"{'x':>6} {'z_1':>6} {'z_2':>6} {'u_1':>4} {'u_2':>4} {'z^O':>6} {'y_hat':>6}")
    for i in range(len(x)):
        print(f"{x[i]:6.2f} {zH[i, 0]:6.2f} {zH[i, 1]:6.2f} {uH[i, 0]:4.0f} {uH[i, 1]:4.0f} "
              f"{zO[i]:6.2f} {y_hat[i]:6d}")

    # the notes' closed forms (b)-(e), written directly in NumPy
    formulas = {
        "z^H": np.column_stack([x - 1, x - 3]),
        "u^H": np.column_stack([x >= 1, x >= 3]).astype(float),
        "z^O": np.select([x < 1, x < 3], [0.5, -0.5], 1.5),
        "y_hat": np.where((x >= 1) & (x < 3), 0, 1),
    }
    ok = (np.array_equal(zH, formulas["z^H"]) and np.array_equal(uH, formulas["u^H"])
          and np.array_equal(zO, formulas["z^O"]) and np.array_equal(y_hat, formulas["y_hat"]))
    print()
    print(f"check: fastnn matches the notes' formulas (b)-(e) on all {len(x)} x: "
          f"{'PASS' if ok else 'FAIL'}")

    if not args.no_plot:
        import matplotlib.pyplot as plt

        from fastnn.plot import hidden_units

        fig = plt.figure(figsize=(10, 4), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        hidden_units(net, (-1, 5), ax=ax1)
        ax1.set_title(r"hidden units: $z_j^H$ (dashed), $u_j^H = g(z_j^H)$ (solid)")
        xs = np.linspace(-1, 5, 601)
        ax2.plot(xs, net.decision_function(xs[:, None]), "-", label="$z^O$")
        ax2.plot(xs, net.predict(xs[:, None]), "-", lw=2, label=r"$\hat{y}$")
        ax2.axhline(0, color="0.5", lw=0.8)
        ax2.set(xlabel="$x$", title=r"output: $z^O$ and $\hat{y} = 1\{z^O \geq 0\}$")
        ax2.grid(True, alpha=0.3)
        ax2.legend()
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "section1_problem1.png")
        fig.savefig(path, dpi=100)
        print(f"saved {path}")
        if args.show:
            plt.show()
        else:
            plt.close(fig)
    return {"x": x, "z_H": zH, "u_H": uH, "z_O": zO, "y_hat": y_hat, "ok": ok}


# %%
# Run as a script, ``main()`` reads the command line, prints what this page shows below and,
# unless ``--no-plot``, draws the figure and saves it in ``--out``.

if __name__ == "__main__":
    main()
