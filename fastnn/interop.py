"""Interoperability: a model's weights as a PyTorch ``state_dict`` and the model as ONNX.

``to_state_dict`` / ``from_state_dict`` name the weights as ``torch.nn.Sequential`` names
those of ``Sequential(Linear, ReLU, Linear, ReLU, ..., Linear)``: the l-th fastnn layer is
module ``2 l``, so its arrays are ``"{2 l}.weight"`` and ``"{2 l}.bias"``. fastnn's ``W``
already has PyTorch's (out_features, in_features) layout (the notes' W of eq. 10), so the
arrays go across as they are: ``torch_model.load_state_dict({k: torch.from_numpy(v) ...})``
in one direction, ``{k: v.numpy() for k, v in torch_model.state_dict().items()}`` in the
other. The output map (sigmoid, softmax) has no weights and is not part of the dict.

``to_onnx`` writes the forward pass (eq. 10) as an ONNX graph: one ``Gemm`` per layer
(``transB=1``: Z = X W^T + b), the activation as its ONNX operator, and the output map.
It needs the ``onnx`` package, an optional extra: ``pip install "fastnn[onnx]"``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._typing import FloatArray
from .layers import Linear
from .network import LOSS_OF_OUTPUT, LOSSES, MLP, OUTPUT_OF_LOSS, Sequential

if TYPE_CHECKING:
    import onnx

__all__ = ["from_state_dict", "to_onnx", "to_state_dict"]

_KEY = re.compile(r"(0|[1-9][0-9]*)\.(weight|bias)")
_MIN_OPSET = 13  # Softmax over the last axis (its semantics before 13 differ), GreaterOrEqual


def to_state_dict(model: Sequential) -> dict[str, FloatArray]:
    """The model's weights as a PyTorch ``state_dict`` of NumPy arrays (copies).

    Layer l's ``W`` (shape (n_out, n_in), the notes' W of eq. 10, which is also the layout of
    ``torch.nn.Linear.weight``) is ``"{2 l}.weight"`` and its ``b`` ``"{2 l}.bias"`` (no bias
    key for a layer without bias): the names ``torch.nn.Sequential(Linear, ReLU, Linear, ...,
    Linear)`` gives its parameters, with the activations at the odd indices.

    Parameters
    ----------
    model : fastnn.Sequential
        Any model (an ``MLP`` included).

    Returns
    -------
    dict of str to ndarray
        Copies of the weights, in the model's dtype; changing them does not change the model.

    See Also
    --------
    from_state_dict : the way back.

    Examples
    --------
    >>> from fastnn import MLP
    >>> from fastnn.interop import to_state_dict
    >>> state = to_state_dict(MLP(4, [8, 6], 3, random_state=0))
    >>> {key: value.shape for key, value in state.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'0.weight': (8, 4), '0.bias': (8,), '2.weight': (6, 8), '2.bias': (6,),
     '4.weight': (3, 6), '4.bias': (3,)}

    In PyTorch (not run here): ``net = torch.nn.Sequential(torch.nn.Linear(4, 8),
    torch.nn.ReLU(), torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))``, then
    ``net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})``.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastnn Sequential or MLP, got {type(model).__name__}")
    state: dict[str, FloatArray] = {}
    for l, layer in enumerate(model.layers):
        state[f"{2 * l}.weight"] = layer.W.copy()
        if layer.b is not None:
            state[f"{2 * l}.bias"] = layer.b.copy()
    return state


def _state_array(state: Mapping[str, ArrayLike], key: str) -> NDArray[Any]:
    """``state[key]`` as a finite real ndarray (a torch tensor converts through __array__)."""
    try:
        arr = np.asarray(state[key])
    except (TypeError, ValueError, RuntimeError) as exc:  # ragged lists, tensors needing grad
        raise ValueError(f"state[{key!r}] must be a numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"state[{key!r}] must hold real numbers, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"state[{key!r}] must be finite, found NaN or inf")
    return arr


@overload
def from_state_dict(state: Mapping[str, ArrayLike], activation: str = ..., output: str | None = ...,
                    loss: str | None = ...) -> MLP: ...
@overload
def from_state_dict(state: Mapping[str, ArrayLike], activation: Sequence[str],
                    output: str | None = ..., loss: str | None = ...) -> Sequential: ...
