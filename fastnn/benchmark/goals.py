"""The speed goals, one list, and their verdicts from one run's results.

The goals are those of the issues that the measurement serves: the thread-policy and speed
issue (train steps, digits fit, inference, a fit call's fixed cost, ``partial_fit``, fastnn
as a guest in a PyTorch process) and the sparse-input issue. A verdict is "pass", "fail"
(also when fastnn failed the case: its error is the measurement) or "n/a" (the case was not
run, or the peer is not installed). A ratio verdict whose per-round ratios straddle the
target (first to third quartile) is marked borderline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .cases import mlp_tag
from .runner import CaseResult


@dataclass(frozen=True)
class Goal:
    """One goal. ``kind``:

    * "speedup": ``peer``'s median / fastnn's >= ``target``;
    * "slowdown": ``peer``'s median / the case's base's <= ``target`` (fastnn as a guest);
    * "peak": fastnn's GFLOP/s >= ``target`` x the measured GEMM peak;
    * "time": fastnn's median <= ``target`` seconds;
    * "accuracy": fastnn's test accuracy >= ``target``;
    * "accuracy_gap": fastnn's accuracy >= ``peer``'s - ``target``;
    * "memory": fastnn's peak memory above the data <= ``target`` x ``peer``'s;
    * "environ": fastnn's import left ``os.environ`` unchanged (in ``peer``'s worker).
    """

    issue: int
    title: str
    case: str  # a case id
    kind: str
    target: float = 0.0
    peer: str = ""

    @property
    def wants(self) -> str:
        return {"speedup": f"{self.peer}/fastnn >= {self.target:g}",
                "slowdown": f"{self.peer}/alone <= {self.target:g}",
                "peak": f">= {self.target:.0%} of the GEMM peak",
                "time": f"<= {self.target * 1e6:g} us",
                "accuracy": f">= {self.target:g}",
                "accuracy_gap": f">= {self.peer}'s - {self.target:g}",
                "memory": f"<= {self.target:g} x {self.peer}'s",
                "environ": "unchanged"}[self.kind]


NOT_RUN = "not measured in this run"
T128 = "train/" + mlp_tag(128, 784, 128)
T512 = "train/" + mlp_tag(512, 784, 512)
DIGITS = "digits/64-128-10"
SPARSE = "sparse/20000x2^18"

GOALS = [
    Goal(15, "train steps (128, 784-128-10) vs JAX jit", T128, "speedup", 1.1, "jax"),
    Goal(15, "train steps (128, 784-128-10) vs PyTorch", T128, "speedup", 1.3, "torch"),
    Goal(15, "train steps (512, 784-512-10) vs JAX jit", T512, "speedup", 1.1, "jax"),
    Goal(15, "train steps (512, 784-512-10) vs PyTorch", T512, "speedup", 1.3, "torch"),
    Goal(15, "train steps (512, 784-512-10) share of the GEMM peak", T512, "peak", 0.85),
    Goal(15, "digits fit vs JAX (lax.scan epochs)", DIGITS, "speedup", 3.0, "jax"),
    Goal(15, "digits fit vs scikit-learn", DIGITS, "speedup", 15.0, "sklearn"),
    Goal(15, "digits fit test accuracy", DIGITS, "accuracy", 0.97),
    Goal(15, "predict_proba batch 1 vs ONNX Runtime", "inference/batch 1", "speedup", 1.5,
         "onnxruntime"),
    Goal(15, "predict_proba batch 1 vs PyTorch", "inference/batch 1", "speedup", 5.0, "torch"),
    Goal(15, "predict_proba batch 32 vs ONNX Runtime", "inference/batch 32", "speedup", 1.1,
         "onnxruntime"),
    Goal(15, "predict_proba batch 4096 vs ONNX Runtime", "inference/batch 4096", "speedup",
         1.1, "onnxruntime"),
    Goal(15, "predict_proba batch 4096 share of the GEMM peak", "inference/batch 4096",
         "peak", 0.85),
    Goal(15, "a fit call's fixed cost (one 4-row batch)", "fit_cost/N=4 64-128-10", "time",
         25e-6),
    Goal(15, "partial_fit (16 rows) MLPClassifier vs scikit-learn", "partial_fit/classifier",
         "speedup", 10.0, "sklearn"),
    Goal(15, "partial_fit (16 rows) MLPRegressor vs scikit-learn", "partial_fit/regressor",
         "speedup", 10.0, "sklearn"),
    Goal(15, "import fastnn leaves os.environ unchanged", "guest/torch 64-128-10", "environ",
         peer="torch+fastnn"),
    Goal(15, "a PyTorch loop after import fastnn + a fit, vs alone", "guest/torch 64-128-10",
         "slowdown", 1.15, "torch+fastnn"),
    Goal(17, "sparse fit vs scikit-learn", SPARSE, "speedup", 5.0, "sklearn"),
    Goal(17, "sparse fit peak memory above the data vs scikit-learn's", SPARSE, "memory", 1.5,
         "sklearn"),
    Goal(17, "sparse fit held-out accuracy vs scikit-learn's", SPARSE, "accuracy_gap", 0.01,
         "sklearn"),
]


@dataclass(frozen=True)
class Verdict:
    goal: Goal
    verdict: str  # "pass", "fail", "n/a"
    measured: str
    value: float | None = None
    borderline: bool = False

    def as_dict(self) -> dict[str, Any]:
        g = self.goal
        return {"issue": g.issue, "title": g.title, "case": g.case, "kind": g.kind,
                "target": g.target, "peer": g.peer or None, "wants": g.wants,
                "verdict": self.verdict, "measured": self.measured, "value": self.value,
                "borderline": self.borderline}


def peak_memory(result: CaseResult, name: str) -> float | None:
    """The median over rounds of a contender's peak resident memory above its size at the
    start of the timed call (bytes)."""
    values = result.outcomes[name].info.get("peak_rss_above_start_bytes_per_round")
    if not values or not result.ok(name):
        return None
    return float(sorted(values)[len(values) // 2])


def _failed(result: CaseResult, name: str) -> str | None:
    outcome = result.outcomes.get(name)
    if outcome is None:
        return f"{name} is not a contender of {result.case.id}"
    if outcome.ok:
        return None
    return f"{name}: {outcome.status}" if outcome.status != "ok" else f"{name}: no samples"


def judge(goal: Goal, results: Mapping[str, CaseResult], peak: float | None) -> Verdict:
    """The verdict of ``goal`` from the run's results (by case id) and GEMM peak."""
    result = results.get(goal.case)
    if result is None:
        return Verdict(goal, "n/a", NOT_RUN)
    if goal.kind == "environ":
        outcome = result.outcomes.get(goal.peer)
        preload = outcome.info.get("preload", {}) if outcome is not None else {}
        changed = preload.get("environ_changed_by_fastnn")
        if changed is None:
            return Verdict(goal, "n/a", "not measured (no worker imported fastnn)")
        text = ", ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in sorted(changed.items()))
        return Verdict(goal, "fail" if changed else "pass", text or "unchanged")
    base = result.case.base if goal.kind == "slowdown" else "fastnn"
    why = _failed(result, base)
    if why is not None:  # fastnn's failure is a failed goal; a missing peer is not measured
        return Verdict(goal, "n/a" if "n/a" in why else "fail", why)
    if goal.peer:
        why = _failed(result, goal.peer)
        if why is not None:
            return Verdict(goal, "n/a", why)
    if goal.kind in ("speedup", "slowdown"):
        ratio = result.ratio(goal.peer, base)
        quartiles = result.ratio_quartiles(goal.peer, base)
        assert ratio is not None and quartiles is not None

        def meets(x: float) -> bool:
            return x >= goal.target if goal.kind == "speedup" else x <= goal.target

        lo, hi = quartiles
        return Verdict(goal, "pass" if meets(ratio) else "fail",
                       f"{ratio:.2f} (per-round IQR {lo:.2f}-{hi:.2f})", ratio,
                       meets(lo) != meets(hi))
    if goal.kind == "peak":
        gflops = result.gflops()
        if not peak or gflops is None:
            return Verdict(goal, "n/a", "no GEMM peak measured")
        share = gflops / peak
        return Verdict(goal, "pass" if share >= goal.target else "fail",
                       f"{gflops:.1f} of {peak:.1f} GFLOP/s = {share:.1%}", share)
    if goal.kind == "time":
        median = result.outcomes["fastnn"].median
        return Verdict(goal, "pass" if median <= goal.target else "fail",
                       f"{median * 1e6:.1f} us", median)
    if goal.kind == "accuracy":
        acc = result.outcomes["fastnn"].info.get("accuracy")
        if acc is None:
            return Verdict(goal, "n/a", "no accuracy measured")
        return Verdict(goal, "pass" if acc >= goal.target else "fail", f"{acc:.4f}", acc)
    if goal.kind == "accuracy_gap":
        mine = result.outcomes["fastnn"].info.get("accuracy")
        theirs = result.outcomes[goal.peer].info.get("accuracy")
        if mine is None or theirs is None:
            return Verdict(goal, "n/a", "no accuracy measured")
        return Verdict(goal, "pass" if mine >= theirs - goal.target else "fail",
                       f"{mine:.4f} vs {theirs:.4f}", mine - theirs)
    if goal.kind == "memory":
        mine, theirs = peak_memory(result, "fastnn"), peak_memory(result, goal.peer)
        if mine is None or theirs is None or theirs <= 0:
            return Verdict(goal, "n/a", "no peak memory measured")
        ratio = mine / theirs
        return Verdict(goal, "pass" if ratio <= goal.target else "fail",
                       f"{mine / 2**20:.0f} MiB vs {theirs / 2**20:.0f} MiB = {ratio:.2f}x",
                       ratio)
    raise ValueError(f"unknown goal kind {goal.kind!r}")


def verdicts(results: Mapping[str, CaseResult], peak: float | None) -> list[Verdict]:
    return [judge(goal, results, peak) for goal in GOALS]
