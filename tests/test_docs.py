"""The documentation site (docs/) says the truth: its Python code runs as written and gives
what the text around it claims, and the performance page's generator reads the recorded run.

The pages' ``.. code-block:: python`` blocks run in order, one namespace per page, in a
temporary folder. The module is skipped when docs/ is not beside the tests (the tests copied
next to an installed wheel); the Dask page needs the ``dask`` extra, the generator Sphinx
(the ``docs`` extra).
"""

import importlib.util
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
if not DOCS.is_dir():
    pytest.skip(f"no docs folder at {DOCS}", allow_module_level=True)

BLOCK = re.compile(r"^\.\. code-block:: python\n\n((?:(?:   .*)?\n)+)", flags=re.M)


def python_blocks(page):
    """The page's Python blocks, dedented."""
    text = (DOCS / f"{page}.rst").read_text()
    blocks = [re.sub(r"^   ", "", b, flags=re.M) for b in BLOCK.findall(text)]
    assert blocks, f"{page}.rst has no Python block"
    return blocks


def run_page(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that saves a file saves it here
    namespace = {"__name__": "__main__"}  # functions a Dask task carries pickle by value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the short fits shown
        for block in python_blocks(page):
            exec(compile(block, str(DOCS / f"{page}.rst"), "exec"), namespace)
    return namespace


def test_home_page_example(tmp_path, monkeypatch):
    ns = run_page("index", tmp_path, monkeypatch)
    assert (ns["model"].predict(ns["X_test"]) == ns["y_test"]).mean() > 0.95  # "about 0.97"


def test_getting_started_tour(tmp_path, monkeypatch):
    ns = run_page("getting_started", tmp_path, monkeypatch)
    assert ns["net"].predict(ns["x"]).tolist() == [0, 0, 1, 0, 1]
    assert [len(g) for g in ns["grads"]] == [2, 2] and ns["grads"][1][1] is None
    assert (ns["clf"].predict(ns["X_test"]) == ns["y_test"]).mean() > 0.9
    assert (tmp_path / "digits.npz").exists()
    np.testing.assert_array_equal(ns["same"].predict(ns["X_test"]), ns["clf"].predict(ns["X_test"]))


def test_notes_page_code(tmp_path, monkeypatch):
    ns = run_page("notes", tmp_path, monkeypatch)
    np.testing.assert_allclose(ns["trace"].u[0], ns["U_H"], rtol=1e-12)
    np.testing.assert_allclose(ns["trace"].z[1], ns["Z_O"], rtol=1e-12)
    np.testing.assert_array_equal(ns["net"].predict(ns["X"]), (ns["Z_O"][:, 0] >= 0))
    # eq. 17's gradient on the logits: sigmoid(z) - y
    z, y = ns["Z_O"][:, 0], ns["y"]
    np.testing.assert_allclose(ns["dZ"], 1 / (1 + np.exp(-z)) - y, rtol=1e-12)


def test_sklearn_page_code_and_check_table(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    ns = run_page("sklearn", tmp_path, monkeypatch)
    assert ns["score"] > 0.95  # "about 0.97"
    # the table's rows for these two instances
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checks' short fits do not converge
        classifier = ns["failed_checks"](ns["MLPClassifier"]())
        regressor = ns["failed_checks"](ns["MLPRegressor"](dtype="float64"))
    assert sorted(classifier) == ["check_sample_weight_equivalence_on_dense_data",
                                  "check_sample_weight_equivalence_on_sparse_data"]
    assert regressor == []


def test_dask_page_code(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    pytest.importorskip("dask_ml")
    pytest.importorskip("pandas")
    from threadpoolctl import threadpool_limits

    ns = run_page("dask", tmp_path, monkeypatch)  # starts and closes its LocalCluster
    model, X = ns["model"], ns["X"]
    assert model.t_ == len(X)  # one pass of partial_fit over the chunks
    rows = np.cumsum([0, *ns["Xd"].chunks[0]])
    with threadpool_limits(1):  # the page's claim: each block's bits as predicted here
        local = np.concatenate([model.predict_proba(X[a:b]) for a, b in zip(rows, rows[1:])])
    np.testing.assert_array_equal(ns["P"], local)
    np.testing.assert_array_equal(ns["same"], local)
    np.testing.assert_array_equal(ns["y_hat"], model.classes_[local.argmax(axis=1)])
    assert ns["by_row"].index.equals(ns["frame"].index)
    with threadpool_limits(1):
        np.testing.assert_array_equal(ns["by_row"].to_numpy(),
                                      ns["named"].predict(ns["frame"]))


# -- the performance page's generator ------------------------------------------------------

@pytest.fixture(scope="module")
def generator():
    pytest.importorskip("sphinx")
    spec = importlib.util.spec_from_file_location("benchmark_tables",
                                                  DOCS / "_ext" / "benchmark_tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_generator_reads_benchmarks_md(generator):
    """Every section of BENCHMARKS.md's recorded run becomes a table with each of its rows
    (a row is a line of the blocks), and every goal line a verdict."""
    path = DOCS.parent / "BENCHMARKS.md"
    if not path.exists():
        pytest.skip("no BENCHMARKS.md")
    lines = generator.recorded_block(path.read_text())
    run = generator.read_run(path)
    titles = [line[3:] for line in lines if line.startswith("== ")]
    assert [s.title for s in run.sections] == [t for t in titles if not t.startswith("goals")]
    for section in run.sections:
        for row in section.rows:
            assert len(row) == len(section.header)
            assert any(line.startswith(row[0]) and line.rstrip().endswith(row[-1])
                       for line in lines), row
    tables = [s for s in run.sections if s.rows]
    assert len(tables) >= 5
    assert len(run.goals) == sum(bool(re.match(r"\[(PASS|FAIL|N/A)", x)) for x in lines)
    assert run.machine and run.machine[0][0] == "CPU"


def test_generator_reads_the_harness_json(generator):
    """A payload made by the harness's own ``report.payload`` (what ``python -m fastnn bench
    --json`` writes): the cells are the report's (time, then ratio), a missing peer its
    status, the verdicts PASS / FAIL with their borderline mark."""
    from fastnn.benchmark import goals, report
    from fastnn.benchmark.cases import Case, Inputs
    from fastnn.benchmark.runner import NOT_INSTALLED, CaseResult, Outcome, Settings

    case = Case("forward/N=4 2->3", "forward", "N=4 2->3", ("fastnn", "torch", "jax"),
                lambda: Inputs({}), flops=48.0)
    result = CaseResult(case, {"fastnn": Outcome(samples=[0.27e-6] * 3),
                               "torch": Outcome(samples=[3.99e-6] * 3),
                               "jax": Outcome(status=NOT_INSTALLED)}, rounds=3)
    verdicts = [goals.Verdict(goals.GOALS[0], "pass", "1.30", 1.3, borderline=True),
                goals.Verdict(goals.GOALS[1], "fail", "1.10", 1.1)]
    payload = report.payload([result], 100.0, verdicts, {"machine": {"cpu": "a CPU"}},
                             Settings(), False, 51.2, None)
    run = generator.parse_json(payload, "benchmark.json")
    (section,) = run.sections
    assert section.header == ["case", "fastnn", "torch", "jax", "GFLOP/s", "% peak"]
    assert section.rows == [["N=4 2->3", "0.27 us", "3.99 us (14.78x)", NOT_INSTALLED,
                             "0.2", "0%"]]
    assert [v for v, _ in run.goals] == ["PASS (borderline)", "FAIL"]
    assert run.goals[1][1] == report.verdict_line(verdicts[1]).split("] ", 1)[1]
    assert run.closing == ["51 s"]
