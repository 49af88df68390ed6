"""bench/tune.py, the script that re-measures fastnn's tuning thresholds, runs and puts every
threshold back as it found it. It is run as a user runs it, in a process of its own, on one
cheap threshold; nothing here looks at a time or at a threshold's value."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastnn
from fastnn import _tuning

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "tune.py"

pytestmark = pytest.mark.skipif(not SCRIPT.exists(),
                                reason="bench/ is not here (tests run outside the source tree)")


def run_script(*args, cwd):
    # the script imports the fastnn these tests import
    env = dict(os.environ)
    here = str(Path(fastnn.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_quick_run_reports_both_sides_and_restores_every_threshold(tmp_path):
    out = tmp_path / "tune.json"
    done = run_script("--quick", "--only", "small_gemm,probe_steps", "--json", str(out),
                      cwd=SCRIPT.parent.parent)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())

    # every threshold as the script found it, and as it left it: the same
    assert set(result["values_before"]) == set(_tuning.NOTES)
    assert result["values_after"] == result["values_before"]
    assert "every threshold restored: True" in done.stdout

    by_name = {r["name"]: r for r in result["thresholds"]}
    assert set(by_name) == {"small_gemm", "probe_steps"}
    assert by_name["probe_steps"]["status"] == "policy"
    assert by_name["probe_steps"]["points"] == []

    gemm = by_name["small_gemm"]
    assert gemm["status"] == "measured"
    assert gemm["note"] == _tuning.NOTES["small_gemm"]
    assert gemm["current"] == result["values_before"]["small_gemm"]
    small, large = gemm["sides"]
    assert gemm["points"], "no size measured"
    for point in gemm["points"]:
        assert point["size"] > 0 and point["label"]
        assert set(point["seconds"]) == {small, large}
        assert all(t > 0 for t in point["seconds"].values())
        assert point["ratio"] == pytest.approx(point["seconds"][small] / point["seconds"][large])
    # each case (kernel, dtype) judged on its own too
    assert set(gemm["by_case"]) == {p["variant"] for p in gemm["points"]} != {""}
    assert isinstance(gemm["suggested"], int) and gemm["suggested"] >= 1
    assert gemm["verdict"]
    # the snippet to paste names it
    assert "T.small_gemm = " in done.stdout


def test_unknown_threshold_is_refused(tmp_path):
    done = run_script("--quick", "--only", "no_such_threshold", cwd=tmp_path)
    assert done.returncode == 2
    assert "no_such_threshold" in done.stderr
