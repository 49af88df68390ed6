# The layer kernels (_layers.pyx) for the other kernel modules. Pointers to C-contiguous
# arrays of one float dtype; nothing here validates.

from cython cimport floating

cdef enum:  # activation codes; the order is reference.ACTIVATIONS
    IDENTITY = 0
    STEP = 1
    SIGMOID = 2
    RELU = 3
    TANH = 4
    EXP = 5

cdef dict _ACTIVATION_CODES

# U = g(U + b) in place over n elements (b: n entries or NULL)
cdef void activate_row(floating* U, const floating* b, Py_ssize_t n, int code) noexcept nogil
# U[i, :] = g(U[i, :] + b) for the N rows of U (N, M): eq. 10a's epilogue
cdef void activate_rows(floating* U, const floating* b, Py_ssize_t N, Py_ssize_t M,
                        int code) noexcept nogil
# U = g(Z) over a flat array (U may be Z)
cdef void activate_flat(const floating* Z, floating* U, Py_ssize_t size, int code) noexcept nogil
# dZ = dU * g'(Z), g'(Z) from U = g(Z) (dZ may be dU)
cdef void mul_grad_row(const floating* dU, const floating* U, floating* dZ, Py_ssize_t n,
                       int code) noexcept nogil
# eq. 10a: U (N, M) = g(X W^T + b), X (N, K), W (M, K), b (M,) or NULL
cdef void linear_forward(const floating* X, const floating* W, const floating* b,
                         floating* U, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M,
                         int code) noexcept nogil
# linear_forward with the batch's rows in parts (by the shapes) shared by fastnn's threads
cdef void linear_forward_rows(const floating* X, const floating* W, const floating* b,
                              floating* U, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M,
                              int code) noexcept nogil
# whether a batch's layer is split by its units (a small batch: unit_rows), and the split
cdef bint by_units(Py_ssize_t N, Py_ssize_t K, Py_ssize_t M) noexcept nogil
cdef void linear_forward_units(const floating* X, const floating* W, const float* Wp,
                               const floating* b, floating* U, Py_ssize_t N, Py_ssize_t K,
                               Py_ssize_t M, int code) noexcept nogil
# the threads a call of ``work`` multiply-adds shares its parts with (see _layers.pyx)
cdef int share(double work) noexcept nogil
# linear_forward for a frozen layer: W^T in panels of _blas.PANEL units (Linear.freeze)
cdef void linear_forward_packed(const float* X, const float* Wp, const float* b, float* U,
                                Py_ssize_t N, Py_ssize_t K, Py_ssize_t M,
                                int code) noexcept nogil
# U[:, units of panels p0..p1] = X W^T there, from W^T in panels (no bias, no activation)
cdef void panel_products(const float* X, const float* Wp, float* U, Py_ssize_t N,
                         Py_ssize_t K, Py_ssize_t M, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil
# the same with W held transposed, WT (K, M)
cdef void linear_forward_t(const floating* X, const floating* WT, const floating* b,
                           floating* U, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M,
                           int code) noexcept nogil
# B (cols, rows) = A (rows, cols)^T
cdef void transpose(const floating* A, floating* B, Py_ssize_t rows,
                    Py_ssize_t cols) noexcept nogil
# entries j0..j1 of db = sum_i dZ_i (float64 scratch acc, indexed by j)
cdef void grad_db(const floating* dZ, floating* db, double* acc, Py_ssize_t N, Py_ssize_t M,
                  Py_ssize_t j0, Py_ssize_t j1) noexcept nogil
# rows j0..j1 of dW = beta dW + alpha dZ^T X (and db); P += dW fused where it can be
cdef bint grad_dW(const floating* dZ, const floating* X, floating* dW, floating* db,
                  double* acc, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M, Py_ssize_t j0,
                  Py_ssize_t j1, floating alpha=*, floating beta=*,
                  floating* P=*) noexcept nogil
# rows k0..k1 of dW^T = beta dW^T + alpha X^T dZ; P += dW^T fused where it can be
cdef bint grad_dWT(const floating* dZ, const floating* X, floating* dWT, Py_ssize_t N,
                   Py_ssize_t K, Py_ssize_t M, Py_ssize_t k0, Py_ssize_t k1, floating alpha,
                   floating beta, floating* P=*) noexcept nogil
# dX (N, K) = dZ (N, M) W (M, K)
cdef void grad_dX(const floating* dZ, const floating* W, floating* dX, Py_ssize_t N,
                  Py_ssize_t K, Py_ssize_t M) noexcept nogil
# an exact ndarray of this ndim and type, C-contiguous, aligned, in native byte order
cdef bint plain(object A, int ndim, int typenum)
# an activation's code from its name (a str), or -1 for anything else
cdef int activation_code(object activation)
