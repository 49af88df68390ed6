# cython: language_level=3
"""X as the user holds it, read where it lies.

A sparse X (CSR: the non-zeros x_p of row i at p = indptr[i] .. indptr[i+1] - 1, in column
indices[p]) enters the first layer only: eq. 10a is then z_i = sum_p x_p W^T[k_p] + b, a row of
W^T per non-zero, and the gradient dW^T = X^T dZ adds x_p dZ_i to the rows k_p alone (the
columns present in the batch). Each sum runs over the non-zeros in their stored order, one
multiply and one add at a time, whether W is read as W^T (K, M) rows or in place as W (M, K)
columns: the same bits either way, and the bits of scipy's own product (fastnn.reference).
Repeated indices add up (scipy's meaning of a CSR matrix), explicit zeros add nothing.

A dense X of another float dtype or memory layout (float64 for a float32 model, Fortran
order, a read-only memmap) is converted row by row as a kernel gathers the rows it needs.

Arguments are validated by the callers (fastnn._validation): indices in range, indptr
non-decreasing from 0, finite values, one float dtype per call.
"""

cimport numpy as cnp
from cython cimport floating
from libc.stdlib cimport free, malloc
from libc.string cimport memset

import numpy as np

from fastnn._layers cimport activate_row, grad_db, grad_dX, mul_grad_row, share, transpose
from fastnn._math cimport _axpy, fnn_all_finite_d, fnn_all_finite_f
from fastnn._parallel cimport blocks_on
from fastnn._tuning cimport Tuning, parts, tuned

cnp.import_array()

cdef Tuning* tune = tuned()


# ---------------------------------------------------------------------------------------
# The first layer on CSR rows (eq. 10a, and dW of eq. 13)
# ---------------------------------------------------------------------------------------

cdef void csr_forward(const floating* data, const index_t* indices, const index_t* indptr,
                      const Py_ssize_t* rows, Py_ssize_t r0, Py_ssize_t r1,
                      const floating* W, bint transposed, Py_ssize_t K,
                      const floating* b, floating* U, Py_ssize_t M, int code) noexcept nogil:
    # eq. 10a: u_i = g(sum_p x_p W^T[k_p] + b) over row i's non-zeros in stored order
    cdef Py_ssize_t r, i, p, j, start, stop
    cdef floating* u
    cdef floating s
    for r in range(r0, r1):
        i = rows[r] if rows != NULL else r
        start, stop = indptr[i], indptr[i + 1]
        u = U + (r - r0) * M
        if transposed:  # a row of W^T per non-zero
            memset(u, 0, M * sizeof(floating))
            for p in range(start, stop):
                _axpy(u, data[p], W + <Py_ssize_t>indices[p] * M, M)
        else:  # W's columns in place: z_j = sum_p x_p W[j, k_p]
            for j in range(M):
                s = 0
                for p in range(start, stop):
                    s = s + data[p] * W[j * K + indices[p]]
                u[j] = s
        activate_row(u, b, M, code)


cdef void csr_grad_t(const floating* data, const index_t* indices, const index_t* indptr,
                     const Py_ssize_t* rows, Py_ssize_t n, const floating* dZ, floating* G,
                     Py_ssize_t M, Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t* stamp,
                     Py_ssize_t t, Py_ssize_t* touched, Py_ssize_t* count) noexcept nogil:
    # dW^T[k] += x_p dZ_r for the non-zeros of the batch's rows in columns k0..k1, rows in
    # batch order (the order of the dense product's sum over i)
    cdef Py_ssize_t r, i, p, k
    for r in range(n):
        i = rows[r] if rows != NULL else r
        for p in range(indptr[i], indptr[i + 1]):
            k = indices[p]
            if k < k0 or k >= k1:
                continue
            if stamp != NULL and stamp[k] != t:  # first touch this step
                stamp[k] = t
                memset(G + k * M, 0, M * sizeof(floating))
                touched[count[0]] = k
                count[0] += 1
            _axpy(G + k * M, data[p], dZ + r * M, M)


