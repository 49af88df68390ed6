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
    int fnn_sgemm_nt(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* A, Py_ssize_t lda,
                     const float* B, Py_ssize_t ldb, float* C, Py_ssize_t ldc)
    int fnn_sgemm_level()
    int fnn_sgemm_use(int level)

cdef extern from "_barrier.h" nogil:
    void fnn_lock(long* lock)
    void fnn_unlock(long* lock)

cdef Tuning* tune = tuned()

if fnn_sgemm_level() == 1:  # fastnn's product runs its AVX2 kernels: their own values
    from fastnn._tuning import AVX2, _set
    for _name, _value in AVX2.items():
        _set(_name, _value)


# ---------------------------------------------------------------------------------------
# BLAS on one thread while fastnn calls it
# ---------------------------------------------------------------------------------------
# fastnn's parallel work runs on its own threads, each calling BLAS for its part; BLAS's own
# threads would then oversubscribe the cores, and OpenBLAS's split of a product among its
# threads changes the product's rounding for some shapes (so the bits would depend on its
# thread count). So while fastnn calls BLAS, every BLAS library loaded runs on one thread:
# the first call in (any thread) sets it, the last out restores the counts it found. Nothing
# outlives the calls. The libraries' get/set functions are found once, through threadpoolctl
# (fastnn/threads.py); a library it cannot drive is left alone.
# A thread that already holds BLAS (a training stretch holds it once around its steps) takes
# its products without touching the shared lock and count: their cache line, bounced between
# the cores of a team at every product, made a digits fit's team step (64-128-10, 32 rows)
# 9 us instead of 5 where the two cores are far apart (a round trip of 330 ns).

cdef extern from *:
    """
    #if defined(_MSC_VER)
    static __declspec(thread) int fnn_blas_depth = 0;
    #else
    static __thread int fnn_blas_depth = 0;
    #endif
    """
    int fnn_blas_depth  # this thread's holds not yet released

ctypedef int (*get_threads_fn)() noexcept nogil
ctypedef void (*set_threads_fn)(int) noexcept nogil

cdef enum:
    MAX_BLAS = 8

cdef int n_blas = 0
cdef get_threads_fn blas_get[MAX_BLAS]
cdef set_threads_fn blas_set[MAX_BLAS]
cdef int blas_saved[MAX_BLAS]
cdef long blas_users = 0
cdef long blas_lock = 0


cdef void hold_blas() noexcept nogil:
    global blas_users, fnn_blas_depth
    cdef int i
    fnn_blas_depth += 1
    if fnn_blas_depth > 1:
        return
    fnn_lock(&blas_lock)
    if blas_users == 0:
        for i in range(n_blas):
            blas_saved[i] = blas_get[i]()
            if blas_saved[i] != 1:
                blas_set[i](1)
    blas_users += 1
    fnn_unlock(&blas_lock)


cdef void release_blas() noexcept nogil:
    global blas_users, fnn_blas_depth
    cdef int i
    fnn_blas_depth -= 1
    if fnn_blas_depth > 0:
        return
    fnn_lock(&blas_lock)
    blas_users -= 1
    if blas_users == 0:
        for i in range(n_blas):
            if blas_saved[i] > 1:
                blas_set[i](blas_saved[i])
    fnn_unlock(&blas_lock)


def hold():
    """BLAS on one thread until the matching ``release()`` (fastnn.threads.one_blas_thread)."""
    hold_blas()


def release():
    """Undo one ``hold()``."""
    release_blas()


def drive_blas_threads(list functions):
    """Hand over the (get, set) thread-count functions of the BLAS libraries loaded, as C
    function addresses (int get(void), void set(int)); fastnn/threads.py calls it once."""
    global n_blas
    cdef size_t get_at, set_at
    fnn_lock(&blas_lock)
    try:
        if blas_users:
            raise RuntimeError("BLAS is held")
        n_blas = 0
        for get_at, set_at in functions[:MAX_BLAS]:
            blas_get[n_blas] = <get_threads_fn>get_at
            blas_set[n_blas] = <set_threads_fn>set_at
            n_blas += 1
    finally:
        fnn_unlock(&blas_lock)


cdef void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               floating alpha, const floating* A, Py_ssize_t lda, const floating* B,
               Py_ssize_t ldb, floating beta, floating* C, Py_ssize_t ldc) noexcept nogil:
    # row-major C = alpha op(A) op(B) + beta C is column-major C^T = alpha op(B)^T op(A)^T +
    # beta C^T: BLAS's (transb, transa, n, m, k, alpha, B, ldb, A, lda, beta, C, ldc)
    cdef char ta = b"t" if trans_a else b"n", tb = b"t" if trans_b else b"n"
    cdef int m_ = <int>m, n_ = <int>n, k_ = <int>k, lda_ = <int>lda, ldb_ = <int>ldb
    cdef int ldc_ = <int>ldc
    hold_blas()
    if floating is float:
        sgemm(&tb, &ta, &n_, &m_, &k_, &alpha, <float*>B, &ldb_, <float*>A, &lda_, &beta, C,
              &ldc_)
    else:
        dgemm(&tb, &ta, &n_, &m_, &k_, &alpha, <double*>B, &ldb_, <double*>A, &lda_, &beta, C,
              &ldc_)
    release_blas()


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


cdef void product_nt(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* A,
                     Py_ssize_t lda, const floating* B, Py_ssize_t ldb, floating* C,
                     Py_ssize_t ldc) noexcept nogil:
    if floating is float:
        # (BLAS's small-matrix kernels refuse a transposed B: no small products for them)
        if (m * n * k <= tune.own_gemm and (m <= tune.own_nt_rows or n <= tune.own_nt_units)
                and fnn_sgemm_nt(m, n, k, A, lda, B, ldb, C, ldc)):
            return
    gemm(False, True, m, n, k, 1, A, lda, B, ldb, 0, C, ldc)


cdef int own_sgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha, const float* A,
                   Py_ssize_t sai, Py_ssize_t sap, const float* B, Py_ssize_t ldb, float beta,
                   float* C, Py_ssize_t ldc, float* P, Py_ssize_t ldp) noexcept nogil:
    return fnn_sgemm(m, n, k, alpha, A, sai, sap, B, ldb, beta, C, ldc, P, ldp)


cdef int use_gemm_path(int level) noexcept nogil:
    return fnn_sgemm_use(level)


def panel_units():
    """The units a panel of a frozen layer's packed weights holds (Linear.freeze)."""
    return PANEL


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
