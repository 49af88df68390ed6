# cython: language_level=3
"""The output maps and losses: softmax (eq. 5) and log-softmax with the max shift, and each
loss with its gradient in one pass, from the logits (eq. 16-20): binary cross-entropy on
the logit (eq. 17), categorical cross-entropy (eq. 18), squared error (eq. 20). Sums run in
a fixed order with a float64 accumulator; passes over large arrays are shared by fastnn's
threads in fixed blocks of rows, so the results do not depend on the thread count.
Arguments are validated by fastnn.functional."""

cimport numpy as cnp
from cython cimport floating
from libc.math cimport exp, log

from fastnn._math cimport (_exp, _exp_shift_sum, _fabs, _log1p, _max, _scale, _sigmoid, _sum,
                           fnn_cross_entropy_rows_f, fnn_cross_entropy_rows_d)
from fastnn._parallel cimport blocks
from fastnn._tuning cimport Tuning, tuned

cnp.import_array()

cdef Tuning* tune = tuned()


cdef struct Rows:  # a pass over blocks of rows, for fastnn's threads
    bint single         # float32 arrays (else float64)
    const void* Z       # the logits (rows, width)
    void* out           # softmax: the output; cross-entropy: the per-row losses
    void* dZ            # cross-entropy: the gradient, or NULL
    const Py_ssize_t* y  # cross-entropy: the labels
    Py_ssize_t rows
    Py_ssize_t width
    double scale
    bint take_log


