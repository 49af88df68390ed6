"""fastnn's thread policy (fastnn/threads.py, fastnn/_threads.h): one pool of fastnn's own
threads, sized by OMP_NUM_THREADS / set_num_threads / threadpoolctl, quiet after a call, no
environment variable touched, and work after a fork that works.

The parallel calls below are each of the kinds of work fastnn shares among its threads: the
training loop's team, the lbfgs objective, one sample's large layer, and the elementwise
passes (activations, sigmoid and softmax outputs, softmax, log-softmax, cross-entropy)."""

import copy
import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastnn
from fastnn import MLP, _kernels
from fastnn import functional as F
from helpers import digest

threadpoolctl = pytest.importorskip("threadpoolctl")

FORK = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture
def two_threads():
    """At least two of fastnn's threads, even on a one-processor machine."""
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(max(2, before))
    yield
    fastnn.set_num_threads(before)


def _fit(dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2048, 256)).astype(dtype)
    y = rng.integers(0, 10, 2048)
    net = MLP(256, 256, 10, dtype=dtype, random_state=0)
    net.fit(X, y, epochs=1, batch_size=256, lr=0.05, momentum=0.9, random_state=0)
    return digest(*[A for W, b in net.parameters() for A in (W, b)])


def _lbfgs():
    pytest.importorskip("sklearn")
    from fastnn import MLPClassifier

    rng = np.random.default_rng(1)
    X = rng.standard_normal((1000, 120))
    y = rng.integers(0, 4, 1000)
    clf = MLPClassifier(hidden_layer_sizes=(200,), solver="lbfgs", max_iter=5,
                        random_state=0).fit(X, y)
    return digest(*clf.coefs_, *clf.intercepts_)


def _big(shape, seed=2, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


KINDS = {
    "fit float32": lambda: _fit("float32"),
    "fit float64": lambda: _fit("float64"),
    "lbfgs": _lbfgs,
    "one sample, large layer": lambda: digest(F.linear(_big(3000), _big((3000, 3000)), None,
                                                        "relu")),
    "linear + exp": lambda: digest(F.linear(_big((700, 64)), _big((600, 64)), None, "exp")),
    "activate": lambda: digest(F.activate(_big((700, 600)), "tanh")),
    "sigmoid": lambda: digest(F.sigmoid(_big((700, 600)))),
    "softmax": lambda: digest(F.softmax(_big((700, 600)))),
    "log_softmax": lambda: digest(F.log_softmax(_big((700, 600)))),
    "cross_entropy": lambda: digest(*F.cross_entropy(
        _big((700, 600)), np.arange(700) % 600, return_grad=True)),
    "predict_proba": lambda: digest(MLP(64, 600, 600, output="sigmoid", random_state=0)
                                     .predict_proba(_big((700, 64), dtype=np.float32))),
}


def _run(kind):
    return kind, KINDS[kind](), _kernels.pool_info()["forks"]


@FORK
def test_a_fork_pool_runs_every_parallel_kind_after_the_parent_did(two_threads):
    expected = {kind: run() for kind, run in KINDS.items()}  # the parent's threads start
    assert _kernels.pool_info()["workers"] >= 1
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        results = pool.map_async(_run, list(KINDS)).get(timeout=300)  # a hang fails here
    for kind, got, forks in results:
        assert got == expected[kind], kind
        assert forks >= 1  # it ran in a forked child
    for kind, run in KINDS.items():  # and the parent's threads still work
        assert run() == expected[kind]


@FORK
def test_a_forked_child_uses_threads_of_its_own(two_threads):
    _fit("float32")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, _fit("float32").encode() + b" %d" % _kernels.pool_info()["workers"])
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    digest, workers = os.read(read, 200).split()
    os.close(read)
    assert digest.decode() == _fit("float32")
    assert int(workers) >= 1  # the child started workers of its own


def test_threadpoolctl_and_set_num_threads_set_the_same_limit():
    before = fastnn.get_num_threads()
    info = [pool for pool in threadpoolctl.threadpool_info() if pool["internal_api"] == "fastnn"]
    assert len(info) == 1 and info[0]["user_api"] == "openmp"
    assert info[0]["num_threads"] == before
    with threadpoolctl.threadpool_limits(limits=1):
        assert fastnn.get_num_threads() == 1
    with threadpoolctl.threadpool_limits(limits=3, user_api="openmp"):
        assert fastnn.get_num_threads() == 3
    assert fastnn.get_num_threads() == before
    fastnn.set_num_threads(5)
    try:
        assert fastnn.get_num_threads() == 5
        with threadpoolctl.threadpool_limits(limits=2):
            assert fastnn.get_num_threads() == 2
        assert fastnn.get_num_threads() == 5
    finally:
        fastnn.set_num_threads(before)


@pytest.mark.parametrize("n, error", [(0, ValueError), (65, ValueError), (2.0, TypeError),
                                      (True, TypeError), ("2", TypeError)])
