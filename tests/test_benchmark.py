"""The benchmark harness's logic that times nothing: the worker protocol, the checks of a
contender's result, the goals' verdicts, the JSON report, the workers' environment, and a
missing peer. (No test asserts a time: samples are only checked to be numbers.)"""

import json
import math
import os
import sys
import textwrap
import time

import numpy as np
import pytest

from fastnn.benchmark import cli, goals, report, steadiness
from fastnn.benchmark.cases import Case, Inputs
from fastnn.benchmark.runner import (NOT_INSTALLED, CaseResult, CaseRun, Contender, Outcome,
                                     Pool, ProcessWorker, Settings, compare, user_environment)
from fastnn.benchmark.worker import estimate_call

# A contender module as the worker loads them: describe() and setup(); "double" returns
# 2 X (the contender "bad" 2 X + 1, "slow" after 0.2 ms), "explode" runs out of memory in its
# timed call.
FAKE_PEER = textwrap.dedent('''
    import time

    import numpy as np

    def describe():
        return {"library": "fake", "version": "1.0"}

    class Double:
        def __init__(self, X, offset, pause=0.0):
            self.X, self.offset, self.pause = X, offset, pause
        def run(self):
            if self.pause:
                time.sleep(self.pause)
            return 2 * self.X + self.offset
        def outputs(self):
            return {"Y": self.run()}

    class Explode:
        def run(self):
            raise MemoryError("Unable to allocate 19.5 GiB for an array")
        def outputs(self):
            return {}

    def setup(name, workload, params, arrays, folder):
        if workload == "double":
            return Double(arrays["X"], 1.0 if name == "bad" else 0.0,
                          0.0002 if name == "slow" else 0.0)
        if workload == "explode":
            return Explode()
        return None
''')

QUICK = Settings(samples=3, min_samples=3, target=0.0005, budget=0.05)
SPIN_AND_THREAD_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT",
                             "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                             "KMP_BLOCKTIME")


@pytest.fixture
def fake(tmp_path):
    """Contenders "good", "bad" (a wrong result), "slow" and "ghost" (its library is
    missing), all of the fake module."""
    path = tmp_path / "fake_peer.py"
    path.write_text(FAKE_PEER)
    return {name: Contender(name, str(path), requires, f"fake {name}")
            for name, requires in [("good", ("numpy",)), ("bad", ("numpy",)),
                                   ("slow", ("numpy",)),
                                   ("ghost", ("no_such_library_for_fastnn_tests",))]}


def double_case(*contenders, workload="double", single_shot=False):
    X = np.arange(12, dtype=np.float64).reshape(3, 4)
    return Case(f"{workload}/3x4", workload, "3x4", contenders,
                lambda: Inputs({"X": X}), base="good", single_shot=single_shot)


def run(case, pool, tmp_path):
    folder = tmp_path / "case"
    try:
        return CaseRun(case, pool, QUICK, str(folder)).run()
    finally:
        pool.close()


def test_worker_protocol_round_trip(fake, tmp_path):
    worker = ProcessWorker(fake["good"], user_environment())
    try:
        hello = worker.request("hello")
        assert hello["ok"] and hello["facts"]["library"] == "fake"
        assert hello["facts"]["pid"] == worker.pid != os.getpid()
        folder = tmp_path / "inputs"
        folder.mkdir()
        X = np.arange(6.0).reshape(2, 3)
        np.save(folder / "X.npy", X)
        spec = {"id": "double/2x3", "workload": "double", "params": {}}
        assert worker.request("setup", case=spec, folder=str(folder))["ok"]
        reply = worker.request("outputs")
        np.testing.assert_array_equal(np.load(reply["files"]["Y"]), 2 * X)
        per_call = worker.request("calibrate", min_time=1e-4)["per_call"]
        seconds = worker.request("sample", calls=3, chunks=2)["seconds"]
        assert math.isfinite(per_call) and math.isfinite(seconds)
        unknown = worker.request("no_such_request")
        assert not unknown["ok"] and "no_such_request" in unknown["error"]
        spec["workload"] = "no_such_workload"
        assert worker.request("setup", case=spec, folder=str(folder))["unsupported"]
    finally:
        worker.close()
    assert worker.proc.returncode == 0


def test_case_in_worker_processes_times_and_rejects_a_wrong_result(fake, tmp_path):
    pool = Pool(contenders=fake)
    result = run(double_case("good", "bad"), pool, tmp_path)
    good, bad = result.outcomes["good"], result.outcomes["bad"]
    assert good.status == "ok" and len(good.samples) == QUICK.samples
    assert all(math.isfinite(s) for s in good.samples)
    assert bad.status.startswith("error: disagrees with good: Y differs from good's by up to 1")
    assert not bad.samples  # a wrong result is never timed
    assert result.ratio("bad") is None


