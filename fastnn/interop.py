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

Both also take a fitted ``fastnn.MLPClassifier`` / ``MLPRegressor`` (its ``model_``); the ONNX
graph of an estimator gives what ``predict`` and ``predict_proba`` give (class labels of
``classes_``, (N, 2) probabilities for a binary classifier), and a fitted scikit-learn
``Pipeline`` ending in one is exported with the steps before it converted by skl2onnx.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
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


def to_state_dict(model: object) -> dict[str, FloatArray]:
    """The model's weights as a PyTorch ``state_dict`` of NumPy arrays (copies).

    Layer l's ``W`` (shape (n_out, n_in), the notes' W of eq. 10, which is also the layout of
    ``torch.nn.Linear.weight``) is ``"{2 l}.weight"`` and its ``b`` ``"{2 l}.bias"`` (no bias
    key for a layer without bias): the names ``torch.nn.Sequential(Linear, ReLU, Linear, ...,
    Linear)`` gives its parameters, with the activations at the odd indices.

    Parameters
    ----------
    model : fastnn.Sequential or a fitted fastnn.MLPClassifier / MLPRegressor
        Any model (an ``MLP`` included), or an estimator, whose ``model_`` is exported.

    Returns
    -------
    dict of str to ndarray
        Copies of the weights, in the model's dtype; changing them does not change the model.

    Raises
    ------
    TypeError
        ``model`` is none of these, or an estimator that is not fitted.

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
    state: dict[str, FloatArray] = {}
    for l, layer in enumerate(_model_of(model).layers):
        state[f"{2 * l}.weight"] = layer.W.copy()
        if layer.b is not None:
            state[f"{2 * l}.bias"] = layer.b.copy()
    return state


def _estimator_kind(obj: object) -> str | None:
    """"classifier" or "regressor" for a fastnn estimator, fitted or not; None otherwise (an
    object of fastnn.estimators' classes exists only once that module is imported)."""
    estimators = sys.modules.get("fastnn.estimators")
    if estimators is None:
        return None
    if isinstance(obj, estimators.MLPClassifier):
        return "classifier"
    if isinstance(obj, estimators.MLPRegressor):
        return "regressor"
    return None


def _model_of(obj: object, pipeline: bool = False) -> Sequential:
    """The fastnn model of ``obj``: a Sequential itself, or a fitted estimator's ``model_``."""
    if isinstance(obj, Sequential):
        return obj
    if _estimator_kind(obj) is not None:
        try:
            model = getattr(obj, "model_")
        except (AttributeError, ValueError):  # sklearn's NotFittedError is both
            raise TypeError(f"model is an unfitted {type(obj).__name__}: fit it before "
                            "exporting it") from None
        if isinstance(model, Sequential):
            return model
    also = ", or a fitted scikit-learn Pipeline ending in one" if pipeline else ""
    raise TypeError(f"model must be a fastnn Sequential or MLP, or a fitted fastnn "
                    f"MLPClassifier or MLPRegressor{also}; got {type(obj).__name__}")


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


def to_onnx(model: object, path: str | os.PathLike[str] | None = None, *,
            opset: int = 17) -> onnx.ModelProto:
    """The model's forward pass as an ONNX graph (and, with ``path``, written to that file).

    The graph takes ``"X"`` of shape (N, n_inputs) in the model's dtype (float32 or
    float64; N is a free dimension) and computes eq. 10 layer by layer: ``Gemm`` with
    ``transB=1`` (Z = X W^T + b, W as stored, (n_out, n_in)), then the layer's activation:
    ``Relu``, ``Sigmoid``, ``Tanh``, ``Exp``, nothing for "identity", and for "step" (eq. 2,
    which has no ONNX operator) ``GreaterOrEqual(Z, 0)`` cast back to the float type. The
    initializers are named as in ``to_state_dict``.

    A model's outputs are ``"logits"``, the last layer's output (what ``decision_function``
    gives), and, for a sigmoid or softmax model, ``"probabilities"`` = ``Sigmoid`` /
    ``Softmax`` (last axis) of the logits (``predict_proba``, eq. 3 / eq. 5). An identity
    model (eq. 7) has only ``"logits"``, which are its predictions. Both outputs are 2-D,
    (N, n_outputs), also for one output.

    A fitted estimator's outputs are what its ``predict`` and ``predict_proba`` give:
    a classifier's ``"label"``, of ``classes_``'s dtype (strings as ONNX strings; the class
    of the largest logit, or of the logit's sign for a binary one: ``Gather`` on a constant
    of ``classes_``), shape (N,), or the 0/1 int64 indicators (N, n_labels) of a multi-label
    one; and ``"probabilities"``, (N, n_classes): (N, 2) for a binary classifier, (1 - p, p).
    A regressor's ``"predictions"``, (N,) for one output, (N, n_outputs) otherwise (``Exp``
    of the logits for the Poisson loss). These are in the model's dtype, as X must be.

    A fitted scikit-learn ``Pipeline`` ending in a fastnn estimator is exported as one graph:
    the steps before it converted by skl2onnx (``pip install "fastnn[onnx]"``), which must
    have skl2onnx converters, in the estimator's dtype; then the estimator's graph.

    Parameters
    ----------
    model : fastnn.Sequential, fitted MLPClassifier / MLPRegressor, or Pipeline ending in one
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
    TypeError
        ``model`` is none of these, an unfitted estimator, or a Pipeline whose other steps
        skl2onnx cannot convert.
    ImportError
        The ``onnx`` package is not installed (``pip install "fastnn[onnx]"``), or skl2onnx
        for a Pipeline.

    Examples
    --------
    >>> from fastnn import MLP
    >>> from fastnn.interop import to_onnx
    >>> proto = to_onnx(MLP(64, 32, 10, random_state=0))
    >>> [node.op_type for node in proto.graph.node]
    ['Gemm', 'Relu', 'Gemm', 'Softmax']

    Run by onnxruntime (not run here): ``session = onnxruntime.InferenceSession(
    proto.SerializeToString())``, then ``logits, probabilities = session.run(None,
    {"X": X})``; for a classifier, ``label, probabilities = session.run(None, {"X": X})``.
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < _MIN_OPSET:
        raise ValueError(f"opset must be an integer >= {_MIN_OPSET}, got {opset!r}")
    steps = _pipeline_steps(model)
    estimator = steps[-1] if steps else model
    fastnn_model = _model_of(estimator, pipeline=True)
    try:
        import onnx
    except ImportError as exc:
        raise ImportError('fastnn.interop.to_onnx needs the onnx package, which is not '
                          'installed: pip install "fastnn[onnx]"') from exc
    if _estimator_kind(estimator) is None:
        proto = _graph(fastnn_model, _model_outputs, opset)
    else:
        proto = _graph(fastnn_model, functools.partial(_estimator_outputs, estimator), opset)
        if steps is not None and len(steps) > 1:
            proto = _after_steps(steps[:-1], proto, fastnn_model.dtype, opset)
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, os.fspath(path))
    return proto


def _pipeline_steps(obj: object) -> list[Any] | None:
    """A fitted scikit-learn Pipeline's steps (passthrough ones left out), the last a fastnn
    estimator; None if ``obj`` is no Pipeline."""
    pipeline = sys.modules.get("sklearn.pipeline")
    if pipeline is None or not isinstance(obj, pipeline.Pipeline):
        return None
    steps = [step for _, step in obj.steps if step is not None and step != "passthrough"]
    if not steps or _estimator_kind(steps[-1]) is None:
        raise TypeError("a Pipeline must end in a fastnn MLPClassifier or MLPRegressor to be "
                        f"exported by fastnn, got {type(steps[-1]).__name__ if steps else None}"
                        " (scikit-learn's own estimators: skl2onnx.to_onnx)")
    return steps


_Outputs = tuple[list[Any], list[Any], list[Any]]  # ONNX nodes, initializers, graph outputs


def _graph(model: Sequential, outputs: Callable[[Sequential, int], _Outputs], opset: int
           ) -> onnx.ModelProto:
    """The ONNX model of eq. 10 from ``"X"`` to ``"logits"``, then ``outputs(model, elem)``:
    the nodes, initializers and outputs that turn the logits into the graph's outputs."""
    import onnx
    from onnx import helper, numpy_helper

    from ._version import __version__

    elem = onnx.TensorProto.FLOAT if model.dtype == np.float32 else onnx.TensorProto.DOUBLE
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "exp": "Exp"}
    nodes: list[Any] = []
    initializers = [numpy_helper.from_array(np.zeros((), model.dtype), "zero"),
                    numpy_helper.from_array(np.ones((), model.dtype), "one")]
    U = "X"
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
    out_nodes, out_initializers, out_values = outputs(model, elem)
    initializers += out_initializers
    used = {name for node in nodes + out_nodes for name in node.input}
    graph = helper.make_graph(
        nodes + out_nodes, "fastnn",
        [helper.make_tensor_value_info("X", elem, ["N", model.n_inputs])], out_values,
        initializer=[t for t in initializers if t.name in used],
        doc_string=f"fastnn {type(model).__name__}: {model!r}")
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastnn",
                              producer_version=__version__)
    # the oldest IR version that has this opset, for the widest range of runtimes
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    return proto


