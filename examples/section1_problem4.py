"""Section 1, problem 4 of the notes: architecture choices for three problems, built with MLP
==========================================================================================

* (a) 20 x 20 grey-scale images of the letters 'a'-'z': N_i = 400, N_o = 26, softmax (eq. 5);
* (b) 120 speech features (MFCCs), male or female: N_i = 120, N_o = 1, sigmoid (eq. 3);
* (c) a stock price from the last five days' averages: N_i = 5, N_o = 1, identity (eq. 7).

N_h and g_act are free in all three: the script picks a width and an activation for each,
builds the networks with ``fastnn.MLP``, prints their layer shapes, output maps and losses,
and runs each on a random batch to show the output shapes.

Run it from the repository's folder::

    python examples/section1_problem4.py [--out DIR] [--no-plot]   (no figure)
"""

import argparse

import numpy as np

from fastnn import MLP


def parse_args(argv, doc):
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--out", default=".", help="unused: this problem has no figure")
    parser.add_argument("--no-plot", action="store_true", help="unused: this problem has no figure")
    parser.add_argument("--show", action="store_true", help="unused: this problem has no figure")
    return parser.parse_args(argv)


# (problem, N_i, N_h (free), N_o, g_act (free), g_out)
ARCHITECTURES = [
    ("(a) letters a-z from 20x20 images", 400, 100, 26, "relu", "softmax"),
    ("(b) male/female from 120 MFCCs", 120, 32, 1, "relu", "sigmoid"),
    ("(c) stock price from 5 daily averages", 5, 8, 1, "tanh", "identity"),
]


def main(argv=None):
    parse_args(argv, __doc__)
    rng = np.random.default_rng(0)
    print("Section 1, problem 4 (N_h and g_act are free choices; N_i, N_o and g_out are not)")
    shapes = {}
    for name, n_in, n_h, n_out, act, out in ARCHITECTURES:
        net = MLP(n_in, n_h, n_out, activation=act, output=out, random_state=0)
        print()
        print(f"{name}: N_i = {n_in}, N_h = {n_h}, N_o = {n_out}, g_act = {act}, "
              f"g_out = {net.output}, loss = {net.loss_name}")
        n_params = 0
        for l, layer in enumerate(net.layers):
            kind = "hidden" if l < len(net.layers) - 1 else "output"
            n_params += layer.W.size + layer.b.size
            then = f", then g_out = {net.output}" if kind == "output" else ""
            print(f"  {kind} layer {l}: W {layer.W.shape}, b {layer.b.shape}, "
                  f"activation {layer.activation}{then}")
        X = rng.standard_normal((4, n_in)).astype(np.float32)
        P = net.predict_proba(X)
        sums = f", rows sum to {np.round(P.sum(axis=1), 5).tolist()}" if out == "softmax" else ""
        print(f"  {n_params} parameters; predict_proba on a batch of 4 -> shape {P.shape}{sums}")
        shapes[name[:3]] = [(layer.W.shape, layer.b.shape) for layer in net.layers]
    return shapes


# %%
# Run as a script, ``main()`` reads the command line and prints what this page shows below.

if __name__ == "__main__":
    main()
