"""A benchmark worker: one contender in a process of its own, driven over a pipe.

The parent (``fastnn.benchmark.runner``) starts this file *by path*::

    python .../fastnn/benchmark/worker.py --contender torch --module .../peer_torch.py

with the user's environment unchanged, and sends one JSON object a line on stdin; the worker
answers each with one JSON line on the stdout it was started with (library output is sent
to stderr instead, so that nothing else lands in the protocol). Requests (``op``):

* ``hello``: import the contender's library; answer its version and facts (threads, BLAS);
* ``setup``: load a case's inputs (``.npy`` files the parent wrote to a folder) and build
  the task, a no-argument ``run`` that does one call of the workload;
* ``outputs``: the task's results from the inputs (written to ``.npy`` files in the case's
  folder), which the parent checks against fastnn's before anything is timed;
* ``calibrate``: a rough time per call;
* ``sample``: one timed sample, the median per-call time of ``chunks`` loops of ``calls``
  calls (the garbage collector off), and, for a case that asks, the peak memory of it;
* ``environ``: ``os.environ`` as this process sees it (the tests compare it to the parent's);
* ``quit``.

This module imports only the standard library and NumPy: a peer's worker must not import
fastnn (fastnn's import changes ``os.environ`` today). The contender modules
(``contender_fastnn.py``, ``peer_*.py`` beside this file) are loaded by path; each defines
``describe() -> dict`` and ``setup(name, workload, params, arrays, folder) -> Task``.
``Handler`` is the same request handler in the parent's process for ``--same-process``
runs, the pytest-benchmark suites and the tests.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import IO, Any, Protocol

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT_PREFIX = "out-"  # files a worker writes into a case's folder


class Task(Protocol):
    """One workload of one contender, built from a case's inputs."""

    def run(self) -> object:
        """One call of the workload (what is timed); returns once the work is done."""

    def outputs(self) -> dict[str, np.ndarray]:
        """The results to check against fastnn's, from the case's inputs."""


class Call:
    """A workload that is one function call (a contender's ``setup`` may return ``(fn,
    names)`` for it); its outputs are the call's results, named."""

    def __init__(self, fn: Callable[[], Any], names: tuple[str, ...]) -> None:
        self.run = fn
        self.names = names

    def outputs(self) -> dict[str, np.ndarray]:
        result = self.run()
        values = result if isinstance(result, tuple) else (result,)
        return {name: np.asarray(v) for name, v in zip(self.names, values)}


class Unsupported(Exception):
    """The contender has no version of this workload."""


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------


def time_calls(run: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``calls`` back-to-back calls of ``run``."""
    t0 = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - t0) / calls


def estimate_call(run: Callable[[], object], min_time: float = 2e-3) -> float:
    """A rough time per call: one warm-up call, then loops of 1, 4, 16, ... calls until one
    lasts ``min_time`` seconds, that loop once more, and the faster of the two: a one-off
    slow call (a library's lazy start, a page of memory touched first) would otherwise
    count as the contender's speed."""
    run()
    calls = 1
    while True:
        t = time_calls(run, calls)
        if t * calls >= min_time or calls >= 1 << 24:
            return min(t, time_calls(run, calls))
        calls *= 4


def take_sample(run: Callable[[], object], calls: int, chunks: int) -> float:
    """One sample: the median time per call of ``chunks`` loops of ``calls`` calls each,
    with the garbage collector off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return statistics.median(time_calls(run, calls) for _ in range(chunks))
    finally:
        if enabled:
            gc.enable()


# ---------------------------------------------------------------------------------------
# Memory (Linux: /proc/self/status; elsewhere None)
# ---------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the process's peak resident size (VmHWM) to its current size (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


_SOFT_LIMIT: list[int] = []  # the soft RLIMIT_AS before ``limit_address_space``


def limit_address_space(extra_bytes: int) -> int | None:
    """Cap this process's address space at its current size plus ``extra_bytes`` (the soft
    RLIMIT_AS), so that an allocation far beyond a workload's needs fails at once with
    MemoryError instead of pushing a shared machine into swap. Returns the cap, or None
    where it cannot be set. ``restore_address_space`` puts the previous limit back."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    size = _status_kib("VmSize")
    if size is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = size * 1024 + extra_bytes
    for limit in (soft, hard):
        if limit != resource.RLIM_INFINITY:
            cap = min(cap, limit)
    if not _SOFT_LIMIT:
        _SOFT_LIMIT.append(soft)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap


def restore_address_space() -> None:
    if not _SOFT_LIMIT:
        return
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_SOFT_LIMIT.pop(), hard))


# ---------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------


def load_module(path: str) -> ModuleType:
    """A contender module, loaded by file path (no package import, no sys.path entry)."""
    name = "fastnn_bench_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a contender module from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_inputs(folder: str) -> dict[str, np.ndarray]:
    """The case's arrays (``NAME.npy``), read-only: a contender that wrote into its inputs
    would fail loudly instead of changing the next contender's."""
    arrays = {}
    for entry in sorted(os.listdir(folder)):
        if entry.endswith(".npy") and not entry.startswith(OUTPUT_PREFIX):
            a = np.load(os.path.join(folder, entry), allow_pickle=False)
            a.setflags(write=False)
            arrays[entry[:-4]] = a
    return arrays


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= 500 else text[:497] + "..."