def test_set_num_threads_refuses_bad_counts(n, error):
    with pytest.raises(error, match="n must be"):
        fastnn.set_num_threads(n)


def test_show_config_reports_the_threads():
    from fastnn.config import config

    assert config()["threads"] == fastnn.get_num_threads()


CHILD = """
import json, os, sys
before = dict(os.environ)
import numpy as np
import fastnn
net = fastnn.MLP(64, 128, 10, random_state=0)
rng = np.random.default_rng(0)
net.fit(rng.random((512, 64)), rng.integers(0, 10, 512), epochs=2)
fastnn.F.softmax(rng.random((1000, 1000)))
print(json.dumps({"same": dict(os.environ) == before, "threads": fastnn.get_num_threads()}))
"""


@pytest.mark.parametrize("omp", [None, "1", "3", "2,1"])
def test_import_and_work_leave_the_environment_unchanged(omp):
    # (KMP_DUPLICATE_LIB_OK: threadpoolctl, imported in this process, set it here)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                               "OMP_WAIT_POLICY",
                                                               "KMP_DUPLICATE_LIB_OK")}
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    result = json.loads(out.stdout)
    assert result["same"]
    if omp is not None:
        assert result["threads"] == int(omp.split(",")[0])
    else:
        assert result["threads"] == len(os.sched_getaffinity(0)) if hasattr(
            os, "sched_getaffinity") else result["threads"] >= 1


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_threads_go_quiet_after_a_call(two_threads):
    """Workers spin about a millisecond after a job, then sleep: no processor time is spent
    by the process while it waits after a parallel call."""
    _fit("float32")
    F.softmax(_big((700, 600)))
    time.sleep(0.05)  # well past the spin
    start = os.times()
    time.sleep(0.2)
    end = os.times()
    busy = (end.user - start.user) + (end.system - start.system)
    assert busy < 0.02, busy  # asleep: nothing like the 0.2 s a spinning worker would take


try:  # the checked build's hooks (FASTNN_CHECKED=1, CI's step 4)
    from fastnn import _testing
except ImportError:
    _testing = None


