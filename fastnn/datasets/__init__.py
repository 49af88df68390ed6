"""Small bundled data: the 8x8 handwritten digits, a stratified split, and the notes' toy problems.

``load_digits`` reads the copy of the UCI "Optical Recognition of Handwritten Digits" test set
that ships inside this package (``data/digits.csv.gz``, CC BY 4.0: see
``data/DIGITS_LICENSE.txt``). ``make_documents`` makes a text classification corpus of
invented words on the spot, of any size (for sparse bag-of-words inputs; nothing is
downloaded). ``notes_problem1`` .. ``notes_problem3`` return the weights of
the hand-built networks of the course notes, section 1, problems 1-3, with W of shape
(n_out, n_in) as everywhere in fastnn.
"""

from __future__ import annotations

import functools
import gzip
import numbers
from importlib import resources
from typing import Any, Literal, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .._typing import FloatArray, SeedLike

__all__ = [
    "load_digits",
    "make_documents",
    "notes_problem1",
    "notes_problem2",
    "notes_problem3",
    "train_test_split",
]

DIGITS_FILE = "digits.csv.gz"


@functools.lru_cache(maxsize=1)
def _digits_table() -> NDArray[np.int64]:
    """The 1797 x 65 integer table (64 pixels, then the label), read once per process."""
    with (resources.files(__name__) / "data" / DIGITS_FILE).open("rb") as raw:
        with gzip.open(raw, "rt", encoding="ascii") as text:
            table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    table.flags.writeable = False  # the cache is shared: callers get copies
    return table


@overload
def load_digits(*, dtype: DTypeLike = ...,
                return_X_y: Literal[True] = ...) -> tuple[FloatArray, NDArray[np.int64]]: ...
@overload
def load_digits(*, dtype: DTypeLike = ...,
                return_X_y: Literal[False]) -> dict[str, NDArray[Any]]: ...
def load_digits(*, dtype: DTypeLike = "float32", return_X_y: bool = True
                ) -> tuple[FloatArray, NDArray[np.int64]] | dict[str, NDArray[Any]]:
    """Load the 8x8 handwritten digits (1,797 images of the digits 0 to 9).

    Each image is 8 x 8 counts of "on" pixels in 4 x 4 blocks of a 32 x 32 bitmap, so every
    pixel is an integer 0..16. The data are the test set of the UCI "Optical Recognition of
    Handwritten Digits" data (E. Alpaydin and C. Kaynak, 1998, CC BY 4.0), the copy that
    scikit-learn ships; the file is read from the installed package.

    Parameters
    ----------
    dtype : {"float32", "float64"}, default "float32"
        The floating dtype of the pixel values.
    return_X_y : bool, default True
        Return ``(X, y)``; if False, a dict with ``"data"`` (X), ``"target"`` (y),
        ``"images"`` (X as (1797, 8, 8)) and ``"target_names"`` (0..9).

    Returns
    -------
    X : ndarray of shape (1797, 64)
        Pixel values 0..16 as floats, one image per row (its 8 rows one after another).
    y : ndarray of shape (1797,), int64
        The digit shown, 0..9 (already 0-based, as fastnn's class labels).

    Raises
    ------
    ValueError
        ``dtype`` is not float32 or float64.

    Examples
    --------
    >>> from fastnn.datasets import load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, y.shape, y.dtype
    ((1797, 64), dtype('float32'), (1797,), dtype('int64'))
    >>> float(X.min()), float(X.max()), sorted(set(y.tolist())) == list(range(10))
    (0.0, 16.0, True)
    >>> X = X / 16  # scale the pixels to [0, 1] before training
    """
    try:
        dt = None if dtype is None else np.dtype(dtype)  # np.dtype(None) would be float64
    except TypeError:
        dt = None
    if dt is None or dt.name not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    table = _digits_table()
    X = table[:, :64].astype(dt)
    y = table[:, 64].copy()
    if return_X_y:
        return X, y
    return {"data": X, "target": y, "images": X.reshape(-1, 8, 8),
            "target_names": np.arange(10)}


