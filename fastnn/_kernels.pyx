# cython: language_level=3
"""Typed CPU kernels of fastnn.

Design
------
Every public function here takes NumPy arrays that ``fastnn.functional`` has already
validated: float32 or float64, one dtype per call, C-contiguous, 2-D batches of matching
shapes, labels in range, outputs that do not overlap the inputs. Nothing here validates;
the kernels trust their arguments. The one exception is ``linear``, whose compiled
argument check *is* the public boundary's fast path: it returns None for anything outside
the common case and ``functional`` then validates in Python and calls it again.

Each entry point dispatches on the dtype once, releases the GIL and runs a fused-type
(``floating``) kernel on raw pointers. Matrix products go to BLAS through
``scipy.linalg.cython_blas`` (a row-major A @ B.T is a column-major gemm with the operands
swapped, so nothing is copied); one sample's product, and shapes too small to pay for a BLAS
call, take fastnn's own matrix-vector loop (``fnn_gemv`` in _fastmath.h, a fixed order).
Elementwise passes over large arrays are shared by fastnn's threads (``_threads.h``) in
fixed blocks, and every reduction (loss sums, bias gradients) runs in a fixed order with a float64
accumulator, so results are bit-identical for any thread count.

Equation numbers refer to shared/seed/neural-network-notes.md.
"""

cimport numpy as cnp
from cython cimport floating
from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf, fabs, fabsf, sqrt, sqrtf
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "_fastmath.h" nogil:
    # vectorisable exp (within 2 ulp) and loops over it, one build per instruction set
    float fnn_expf(float x)
    double fnn_exp(double x)
    void fnn_exp_inplace_f(float* x, Py_ssize_t n)
    void fnn_exp_inplace_d(double* x, Py_ssize_t n)
    void fnn_sigmoid_inplace_f(float* x, Py_ssize_t n)
    void fnn_sigmoid_inplace_d(double* x, Py_ssize_t n)
    double fnn_exp_shift_sum_f(const float* z, float m, float* out, Py_ssize_t n)
    double fnn_exp_shift_sum_d(const double* z, double m, double* out, Py_ssize_t n)
    void fnn_sgd_f(float* P, const float* G, float lr, Py_ssize_t n)
    void fnn_sgd_d(double* P, const double* G, double lr, Py_ssize_t n)
    void fnn_momentum_f(float* P, const float* G, float* V, float mu, float lr, int nesterov,
                        Py_ssize_t n)
    void fnn_momentum_d(double* P, const double* G, double* V, double mu, double lr,
                        int nesterov, Py_ssize_t n)
    void fnn_adam_f(float* P, const float* G, float* M, float* V, float b1, float b2,
                    float lr_t, float eps, Py_ssize_t n)
    void fnn_adam_d(double* P, const double* G, double* M, double* V, double b1, double b2,
                    double lr_t, double eps, Py_ssize_t n)
    void fnn_add_scaled_f(float* G, const float* P, float wd, Py_ssize_t n)
    void fnn_add_scaled_d(double* G, const double* P, double wd, Py_ssize_t n)
    void fnn_bias_relu_f(float* U, const float* b, Py_ssize_t n)
    void fnn_bias_relu_d(double* U, const double* b, Py_ssize_t n)
    void fnn_add_f(float* U, const float* b, Py_ssize_t n)
    void fnn_add_d(double* U, const double* b, Py_ssize_t n)
    void fnn_relu_mask_f(const float* dU, const float* U, float* dZ, Py_ssize_t n)
    void fnn_relu_mask_d(const double* dU, const double* U, double* dZ, Py_ssize_t n)
    void fnn_colsum_f(const float* Z, double* acc, Py_ssize_t N, Py_ssize_t M, Py_ssize_t ld)
    void fnn_colsum_d(const double* Z, double* acc, Py_ssize_t N, Py_ssize_t M, Py_ssize_t ld)
    void fnn_cross_entropy_rows_f(const float* Z, const Py_ssize_t* Y, const Py_ssize_t* rows,
                                  const double* sw, double c, double div, float* losses,
                                  float* dZ, Py_ssize_t n, Py_ssize_t d)
    void fnn_cross_entropy_rows_d(const double* Z, const Py_ssize_t* Y,
                                  const Py_ssize_t* rows, const double* sw, double c,
                                  double div, double* losses, double* dZ, Py_ssize_t n,
                                  Py_ssize_t d)
    double fnn_lanes8(const double* lane)
    float fnn_max_f(const float* z, Py_ssize_t n)
    double fnn_max_d(const double* z, Py_ssize_t n)
    void fnn_scale_f(float* x, float a, Py_ssize_t n)
    void fnn_scale_d(double* x, double a, Py_ssize_t n)
    bint fnn_all_finite_f(const float* x, Py_ssize_t n)
    bint fnn_all_finite_d(const double* x, Py_ssize_t n)
    void fnn_gemv_f(const float* W, const float* X, const float* b, float* Z, Py_ssize_t N,
                    Py_ssize_t M, Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t K)
    void fnn_gemv_d(const double* W, const double* X, const double* b, double* Z,
                    Py_ssize_t N, Py_ssize_t M, Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t K)

import os

import numpy as np

cnp.import_array()

# Activation codes; the order is reference.ACTIVATIONS.
cdef enum:
    IDENTITY = 0
    STEP = 1
    SIGMOID = 2
    RELU = 3
    TANH = 4
    EXP = 5

cdef extern from "_threads.h" nogil:
    # fastnn's threads (see the header): run job(arg, tid, T) on up to T threads
    ctypedef void (*fnn_job)(void* arg, int tid, int T) noexcept nogil
    ctypedef struct fnn_barrier:
        pass
    void fnn_barrier_init(fnn_barrier* b)
    void fnn_barrier_wait(fnn_barrier* b, int n, long* sense)
    int FNN_MAX_THREADS
    void fnn_pool_init(int limit)
    int fnn_pool_limit()
    void fnn_pool_set_limit(int limit)
    int fnn_pool_run(fnn_job job, void* arg, int T)
    double fnn_clock()
    struct fnn_pool_state "fnn_pool":
        int workers
        long forks
    fnn_pool_state fnn_pool

cdef extern from "_gemm.h" nogil:
    # fastnn's float32 product C = alpha A B + beta C with no packing (see the header);
    # returns 0 where the CPU lacks AVX2 + FMA (the caller then calls BLAS)
    int fnn_sgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha, const float* A,
                  Py_ssize_t sai, Py_ssize_t sap, const float* B, Py_ssize_t ldb, float beta,
                  float* C, Py_ssize_t ldc, float* P, Py_ssize_t ldp)
    int fnn_sgemm_level()
    int fnn_sgemm_use(int level)