def _all_asleep(timeout=2.0):
    """Wait until every worker started sleeps; their number."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        info = _kernels.pool_info()
        if info["workers"] and info["sleepers"] == info["workers"]:
            return info["workers"]
        time.sleep(0.005)
    pytest.fail(f"the workers did not go to sleep: {_kernels.pool_info()}")


@pytest.mark.skipif(_testing is None, reason="needs the checked build's hooks (FASTNN_CHECKED=1)")
def test_a_stream_of_small_calls_wakes_the_workers_from_its_second_call(two_threads):
    """A small call (one sample's layer) that finds every worker asleep runs alone; another
    within the spin window counts them awake (a stream of calls: waking them pays); a call
    long after runs alone again."""
    _fit("float32")
    workers = _all_asleep()
    first, second = _testing.awake(), _testing.awake()
    assert (first, second) == (0, workers)
    time.sleep(20 * _kernels.pool_info()["spin_seconds"])
    assert _testing.awake() == 0


def _workers():
    """{thread id: allowed processors} of fastnn's worker threads in this process."""
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:  # (a thread that just ended)
            continue
        if name == "fastnn-worker":
            found[int(tid)] = os.sched_getaffinity(int(tid))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two processors")
def test_woken_workers_run_where_the_caller_may_but_on_its_own_processor(two_threads):
    """fastnn names its workers, and a worker woken from sleep may run on the processors the
    calling thread may use, the caller's own excepted when there are others: never on a
    processor outside the caller's mask, never confined to nothing."""
    _fit("float32")
    allowed = os.sched_getaffinity(0)
    for _ in range(3):
        time.sleep(0.05)  # the workers sleep
        _fit("float32")   # ... and are woken
        workers = _workers()
        assert workers, "no fastnn-worker thread found"
        for cpus in workers.values():
            assert cpus and cpus <= allowed, (cpus, allowed)
            assert len(cpus) == len(allowed) - 1


def _processor(tid):
    """The processor thread ``tid`` of this process last ran on (/proc's stat, field 39)."""
    with open(f"/proc/self/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[36])


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two processors")
@pytest.mark.skipif(_testing is None, reason="needs the checked build's hooks (FASTNN_CHECKED=1)")
def test_a_caller_on_a_workers_processor_moves_the_worker_off_it(two_threads):
    """A caller that comes to run on the processor where a worker took its last job or
    spins (Linux moves threads) would have that worker wait behind it: the next job moves
    the worker to the caller's other processors. On a busy machine Linux may move either
    thread between the test's look and the call (under a busy loop, one run in four failed
    with the caller and worker seen on one processor before and after it: the pool had
    found the worker elsewhere); the checked build's hook says on which processor, if any,
    the pool found them both."""
    model = MLP(784, 256, 10, random_state=0)
    X = np.random.default_rng(0).standard_normal((32, 784)).astype(np.float32)
    allowed = os.sched_getaffinity(0)
    for _ in range(10):
        for _ in range(20):  # two parts of 16 rows a call: the worker takes jobs
            model.predict_proba(X)
        tid = min(_workers())  # worker 1, the first started: the one a two-part job uses
        cpu = _processor(tid)
        os.sched_setaffinity(0, {cpu})  # the caller moves onto the worker's processor ...
        os.sched_setaffinity(0, allowed)  # ... free to run anywhere again
        _testing.met_worker(reset=True)
        model.predict_proba(X)
        met = _testing.met_worker()
        if met >= 0:
            assert met not in os.sched_getaffinity(tid)
            assert os.sched_getaffinity(tid) == allowed - {met}
            return
    pytest.skip("the pool never found a worker on its caller's processor")


# ---------------------------------------------------------------------------------------
# the same seed, the same bits: on any number of threads and under any affinity mask
# ---------------------------------------------------------------------------------------

SEED_CHILD = """
import hashlib, sys, warnings
import numpy as np
import fastnn
h = hashlib.sha256()
rng = np.random.default_rng(0)
for n_in, hidden, n_out, batch, dtype, opt in [
        (64, (128,), 10, 32, "float32", dict(momentum=0.9)),
        (784, (256,), 10, 128, "float32", dict(optimizer="adam", lr=0.001)),
        (100, (300, 200), 5, 64, "float64", dict(momentum=0.9, nesterov=True,
                                                 weight_decay=1e-4))]:
    X = rng.standard_normal((600, n_in)).astype(dtype)
    y = rng.integers(0, n_out, 600)
    net = fastnn.MLP(n_in, hidden, n_out, dtype=dtype, random_state=0)
    net.fit(X, y, epochs=2, batch_size=batch, random_state=0, **opt)
    for W, b in net.parameters():
        h.update(W.tobytes()); h.update(b.tobytes())
    h.update(net.predict_proba(X[:300]).tobytes())
from fastnn import MLPClassifier
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    clf = MLPClassifier(hidden_layer_sizes=(200,), solver="lbfgs", max_iter=15,
                        random_state=0).fit(X[:, :50], y % 3)
for A in clf.coefs_ + clf.intercepts_:
    h.update(A.tobytes())
print(fastnn.get_num_threads(), h.hexdigest())
"""


def _digest_in_child(threads=None, prefix=()):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([*prefix, sys.executable, "-c", SEED_CHILD], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    count, digest = out.stdout.split()
    return int(count), digest


def test_the_same_seed_gives_the_same_bits_on_any_thread_count():
    digests = {}
    for threads in (1, 2, 3, 8, 64):
        count, digests[threads] = _digest_in_child(threads)
        assert count == threads
    assert len(set(digests.values())) == 1, digests


@pytest.mark.skipif(not os.path.exists("/usr/bin/taskset"), reason="needs taskset")
def test_the_same_seed_gives_the_same_bits_on_one_processor():
    count, one_cpu = _digest_in_child(prefix=("taskset", "-c", "0"))
    assert count == 1  # fastnn's default follows the affinity mask
    assert one_cpu == _digest_in_child(2)[1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predictions_and_kernels_have_the_same_bits_on_any_thread_count(dtype):
    rng = np.random.default_rng(5)
    net = MLP(300, [400, 100], 10, dtype=dtype, random_state=0)
    frozen = copy.deepcopy(net).freeze()  # (float32: its 400 units' W^T in 4 panels)
    batches = [rng.standard_normal((n, 300)).astype(dtype) for n in (1, 2, 17, 33, 257, 2048)]
    W = rng.standard_normal((700, 300)).astype(dtype)
    before = fastnn.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 5):
            fastnn.set_num_threads(threads)
            results.append([net.predict_proba(X) for X in batches]
                           + [frozen.predict_proba(X) for X in batches]
                           + [F.linear(X, W, None, "tanh") for X in batches])
    finally:
        fastnn.set_num_threads(before)
    for other in results[1:]:
        for A, B in zip(results[0], other):
            np.testing.assert_array_equal(A, B)


def test_blas_held_by_nested_and_concurrent_holders_until_the_last_lets_go():
    # fastnn holds BLAS on one thread around its products: a thread's nested holds touch
    # the shared count once (its first and last), other threads' holds count on their own,
    # and the counts found come back when the last holder lets go
    import threading

    from fastnn.threads import one_blas_thread
    from helpers import blas_threads

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        found = blas_threads()
        assert found and all(n == 2 for n in found)
        held, go = threading.Event(), threading.Event()

        def other():
            with one_blas_thread():
                held.set()
                go.wait(10)

        with one_blas_thread():
            with one_blas_thread():
                assert all(n == 1 for n in blas_threads())
            assert all(n == 1 for n in blas_threads())  # the outer hold still counts
            partner = threading.Thread(target=other)
            partner.start()
            assert held.wait(10)
        assert all(n == 1 for n in blas_threads())  # the partner holds it still
        go.set()
        partner.join(10)
        assert blas_threads() == found