cdef void _softmax_part(floating* tag, Rows* job, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    cdef Py_ssize_t i, K = job.width
    for i in range(i0, i1):
        softmax_row(<floating*>job.Z + i * K, <floating*>job.out + i * K, K, job.take_log)


cdef void _softmax_blocks(void* ctx, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if (<Rows*>ctx).single:
        _softmax_part(<float*>NULL, <Rows*>ctx, i0, i1)
    else:
        _softmax_part(<double*>NULL, <Rows*>ctx, i0, i1)


cdef void _cross_entropy_part(floating* tag, Rows* job, Py_ssize_t i0,
                              Py_ssize_t i1) noexcept nogil:
    # blocks i0..i1 of 256 rows (the last ends at job.rows)
    cdef Py_ssize_t K = job.width, start = i0 * 256, stop = min(i1 * 256, job.rows)
    cross_entropy_rows(<floating*>job.Z + start * K, job.y + start, NULL, NULL, job.scale, 1.0,
                       <floating*>job.out + start,
                       <floating*>job.dZ + start * K if job.dZ != NULL else NULL,
                       stop - start, K)


cdef void _cross_entropy_blocks(void* ctx, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if (<Rows*>ctx).single:
        _cross_entropy_part(<float*>NULL, <Rows*>ctx, i0, i1)
    else:
        _cross_entropy_part(<double*>NULL, <Rows*>ctx, i0, i1)


# ---------------------------------------------------------------------------------------
# Softmax (eq. 5) and log-softmax, row by row with the max shift
# ---------------------------------------------------------------------------------------

cdef void softmax_row(const floating* z, floating* p, Py_ssize_t K, bint take_log) noexcept nogil:
    # p_k = e^{z_k - m} / sum_l e^{z_l - m}, m = max_l z_l (or its log: z_k - m - ln sum)
    cdef Py_ssize_t k
    cdef floating m = _max(z, K)
    cdef double s = _exp_shift_sum(z, m, p, K)
    if take_log:
        s = log(s)
        for k in range(K):
            p[k] = <floating>((z[k] - m) - s)
    else:
        _scale(p, <floating>(1 / s), K)


cdef void softmax_rows(const floating* Z, floating* P, Py_ssize_t N, Py_ssize_t K,
                   bint take_log) noexcept nogil:
    cdef Py_ssize_t i
    cdef Rows job
    if N * K >= tune.parallel_elements and N > 1:
        job.single, job.Z, job.out, job.width, job.take_log = floating is float, Z, P, K, take_log
        blocks(_softmax_blocks, &job, N)
    else:
        for i in range(N):
            softmax_row(Z + i * K, P + i * K, K, take_log)


def softmax(cnp.ndarray Z, bint take_log, cnp.ndarray out):
    """out = softmax(Z) (eq. 5) or log_softmax(Z), over the rows of a 2-D C-contiguous Z."""
    cdef Py_ssize_t N = Z.shape[0], K = Z.shape[1]
    if cnp.PyArray_TYPE(Z) == cnp.NPY_FLOAT32:
        with nogil:
            softmax_rows(<float*>cnp.PyArray_DATA(Z), <float*>cnp.PyArray_DATA(out), N, K, take_log)
    else:
        with nogil:
            softmax_rows(<double*>cnp.PyArray_DATA(Z), <double*>cnp.PyArray_DATA(out), N, K, take_log)
    return out


# ---------------------------------------------------------------------------------------
# Losses: per-sample loss and its gradient in one pass (eq. 16-20)
# ---------------------------------------------------------------------------------------

cdef void cross_entropy_rows(const floating* Z, const Py_ssize_t* y, const Py_ssize_t* rows,
                              const double* sw, double c, double div, floating* losses,
                              floating* dZ, Py_ssize_t n, Py_ssize_t K) noexcept nogil:
    # eq. 18 on n rows of K logits: loss_i = ln sum_l e^{z_l} - z_y = (m - z_y) + ln sum_l
    # e^{z_l - m}, row i's label y[r] (r = rows[i], or i without rows); with dZ, also
    # dz_k = s_i (softmax(z)_k - r_k), s_i = (sw[r] or c) / div (section 3, problem 1)
    if floating is float:
        fnn_cross_entropy_rows_f(Z, y, rows, sw, c, div, losses, dZ, n, K)
    else:
        fnn_cross_entropy_rows_d(Z, y, rows, sw, c, div, losses, dZ, n, K)


cdef double _cross_entropy(const floating* Z, const Py_ssize_t* y, floating* losses,
                           floating* dZ, Py_ssize_t N, Py_ssize_t K,
                           floating scale) noexcept nogil:
    cdef Rows job
    if N * K >= tune.parallel_elements and N > 1:  # blocks of 256 rows across threads
        job.single, job.Z, job.out, job.dZ, job.y = floating is float, Z, losses, dZ, y
        job.rows, job.width, job.scale = N, K, scale
        blocks(_cross_entropy_blocks, &job, (N + 255) // 256)
    else:
        cross_entropy_rows(Z, y, NULL, NULL, scale, 1.0, losses, dZ, N, K)
    return _sum(losses, N)


def cross_entropy(cnp.ndarray Z, cnp.ndarray y, cnp.ndarray losses, object dZ, double scale):
    """Per-sample eq. 18 losses into ``losses`` (N,), the gradient times ``scale`` into dZ
    (N, K) unless dZ is None; returns the float64 sum of the losses. y: intp labels."""
    cdef Py_ssize_t N = Z.shape[0], K = Z.shape[1]
    cdef void* pdZ = cnp.PyArray_DATA(<cnp.ndarray>dZ) if dZ is not None else NULL
    cdef double total
    if cnp.PyArray_TYPE(Z) == cnp.NPY_FLOAT32:
        with nogil:
            total = _cross_entropy(<float*>cnp.PyArray_DATA(Z), <Py_ssize_t*>cnp.PyArray_DATA(y),
                                   <float*>cnp.PyArray_DATA(losses), <float*>pdZ, N, K,
                                   <float>scale)
    else:
        with nogil:
            total = _cross_entropy(<double*>cnp.PyArray_DATA(Z), <Py_ssize_t*>cnp.PyArray_DATA(y),
                                   <double*>cnp.PyArray_DATA(losses), <double*>pdZ, N, K, scale)
    return total


cdef double binary_cross_entropy_(const floating* z, const floating* y, floating* losses,
                                  floating* dz, Py_ssize_t N, floating scale) noexcept nogil:
    # eq. 17: ln(1 + e^z) - y z = ln(1 + e^-|z|) + (z >= 0 ? (1 - y) z : -y z), no overflow
    # and no cancellation for large |z|; d/dz = sigmoid(z) - y (section 2, problem 2)
    cdef Py_ssize_t i
    cdef floating zi, yi
    for i in range(N):
        zi = z[i]
        yi = y[i]
        losses[i] = _log1p(_exp(-_fabs(zi))) + ((1 - yi) * zi if zi >= 0 else -yi * zi)
        if dz != NULL:
            dz[i] = scale * (_sigmoid(zi) - yi)
    return _sum(losses, N)


def binary_cross_entropy(cnp.ndarray z, cnp.ndarray y, cnp.ndarray losses, object dz,
                         double scale):
    """Per-sample eq. 17 losses into ``losses`` (N,), the gradient times ``scale`` into dz
    unless dz is None; returns the float64 sum. y: labels 0/1 in z's dtype."""
    cdef Py_ssize_t N = cnp.PyArray_SIZE(z)
    cdef void* pdz = cnp.PyArray_DATA(<cnp.ndarray>dz) if dz is not None else NULL
    cdef double total
    if cnp.PyArray_TYPE(z) == cnp.NPY_FLOAT32:
        with nogil:
            total = binary_cross_entropy_(<float*>cnp.PyArray_DATA(z), <float*>cnp.PyArray_DATA(y),
                                          <float*>cnp.PyArray_DATA(losses), <float*>pdz, N,
                                          <float>scale)
    else:
        with nogil:
            total = binary_cross_entropy_(<double*>cnp.PyArray_DATA(z), <double*>cnp.PyArray_DATA(y),
                                          <double*>cnp.PyArray_DATA(losses), <double*>pdz, N,
                                          scale)
    return total


cdef double squared_error_(const floating* Z, const floating* Y, floating* losses,
                           floating* dZ, Py_ssize_t N, Py_ssize_t d,
                           floating scale) noexcept nogil:
    # eq. 20: loss_i = sum_k (z_ik - y_ik)^2; dL/dz_ik = 2 (z_ik - y_ik) (section 2, problem 4)
    cdef Py_ssize_t i, k
    cdef floating diff
    cdef double s
    for i in range(N):
        s = 0
        for k in range(d):
            diff = Z[i * d + k] - Y[i * d + k]
            s += diff * diff
            if dZ != NULL:
                dZ[i * d + k] = (2 * scale) * diff
        losses[i] = <floating>s
    return _sum(losses, N)


def squared_error(cnp.ndarray Z, cnp.ndarray Y, cnp.ndarray losses, object dZ, double scale):
    """Per-sample eq. 20 losses into ``losses`` (N,), the gradient times ``scale`` into dZ
    unless dZ is None; returns the float64 sum. Z and Y: the same shape, (N,) or (N, d)."""
    cdef Py_ssize_t N = Z.shape[0]
    cdef Py_ssize_t d = cnp.PyArray_SIZE(Z) // N if N > 0 else 0
    cdef void* pdZ = cnp.PyArray_DATA(<cnp.ndarray>dZ) if dZ is not None else NULL
    cdef double total
    if cnp.PyArray_TYPE(Z) == cnp.NPY_FLOAT32:
        with nogil:
            total = squared_error_(<float*>cnp.PyArray_DATA(Z), <float*>cnp.PyArray_DATA(Y),
                                   <float*>cnp.PyArray_DATA(losses), <float*>pdZ, N, d,
                                   <float>scale)
    else:
        with nogil:
            total = squared_error_(<double*>cnp.PyArray_DATA(Z), <double*>cnp.PyArray_DATA(Y),
                                   <double*>cnp.PyArray_DATA(losses), <double*>pdZ, N, d, scale)
    return total


cdef double poisson_(const floating* Z, const floating* Y, floating* losses, floating* dZ,
                     Py_ssize_t N, Py_ssize_t d, floating scale) noexcept nogil:
    # half the Poisson deviance with the log link, mu = e^z: loss_i = sum_k (y_k ln(y_k) -
    # y_k z_k - y_k + mu_k) (0 ln 0 = 0); dL/dz_k = mu_k - y_k (fastnn.reference.poisson)
    cdef Py_ssize_t i, k
    cdef double s, z, y, mu
    for i in range(N):
        s = 0
        for k in range(d):
            z, y = Z[i * d + k], Y[i * d + k]
            mu = exp(z)
            s += (y * log(y) if y > 0 else 0.0) - y * z - y + mu
            if dZ != NULL:
                dZ[i * d + k] = <floating>(scale * (mu - y))
        losses[i] = <floating>s
    return _sum(losses, N)


def poisson(cnp.ndarray Z, cnp.ndarray Y, cnp.ndarray losses, object dZ, double scale):
    """Per-sample losses (half the Poisson deviance, log link) into ``losses`` (N,), the
    gradient times ``scale`` into dZ unless dZ is None; returns the float64 sum. Z and Y: the
    same shape, (N,) or (N, d), Y >= 0."""
    cdef Py_ssize_t N = Z.shape[0]
    cdef Py_ssize_t d = cnp.PyArray_SIZE(Z) // N if N > 0 else 0
    cdef void* pdZ = cnp.PyArray_DATA(<cnp.ndarray>dZ) if dZ is not None else NULL
    cdef double total
    if cnp.PyArray_TYPE(Z) == cnp.NPY_FLOAT32:
        with nogil:
            total = poisson_(<float*>cnp.PyArray_DATA(Z), <float*>cnp.PyArray_DATA(Y),
                             <float*>cnp.PyArray_DATA(losses), <float*>pdZ, N, d,
                             <float>scale)
    else:
        with nogil:
            total = poisson_(<double*>cnp.PyArray_DATA(Z), <double*>cnp.PyArray_DATA(Y),
                             <double*>cnp.PyArray_DATA(losses), <double*>pdZ, N, d, scale)
    return total
