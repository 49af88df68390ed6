"""fastnn.datasets.make_documents: a text classification corpus made on the spot."""

import numpy as np
import pytest

from fastnn.datasets import make_documents


def test_the_corpus_and_its_seed():
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


def test_a_topics_words_tell_it_apart():
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
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        make_documents(**{"n_documents": 10, **bad})
