"""The docstrings' ``Examples`` sections, run as doctests (what ``doctest.testmod`` does, one
test per module), so a plain ``pytest`` checks that the documentation still says the truth.

Examples that need an optional package (matplotlib for ``fastnn.plot``, onnx for
``fastnn.interop.to_onnx``) are skipped when it is not installed.
"""

import doctest
import importlib
import io

import pytest

import fastnn

MODULES = [
    "fastnn",
    "fastnn.functional",
    "fastnn.reference",
    "fastnn.layers",
    "fastnn.network",
    "fastnn.training",
    "fastnn.optim",
    "fastnn.updates",
    "fastnn.losses",
    "fastnn.backprop",
    "fastnn.serialization",
    "fastnn.config",
    "fastnn.datasets",
    "fastnn.plot",
    "fastnn.interop",
]

# a module, or one docstring in it, whose examples import an optional package
NEEDS = {"fastnn.plot": "matplotlib", "fastnn.interop.to_onnx": "onnx"}

FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _installed(package):
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name)
             if t.examples and (t.name not in NEEDS or _installed(NEEDS[t.name]))]
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    with fastnn.use_backend("cython"):  # the examples show the default backend
        for test in tests:
            runner.run(test, out=report.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed:\n" \
                               + report.getvalue()
