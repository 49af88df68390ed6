"""Section 3, problem 1 of the notes: backpropagation for a ReLU network with softmax outputs
==========================================================================================

The notes derive, for K-class classification with the categorical cross-entropy (eq. 18) and
ReLU hidden units, the gradients of L = sum_i g_loss(z_i^O, y_i) (eq. 16) step by step:

    L -> z^O:        dL/dz_ij^O = softmax(z_i^O)_j - r_ij            (r: one-hot, eq. 19)
    z^O -> W^O, b^O: dL/dW_jk^O = sum_i dL/dz_ij^O u_ik^H,  dL/db_j^O = sum_i dL/dz_ij^O
    z^O -> u^H:      dL/du_ik^H = sum_j dL/dz_ij^O W_jk^O
    u^H -> z^H:      dL/dz_ij^H = dL/du_ij^H 1{z_ij^H > 0}
    z^H -> W^H, b^H: dL/dW_jk^H = sum_i dL/dz_ij^H x_ik,    dL/db_j^H = sum_i dL/dz_ij^H

(the notes' sums over i write dL/dz_ik where dL/dz_ij is meant; the formulas above follow
the math). The script evaluates these equations in NumPy, fastnn's ``gradients`` (with
``reduction="sum"``, the notes' L) and central finite differences of ``loss``, on a small
random MLP in float64, on both backends, and prints the largest differences.

Run it from the repository's folder::

    python examples/section3_problem1.py [--out DIR] [--no-plot]   (no figure)
"""

import argparse

import numpy as np

import fastnn
from fastnn import MLP

EPS = 1e-6  # the finite-difference step


def parse_args(argv, doc):
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--out", default=".", help="unused: this problem has no figure")
    parser.add_argument("--no-plot", action="store_true", help="unused: this problem has no figure")
    parser.add_argument("--show", action="store_true", help="unused: this problem has no figure")
    return parser.parse_args(argv)


def notes_backprop(X, y, WH, bH, WO, bO):
    """The notes' backpropagation equations (solution of problem 1), batch form."""
    ZH = X @ WH.T + bH  # eq. 10a
    UH = np.maximum(0, ZH)  # ReLU
    ZO = UH @ WO.T + bO  # eq. 10b
    R = np.eye(WO.shape[0])[y]  # one-hot r_ik, eq. 19
    P = np.exp(ZO - ZO.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)  # softmax, eq. 5
    dZO = P - R  # L -> z^O
    dWO, dbO = dZO.T @ UH, dZO.sum(axis=0)  # z^O -> W^O, b^O
    dUH = dZO @ WO  # z^O -> u^H
    dZH = dUH * (ZH > 0)  # u^H -> z^H
    dWH, dbH = dZH.T @ X, dZH.sum(axis=0)  # z^H -> W^H, b^H
    return [(dWH, dbH), (dWO, dbO)]


def finite_differences(model, X, y):
    """Central differences (L(theta + eps) - L(theta - eps)) / (2 eps) of the summed loss,
    perturbing each weight and bias of the model in place."""
    grads = []
    for layer in model.layers:
        pair = []
        for P in (layer.W, layer.b):
            G = np.empty_like(P)
            for idx in np.ndindex(P.shape):
                keep = P[idx]
                P[idx] = keep + EPS
                up = float(model.loss(X, y, reduction="sum"))
                P[idx] = keep - EPS
                down = float(model.loss(X, y, reduction="sum"))
                P[idx] = keep
                G[idx] = (up - down) / (2 * EPS)
            pair.append(G)
        grads.append(tuple(pair))
    return grads


def max_diff(grads_a, grads_b):
    return max(float(np.max(np.abs(a - b)))
               for pa, pb in zip(grads_a, grads_b) for a, b in zip(pa, pb))


def main(argv=None):
    parse_args(argv, __doc__)
    rng = np.random.default_rng(1)
    N, N_i, N_h, K = 12, 4, 6, 3
    X = rng.standard_normal((N, N_i))
    y = rng.integers(0, K, N)
    model = MLP(N_i, N_h, K, activation="relu", output="softmax", dtype="float64",
                random_state=0)
    (WH, bH), (WO, bO) = model.parameters()
    print("Section 3, problem 1: backpropagation, ReLU hidden layer + softmax / cross-entropy")
    print(f"MLP({N_i}, {N_h}, {K}) in float64, a batch of N = {N}, L = sum over the batch (eq. 16)")
    print()
    notes = notes_backprop(X, y, WH, bH, WO, bO)
    numeric = finite_differences(model, X, y)
    print(f"notes' equations vs central differences (eps = {EPS:g}): "
          f"max error {max_diff(notes, numeric):.2e}")
    errors = {}
    for backend in ("cython", "numpy"):
        with fastnn.use_backend(backend):
            grads = model.gradients(X, y, reduction="sum")
        e_notes, e_fd = errors[backend] = (max_diff(grads, notes), max_diff(grads, numeric))
        print(f"fastnn gradients ({backend:6}) vs notes' equations: max error {e_notes:.2e}; "
              f"vs central differences: max error {e_fd:.2e}")
    for name, (dW, db) in zip(("hidden", "output"), model.gradients(X, y, reduction="sum")):
        print(f"  {name} layer: dL/dW {dW.shape}, dL/db {db.shape}, |dL/dW|_max = "
              f"{np.abs(dW).max():.4f}")
    worst_fd = max(e[1] for e in errors.values())
    worst_notes = max(e[0] for e in errors.values())
    ok = worst_fd < 1e-6 and worst_notes < 1e-12
    print(f"check: backprop = notes' equations (< 1e-12) and = finite differences (< 1e-6): "
          f"{'PASS' if ok else 'FAIL'}")
    return {"max_error_fd": worst_fd, "max_error_notes": worst_notes, "ok": ok}


# %%
# Run as a script, ``main()`` reads the command line and prints what this page shows below.

if __name__ == "__main__":
    main()
