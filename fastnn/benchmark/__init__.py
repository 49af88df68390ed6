"""The benchmark harness: ``python -m fastnn bench``.

fastnn against its NumPy reference, PyTorch (eager), JAX (jit), ONNX Runtime (inference)
and scikit-learn, measured as users run them: each contender in a worker process of its
own, started with the environment the command was started with (the harness sets no thread
or spin variable anywhere), the rounds alternated between the workers so that load from
elsewhere hits all of them, medians, the spread of the samples, ratios of medians, and the
verdicts of the goals. On a shared machine, ``--wait-quiet S`` waits for other processes
to go quiet before each round and takes again a round during which tasks waited for a CPU.
Before each case, a quarter second of ``steadiness`` tells how steadily each CPU does
vector arithmetic (what slows a team of threads more than one thread; not a goal).

Modules, one job each:

* ``cases``: the grid of cases and the one set of builders of their inputs;
* ``worker``: a contender's worker process (stdlib + NumPy: a peer's worker never imports
  fastnn) and the timing of a sample;
* ``contender_fastnn``, ``peer_torch``, ``peer_jax``, ``peer_onnxruntime``,
  ``peer_sklearn``: each contender's version of each workload;
* ``runner``: starting the workers, checking every contender's result against fastnn's,
  the alternated rounds;
* ``goals``: the goals and their verdicts;
* ``report``: the environment, the tables, the JSON;
* ``steadiness``: each CPU's arithmetic over short windows, all CPUs busy, between cases;
* ``cli``: the command line.

The pytest-benchmark suites in ``bench/`` are parametrised from the same cases.
Peers are optional (``pip install "fastnn[bench]"``); a missing one is reported as
"n/a (not installed)".
"""

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastnn bench [options]`` (``fastnn.benchmark.cli``)."""
    from .cli import main as cli_main  # not at import: a worker imports only what it uses

    return cli_main(argv)


__all__ = ["main"]
