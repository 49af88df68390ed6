"""fastnn.datasets: the bundled digits, the stratified split, the notes' toy problems and
make_documents (a text classification corpus made on the spot)."""

import hashlib
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from fastnn import MLP
from fastnn.datasets import (load_digits, make_documents, notes_problem1, notes_problem2,
                             notes_problem3, train_test_split)

# The digits' class counts (digit 0 .. 9) and the SHA-256 of scikit-learn's digits.csv.gz.
DIGIT_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


def _data_file(name):
    return resources.files("fastnn.datasets") / "data" / name


# ---------------------------------------------------------------------------------------
# load_digits
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.dtype("float64")])
def test_load_digits_shapes_and_dtypes(dtype):
    X, y = load_digits(dtype=dtype)
    assert X.shape == (1797, 64) and X.dtype == np.dtype(dtype)
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.flags.c_contiguous and X.flags.writeable and y.flags.writeable


def test_load_digits_default_is_float32():
    X, _ = load_digits()
    assert X.dtype == np.float32


def test_load_digits_values():
    X, y = load_digits()
    assert X.min() == 0 and X.max() == 16
    assert np.array_equal(X, np.round(X))  # counts of pixels: integers 0..16
    assert y.min() == 0 and y.max() == 9
    assert np.bincount(y).tolist() == DIGIT_COUNTS
    # the first and last rows of the file
    assert X[0, :16].tolist() == [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0]
    assert X[-1, :8].tolist() == [0, 0, 10, 14, 8, 1, 0, 0]
    assert y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert y[-5:].tolist() == [9, 0, 8, 9, 8]


def test_load_digits_returns_fresh_copies():
    X, y = load_digits()
    X[:] = -1
    y[:] = -1
    X2, y2 = load_digits()
    assert X2.min() == 0 and y2.min() == 0


def test_load_digits_as_dict():
    d = load_digits(dtype="float64", return_X_y=False)
    X, y = load_digits(dtype="float64")
    assert set(d) == {"data", "target", "images", "target_names"}
    assert np.array_equal(d["data"], X) and np.array_equal(d["target"], y)
    assert d["images"].shape == (1797, 8, 8)
    assert np.array_equal(d["images"].reshape(1797, 64), X)
    assert d["target_names"].tolist() == list(range(10))


@pytest.mark.parametrize("dtype", ["int64", "float16", np.int32, "complex128", "bogus", None])
def test_load_digits_rejects_bad_dtype(dtype):
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        load_digits(dtype=dtype)


