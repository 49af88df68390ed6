"""The README's tour runs as written (a newcomer copies it first)."""

import json
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    if not README.exists():  # the tests copied next to an installed wheel
        pytest.skip("README.md is not beside the tests")
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_tour_runs(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert blocks, "the README has no Python tour"
    monkeypatch.chdir(tmp_path)  # the tour saves a model file
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    # the tour's claims hold
    assert list(namespace["net"].predict(namespace["x"])) == [0, 0, 1, 0, 1]
    assert (namespace["clf"].predict(namespace["X_test"]) == namespace["y_test"]).mean() > 0.9
    assert (tmp_path / "digits.npz").exists()


RUN = README.parent / "docs" / "_data" / "benchmark.json"


def _speed_table():
    if not README.exists() or not RUN.exists():
        pytest.skip("README.md and the recorded run are not beside the tests")
    text = README.read_text()
    section = text[text.index("## Speed, in one table"):text.index("## scikit-learn drop-in")]
    return section, json.loads(RUN.read_text())


def _recorded_ratios(run):
    """Every ratio the recorded run can quote: peer median / fastnn median in each case, and
    the ratios in the goals' measured values (memory)."""
    ratios = []
    for case in run["cases"]:
        base = case["contenders"].get(case["base"], {}).get("median_s")
        for c in case["contenders"].values():
            if base and c.get("median_s"):
                ratios.append(c["median_s"] / base)
    for goal in run["goals"]:
        ratios += [float(r) for r in re.findall(r"= ([0-9.]+)x", goal["measured"])]
    return ratios


def _shown(value, text):
    """``value`` rounded as the README shows ``text`` (digits after the point)."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return f"{value:.{decimals}f}" == text


def test_speed_table_quotes_the_recorded_run():
    """Each ratio in the README's speed table is one the recorded run measured (to the
    digits shown), and the count of goals passed is the run's: the table cannot drift from
    docs/_data/benchmark.json, which BENCHMARKS.md and the docs' performance page show."""
    section, run = _speed_table()
    ratios = _recorded_ratios(run)
    table = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    quoted = [r for line in table[1:] for r in re.findall(r"([0-9]+(?:\.[0-9]+)?)x", line)]
    assert len(quoted) > 20, quoted
    missing = [r for r in quoted if not any(_shown(v, r) for v in ratios)]
    assert not missing, f"README ratios not in the recorded run: {missing}"
    passed = sum(goal["verdict"] == "pass" for goal in run["goals"])
    assert f"the goals ({passed} of {len(run['goals'])} pass)" in " ".join(section.split())
