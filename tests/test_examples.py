"""The example scripts (examples/, the notes' worked problems) run and print the right numbers.

Each script is imported by path from the repository's examples/ folder and run through its
``main(argv)``. The module is skipped when that folder is not there (e.g. the tests copied
out of the tree and run against an installed wheel).
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if not EXAMPLES.is_dir():
    pytest.skip(f"no examples folder at {EXAMPLES}", allow_module_level=True)

# script -> the figures it saves
SCRIPTS = {
    "section1_problem1": ["section1_problem1.png"],
    "section1_problem2": ["section1_problem2.png"],
    "section1_problem3": ["section1_problem3.png"],
    "section1_problem4": [],
    "section1_problem5": [],
    "section3_problem1": [],
    "section3_problem2": [],
    "text_classification": ["text_classification.png"],
    "train_digits": ["train_digits.png"],
}

NUMBER = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def load(name):
    spec = importlib.util.spec_from_file_location(f"fastnn_examples_{name}",
                                                  EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name, capsys, argv=("--no-plot",)):
    """Run the script's main; returns (its return value, what it printed)."""
    result = load(name).main(list(argv))
    return result, capsys.readouterr().out


def numbers(line):
    return [float(v) for v in re.findall(NUMBER, line)]


def table_row(out, label):
    """The numbers after ``label`` on the line that starts with it."""
    lines = [line for line in out.splitlines() if line.startswith(label)]
    assert len(lines) == 1, f"expected one line starting with {label!r}"
    return numbers(lines[0][len(label):])


def test_every_script_is_tested():
    assert {p.stem for p in EXAMPLES.glob("*.py")} == set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_has_docstring_and_main(name):
    module = load(name)
    assert module.__doc__ and callable(module.main)
    first = module.__doc__.splitlines()[0]
    if name not in ("train_digits", "text_classification"):
        section, problem = re.fullmatch(r"section(\d)_problem(\d)", name).groups()
        assert f"Section {section}, problem {problem} of the notes" in first


def test_section1_problem1(capsys):
    result, out = run("section1_problem1", capsys)
    assert "check: fastnn matches the notes' formulas (b)-(e) on all 13 x: PASS" in out
    assert result["ok"]
    # x -> z_1, z_2, u_1, u_2, z^O, y_hat (the notes' (b)-(e))
    table = [numbers(line) for line in out.splitlines()
             if re.fullmatch(r"(\s*" + NUMBER + r"){7}\s*", line)]
    assert len(table) == 13
    rows = {r[0]: r[1:] for r in table}
    assert rows[0.0] == [-1, -3, 0, 0, 0.5, 1]
    assert rows[1.0] == [0, -2, 1, 0, -0.5, 0]  # g(0) = 1 (eq. 2)
    assert rows[2.0] == [1, -1, 1, 0, -0.5, 0]
    assert rows[3.0] == [2, 0, 1, 1, 1.5, 1]


def test_section1_problem2_table1(capsys):
    result, out = run("section1_problem2", capsys)
    # Table 1 of the notes, with its typos corrected (the rows follow the math)
    expected = {
        "x_i": [0, 1, 3, 5, 3.5],
        "z_i1 = x - 2": [-2, -1, 1, 3, 1.5],
        "z_i2 = x - 4": [-4, -3, -1, 1, -0.5],
        "u_i1 = g_act(z_i1)": [0, 0, 1, 1, 1],
        "u_i2 = g_act(z_i2)": [0, 0, 0, 1, 0],
        "z_i^O = u_i1 - 2 u_i2 - 0.5": [-0.5, -0.5, 0.5, -1.5, 0.5],
        "y_hat_i = g_out(z_i^O)": [0, 0, 1, 0, 1],
        "y_i": [0, 0, 1, 0],
    }
    for label, values in expected.items():
        assert table_row(out, label) == values, label
    assert "y_hat_i = y_i on all four training points: True" in out
    assert "prediction at the test point x = 3.5: y_hat = 1" in out
    assert result["fits"] and result["y_hat"].tolist() == [0, 0, 1, 0, 1]


def test_section1_problem3_triangle_check(capsys):
    result, out = run("section1_problem3", capsys)
    assert out.count("mismatches: 0;") == 2  # float64 and float32
    assert "check: y_hat = 1 exactly on x1 >= 0, x2 >= 0, x1 + x2 < 1: PASS" in out
    assert "z^O inside = [0.5], max z^O outside = -0.5" in out
    assert result["ok"] and result["n_points"] == 193 ** 2
    # multiples of 1/64 with x1, x2 >= 0 and x1 + x2 < 1: sum over x1 = i/64 of (64 - i)
    assert result["n_inside"] == sum(64 - i for i in range(64))


def test_section1_problem4_shapes(capsys):
    result, out = run("section1_problem4", capsys)
    assert result["(a)"] == [((100, 400), (100,)), ((26, 100), (26,))]
    assert result["(b)"] == [((32, 120), (32,)), ((1, 32), (1,))]
    assert result["(c)"] == [((8, 5), (8,)), ((1, 8), (1,))]
    assert "N_i = 400, N_h = 100, N_o = 26, g_act = relu, g_out = softmax" in out
    assert "N_i = 120, N_h = 32, N_o = 1, g_act = relu, g_out = sigmoid" in out
    assert "N_i = 5, N_h = 8, N_o = 1, g_act = tanh, g_out = identity" in out
    assert "shape (4, 26), rows sum to [1.0, 1.0, 1.0, 1.0]" in out
    assert out.count("predict_proba on a batch of 4 -> shape (4,)") == 2


