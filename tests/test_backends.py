"""fastnn.backends: the layering (only the backend modules import the compiled extension; no
import cycles between fastnn's modules) and the backends' agreement, method by method."""

import ast
import pathlib

import numpy as np
import pytest

import fastnn
from fastnn import backends, losses
from fastnn.backends import Ops, native

PACKAGE = pathlib.Path(fastnn.__file__).parent
BACKEND_MODULES = {"fastnn.backends.native_ops"}
MODULES = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
           for p in PACKAGE.rglob("*.py")} | {"fastnn._kernels"}


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """The fastnn modules ``path`` imports when it runs (not those under TYPE_CHECKING)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # (annotations only)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            if base.startswith("fastnn"):
                # "from . import functional" imports a submodule, not the package's
                # __init__ (which Python runs first for any submodule anyway)
                names = {f"{base}.{alias.name}" for alias in node.names}
                submodules = names & MODULES
                found.update(submodules or {base})
                found.update(names - submodules and {base})
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("fastnn"))
    return found


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(p) if m in modules and m != name}
            for name, p in modules.items()}, modules


def test_only_the_backend_modules_import_the_extension():
    importers = {name for name, p in _graph()[1].items() if "fastnn._kernels" in _imports(p)}
    assert importers <= BACKEND_MODULES, importers


def test_fastnn_has_no_import_cycles():
    graph, _ = _graph()
    state = {}

    def visit(node, path):
        state[node] = "active"
        for nxt in graph[node]:
            if state.get(nxt) == "active":
                pytest.fail("import cycle: " + " -> ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])


def test_the_backends_are_objects_chosen_by_name():
    with fastnn.use_backend("numpy"):
        assert type(backends.ops()) is Ops and backends.ops().name == "numpy"
    assert backends.ops() is native() and native().name == "cython"
    assert isinstance(native(), Ops)
    with pytest.raises(ValueError, match="backend must be one of"):
        fastnn.set_backend("jax")


def test_native_ops_agree_with_the_reference_method_by_method(dtype, rng, assert_close):
    ref, nat = Ops(), native()
    X = rng.standard_normal((9, 5)).astype(dtype)
    W = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    for act in ("identity", "relu", "sigmoid", "tanh", "exp", "step"):
        U = nat.linear(X, W, b, act)
        assert_close(U, ref.linear(X, W, b, act), dtype)
        dU = rng.standard_normal(U.shape).astype(dtype)
        for got, want in zip(nat.linear_backward(dU, X, W, U, act, True),
                             ref.linear_backward(dU, X, W, U, act, True)):
            assert_close(got, want, dtype)
        assert_close(nat.activate(X, act), ref.activate(X, act), dtype)
    for log in (False, True):
        assert_close(nat.softmax(X, log), ref.softmax(X, log), dtype)
    for output in ("sigmoid", "softmax", "identity", "exp"):
        assert_close(nat.output_map(X, output), ref.output_map(X, output), dtype)
    Y = np.abs(rng.standard_normal((9, 5))).astype(dtype)
    for name in ("squared_error", "half_squared_error", "poisson"):
        loss = losses.get(name)
        for got, want in zip(nat.loss(loss, X, Y, "sum", True), ref.loss(loss, X, Y, "sum", True)):
            assert_close(np.asarray(got), np.asarray(want), dtype, scale=10.0)
    grad = rng.standard_normal(20).astype(dtype)
    theta = rng.standard_normal(20).astype(dtype)
    (g1, s1), (g2, s2) = nat.penalized_gradient(grad, theta, 12, 0.3), \
        ref.penalized_gradient(grad, theta, 12, 0.3)
    np.testing.assert_allclose(g1, g2, rtol=1e-12)
    assert s1 == pytest.approx(s2, rel=1e-12)
