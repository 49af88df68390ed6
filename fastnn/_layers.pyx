# cython: language_level=3
"""The layer kernels: activations (eq. 2, 3 and the others) and the fused linear layer,
forward (eq. 10a: U = g(X W^T + B), the bias and activation as the product's epilogue) and
backward (eq. 13 and the chain rule of section 3). Arguments are validated by
fastnn.functional, except for ``linear``'s compiled fast path (see its docstring).

A row of a batch is computed as the lone sample would be where the batch is small (fastnn's
matrix-vector loop); the products go to _blas. Passes over large arrays and one sample's
large layer are shared by fastnn's threads in fixed blocks, so the results do not depend on
the thread count. Equation numbers refer to the course notes (shared/seed)."""

cimport numpy as cnp
from cython cimport floating
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

import numpy as np

from fastnn._blas cimport PANEL, gemm, own_sgemm, panel_gemv, product, product_nt
from fastnn._math cimport (_exp_inplace, _sigmoid_inplace, _tanh, fnn_bias_relu_f,
                           fnn_bias_relu_d, fnn_add_f, fnn_add_d, fnn_relu_mask_f,
                           fnn_relu_mask_d, fnn_colsum_f, fnn_colsum_d, fnn_gemv_f, fnn_gemv_d)
from fastnn._parallel cimport awake, blocks, blocks_on
from fastnn._tuning cimport Tuning, parts_of, row_parts, tuned, unit_parts

cnp.import_array()

cdef Tuning* tune = tuned()

# the sums a small product's direct loop keeps at once (in vector lanes, on the stack)
cdef enum:
    SUMS = 64

ACTIVATION_CODES = {"identity": IDENTITY, "step": STEP, "sigmoid": SIGMOID,
                    "relu": RELU, "tanh": TANH, "exp": EXP}
_ACTIVATION_CODES = ACTIVATION_CODES  # typed (the .pxd): .get is a C call on the fast paths


# ---------------------------------------------------------------------------------------
# Passes over independent blocks of an array, shared by fastnn's threads
# ---------------------------------------------------------------------------------------

cdef struct Elementwise:
    bint single       # float32 arrays (else float64)
    void* A           # activated in place; one sample's output u (gemv)
    const void* b     # the bias or NULL
    const void* W     # (gemv) W (size, width)
    const void* x     # (gemv) the sample (width,)
    Py_ssize_t width  # a block's (or row's) elements; (gemv) K
    Py_ssize_t size   # A's elements: the last block ends there
    int code          # the activation


cdef void _activate_blocks(floating* tag, Elementwise* job, Py_ssize_t i0,
                           Py_ssize_t i1) noexcept nogil:
    # A = g(A + b) on blocks i0..i1 (rows of width elements with a bias)
    cdef Py_ssize_t i, start = i0 * job.width, stop = min(i1 * job.width, job.size)
    if job.b == NULL:
        activate_row(<floating*>job.A + start, <floating*>NULL, stop - start, job.code)
    else:
        for i in range(i0, i1):
            activate_row(<floating*>job.A + i * job.width, <floating*>job.b, job.width,
                         job.code)