def test_every_contender_of_a_case_takes_samples_of_the_same_calls(fake, tmp_path):
    # a sample's first call comes after the other contenders' turns: the same loops and
    # calls for all weigh it alike (planned each by its own time, the contender 0.2 ms a
    # call slower would take 1 or 2 calls a sample, the base many)
    pool = Pool(contenders=fake)
    result = run(double_case("good", "slow"), pool, tmp_path)
    good, slow = result.outcomes["good"], result.outcomes["slow"]
    assert good.ok and slow.ok
    # 0.5 ms of the base's calls, for both: many more than the 1 or 2 that the slow one
    # would take on its own
    plan = (good.info["calls"], good.info["chunks"])
    assert plan == (slow.info["calls"], slow.info["chunks"])
    assert plan[0] * plan[1] > 5


def test_calibration_is_not_sized_by_one_slow_call():
    # the first timed call takes 20 ms (a lazy start), the others microseconds: the
    # estimate is theirs, not 20 ms (which, as the base's plan, would make every
    # contender's sample one cold call)
    calls = []

    def run():
        calls.append(None)
        if len(calls) == 2:  # (the first after the warm-up)
            time.sleep(0.02)

    assert estimate_call(run) < 0.005


def test_compare_rejects_a_wrong_result():
    want = {"dW": np.ones((3, 4), np.float32), "db": np.zeros(4, np.float32)}
    assert compare({k: v.copy() for k, v in want.items()}, want, 1e-4, 1e-5) is None
    wrong = {"dW": want["dW"] * (1 + 1e-2), "db": want["db"]}
    assert "dW differs from fastnn's by up to 0.01" in compare(wrong, want, 1e-4, 1e-5)
    assert "shape" in compare({"dW": want["dW"].T, "db": want["db"]}, want, 1e-4, 1e-5)
    assert "no output 'db'" in compare({"dW": want["dW"]}, want, 1e-4, 1e-5)


def test_missing_peer_is_reported_as_not_installed(fake, tmp_path):
    pool = Pool(contenders=fake)
    assert pool.get("ghost") == NOT_INSTALLED
    result = run(double_case("good", "ghost"), pool, tmp_path)
    assert result.outcomes["ghost"].status == NOT_INSTALLED
    assert result.outcomes["good"].ok
    assert NOT_INSTALLED in report.section([result], None)


def test_a_failure_in_the_timed_call_is_a_row_not_a_crash(fake, tmp_path):
    """The sparse case's densifying fit fails with MemoryError: an error row, and the
    goals that need it fail with the message."""
    pool = Pool(contenders=fake)
    result = run(double_case("good", workload="explode", single_shot=True), pool, tmp_path)
    assert result.outcomes["good"].status == ("error: MemoryError: Unable to allocate "
                                              "19.5 GiB for an array")
    assert "error [1]" in report.section([result], None)


def test_workers_get_the_environment_the_command_was_started_with(fake, monkeypatch):
    """Nothing set in this process after it started (as threadpoolctl, which fastnn
    imports, sets KMP_DUPLICATE_LIB_OK) reaches a worker, and no spin or thread variable is
    added."""
    monkeypatch.setenv("FASTNN_BENCH_SET_AFTER_START", "1")
    started_with = user_environment()
    if not os.path.exists("/proc/self/environ"):
        started_with.pop("FASTNN_BENCH_SET_AFTER_START")
    worker = ProcessWorker(fake["good"], started_with)
    try:
        environ = worker.request("environ")["environ"]
    finally:
        worker.close()
    assert environ == started_with
    assert "FASTNN_BENCH_SET_AFTER_START" not in environ
    for name in SPIN_AND_THREAD_VARIABLES:
        assert environ.get(name) == started_with.get(name), name


def test_pool_starts_workers_with_the_users_environment(fake):
    pool = Pool(contenders=fake)
    try:
        worker = pool.get("good")
        environ = worker.request("environ")["environ"]
    finally:
        pool.close()
    assert environ == user_environment()


def result_of(case_id, medians, *, errors=None, info=None, rounds=5, flops=0.0,
              base="fastnn"):
    """A CaseResult with samples whose median is the given one, round by round."""
    case = Case(case_id, case_id.split("/")[0], case_id, tuple(medians) + tuple(errors or ()),
                lambda: Inputs({}), base=base, flops=flops)
    outcomes = {}
    for name, median in medians.items():
        jitter = [1.0, 0.98, 1.02, 0.99, 1.01][:rounds]
        outcomes[name] = Outcome(samples=[median * j for j in jitter],
                                 info=dict((info or {}).get(name, {})))
    for name, status in (errors or {}).items():
        outcomes[name] = Outcome(status=status)
    return CaseResult(case, outcomes, rounds)