def _model_outputs(model: Sequential, elem: int) -> _Outputs:
    """A model's outputs: the logits, and the output map of them (eq. 3 / eq. 5)."""
    from onnx import helper

    nodes = []
    outputs = [helper.make_tensor_value_info("logits", elem, ["N", model.n_outputs])]
    if model.output == "softmax":  # eq. 5
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], name="output",
                                      axis=-1))
    elif model.output == "sigmoid":  # eq. 3
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["probabilities"], name="output"))
    if model.output != "identity":
        outputs.append(helper.make_tensor_value_info("probabilities", elem,
                                                     ["N", model.n_outputs]))
    return nodes, [], outputs


def _estimator_outputs(est: Any, model: Sequential, elem: int) -> _Outputs:
    """A fitted estimator's outputs from the logits, as its ``predict`` / ``predict_proba``
    compute them, read from its public fitted attributes (``classes_``,
    ``out_activation_``, ``n_outputs_``)."""
    from onnx import helper, numpy_helper
    from onnx import TensorProto as T

    n = est.n_outputs_
    node = helper.make_node
    initializers = [numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    if _estimator_kind(est) == "regressor":
        nodes, Y = [], "logits"
        if est.out_activation_ == "exp":  # the Poisson loss's log link
            nodes, Y = [node("Exp", ["logits"], ["exp_logits"], name="exp")], "exp_logits"
        if n == 1:
            nodes.append(node("Squeeze", [Y, "axis1"], ["predictions"], name="predictions"))
        else:
            nodes.append(node("Identity", [Y], ["predictions"], name="predictions"))
        shape = ["N"] if n == 1 else ["N", n]
        return nodes, initializers, [helper.make_tensor_value_info("predictions", elem,
                                                                   shape)]
    classes = np.asarray(est.classes_)
    if est.out_activation_ == "softmax":  # multiclass (eq. 5): the class of the largest logit
        nodes = [node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
                 node("ArgMax", ["logits"], ["index"], name="argmax", axis=1, keepdims=0)]
        n_proba = n
    elif n == 1:  # binary (eq. 3): classes_[z > 0], probabilities (1 - p, p)
        nodes = [node("Sigmoid", ["logits"], ["p"], name="sigmoid"),
                 node("Sub", ["one", "p"], ["q"], name="one_minus_p"),
                 node("Concat", ["q", "p"], ["probabilities"], name="proba", axis=1),
                 node("Greater", ["logits", "zero"], ["positive"], name="positive"),
                 node("Cast", ["positive"], ["index2d"], name="cast", to=T.INT64),
                 node("Squeeze", ["index2d", "axis1"], ["index"], name="index")]
        if len(classes) == 1:  # fitted on one class: predict gives it for every row
            classes = np.repeat(classes, 2)
        n_proba = 2
    else:  # multi-label: 0/1 indicators of z > 0, as LabelBinarizer gives them back
        nodes = [node("Sigmoid", ["logits"], ["probabilities"], name="sigmoid"),
                 node("Greater", ["logits", "zero"], ["positive"], name="positive"),
                 node("Cast", ["positive"], ["label"], name="label", to=T.INT64)]
        return nodes, initializers, [
            helper.make_tensor_value_info("label", T.INT64, ["N", n]),
            helper.make_tensor_value_info("probabilities", elem, ["N", n])]
    table = numpy_helper.from_array(classes, "classes")
    nodes.append(node("Gather", ["classes", "index"], ["label"], name="label", axis=0))
    return nodes, initializers + [table], [
        helper.make_tensor_value_info("label", table.data_type, ["N"]),
        helper.make_tensor_value_info("probabilities", elem, ["N", n_proba])]


def _after_steps(steps: list[Any], proto: onnx.ModelProto, dtype: np.dtype[Any], opset: int
                 ) -> onnx.ModelProto:
    """``proto`` (which reads ``"X"``) after the scikit-learn ``steps`` converted by skl2onnx
    in ``dtype``: one graph from the Pipeline's ``"X"``."""
    import onnx
    from onnx import helper

    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
        from sklearn.pipeline import Pipeline
    except ImportError as exc:
        raise ImportError('exporting a Pipeline needs skl2onnx for the steps before the '
                          'estimator: pip install "fastnn[onnx]"') from exc
    tensor = FloatTensorType if dtype == np.float32 else DoubleTensorType
    n_features = getattr(steps[0], "n_features_in_", None)
    try:
        before = convert_sklearn(Pipeline([(f"step{i}", s) for i, s in enumerate(steps)]),
                                 initial_types=[("X", tensor([None, n_features]))],
                                 target_opset=opset)
    except RuntimeError as exc:  # skl2onnx's MissingShapeCalculator, MissingConverter
        raise TypeError(f"the Pipeline's steps before the estimator could not be converted to "
                        f"ONNX by skl2onnx: {exc}") from exc
    out = before.graph.output
    elem = proto.graph.input[0].type.tensor_type.elem_type
    if len(out) != 1 or out[0].type.tensor_type.elem_type != elem:
        raise TypeError(f"the Pipeline's steps before the estimator give {len(out)} outputs "
                        f"of types {[o.type.tensor_type.elem_type for o in out]}: the estimator "
                        f"takes one of its dtype {dtype}")
    before = onnx.compose.add_prefix(before, "pre_", rename_inputs=False)
    # skl2onnx declares for each domain the newest operator version it used (<= opset), so
    # declaring opset itself changes no operator's meaning; merge_models wants one per domain
    versions = {o.domain: o.version for o in before.opset_import}
    versions[""] = opset
    opsets = [helper.make_opsetid(domain, version) for domain, version in versions.items()]
    for model in (before, proto):
        del model.opset_import[:]
        model.opset_import.extend(opsets)
        model.ir_version = helper.find_min_ir_version_for(opsets)
    merged = onnx.compose.merge_models(before, proto, io_map=[(before.graph.output[0].name, "X")],
                                       producer_name="fastnn",
                                       producer_version=proto.producer_version)
    del merged.opset_import[:]
    merged.opset_import.extend(opsets)
    merged.graph.doc_string = f"{before.graph.doc_string}\n{proto.graph.doc_string}".strip()
    return merged