cdef void _activate_row_blocks(void* ctx, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if (<Elementwise*>ctx).single:
        _activate_blocks(<float*>NULL, <Elementwise*>ctx, i0, i1)
    else:
        _activate_blocks(<double*>NULL, <Elementwise*>ctx, i0, i1)


cdef void _gemv_blocks(floating* tag, Elementwise* job, Py_ssize_t i0,
                       Py_ssize_t i1) noexcept nogil:
    # u_j = g(W_j x + b_j) for the rows j of blocks i0..i1 of 16 rows (the last to size)
    cdef Py_ssize_t start = i0 * 16, stop = i1 * 16 if i1 < job.size // 16 else job.size
    _gemv(<floating*>job.W, <floating*>job.x, <floating*>job.b, <floating*>job.A, 1,
          job.size, start, stop, job.width)
    activate_row(<floating*>job.A + start, <floating*>NULL, stop - start, job.code)


cdef void _gemv_row_blocks(void* ctx, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    if (<Elementwise*>ctx).single:
        _gemv_blocks(<float*>NULL, <Elementwise*>ctx, i0, i1)
    else:
        _gemv_blocks(<double*>NULL, <Elementwise*>ctx, i0, i1)


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


cdef void activate_row(floating* U, const floating* b, Py_ssize_t n, int code) noexcept nogil:
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


cdef void activate_rows(floating* U, const floating* b, Py_ssize_t N, Py_ssize_t M,
                         int code) noexcept nogil:
    # U[i, :] = g(U[i, :] + b) for every row: the epilogue of eq. 10a
    cdef Py_ssize_t i
    if code == IDENTITY and b == NULL:
        return
    cdef Elementwise job
    # in parallel only where the activation costs more than the memory traffic (exp inside)
    if N * M >= tune.parallel_elements and N > 1 and _costly(code):
        job.single, job.A, job.b = floating is float, U, b
        job.width, job.size, job.code = M, N * M, code
        blocks(_activate_row_blocks, &job, N)
    else:
        for i in range(N):
            activate_row(U + i * M, b, M, code)


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


cdef void mul_grad_row(const floating* dU, const floating* U, floating* dZ, Py_ssize_t n,
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


cdef void activate_flat(const floating* Z, floating* U, Py_ssize_t size, int code) noexcept nogil:
    # U = g(Z) over a flat array, in chunks of 4096 elements across threads when costly
    cdef Elementwise job
    if U != Z:
        memcpy(U, Z, size * sizeof(floating))
    if size >= tune.parallel_elements and _costly(code):
        job.single, job.A, job.b = floating is float, U, NULL
        job.width, job.size, job.code = 4096, size, code
        blocks(_activate_row_blocks, &job, (size + 4095) // 4096)
    else:
        activate_row(U, <floating*>NULL, size, code)


def activate(cnp.ndarray Z, int code, cnp.ndarray out):
    """out = g(Z) elementwise. Z and out: same dtype, same size, C-contiguous."""
    cdef Py_ssize_t size = cnp.PyArray_SIZE(Z)
    if cnp.PyArray_TYPE(Z) == cnp.NPY_FLOAT32:
        with nogil:
            activate_flat(<float*>cnp.PyArray_DATA(Z), <float*>cnp.PyArray_DATA(out), size, code)
    else:
        with nogil:
            activate_flat(<double*>cnp.PyArray_DATA(Z), <double*>cnp.PyArray_DATA(out), size, code)
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

cdef void linear_forward(const floating* X, const floating* W, const floating* b,
                          floating* U, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M,
                          int code) noexcept nogil:
    # X (N, K), W (M, K), b (M,) or NULL, U (N, M); all C-contiguous
    if N == 1:  # one sample: fastnn's matrix-vector product (a BLAS call costs more here)
        gemv_layer(W, X, b, U, K, M, code)
        return
    if N * M * K <= tune.small_gemm:
        # eq. 1a sample by sample, as N = 1 computes it: a row of a batch is the lone sample's
        _gemv(W, X, b, U, N, M, 0, M, K)
        activate_row(U, <floating*>NULL, N * M, code)
        return
    product_nt(N, M, K, X, K, W, K, U, M)  # U = X W^T
    activate_rows(U, b, N, M, code)

cdef void linear_forward_t(const floating* X, const floating* WT, const floating* b,
                            floating* U, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M,
                            int code) noexcept nogil:
    # _linear_forward with the weights stored transposed, WT (K, M) = W^T: the training
    # loop keeps its first layer so, since row-major X WT is a gemm('n', 'n') that BLAS's
    # small-matrix kernels take without packing W (X W^T is a 't' product they refuse)
    cdef Py_ssize_t i, j, k
    cdef floating x
    if N * M * K <= tune.small_gemm:
        # eq. 9a: z_ij = b_j + sum_k x_ik WT_kj, a row of WT at a time, then u_ij = g(z_ij)
        for i in range(N):
            for j in range(M):
                U[i * M + j] = b[j] if b != NULL else 0
            for k in range(K):
                x = X[i * K + k]
                for j in range(M):
                    U[i * M + j] = U[i * M + j] + x * WT[k * M + j]
            activate_row(U + i * M, <floating*>NULL, M, code)
        return
    product(False, N, M, K, 1, X, K, WT, M, 0, U, M)  # U = X WT
    activate_rows(U, b, N, M, code)


cdef struct Forward:  # linear_forward over parts of a batch's rows, for fastnn's threads
    bint single
    const void* X
    const void* W
    const float* Wp     # (by units) a frozen layer's W^T in panels, else NULL
    const void* b
    void* U
    Py_ssize_t N
    Py_ssize_t K
    Py_ssize_t M
    Py_ssize_t parts
    int code


cdef void _forward_part(floating* tag, Forward* f, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    # parts q0..q1 of the rows, each on its own (rows q N / parts .. (q + 1) N / parts): a
    # part's product is the same whichever thread takes it with which others
    cdef Py_ssize_t q, r0, r1
    for q in range(q0, q1):
        r0, r1 = q * f.N // f.parts, (q + 1) * f.N // f.parts
        linear_forward(<floating*>f.X + r0 * f.K, <floating*>f.W, <floating*>f.b,
                       <floating*>f.U + r0 * f.M, r1 - r0, f.K, f.M, f.code)


cdef void _forward_blocks(void* ctx, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    if (<Forward*>ctx).single:
        _forward_part(<float*>NULL, <Forward*>ctx, q0, q1)
    else:
        _forward_part(<double*>NULL, <Forward*>ctx, q0, q1)


cdef void _unit_part(floating* tag, Forward* f, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil:
    # U[:, units of blocks p0..p1] = X W^T there (eq. 10a without B), PANEL units a block:
    # a frozen layer's panels (f.Wp), else W's rows
    cdef Py_ssize_t p, j
    if floating is float and f.Wp != NULL:
        panel_products(<const float*>f.X, f.Wp, <float*>f.U, f.N, f.K, f.M, p0, p1)
        return
    for p in range(p0, p1):
        j = p * PANEL
        product_nt(f.N, min(<Py_ssize_t>PANEL, f.M - j), f.K, <const floating*>f.X, f.K,
                   <const floating*>f.W + j * f.K, f.K, <floating*>f.U + j, f.M)


cdef void _unit_blocks(void* ctx, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil:
    if (<Forward*>ctx).single:
        _unit_part(<float*>NULL, <Forward*>ctx, p0, p1)
    else:
        _unit_part(<double*>NULL, <Forward*>ctx, p0, p1)


cdef bint by_units(Py_ssize_t N, Py_ssize_t K, Py_ssize_t M) noexcept nogil:
    # a batch of 2..unit_rows rows through a layer of more than one block of units, above
    # the direct loops' size (small_gemm: those keep their own order and bits)
    return 1 < N <= tune.unit_rows and M > PANEL and N * K * M > tune.small_gemm


cdef void linear_forward_units(const floating* X, const floating* W, const float* Wp,
                               const floating* b, floating* U, Py_ssize_t N, Py_ssize_t K,
                               Py_ssize_t M, int code) noexcept nogil:
    # linear_forward (a frozen layer's: Wp) of a small batch, its units in blocks of PANEL
    # (a frozen layer's panels) shared by fastnn's threads: each thread's part of W stays in
    # its core's cache from call to call (split by rows, a batch under 2 part_rows rows is
    # one part, on one thread, and each part reads all of W). Each unit's sum runs over the
    # inputs as in the whole product (tests compare the bits with the rows' split).
    cdef Forward f
    f.single, f.X, f.W, f.Wp, f.b, f.U = floating is float, X, W, Wp, b, U
    f.N, f.K, f.M, f.code = N, K, M, code
    blocks_on(_unit_blocks, &f, (M + PANEL - 1) // PANEL, share(<double>N * K * M))
    activate_rows(U, b, N, M, code)


cdef inline int share(double work) noexcept nogil:
    # the threads a call of ``work`` multiply-adds shares its parts with: all it may use when
    # the work pays for waking them, else only those still awake from a recent call
    return 64 if work >= tune.wake_work else 1 + awake()


cdef void linear_forward_rows(const floating* X, const floating* W, const floating* b,
                              floating* U, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M,
                              int code) noexcept nogil:
    # linear_forward, the batch's rows cut into parts by the shapes (_tuning.row_parts) that
    # fastnn's threads share (a small batch: its units, linear_forward_units): the same
    # result on any number of threads
    cdef Forward f
    if by_units(N, K, M):
        linear_forward_units(X, W, NULL, b, U, N, K, M, code)
        return
    f.parts = row_parts(tune, <double>N * K * M, N, <double>K * M)
    if f.parts == 1:
        linear_forward(X, W, b, U, N, K, M, code)
        return
    f.single, f.X, f.W, f.b, f.U = floating is float, X, W, b, U
    f.N, f.K, f.M, f.code = N, K, M, code
    blocks_on(_forward_blocks, &f, f.parts, share(<double>N * K * M))


cdef void transpose(const floating* A, floating* B, Py_ssize_t rows,
                     Py_ssize_t cols) noexcept nogil:
    # B (cols, rows) = A (rows, cols)^T by 32 x 32 tiles through a buffer: a tile's rows of A
    # are read and its rows of B written as whole runs of 32 (strided single elements, at a
    # power-of-two row length, land in one cache set and evict each other: a first layer's
    # 64 x 2^18 W to W^T and back took 39 and 117 ms, 22 ms each way through the buffer).
    # Tiles go by bands of the longer of A and B, so the short rows stay in cache.
    cdef floating tile[32 * 32]
    cdef Py_ssize_t i0, j0, a, c, band, across, j
    cdef bint wide = rows <= cols
    for band in range(0, cols if wide else rows, 32):
        for across in range(0, rows if wide else cols, 32):
            i0, j0 = (across, band) if wide else (band, across)
            a, c = min(32, rows - i0), min(32, cols - j0)
            _transpose_tile(A + i0 * cols + j0, cols, tile, a, c)
            for j in range(c):
                memcpy(B + (j0 + j) * rows + i0, tile + j * 32, a * sizeof(floating))


cdef inline void _transpose_tile(const floating* A, Py_ssize_t lda, floating* tile,
                                 Py_ssize_t a, Py_ssize_t c) noexcept nogil:
    # tile[j, i] = A[i, j] for an a x c block of A (rows lda apart), tile rows 32 apart
    cdef Py_ssize_t i, j
    for i in range(a):
        for j in range(c):
            tile[j * 32 + i] = A[i * lda + j]


cdef inline bint _split_sample(Py_ssize_t weights) noexcept nogil:
    # whether one sample's layer of this many weights is worth sharing among the threads:
    # a W too large for one core's cache, or (while fastnn's threads are still awake from a
    # recent call, so that no wake-up is paid) one of part_work or more
    return weights >= tune.split_gemv or (weights >= tune.part_work and awake() > 0)


cdef void gemv_layer(const floating* W, const floating* x, const floating* b, floating* u,
                      Py_ssize_t K, Py_ssize_t M, int code) noexcept nogil:
    # one sample, eq. 1a: u_j = g(sum_k W_jk x_k + b_j). A large W is cut into blocks of rows
    # that the threads take (each streams its part of W from its own core's cache); a row's
    # sum does not depend on the block, so the result is the same for any thread count.
    cdef Elementwise job
    if M >= 32 and _split_sample(M * K):
        job.single, job.A, job.W, job.x, job.b = floating is float, u, W, x, b
        job.width, job.size, job.code = K, M, code
        blocks(_gemv_row_blocks, &job, M // 16)  # blocks of 16 rows: no cache line shared
    else:
        _gemv(W, x, b, u, 1, M, 0, M, K)
        activate_row(u, <floating*>NULL, M, code)


# ---------------------------------------------------------------------------------------
# A frozen layer's forward (eq. 10a), its W^T held in panels (Linear.freeze, _gemm.h)
# ---------------------------------------------------------------------------------------

cdef void _panel_blocks(void* ctx, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    # u_j = g(x W_j^T + b_j) for the units j of panels i0..i1 (float32; job.W: the panels)
    cdef Elementwise* job = <Elementwise*>ctx
    cdef Py_ssize_t p, j, K = job.width, j0 = i0 * PANEL, j1 = min(i1 * PANEL, job.size)
    for p in range(i0, i1):
        j = p * PANEL
        panel_gemv(K, min(<Py_ssize_t>PANEL, job.size - j), <const float*>job.x,
                   <const float*>job.W + j * K, <float*>job.A + j)
    activate_row(<float*>job.A + j0, <const float*>job.b + j0 if job.b != NULL else NULL,
                 j1 - j0, job.code)


cdef void linear_forward_packed(const float* X, const float* Wp, const float* b, float* U,
                                Py_ssize_t N, Py_ssize_t K, Py_ssize_t M,
                                int code) noexcept nogil:
    # linear_forward for a frozen layer, which also holds W^T in panels: panel p (units
    # p PANEL .. + w) at Wp + p PANEL K, (K, w) row-major. One sample: each panel is one
    # stream of W^T and a thread's panels one stretch of memory (split as gemv_layer splits
    # W's rows); a batch (a part of one: the caller chose the panels for the whole batch,
    # up to own_panels multiply-adds): a product per panel, fastnn's own (the panel being
    # the packed operand BLAS would copy W into on every call). Every unit is one fused
    # chain over the inputs wherever fastnn's product computes it, so a row gets the same
    # bits alone and in a batch that takes the panels.
    cdef Py_ssize_t panels = (M + PANEL - 1) // PANEL
    cdef Elementwise job
    if N == 1:
        job.single, job.A, job.W, job.x, job.b = True, U, Wp, X, b
        job.width, job.size, job.code = K, M, code
        if panels > 1 and _split_sample(M * K):
            blocks(_panel_blocks, &job, panels)
        else:
            _panel_blocks(&job, 0, panels)
        return
    panel_products(X, Wp, U, N, K, M, 0, panels)
    activate_rows(U, b, N, M, code)


cdef void panel_products(const float* X, const float* Wp, float* U, Py_ssize_t N,
                         Py_ssize_t K, Py_ssize_t M, Py_ssize_t p0, Py_ssize_t p1) noexcept nogil:
    # U[:, units of panels p0..p1] = X W^T there (eq. 10a without B): a product per panel
    cdef Py_ssize_t p, j, w
    for p in range(p0, p1):
        j = p * PANEL
        w = min(<Py_ssize_t>PANEL, M - j)
        if not own_sgemm(N, w, K, 1, X, K, 1, Wp + j * K, w, 0, U + j, M, NULL, 0):
            gemm(False, False, N, w, K, <float>1, X, K, Wp + j * K, w, <float>0, U + j, M)


cdef inline bint _disjoint(cnp.ndarray a, cnp.ndarray b):
    # the byte ranges of two contiguous arrays do not overlap
    cdef char* pa = <char*>cnp.PyArray_DATA(a)
    cdef char* pb = <char*>cnp.PyArray_DATA(b)
    return pa + cnp.PyArray_NBYTES(a) <= pb or pb + cnp.PyArray_NBYTES(b) <= pa


cdef bint plain(object A, int ndim, int typenum):
    # an exact ndarray of this ndim and dtype, C-contiguous, aligned and in the machine's byte
    # order (the type number does not say the byte order: a ">f8" array is NPY_DOUBLE too)
    if not cnp.PyArray_CheckExact(A):
        return False
    cdef cnp.ndarray a = <cnp.ndarray>A
    return (cnp.PyArray_NDIM(a) == ndim and cnp.PyArray_TYPE(a) == typenum
            and cnp.PyArray_ISCARRAY_RO(a) and cnp.PyArray_ISNOTSWAPPED(a))


cdef int _plain_layer(object X, object W):
    # the fast paths' common case of a layer's X (N, K) and W (M, K): plain 2-D arrays of one
    # float dtype (float32, float64), non-empty, K matching, each size an int; their type
    # number, or -1
    if not cnp.PyArray_CheckExact(X):
        return -1
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>X)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        return -1
    if not (plain(X, 2, typenum) and plain(W, 2, typenum)):
        return -1
    cdef cnp.ndarray x = <cnp.ndarray>X, w = <cnp.ndarray>W
    cdef Py_ssize_t N = x.shape[0], K = x.shape[1], M = w.shape[0]
    if N == 0 or K == 0 or M == 0 or w.shape[1] != K:
        return -1
    if N > 0x7FFFFFFF or K > 0x7FFFFFFF or M > 0x7FFFFFFF:
        return -1
    return typenum


cdef int activation_code(object activation):
    # a known activation's code (a str only: .get on the typed dict is a C call), or -1
    code = _ACTIVATION_CODES.get(activation) if type(activation) is str else None
    return -1 if code is None else <int>code


def linear(object X, object W, object b, object activation, object out):
    """U = g(X W^T + B), eq. 10a, fused: the bias and activation are the epilogue of the product.

    This is the compiled fast path of ``functional.linear``: it returns U when the arguments
    are the common case (2-D C-contiguous float32/float64 arrays of one dtype and matching
    non-empty shapes, a known activation, ``out`` absent or a matching writeable array that
    overlaps no input) and None otherwise, in which case the caller validates in Python.
    """
    cdef int typenum = _plain_layer(X, W)
    if typenum < 0:
        return None
    cdef cnp.ndarray x = <cnp.ndarray>X, w = <cnp.ndarray>W, bias = None, u
    cdef Py_ssize_t N = x.shape[0], K = x.shape[1], M = w.shape[0]
    if b is not None:
        if not plain(b, 1, typenum):
            return None
        bias = <cnp.ndarray>b
        if bias.shape[0] != M:
            return None
    cdef int c = activation_code(activation)
    if c < 0:
        return None
    cdef cnp.npy_intp dims[2]
    if out is None:
        dims[0] = N
        dims[1] = M
        u = cnp.PyArray_EMPTY(2, dims, typenum, 0)
    else:
        if not plain(out, 2, typenum) or not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out):
            return None
        u = <cnp.ndarray>out
        if u.shape[0] != N or u.shape[1] != M or not (_disjoint(u, x) and _disjoint(u, w)):
            return None
        if bias is not None and not _disjoint(u, bias):
            return None
    cdef void* pb = cnp.PyArray_DATA(bias) if bias is not None else NULL
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            linear_forward_rows(<float*>cnp.PyArray_DATA(x), <float*>cnp.PyArray_DATA(w),
                            <float*>pb, <float*>cnp.PyArray_DATA(u), N, K, M, c)
    else:
        with nogil:
            linear_forward_rows(<double*>cnp.PyArray_DATA(x), <double*>cnp.PyArray_DATA(w),
                            <double*>pb, <double*>cnp.PyArray_DATA(u), N, K, M, c)
    return u


# ---------------------------------------------------------------------------------------
# Fused linear layer, backward (eq. 13 and the chain rule, section 3)
# ---------------------------------------------------------------------------------------

cdef void grad_db(const floating* dZ, floating* db, double* acc, Py_ssize_t N, Py_ssize_t M,
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


cdef void _small_sums(const floating* A, Py_ssize_t lda, const floating* B, Py_ssize_t ldb,
                      floating* C, Py_ssize_t N, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t cols,
                      floating alpha, floating beta) noexcept nogil:
    # rows r0..r1 of C (., cols) = beta C + alpha A^T B, A (N, lda), B (N, ldb), as direct
    # loops for small products (beta 0: C is not read): C_rc = sum_i A_ir B_ic for n <= SUMS
    # columns c at a time, the sums over i added row by row of B (the same order as one
    # sum at a time, in vector lanes)
    cdef Py_ssize_t i, r, c, k, n
    cdef floating a
    cdef floating s[SUMS]
    for r in range(r0, r1):
        c = 0
        while c < cols:
            n = min(<Py_ssize_t>SUMS, cols - c)
            for k in range(n):
                s[k] = 0
            for i in range(N):
                a = A[i * lda + r]
                for k in range(n):
                    s[k] = s[k] + a * B[i * ldb + c + k]
            for k in range(n):
                C[r * cols + c + k] = (alpha * s[k] if beta == 0
                                       else beta * C[r * cols + c + k] + alpha * s[k])
            c += n


cdef bint grad_dW(const floating* dZ, const floating* X, floating* dW, floating* db,
                   double* acc, Py_ssize_t N, Py_ssize_t K, Py_ssize_t M, Py_ssize_t j0,
                   Py_ssize_t j1, floating alpha=1, floating beta=0,
                   floating* P=NULL) noexcept nogil:
    # rows j0..j1 of dW = dZ^T X and of db = sum_i dZ_i; dZ (N, M), X (N, K), dW (M, K);
    # db may be NULL (a layer without bias); acc: float64 scratch for db, indexed by j.
    # With alpha, beta: dW = beta dW + alpha dZ^T X (beta 0: dW is not read), which is the
    # SGD update itself on W (alpha = -lr, beta = 1) or on a momentum velocity (beta = mu).
    # P (M, K), optional: P += dW on those rows, fused into the product where fastnn's own
    # runs it; returns whether it did (else the caller adds).
    cdef Py_ssize_t w = j1 - j0
    if db != NULL:
        grad_db(dZ, db, acc, N, M, j0, j1)
    if N * w * K <= tune.small_gemm:  # dW_jk = sum_i dZ_ij x_ik
        _small_sums(dZ, M, X, K, dW, N, j0, j1, K, alpha, beta)
    else:  # dW[j0:j1] = dZ[:, j0:j1]^T X
        return product(True, w, K, N, alpha, dZ + j0, M, X, K, beta, dW + j0 * K, K,
                       P + j0 * K if P != NULL else NULL)
    return False


cdef bint grad_dWT(const floating* dZ, const floating* X, floating* dWT, Py_ssize_t N,
                    Py_ssize_t K, Py_ssize_t M, Py_ssize_t k0, Py_ssize_t k1, floating alpha,
                    floating beta, floating* P=NULL) noexcept nogil:
    # rows k0..k1 of dW^T = X^T dZ (K, M), the transposed layout of _linear_forward_t; as
    # _grad_dW, dWT = beta dWT + alpha X^T dZ (beta 0: dWT is not read), and P += dWT
    if N * M * (k1 - k0) <= tune.small_gemm:  # dWT_kj = sum_i x_ik dZ_ij
        _small_sums(X, K, dZ, M, dWT, N, k0, k1, M, alpha, beta)
        return False
    # dWT[k0:k1] = X[:, k0:k1]^T dZ
    return product(True, k1 - k0, M, N, alpha, X + k0, K, dZ, M, beta, dWT + k0 * M, M,
                   P + k0 * M if P != NULL else NULL)


cdef void grad_dX(const floating* dZ, const floating* W, floating* dX, Py_ssize_t N,
                   Py_ssize_t K, Py_ssize_t M) noexcept nogil:
    # dX = dZ W: dZ (N, M), W (M, K), dX (N, K)
    cdef Py_ssize_t i, j, k
    cdef floating a
    if N * M * K <= tune.small_gemm:
        # dX_ik = sum_j dZ_ij W_jk, a row of dX at a time: the sums over j added row by row
        # of W (the same order as one sum at a time, in vector lanes)
        for i in range(N):
            for k in range(K):
                dX[i * K + k] = 0
            for j in range(M):
                a = dZ[i * M + j]
                for k in range(K):
                    dX[i * K + k] = dX[i * K + k] + a * W[j * K + k]
    else:
        product(False, N, K, M, 1, dZ, M, W, K, 0, dX, K)  # dX = dZ W


cdef struct Backward:  # _linear_backward's parts, for fastnn's threads
    bint single
    const void* dU
    const void* X
    const void* W
    const void* U
    void* dZ
    void* dX            # NULL: not wanted
    void* dW
    void* db            # NULL: no bias
    double* acc
    Py_ssize_t N
    Py_ssize_t K
    Py_ssize_t M
    Py_ssize_t parts    # of the phase running
    bint by_units       # the dW phase's parts: blocks of units (rows of dW), else of inputs
    int code


cdef void _backward_rows(floating* tag, Backward* f, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    # parts q0..q1 of the batch's rows r0..r1: dZ_r = dU_r * g'(Z_r) and dX_r = dZ_r W
    cdef Py_ssize_t q, r0, r1, M = f.M
    for q in range(q0, q1):
        r0, r1 = q * f.N // f.parts, (q + 1) * f.N // f.parts
        mul_grad_row(<const floating*>f.dU + r0 * M, <const floating*>f.U + r0 * M,
                     <floating*>f.dZ + r0 * M, (r1 - r0) * M, f.code)
        if f.dX != NULL:
            grad_dX(<floating*>f.dZ + r0 * M, <const floating*>f.W,
                    <floating*>f.dX + r0 * f.K, r1 - r0, f.K, M)


cdef void _backward_weights(floating* tag, Backward* f, Py_ssize_t q0,
                            Py_ssize_t q1) noexcept nogil:
    # parts q0..q1 of dW = dZ^T X: its rows j0..j1 (with db there), or its columns k0..k1
    # (dW[:, k0:k1] = dZ^T X[:, k0:k1]; part 0 takes db)
    cdef Py_ssize_t q, a0, a1, N = f.N, K = f.K, M = f.M
    cdef const floating* dZ = <floating*>f.dZ
    cdef floating* dW = <floating*>f.dW
    for q in range(q0, q1):
        if f.by_units:
            a0, a1 = q * M // f.parts, (q + 1) * M // f.parts
            grad_dW(dZ, <const floating*>f.X, dW, <floating*>f.db, f.acc, N, K, M, a0, a1)
        else:
            a0, a1 = q * K // f.parts, (q + 1) * K // f.parts
            if q == 0 and f.db != NULL:
                grad_db(dZ, <floating*>f.db, f.acc, N, M, 0, M)
            product(True, M, a1 - a0, N, 1, dZ, M, <const floating*>f.X + a0, K, 0, dW + a0,
                    K)


cdef void _backward_row_blocks(void* ctx, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    if (<Backward*>ctx).single:
        _backward_rows(<float*>NULL, <Backward*>ctx, q0, q1)
    else:
        _backward_rows(<double*>NULL, <Backward*>ctx, q0, q1)


cdef void _backward_weight_blocks(void* ctx, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    if (<Backward*>ctx).single:
        _backward_weights(<float*>NULL, <Backward*>ctx, q0, q1)
    else:
        _backward_weights(<double*>NULL, <Backward*>ctx, q0, q1)


cdef void _linear_backward(const floating* dU, const floating* X, const floating* W,
                           const floating* U, floating* dZ, floating* dX, floating* dW,
                           floating* db, double* acc, Py_ssize_t N, Py_ssize_t K,
                           Py_ssize_t M, int code) noexcept nogil:
    # dZ = dU * g'(Z); dW = dZ^T X; db = sum_i dZ_i; dX = dZ W (skipped when dX is NULL).
    # dZ may alias dU; db may be NULL (a layer without bias); acc: M float64 of scratch for db.
    # Two phases of parts cut by the shapes alone, shared by fastnn's threads (the same bits
    # on any number of them): the batch's rows (dZ, dX: each part reads all of W, as the
    # forward's), then dW's units (each part reads all of X, as a training step's unit
    # parts) or, for a layer too narrow for two, dW's inputs.
    cdef Backward f
    cdef double work = <double>N * K * M
    cdef int threads = share(work)
    f.single, f.dU, f.X, f.W, f.U = floating is float, dU, X, W, U
    f.dZ, f.dX, f.dW, f.db, f.acc = dZ, dX, dW, db, acc
    f.N, f.K, f.M, f.code = N, K, M, code
    f.parts = row_parts(tune, work, N, <double>K * M) if dX != NULL else 1
    blocks_on(_backward_row_blocks, &f, f.parts, threads)
    f.parts = unit_parts(tune, work, M)
    f.by_units = f.parts > 1
    if not f.by_units:
        f.parts = parts_of(tune, work, K, tune.part_units)
        f.by_units = f.parts == 1  # one part: grad_dW's whole product (or its direct loops)
    blocks_on(_backward_weight_blocks, &f, f.parts, threads)


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


def linear_backward_fast(object dU, object X, object W, object U, object activation,
                         object need_dX):
    """The compiled fast path of ``functional.linear_backward``, as ``linear`` is of
    ``functional.linear``: ``linear_backward`` when the arguments are the common case (2-D
    C-contiguous float32/float64 arrays of one dtype and matching non-empty shapes, a known
    activation, ``need_dX`` a bool) and None otherwise (the caller validates in Python)."""
    cdef int typenum = _plain_layer(X, W)
    if typenum < 0 or type(need_dX) is not bool:
        return None
    if not (plain(dU, 2, typenum) and plain(U, 2, typenum)):
        return None
    cdef cnp.ndarray x = <cnp.ndarray>X, w = <cnp.ndarray>W, du = <cnp.ndarray>dU
    cdef cnp.ndarray u = <cnp.ndarray>U
    cdef Py_ssize_t N = x.shape[0], M = w.shape[0]
    if du.shape[0] != N or du.shape[1] != M or u.shape[0] != N or u.shape[1] != M:
        return None
    cdef int code = activation_code(activation)
    if code < 0:
        return None
    return linear_backward(du, x, w, u, code, need_dX)
