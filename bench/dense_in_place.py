"""A large float64 X fed to a float32 model (issue 17, item 4): peak memory above the data and
time, one fit (or prediction) per fresh process.

    python bench/dense_in_place.py WHAT [--rows N] [--memmap] [--data PATH]

WHAT is ``MLP`` (``MLP(784, 100, 10).fit(X, y, epochs=1, batch_size=200, optimizer="adam")``),
``MLPClassifier`` (``MLPClassifier(hidden_layer_sizes=(100,), max_iter=1)``) or ``predict``
(``MLP(784, 100, 10).predict_proba(X)``), on an N x 784 float64 X (200,000 rows: 1.25 GB)
of uniform values with 10 classes, kept in ``--data`` (made once, if missing). The process
loads X (``--memmap``: maps it read-only), imports fastnn and scikit-learn, notes its RSS,
then runs WHAT and prints the fit time, the epoch's own time (``history.seconds``) and the
peak RSS (``ru_maxrss``, what ``/usr/bin/time -v`` calls Maximum resident set size) above
that RSS. Run each WHAT in a process of its own, alternating builds, with the machine's
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.
"""

import argparse
import os
import resource
import sys
import time
import warnings

import numpy as np


def _rss_mb():
    """This process's resident memory now (Linux), in MB; None elsewhere."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return None


def _peak_mb():
    """This process's peak resident memory (ru_maxrss), in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # (bytes on macOS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("what", choices=["MLP", "MLPClassifier", "predict"])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--memmap", action="store_true", help="X as a read-only np.memmap")
    parser.add_argument("--data", default=os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                       "fastnn-dense-in-place"))
    args = parser.parse_args(argv)
    x_path, y_path = (os.path.join(args.data, f"{name}{args.rows}.npy") for name in "Xy")
    if not os.path.exists(x_path):
        os.makedirs(args.data, exist_ok=True)
        rng = np.random.default_rng(0)
        X = rng.random((args.rows, 784))
        np.save(x_path, X)
        np.save(y_path, X[:, :10].argmax(axis=1))
        del X
        print(f"made {x_path}; run again to measure")
        return None
    X = np.load(x_path, mmap_mode="r" if args.memmap else None)
    y = np.load(y_path)
    if args.memmap:
        X.max()  # (the file's pages in, as the loaded array's are)
    import fastnn
    from fastnn import MLPClassifier  # (scikit-learn imported before the base is taken)

    warnings.filterwarnings("ignore")
    base = _rss_mb()
    start = time.perf_counter()
    epoch = float("nan")
    if args.what == "MLP":
        history = fastnn.MLP(784, 100, 10, random_state=0).fit(
            X, y, epochs=1, batch_size=200, optimizer="adam", lr=1e-3, random_state=0)
        epoch = history.seconds[0]
    elif args.what == "MLPClassifier":
        MLPClassifier(hidden_layer_sizes=(100,), max_iter=1, random_state=0).fit(X, y)
    else:
        fastnn.MLP(784, 100, 10, random_state=0).predict_proba(X)
    seconds = time.perf_counter() - start
    above = _peak_mb() - base
    x_mb = X.nbytes / 2**20
    print(f"{args.what}{' (memmap)' if args.memmap else ''}: X {x_mb:.0f} MB, RSS with X "
          f"{base:.0f} MB, peak above it {above:.0f} MB ({above / x_mb:.1%} of X), "
          f"{seconds:.2f} s in all, epoch {epoch:.2f} s")
    return above


if __name__ == "__main__":
    main()