cdef extern from *:
    int FASTNN_CHECKED_BUILD "FASTNN_CHECKED"  # set by setup.py

CHECKED = bool(FASTNN_CHECKED_BUILD)  # built with FASTNN_CHECKED=1 (bounds checks on)

ACTIVATION_CODES = {"identity": IDENTITY, "step": STEP, "sigmoid": SIGMOID,
                    "relu": RELU, "tanh": TANH, "exp": EXP}
cdef dict _ACTIVATION_CODES = ACTIVATION_CODES  # typed: .get is a C call on the fast paths

# Loss reductions.
cdef enum:
    MEAN = 0
    SUM = 1
    NONE = 2

REDUCTION_CODES = {"mean": MEAN, "sum": SUM, "none": NONE}

# Work sizes (in multiply-adds or elements) at which the cheaper strategy changes.
cdef Py_ssize_t SMALL_GEMM = 4096        # below: direct loops beat a BLAS call
# Up to OWN_GEMM multiply-adds fastnn's own float32 product (_gemm.h) beats BLAS's packing;
# above, BLAS's cache blocking wins (at 512 x 1024 x 1024 OpenBLAS's AVX-512 kernels are 1.7x
# faster). Up to BLAS_SMALL, OpenBLAS's small-matrix kernels (AVX-512 cores) skip the packing
# too and are a little faster in the training loop (the digits fit: 5%); where BLAS has none
# (OpenBLAS's AVX2 cores: a 16 x 64 -> 128 product 4.4x slower), OWN_SMALL (set at import,
# see functional.py) gives the small products to fastnn's too.
cdef Py_ssize_t OWN_GEMM = 1 << 25
cdef Py_ssize_t BLAS_SMALL = 1 << 20
cdef bint OWN_SMALL = False


cdef inline bint _own(Py_ssize_t work) noexcept nogil:
    # whether a float32 product of ``work`` multiply-adds goes to fastnn's own (if the CPU can)
    return work <= OWN_GEMM and (OWN_SMALL or work > BLAS_SMALL)


def own_small_products(flag=None):
    """Whether fastnn's own float32 product also takes the small products (up to 2^20
    multiply-adds) that BLAS's small-matrix kernels would; ``flag`` sets it (once, at import:
    it changes the rounding of small products)."""
    global OWN_SMALL
    if flag is not None:
        OWN_SMALL = bool(flag)
    return OWN_SMALL


cdef Py_ssize_t PARALLEL_ELEMENTS = 262144  # above: elementwise passes use fastnn's threads
cdef Py_ssize_t TEAM_STEP = 1 << 16      # above (training loop): a step's work split in parts
# how many: the machine's processor count, fixed for a machine whatever the thread settings,
# so the same random_state gives the same weights with 1 or 2 threads (BLAS packs the shared
# operand once per part, so more parts than processors cost time)
cdef Py_ssize_t PARTS = max(1, min(64, os.cpu_count() or 1))


# Above (multiply-adds): one sample's layer splits W's rows among fastnn's threads. The split
# costs a wake-up of a worker: ~0.5 us while it spins after a call, 5 to 80 us once it
# sleeps: 784 x 256 (5 us on one core) gains from the first, only a W of tens of MB (read
# from L3 or memory) from the second.
cdef Py_ssize_t SPLIT_GEMV = 1 << 22
SPLIT_GEMV_SIZE = SPLIT_GEMV


# ---------------------------------------------------------------------------------------
# Scalar helpers
# ---------------------------------------------------------------------------------------

cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return fnn_expf(x)
    else:
        return fnn_exp(x)


