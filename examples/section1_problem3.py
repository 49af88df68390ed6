"""Section 1, problem 3 of the notes: a 2-3-1 threshold network whose y_hat = 1 on a triangle
==========================================================================================

W^H = [[1, 0], [0, 1], [1, 1]], b^H = [0, 0, -1], W^O = [1, 1, -1], b^O = -1.5, hard
threshold units (eq. 2) and threshold output (eq. 4). The notes find y_hat = 1 exactly on the
region (12): x1 >= 0, x2 >= 0, x1 + x2 < 1. The script prints the formulas, checks the claim
with fastnn on a grid of the plane that contains the region's edges (float32 and float64),
and draws the decision region with the triangle (figure ``section1_problem3.png``).

Run it from the repository's folder::

    python examples/section1_problem3.py [--out DIR] [--no-plot] [--show]
"""

import argparse
import os

import numpy as np

from fastnn import MLP
from fastnn.datasets import notes_problem3


def parse_args(argv, doc):
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--out", default=".", help="folder for the figures (default: .)")
    parser.add_argument("--no-plot", action="store_true", help="print only; no matplotlib")
    parser.add_argument("--show", action="store_true",
                        help="also show the figures (matplotlib's plt.show)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv, __doc__)
    p = notes_problem3()
    print("Section 1, problem 3")
    print("(a) z^H = (x1, x2, x1 + x2 - 1), u^H = (1{x1 >= 0}, 1{x2 >= 0}, 1{x1 + x2 >= 1})")
    print("    u_1 = 1 on the half plane x1 >= 0, u_2 = 1 on x2 >= 0, u_3 = 1 on x1 + x2 >= 1")
    print("(b) z^O = u_1 + u_2 - u_3 - 1.5: 0.5 inside the triangle (12), at most -0.5 outside")
    print("    y_hat = 1{z^O >= 0} = 1 exactly on x1 >= 0, x2 >= 0, x1 + x2 < 1   (eq. 12)")
    print()

    # A grid of multiples of 1/64 on [-1, 2]^2: every z is computed exactly in floating point,
    # and the grid holds the edges x1 = 0, x2 = 0 and x1 + x2 = 1, where g(0) = 1 (eq. 2)
    # decides: the edges on the axes are inside the region, the hypotenuse is outside.
    g = np.arange(-64, 129) / 64.0
    X1, X2 = np.meshgrid(g, g)
    X = np.column_stack([X1.ravel(), X2.ravel()])
    inside = (X[:, 0] >= 0) & (X[:, 1] >= 0) & (X[:, 0] + X[:, 1] < 1)  # region (12)
    ok, nets = True, {}
    for dtype in (np.float64, np.float32):
        net = MLP.from_weights([(p["W_H"].astype(dtype), p["b_H"].astype(dtype)),
                                (p["W_O"].astype(dtype), p["b_O"].astype(dtype))],
                               activation="step", output="sigmoid")
        nets[np.dtype(dtype).name] = net
        y_hat = net.predict(X.astype(dtype))
        zO = net.decision_function(X.astype(dtype))
        wrong = int(np.count_nonzero(y_hat != inside))
        ok = ok and wrong == 0
        print(f"{np.dtype(dtype).name}: {len(X)} grid points, {int(inside.sum())} in region (12), "
              f"{int(y_hat.sum())} with y_hat = 1, mismatches: {wrong}; "
              f"z^O inside = {sorted(set(zO[inside].tolist()))}, "
              f"max z^O outside = {zO[~inside].max():g}")
    print(f"check: y_hat = 1 exactly on x1 >= 0, x2 >= 0, x1 + x2 < 1: {'PASS' if ok else 'FAIL'}")
    # the values of the three units and z^O in each piece of the plane
    net = nets["float64"]
    print()
    print(f"{'x1':>6} {'x2':>6} {'u_1':>4} {'u_2':>4} {'u_3':>4} {'z^O':>6} {'y_hat':>6}")
    samples = np.array([[0.25, 0.25], [0.0, 0.0], [0.5, 0.5], [1.0, 1.0], [-0.5, 0.5],
                        [0.5, -0.5], [-0.5, -0.5], [2.0, -0.5]])
    t = net.forward(samples)
    for (a, b), u, z, yh in zip(samples, t.u[0], t.z[1][:, 0], net.predict(samples)):
        print(f"{a:6.2f} {b:6.2f} {u[0]:4.0f} {u[1]:4.0f} {u[2]:4.0f} {z:6.2f} {yh:6d}")

    if not args.no_plot:
        import matplotlib.pyplot as plt

        from fastnn.plot import decision_region

        fig = plt.figure(figsize=(5.5, 5), layout="constrained")
        ax = fig.add_subplot()
        decision_region(net, (-1, 2), (-1, 2), ax=ax, resolution=301,
                        region=[(0, 0), (1, 0), (0, 1)])
        ax.set_title(r"$\hat{y}$ (blue = 1) and the triangle (12)")
        ax.set_aspect("equal")
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "section1_problem3.png")
        fig.savefig(path, dpi=100)
        print(f"saved {path}")
        if args.show:
            plt.show()
        else:
            plt.close(fig)
    return {"ok": ok, "n_inside": int(inside.sum()), "n_points": len(X)}


# %%
# Run as a script, ``main()`` reads the command line, prints what this page shows below and,
# unless ``--no-plot``, draws the figure and saves it in ``--out``.

if __name__ == "__main__":
    main()
