# X as the user holds it (_inputs.pyx), for the other kernel modules. Pointers to arrays the
# callers have checked; nothing here validates.

cimport numpy as cnp
from cython cimport floating

ctypedef fused index_t:  # a CSR matrix's indices and indptr: scipy's int32 or int64
    cnp.int32_t
    cnp.int64_t

# eq. 10a on the CSR rows rows[r] (r without rows) for r0 <= r < r1, into U (row r at
# U + (r - r0) M): u = g(sum_p x_p W^T[k_p] + b), W held as W^T (K, M) or, with
# ``transposed`` False, read in place as W (M, K); the same bits either way
cdef void csr_forward(const floating* data, const index_t* indices, const index_t* indptr,
                      const Py_ssize_t* rows, Py_ssize_t r0, Py_ssize_t r1,
                      const floating* W, bint transposed, Py_ssize_t K,
                      const floating* b, floating* U, Py_ssize_t M, int code) noexcept nogil

# dW^T[k] += x_ik dZ_r (dZ's row r for CSR row rows[r]) for the n rows of a batch and the
# features k0 <= k < k1 (G = dW^T, (K, M)). With ``stamp``: a row whose stamp is not t is
# first zeroed, stamped t and listed in touched[count[0]++] (the training loop's rows)
cdef void csr_grad_t(const floating* data, const index_t* indices, const index_t* indptr,
                     const Py_ssize_t* rows, Py_ssize_t n, const floating* dZ, floating* G,
                     Py_ssize_t M, Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t* stamp,
                     Py_ssize_t t, Py_ssize_t* touched, Py_ssize_t* count) noexcept nogil

# dst (r1 - r0, K) = rows rows[r] (r without rows) of a float32 (src64 False) or float64
# matrix at src, element (i, k) at src[i s0 + k s1], converted to dst's dtype
cdef void gather_rows(floating* dst, const void* src, bint src64, Py_ssize_t s0,
                      Py_ssize_t s1, const Py_ssize_t* rows, Py_ssize_t r0, Py_ssize_t r1,
                      Py_ssize_t K) noexcept nogil

# whether X is a 2-D float32/float64 ndarray the kernels may read where it lies: aligned,
# native byte order, strides whole elements (any order, any sign)
cdef bint readable(object X)