def test_bundled_file_is_scikit_learns_copy():
    data = _data_file("digits.csv.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == DIGITS_SHA256


def test_licence_ships_with_the_data():
    text = _data_file("DIGITS_LICENSE.txt").read_text(encoding="utf-8")
    for needle in ("Alpaydin", "Kaynak", "1998", "CC BY 4.0", "scikit-learn",
                   "https://creativecommons.org/licenses/by/4.0/"):
        assert needle in text


def test_same_data_as_scikit_learn():
    sk_datasets = pytest.importorskip("sklearn.datasets")
    X_sk, y_sk = sk_datasets.load_digits(return_X_y=True)
    X, y = load_digits(dtype="float64")
    assert np.array_equal(X, X_sk) and np.array_equal(y, y_sk)


def test_fastnn_never_imports_scikit_learn():
    code = ("import sys, fastnn, fastnn.datasets, fastnn.plot\n"
            "fastnn.datasets.load_digits()\n"
            "bad = [m for m in sys.modules if m == 'sklearn' or m.startswith('sklearn.')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------
# train_test_split
# ---------------------------------------------------------------------------------------

def test_split_digits_sizes_and_stratification():
    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y)
    assert X_train.shape == (1347, 64) and X_test.shape == (450, 64)  # ceil(0.25 * 1797)
    assert y_train.shape == (1347,) and y_test.shape == (450,)
    counts = np.bincount(y, minlength=10)
    share = 450 * counts / 1797
    test_counts = np.bincount(y_test, minlength=10)
    assert np.all(np.abs(test_counts - share) < 1)  # each class's share, rounded
    assert np.array_equal(np.bincount(y_train, minlength=10) + test_counts, counts)


def test_split_is_a_partition_in_original_order():
    y = np.repeat([0, 1, 2], [10, 20, 30])
    ids = np.arange(len(y))
    i_train, i_test, y_train, y_test = train_test_split(ids, y, test_size=0.3)
    assert np.array_equal(np.sort(np.concatenate([i_train, i_test])), ids)
    assert np.all(np.diff(i_train) > 0) and np.all(np.diff(i_test) > 0)
    assert np.array_equal(y[i_train], y_train) and np.array_equal(y[i_test], y_test)
    assert np.bincount(y_test).tolist() == [3, 6, 9]


def test_split_is_deterministic():
    X, y = load_digits()
    a = train_test_split(X, y)
    b = train_test_split(X, y, random_state=0)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    c = train_test_split(X, y, random_state=1)
    assert not np.array_equal(a[3], c[3]) or not np.array_equal(a[1], c[1])
    g1 = train_test_split(X, y, random_state=np.random.default_rng(7))
    g2 = train_test_split(X, y, random_state=np.random.default_rng(7))
    assert np.array_equal(g1[1], g2[1])


def test_split_rounds_to_the_exact_total():
    # 3 classes of 5: shares 7 * 5 / 15 = 2.33 each; the leftover test sample goes to the first
    y = np.repeat([0, 1, 2], 5)
    _, _, _, y_test = train_test_split(np.zeros((15, 1)), y, test_size=7)
    assert len(y_test) == 7 and np.bincount(y_test).tolist() == [3, 2, 2]


def test_split_without_stratification():
    y = np.repeat([0, 1], [90, 10])
    X_train, X_test, _, y_test = train_test_split(np.arange(100), y, test_size=0.2,
                                                  stratify=False)
    assert len(X_train) == 80 and len(X_test) == 20
    assert np.array_equal(np.sort(np.concatenate([X_train, X_test])), np.arange(100))


def test_split_any_labels_and_shapes():
    y = np.array(["a", "b"] * 6)
    X = np.arange(12 * 2 * 3).reshape(12, 2, 3)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5)
    assert X_train.shape == (6, 2, 3) and X_test.shape == (6, 2, 3)
    assert sorted(y_test.tolist()) == ["a"] * 3 + ["b"] * 3


@pytest.mark.parametrize("test_size, exc", [(0.0, ValueError), (1.0, ValueError),
                                            (-0.1, ValueError), (0, ValueError),
                                            (10, ValueError), (True, TypeError),
                                            ("0.25", TypeError)])
def test_split_rejects_bad_test_size(test_size, exc):
    with pytest.raises(exc, match="test_size"):
        train_test_split(np.zeros((10, 2)), np.arange(10) % 2, test_size=test_size)