cdef void _csr_grad_w(const floating* data, const index_t* indices, const index_t* indptr,
                      Py_ssize_t N, const floating* dZ, floating* G, Py_ssize_t K,
                      Py_ssize_t M, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    # rows j0..j1 of dW (M, K) += dZ^T X, column by column in place: dW[j, k_p] += x_p dZ_ij
    # in the order of csr_grad_t (rows i, then their non-zeros), so the same bits
    cdef Py_ssize_t i, p, j
    cdef floating dz
    for j in range(j0, j1):
        for i in range(N):
            dz = dZ[i * M + j]
            for p in range(indptr[i], indptr[i + 1]):
                G[j * K + indices[p]] = G[j * K + indices[p]] + data[p] * dz


# ---------------------------------------------------------------------------------------
# Dense rows converted as they are read
# ---------------------------------------------------------------------------------------

cdef void gather_rows(floating* dst, const void* src, bint src64, Py_ssize_t s0,
                      Py_ssize_t s1, const Py_ssize_t* rows, Py_ssize_t r0, Py_ssize_t r1,
                      Py_ssize_t K) noexcept nogil:
    # dst's row r - r0 = X's row rows[r], converted (a float64 value rounds to nearest)
    cdef Py_ssize_t r, i, k
    cdef const double* s64
    cdef const float* s32
    cdef floating* d
    for r in range(r0, r1):
        i = rows[r] if rows != NULL else r
        d = dst + (r - r0) * K
        if src64:
            s64 = <const double*>src + i * s0
            if s1 == 1:
                for k in range(K):
                    d[k] = <floating>s64[k]
            else:
                for k in range(K):
                    d[k] = <floating>s64[k * s1]
        else:
            s32 = <const float*>src + i * s0
            if s1 == 1:
                for k in range(K):
                    d[k] = <floating>s32[k]
            else:
                for k in range(K):
                    d[k] = <floating>s32[k * s1]


cdef bint readable(object X):
    if not cnp.PyArray_Check(X):
        return False
    cdef cnp.ndarray a = <cnp.ndarray>X
    cdef int typenum = cnp.PyArray_TYPE(a)
    cdef Py_ssize_t size
    if cnp.PyArray_NDIM(a) != 2 or (typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64):
        return False
    if not cnp.PyArray_ISALIGNED(a) or not cnp.PyArray_ISNOTSWAPPED(a):
        return False
    size = cnp.PyArray_ITEMSIZE(a)
    return a.strides[0] % size == 0 and a.strides[1] % size == 0


def readable_finite_rows(object X, bint single):
    """Whether X is an array the kernels read where it lies (2-D, float32 or float64,
    aligned, native byte order, strides of whole elements: ``readable``) and every value
    finite (``finite_rows``): an estimator's quick partial_fit checks its X in this call."""
    return readable(X) and finite_rows(X, single)


def finite_rows(object X, bint single):
    """Whether every value of X (2-D, float32 or float64, ``readable``) is finite, and stays
    so converted to float32 when ``single`` (|x| within float32's range): a pass over X where
    it lies, converting a row at a time as the kernels will."""
    cdef cnp.ndarray a = <cnp.ndarray>X
    cdef Py_ssize_t N = a.shape[0], K = a.shape[1], i
    cdef Py_ssize_t s0 = a.strides[0] // cnp.PyArray_ITEMSIZE(a)
    cdef Py_ssize_t s1 = a.strides[1] // cnp.PyArray_ITEMSIZE(a)
    cdef bint f64 = cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT64, ok = True
    cdef bint to32 = single or not f64
    cdef const void* src = cnp.PyArray_DATA(a)
    cdef void* row
    if N == 0 or K == 0:
        return True
    if s1 == 1 and s0 == K and not (f64 and single):  # contiguous, no conversion: one pass
        with nogil:
            ok = fnn_all_finite_d(<double*>src, N * K) if f64 else \
                fnn_all_finite_f(<float*>src, N * K)
        return ok
    row = malloc(K * sizeof(double))
    if row == NULL:
        raise MemoryError()
    try:
        with nogil:
            for i in range(N):
                if to32:
                    gather_rows(<float*>row, src, f64, s0, s1, &i, 0, 1, K)
                    ok = fnn_all_finite_f(<float*>row, K)
                else:
                    gather_rows(<double*>row, src, f64, s0, s1, &i, 0, 1, K)
                    ok = fnn_all_finite_d(<double*>row, K)
                if not ok:
                    break
    finally:
        free(row)
    return ok


# ---------------------------------------------------------------------------------------
# F.linear and F.linear_backward on a CSR X
# ---------------------------------------------------------------------------------------

cdef struct CSRJob:  # the parts of a sparse layer for fastnn's threads
    bint single
    bint idx64
    bint transposed   # W is W^T (K, M), G dW^T (K, M); else W (M, K), G dW (M, K)
    const void* data
    const void* indices
    const void* indptr
    const void* W
    const void* b
    void* U           # forward: U (N, M); backward: dZ (N, M)
    void* G           # backward: the gradient, zeroed
    Py_ssize_t N
    Py_ssize_t K
    Py_ssize_t M
    Py_ssize_t parts
    int code


cdef void _forward_part(floating* tag, index_t* itag, CSRJob* job, Py_ssize_t q0,
                        Py_ssize_t q1) noexcept nogil:
    cdef Py_ssize_t q, r0, r1
    for q in range(q0, q1):  # rows q N / parts .. (q + 1) N / parts
        r0, r1 = q * job.N // job.parts, (q + 1) * job.N // job.parts
        csr_forward(<const floating*>job.data, <const index_t*>job.indices,
                    <const index_t*>job.indptr, NULL, r0, r1, <const floating*>job.W,
                    job.transposed, job.K, <const floating*>job.b,
                    <floating*>job.U + r0 * job.M, job.M, job.code)


cdef void _forward_blocks(void* ctx, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    cdef CSRJob* job = <CSRJob*>ctx
    if job.single:
        if job.idx64:
            _forward_part(<float*>NULL, <cnp.int64_t*>NULL, job, q0, q1)
        else:
            _forward_part(<float*>NULL, <cnp.int32_t*>NULL, job, q0, q1)
    elif job.idx64:
        _forward_part(<double*>NULL, <cnp.int64_t*>NULL, job, q0, q1)
    else:
        _forward_part(<double*>NULL, <cnp.int32_t*>NULL, job, q0, q1)


cdef void _grad_part(floating* tag, index_t* itag, CSRJob* job, Py_ssize_t q0,
                     Py_ssize_t q1) noexcept nogil:
    cdef Py_ssize_t q, a0, a1, extent = job.K if job.transposed else job.M
    for q in range(q0, q1):  # features (W^T's rows) or units (W's rows) of part q
        a0, a1 = q * extent // job.parts, (q + 1) * extent // job.parts
        if job.transposed:
            csr_grad_t(<const floating*>job.data, <const index_t*>job.indices,
                       <const index_t*>job.indptr, NULL, job.N, <const floating*>job.U,
                       <floating*>job.G, job.M, a0, a1, NULL, 0, NULL, NULL)
        else:
            _csr_grad_w(<const floating*>job.data, <const index_t*>job.indices,
                        <const index_t*>job.indptr, job.N, <const floating*>job.U,
                        <floating*>job.G, job.K, job.M, a0, a1)


cdef void _grad_blocks(void* ctx, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    cdef CSRJob* job = <CSRJob*>ctx
    if job.single:
        if job.idx64:
            _grad_part(<float*>NULL, <cnp.int64_t*>NULL, job, q0, q1)
        else:
            _grad_part(<float*>NULL, <cnp.int32_t*>NULL, job, q0, q1)
    elif job.idx64:
        _grad_part(<double*>NULL, <cnp.int64_t*>NULL, job, q0, q1)
    else:
        _grad_part(<double*>NULL, <cnp.int32_t*>NULL, job, q0, q1)


cdef _job(CSRJob* job, cnp.ndarray data, cnp.ndarray indices, cnp.ndarray indptr,
          Py_ssize_t K, cnp.ndarray W, bint forward):
    # the CSR matrix and W into job. ``transposed``: non-zeros enough to pay for a copy of W
    # as W^T (a row a non-zero, read in order), or a W of one row, which is its own W^T;
    # the forward then reads that copy (returned, to keep alive), the backward forms dW^T
    cdef Py_ssize_t M = W.shape[0], nnz = data.shape[0]
    cdef cnp.ndarray WT = None
    cdef int index = cnp.PyArray_TYPE(indices)
    if (cnp.PyArray_TYPE(data) != cnp.PyArray_TYPE(W) or cnp.PyArray_TYPE(indptr) != index
            or (index != cnp.NPY_INT32 and index != cnp.NPY_INT64)):  # (one cheap check)
        raise ValueError("fastnn internal error: CSR arrays not as _validation.sparse_rows "
                         "makes them")
    job.single = cnp.PyArray_TYPE(W) == cnp.NPY_FLOAT32
    job.idx64 = cnp.PyArray_TYPE(indices) == cnp.NPY_INT64
    job.data, job.indices = cnp.PyArray_DATA(data), cnp.PyArray_DATA(indices)
    job.indptr, job.W = cnp.PyArray_DATA(indptr), cnp.PyArray_DATA(W)
    job.N, job.K, job.M = indptr.shape[0] - 1, K, M
    job.transposed = M == 1 or nnz >= K * tune.sparse_transpose
    if forward and job.transposed and M > 1:
        WT = np.empty((K, M), W.dtype)
        with nogil:
            if job.single:
                transpose(<float*>job.W, <float*>cnp.PyArray_DATA(WT), M, K)
            else:
                transpose(<double*>job.W, <double*>cnp.PyArray_DATA(WT), M, K)
        job.W = cnp.PyArray_DATA(WT)
    return WT


def sparse_linear(cnp.ndarray data, cnp.ndarray indices, cnp.ndarray indptr, Py_ssize_t K,
                  cnp.ndarray W, b, int code, out):
    """U = g(X W^T + B) (eq. 10a) for the CSR X (data, indices, indptr) of N rows and K
    columns; W (M, K), b (M,) or None, out (N, M) or None. Arguments validated."""
    cdef CSRJob job
    cdef Py_ssize_t M = W.shape[0]
    cdef double work = <double>data.shape[0] * M
    WT = _job(&job, data, indices, indptr, K, W, True)
    cdef cnp.ndarray U = np.empty((job.N, M), W.dtype) if out is None else out
    job.b = cnp.PyArray_DATA(<cnp.ndarray>b) if b is not None else NULL
    job.U, job.code = cnp.PyArray_DATA(U), code
    job.parts = parts(tune, work, job.N)  # rows of the batch
    with nogil:
        blocks_on(_forward_blocks, &job, job.parts, share(work) if job.parts > 1 else 1)
    return U


def sparse_linear_backward(cnp.ndarray dU, cnp.ndarray data, cnp.ndarray indices,
                           cnp.ndarray indptr, Py_ssize_t K, cnp.ndarray W, cnp.ndarray U,
                           int code, bint need_dX):
    """(dX or None, dW, db) of U = g(X W^T + b) for the CSR X, given dU = dL/dU: dZ = dU g'(Z),
    dW = (X^T dZ)^T, db = sum_i dZ_i, dX = dZ W (dense, as dZ and W are). Arguments validated."""
    cdef CSRJob job
    cdef Py_ssize_t N = dU.shape[0], M = W.shape[0]
    cdef double work = <double>data.shape[0] * M
    cdef bint single = cnp.PyArray_TYPE(W) == cnp.NPY_FLOAT32
    cdef cnp.ndarray dZ = np.empty((N, M), W.dtype)
    cdef cnp.ndarray db = np.empty(M, W.dtype)
    cdef cnp.ndarray dX = np.empty((N, K), W.dtype) if need_dX else None
    cdef double* acc = <double*>malloc(M * sizeof(double))
    if acc == NULL:
        raise MemoryError()
    _job(&job, data, indices, indptr, K, W, False)
    G = np.zeros((K, M) if job.transposed else (M, K), W.dtype)
    job.U, job.G = cnp.PyArray_DATA(dZ), cnp.PyArray_DATA(G)
    job.parts = parts(tune, work, K if job.transposed else M)
    try:
        with nogil:
            if single:
                mul_grad_row(<float*>cnp.PyArray_DATA(dU), <float*>cnp.PyArray_DATA(U),
                             <float*>job.U, N * M, code)
                grad_db(<float*>job.U, <float*>cnp.PyArray_DATA(db), acc, N, M, 0, M)
            else:
                mul_grad_row(<double*>cnp.PyArray_DATA(dU), <double*>cnp.PyArray_DATA(U),
                             <double*>job.U, N * M, code)
                grad_db(<double*>job.U, <double*>cnp.PyArray_DATA(db), acc, N, M, 0, M)
            blocks_on(_grad_blocks, &job, job.parts, share(work) if job.parts > 1 else 1)
            if need_dX:  # dX = dZ W
                if single:
                    grad_dX(<float*>job.U, <float*>job.W, <float*>cnp.PyArray_DATA(dX), N, K,
                            M)
                else:
                    grad_dX(<double*>job.U, <double*>job.W, <double*>cnp.PyArray_DATA(dX), N,
                            K, M)
    finally:
        free(acc)
    cdef cnp.ndarray dW
    cdef void* pdW
    if job.transposed and M > 1:  # dW = (dW^T)^T
        dW = np.empty((M, K), W.dtype)
        pdW = cnp.PyArray_DATA(dW)
        with nogil:
            if single:
                transpose(<float*>job.G, <float*>pdW, K, M)
            else:
                transpose(<double*>job.G, <double*>pdW, K, M)
        G = dW
    elif job.transposed:
        G = G.reshape(M, K)
    return dX, G, db
