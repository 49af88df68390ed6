# fastnn's tuning thresholds, in one place (values and what each trades: _tuning.pyx).

cdef struct Tuning:
    Py_ssize_t small_gemm
    Py_ssize_t own_gemm
    Py_ssize_t blas_small
    bint own_small
    Py_ssize_t parallel_elements
    Py_ssize_t split_gemv
    Py_ssize_t part_work
    Py_ssize_t part_rows
    Py_ssize_t max_parts
    Py_ssize_t team_epoch
    Py_ssize_t probe_steps
    Py_ssize_t hold_steps
    Py_ssize_t max_hold_steps
    Py_ssize_t mirror_weights
    Py_ssize_t mirror_steps
    Py_ssize_t signal_batches
    double signal_work

cdef Tuning* tuned() noexcept nogil