def verdict(title, results, peak=None):
    goal = next(g for g in goals.GOALS if g.title == title)
    return goals.judge(goal, {r.case.id: r for r in results}, peak)


def test_goal_verdicts_from_given_numbers():
    step = result_of(goals.T128, {"fastnn": 100e-6, "jax": 120e-6, "torch": 125e-6})
    assert verdict("train steps (128, 784-128-10) vs JAX jit", [step]).verdict == "pass"
    v = verdict("train steps (128, 784-128-10) vs PyTorch", [step])
    assert v.verdict == "fail" and v.value == pytest.approx(1.25)
    assert verdict("train steps (512, 784-512-10) vs JAX jit", [step]).verdict == "n/a"
    # a ratio whose per-round ratios straddle the target is borderline
    close = result_of(goals.T128, {"fastnn": 100e-6, "jax": 110e-6})
    close.outcomes["jax"].samples = [100e-6, 105e-6, 110e-6, 115e-6, 120e-6]
    v = verdict("train steps (128, 784-128-10) vs JAX jit", [close])
    assert v.verdict == "pass" and v.borderline
    # a missing peer: not measured; fastnn failing the case: the goal fails
    no_peer = result_of(goals.T128, {"fastnn": 1e-4}, errors={"jax": NOT_INSTALLED})
    assert verdict("train steps (128, 784-128-10) vs JAX jit", [no_peer]).verdict == "n/a"
    sparse = result_of(goals.SPARSE, {"sklearn": 80.0},
                       errors={"fastnn": "error: MemoryError: Unable to allocate 19.5 GiB"})
    v = verdict("sparse fit vs scikit-learn", [sparse])
    assert v.verdict == "fail" and "MemoryError" in v.measured


def test_goal_verdicts_of_every_kind():
    peak = 400.0
    big = result_of(goals.T512, {"fastnn": 1e-3}, flops=360e6)  # 360 GFLOP/s
    assert verdict("train steps (512, 784-512-10) share of the GEMM peak", [big],
                   peak).verdict == "pass"
    assert verdict("train steps (512, 784-512-10) share of the GEMM peak", [big],
                   500.0).verdict == "fail"
    cost = result_of("fit_cost/N=4 64-128-10", {"fastnn": 30e-6})
    assert verdict("a fit call's fixed cost (one 4-row batch)", [cost]).verdict == "fail"
    digits = result_of(goals.DIGITS, {"fastnn": 0.01}, info={"fastnn": {"accuracy": 0.971}})
    assert verdict("digits fit test accuracy", [digits]).verdict == "pass"
    memory = {"fastnn": {"accuracy": 0.975, "peak_rss_above_start_bytes_per_round": [2e9]},
              "sklearn": {"accuracy": 0.984, "peak_rss_above_start_bytes_per_round": [1e9]}}
    sparse = result_of(goals.SPARSE, {"fastnn": 10.0, "sklearn": 80.0}, info=memory,
                       rounds=1)
    assert verdict("sparse fit vs scikit-learn", [sparse]).verdict == "pass"
    assert verdict("sparse fit peak memory above the data vs scikit-learn's",
                   [sparse]).verdict == "fail"
    assert verdict("sparse fit held-out accuracy vs scikit-learn's",
                   [sparse]).verdict == "pass"
    changed = {"OMP_WAIT_POLICY": [None, "PASSIVE"]}
    guest = result_of("guest/torch 64-128-10", {"torch": 0.06, "torch+fastnn": 0.066},
                      info={"torch+fastnn": {"preload": {"environ_changed_by_fastnn": changed}}},
                      base="torch")
    assert verdict("import fastnn leaves os.environ unchanged", [guest]).verdict == "fail"
    v = verdict("a PyTorch loop after import fastnn + a fit, vs alone", [guest])
    assert v.verdict == "pass" and v.value == pytest.approx(1.1)
    assert verdict("digits fit vs scikit-learn", []).verdict == "n/a"


def test_slow_windows_counts_the_share_and_the_longest_run():
    # best 10: windows below 8 are slow
    assert steadiness.slow_windows([10, 9, 7, 0, 8, 5, 10]) == (pytest.approx(3 / 7), 2)
    assert steadiness.slow_windows([4, 4, 4]) == (0.0, 0)
    assert steadiness.slow_windows([]) == (0.0, 0)