def from_state_dict(state: Mapping[str, ArrayLike], activation: str | Sequence[str] = "relu",
                    output: str | None = None, loss: str | None = None) -> Sequential:
    """A model with the weights of a PyTorch-style ``state_dict`` (exactly those weights).

    The keys are ``"{i}.weight"`` (shape (n_out, n_in), as ``torch.nn.Linear.weight`` and the
    notes' W of eq. 10) and optionally ``"{i}.bias"`` (n_out,), for the module indices i of
    the linear layers in a ``torch.nn.Sequential``, taken in increasing order (``to_state_dict``
    writes 0, 2, 4, ...). Consecutive layers must chain: each takes as many inputs as the
    one before gives outputs. The values may be ndarrays, nested lists or anything with
    ``__array__`` (CPU torch tensors); they are copied. The dtype is float32 if every array
    is float32, else float64.

    Parameters
    ----------
    state : mapping of str to array_like
        E.g. ``{k: v.numpy() for k, v in torch_model.state_dict().items()}``.
    activation : str or sequence of str, default "relu"
        The activation of the hidden layers ("identity", "step", "sigmoid", "relu", "tanh",
        "exp"): one name for all, which gives an ``MLP``; or one name per layer (the last
        layer's included, usually "identity"), which gives a ``Sequential``.
    output : {"softmax", "sigmoid", "identity"}, optional
        The output map g_out (eq. 5, 3, 7), which fixes the loss (eq. 18, 17, 20). Default
        "softmax", or the one that ``loss`` implies.
    loss : {"cross_entropy", "binary_cross_entropy", "squared_error"}, optional
        The same choice by the loss's name; given with ``output``, they must agree.

    Returns
    -------
    MLP or Sequential

    Raises
    ------
    ValueError
        A key that is not "{i}.weight" / "{i}.bias", a bias without its weight, an array of
        the wrong shape or ndim, non-finite values, layers that do not chain, or a wrong
        number of activations; the message names the key.
    TypeError
        ``state`` is not a mapping, or an array does not hold real numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import MLP
    >>> from fastnn.interop import from_state_dict, to_state_dict
    >>> net = MLP(4, 8, 3, random_state=0)
    >>> same = from_state_dict(to_state_dict(net), activation="relu", output="softmax")
    >>> X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    >>> bool((same.predict_proba(X) == net.predict_proba(X)).all())
    True
    >>> from_state_dict({"0.weight": np.ones((3, 4)), "0.bias": np.ones(2)})
    Traceback (most recent call last):
        ...
    ValueError: state['0.bias'] must have shape (3,) (one bias per row of '0.weight'), got (2,)
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping of names to arrays, got {type(state).__name__}")
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if output is not None and output not in LOSS_OF_OUTPUT:
        raise ValueError(f"output must be one of {tuple(LOSS_OF_OUTPUT)}, got {output!r}")
    if loss is not None and output is not None and OUTPUT_OF_LOSS[loss] != output:
        raise ValueError(f"output={output!r} and loss={loss!r} disagree: the {loss} loss "
                         f"goes with the {OUTPUT_OF_LOSS[loss]!r} output")
    output = output if output is not None else OUTPUT_OF_LOSS[loss] if loss is not None \
        else "softmax"

    indices: dict[int, dict[str, str]] = {}
    for key in state:
        match = _KEY.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            raise ValueError(f"state key {key!r} is not of the form '<i>.weight' or '<i>.bias' "
                             "(i the index of a Linear in a torch.nn.Sequential)")
        indices.setdefault(int(match[1]), {})[match[2]] = key
    if not indices:
        raise ValueError("state is empty: it needs at least '0.weight'")
    weights: list[tuple[FloatArray, FloatArray | None]] = []
    previous = None
    for i in sorted(indices):
        keys = indices[i]
        if "weight" not in keys:
            raise ValueError(f"state[{keys['bias']!r}] has no weight: '{i}.weight' is missing")
        W = _state_array(state, keys["weight"])
        if W.ndim != 2 or 0 in W.shape:
            raise ValueError(f"state[{keys['weight']!r}] must be 2-D (out_features, in_features), "
                             f"got shape {W.shape}")
        if previous is not None and W.shape[1] != previous[1].shape[0]:
            raise ValueError(
                f"state[{keys['weight']!r}] takes {W.shape[1]} inputs (shape {W.shape}) but "
                f"state[{previous[0]!r}] gives {previous[1].shape[0]} outputs: the layers do "
                "not chain")
        b = None
        if "bias" in keys:
            b = _state_array(state, keys["bias"])
            if b.shape != (W.shape[0],):
                raise ValueError(f"state[{keys['bias']!r}] must have shape ({W.shape[0]},) (one "
                                 f"bias per row of {keys['weight']!r}), got {b.shape}")
        weights.append((W, b))
        previous = (keys["weight"], W)

    if isinstance(activation, str):
        return MLP.from_weights(weights, activation=activation, output=output)
    activations = list(activation)
    if len(activations) != len(weights):
        raise ValueError(f"activation must name one activation per layer: {len(weights)} "
                         f"layers in state, got {len(activations)} activations")
    dtype = np.float32 if all(A.dtype == np.float32 for pair in weights for A in pair
                              if A is not None) else np.float64
    layers = [Linear.from_arrays(W, b, act, dtype=dtype)
              for (W, b), act in zip(weights, activations)]
    return Sequential(layers, LOSS_OF_OUTPUT[output])


def to_onnx(model: Sequential, path: str | os.PathLike[str] | None = None, *,
            opset: int = 17) -> onnx.ModelProto:
    """The model's forward pass as an ONNX graph (and, with ``path``, written to that file).

    The graph takes ``"X"`` of shape (N, n_inputs) in the model's dtype (float32 or
    float64; N is a free dimension) and computes eq. 10 layer by layer: ``Gemm`` with
    ``transB=1`` (Z = X W^T + b, W as stored, (n_out, n_in)), then the layer's activation:
    ``Relu``, ``Sigmoid``, ``Tanh``, ``Exp``, nothing for "identity", and for "step" (eq. 2,
    which has no ONNX operator) ``GreaterOrEqual(Z, 0)`` cast back to the float type. Its
    outputs are ``"logits"``, the last layer's output (what ``decision_function`` gives), and,
    for a sigmoid or softmax model, ``"probabilities"`` = ``Sigmoid`` / ``Softmax`` (last
    axis) of the logits (``predict_proba``, eq. 3 / eq. 5). An identity model (eq. 7) has only
    ``"logits"``, which are its predictions. Both outputs are 2-D, (N, n_outputs), also for
    one output. The initializers are named as in ``to_state_dict``.

    Parameters
    ----------
    model : fastnn.Sequential
    path : str or os.PathLike, optional
        Where to save the model (``onnx.save``).
    opset : int, default 17
        The ONNX opset (at least 13).

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker.check_model``.

    Raises
    ------
    ImportError
        The ``onnx`` package is not installed (``pip install "fastnn[onnx]"``).

    Examples
    --------
    >>> from fastnn import MLP
    >>> from fastnn.interop import to_onnx
    >>> proto = to_onnx(MLP(64, 32, 10, random_state=0))
    >>> [node.op_type for node in proto.graph.node]
    ['Gemm', 'Relu', 'Gemm', 'Softmax']

    Run by onnxruntime (not run here): ``session = onnxruntime.InferenceSession(
    proto.SerializeToString())``, then ``logits, probabilities = session.run(None,
    {"X": X})``.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastnn Sequential or MLP, got {type(model).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < _MIN_OPSET:
        raise ValueError(f"opset must be an integer >= {_MIN_OPSET}, got {opset!r}")
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise ImportError('fastnn.interop.to_onnx needs the onnx package, which is not '
                          'installed: pip install "fastnn[onnx]"') from exc
    from . import __version__

    elem = onnx.TensorProto.FLOAT if model.dtype == np.float32 else onnx.TensorProto.DOUBLE
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "exp": "Exp"}
    nodes: list[Any] = []
    initializers = []
    U = "X"
    if any(layer.activation == "step" for layer in model.layers):
        initializers.append(numpy_helper.from_array(np.zeros((), model.dtype), "zero"))
    for l, layer in enumerate(model.layers):
        names = [U, f"{2 * l}.weight"]
        initializers.append(numpy_helper.from_array(layer.W, names[1]))
        if layer.b is not None:
            names.append(f"{2 * l}.bias")
            initializers.append(numpy_helper.from_array(layer.b, names[2]))
        last = l == len(model.layers) - 1
        Z = "logits" if last and layer.activation == "identity" else f"z{l}"
        nodes.append(helper.make_node("Gemm", names, [Z], name=f"linear{l}", transB=1))  # eq. 10
        U = "logits" if last else f"u{l}"
        if layer.activation in simple:
            nodes.append(helper.make_node(simple[layer.activation], [Z], [U], name=f"act{l}"))
        elif layer.activation == "step":  # eq. 2: 1 if z >= 0 else 0
            nodes.append(helper.make_node("GreaterOrEqual", [Z, "zero"], [f"ge{l}"],
                                          name=f"step{l}"))
            nodes.append(helper.make_node("Cast", [f"ge{l}"], [U], name=f"cast{l}", to=elem))
        elif Z != U:  # identity on a hidden layer: the next layer reads Z
            U = Z
    outputs = [helper.make_tensor_value_info("logits", elem, ["N", model.n_outputs])]
    if model.output == "softmax":  # eq. 5
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], name="output",
                                      axis=-1))
    elif model.output == "sigmoid":  # eq. 3
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["probabilities"], name="output"))
    if model.output != "identity":
        outputs.append(helper.make_tensor_value_info("probabilities", elem,
                                                     ["N", model.n_outputs]))
    graph = helper.make_graph(
        nodes, "fastnn", [helper.make_tensor_value_info("X", elem, ["N", model.n_inputs])],
        outputs, initializer=initializers,
        doc_string=f"fastnn {type(model).__name__}: {model!r}")
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastnn",
                              producer_version=__version__)
    # the oldest IR version that has this opset, for the widest range of runtimes
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, os.fspath(path))
    return proto
