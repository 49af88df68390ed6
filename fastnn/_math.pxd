# The scalar and vector math every kernel module uses: the loops of _fastmath.h (vectorised,
# one build per instruction set) and inline fused-type wrappers over them. Inline only: each
# module that cimports this compiles its own copy, and there is no state.

from cython cimport floating
from libc.math cimport log1p, log1pf, tanh, tanhf, fabs, fabsf, sqrt, sqrtf

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
    void fnn_adam_l2_f(float* P, const float* G, float* M, float* V, float wd, float b1,
                       float b2, float lr_t, float eps, Py_ssize_t n)
    void fnn_adam_l2_d(double* P, const double* G, double* M, double* V, double wd, double b1,
                       double b2, double lr_t, double eps, Py_ssize_t n)
    void fnn_add_scaled_f(float* G, const float* P, float wd, Py_ssize_t n)
    void fnn_add_scaled_d(double* G, const double* P, double wd, Py_ssize_t n)
    void fnn_adam_decay_f(float* P, float* M, float* V, float wd, float b1, float b2,
                          float lr_t, float eps, Py_ssize_t n)
    void fnn_adam_decay_d(double* P, double* M, double* V, double wd, double b1, double b2,
                          double lr_t, double eps, Py_ssize_t n)
    void fnn_axpy_f(float* y, float a, const float* x, Py_ssize_t n)
    void fnn_axpy_d(double* y, double a, const double* x, Py_ssize_t n)
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
    double fnn_sum_squares_f(const float* x, Py_ssize_t n)
    double fnn_sum_squares_d(const double* x, Py_ssize_t n)
    bint fnn_all_finite_f(const float* x, Py_ssize_t n)
    bint fnn_all_finite_d(const double* x, Py_ssize_t n)
    bint fnn_all_finite_nonneg_f(const float* x, Py_ssize_t n)
    bint fnn_all_finite_nonneg_d(const double* x, Py_ssize_t n)
    void fnn_gemv_f(const float* W, const float* X, const float* b, float* Z, Py_ssize_t N,
                    Py_ssize_t M, Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t K)
    void fnn_gemv_d(const double* W, const double* X, const double* b, double* Z,
                    Py_ssize_t N, Py_ssize_t M, Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t K)


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


cdef inline double _sum(const floating* x, Py_ssize_t n) noexcept nogil:
    # sum in a fixed order with a float64 accumulator (eq. 16: L = sum_i g_loss)
    cdef double s = 0
    cdef Py_ssize_t i
    for i in range(n):
        s += x[i]
    return s


cdef inline void _axpy(floating* y, floating a, const floating* x, Py_ssize_t n) noexcept nogil:
    # y += a x
    if floating is float:
        fnn_axpy_f(y, a, x, n)
    else:
        fnn_axpy_d(y, a, x, n)


cdef inline void _add(floating* U, const floating* b, Py_ssize_t n) noexcept nogil:
    # U += b
    if floating is float:
        fnn_add_f(U, b, n)
    else:
        fnn_add_d(U, b, n)
