"""Section 1, problem 5 of the notes: the batch layer computations in NumPy, vs fastnn.functional
==============================================================================================

The notes' solution writes, for a batch X (N, N_i) without for-loops:

* (a) the hidden layer (eq. 10a) with sigmoid units, ``Zh = X.dot(WH.T) + bh[None, :]``,
  ``Uh = 1/(1+np.exp(-Zh))``;
* (b) a binary output layer (eq. 10b, sigmoid output eq. 3) with a weight vector Wo (N_h,)
  and a scalar bo, ``Zo = Uh.dot(Wo) + bo``, ``Uo = 1/(1+np.exp(-Zo))``;
* (c) a K-class output layer (eq. 10b, softmax eq. 5), ``Zo = Uh.dot(Wo.T) + bo[None,:]``,
  ``expZo = np.exp(Zo)``, ``Uo = expZo / np.sum(expZo,axis=1)[:,None]``.

The script runs these snippets and fastnn.functional's ``linear`` / ``sigmoid`` / ``softmax``
on the same random batch, in float64 and float32, on the compiled kernels and on the NumPy
reference backend, and prints the largest differences.

Run it from the repository's folder::

    python examples/section1_problem5.py [--out DIR] [--no-plot]   (no figure)
"""

import argparse

import numpy as np

import fastnn
from fastnn import functional as F

TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def parse_args(argv, doc):
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--out", default=".", help="unused: this problem has no figure")
    parser.add_argument("--no-plot", action="store_true", help="unused: this problem has no figure")
    parser.add_argument("--show", action="store_true", help="unused: this problem has no figure")
    return parser.parse_args(argv)


def notes_snippets(X, WH, bh, wo, bo, WoK, boK):
    """The notes' code, verbatim apart from the names of the two output layers."""
    # (a) hidden layer, eq. 10a
    Zh = X.dot(WH.T) + bh[None, :]
    Uh = 1/(1+np.exp(-Zh))
    # (b) binary output, eq. 10b + eq. 3
    Zo = Uh.dot(wo) + bo
    Uo_binary = 1/(1+np.exp(-Zo))
    # (c) K-class output, eq. 10b + eq. 5
    Zo = Uh.dot(WoK.T) + boK[None,:]
    expZo = np.exp(Zo)
    Uo_softmax = expZo / np.sum(expZo,axis=1)[:,None]
    return Uh, Uo_binary, Uo_softmax


def fastnn_layers(X, WH, bh, wo, bo, WoK, boK):
    Uh = F.linear(X, WH, bh, "sigmoid")  # (a): fused g(X W^T + B)
    Uo_binary = F.sigmoid(F.linear(Uh, wo[None, :], np.array([bo], dtype=X.dtype)))[:, 0]  # (b)
    Uo_softmax = F.softmax(F.linear(Uh, WoK, boK))  # (c)
    return Uh, Uo_binary, Uo_softmax


def main(argv=None):
    parse_args(argv, __doc__)
    rng = np.random.default_rng(5)
    N, N_i, N_h, K = 256, 20, 30, 5
    data = [rng.standard_normal((N, N_i)),  # X
            rng.standard_normal((N_h, N_i)) / np.sqrt(N_i), rng.standard_normal(N_h),  # WH, bh
            rng.standard_normal(N_h) / np.sqrt(N_h), rng.standard_normal(),  # wo, bo
            rng.standard_normal((K, N_h)) / np.sqrt(N_h), rng.standard_normal(K)]  # WoK, boK
    print("Section 1, problem 5: the notes' NumPy snippets vs fastnn.functional")
    print(f"random batch: N = {N}, N_i = {N_i}, N_h = {N_h}, K = {K}")
    print()
    print(f"{'dtype':8} {'backend':8} {'(a) hidden Uh':>14} {'(b) sigmoid Uo':>15} "
          f"{'(c) softmax Uo':>15}")
    worst = {}
    for dtype in ("float64", "float32"):
        args = [np.asarray(a, dtype=dtype) for a in data]
        args[4] = args[4].dtype.type(args[4])  # bo stays a scalar
        expected = notes_snippets(*args)
        for backend in ("cython", "numpy"):
            with fastnn.use_backend(backend):
                got = fastnn_layers(*args)
            errs = [float(np.max(np.abs(g.astype(np.float64) - e))) for g, e in zip(got, expected)]
            assert all(g.dtype == np.dtype(dtype) and g.shape == e.shape
                       for g, e in zip(got, expected))
            worst[dtype] = max(worst.get(dtype, 0.0), *errs)
            print(f"{dtype:8} {backend:8} " + " ".join(f"{e:>14.2e} " for e in errs))
    ok = all(worst[d] <= TOLERANCE[d] for d in worst)
    print()
    print(f"max |fastnn - notes| float64 = {worst['float64']:.2e}, "
          f"float32 = {worst['float32']:.2e}: {'PASS' if ok else 'FAIL'} "
          f"(tolerance {TOLERANCE['float64']:g} / {TOLERANCE['float32']:g})")
    return {"max_error": worst, "ok": ok}


# %%
# Run as a script, ``main()`` reads the command line and prints what this page shows below.

if __name__ == "__main__":
    main()