def test_split_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="X must have one row per label"):
        train_test_split(np.zeros((9, 2)), np.arange(10) % 2)
    with pytest.raises(ValueError, match="y must be 1-D"):
        train_test_split(np.zeros((10, 2)), np.zeros((10, 1)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        train_test_split(np.zeros((1, 2)), np.zeros(1))


# ---------------------------------------------------------------------------------------
# The notes' toy problems (section 1, problems 1-3)
# ---------------------------------------------------------------------------------------

def _net(p):
    return MLP.from_weights([(p["W_H"], p["b_H"]), (p["W_O"], p["b_O"])],
                            activation=p["activation"], output=p["output"])


def test_notes_problem1_values():
    p = notes_problem1()
    assert p["W_H"].tolist() == [[1.0], [1.0]] and p["b_H"].tolist() == [-1.0, -3.0]
    assert p["W_O"].tolist() == [[-1.0, 2.0]] and p["b_O"].tolist() == [0.5]
    assert all(p[k].dtype == np.float64 for k in ("W_H", "b_H", "W_O", "b_O"))
    assert (p["activation"], p["output"]) == ("step", "sigmoid")
    x = np.array([0.0, 0.999, 1.0, 2.0, 2.999, 3.0, 4.0])
    # the notes' (e): y_hat = 0 for x in [1, 3), 1 otherwise
    assert _net(p).predict(x[:, None]).tolist() == [1, 1, 0, 0, 0, 1, 1]


def test_notes_problem2_values():
    p = notes_problem2()
    assert p["W_H"].tolist() == [[1.0], [1.0]] and p["b_H"].tolist() == [-2.0, -4.0]
    assert p["W_O"].tolist() == [[1.0, -2.0]] and p["b_O"].tolist() == [-0.5]
    assert p["x"].tolist() == [0.0, 1.0, 3.0, 5.0] and p["x"].dtype == np.float64
    assert p["y"].tolist() == [0, 0, 1, 0] and p["y"].dtype == np.int64
    assert p["x_test"] == 3.5
    net = _net(p)
    assert np.array_equal(net.predict(p["x"][:, None]), p["y"])  # (a): fits the data
    assert net.predict([[p["x_test"]]]).tolist() == [1]  # (c)
    # Table 1's z^O row, training then test
    assert net.decision_function([[0.0], [1.0], [3.0], [5.0], [3.5]]).tolist() == \
        [-0.5, -0.5, 0.5, -1.5, 0.5]


def test_notes_problem3_values():
    p = notes_problem3()
    assert p["W_H"].shape == (3, 2) and p["W_O"].shape == (1, 3)
    assert p["W_H"].tolist() == [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    assert p["b_H"].tolist() == [0.0, 0.0, -1.0]
    assert p["W_O"].tolist() == [[1.0, 1.0, -1.0]] and p["b_O"].tolist() == [-1.5]
    pts = np.array([[0.25, 0.25], [0.0, 0.0], [0.0, 0.999], [1.0, 0.0], [0.5, 0.5],
                    [-0.01, 0.5], [0.5, -0.01], [2.0, 2.0]])
    assert _net(p).predict(pts).tolist() == [1, 1, 1, 0, 0, 0, 0, 0]  # region (12)


def test_notes_problems_return_fresh_arrays():
    p = notes_problem2()
    p["W_H"][:] = 0
    p["x"][:] = 0
    q = notes_problem2()
    assert q["W_H"].tolist() == [[1.0], [1.0]] and q["x"].tolist() == [0.0, 1.0, 3.0, 5.0]


# ---------------------------------------------------------------------------------------
# make_documents
# ---------------------------------------------------------------------------------------

def test_make_documents_corpus_and_its_seed():
    documents, y = make_documents(300, n_classes=4, words=50, vocabulary=2000,
                                  topic_words=100, random_state=1)
    assert len(documents) == 300 and y.shape == (300,) and y.dtype == np.int64
    assert set(y.tolist()) == {0, 1, 2, 3}
    lengths = np.array([len(d.split()) for d in documents])
    assert lengths.min() >= 1 and 45 < lengths.mean() < 55  # Poisson around ``words``
    vocab = {w for d in documents for w in d.split()}
    assert len(vocab) <= 2000 and all(w.isalpha() and w.islower() for w in vocab)
    again = make_documents(300, n_classes=4, words=50, vocabulary=2000, topic_words=100,
                           random_state=1)
    assert again[0] == documents and np.array_equal(again[1], y)
    assert make_documents(300, n_classes=4, words=50, vocabulary=2000, topic_words=100,
                          random_state=2)[0] != documents


def test_make_documents_topics_words_tell_it_apart():
    # the words of class 0's documents that are rare elsewhere: present, and more so with
    # a larger topic_share
    def share_of_topical(topic_share):
        documents, y = make_documents(400, n_classes=2, words=100, vocabulary=5000,
                                      topic_words=50, topic_share=topic_share, random_state=0)
        counts = [{}, {}]
        for d, c in zip(documents, y):
            for w in d.split():
                counts[c][w] = counts[c].get(w, 0) + 1
        only = [w for w, n in counts[0].items() if n >= 5 and counts[1].get(w, 0) == 0]
        return sum(counts[0][w] for w in only) / sum(counts[0].values())
    assert share_of_topical(0.0) < 0.01 < share_of_topical(0.2) > 2 * share_of_topical(0.05)


@pytest.mark.parametrize("bad", [dict(n_documents=0), dict(n_classes=1.5),
                                 dict(topic_words=10, vocabulary=5), dict(words=0),
                                 dict(topic_share=1.5), dict(vocabulary=True)])
def test_make_documents_bad_arguments(bad):
    with pytest.raises(ValueError):
        make_documents(**{"n_documents": 10, **bad})