cdef inline void _exp_inplace(floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fnn_exp_inplace_f(x, n)
    else:
        fnn_exp_inplace_d(x, n)


cdef inline void _sigmoid_inplace(floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fnn_sigmoid_inplace_f(x, n)
    else:
        fnn_sigmoid_inplace_d(x, n)


cdef inline double _exp_shift_sum(const floating* z, floating m, floating* out,
                                  Py_ssize_t n) noexcept nogil:
    # out = e^{z - m}, returns sum(out)
    if floating is float:
        return fnn_exp_shift_sum_f(z, m, out, n)
    else:
        return fnn_exp_shift_sum_d(z, m, out, n)


cdef inline floating _max(const floating* z, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fnn_max_f(z, n)
    else:
        return fnn_max_d(z, n)


cdef inline void _scale(floating* x, floating a, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fnn_scale_f(x, a, n)
    else:
        fnn_scale_d(x, a, n)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _fabs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    else:
        return fabs(x)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating _sigmoid(floating z) noexcept nogil:
    # eq. 3: 1 / (1 + e^-z), through e = e^-|z| <= 1 so nothing overflows
    cdef floating e = _exp(-_fabs(z))
    cdef floating s = 1 / (1 + e)
    return s if z >= 0 else e * s


cdef inline void _gemm(char transa, char transb, int m, int n, int k, floating alpha,
                       floating* A, int lda, floating* B, int ldb, floating beta,
                       floating* C, int ldc) noexcept nogil:
    # column-major C (m x n) = alpha op(A) op(B) + beta C
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, A, &lda, B, &ldb, &beta, C, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, A, &lda, B, &ldb, &beta, C, &ldc)


# ---------------------------------------------------------------------------------------
# Passes over independent blocks of an array, shared by fastnn's threads (_threads.h)
# ---------------------------------------------------------------------------------------

cdef enum:  # what a Blocks job computes on its blocks
    ACTIVATE_ROWS = 0  # A (n, width): each row g(row + B) (B: bias or NULL)
    ACTIVATE_FLAT = 1  # A (size,): g in blocks of 4096
    SOFTMAX_ROWS = 2   # B (n, width) = softmax (or log-softmax, code) of A's rows
    CE_ROWS = 3        # eq. 18 on A (size, width) in blocks of 256 rows: losses B, dZ C
    GEMV_ROWS = 4      # one sample: D (size,) = g(A x + C) for A (size, width), in 16-row blocks


cdef struct Blocks:
    int kind
    bint single       # float32 arrays (else float64)
    Py_ssize_t n      # blocks: thread tid of T takes blocks tid n / T .. (tid + 1) n / T
    Py_ssize_t width
    Py_ssize_t size
    int code          # the activation (or, SOFTMAX_ROWS: take the log)
    void* A
    void* B
    void* C
    void* D
    const Py_ssize_t* y
    double scale


cdef void _blocks(floating* tag, Blocks* job, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    # blocks i0..i1 of the job (the same arithmetic as the one-thread loop of its caller)
    cdef Py_ssize_t i, w = job.width, start, stop
    cdef floating* A = <floating*>job.A
    if job.kind == ACTIVATE_ROWS:
        for i in range(i0, i1):
            _activate_row(A + i * w, <floating*>job.B, w, job.code)
    elif job.kind == ACTIVATE_FLAT:
        start, stop = i0 * 4096, min(i1 * 4096, job.size)
        _activate_row(A + start, <floating*>NULL, stop - start, job.code)
    elif job.kind == SOFTMAX_ROWS:
        for i in range(i0, i1):
            _softmax_row(A + i * w, <floating*>job.B + i * w, w, job.code)
    elif job.kind == CE_ROWS:
        start, stop = i0 * 256, min(i1 * 256, job.size)
        _cross_entropy_rows(A + start * w, job.y + start, NULL, NULL, job.scale, 1.0,
                            <floating*>job.B + start,
                            <floating*>job.C + start * w if job.C != NULL else NULL,
                            stop - start, w)
    else:  # GEMV_ROWS; the last block takes the rows past n * 16
        start, stop = i0 * 16, (i1 * 16 if i1 < job.n else job.size)
        _gemv(A, <floating*>job.B, <floating*>job.C, <floating*>job.D, 1, job.size, start,
              stop, w)
        _activate_row(<floating*>job.D + start, <floating*>NULL, stop - start, job.code)


cdef void _blocks_job(void* arg, int tid, int T) noexcept nogil:
    cdef Blocks* job = <Blocks*>arg
    cdef Py_ssize_t i0 = tid * job.n // T, i1 = (tid + 1) * job.n // T
    if job.single:
        _blocks(<float*>NULL, job, i0, i1)
    else:
        _blocks(<double*>NULL, job, i0, i1)


cdef inline void _run_blocks(Blocks* job) noexcept nogil:
    fnn_pool_run(_blocks_job, job, <int>min(job.n, FNN_MAX_THREADS))


# ---------------------------------------------------------------------------------------
# Activations (elementwise; each case its own loop so the compiler can vectorise it)
# ---------------------------------------------------------------------------------------

cdef inline void _gemv(const floating* W, const floating* X, const floating* b, floating* Z,
                       Py_ssize_t N, Py_ssize_t M, Py_ssize_t j0, Py_ssize_t j1,
                       Py_ssize_t K) noexcept nogil:
    # z_ij = sum_k W_jk x_ik + b_j for the N rows of X and the rows j0 <= j < j1 of a row-major
    # W (M, K), in the fixed order of _fastmath.h; b may be NULL
    if floating is float:
        fnn_gemv_f(W, X, b, Z, N, M, j0, j1, K)
    else:
        fnn_gemv_d(W, X, b, Z, N, M, j0, j1, K)


cdef void _activate_row(floating* U, const floating* b, Py_ssize_t n, int code) noexcept nogil:
    # U = g(U + b) in place; b may be NULL (no bias)
    cdef Py_ssize_t j
    cdef floating z
    if code == RELU:  # max(0, z + b) in one pass; NaN propagates
        if floating is float:
            fnn_bias_relu_f(U, b, n)
        else:
            fnn_bias_relu_d(U, b, n)
        return
    if b != NULL:
        if floating is float:
            fnn_add_f(U, b, n)
        else:
            fnn_add_d(U, b, n)
    if code == IDENTITY:
        pass
    elif code == STEP:  # eq. 2: 1 if z >= 0 else 0
        for j in range(n):
            U[j] = 1 if U[j] >= 0 else 0
    elif code == SIGMOID:
        _sigmoid_inplace(U, n)
    elif code == TANH:
        for j in range(n):
            U[j] = _tanh(U[j])
    elif code == EXP:
        _exp_inplace(U, n)


cdef void _activate_rows(floating* U, const floating* b, Py_ssize_t N, Py_ssize_t M,
                         int code) noexcept nogil:
    # U[i, :] = g(U[i, :] + b) for every row: the epilogue of eq. 10a
    cdef Py_ssize_t i
    if code == IDENTITY and b == NULL:
        return
    cdef Blocks job
    # in parallel only where the activation costs more than the memory traffic (exp inside)
    if N * M >= PARALLEL_ELEMENTS and N > 1 and _costly(code):
        job.kind, job.single, job.n, job.width, job.code = ACTIVATE_ROWS, floating is float, N, M, code
        job.A, job.B = U, <void*>b
        _run_blocks(&job)
    else:
        for i in range(N):
            _activate_row(U + i * M, b, M, code)


cdef void _grad_row(const floating* U, floating* G, Py_ssize_t n, int code) noexcept nogil:
    # G = dU/dZ written from U alone
    cdef Py_ssize_t j
    if code == IDENTITY:
        for j in range(n):
            G[j] = 1
    elif code == STEP:
        for j in range(n):
            G[j] = 0
    elif code == SIGMOID:  # u (1 - u)
        for j in range(n):
            G[j] = U[j] * (1 - U[j])
    elif code == RELU:  # 1 where u > 0
        for j in range(n):
            G[j] = 1 if U[j] > 0 else 0
    elif code == TANH:  # 1 - u^2
        for j in range(n):
            G[j] = 1 - U[j] * U[j]
    elif code == EXP:  # u
        for j in range(n):
            G[j] = U[j]


cdef void _mul_grad_row(const floating* dU, const floating* U, floating* dZ, Py_ssize_t n,
                        int code) noexcept nogil:
    # dZ = dU * g'(Z), with g'(Z) from U (chain rule u -> z)
    cdef Py_ssize_t j
    if code == IDENTITY:
        if dZ != dU:
            memcpy(dZ, dU, n * sizeof(floating))
    elif code == STEP:  # dU * 0: zero, but NaN/inf in dU stay visible as NaN
        for j in range(n):
            dZ[j] = dU[j] * 0
    elif code == SIGMOID:
        for j in range(n):
            dZ[j] = dU[j] * (U[j] * (1 - U[j]))
    elif code == RELU:  # dU times the 0/1 mask
        if floating is float:
            fnn_relu_mask_f(dU, U, dZ, n)
        else:
            fnn_relu_mask_d(dU, U, dZ, n)
    elif code == TANH:
        for j in range(n):
            dZ[j] = dU[j] * (1 - U[j] * U[j])
    elif code == EXP:
        for j in range(n):
            dZ[j] = dU[j] * U[j]


cdef inline bint _costly(int code) noexcept nogil:
    # activations that evaluate exp: worth fastnn's threads on large arrays
    return code == SIGMOID or code == TANH or code == EXP


cdef void _activate_flat(const floating* Z, floating* U, Py_ssize_t size, int code) noexcept nogil:
    # U = g(Z) over a flat array, in chunks of 4096 elements across threads when costly
    cdef Blocks job
    if U != Z:
        memcpy(U, Z, size * sizeof(floating))
    if size >= PARALLEL_ELEMENTS and _costly(code):
        job.kind, job.single, job.n, job.size, job.code = ACTIVATE_FLAT, floating is float, (size + 4095) // 4096, size, code
        job.A = U
        _run_blocks(&job)
    else:
        _activate_row(U, <floating*>NULL, size, code)


def activate(cnp.ndarray Z, int code, cnp.ndarray out):
    """out = g(Z) elementwise. Z and out: same dtype, same size, C-contiguous."""
    cdef Py_ssize_t size = cnp.PyArray_SIZE(Z)
    if cnp.PyArray_TYPE(Z) == cnp.NPY_FLOAT32:
        with nogil:
            _activate_flat(<float*>cnp.PyArray_DATA(Z), <float*>cnp.PyArray_DATA(out), size, code)
    else:
        with nogil:
            _activate_flat(<double*>cnp.PyArray_DATA(Z), <double*>cnp.PyArray_DATA(out), size, code)
    return out


def activation_grad(cnp.ndarray U, int code, cnp.ndarray out):
    """out = g'(Z) written from U = g(Z), elementwise."""
    cdef Py_ssize_t size = cnp.PyArray_SIZE(U)
    if cnp.PyArray_TYPE(U) == cnp.NPY_FLOAT32:
        with nogil:
            _grad_row(<float*>cnp.PyArray_DATA(U), <float*>cnp.PyArray_DATA(out), size, code)
    else:
        with nogil:
            _grad_row(<double*>cnp.PyArray_DATA(U), <double*>cnp.PyArray_DATA(out), size, code)
    return out


# ---------------------------------------------------------------------------------------
# Fused linear layer, forward (eq. 10a): U = g(X W^T + B)
# ---------------------------------------------------------------------------------------

cdef void _linear_forward(const floating* X, const floating* W, const floating* b,
                          floating* U, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M,
                          int code) noexcept nogil:
    # X (N, K), W (M, K), b (M,) or NULL, U (N, M); all C-contiguous
    if N == 1:  # one sample: fastnn's matrix-vector product (a BLAS call costs more here)
        _gemv_layer(W, X, b, U, K, M, code)
        return
    if N * M * K <= SMALL_GEMM:
        # eq. 1a sample by sample, as N = 1 computes it: a row of a batch is the lone sample's
        _gemv(W, X, b, U, N, M, 0, M, K)
        _activate_row(U, <floating*>NULL, N * M, code)
        return
    # Row-major U = X W^T is column-major U^T (M x N) = W X^T: gemm('t', 'n') on W, X.
    _gemm(c"t", c"n", <int>M, <int>N, <int>K, 1, <floating*>W, <int>K, <floating*>X,
          <int>K, 0, U, <int>M)
    _activate_rows(U, b, N, M, code)

cdef void _linear_forward_t(const floating* X, const floating* WT, const floating* b,
                            floating* U, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M,
                            int code) noexcept nogil:
    # _linear_forward with the weights stored transposed, WT (K, M) = W^T: the training
    # loop keeps its first layer so, since row-major X WT is a gemm('n', 'n') that BLAS's
    # small-matrix kernels take without packing W (X W^T is a 't' product they refuse)
    cdef Py_ssize_t i, j, k
    cdef floating x
    if N * M * K <= SMALL_GEMM:
        # eq. 9a: z_ij = b_j + sum_k x_ik WT_kj, a row of WT at a time, then u_ij = g(z_ij)
        for i in range(N):
            for j in range(M):
                U[i * M + j] = b[j] if b != NULL else 0
            for k in range(K):
                x = X[i * K + k]
                for j in range(M):
                    U[i * M + j] = U[i * M + j] + x * WT[k * M + j]
            _activate_row(U + i * M, <floating*>NULL, M, code)
        return
    if not (floating is float and _own(N * M * K)
            and fnn_sgemm(N, M, K, 1, X, K, 1, WT, M, 0, U, M, NULL, 0)):
        # row-major U (N, M) = X WT is column-major U^T (M x N) = WT^T X^T: gemm('n', 'n')
        _gemm(c"n", c"n", <int>M, <int>N, <int>K, 1, <floating*>WT, <int>M, <floating*>X,
              <int>K, 0, U, <int>M)
    _activate_rows(U, b, N, M, code)


cdef void _transpose(const floating* A, floating* B, Py_ssize_t rows,
                     Py_ssize_t cols) noexcept nogil:
    # B (cols, rows) = A (rows, cols)^T, in 32 x 32 tiles
    cdef Py_ssize_t i0, j0, i, j
    for i0 in range(0, rows, 32):
        for j0 in range(0, cols, 32):
            for i in range(i0, min(i0 + 32, rows)):
                for j in range(j0, min(j0 + 32, cols)):
                    B[j * rows + i] = A[i * cols + j]


cdef void _gemv_layer(const floating* W, const floating* x, const floating* b, floating* u,
                      Py_ssize_t K, Py_ssize_t M, int code) noexcept nogil:
    # one sample, eq. 1a: u_j = g(sum_k W_jk x_k + b_j). A large W is cut into blocks of rows
    # that the threads take (each streams its part of W from its own core's cache); a row's
    # sum does not depend on the block, so the result is the same for any thread count.
    cdef Blocks job
    if M * K >= SPLIT_GEMV and M >= 32:  # blocks of 16 rows: no cache line of u shared
        job.kind, job.single, job.n, job.width, job.size, job.code = GEMV_ROWS, floating is float, M // 16, K, M, code
        job.A, job.B, job.C, job.D = <void*>W, <void*>x, <void*>b, u
        _run_blocks(&job)
    else:
        _gemv(W, x, b, u, 1, M, 0, M, K)
        _activate_row(u, <floating*>NULL, M, code)


cdef inline bint _disjoint(cnp.ndarray a, cnp.ndarray b):
    # the byte ranges of two contiguous arrays do not overlap
    cdef char* pa = <char*>cnp.PyArray_DATA(a)
    cdef char* pb = <char*>cnp.PyArray_DATA(b)
    return pa + cnp.PyArray_NBYTES(a) <= pb or pb + cnp.PyArray_NBYTES(b) <= pa


cdef inline bint _plain(object A, int ndim, int typenum):
    # an exact ndarray of this ndim and dtype, C-contiguous, aligned and in the machine's byte
    # order (the type number does not say the byte order: a ">f8" array is NPY_DOUBLE too)
    if type(A) is not np.ndarray:
        return False
    cdef cnp.ndarray a = <cnp.ndarray>A
    return (cnp.PyArray_NDIM(a) == ndim and cnp.PyArray_TYPE(a) == typenum
            and cnp.PyArray_ISCARRAY_RO(a) and cnp.PyArray_ISNOTSWAPPED(a))


def linear(object X, object W, object b, object activation, object out):
    """U = g(X W^T + B), eq. 10a, fused: the bias and activation are the epilogue of the product.

    This is the compiled fast path of ``functional.linear``: it returns U when the arguments
    are the common case (2-D C-contiguous float32/float64 arrays of one dtype and matching
    non-empty shapes, a known activation, ``out`` absent or a matching writeable array that
    overlaps no input) and None otherwise, in which case the caller validates in Python.
    """
    if type(X) is not np.ndarray:
        return None
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>X)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        return None
    if not (_plain(X, 2, typenum) and _plain(W, 2, typenum)):
        return None
    cdef cnp.ndarray x = <cnp.ndarray>X, w = <cnp.ndarray>W, bias = None, u
    cdef Py_ssize_t N = x.shape[0], K = x.shape[1], M = w.shape[0]
    if N == 0 or K == 0 or M == 0 or w.shape[1] != K:
        return None
    if N > 0x7FFFFFFF or K > 0x7FFFFFFF or M > 0x7FFFFFFF:
        return None
    if b is not None:
        if not _plain(b, 1, typenum):
            return None
        bias = <cnp.ndarray>b
        if bias.shape[0] != M:
            return None
    code = _ACTIVATION_CODES.get(activation) if type(activation) is str else None
    if code is None:
        return None
    cdef cnp.npy_intp dims[2]
    if out is None:
        dims[0] = N
        dims[1] = M
        u = cnp.PyArray_EMPTY(2, dims, typenum, 0)
    else:
        if not _plain(out, 2, typenum) or not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out):
            return None
        u = <cnp.ndarray>out
        if u.shape[0] != N or u.shape[1] != M or not (_disjoint(u, x) and _disjoint(u, w)):
            return None
        if bias is not None and not _disjoint(u, bias):
            return None
    cdef int c = code
    cdef void* pb = cnp.PyArray_DATA(bias) if bias is not None else NULL
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            _linear_forward(<float*>cnp.PyArray_DATA(x), <float*>cnp.PyArray_DATA(w),
                            <float*>pb, <float*>cnp.PyArray_DATA(u), N, K, M, c)
    else:
        with nogil:
            _linear_forward(<double*>cnp.PyArray_DATA(x), <double*>cnp.PyArray_DATA(w),
                            <double*>pb, <double*>cnp.PyArray_DATA(u), N, K, M, c)
    return u


# ---------------------------------------------------------------------------------------
# Fused linear layer, backward (eq. 13 and the chain rule, section 3)
# ---------------------------------------------------------------------------------------

cdef void _grad_db(const floating* dZ, floating* db, double* acc, Py_ssize_t N, Py_ssize_t M,
                   Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    # entries j0..j1 of db = sum_i dZ_i, in a fixed order with float64 accumulators acc[j]
    cdef Py_ssize_t j
    memset(acc + j0, 0, (j1 - j0) * sizeof(double))
    if floating is float:
        fnn_colsum_f(dZ + j0, acc + j0, N, j1 - j0, M)
    else:
        fnn_colsum_d(dZ + j0, acc + j0, N, j1 - j0, M)
    for j in range(j0, j1):
        db[j] = <floating>acc[j]


cdef bint _grad_dW(const floating* dZ, const floating* X, floating* dW, floating* db,
                   double* acc, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M, Py_ssize_t j0,
                   Py_ssize_t j1, floating alpha=1, floating beta=0,
                   floating* P=NULL) noexcept nogil:
    # rows j0..j1 of dW = dZ^T X and of db = sum_i dZ_i; dZ (N, M), X (N, K), dW (M, K);
    # db may be NULL (a layer without bias); acc: float64 scratch for db, indexed by j.
    # With alpha, beta: dW = beta dW + alpha dZ^T X (beta 0: dW is not read), which is the
    # SGD update itself on W (alpha = -lr, beta = 1) or on a momentum velocity (beta = mu).
    # P (M, K), optional: P += dW on those rows, fused into the product where fastnn's own
    # runs it; returns whether it did (else the caller adds).
    cdef Py_ssize_t i, j, k, w = j1 - j0
    cdef floating s
    if db != NULL:
        _grad_db(dZ, db, acc, N, M, j0, j1)
    if N * w * K <= SMALL_GEMM:
        # dW_jk = sum_i dZ_ij x_ik
        for j in range(j0, j1):
            for k in range(K):
                s = 0
                for i in range(N):
                    s = s + dZ[i * M + j] * X[i * K + k]
                dW[j * K + k] = alpha * s if beta == 0 else beta * dW[j * K + k] + alpha * s
    elif floating is float and _own(N * w * K) and \
            fnn_sgemm(w, K, N, alpha, dZ + j0, 1, M, X, K, beta, dW + j0 * K, K,
                      P + j0 * K if P != NULL else NULL, K):
        return True
    else:
        # row-major dW[j0:j1] = dZ[:, j0:j1]^T X is column-major (K x w) X^T dZ[:, j0:j1]:
        # gemm('n', 't') on X and dZ's columns j0..j1
        _gemm(c"n", c"t", <int>K, <int>w, <int>N, alpha, <floating*>X, <int>K,
              <floating*>dZ + j0, <int>M, beta, dW + j0 * K, <int>K)
    return False


cdef bint _grad_dWT(const floating* dZ, const floating* X, floating* dWT, Py_ssize_t N,
                    Py_ssize_t K, Py_ssize_t M, Py_ssize_t k0, Py_ssize_t k1, floating alpha,
                    floating beta, floating* P=NULL) noexcept nogil:
    # rows k0..k1 of dW^T = X^T dZ (K, M), the transposed layout of _linear_forward_t; as
    # _grad_dW, dWT = beta dWT + alpha X^T dZ (beta 0: dWT is not read), and P += dWT
    cdef Py_ssize_t i, j, k
    cdef floating s
    if N * M * (k1 - k0) <= SMALL_GEMM:
        # dWT_kj = sum_i x_ik dZ_ij
        for k in range(k0, k1):
            for j in range(M):
                s = 0
                for i in range(N):
                    s = s + X[i * K + k] * dZ[i * M + j]
                dWT[k * M + j] = alpha * s if beta == 0 else beta * dWT[k * M + j] + alpha * s
        return False
    if floating is float and _own(N * M * (k1 - k0)) and \
            fnn_sgemm(k1 - k0, M, N, alpha, X + k0, 1, K, dZ, M, beta, dWT + k0 * M, M,
                      P + k0 * M if P != NULL else NULL, M):
        return True
    # row-major dWT[k0:k1] (kw, M) is column-major (M x kw) = dZ^T X[:, k0:k1]: gemm('n', 't')
    _gemm(c"n", c"t", <int>M, <int>(k1 - k0), <int>N, alpha, <floating*>dZ, <int>M,
          <floating*>X + k0, <int>K, beta, dWT + k0 * M, <int>M)
    return False


cdef void _grad_dX(const floating* dZ, const floating* W, floating* dX, Py_ssize_t N,
                   Py_ssize_t K, Py_ssize_t M) noexcept nogil:
    # dX = dZ W: dZ (N, M), W (M, K), dX (N, K)
    cdef Py_ssize_t i, j, k
    cdef floating s
    if N * M * K <= SMALL_GEMM:
        # dX_ik = sum_j dZ_ij W_jk
        for i in range(N):
            for k in range(K):
                s = 0
                for j in range(M):
                    s = s + dZ[i * M + j] * W[j * K + k]
                dX[i * K + k] = s
    elif not (floating is float and _own(N * M * K)
              and fnn_sgemm(N, K, M, 1, dZ, M, 1, W, K, 0, dX, K, NULL, 0)):
        # row-major dX (N, K) = dZ W is column-major dX^T (K x N) = W^T dZ^T: gemm('n', 'n')
        _gemm(c"n", c"n", <int>K, <int>N, <int>M, 1, <floating*>W, <int>K, <floating*>dZ,
              <int>M, 0, dX, <int>K)


cdef void _linear_backward(const floating* dU, const floating* X, const floating* W,
                           const floating* U, floating* dZ, floating* dX, floating* dW,
                           floating* db, double* acc, Py_ssize_t N, Py_ssize_t K,
                           Py_ssize_t M, int code) noexcept nogil:
    # dZ = dU * g'(Z); dW = dZ^T X; db = sum_i dZ_i; dX = dZ W (skipped when dX is NULL).
    # dZ may alias dU; db may be NULL (a layer without bias); acc: M float64 of scratch for db.
    _mul_grad_row(dU, U, dZ, N * M, code)
    _grad_dW(dZ, X, dW, db, acc, N, K, M, 0, M)
    if dX != NULL:
        _grad_dX(dZ, W, dX, N, K, M)


def linear_backward(cnp.ndarray dU, cnp.ndarray X, cnp.ndarray W, cnp.ndarray U, int code,
                    bint need_dX):
    """(dX or None, dW, db) for U = g(X W^T + b) given dU = dL/dU. Arguments validated."""
    cdef Py_ssize_t N = X.shape[0], K = X.shape[1], M = W.shape[0]
    cdef int typenum = cnp.PyArray_TYPE(X)
    cdef cnp.ndarray dZ = dU if code == IDENTITY else np.empty((N, M), dtype=X.dtype)
    cdef cnp.ndarray dW = np.empty((M, K), dtype=X.dtype)
    cdef cnp.ndarray db = np.empty(M, dtype=X.dtype)
    cdef cnp.ndarray dX = np.empty((N, K), dtype=X.dtype) if need_dX else None
    cdef void* pdX = cnp.PyArray_DATA(dX) if need_dX else NULL
    cdef double* acc = <double*>malloc(M * sizeof(double))
    if acc == NULL:
        raise MemoryError()
    try:
        if typenum == cnp.NPY_FLOAT32:
            with nogil:
                _linear_backward(<float*>cnp.PyArray_DATA(dU), <float*>cnp.PyArray_DATA(X),
                                 <float*>cnp.PyArray_DATA(W), <float*>cnp.PyArray_DATA(U),
                                 <float*>cnp.PyArray_DATA(dZ), <float*>pdX,
                                 <float*>cnp.PyArray_DATA(dW), <float*>cnp.PyArray_DATA(db),
                                 acc, N, K, M, code)
        else:
            with nogil:
                _linear_backward(<double*>cnp.PyArray_DATA(dU), <double*>cnp.PyArray_DATA(X),
                                 <double*>cnp.PyArray_DATA(W), <double*>cnp.PyArray_DATA(U),
                                 <double*>cnp.PyArray_DATA(dZ), <double*>pdX,
                                 <double*>cnp.PyArray_DATA(dW), <double*>cnp.PyArray_DATA(db),
                                 acc, N, K, M, code)
    finally:
        free(acc)
    return dX, dW, db


# ---------------------------------------------------------------------------------------
# Softmax (eq. 5) and log-softmax, row by row with the max shift
# ---------------------------------------------------------------------------------------

cdef void _softmax_row(const floating* z, floating* p, Py_ssize_t K, bint take_log) noexcept nogil:
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


cdef void _softmax(const floating* Z, floating* P, Py_ssize_t N, Py_ssize_t K,
                   bint take_log) noexcept nogil:
    cdef Py_ssize_t i
    cdef Blocks job
    if N * K >= PARALLEL_ELEMENTS and N > 1:
        job.kind, job.single, job.n, job.width, job.code = SOFTMAX_ROWS, floating is float, N, K, take_log
        job.A, job.B = <void*>Z, P
        _run_blocks(&job)
    else:
        for i in range(N):
            _softmax_row(Z + i * K, P + i * K, K, take_log)


def softmax(cnp.ndarray Z, bint take_log, cnp.ndarray out):
    """out = softmax(Z) (eq. 5) or log_softmax(Z), over the rows of a 2-D C-contiguous Z."""
    cdef Py_ssize_t N = Z.shape[0], K = Z.shape[1]
    if cnp.PyArray_TYPE(Z) == cnp.NPY_FLOAT32:
        with nogil:
            _softmax(<float*>cnp.PyArray_DATA(Z), <float*>cnp.PyArray_DATA(out), N, K, take_log)
    else:
        with nogil:
            _softmax(<double*>cnp.PyArray_DATA(Z), <double*>cnp.PyArray_DATA(out), N, K, take_log)
    return out


# ---------------------------------------------------------------------------------------
# A network's output in one call (eq. 10, then eq. 7, 3 or 5): decision_function and
# predict_proba without a Python round trip per layer
# ---------------------------------------------------------------------------------------

OUTPUT_CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "softmax": -1}
cdef dict _OUTPUT_CODES = OUTPUT_CODES


cdef void _network(const floating* X, floating** W, floating** b, const Py_ssize_t* dims,
                   const int* codes, int L, floating* buf, Py_ssize_t half, floating* out,
                   Py_ssize_t N, int output) noexcept nogil:
    # U_0 = X; U_l = g_l(U_{l-1} W_l^T + B_l) for l = 1..L (eq. 10), the hidden U_l in the two
    # halves of buf by turns; out = U_L (identity, eq. 7), sigmoid(U_L) (eq. 3) or
    # softmax(U_L) row by row (eq. 5). The kernels of linear, sigmoid and softmax.
    cdef const floating* inp = X
    cdef floating* U
    cdef int l
    for l in range(L):
        U = out if l == L - 1 and output != -1 else buf + (l % 2) * half
        _linear_forward(inp, W[l], b[l], U, N, dims[l], dims[l + 1], codes[l])
        inp = U
    if output == SIGMOID:
        _activate_flat(out, out, N * dims[L], SIGMOID)
    elif output == -1:
        _softmax(inp, out, N, dims[L], False)


def network(object X, object layers, object output):
    """The output map of a stack of layers on X (N, n_in): g_out(g_L(... g_1(X W_1^T + B_1)
    ...)) with g_out "identity", "sigmoid" or "softmax"; ``layers``: a list of objects with
    ``W``, ``b`` and ``activation`` (fastnn.Linear). Each layer runs ``linear``'s kernel.

    Like ``linear``, this is a fast path: it returns the new (N, n_out) array when X and every
    layer are the common case (2-D C-contiguous arrays of one float dtype, non-empty chained
    shapes, known activations) and None otherwise; the caller then takes the general path.
    """
    if type(X) is not np.ndarray or type(layers) is not list:
        return None
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>X)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        return None
    if not _plain(X, 2, typenum):
        return None
    cdef int L = len(layers), l, out_code
    if L == 0 or L > MAX_LAYERS:  # (64, _train.pxi's) deeper networks take the per-layer path
        return None
    code = _OUTPUT_CODES.get(output) if type(output) is str else None
    if code is None:
        return None
    out_code = code
    cdef void* W[MAX_LAYERS]
    cdef void* b[MAX_LAYERS]
    cdef int codes[MAX_LAYERS]
    cdef Py_ssize_t dims[MAX_LAYERS + 1]
    cdef Py_ssize_t N = (<cnp.ndarray>X).shape[0], width = 0
    dims[0] = (<cnp.ndarray>X).shape[1]
    if N == 0 or dims[0] == 0 or N > 0x7FFFFFFF or dims[0] > 0x7FFFFFFF:
        return None
    arrays = [None] * (2 * L)  # alive while the GIL is released, whatever other threads do
    for l in range(L):
        layer = layers[l]
        w, bias, act = layer.W, layer.b, layer.activation
        if not _plain(w, 2, typenum) or (<cnp.ndarray>w).shape[1] != dims[l]:
            return None
        dims[l + 1] = (<cnp.ndarray>w).shape[0]
        if dims[l + 1] == 0 or dims[l + 1] > 0x7FFFFFFF:
            return None
        if bias is not None and not (_plain(bias, 1, typenum)
                                     and (<cnp.ndarray>bias).shape[0] == dims[l + 1]):
            return None
        code = _ACTIVATION_CODES.get(act) if type(act) is str else None
        if code is None:
            return None
        arrays[2 * l] = w
        arrays[2 * l + 1] = bias
        W[l] = cnp.PyArray_DATA(<cnp.ndarray>w)
        b[l] = cnp.PyArray_DATA(<cnp.ndarray>bias) if bias is not None else NULL
        codes[l] = code
        width = max(width, dims[l + 1])
    cdef cnp.npy_intp odims[2]
    odims[0] = N
    odims[1] = dims[L]
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(2, odims, typenum, 0)
    # the hidden layers' outputs: two halves of N * width, on the stack when small
    cdef double small[1024]
    cdef Py_ssize_t half = N * width
    cdef void* buf = small
    if 2 * half * cnp.PyArray_ITEMSIZE(out) > <Py_ssize_t>sizeof(small):
        buf = malloc(2 * half * cnp.PyArray_ITEMSIZE(out))
        if buf == NULL:
            raise MemoryError()
    try:
        if typenum == cnp.NPY_FLOAT32:
            with nogil:
                _network(<float*>cnp.PyArray_DATA(<cnp.ndarray>X), <float**>W, <float**>b,
                         dims, codes, L, <float*>buf, half, <float*>cnp.PyArray_DATA(out),
                         N, out_code)
        else:
            with nogil:
                _network(<double*>cnp.PyArray_DATA(<cnp.ndarray>X), <double**>W,
                         <double**>b, dims, codes, L, <double*>buf, half,
                         <double*>cnp.PyArray_DATA(out), N, out_code)
    finally:
        if buf != <void*>small:
            free(buf)
    return out


# ---------------------------------------------------------------------------------------
# Losses: per-sample loss and its gradient in one pass (eq. 16-20)
# ---------------------------------------------------------------------------------------

cdef double _sum(const floating* x, Py_ssize_t n) noexcept nogil:
    # sum in a fixed order with a float64 accumulator (eq. 16: L = sum_i g_loss)
    cdef double s = 0
    cdef Py_ssize_t i
    for i in range(n):
        s += x[i]
    return s


cdef void _cross_entropy_rows(const floating* Z, const Py_ssize_t* y, const Py_ssize_t* rows,
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
    cdef Blocks job
    if N * K >= PARALLEL_ELEMENTS and N > 1:  # blocks of 256 rows across threads
        job.kind, job.single, job.n, job.size, job.width = CE_ROWS, floating is float, (N + 255) // 256, N, K
        job.A, job.B, job.C, job.y, job.scale = <void*>Z, losses, dZ, y, scale
        _run_blocks(&job)
    else:
        _cross_entropy_rows(Z, y, NULL, NULL, scale, 1.0, losses, dZ, N, K)
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


cdef double _binary_cross_entropy(const floating* z, const floating* y, floating* losses,
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
            total = _binary_cross_entropy(<float*>cnp.PyArray_DATA(z), <float*>cnp.PyArray_DATA(y),
                                          <float*>cnp.PyArray_DATA(losses), <float*>pdz, N,
                                          <float>scale)
    else:
        with nogil:
            total = _binary_cross_entropy(<double*>cnp.PyArray_DATA(z), <double*>cnp.PyArray_DATA(y),
                                          <double*>cnp.PyArray_DATA(losses), <double*>pdz, N,
                                          scale)
    return total


cdef double _squared_error(const floating* Z, const floating* Y, floating* losses,
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
            total = _squared_error(<float*>cnp.PyArray_DATA(Z), <float*>cnp.PyArray_DATA(Y),
                                   <float*>cnp.PyArray_DATA(losses), <float*>pdZ, N, d,
                                   <float>scale)
    else:
        with nogil:
            total = _squared_error(<double*>cnp.PyArray_DATA(Z), <double*>cnp.PyArray_DATA(Y),
                                   <double*>cnp.PyArray_DATA(losses), <double*>pdZ, N, d, scale)
    return total


include "_train.pxi"


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

def gemm_path(level=None):
    """fastnn's own float32 product (_gemm.h): the instruction set it runs, 2 (AVX-512), 1
    (AVX2 + FMA) or 0 (none: BLAS does every product). (Tests) ``level`` selects that path
    or the CPU's best below it."""
    if level is not None:
        fnn_sgemm_use(int(level))
    return fnn_sgemm_level()


def _own_gemm(cnp.ndarray A, cnp.ndarray B, cnp.ndarray C, float alpha, float beta,
              bint transpose_a=False, cnp.ndarray P=None):
    """(Tests) C = alpha op(A) B + beta C by fastnn's own product on the path in use, for
    C-contiguous float32 A, B, C; op(A) = A^T with ``transpose_a`` (read in place, as the
    training loop's dW^T = X^T dZ reads X); then P += C if P is given (C's shape). Returns
    False (C untouched) on path 0."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1], k = A.shape[0] if transpose_a else A.shape[1]
    if (A.shape[1] if transpose_a else A.shape[0]) != m or B.shape[0] != k or B.shape[1] != n:
        raise ValueError("shapes do not chain")
    for a in (A, B, C) if P is None else (A, B, C, P):
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise TypeError("float32, C-contiguous arrays")
    if P is not None and (P.shape[0] != m or P.shape[1] != n):
        raise ValueError("P must have C's shape")
    return bool(fnn_sgemm(m, n, k, alpha, <float*>cnp.PyArray_DATA(A),
                          1 if transpose_a else A.shape[1], A.shape[1] if transpose_a else 1,
                          <float*>cnp.PyArray_DATA(B), n, beta, <float*>cnp.PyArray_DATA(C), n,
                          <float*>cnp.PyArray_DATA(P) if P is not None else NULL, n))


def all_finite(cnp.ndarray a):
    """Whether no entry of the C-contiguous float32/float64 array ``a`` is inf or NaN."""
    cdef Py_ssize_t n = cnp.PyArray_SIZE(a)
    cdef bint ok
    if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT32:
        with nogil:
            ok = fnn_all_finite_f(<float*>cnp.PyArray_DATA(a), n)
    else:
        with nogil:
            ok = fnn_all_finite_d(<double*>cnp.PyArray_DATA(a), n)
    return ok


cdef double _penalized(const floating* grad, const floating* theta, double* g, Py_ssize_t n,
                       Py_ssize_t size, double a) noexcept nogil:
    # g = grad + a theta on entries 0..n-1, g = grad after; returns sum_i<n theta_i^2
    # (8 lanes, in a fixed order)
    cdef double lane[8]
    cdef double w
    cdef Py_ssize_t i
    for i in range(8):
        lane[i] = 0
    for i in range(n):
        w = theta[i]
        g[i] = grad[i] + a * w
        lane[i & 7] += w * w
    for i in range(n, size):
        g[i] = grad[i]
    return fnn_lanes8(lane)


def penalized_gradient(cnp.ndarray grad, cnp.ndarray theta, Py_ssize_t n, double a):
    """(g, s) for the lbfgs solver: g the float64 gradient ``grad`` plus the L2 penalty's
    ``a`` theta on its first ``n`` entries (the weights), s = sum of their squares (in
    float64: inf only once float64 overflows, or for an inf weight). ``grad``, ``theta``:
    1-D, C-contiguous, of one float dtype, 0 <= n <= size."""
    cdef Py_ssize_t size = grad.shape[0]
    cdef cnp.ndarray g = np.empty(size, np.float64)
    cdef double s
    if cnp.PyArray_TYPE(grad) == cnp.NPY_FLOAT32:
        with nogil:
            s = _penalized(<float*>cnp.PyArray_DATA(grad), <float*>cnp.PyArray_DATA(theta),
                           <double*>cnp.PyArray_DATA(g), n, size, a)
    else:
        with nogil:
            s = _penalized(<double*>cnp.PyArray_DATA(grad), <double*>cnp.PyArray_DATA(theta),
                           <double*>cnp.PyArray_DATA(g), n, size, a)
    return g, s


def shuffle(cnp.ndarray perm, unsigned long long seed):
    """Shuffle the intp array ``perm`` in place: Fisher-Yates, drawing from the splitmix64
    stream of ``seed`` (the order of the samples in a training epoch, on both backends)."""
    cdef Py_ssize_t* p = <Py_ssize_t*>cnp.PyArray_DATA(perm)
    cdef Py_ssize_t i = perm.shape[0] - 1, j, tmp
    cdef unsigned long long z, x = seed
    with nogil:
        while i > 0:
            x = x + 0x9E3779B97F4A7C15ULL  # splitmix64
            z = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
            z = z ^ (z >> 31)
            # j uniform in 0..i: the high 32 bits scaled (Lemire), or the remainder
            if i < <Py_ssize_t>0xFFFFFFFFLL:
                j = <Py_ssize_t>(((z >> 32) * <unsigned long long>(i + 1)) >> 32)
            else:
                j = <Py_ssize_t>(z % <unsigned long long>(i + 1))
            tmp = p[i]
            p[i] = p[j]
            p[j] = tmp
            i -= 1


def _default_threads(environ):
    """The threads fastnn uses when nobody says: OMP_NUM_THREADS (its first number) if set,
    else the processors this process may run on (its affinity mask)."""
    value = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not Linux)
        return os.cpu_count() or 1


fnn_pool_init(_default_threads(os.environ))


def num_threads():
    """The number of threads fastnn's parallel work may use (see fastnn.set_num_threads)."""
    return fnn_pool_limit()


def set_num_threads(int n):
    """Let fastnn's parallel work use at most n threads (1..64; kernels trust n >= 1)."""
    fnn_pool_set_limit(n)


def pool_info():
    """(Tests, diagnostics) {"workers": threads started in this process, "forks": forks
    this process descends from since fastnn loaded}."""
    return {"workers": fnn_pool.workers, "forks": fnn_pool.forks}
