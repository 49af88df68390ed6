# cython: language_level=3
"""Matrix products, row-major, for the kernel modules (see _blas.pxd).

BLAS is column-major: a row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T,
so ``gemm`` calls BLAS with the operands (and their transposes) swapped and nothing copied,
as scikit-learn's _cython_blas does. fastnn's own float32 product (_gemm.h) takes the small
and mid-size products whose B is row-major, where it beats BLAS's packing (_tuning)."""

from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm

from fastnn._tuning cimport Tuning, tuned

cdef extern from "_gemm.h" nogil:
    int fnn_sgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha, const float* A,
                  Py_ssize_t sai, Py_ssize_t sap, const float* B, Py_ssize_t ldb, float beta,
                  float* C, Py_ssize_t ldc, float* P, Py_ssize_t ldp)
    int fnn_sgemm_level()
    int fnn_sgemm_use(int level)

cdef Tuning* tune = tuned()


cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               floating alpha, const floating* A, Py_ssize_t lda, const floating* B,
               Py_ssize_t ldb, floating beta, floating* C, Py_ssize_t ldc) noexcept nogil:
    # row-major C = alpha op(A) op(B) + beta C is column-major C^T = alpha op(B)^T op(A)^T +
    # beta C^T: BLAS's (transb, transa, n, m, k, alpha, B, ldb, A, lda, beta, C, ldc)
    cdef char ta = b"t" if trans_a else b"n", tb = b"t" if trans_b else b"n"
    cdef int m_ = <int>m, n_ = <int>n, k_ = <int>k, lda_ = <int>lda, ldb_ = <int>ldb
    cdef int ldc_ = <int>ldc
    if floating is float:
        sgemm(&tb, &ta, &n_, &m_, &k_, &alpha, <float*>B, &ldb_, <float*>A, &lda_, &beta, C,
              &ldc_)
    else:
        dgemm(&tb, &ta, &n_, &m_, &k_, &alpha, <double*>B, &ldb_, <double*>A, &lda_, &beta, C,
              &ldc_)


cdef inline bint _own(Py_ssize_t work) noexcept nogil:
    # whether a float32 product of ``work`` multiply-adds goes to fastnn's own (if the CPU can)
    return work <= tune.own_gemm and (tune.own_small or work > tune.blas_small)


cdef bint product(bint trans_a, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, floating alpha,
                  const floating* A, Py_ssize_t lda, const floating* B, Py_ssize_t ldb,
                  floating beta, floating* C, Py_ssize_t ldc, floating* P=NULL) noexcept nogil:
    if floating is float:
        if _own(m * n * k) and fnn_sgemm(m, n, k, alpha, A, 1 if trans_a else lda,
                                         lda if trans_a else 1, B, ldb, beta, C, ldc, P,
                                         ldc):
            return P != NULL
    gemm(trans_a, False, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    return False


cdef int own_sgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha, const float* A,
                   Py_ssize_t sai, Py_ssize_t sap, const float* B, Py_ssize_t ldb, float beta,
                   float* C, Py_ssize_t ldc, float* P, Py_ssize_t ldp) noexcept nogil:
    return fnn_sgemm(m, n, k, alpha, A, sai, sap, B, ldb, beta, C, ldc, P, ldp)


cdef int use_gemm_path(int level) noexcept nogil:
    return fnn_sgemm_use(level)


def gemm_path():
    """fastnn's own float32 product (_gemm.h): the instruction set it runs, 2 (AVX-512), 1
    (AVX2 + FMA) or 0 (none: BLAS does every product)."""
    return fnn_sgemm_level()


def own_small_products(flag=None):
    """Whether fastnn's own float32 product also takes the small products (up to blas_small
    multiply-adds) that BLAS's small-matrix kernels would; ``flag`` sets it (once, at import:
    it changes the rounding of small products)."""
    if flag is not None:
        tune.own_small = bool(flag)
    return bool(tune.own_small)
