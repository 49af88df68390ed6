# The output maps and loss kernels (_losses.pyx) for the other kernel modules. Pointers to
# C-contiguous arrays of one float dtype; nothing here validates.

from cython cimport floating

# p = softmax(z) (eq. 5) over K entries, or its log
cdef void softmax_row(const floating* z, floating* p, Py_ssize_t K, bint take_log) noexcept nogil
# P = softmax of each row of Z (N, K) (or its log)
cdef void softmax_rows(const floating* Z, floating* P, Py_ssize_t N, Py_ssize_t K,
                       bint take_log) noexcept nogil
# eq. 18 on n rows of K logits, labels y[rows[i]] (or y[i]); losses, and with dZ the gradient
# times (sw[rows[i]] or c) / div
cdef void cross_entropy_rows(const floating* Z, const Py_ssize_t* y, const Py_ssize_t* rows,
                             const double* sw, double c, double div, floating* losses,
                             floating* dZ, Py_ssize_t n, Py_ssize_t K) noexcept nogil
# eq. 17 on N logits: losses, and with dz the gradient times scale; returns the float64 sum
cdef double binary_cross_entropy_(const floating* z, const floating* y, floating* losses,
                                  floating* dz, Py_ssize_t N, floating scale) noexcept nogil
# eq. 20 on N rows of d outputs: per-row losses, and with dZ the gradient times scale
cdef double squared_error_(const floating* Z, const floating* Y, floating* losses,
                           floating* dZ, Py_ssize_t N, Py_ssize_t d,
                           floating scale) noexcept nogil
# half the Poisson deviance (log link) on N rows of d logits: per-row losses, and with dZ the
# gradient e^z - y times scale; returns the float64 sum
cdef double poisson_(const floating* Z, const floating* Y, floating* losses, floating* dZ,
                     Py_ssize_t N, Py_ssize_t d, floating scale) noexcept nogil