def train_test_split(
    X: ArrayLike, y: ArrayLike, *, test_size: float = 0.25, random_state: SeedLike = 0,
    stratify: bool = True,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Split (X, y) into a training and a test part, by default stratified by class.

    With ``stratify=True`` every class c of its n_c samples contributes close to
    ``test_size * n_c`` of them to the test part (its exact share of the ``ceil(test_size *
    N)`` test samples, rounded by largest remainder), drawn at random within the class.
    The split depends only on ``y``, ``test_size`` and ``random_state``; both parts keep the
    original order of the samples.

    Parameters
    ----------
    X : array_like of shape (N, ...)
    y : array_like of shape (N,)
        Class labels (any values) when stratifying; any targets otherwise.
    test_size : float in (0, 1) or int, default 0.25
        The fraction, or the number, of samples in the test part.
    random_state : int, numpy.random.Generator or None, default 0
        Seeds the draw; the default 0 makes the split the same on every call.
    stratify : bool, default True
        Keep the class proportions of ``y`` in both parts.

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from fastnn.datasets import train_test_split
    >>> X, y = np.arange(20).reshape(10, 2), np.array([0] * 8 + [1] * 2)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5)
    >>> X_train.shape, X_test.shape, np.bincount(y_test).tolist()
    ((5, 2), (5, 2), [4, 1])
    """
    X, y = np.asarray(X), np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (N,), got shape {y.shape}")
    N = y.shape[0]
    if X.ndim == 0 or X.shape[0] != N:
        raise ValueError(f"X must have one row per label: {N} rows, got shape {X.shape}")
    if N < 2:
        raise ValueError(f"need at least 2 samples to split, got {N}")
    if isinstance(test_size, (bool, np.bool_)) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a float in (0, 1) or an int, got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        if not 1 <= test_size <= N - 1:
            raise ValueError(f"test_size must be in [1, {N - 1}] samples, got {test_size}")
        n_test = int(test_size)
    else:
        if not 0 < test_size < 1:
            raise ValueError(f"test_size must be in (0, 1) as a fraction, got {test_size}")
        n_test = min(max(int(np.ceil(test_size * N)), 1), N - 1)
    rng = np.random.default_rng(random_state)
    if stratify:
        classes, y_idx = np.unique(y, return_inverse=True)
        counts = np.bincount(y_idx, minlength=len(classes))
        share = n_test * counts / N  # each class's exact share of the test samples
        per_class = np.floor(share).astype(np.int64)
        # the samples left after rounding down go to the largest remainders (ties: class order)
        left = n_test - per_class.sum()
        per_class[np.argsort(-(share - per_class), kind="stable")[:left]] += 1
        test = np.concatenate([rng.permutation(np.flatnonzero(y_idx == c))[:k]
                               for c, k in enumerate(per_class)])
    else:
        test = rng.permutation(N)[:n_test]
    is_test = np.zeros(N, dtype=bool)
    is_test[test] = True
    return X[~is_test], X[is_test], y[~is_test], y[is_test]


def _notes_weights(W_H: ArrayLike, b_H: ArrayLike, W_O: ArrayLike, b_O: ArrayLike
                   ) -> dict[str, Any]:
    arr = functools.partial(np.array, dtype=np.float64)
    return {"W_H": arr(W_H), "b_H": arr(b_H), "W_O": arr(W_O), "b_O": arr(b_O),
            "activation": "step", "output": "sigmoid"}


def notes_problem1() -> dict[str, Any]:
    """The network of the notes' section 1, problem 1: scalar x, two hard-threshold units.

    z^H = W^H x + b^H = (x - 1, x - 3), u^H = g_act(z^H) with the hard threshold of eq. 2,
    z^O = W^O u^H + b^O = -u_1 + 2 u_2 + 0.5 and y_hat = 1{z^O >= 0} (eq. 4).

    Returns
    -------
    dict
        ``W_H`` (2, 1) = [[1], [1]], ``b_H`` (2,) = [-1, -3], ``W_O`` (1, 2) = [[-1, 2]],
        ``b_O`` (1,) = [0.5], all float64; ``activation`` = "step" and ``output`` = "sigmoid"
        (its hard decision is eq. 4's threshold) for ``MLP.from_weights``.

    Examples
    --------
    >>> from fastnn import MLP
    >>> from fastnn.datasets import notes_problem1
    >>> p = notes_problem1()
    >>> net = MLP.from_weights([(p["W_H"], p["b_H"]), (p["W_O"], p["b_O"])],
    ...                        activation=p["activation"], output=p["output"])
    >>> net.predict([[0.0], [1.0], [2.0], [3.0]]).tolist()  # 0 only for x in [1, 3)
    [1, 0, 0, 1]
    """
    return _notes_weights([[1.0], [1.0]], [-1.0, -3.0], [[-1.0, 2.0]], [0.5])


def notes_problem2() -> dict[str, Any]:
    """The notes' section 1, problem 2: four labelled points and a network that fits them.

    The notes' solution takes units 1{x >= 2} and 1{x >= 4} (W^H = [1, 1]^T,
    b^H = [-2, -4]) and z^O = u_1 - 2 u_2 - 0.5, so that y_hat = 1 exactly for x in [2, 4).

    Returns
    -------
    dict
        ``x`` (4,) = [0, 1, 3, 5] (float64) and ``y`` (4,) = [0, 0, 1, 0] (int64), the data
        set; ``x_test`` = 3.5, the new sample of part (c); ``W_H`` (2, 1) = [[1], [1]],
        ``b_H`` = [-2, -4], ``W_O`` (1, 2) = [[1, -2]], ``b_O`` = [-0.5]; ``activation`` =
        "step", ``output`` = "sigmoid".

    Examples
    --------
    >>> from fastnn import MLP
    >>> from fastnn.datasets import notes_problem2
    >>> p = notes_problem2()
    >>> net = MLP.from_weights([(p["W_H"], p["b_H"]), (p["W_O"], p["b_O"])],
    ...                        activation="step", output="sigmoid")
    >>> net.predict(p["x"][:, None]).tolist(), p["y"].tolist()
    ([0, 0, 1, 0], [0, 0, 1, 0])
    >>> int(net.predict([p["x_test"]]))
    1
    """
    p = _notes_weights([[1.0], [1.0]], [-2.0, -4.0], [[1.0, -2.0]], [-0.5])
    p.update(x=np.array([0.0, 1.0, 3.0, 5.0]), y=np.array([0, 0, 1, 0], dtype=np.int64),
             x_test=3.5)
    return p


def notes_problem3() -> dict[str, Any]:
    """The notes' section 1, problem 3: a 2-3-1 network whose y_hat = 1 on a triangle.

    z^H = (x1, x2, x1 + x2 - 1), z^O = u_1 + u_2 - u_3 - 1.5, so y_hat = 1 exactly on the
    region (12): x1 >= 0, x2 >= 0, x1 + x2 < 1.

    Returns
    -------
    dict
        ``W_H`` (3, 2) = [[1, 0], [0, 1], [1, 1]], ``b_H`` = [0, 0, -1], ``W_O`` (1, 3) =
        [[1, 1, -1]], ``b_O`` = [-1.5], all float64; ``activation`` = "step", ``output`` =
        "sigmoid".

    Examples
    --------
    >>> from fastnn import MLP
    >>> from fastnn.datasets import notes_problem3
    >>> p = notes_problem3()
    >>> net = MLP.from_weights([(p["W_H"], p["b_H"]), (p["W_O"], p["b_O"])],
    ...                        activation="step", output="sigmoid")
    >>> net.predict([[0.25, 0.25], [0.0, 0.0], [0.5, 0.5], [-0.1, 0.5]]).tolist()
    [1, 1, 0, 0]
    """
    return _notes_weights([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 0.0, -1.0],
                          [[1.0, 1.0, -1.0]], [-1.5])


_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]


def make_documents(n_documents: int = 2000, *, n_classes: int = 8, words: float = 170,
                   vocabulary: int = 30_000, topic_words: int = 400, topic_share: float = 0.03,
                   random_state: SeedLike = 0) -> tuple[list[str], NDArray[np.int64]]:
    """A text classification corpus of invented words, made on the spot.

    Each of ``n_documents`` documents is about one of ``n_classes`` topics and has about
    ``words`` words (Poisson). Most of its words come from one vocabulary of ``vocabulary``
    invented words (two to four syllables, "bakemo"), by Zipf's law as in natural text: the
    r-th most common word with probability proportional to 1/r, whatever the topic; a share
    ``topic_share`` of them from its topic's own ``topic_words`` words (drawn from the same
    vocabulary, so topics overlap), by Zipf's law too. Telling the topics apart is then a
    matter of a few rare words among common ones: a bag-of-words problem (scikit-learn's
    ``HashingVectorizer`` or ``TfidfVectorizer`` turn it into a sparse matrix).

    Parameters
    ----------
    n_documents : int, default 2000
    n_classes : int, default 8
    words : float, default 170
        The mean number of words of a document.
    vocabulary : int, default 30000
        The number of distinct invented words.
    topic_words : int, default 400
        The words of each topic.
    topic_share : float in [0, 1], default 0.03
        The share of a document's words drawn from its topic's words (higher: easier).
    random_state : int, numpy.random.Generator or None, default 0
        Seeds everything: the same seed gives the same corpus.

    Returns
    -------
    documents : list of str
        The documents, words separated by spaces.
    y : ndarray of int64, shape (n_documents,)
        The topic of each document, 0..n_classes - 1.

    Examples
    --------
    >>> from fastnn.datasets import make_documents
    >>> documents, y = make_documents(100, n_classes=3, words=20, random_state=0)
    >>> len(documents), sorted(set(y.tolist()))
    (100, [0, 1, 2])
    >>> len(documents[0].split()) > 0
    True
    """
    n_documents = _count(n_documents, "n_documents")
    n_classes = _count(n_classes, "n_classes")
    vocabulary = _count(vocabulary, "vocabulary")
    topic_words = _count(topic_words, "topic_words")
    if not vocabulary >= topic_words:
        raise ValueError(f"topic_words must be at most vocabulary ({vocabulary}), got "
                         f"{topic_words}")
    if not (isinstance(words, numbers.Real) and words > 0):
        raise ValueError(f"words must be a number > 0, got {words!r}")
    if not (isinstance(topic_share, numbers.Real) and 0 <= topic_share <= 1):
        raise ValueError(f"topic_share must be in [0, 1], got {topic_share!r}")
    rng = np.random.default_rng(random_state)
    # the vocabulary: distinct words of 2 to 4 syllables (90^4 of them possible)
    found: dict[str, None] = {}
    while len(found) < vocabulary:
        n = 2 * (vocabulary - len(found)) + 16
        lengths, parts = rng.integers(2, 5, n), rng.integers(0, len(_SYLLABLES), (n, 4))
        found.update(dict.fromkeys(
            "".join(_SYLLABLES[p] for p in row[:k]) for row, k in zip(parts.tolist(), lengths)))
    vocab = list(found)[:vocabulary]
    topics = np.stack([rng.choice(vocabulary, topic_words, replace=False)
                       for _ in range(n_classes)])
    y = rng.integers(0, n_classes, n_documents)
    lengths = np.maximum(rng.poisson(words, n_documents), 1)
    doc = np.repeat(np.arange(n_documents), lengths)  # each word's document
    common = rng.choice(vocabulary, doc.size, p=_zipf(vocabulary))
    topical = topics[y[doc], rng.choice(topic_words, doc.size, p=_zipf(topic_words))]
    chosen = np.where(rng.random(doc.size) < topic_share, topical, common).tolist()
    ends = np.cumsum(lengths).tolist()
    documents = [" ".join([vocab[w] for w in chosen[end - k:end]])
                 for end, k in zip(ends, lengths.tolist())]
    return documents, y.astype(np.int64)


def _zipf(n: int) -> NDArray[np.float64]:
    """Zipf's law over n ranks: p_r proportional to 1 / r."""
    p = 1.0 / np.arange(1, n + 1)
    p /= p.sum()
    return p


def _count(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
