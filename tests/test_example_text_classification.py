"""examples/text_classification.py: fastnn's MLPClassifier and scikit-learn's side by side on
a hashed bag of words (CSR), with the numbers the script prints. (Skipped where the examples
folder is not there, as tests/test_examples.py is.)"""

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "text_classification.py"
if not SCRIPT.is_file():
    pytest.skip(f"no example at {SCRIPT}", allow_module_level=True)
NUMBER = r"[-+]?\d+(?:\.\d+)?"


def test_text_classification_prints_both_contenders(capsys):
    spec = importlib.util.spec_from_file_location("fastnn_example_text", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--no-plot"])
    out = capsys.readouterr().out
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
