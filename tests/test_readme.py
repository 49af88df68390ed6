"""The README's tour runs as written (a newcomer copies it first)."""

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