def test_unsteady_cpus_mark_the_case():
    steady = [{"cpu": 0, "best": 1e4, "slow_share": 0.0, "longest_slow_ms": 0.0}]
    shaky = [{"cpu": 0, "best": 1e4, "slow_share": 0.3, "longest_slow_ms": 40.0}]
    slow = [{"cpu": 0, "best": 7e3, "slow_share": 0.0, "longest_slow_ms": 0.0}]  # throughout
    assert not steadiness.unsteady(steady) and steadiness.unsteady(shaky)
    assert not steadiness.unsteady(slow) and steadiness.unsteady(slow, {0: 1e4})
    assert steadiness.tops([steady, slow, None]) == {0: 1e4}
    r = CaseResult(Case("forward/x", "forward", "x", ("fastnn",), lambda: Inputs({})), {})
    assert not report.unsteady(r)
    r.steadiness = {"before": steady, "after": shaky, "unsteady": True}
    assert report.unsteady(r)
    line = steadiness.describe([steady, shaky, slow, None])
    assert line is not None and "2 of 3 probes" in line and "cpu0 30%" in line
    assert "cpu0 at 70% of its best" in line


def test_until_steady_probes_again_while_a_cpu_is_unsteady():
    steady = [{"cpu": 0, "best": 1e4, "slow_share": 0.0, "longest_slow_ms": 0.0}]
    shaky = [{"cpu": 0, "best": 1e4, "slow_share": 0.5, "longest_slow_ms": 90.0}]
    probe = steadiness.Probe.__new__(steadiness.Probe)  # (no processes: measure replaced)
    probe.top = {}
    answers = iter([shaky, shaky, steady, shaky])
    probe.measure = lambda seconds, window=steadiness.WINDOW: next(answers)
    assert probe.until_steady(0.25, 60) == (steady, 2)
    answers = iter([shaky, steady])
    assert probe.until_steady(0.25, 0) == (shaky, 0)  # (no time to wait: the first)
    slow = [{"cpu": 0, "best": 7e3, "slow_share": 0.0, "longest_slow_ms": 0.0}]
    probe.top = {0: 1e4}  # (a CPU slow throughout the probe, against its best in the run)
    answers = iter([slow, steady])
    assert probe.until_steady(0.25, 60) == (steady, 1)
    with pytest.raises(SystemExit):
        cli.parse_args(["--wait-steady", "5", "--steadiness", "0"])


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="pins CPUs: Linux")
def test_steadiness_probe_measures_every_cpu_and_survives_a_dead_child():
    probe = steadiness.Probe()
    try:
        rows = probe.measure(0.02)
        assert rows is not None and [r["cpu"] for r in rows] == sorted(os.sched_getaffinity(0))
        probe.children[0].kill()
        probe.children[0].wait()
        assert probe.measure(0.02) is None and probe.children == []  # (closed, no hang)
        assert probe.measure(0.02) is None
    finally:
        probe.close()


def test_json_output_shape(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["--only", "fit_cost", "--samples", "3", "--target-ms", "1",
                     "--steadiness", "0.05", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "each contender in a worker process of its own" in out
    assert "issue 15: a fit call's fixed cost" in out
    data = json.loads(path.read_text())
    if sys.platform.startswith("linux"):  # (pinned CPUs: Linux only)
        assert "CPU steadiness" in out
        assert len(data["steadiness_probes"]) == 2  # before the one case and after it
        probed = data["cases"][0]["steadiness"]
        assert probed["waited_s"] == 0  # (no --wait-steady)
        for rows in (probed["before"], probed["after"]):
            assert [row["cpu"] for row in rows] == sorted(os.sched_getaffinity(0))
            assert all(row["best"] > 0 and 0 <= row["slow_share"] <= 1 for row in rows)
    assert data["format"] == report.JSON_FORMAT and data["mode"] == "process per contender"
    assert set(data["settings"]) >= {"samples", "target_s", "budget_s"}
    env = data["environment"]
    assert {"machine", "thread_variables", "contenders"} <= set(env)
    assert env["contenders"]["fastnn"]["library"] == "fastnn"
    (case,) = data["cases"]
    assert case["id"] == "fit_cost/N=4 64-128-10" and case["rounds"] == 3
    fastnn_row = case["contenders"]["fastnn"]
    assert fastnn_row["status"] == "ok" and len(fastnn_row["samples_s"]) == 3
    assert fastnn_row["median_s"] == sorted(fastnn_row["samples_s"])[1]
    assert len(data["goals"]) == len(goals.GOALS)
    for g in data["goals"]:
        assert g["verdict"] in ("pass", "fail", "n/a") and g["wants"] and g["title"]
    measured = [g for g in data["goals"] if g["case"] == case["id"]]
    assert measured and all(g["verdict"] != "n/a" for g in measured)