class Handler:
    """Answers the requests of one contender (see the module docstring)."""

    def __init__(self, contender: str, module: ModuleType,
                 preload: Callable[[], dict[str, Any]] | None = None) -> None:
        self.contender = contender
        self.module = module
        self.preload = preload
        self.task: Task | None = None
        self.folder: str | None = None
        self.params: dict[str, Any] = {}

    def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        try:
            method = getattr(self, "op_" + str(op))
        except AttributeError:
            return {"ok": False, "error": f"unknown request {op!r}"}
        try:
            reply: dict[str, Any] = method(request)
            return {"ok": True, **reply}
        except ImportError as exc:
            return {"ok": False, "missing": True, "error": error_text(exc)}
        except Unsupported as exc:
            return {"ok": False, "unsupported": True, "error": str(exc)}
        except Exception as exc:  # MemoryError too: a report, not a crash
            self.task = None
            return {"ok": False, "error": error_text(exc),
                    "traceback": traceback.format_exc(limit=8)}

    def op_hello(self, request: Mapping[str, Any]) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        if self.preload is not None:
            facts["preload"] = self.preload()
        facts.update(self.module.describe())
        facts["pid"] = os.getpid()
        facts["numpy"] = np.__version__
        return {"facts": facts}

    def op_setup(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.task = None
        gc.collect()
        restore_address_space()
        case = request["case"]
        self.folder = str(request["folder"])
        self.params = dict(case.get("params", {}))
        arrays = load_inputs(self.folder)
        cap = None
        if self.params.get("memory_cap_gib"):
            cap = limit_address_space(int(self.params["memory_cap_gib"] * 2 ** 30))
        task = self.module.setup(self.contender, case["workload"], self.params, arrays,
                                 self.folder)
        if task is None:
            raise Unsupported(f"{self.contender} has no {case['workload']} workload")
        self.task = Call(*task) if isinstance(task, tuple) else task
        return {"memory_cap_bytes": cap}

    def _task(self) -> Task:
        if self.task is None:
            raise RuntimeError("no case is set up")
        return self.task

    def op_outputs(self, request: Mapping[str, Any]) -> dict[str, Any]:
        assert self.folder is not None
        files = {}
        for key, value in self._task().outputs().items():
            path = os.path.join(self.folder, f"{OUTPUT_PREFIX}{self.contender}-{key}.npy")
            np.save(path, np.asarray(value), allow_pickle=False)
            files[key] = path
        return {"files": files}

    def op_calibrate(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return {"per_call": estimate_call(self._task().run, float(request.get("min_time",
                                                                                2e-3)))}

    def op_sample(self, request: Mapping[str, Any]) -> dict[str, Any]:
        run = self._task().run
        calls, chunks = int(request["calls"]), int(request["chunks"])
        if not self.params.get("measure_memory"):
            return {"seconds": take_sample(run, calls, chunks)}
        gc.collect()
        start = _status_kib("VmRSS")
        reset = reset_peak_rss()
        seconds = take_sample(run, calls, chunks)
        peak = _status_kib("VmHWM")
        extra: dict[str, Any] = {"seconds": seconds}
        if reset and start is not None and peak is not None:
            extra["peak_rss_above_start_bytes"] = (peak - start) * 1024
            extra["rss_at_start_bytes"] = start * 1024
        return extra

    def op_environ(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return {"environ": dict(os.environ)}

    def op_quit(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.task = None
        restore_address_space()
        return {}


def serve(handler: Handler, requests: IO[str], replies: IO[str]) -> None:
    """Answer requests, one JSON line each, until ``quit`` or the end of the input."""
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        reply = handler.handle(request)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
        if request.get("op") == "quit":
            break


def _preload_fastnn(module_path: str) -> Callable[[], dict[str, Any]]:
    """For the guest case: import fastnn and run one fit in this process before the
    contender's library is used (what fastnn's import leaves behind is what is measured)."""
    def preload() -> dict[str, Any]:
        before = dict(os.environ)
        guest: dict[str, Any] = load_module(module_path).preload_fit()
        after = dict(os.environ)
        changed = {k: [before.get(k), after.get(k)] for k in set(before) | set(after)
                   if before.get(k) != after.get(k)}
        return {"environ_changed_by_fastnn": changed, **guest}
    return preload


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="one benchmark contender, driven over a pipe")
    p.add_argument("--contender", required=True)
    p.add_argument("--module", required=True, help="the contender module's file")
    p.add_argument("--fastnn-path", help="the folder to import fastnn from (fastnn's "
                                         "contenders and the guest case only)")
    p.add_argument("--preload-fastnn", action="store_true",
                   help="import fastnn and run a fit before the contender's library")
    args = p.parse_args(argv)
    replies = os.fdopen(os.dup(1), "w")  # the protocol's channel...
    os.dup2(2, 1)  # ...and whatever a library prints goes to stderr
    sys.stdout = sys.stderr
    if args.fastnn_path:
        sys.path.insert(0, args.fastnn_path)
    preload = (_preload_fastnn(os.path.join(HERE, "contender_fastnn.py"))
               if args.preload_fastnn else None)
    try:
        module = load_module(args.module)
    except Exception as exc:
        handler_error = {"ok": False, "error": error_text(exc)}
        for line in sys.stdin:  # answer every request with the error, then stop
            replies.write(json.dumps(handler_error) + "\n")
            replies.flush()
            if '"quit"' in line:
                break
        return 1
    serve(Handler(args.contender, module, preload), sys.stdin, replies)
    return 0


if __name__ == "__main__":
    # run by path: this folder is sys.path[0]; take it off, so that no file here can
    # shadow a module a library imports
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == HERE:
        del sys.path[0]
    sys.exit(main())
