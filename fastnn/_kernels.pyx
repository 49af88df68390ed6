# cython: language_level=3
"""fastnn's compiled kernels: the entry of the native layer, which fastnn.functional (and the
models over it) call. The kernels live in one module per job, linked by cimport:

    _tuning      the thresholds, in one place
    _parallel    fastnn's threads (the pool of _threads.h)
    _blas        row-major matrix products: BLAS, and fastnn's own float32 product (_gemm.h)
    _layers      activations and the fused linear layer, forward and backward (eq. 10, 13)
    _inputs      X where it lies: the first layer on CSR rows, dense rows converted as read
    _losses      softmax and the losses with their gradients (eq. 5, 16-20)
    _inference   a network's output in one call
    _train       the native training loop, and the helpers of fit and lbfgs

and this module gathers what Python calls. Every function takes NumPy arrays that
fastnn.functional has validated (float32 or float64, one dtype per call, C-contiguous,
matching shapes, labels in range); nothing validates here, except the compiled fast paths
(``linear``, ``linear_backward_fast``, ``network``), which return None outside the common
case. The checked
build (FASTNN_CHECKED=1) turns Cython's bounds checks on and adds fastnn._testing, the hooks
tests use to reach inside.
"""

cimport numpy as cnp
from libc.string cimport memcpy

from fastnn._layers cimport plain
from fastnn._math cimport (fnn_all_finite_d, fnn_all_finite_f, fnn_all_finite_nonneg_d,
                           fnn_all_finite_nonneg_f, fnn_sum_squares_d, fnn_sum_squares_f)

import numpy as np

from fastnn._blas import drive_blas_threads, gemm_path, own_small_products, panel_units
from fastnn._blas import hold as hold_blas, release as release_blas
from fastnn._inference import OUTPUT_CODES, network
from fastnn._inputs import (finite_rows, readable_finite_rows, sparse_linear,
                            sparse_linear_backward)
from fastnn._layers import (ACTIVATION_CODES, activate, activation_grad, linear, linear_backward,
                            linear_backward_fast)
from fastnn._losses import (binary_cross_entropy, cross_entropy, poisson, softmax,
                            squared_error)
from fastnn._parallel import num_threads, pool_info, set_num_threads
from fastnn._train import EpochRunner, Objective, penalized_gradient, shuffle
from fastnn._tuning import values as tuning

cdef extern from *:
    int FASTNN_CHECKED_BUILD "FASTNN_CHECKED"  # set by setup.py

cnp.import_array()

CHECKED = bool(FASTNN_CHECKED_BUILD)  # built with FASTNN_CHECKED=1 (bounds checks on)


def all_finite(cnp.ndarray a, bint nonnegative=False):
    """Whether no entry of the C-contiguous float32/float64 array ``a`` is inf or NaN (and,
    with ``nonnegative``, none is below 0)."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(a)
    cdef bint ok
    if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32:
        with nogil:
            ok = (fnn_all_finite_nonneg_f if nonnegative else fnn_all_finite_f)(
                <float*>cnp.PyArray_DATA(a), n)
    else:
        with nogil:
            ok = (fnn_all_finite_nonneg_d if nonnegative else fnn_all_finite_d)(
                <double*>cnp.PyArray_DATA(a), n)
    return ok


def all_finite_arrays(list arrays, list nonnegative):
    """``all_finite(A, nonneg)`` for every pair of the two lists (C-contiguous float32/float64
    arrays), in one call; False at the first that fails."""
    cdef Py_ssize_t i
    for i in range(len(arrays)):
        if not all_finite(<cnp.ndarray?>arrays[i], nonnegative[i]):
            return False
    return True


def sum_squares(list arrays):
    """sum ||A||^2 over the arrays, in float64 (8 lanes an array, in a fixed order; the
    arrays' sums added in turn): the L2 penalty's sum. An array that is not a C-contiguous,
    aligned, native float32/float64 one (a model's W a user replaced) is read as a float64
    copy."""
    cdef double s = 0
    cdef cnp.ndarray a
    cdef int typenum
    for a in arrays:
        typenum = cnp.PyArray_TYPE(a)
        if not (cnp.PyArray_ISCARRAY_RO(a) and cnp.PyArray_ISNOTSWAPPED(a)) or (
                typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64):
            a = np.ascontiguousarray(a, dtype=np.float64)
        if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32:
            s += fnn_sum_squares_f(<float*>cnp.PyArray_DATA(a), cnp.PyArray_SIZE(a))
        else:
            s += fnn_sum_squares_d(<double*>cnp.PyArray_DATA(a), cnp.PyArray_SIZE(a))
    return s


def copy_arrays(list dst, list src):
    """``dst[i][...] = src[i]`` for each pair of the two lists (the same shapes and dtypes):
    a memcpy where both are C-contiguous (and dst writeable), else np.copyto."""
    cdef Py_ssize_t i
    cdef cnp.ndarray d, s
    for i in range(len(dst)):
        d, s = <cnp.ndarray?>dst[i], <cnp.ndarray?>src[i]
        if (cnp.PyArray_ISCARRAY(d) and cnp.PyArray_ISCARRAY_RO(s)
                and cnp.PyArray_TYPE(d) == cnp.PyArray_TYPE(s)
                and cnp.PyArray_ISNOTSWAPPED(d) and cnp.PyArray_ISNOTSWAPPED(s)
                and cnp.PyArray_SAMESHAPE(d, s)):
            memcpy(cnp.PyArray_DATA(d), cnp.PyArray_DATA(s), cnp.PyArray_NBYTES(d))
        else:
            np.copyto(d, s)


def finite_input(object X, object W):
    """Whether X is a model's input in the common case, checked in one call: an exact 2-D
    ndarray of W's dtype (float32/float64), C-contiguous, aligned, in native byte order,
    with at least one row and W.shape[1] columns, every value finite. W: the first layer's
    (M, K) weights."""
    if not cnp.PyArray_CheckExact(W) or cnp.PyArray_NDIM(<cnp.ndarray>W) != 2:
        return False
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>W)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        return False
    if not plain(X, 2, typenum):
        return False
    cdef cnp.ndarray a = <cnp.ndarray>X
    if a.shape[0] == 0 or a.shape[1] != (<cnp.ndarray>W).shape[1]:
        return False
    return all_finite(a)


def plain_labels(object y, Py_ssize_t N, Py_ssize_t K):
    """Whether y is a classifier's labels in the common case, checked in one call: an exact
    1-D intp ndarray, C-contiguous, aligned, in native byte order, of N labels in 0..K-1."""
    if not plain(y, 1, cnp.NPY_INTP) or (<cnp.ndarray>y).shape[0] != N:
        return False
    cdef const Py_ssize_t* labels = <const Py_ssize_t*>cnp.PyArray_DATA(<cnp.ndarray>y)
    cdef Py_ssize_t i
    cdef size_t bad = 0
    with nogil:
        for i in range(N):  # (a label below 0 wraps to above K - 1)
            bad |= <size_t>labels[i] >= <size_t>K
    return bad == 0
