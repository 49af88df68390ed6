"""Running the cases: one worker process per contender, rounds alternated between them.

For each case the parent writes the inputs to a folder, has every contender's worker set the
case up, checks each contender's outputs against the base contender's (fastnn's) before
anything is timed, calibrates a sample of about ``target`` seconds per contender, runs one
unrecorded warm-up round, then rounds in which each contender takes one sample in turn (the
order rotating from round to round). A sample is the median time per call of a few loops of
back-to-back calls, the same numbers of loops and calls for every contender of the case
(about ``target`` seconds of the base contender's calls), so that each sample weighs its
first, cold call alike. Before each sample the parent waits until the previous
worker's threads have gone quiet (none of its threads runs, at most ``SETTLE_MAX``
seconds): an idle BLAS or OpenMP pool spins for up to ~0.1 s after a call, and it must not
run on the cores during another contender's sample. Load from elsewhere then falls on every
contender's rounds alike, but the contenders do not suffer from it alike: on 2 cores, one
busy core makes a library whose 2 threads meet at barriers (OpenMP, OpenBLAS) wait a
scheduler slice at each, 100x and more, while a single-threaded call barely notices. So each
round measures Linux's CPU pressure (the time some runnable task waited for a CPU) and is
counted as stalled when that exceeds ``BUSY_ROUND`` of it; with ``wait_quiet`` a round
first waits for other processes to go quiet, and a stalled round is taken again.

Workers start with the environment this process was started with (``user_environment``):
nothing is added, in particular no thread or spin variable, and not what ``import fastnn``
put into this process's ``os.environ``. ``same_process=True`` runs every contender in this
process instead (``Handler`` directly): for profiling, not for ratios.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from .cases import Case
from .worker import HERE, Handler, error_text, load_module

NOT_INSTALLED = "n/a (not installed)"
SETTLE_MAX = 0.25  # seconds a worker's threads may take to go quiet
BUSY_ROUND = 0.10  # a round is stalled when runnable tasks waited for a CPU this share of it
MAX_RETRIES = 5  # with --wait-quiet, a stalled round is taken again up to this many times,
WAIT_BUDGET = 12  # while the case has waited less than this many times the --wait-quiet


@dataclass(frozen=True)
class Contender:
    """A contender: the module its worker loads and the packages it needs."""

    name: str
    module: str  # a file beside this one (or a path)
    requires: tuple[str, ...]  # importable in the parent (else "n/a (not installed)")
    title: str
    fastnn: bool = False  # its worker imports fastnn (from this process's fastnn folder)
    preload_fastnn: bool = False  # its worker imports fastnn and fits before the library

    @property
    def path(self) -> str:
        return self.module if os.path.isabs(self.module) else os.path.join(HERE,
                                                                             self.module + ".py")


CONTENDERS = {c.name: c for c in [
    Contender("fastnn", "contender_fastnn", ("fastnn",), "fastnn, the public API",
              fastnn=True),
    Contender("reference", "contender_fastnn", ("fastnn",),
              "fastnn.reference / the \"numpy\" backend (NumPy's X @ W.T for the peak)",
              fastnn=True),
    Contender("torch", "peer_torch", ("torch",), "PyTorch eager"),
    Contender("jax", "peer_jax", ("jax",), "JAX jit"),
    Contender("onnxruntime", "peer_onnxruntime", ("onnxruntime", "onnx"),
              "ONNX Runtime (the graph of fastnn.interop.to_onnx)"),
    Contender("sklearn", "peer_sklearn", ("sklearn",), "scikit-learn"),
    Contender("torch+fastnn", "peer_torch", ("torch",),
              "PyTorch eager in a process that imported fastnn and ran a fit",
              preload_fastnn=True),
]}


# ---------------------------------------------------------------------------------------
# The user's environment and the processes' CPU time
# ---------------------------------------------------------------------------------------


def user_environment() -> dict[str, str]:
    """The environment this process was started with: /proc/self/environ (what ``import
    fastnn`` or anything else later put into ``os.environ`` is not in it); where that file
    does not exist, ``os.environ``."""
    try:
        with open("/proc/self/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return dict(os.environ)
    env = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep and key:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


def missing(contender: Contender) -> str | None:
    """Why ``contender`` cannot run here, or None."""
    for name in contender.requires:
        if importlib.util.find_spec(name) is None:
            return NOT_INSTALLED if name == contender.requires[0] else \
                f"n/a ({name} not installed)"
    return None


def cpu_time(pid: int) -> float | None:
    """Seconds of CPU that the threads of process ``pid`` have used (Linux schedstat,
    nanoseconds; None elsewhere), not counting the calling thread (which is measuring)."""
    total = 0
    found = False
    me = f"/proc/{pid}/task/{threading.get_native_id()}/"
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        if path.startswith(me):
            continue
        try:
            with open(path) as fh:
                total += int(fh.read().split()[0])
            found = True
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9 if found else None


def running_threads(pid: int) -> int | None:
    """How many threads of process ``pid`` are running or runnable (state R in
    /proc/PID/task/*/stat; None elsewhere): a pool's thread that spins after a call is."""
    count, found = 0, False
    for path in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            with open(path) as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        found = True
        count += state == "R"
    return count if found else None


def settle(pid: int, step: float = 0.002) -> float:
    """Wait until no thread of process ``pid`` runs (twice in a row, ``step`` apart; at most
    ``SETTLE_MAX`` seconds); returns the seconds waited. (Its CPU time would not do: the
    kernel adds a running thread's time at its scheduler ticks, so a pool spinning on a core
    can show none for milliseconds.)"""
    start = time.perf_counter()
    quiet = 0
    while time.perf_counter() - start < SETTLE_MAX:
        running = running_threads(pid)
        if running is None:
            break
        quiet = quiet + 1 if running == 0 else 0
        if quiet >= 2:
            break
        time.sleep(step)
    return time.perf_counter() - start


class CpuMeter:
    """The share of the machine's CPU time that other processes used since it was made:
    the busy time of all CPUs (/proc/stat) minus the CPU time of ``pids`` (this process
    and the workers; /proc/PID/stat), over wall time x CPUs. None where not readable."""

    def __init__(self, pids: Callable[[], Iterable[int]], min_wall: float = 0.5) -> None:
        self.pids = pids
        self.min_wall = min_wall
        self.start = self._snap()

    def _snap(self) -> tuple[float, float, float] | None:
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        try:
            with open("/proc/stat") as fh:
                v = [int(x) for x in fh.readline().split()[1:9]]
            ours = 0
            for pid in self.pids():
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                ours += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            return None
        return time.perf_counter(), (sum(v) - v[3] - v[4]) / tick, ours / tick

    def others(self) -> float | None:
        end = self._snap()
        if self.start is None or end is None or end[0] - self.start[0] < self.min_wall:
            return None
        wall = end[0] - self.start[0]
        other = (end[1] - self.start[1]) - (end[2] - self.start[2])
        return min(1.0, max(0.0, other / (wall * (os.cpu_count() or 1))))


def cpu_stall() -> float | None:
    """Seconds, since boot, during which some runnable task waited for a CPU (Linux's
    pressure stall information, microseconds; None where /proc/pressure/cpu is missing)."""
    try:
        with open("/proc/pressure/cpu") as fh:
            return int(fh.readline().rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


def wait_quiet(pids: Callable[[], Iterable[int]], limit: float, share: float = 0.10,
               window: float = 0.25) -> tuple[float, bool]:
    """Wait, at most ``limit`` seconds, until other processes use less than ``share`` of
    the CPUs over a ``window``; returns (seconds waited, whether it was quiet)."""
    start = time.perf_counter()
    while True:
        meter = CpuMeter(pids, min_wall=window / 2)
        time.sleep(window)
        others = meter.others()
        if others is None or others < share:
            return time.perf_counter() - start, True
        if time.perf_counter() - start >= limit:
            return time.perf_counter() - start, False


# ---------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------


class WorkerDied(RuntimeError):
    pass


def _fastnn_folder() -> str:
    import fastnn

    return os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))


class ProcessWorker:
    """A contender's worker process (``worker.py`` run by path, the user's environment)."""

    def __init__(self, contender: Contender, env: Mapping[str, str]) -> None:
        command = [sys.executable, os.path.join(HERE, "worker.py"),
                   "--contender", contender.name, "--module", contender.path]
        if contender.fastnn or contender.preload_fastnn:
            command += ["--fastnn-path", _fastnn_folder()]
        if contender.preload_fastnn:
            command.append("--preload-fastnn")
        self.stderr: IO[str] = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=dict(env), text=True)
        self.pid = self.proc.pid

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            code = self.proc.wait()
            raise WorkerDied(f"the worker exited (code {code}){self._stderr_tail()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        lines = [line for line in self.stderr.read().splitlines() if line.strip()]
        return (": " + " | ".join(lines[-3:])) if lines else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request("quit")
                self.proc.wait(timeout=10)
            except (WorkerDied, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


class LocalWorker:
    """The same requests answered in this process (``--same-process``)."""

    def __init__(self, contender: Contender) -> None:
        preload = None
        if contender.preload_fastnn:
            preload = load_module(os.path.join(HERE, "contender_fastnn.py")).preload_fit
        self.handler = Handler(contender.name, load_module(contender.path), preload)
        self.pid = os.getpid()

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        return self.handler.handle({"op": op, **fields})

    def close(self) -> None:
        self.handler.handle({"op": "quit"})


Worker = ProcessWorker | LocalWorker


class Pool:
    """One worker per contender, started when first needed, restarted after a crash."""

    def __init__(self, same_process: bool = False,
                 contenders: Mapping[str, Contender] | None = None) -> None:
        self.same_process = same_process
        self.contenders = dict(contenders or CONTENDERS)
        self.env = user_environment()
        self.workers: dict[str, Worker] = {}
        self.status: dict[str, str] = {}  # contender -> why it cannot run
        self.facts: dict[str, dict[str, Any]] = {}  # contender -> its hello

    def get(self, name: str) -> Worker | str:
        """The contender's worker, or why there is none."""
        if name in self.workers:
            return self.workers[name]
        if name in self.status:
            return self.status[name]
        contender = self.contenders[name]
        why = missing(contender)
        if why is not None:
            self.status[name] = why
            return why
        worker: Worker = (LocalWorker(contender) if self.same_process
                          else ProcessWorker(contender, self.env))
        try:
            hello = worker.request("hello")
        except WorkerDied as exc:
            hello = {"ok": False, "error": str(exc)}
        if not hello.get("ok"):
            worker.close()
            self.status[name] = (NOT_INSTALLED if hello.get("missing")
                                 else f"error: {hello.get('error')}")
            return self.status[name]
        self.facts[name] = hello["facts"]
        self.workers[name] = worker
        return worker

    def drop(self, name: str) -> None:
        """Forget a dead worker: the next case starts a new one."""
        worker = self.workers.pop(name, None)
        if worker is not None:
            worker.close()

    def pids(self) -> list[int]:
        return sorted({os.getpid(), *(w.pid for w in self.workers.values())})

    def close(self) -> None:
        for name in list(self.workers):
            self.drop(name)


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One contender in one case: its samples (seconds per unit of work, one a round) or
    why it has none."""

    status: str = "ok"  # "ok", "error: ...", "n/a (...)", "unsupported"
    samples: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range of the samples over their median (0 for < 2 samples)."""
        if len(self.samples) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples, n=4)
        return (q3 - q1) / self.median


@dataclass
class CaseResult:
    case: Case
    outcomes: dict[str, Outcome]
    rounds: int = 0
    other_cpu: float | None = None
    load: dict[str, float] | None = None  # stalled and retaken rounds (CaseRun.load)
    steadiness: dict[str, Any] | None = None  # the CPUs just before and after (steadiness)

    def ok(self, name: str) -> bool:
        return name in self.outcomes and self.outcomes[name].ok

    def median(self, name: str) -> float | None:
        return self.outcomes[name].median if self.ok(name) else None

    def ratio(self, name: str, base: str | None = None) -> float | None:
        """``name``'s median over the base's: above 1, the base is faster."""
        base = base or self.case.base
        if not (self.ok(name) and self.ok(base)):
            return None
        return self.outcomes[name].median / self.outcomes[base].median

    def ratio_quartiles(self, name: str, base: str | None = None) -> tuple[float, float] | None:
        """Quartiles of the per-round ratios name / base (samples of one round)."""
        base = base or self.case.base
        if not (self.ok(name) and self.ok(base)):
            return None
        ratios = [a / b for a, b in zip(self.outcomes[name].samples,
                                        self.outcomes[base].samples)]
        if len(ratios) < 2:
            return ratios[0], ratios[0]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        return q1, q3

    def gflops(self, name: str = "fastnn") -> float | None:
        median = self.median(name) if name in self.outcomes else None
        if not self.case.flops or median is None:
            return None
        return self.case.flops / median / 1e9


@dataclass
class Settings:
    samples: int = 21  # rounds at most
    min_samples: int = 7  # rounds at least (unless a contender fails)
    target: float = 0.010  # seconds of one sample
    budget: float = 8.0  # seconds of timing per case, at most (then fewer rounds)
    single_shot_rounds: int = 1  # rounds of a single-shot case (a fit of minutes)
    wait_quiet: float = 0.0  # seconds a round may wait for other processes to go quiet
    wait_steady: float = 0.0  # seconds a case may wait for steady CPUs (steadiness)


# ---------------------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------------------


def compare(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray], rtol: float,
            atol: float, base: str = "fastnn") -> str | None:
    """None when every output in ``want`` is matched by ``got`` within the tolerances,
    else what differs."""
    for key, w in want.items():
        if key not in got:
            return f"no output {key!r}"
        g = np.asarray(got[key])
        if g.shape != w.shape:
            return f"{key} has shape {g.shape}, {base}'s {w.shape}"
        if not np.allclose(g, w, rtol=rtol, atol=atol):
            worst = float(np.max(np.abs(g.astype(np.float64) - w)))
            return (f"{key} differs from {base}'s by up to {worst:.3g} (rtol {rtol:g}, "
                    f"atol {atol:g})")
    return None


def accuracy(outputs: Mapping[str, np.ndarray], arrays: Mapping[str, np.ndarray]) -> float:
    return float(np.mean(outputs["pred"] == arrays["y_test"]))


def load_outputs(reply: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {key: np.load(path) for key, path in reply["files"].items()}


# ---------------------------------------------------------------------------------------
# A case
# ---------------------------------------------------------------------------------------


def write_inputs(case: Case, folder: str) -> dict[str, np.ndarray]:
    inputs = case.build()
    os.makedirs(folder, exist_ok=True)
    for name, array in inputs.arrays.items():
        np.save(os.path.join(folder, name + ".npy"), np.ascontiguousarray(array))
    for name, blob in inputs.files.items():
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(blob)
    return inputs.arrays


def plan_sample(per_call: float, target: float, max_chunks: int = 5) -> tuple[int, int]:
    """(calls, chunks): ``target`` seconds as up to ``max_chunks`` loops of >= 1 call."""
    chunks = max(1, min(max_chunks, int(target / per_call)))
    calls = max(1, round(target / (chunks * per_call)))
    return calls, chunks


class CaseRun:
    """The steps of one case (see the module docstring); ``run()`` returns its result."""

    def __init__(self, case: Case, pool: Pool, settings: Settings, folder: str) -> None:
        self.case = case
        self.pool = pool
        self.settings = settings
        self.folder = folder
        self.outcomes = {name: Outcome() for name in case.contenders}
        self.workers: dict[str, Worker] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.previous: int | None = None  # the worker that took the last sample
        # rounds recorded, of which stalled (tasks waited for a CPU > BUSY_ROUND of the
        # round), rounds taken again and the wait for quiet (--wait-quiet)
        self.load = {"rounds": 0, "stalled": 0, "retaken": 0, "quiet_starts": 0,
                     "waited_s": 0.0}

    def fail(self, name: str, status: str) -> None:
        self.outcomes[name].status = status
        self.workers.pop(name, None)

    def ask(self, name: str, op: str, **fields: Any) -> dict[str, Any] | None:
        """The worker's reply, or None after recording why it failed."""
        try:
            reply = self.workers[name].request(op, **fields)
        except WorkerDied as exc:
            self.pool.drop(name)
            self.fail(name, f"error: {exc}")
            return None
        if not reply.get("ok"):
            status = ("unsupported" if reply.get("unsupported") else
                      NOT_INSTALLED if reply.get("missing") else f"error: {reply.get('error')}")
            self.fail(name, status)
            return None
        return reply

    def prepare(self) -> None:
        """Write the inputs, set the case up in every worker, check the outputs (a
        single-shot case's after timing)."""
        case = self.case
        self.arrays = write_inputs(case, self.folder)
        for name in case.contenders:
            worker = self.pool.get(name)
            if isinstance(worker, str):
                self.outcomes[name].status = worker
                continue
            self.workers[name] = worker
            if "preload" in self.pool.facts.get(name, {}):
                self.outcomes[name].info["preload"] = self.pool.facts[name]["preload"]
            reply = self.ask(name, "setup", case=case.spec(), folder=self.folder)
            if reply is not None and reply.get("memory_cap_bytes"):
                self.outcomes[name].info["memory_cap_bytes"] = reply["memory_cap_bytes"]
        if not case.single_shot:
            self.check()

    def run(self) -> CaseResult:
        self.prepare()
        meter = CpuMeter(self.pool.pids)
        single = self.case.single_shot
        rounds = self.time_single_shot() if single else self.time_rounds()
        result = CaseResult(self.case, self.outcomes, rounds, meter.others(), self.load)
        if single:
            self.check()  # the accuracy of the timed fits
        return result

    def check(self) -> None:
        """Each contender's outputs against the base's (or its accuracy)."""
        case = self.case
        if case.check == "none":
            return
        order = sorted(self.workers, key=lambda n: n != case.base)  # the base first
        want: dict[str, np.ndarray] | None = None
        for name in order:
            reply = self.ask(name, "outputs")
            if reply is None:
                continue
            got = load_outputs(reply)
            if case.check in ("accuracy", "score"):
                key = case.check
                value = accuracy(got, self.arrays) if key == "accuracy" else float(got["score"])
                self.outcomes[name].info[key] = value
                floor = case.floor.get(name, -np.inf)
                if value < floor:
                    self.fail(name, f"error: test {key} {value:.4f} below {floor:g}")
            elif name == case.base:
                want = got
            elif want is None:
                self.outcomes[name].info["unchecked"] = f"{case.base} has no result"
            else:
                problem = compare(got, want, case.rtol, case.atol, case.base)
                if problem is not None:
                    self.fail(name, f"error: disagrees with {case.base}: {problem}")

    def sample(self, name: str, calls: int, chunks: int, previous: int | None) -> float | None:
        if previous is not None and not self.pool.same_process:
            settle(previous)
        reply = self.ask(name, "sample", calls=calls, chunks=chunks)
        if reply is None:
            return None
        for key in ("peak_rss_above_start_bytes", "rss_at_start_bytes"):
            if key in reply:
                self.outcomes[name].info.setdefault(key + "_per_round", []).append(reply[key])
        return float(reply["seconds"])

    def time_rounds(self) -> int:
        s = self.settings
        per_call: dict[str, float] = {}
        for name in list(self.workers):
            reply = self.ask(name, "calibrate")
            if reply is not None:
                per_call[name] = reply["per_call"]
        if not per_call:
            return 0
        # one plan for every contender, ``target`` seconds of the base's calls (else the
        # fastest's): the first call of a sample, after the other contenders' turns, finds
        # cold caches and sleeping threads, and a sample of 1 call is that call alone while
        # a median of 2 loops of 1 call is its mean with a warm one. (Planned each by its
        # own calibration, fastnn's batch-4096 samples were 1 call and ONNX Runtime's 2.) A
        # slower contender's samples last longer; the budget then allows fewer rounds.
        plan = plan_sample(per_call.get(self.case.base, min(per_call.values())), s.target)
        plans = {name: plan for name in per_call}
        for name in plans:
            self.outcomes[name].info.update(calls=plan[0], chunks=plan[1])
        per_round = sum(c * k * per_call[n] for n, (c, k) in plans.items())
        rounds = max(s.min_samples, min(s.samples, int(s.budget / per_round)))
        names = list(plans)
        self.previous = os.getpid()  # the parent built the inputs: let it go quiet
        r = retries = 0
        while r <= rounds:  # round 0 is the warm-up
            if s.wait_quiet > 0 and self.load["waited_s"] < WAIT_BUDGET * s.wait_quiet:
                waited, quiet = wait_quiet(self.pool.pids, s.wait_quiet)
                self.load["waited_s"] += waited
                self.load["quiet_starts"] += quiet
            order = names[r % len(names):] + names[:r % len(names)]
            taken, busy = self.round(order, plans, warm_up=r == 0, per_call=per_call)
            stalled = busy is not None and busy > BUSY_ROUND
            if r and stalled and s.wait_quiet > 0 and retries < MAX_RETRIES \
                    and self.load["waited_s"] < WAIT_BUDGET * s.wait_quiet:
                retries += 1  # tasks waited for the CPUs meanwhile: take the round again
                self.load["retaken"] += 1
                continue
            if r:
                self.load["rounds"] += 1
                self.load["stalled"] += stalled
                for name, t in taken.items():
                    self.outcomes[name].samples.append(t / self.case.steps)
            r += 1
            retries = 0
        return rounds

    def round(self, order: list[str], plans: Mapping[str, tuple[int, int]], warm_up: bool,
              per_call: Mapping[str, float]) -> tuple[dict[str, float], float | None]:
        """One sample of each contender in ``order``; returns them (seconds per call) and
        the share of the round during which some runnable task waited for a CPU (or, where
        that is not measured, the share of the CPUs other processes used)."""
        meter = CpuMeter(self.pool.pids, min_wall=0.1)
        stall, start = cpu_stall(), time.perf_counter()
        taken = {}
        for name in order:
            if name not in self.workers or (warm_up and per_call[name] >= 0.1):
                continue  # failed, or warmed by its calibration already
            t = self.sample(name, *plans[name], self.previous)
            self.previous = self.workers[name].pid if name in self.workers else None
            if t is not None:
                taken[name] = t
        if stall is None:
            return taken, meter.others()
        return taken, ((cpu_stall() or stall) - stall) / (time.perf_counter() - start)

    def time_single_shot(self) -> int:
        names = list(self.workers)
        self.previous = os.getpid()
        for r in range(self.settings.single_shot_rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            taken, _ = self.round(order, {n: (1, 1) for n in names}, False, {})
            for name, t in taken.items():
                self.outcomes[name].samples.append(t)
        return self.settings.single_shot_rounds


def run_case(case: Case, pool: Pool, settings: Settings, root: str) -> CaseResult:
    """Run one case with its inputs in a folder under ``root`` (removed afterwards)."""
    folder = tempfile.mkdtemp(prefix=case.workload + "-", dir=root)
    try:
        return CaseRun(case, pool, settings, folder).run()
    except Exception as exc:  # building the inputs failed: the case reports it
        outcomes = {name: Outcome(f"error: {error_text(exc)}") for name in case.contenders}
        return CaseResult(case, outcomes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
