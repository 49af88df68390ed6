"""Train the notes' one-hidden-layer network on the bundled 8x8 handwritten digits
===============================================================================

Beyond the notes' worked problems: their K-class network (section 1: N_i = 64 pixels, a ReLU
hidden layer of N_h = 128 units, N_o = K = 10 softmax outputs, eq. 5) trained as section 3
describes, by mini-batch SGD (eq. 21, here with momentum 0.9) on the categorical
cross-entropy (eq. 18), in float32. The data are ``fastnn.datasets.load_digits`` (1,797
images), pixel values 0..16 scaled by 1/16, with a fixed stratified 25% test split. The script
prints the per-epoch progress, the test accuracy and the fit time, and saves the learning
curve (figure ``train_digits.png``).

Run it from the repository's folder::

    python examples/train_digits.py [--out DIR] [--no-plot] [--show]
"""

import argparse
import os
import time

import numpy as np

from fastnn import MLP
from fastnn.datasets import load_digits, train_test_split


def parse_args(argv, doc):
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--out", default=".", help="folder for the figures (default: .)")
    parser.add_argument("--no-plot", action="store_true", help="print only; no matplotlib")
    parser.add_argument("--show", action="store_true",
                        help="also show the figures (matplotlib's plt.show)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv, __doc__)
    X, y = load_digits(dtype="float32")
    X = X / np.float32(16)  # pixels 0..16 -> [0, 1]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0,
                                                        stratify=True)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8 = 64 pixels, "
          f"10 classes")
    model = MLP(64, 128, 10, activation="relu", output="softmax", dtype="float32",
                random_state=0)
    start = time.perf_counter()
    history = model.fit(X_train, y_train, epochs=30, batch_size=32, lr=0.1, momentum=0.9,
                        random_state=0, validation_data=(X_test, y_test), verbose=True)
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(model.predict(X_test) == y_test))  # eq. 6 decisions
    print(f"test accuracy: {accuracy:.4f} ({int(round(accuracy * len(y_test)))}/{len(y_test)})")
    print(f"fit time: {seconds:.3f} s for {history.epochs} epochs "
          f"({sum(history.seconds):.3f} s in the training epochs themselves)")

    if not args.no_plot:
        import matplotlib.pyplot as plt

        from fastnn.plot import learning_curve

        fig = plt.figure(figsize=(7, 4.5), layout="constrained")
        ax = learning_curve(history, ax=fig.add_subplot())
        ax.set_title(f"MLP(64, 128, 10) on digits: test accuracy {accuracy:.3f}")
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "train_digits.png")
        fig.savefig(path, dpi=100)
        print(f"saved {path}")
        if args.show:
            plt.show()
        else:
            plt.close(fig)
    return {"accuracy": accuracy, "seconds": seconds, "history": history}


# %%
# Run as a script, ``main()`` reads the command line, prints what this page shows below and,
# unless ``--no-plot``, draws the figure and saves it in ``--out``.

if __name__ == "__main__":
    main()
