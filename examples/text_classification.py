"""Classify text: a hashed bag of words, fastnn's MLPClassifier next to scikit-learn's
===================================================================================

Beyond the notes' worked problems: text classification, where MLPs on the CPU are used most,
and whose inputs are sparse. The script makes a corpus of documents of invented words, each
about one of 8 topics (``fastnn.datasets.make_documents``: made on the spot, nothing is
downloaded), hashes the words of 3,000 of them into 2^14 columns with scikit-learn's
``HashingVectorizer`` and weighs them by TF-IDF: a CSR matrix with about 120 non-zeros a row. fastnn's
``MLPClassifier`` trains on that matrix as it is, never densified (each non-zero x_ik adds
x_ik times row k of the first layer's W^T, eq. 10a), next to scikit-learn's with the same
parameters (one ReLU hidden layer of 64 units, softmax outputs, Adam, batches of 200, 10
epochs). It
prints each fit's time, the peak memory of the arrays it allocates (``tracemalloc``) and
the held-out accuracy, and draws them side by side (figure ``text_classification.png``).

``--large`` runs at the size of the benchmark's sparse case instead (``python -m fastnn bench
--sparse --only sparse`` times it): 20,000 documents hashed into 2^18 columns, 3 epochs,
where scikit-learn takes over a minute.

Run it from the repository's folder::

    python examples/text_classification.py [--large] [--out DIR] [--no-plot] [--show]
"""

import argparse
import os
import time
import tracemalloc
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

from fastnn import MLPClassifier
from fastnn.datasets import make_documents


def parse_args(argv, doc):
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--large", action="store_true",
                        help="20,000 documents in 2^18 columns (the benchmark's case)")
    parser.add_argument("--out", default=".", help="folder for the figures (default: .)")
    parser.add_argument("--no-plot", action="store_true", help="print only; no matplotlib")
    parser.add_argument("--show", action="store_true",
                        help="also show the figures (matplotlib's plt.show)")
    return parser.parse_args(argv)


def fit(Estimator, params, X, y):
    """(the fitted estimator, its fit time in seconds, the peak of the memory its arrays took
    in MB, which tracemalloc follows: NumPy reports its arrays to it; the time includes the
    tracing, which slows every allocation a little, of either contender)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # (a few epochs, on purpose)
        tracemalloc.start()
        try:
            start = time.perf_counter()
            estimator = Estimator(**params).fit(X, y)
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    return estimator, seconds, peak


def main(argv=None):
    args = parse_args(argv, __doc__)
    n_documents, n_features = (20_000, 2**18) if args.large else (3_000, 2**14)
    documents, y = make_documents(n_documents, n_classes=8, random_state=0)
    # a hashed bag of words weighed by TF-IDF: CSR, float64
    counts = HashingVectorizer(n_features=n_features, alternate_sign=False, norm=None)
    X = TfidfTransformer().fit_transform(counts.transform(documents))
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0,
                                                        stratify=y)
    print(f"{n_documents} documents, 8 topics: X is a {type(X).__name__} of {X.shape[0]} x "
          f"{X.shape[1]} with {X.nnz / X.shape[0]:.0f} non-zeros a row "
          f"({X.data.nbytes / 2**20:.1f} MB of values; dense it would be "
          f"{X.shape[0] * X.shape[1] * 8 / 2**30:.1f} GB)")
    params = dict(hidden_layer_sizes=(64,), solver="adam", max_iter=3 if args.large else 10,
                  batch_size=200, random_state=0)
    results = {}
    for name, Estimator in (("fastnn", MLPClassifier), ("scikit-learn", SklearnMLPClassifier)):
        estimator, seconds, peak = fit(Estimator, params, X_train, y_train)
        accuracy = float(estimator.score(X_test, y_test))
        results[name] = {"seconds": seconds, "peak_mb": peak, "accuracy": accuracy}
        print(f"{name:>12}: fit {seconds:7.2f} s   peak memory {peak:8.1f} MB   "
              f"held-out accuracy {accuracy:.4f}")
    fast, sk = results["fastnn"], results["scikit-learn"]
    print(f"fastnn: {sk['seconds'] / fast['seconds']:.1f}x faster, "
          f"{fast['peak_mb'] / sk['peak_mb']:.2f}x the memory, accuracy "
          f"{fast['accuracy'] - sk['accuracy']:+.4f}")

    if not args.no_plot:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), layout="constrained")
        names = list(results)
        for ax, (key, label) in zip(axes, (("seconds", "fit time (s)"),
                                           ("peak_mb", "peak memory (MB)"),
                                           ("accuracy", "held-out accuracy"))):
            values = [results[n][key] for n in names]
            ax.bar(names, values, color=["tab:blue", "tab:gray"])
            ax.set_title(label)
            for i, v in enumerate(values):
                ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom")
        fig.suptitle(f"MLPClassifier((64,), adam) on {X.shape[0]} x {X.shape[1]} TF-IDF (CSR)")
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "text_classification.png")
        fig.savefig(path, dpi=100)
        print(f"saved {path}")
        if args.show:
            plt.show()
        else:
            plt.close(fig)
    return results


# %%
# Run as a script, ``main()`` reads the command line, prints what this page shows below and,
# unless ``--no-plot``, draws the figure and saves it in ``--out``.

if __name__ == "__main__":
    main()
