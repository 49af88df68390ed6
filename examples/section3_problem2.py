"""Section 3, problem 2 of the notes: the model y_hat_i = alpha^T exp(W x_i + b), squared loss
===========================================================================================

The notes' computation graph is z_i = W x_i + b, u_i = exp(z_i), y_hat_i = alpha^T u_i,
L = sum_i (y_i - y_hat_i)^2, and backpropagation gives

    dL/dy_hat_i = 2 (y_hat_i - y_i)
    dL/dalpha_j = sum_i 2 (y_hat_i - y_i) u_ij
    dL/dz_ij    = 2 (y_hat_i - y_i) alpha_j exp(z_ij)
    dL/dW_jk    = sum_i dL/dz_ij x_ik,    dL/db_j = sum_i dL/dz_ij

(the notes write dz_ij/dW_jk = u_ik, a typo for x_ik: z_i = W x_i + b). In fastnn the model
is ``Sequential([Linear(d, M, "exp"), Linear(M, 1, bias=False)], loss="squared_error")``:
the second layer's W is alpha^T. The script compares fastnn's ``gradients(...,
reduction="sum")`` with these formulas and with central finite differences, in float64.

Run it from the repository's folder::

    python examples/section3_problem2.py [--out DIR] [--no-plot]   (no figure)
"""

import argparse

import numpy as np

import fastnn
from fastnn import Linear, Sequential

EPS = 1e-6  # the finite-difference step


def parse_args(argv, doc):
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--out", default=".", help="unused: this problem has no figure")
    parser.add_argument("--no-plot", action="store_true", help="unused: this problem has no figure")
    parser.add_argument("--show", action="store_true", help="unused: this problem has no figure")
    return parser.parse_args(argv)


def notes_gradients(X, y, W, b, alpha):
    """The notes' solution (b), in NumPy: (dL/dW, dL/db, dL/dalpha)."""
    Z = X @ W.T + b  # z_i = W x_i + b
    U = np.exp(Z)  # u_ij = exp(z_ij)
    y_hat = U @ alpha  # y_hat_i = alpha^T u_i
    dy = 2 * (y_hat - y)  # dL/dy_hat_i
    dalpha = U.T @ dy  # sum_i dL/dy_hat_i u_ij
    dZ = dy[:, None] * alpha[None, :] * np.exp(Z)  # dL/dz_ij
    dW = dZ.T @ X  # sum_i dL/dz_ij x_ik
    db = dZ.sum(axis=0)  # sum_i dL/dz_ij
    return dW, db, dalpha


def central_difference(model, X, y, P):
    G = np.empty_like(P)
    for idx in np.ndindex(P.shape):
        keep = P[idx]
        P[idx] = keep + EPS
        up = float(model.loss(X, y, reduction="sum"))
        P[idx] = keep - EPS
        down = float(model.loss(X, y, reduction="sum"))
        P[idx] = keep
        G[idx] = (up - down) / (2 * EPS)
    return G


def main(argv=None):
    parse_args(argv, __doc__)
    rng = np.random.default_rng(2)
    N, d, M = 10, 3, 4
    X = 0.5 * rng.standard_normal((N, d))
    y = rng.standard_normal(N)
    model = Sequential([Linear(d, M, "exp", dtype="float64", random_state=0),
                        Linear(M, 1, bias=False, dtype="float64", random_state=1)],
                       loss="squared_error")
    W, b = model.layers[0].W, model.layers[0].b
    alpha = model.layers[1].W[0]  # the output layer's (1, M) weights are alpha^T
    print("Section 3, problem 2: y_hat = alpha^T exp(W x + b) with squared loss, L = sum_i L_i")
    print(f"N = {N} samples, d = {d} inputs, M = {M} hidden (exp) units, float64")
    print("model:", " ".join(repr(model).split()))
    print()
    dW_n, db_n, dalpha_n = notes_gradients(X, y, W, b, alpha)
    numeric = [central_difference(model, X, y, P) for P in (W, b, model.layers[1].W)]
    names = ("dL/dW", "dL/db", "dL/dalpha")
    worst = {"notes": 0.0, "fd": 0.0}
    print(f"{'backend':8} {'gradient':10} {'shape':>7} {'vs notes':>10} {'vs finite diff.':>16}")
    for backend in ("cython", "numpy"):
        with fastnn.use_backend(backend):
            (dW, db), (dA, dA_bias) = model.gradients(X, y, reduction="sum")
        assert dA_bias is None  # the output layer has no bias
        for name, got, ref, num in zip(names, (dW, db, dA[0]), (dW_n, db_n, dalpha_n),
                                       (numeric[0], numeric[1], numeric[2][0])):
            e_notes = float(np.max(np.abs(got - ref)))
            e_fd = float(np.max(np.abs(got - num)))
            worst["notes"] = max(worst["notes"], e_notes)
            worst["fd"] = max(worst["fd"], e_fd)
            print(f"{backend:8} {name:10} {str(got.shape):>7} {e_notes:10.2e} {e_fd:16.2e}")
    ok = worst["notes"] < 1e-12 and worst["fd"] < 1e-6
    print()
    print(f"max error vs the notes' formulas {worst['notes']:.2e}, vs central differences "
          f"(eps = {EPS:g}) {worst['fd']:.2e}: {'PASS' if ok else 'FAIL'}")
    return {"max_error_notes": worst["notes"], "max_error_fd": worst["fd"], "ok": ok}


# %%
# Run as a script, ``main()`` reads the command line and prints what this page shows below.

if __name__ == "__main__":
    main()