def test_section1_problem5_snippets(capsys):
    result, out = run("section1_problem5", capsys)
    line = next(line for line in out.splitlines() if line.startswith("max |fastnn - notes|"))
    assert line.endswith("PASS (tolerance 1e-12 / 1e-05)")
    e64, e32 = map(float, re.search(f"float64 = ({NUMBER}), float32 = ({NUMBER})", line).groups())
    assert e64 <= 1e-12 and e32 <= 1e-5
    assert result["ok"]


def test_section3_problem1_finite_differences(capsys):
    result, out = run("section3_problem1", capsys)
    for backend in ("cython", "numpy"):
        line = next(line for line in out.splitlines()
                    if line.startswith(f"fastnn gradients ({backend}"))
        e_notes, e_fd = [float(v) for v in re.findall(r"max error (" + NUMBER + ")", line)]
        assert e_notes < 1e-12 and e_fd < 1e-6
    assert "PASS" in out and result["ok"]
    assert result["max_error_fd"] < 1e-6


def test_section3_problem2_notes_formulas(capsys):
    result, out = run("section3_problem2", capsys)
    rows = [line.split() for line in out.splitlines()
            if line.startswith(("cython ", "numpy "))]
    assert len(rows) == 6  # dL/dW, dL/db, dL/dalpha on two backends
    for row in rows:
        assert float(row[-2]) < 1e-12 and float(row[-1]) < 1e-6
    assert {row[1] for row in rows} == {"dL/dW", "dL/db", "dL/dalpha"}
    assert out.rstrip().endswith("PASS") and result["ok"]


def test_train_digits_accuracy(capsys):
    result, out = run("train_digits", capsys)
    assert "1347 training and 450 test images" in out
    assert len(re.findall(r"^epoch\s+\d+/30", out, flags=re.M)) == 30
    accuracy = float(re.search(r"test accuracy: (" + NUMBER + ")", out).group(1))
    assert accuracy >= 0.95 and accuracy == pytest.approx(result["accuracy"], abs=1e-4)
    assert re.search(r"fit time: " + NUMBER + " s for 30 epochs", out)
    h = result["history"]
    assert len(h.loss) == len(h.val_loss) == len(h.val_metric) == 30
    assert h.loss[-1] < h.loss[0]


def test_text_classification_prints_both_contenders(capsys):
    """fastnn's MLPClassifier and scikit-learn's side by side on a hashed bag of words (CSR),
    with the numbers the script prints."""
    pytest.importorskip("sklearn")
    results, out = run("text_classification", capsys)
    assert re.search(r"3000 documents, 8 topics: X is a csr_matrix of 3000 x 16384 with "
                     r"1\d\d non-zeros a row", out)
    for name in ("fastnn", "scikit-learn"):
        line = re.search(rf"{name}: fit\s+({NUMBER}) s\s+peak memory\s+({NUMBER}) MB\s+"
                         rf"held-out accuracy ({NUMBER})", out)
        assert line, name
        seconds, peak, accuracy = map(float, line.groups())
        assert results[name]["accuracy"] == pytest.approx(accuracy, abs=1e-4)
        assert 0.5 < accuracy <= 1 and peak > 0 and seconds > 0  # 8 topics: chance is 1/8
    # the same parameters and data: accuracies close (no time is asserted)
    assert abs(results["fastnn"]["accuracy"] - results["scikit-learn"]["accuracy"]) < 0.05
    assert re.search(r"fastnn: " + NUMBER + r"x faster, " + NUMBER + r"x the memory, "
                     r"accuracy [-+]" + NUMBER, out)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_save_their_figures(name, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_dir = tmp_path / "figs"  # created by the script
    run(name, capsys, argv=["--out", str(out_dir)])
    saved = sorted(p.name for p in out_dir.glob("*.png")) if out_dir.exists() else []
    assert saved == SCRIPTS[name]
    for png in saved:
        assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_as_a_script():
    done = subprocess.run([sys.executable, str(EXAMPLES / "section1_problem2.py"), "--no-plot"],
                          capture_output=True, text=True, check=True)
    assert "z_i2 = x - 4" in done.stdout and "y_hat = 1" in done.stdout


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripts_run_as_the_gallery_runs_them(name, tmp_path, capsys):
    """sphinx-gallery (docs/conf.py) runs each script with ``--show --out DIR``, pyplot on
    Agg and ``__doc__`` empty: the figures must stay open for its scraper to take."""
    plt = pytest.importorskip("matplotlib.pyplot")
    module = load(name)
    module.__doc__ = ""
    backend = plt.get_backend()
    plt.switch_backend("agg")  # where plt.show is a no-op, as in the gallery's build
    plt.close("all")
    try:
        module.main(["--show", "--out", str(tmp_path)])
        assert len(plt.get_fignums()) == len(SCRIPTS[name])
    finally:
        plt.close("all")
        plt.switch_backend(backend)
