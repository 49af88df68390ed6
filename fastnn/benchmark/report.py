"""What a run reports: the machine and environment, one table per workload, the goals'
verdicts, and the same as JSON (``--json``) for tracking."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from typing import IO, Any

import numpy as np

from . import steadiness
from .cases import TITLES, WORKLOADS
from .goals import NOT_RUN, Verdict
from .runner import CONTENDERS, CaseResult, Pool, Settings

JSON_FORMAT = 1
BUSY = 0.10  # a case during which other processes used more than this share is marked
NOISY = 0.25  # a contender whose samples' IQR exceeds this share of the median is noted
THREAD_PREFIXES = ("OMP_", "GOMP_", "KMP_", "OPENBLAS_", "MKL_", "BLIS_", "VECLIB_",
                   "NUMEXPR_", "XLA_", "TORCH_", "ORT_", "JAX_")


# ---------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def _first(text: str, prefix: str, sep: str = ":") -> str | None:
    for line in text.splitlines():
        if line.startswith(prefix):
            return line.split(sep, 1)[1].strip().strip('"')
    return None


def machine() -> dict[str, Any]:
    memory = _first(_read("/proc/meminfo"), "MemTotal")
    return {"cpu": _first(_read("/proc/cpuinfo"), "model name") or platform.processor()
            or platform.machine(),
            "cpus": os.cpu_count(),
            "memory_gib": round(int(memory.split()[0]) / 2 ** 20, 1) if memory else None,
            "os": _first(_read("/etc/os-release"), "PRETTY_NAME", "=") or platform.platform(),
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}


def environment(pool: Pool) -> dict[str, Any]:
    """The machine, the thread and BLAS variables of the user's environment (what the
    workers get), what ``import fastnn`` changed in this process's, and each contender's
    facts (version, threads, BLAS) as its worker reported them."""
    user = pool.env
    changed = {k: [user.get(k), os.environ.get(k)] for k in set(user) | set(os.environ)
               if user.get(k) != os.environ.get(k) and k != "PYTEST_CURRENT_TEST"}
    return {"machine": machine(),
            "thread_variables": {k: v for k, v in sorted(user.items())
                                 if k.startswith(THREAD_PREFIXES)},
            "changed_in_this_process": changed,
            "contenders": {name: pool.facts.get(name, {"status": pool.status.get(name)})
                           for name in pool.contenders
                           if name in pool.facts or name in pool.status}}


def _contender_line(name: str, facts: Mapping[str, Any]) -> str:
    if "version" not in facts:
        return f"{name}: {facts.get('status')}"
    parts = [f"{facts.get('library', name)} {facts['version']}"]
    if "threads" in facts:
        parts.append(f"{facts['threads']} threads")
    if facts.get("cpu_capability"):
        parts.append(f"CPU capability {facts['cpu_capability']}")
    if "devices" in facts:
        parts.append("devices " + ", ".join(facts["devices"]))
    for pool in facts.get("blas", []):
        parts.append(f"BLAS {pool['internal_api']} {pool['version']} {pool['architecture']} "
                     f"{pool['num_threads']} threads "
                     f"({os.path.basename(pool.get('filepath') or '')})")
    return f"{name}: " + ", ".join(parts)


def describe_environment(env: Mapping[str, Any]) -> list[str]:
    m = env["machine"]
    lines = [f"machine: {m['cpu']}, {m['cpus']} cpus, {m['memory_gib']} GiB, {m['os']} "
             f"(kernel {m['kernel']}), Python {m['python']}"]
    variables = env["thread_variables"]
    lines.append("thread/BLAS variables the command was started with (the workers get "
                 "exactly its environment): "
                 + (", ".join(f"{k}={v}" for k, v in variables.items()) or "none"))
    if env["changed_in_this_process"]:
        lines.append("(this process's os.environ differs: " + ", ".join(
            f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in sorted(env["changed_in_this_process"]
                                                           .items()))
                     + "; the workers do not inherit that)")
    lines += [_contender_line(name, facts) for name, facts in env["contenders"].items()]
    return lines


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    us = seconds * 1e6
    if us < 10:
        return f"{us:.2f} us"
    if us < 1000:
        return f"{us:.1f} us"
    if us < 1e6:
        return f"{us / 1e3:.2f} ms"
    return f"{us / 1e6:.2f} s"


def text_table(rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> str:
    """Rows of strings (the first the header, ruled off below it) as aligned text: the
    columns numbered in ``left`` flush left, the others flush right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [cell.ljust(w) if i in left else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def busy(r: CaseResult) -> bool:
    """Other processes took more than ``BUSY`` of the CPUs during the case, or more than a
    quarter of its rounds stalled (tasks waited for a CPU during more than 10% of them)."""
    stalled = bool(r.load and r.load["rounds"] and r.load["stalled"] > r.load["rounds"] / 4)
    return stalled or (r.other_cpu is not None and r.other_cpu > BUSY)


def unsteady(r: CaseResult) -> bool:
    """A CPU was unsteady just before or just after the case (steadiness; cli marks it)."""
    return bool((r.steadiness or {}).get("unsteady"))


def _cell(result: CaseResult, name: str, notes: list[str]) -> str:
    outcome = result.outcomes[name]
    if not outcome.ok:
        if outcome.status.startswith("error"):
            notes.append(f"{name} at {result.case.label}: {outcome.status[7:]}")
            return f"error [{len(notes)}]"
        return outcome.status
    text = fmt_time(outcome.median)
    ratio = result.ratio(name)
    if name != result.case.base and ratio is not None:
        text += f" ({ratio:.2f}x)"
    return text


def section(results: Sequence[CaseResult], peak: float | None) -> str:
    """One workload's table: a row per case, a column per contender (median, and its ratio
    to the base: above 1, the base is faster), the widest IQR/median of the row, and the
    base's GFLOP/s and share of the GEMM peak where the case counts flops."""
    columns = list(dict.fromkeys(n for r in results for n in r.case.contenders))
    flops = any(r.case.flops for r in results) and results[0].case.workload != "peak"
    head = ["case", *columns, "IQR"] + (["GFLOP/s", "% peak"] if flops else [])
    rows = [head]
    notes: list[str] = []
    for r in results:
        row = [r.case.label + (" *" if busy(r) else "") + (" +" if unsteady(r) else "")]
        row += [_cell(r, n, notes) if n in r.outcomes else "" for n in columns]
        spreads = [o.spread for o in r.outcomes.values() if o.ok]
        row.append(f"{100 * max(spreads):.0f}%" if spreads and r.rounds > 1 else "")
        if flops:
            g = r.gflops(r.case.base)
            row += [f"{g:.1f}" if g else "", f"{100 * g / peak:.0f}%" if g and peak else ""]
        rows.append(row)
    text = text_table(rows)
    text += "".join(f"\n[{i}] {note}" for i, note in enumerate(notes, 1))
    return text


def _extras(workload: str, results: Sequence[CaseResult]) -> list[str]:
    lines = []
    for r in results:
        for key in ("accuracy", "score"):
            values = {n: o.info[key] for n, o in r.outcomes.items() if key in o.info}
            if values:
                lines.append(f"test {key} ({r.case.label}): "
                             + ", ".join(f"{n} {a:.4f}" for n, a in values.items()))
        memory = {n: o.info["peak_rss_above_start_bytes_per_round"]
                  for n, o in r.outcomes.items()
                  if o.ok and "peak_rss_above_start_bytes_per_round" in o.info}
        if memory:
            lines.append("peak resident memory above the start of the fit (data loaded): "
                         + ", ".join(f"{n} {np.median(v) / 2 ** 20:.0f} MiB"
                                     for n, v in memory.items()))
        for n, o in r.outcomes.items():
            if "memory_cap_bytes" in o.info:
                lines.append(f"{n} ran under an address-space limit of "
                             f"{o.info['memory_cap_bytes'] / 2 ** 30:.1f} GiB (RLIMIT_AS: "
                             "a fit that densifies fails at once instead of swapping)")
                break
        for n, o in r.outcomes.items():
            changed = o.info.get("preload", {}).get("environ_changed_by_fastnn")
            if changed is not None:
                lines.append(f"{n}: import fastnn changed os.environ: " + (", ".join(
                    f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in sorted(changed.items()))
                                                                         or "nothing"))
    if workload == "train":
        lines.append("GFLOP/s counts 2 N (2 N_in N_h + 3 N_h 10) a step: the forward "
                     "products, dW of both layers, dX of the output layer.")
    return lines


def verdict_line(v: Verdict) -> str:
    mark = v.verdict.upper() + (" (borderline)" if v.borderline else "")
    return f"[{mark}] issue {v.goal.issue}: {v.goal.title} ({v.goal.wants}): {v.measured}"


def write_report(out: IO[str], results: Sequence[CaseResult], peak: float | None,
                 verdicts: Sequence[Verdict], env: Mapping[str, Any], settings: Settings,
                 same_process: bool, elapsed: float, other_cpu: float | None,
                 probes: Sequence[Any] = ()) -> None:
    def p(line: str = "") -> None:
        print(line, file=out)

    from fastnn._version import __version__

    if same_process:
        p(f"fastnn {__version__} benchmarks -- SAME-PROCESS MODE, for profiling: every "
          "contender runs in this one process, after `import fastnn`; these are NOT the "
          "ratios users get")
    else:
        p(f"fastnn {__version__} benchmarks: each contender in a worker process of its "
          "own, started with the environment this command was started with; rounds "
          f"alternated between the workers; medians of up to {settings.samples} samples of "
          f"~{settings.target * 1e3:g} ms")
    for line in describe_environment(env):
        p(line)
    p()
    p("Times are medians (per step for the train steps); (r.rrx) is the contender's time "
      "over fastnn's (over the case's base where it is not fastnn): above 1, fastnn is "
      "faster. IQR: the widest interquartile range of a contender's samples over its median "
      "in that row. GFLOP/s and % peak are fastnn's.")
    for workload in WORKLOADS:
        rows = [r for r in results if r.case.workload == workload]
        if not rows:
            continue
        p()
        p(f"== {TITLES[workload]}")
        p(section(rows, peak))
        if workload == "peak" and peak:
            p(f"GEMM peak: {peak:.1f} GFLOP/s ("
              + ", ".join(f"{n} {rows[0].gflops(n):.1f}" for n in rows[0].case.contenders
                          if rows[0].ok(n)) + ")")
        for line in _extras(workload, rows):
            p(line)
    p()
    p("== goals (from this run)")
    left_out = [v for v in verdicts if v.measured == NOT_RUN]
    for v in verdicts:
        if v not in left_out:
            p(verdict_line(v))
    if left_out:
        p(f"[N/A] {len(left_out)} goals whose cases this run left out")
    counts = {k: sum(v.verdict == k for v in verdicts) for k in ("pass", "fail", "n/a")}
    p(f"{counts['pass']} pass, {counts['fail']} fail, {counts['n/a']} not measured, "
      f"of {len(verdicts)} goals")
    noisy = sorted(((o.spread, f"{r.case.workload} {r.case.label} {n} {100 * o.spread:.0f}%")
                    for r in results for n, o in r.outcomes.items()
                    if o.ok and o.spread > NOISY), reverse=True)
    if noisy:
        p(f"note: {len(noisy)} contender-cases had samples spread (IQR/median) above "
          f"{NOISY:.0%}; the widest: " + "; ".join(text for _, text in noisy[:5]))
    marked = [f"{r.case.workload} {r.case.label}" for r in results if busy(r)]
    if marked:
        p(f"* {len(marked)} cases ran on a busy machine (other processes above {BUSY:.0%} of "
          "the CPUs, or more than a quarter of the rounds stalled); their times are suspect: "
          + "; ".join(marked))
    loads = [r.load for r in results if r.load and r.load["rounds"]]
    if loads:
        total = {k: sum(load[k] for load in loads) for k in loads[0]}
        line = (f"{total['stalled']:.0f} of {total['rounds']:.0f} timed rounds stalled (runnable "
                "tasks waited for a CPU during more than 10% of the round: Linux's CPU pressure)")
        if settings.wait_quiet > 0:
            line += (f"; --wait-quiet {settings.wait_quiet:g}: {total['retaken']:.0f} stalled "
                     f"rounds taken again, {total['waited_s']:.0f} s spent waiting for other "
                     "processes to go below 10% of the CPUs")
        p(line)
    if other_cpu is not None:
        p(f"other processes used {100 * other_cpu:.1f}% of the CPUs during the run")
    steady_line = steadiness.describe(probes)
    if steady_line:
        p(steady_line)
    if settings.wait_steady > 0:
        waited = [r.steadiness["waited_s"] for r in results if r.steadiness]
        p(f"--wait-steady {settings.wait_steady:g}: {sum(w > 0 for w in waited)} cases waited "
          f"for steady CPUs, {sum(waited):.0f} s in all")
    shaky = [f"{r.case.workload} {r.case.label}" for r in results if unsteady(r)]
    if shaky:
        p(f"+ {len(shaky)} cases began or ended with a CPU unsteady (their times are suspect, "
          "above all the ratios of a team of threads against one thread): "
          + "; ".join(shaky))
    p(f"{elapsed:.0f} s")


# ---------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------


def case_dict(r: CaseResult, peak: float | None) -> dict[str, Any]:
    c = r.case
    out: dict[str, Any] = {"id": c.id, "workload": c.workload, "label": c.label,
                           "base": c.base, "steps_per_call": c.steps,
                           "flops_per_step": c.flops, "rounds": r.rounds,
                           "other_cpu": r.other_cpu, "load": r.load,
                           "steadiness": r.steadiness, "contenders": {}}
    for name, o in r.outcomes.items():
        entry: dict[str, Any] = {"status": o.status if o.ok or o.status != "ok"
                                 else "error: no samples", "info": o.info}
        if o.ok:
            entry.update(median_s=o.median, spread=o.spread, samples_s=o.samples)
            if name != c.base:
                quartiles = r.ratio_quartiles(name)
                entry.update(ratio=r.ratio(name),
                             ratio_iqr=list(quartiles) if quartiles else None)
            g = r.gflops(name)
            if g is not None:
                entry["gflops"] = g
                if peak:
                    entry["percent_of_peak"] = 100 * g / peak
        out["contenders"][name] = entry
    return out


def payload(results: Sequence[CaseResult], peak: float | None, verdicts: Sequence[Verdict],
            env: Mapping[str, Any], settings: Settings, same_process: bool,
            elapsed: float, other_cpu: float | None,
            probes: Sequence[Any] = ()) -> dict[str, Any]:
    return {"format": JSON_FORMAT,
            "mode": "same-process" if same_process else "process per contender",
            "settings": {"samples": settings.samples, "min_samples": settings.min_samples,
                         "target_s": settings.target, "budget_s": settings.budget,
                         "single_shot_rounds": settings.single_shot_rounds,
                         "wait_quiet_s": settings.wait_quiet,
                         "wait_steady_s": settings.wait_steady},
            "environment": env,
            "contenders": {name: c.title for name, c in CONTENDERS.items()},
            "peak_gflops": peak,
            "cases": [case_dict(r, peak) for r in results],
            "goals": [v.as_dict() for v in verdicts],
            "other_cpu": other_cpu,
            "steadiness_probes": list(probes),
            "elapsed_s": elapsed}
