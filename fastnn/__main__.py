"""Command line: ``python -m fastnn demo``, ``python -m fastnn config`` and
``python -m fastnn bench`` (fastnn against its peers, each in a process of its own;
``bench --help``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence


def demo(args: argparse.Namespace) -> int:
    """Train a 64-128-10 MLP on the bundled digits, natively and on the NumPy reference."""
    import fastnn
    from fastnn.datasets import load_digits, train_test_split

    X, y = load_digits()
    X = X / 16.0  # pixel values 0..16 -> 0..1
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    settings = dict(epochs=args.epochs, batch_size=32, lr=0.1, momentum=0.9, random_state=0)
    print(f"fastnn {fastnn.__version__}: MLP 64-128-10 (relu, softmax) on the 8x8 digits, "
          f"{len(X_train)} training and {len(X_test)} test images, SGD lr 0.1 momentum 0.9, "
          f"batch 32, {args.epochs} epochs, float32\n")
    times = {}
    for backend in ("cython", "numpy"):
        model = fastnn.MLP(64, 128, 10, random_state=0)
        with fastnn.use_backend(backend):
            print(f"-- {backend} backend" + (" (the compiled native loop)" if backend == "cython"
                                              else " (the NumPy reference, batch by batch)"))
            tick = time.perf_counter()
            model.fit(X_train, y_train, validation_data=(X_test, y_test),
                      verbose=backend == "cython", **settings)
            times[backend] = time.perf_counter() - tick
            accuracy = (model.predict(X_test) == y_test).mean()
        print(f"   test accuracy {accuracy:.4f}, fit time {times[backend] * 1e3:.1f} ms\n")
    print(f"the native fit was {times['numpy'] / times['cython']:.1f}x faster than the "
          f"NumPy reference")
    return 0


def config(args: argparse.Namespace) -> int:
    import fastnn

    fastnn.show_config()
    return 0


def bench(args: argparse.Namespace) -> int:
    """fastnn against the NumPy reference, PyTorch, JAX, ONNX Runtime and scikit-learn
    (fastnn.benchmark)."""
    from .benchmark import main as bench_main

    return bench_main(args.bench_args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help="train an MLP on the bundled digits, with timings")
    p.add_argument("--epochs", type=int, default=30)
    p.set_defaults(run=demo)
    p = commands.add_parser("config", help="show versions, BLAS, OpenMP and thread settings")
    p.set_defaults(run=config)
    # everything after "bench" goes to fastnn.benchmark's own parser: this one has no
    # options (no prefix characters) so that "--quick" and "--help" pass through
    p = commands.add_parser("bench", add_help=False, prefix_chars="\0",
                            help="time fastnn against the NumPy reference, PyTorch, JAX, "
                                 "ONNX Runtime and scikit-learn, each in a process of its "
                                 "own; print medians, ratios and the goals' verdicts "
                                 "(bench --help for its options)")
    p.add_argument("bench_args", nargs="*")
    p.set_defaults(run=bench)
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run  # (set_defaults above)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
