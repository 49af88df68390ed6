"""``python -m fastnn bench``: the command line of the benchmark harness."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence

from . import goals, report, steadiness
from .cases import WORKLOADS, Case, cases
from .runner import (CONTENDERS, MAX_RETRIES, CaseResult, CpuMeter, Pool, Settings,
                     run_case)

# the workloads whose report shows a share of the GEMM peak (which is then measured too)
NEEDS_PEAK = ("forward", "backward", "train", "inference")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m fastnn bench",
        description="fastnn against its NumPy reference, PyTorch, JAX, ONNX Runtime and "
                    "scikit-learn, each in a worker process of its own; medians, ratios, "
                    "GFLOP/s and the goals' verdicts (see fastnn/benchmark/__init__.py)")
    p.add_argument("--quick", action="store_true",
                   help="fewer, shorter samples: 9 of ~4 ms (default: 21 of ~10 ms)")
    p.add_argument("--only", metavar="WORKLOADS",
                   help=f"comma-separated workloads out of {','.join(WORKLOADS)}")
    p.add_argument("--cases", metavar="TEXT",
                   help="only the cases whose id contains TEXT (e.g. 'batch 1', '784-512')")
    p.add_argument("--sparse", action="store_true",
                   help="add the sparse case (20,000 x 2^18 CSR; a scikit-learn fit takes "
                        "a minute or more)")
    p.add_argument("--contenders", metavar="NAMES",
                   help=f"comma-separated subset of {','.join(CONTENDERS)}")
    p.add_argument("--same-process", action="store_true",
                   help="run every contender in this process (for profiling: NOT the "
                        "ratios users get)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--samples", type=int, help="rounds per case at most (>= 3)")
    p.add_argument("--target-ms", type=float, help="duration of one sample, ms")
    p.add_argument("--wait-quiet", type=float, metavar="S", default=0.0,
                   help="before each round, wait up to S seconds until other processes use "
                        "less than 10%% of the CPUs, and take a round again (up to "
                        f"{MAX_RETRIES} times) "
                        "when tasks waited for a CPU during more than 10%% of it (a shared "
                        "machine)")
    p.add_argument("--steadiness", type=float, metavar="S", default=0.25,
                   help="seconds of the CPU steadiness probe before each case and after the "
                        "last (fastnn/benchmark/steadiness.py; 0: none)")
    p.add_argument("--wait-steady", type=float, metavar="S", default=0.0,
                   help="before each case, probe the CPUs again while one is unsteady, up to "
                        "S seconds (a virtual machine whose host takes a CPU's arithmetic "
                        "away for seconds at a time)")
    p.add_argument("--list", action="store_true", help="list the cases and goals, and exit")
    args = p.parse_args(list(argv))
    if args.samples is not None and args.samples < 3:
        p.error("--samples must be at least 3")
    if args.wait_steady > 0 and not args.steadiness > 0:
        p.error("--wait-steady needs the steadiness probe (--steadiness above 0)")
    only = [w.strip() for w in (args.only or "").split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    args.workloads = only
    names = [n.strip() for n in (args.contenders or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        p.error(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS)}")
    args.contender_names = names
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    s = Settings(samples=9, min_samples=3, target=0.004, budget=2.0) if args.quick \
        else Settings()
    if args.samples is not None:
        s.samples = args.samples
        s.min_samples = min(s.min_samples, s.samples)
    if args.target_ms is not None:
        s.target = args.target_ms / 1e3
    s.wait_quiet = args.wait_quiet
    s.wait_steady = args.wait_steady
    return s


def select(args: argparse.Namespace) -> list[Case]:
    """The cases of the run, in order: the selected workloads (the opt-in sparse case only
    when asked for), the GEMM peak when a selected workload reports a share of it."""
    chosen = []
    for case in cases():
        if args.workloads:
            wanted = case.workload in args.workloads or (
                case.workload == "peak" and any(w in NEEDS_PEAK for w in args.workloads))
        else:
            wanted = not case.opt_in
        if case.workload == "sparse" and args.sparse:
            wanted = True
        if args.cases and args.cases not in case.id and case.workload != "peak":
            wanted = False
        if wanted and args.contender_names:
            names = tuple(n for n in case.contenders if n in args.contender_names)
            case = Case(**{**case.__dict__, "contenders": names})
        if wanted and case.contenders:
            chosen.append(case)
    return chosen


def list_cases() -> None:
    for case in cases():
        flag = " (opt-in: --sparse)" if case.opt_in else ""
        print(f"{case.id}{flag}: {', '.join(case.contenders)}")
    print()
    for goal in goals.GOALS:
        print(f"issue {goal.issue}: {goal.title} ({goal.wants}) [{goal.case}]")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        list_cases()
        return 0
    settings = settings_of(args)
    selected = select(args)
    start = time.perf_counter()
    probe = steadiness.Probe() if args.steadiness > 0 else None
    waits: list[int] = []  # per case, the probes taken again (--wait-steady)
    probes: list[steadiness.Rows | None] = []  # before each case, and after the last
    pool = Pool(same_process=args.same_process)
    meter = CpuMeter(lambda: [*pool.pids(), *(probe.pids() if probe is not None else [])])
    results: list[CaseResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="fastnn-bench-") as root:
            for i, case in enumerate(selected, 1):
                print(f"  [{i}/{len(selected)}] {case.workload} {case.label} "
                      f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
                if probe is not None:
                    rows, again = probe.until_steady(args.steadiness, args.wait_steady)
                    probes.append(rows)
                    waits.append(again)
                results.append(run_case(case, pool, settings, root))
            if probe is not None:
                probes.append(probe.measure(args.steadiness))
                top = steadiness.tops(probes)  # (each CPU's best rate in the run)
                for r, before, after, again in zip(results, probes, probes[1:], waits):
                    r.steadiness = {"before": before, "after": after,
                                    "waited_s": again * args.steadiness,
                                    "unsteady": bool(steadiness.unsteady(before, top)
                                                     or steadiness.unsteady(after, top))}
        env = report.environment(pool)
        other_cpu = meter.others()  # while the workers live: their CPU time is ours
    finally:
        pool.close()
        if probe is not None:
            probe.close()
    elapsed = time.perf_counter() - start
    peak_row = next((r for r in results if r.case.workload == "peak"), None)
    measured = [g for g in (peak_row.gflops(n) for n in peak_row.outcomes)
                if g is not None] if peak_row else []
    peak = max(measured) if measured else None
    by_id = {r.case.id: r for r in results}
    verdicts = goals.verdicts(by_id, peak)
    report.write_report(sys.stdout, results, peak, verdicts, env, settings,
                        args.same_process, elapsed, other_cpu, probes)
    if args.json:
        data = report.payload(results, peak, verdicts, env, settings, args.same_process,
                              elapsed, other_cpu, probes)
        with open(args.json, "w") as fh:
            json.dump(data, fh, indent=1)
        print(f"results written to {args.json}")
    return 0
