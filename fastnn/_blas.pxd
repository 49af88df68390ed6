# Matrix products for the kernel modules, row-major: BLAS through scipy.linalg.cython_blas
# with the row-/column-major swap done here once, and fastnn's own float32 product (_gemm.h).

from cython cimport floating

# row-major C (m x n) = alpha op(A) op(B) + beta C, op(A) (m x k), op(B) (k x n); BLAS
cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               floating alpha, const floating* A, Py_ssize_t lda, const floating* B,
               Py_ssize_t ldb, floating beta, floating* C, Py_ssize_t ldc) noexcept nogil

# gemm with op(B) = B, by fastnn's own float32 product where it is the faster (own_gemm,
# blas_small, own_small in _tuning) and the CPU has it, else BLAS; with P (m x n, row stride
# ldc) also P += C, fused into fastnn's product: returns whether it was (else the caller adds)
cdef bint product(bint trans_a, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, floating alpha,
                  const floating* A, Py_ssize_t lda, const floating* B, Py_ssize_t ldb,
                  floating beta, floating* C, Py_ssize_t ldc, floating* P=*) noexcept nogil

# row-major C (m x n) = A (m x k) B^T, B (n x k) row-major (a layer's X W^T): fastnn's own
# float32 product up to own_gemm multiply-adds, where the CPU has it, else BLAS
cdef void product_nt(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* A,
                     Py_ssize_t lda, const floating* B, Py_ssize_t ldb, floating* C,
                     Py_ssize_t ldc) noexcept nogil

# a frozen layer's W^T in panels of PANEL units, a panel's rows of its width contiguous
# (_gemm.h); z (w) = x (1 x k) times the panel (k x w) at B, one fused chain per unit
cdef extern from "_gemm.h" nogil:
    enum: PANEL "FNN_PANEL_UNITS"
    void panel_gemv "fnn_pgemv"(Py_ssize_t k, Py_ssize_t w, const float* x, const float* B,
                                float* z)

# fastnn's own product, A's element (i, p) at A[i sai + p sap]: 0 where the CPU lacks it
cdef int own_sgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha, const float* A,
                   Py_ssize_t sai, Py_ssize_t sap, const float* B, Py_ssize_t ldb, float beta,
                   float* C, Py_ssize_t ldc, float* P, Py_ssize_t ldp) noexcept nogil

# BLAS on one thread until the matching release (see _blas.pyx; gemm holds it by itself, a
# caller that makes many products may hold it once around them)
cdef void hold_blas() noexcept nogil
cdef void release_blas() noexcept nogil

# (tests) select fastnn's product's instruction set, or the CPU's best below ``level``
cdef int use_gemm_path(int level) noexcept nogil
