"""What type checkers see of fastnn's public names: mypy --strict on a user's snippet.

``fastnn.MLPClassifier`` and ``MLPRegressor`` are lazy module attributes (a module
``__getattr__``: scikit-learn is imported on first use); without the ``TYPE_CHECKING``
re-export in ``fastnn/__init__.py`` a type checker sees them as ``Any`` and checks nothing.
mypy runs on the fastnn that ``import fastnn`` gives here (the source tree or the installed
wheel), with its own strict settings, not the repository's configuration.
"""

import re
import textwrap
from pathlib import Path

import pytest

import fastnn

api = pytest.importorskip("mypy.api")

SNIPPET = """\
import numpy as np
import fastnn

X = np.zeros((4, 2))
clf = fastnn.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5)
reveal_type(fastnn.MLPClassifier)
reveal_type(clf.fit(X, [0, 1, 0, 1]))
reveal_type(clf.partial_fit(X, [0, 1, 0, 1], classes=[0, 1]))
reveal_type(clf.predict_proba(X))
reg = fastnn.MLPRegressor(loss="poisson")
reveal_type(reg.fit(X, [0.0, 1.0, 2.0, 3.0]))
reveal_type(reg.predict(X))
reveal_type(reg.coefs_)
fastnn.MLPClassifier(max_iter="many")
"""


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory):
    """mypy --strict's notes and errors on SNIPPET, by line: {line: [message, ...]}."""
    tmp = tmp_path_factory.mktemp("typing")
    (tmp / "snippet.py").write_text(SNIPPET)
    # strict on the snippet; fastnn's own modules followed for their types, their messages
    # (and scikit-learn's missing stubs) not the user's concern
    # mypy must check the fastnn that ``import fastnn`` gives: an installed one it finds in
    # site-packages itself (fastnn ships py.typed); a source tree's through mypy_path (not
    # the installed site-packages as a path: its modules would shadow the library's own)
    root = Path(fastnn.__file__).resolve().parent.parent
    installed = root.name in ("site-packages", "dist-packages")
    (tmp / "mypy.ini").write_text(textwrap.dedent(f"""\
        [mypy]
        strict = True
        follow_imports = silent
        ignore_missing_imports = True
        cache_dir = {tmp / "cache"}
        """) + ("" if installed else f"mypy_path = {root}\n"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        stdout, stderr, status = api.run(["--config-file", str(tmp / "mypy.ini"),
                                          str(tmp / "snippet.py")])
    assert stderr == "" and status in (0, 1), (status, stderr, stdout)
    report = {}
    for line in stdout.splitlines():
        m = re.match(r".*snippet\.py:(\d+): (?:note|error): (.*)", line)
        if m:
            report.setdefault(int(m.group(1)), []).append(m.group(2))
    return report


def _revealed(report, line):
    (message,) = [m for m in report.get(line, []) if m.startswith("Revealed type is")]
    return message.removeprefix("Revealed type is ").strip('"')


def test_estimators_are_their_classes_not_any(mypy_report):
    # fastnn.MLPClassifier is the class itself: its constructor, returning the estimator
    assert _revealed(mypy_report, 6).startswith("def (hidden_layer_sizes: ")
    assert _revealed(mypy_report, 6).endswith(") -> fastnn.estimators._classifier.MLPClassifier")
    # fit and partial_fit return the estimator (chained calls keep their type)
    assert _revealed(mypy_report, 7) == "fastnn.estimators._classifier.MLPClassifier"
    assert _revealed(mypy_report, 8) == "fastnn.estimators._classifier.MLPClassifier"
    assert _revealed(mypy_report, 11) == "fastnn.estimators._regressor.MLPRegressor"
    # predictions and the fitted attributes are float arrays
    for line in (9, 12):
        assert _revealed(mypy_report, line).startswith("numpy.ndarray["), line
        assert "numpy.floating" in _revealed(mypy_report, line), line
    assert _revealed(mypy_report, 13).startswith("list[numpy.ndarray[")


def test_strict_use_is_clean_and_wrong_arguments_are_caught(mypy_report):
    # nothing on the correct lines (no "does not explicitly export" under --strict), and the
    # constructor's parameters are checked
    errors = {line: [m for m in ms if not m.startswith("Revealed type is")]
              for line, ms in mypy_report.items()}
    errors = {line: ms for line, ms in errors.items() if ms}
    assert list(errors) == [14], errors
    assert '"max_iter"' in errors[14][0] and 'expected "int"' in errors[14][0]
