"""The training loop's two small helpers in the extension: the epoch's shuffle (both backends
visit the samples in its order) and the finiteness check of the weights after an epoch."""

import numpy as np
import pytest

from fastnn import _kernels


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 1347])
def test_shuffle_gives_a_permutation_that_depends_on_the_seed_only(n):
    a, b, c = (np.arange(n, dtype=np.intp) for _ in range(3))
    _kernels.shuffle(a, 12345)
    _kernels.shuffle(b, 12345)
    _kernels.shuffle(c, 54321)
    assert sorted(a) == list(range(n))
    np.testing.assert_array_equal(a, b)
    if n > 3:
        assert not np.array_equal(a, c)


def test_shuffle_puts_every_value_everywhere_about_equally_often():
    # 6 items, 60000 seeds: each (value, position) pair about 10000 times; Fisher-Yates with a
    # biased or off-by-one draw misses pairs or skews them far beyond this tolerance
    n, trials = 6, 60000
    counts = np.zeros((n, n))
    for seed in range(trials):
        p = np.arange(n, dtype=np.intp)
        _kernels.shuffle(p, seed * 0x9E3779B97F4A7C15 % 2**64)
        counts[p, np.arange(n)] += 1
    expected = trials / n
    assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite(dtype):
    info = np.finfo(dtype)
    ok = np.array([0.0, -0.0, 1.0, info.max, -info.max, info.tiny, info.tiny / 4, -3.5],
                  dtype=dtype)
    assert _kernels.all_finite(ok)
    assert _kernels.all_finite(np.empty(0, dtype))
    assert _kernels.all_finite(np.ones((7, 9), dtype))
    for bad in (np.inf, -np.inf, np.nan, -np.nan):
        for at in (0, 3, 64, 100):  # the first element, inside the vector body, the tail
            x = np.ones(101, dtype)
            x[at] = bad
            assert not _kernels.all_finite(x)
            assert not _kernels.all_finite(x.reshape(1, 101))
