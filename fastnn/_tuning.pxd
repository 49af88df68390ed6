# fastnn's tuning thresholds, in one place (values and what each trades: _tuning.pyx).

cdef struct Tuning:
    Py_ssize_t small_gemm
    Py_ssize_t own_gemm
    Py_ssize_t own_nt_rows
    Py_ssize_t own_nt_units
    Py_ssize_t blas_small
    bint own_small
    Py_ssize_t own_panels
    Py_ssize_t unit_rows
    Py_ssize_t parallel_elements
    Py_ssize_t split_gemv
    Py_ssize_t part_work
    Py_ssize_t wake_work
    Py_ssize_t part_rows
    Py_ssize_t part_units
    Py_ssize_t many_part_units
    Py_ssize_t part_read_rows
    Py_ssize_t max_parts
    Py_ssize_t team_epoch
    Py_ssize_t probe_steps
    Py_ssize_t hold_steps
    Py_ssize_t max_hold_steps
    double probe_share
    double off_core
    Py_ssize_t mirror_weights
    Py_ssize_t mirror_steps
    Py_ssize_t signal_batches
    double signal_work
    double sparse_transpose

cdef Tuning* tuned() noexcept nogil


cdef inline int parts_of(const Tuning* t, double work, Py_ssize_t count,
                         Py_ssize_t least) noexcept nogil:
    # how many parts a piece of work is cut into, by the shapes alone (never by the number
    # of threads, so the same seed gives the same bits on any machine): the largest power of
    # two p <= max_parts that leaves each part at least ``least`` of the ``count`` rows (or
    # units) and part_work of the ``work`` multiply-adds
    cdef int p = 1
    while (2 * p <= t.max_parts and count >= 2 * p * least
           and work >= 2 * p * t.part_work):
        p *= 2
    return p


cdef inline int parts(const Tuning* t, double work, Py_ssize_t count) noexcept nogil:
    # parts_of with part_rows rows (or units) a part at least
    return parts_of(t, work, count, t.part_rows)


cdef inline int row_parts(const Tuning* t, double work, Py_ssize_t rows,
                          double widest) noexcept nogil:
    # parts() of a batch's rows through layers whose largest has ``widest`` weights: each
    # part reads (BLAS: packs) every W again, so beyond two parts, a part whose largest
    # product is above blas_small gets at least part_read_rows rows
    cdef int p = parts(t, work, rows)
    while p > 2 and rows // p * widest > t.blas_small and rows // p < t.part_read_rows:
        p //= 2
    return p


cdef inline int unit_parts(const Tuning* t, double work, Py_ssize_t units) noexcept nogil:
    # the parts of hidden units of a one-hidden-layer network's training step of ``work``
    # multiply-adds in its first layer (_train.pyx: _units_steps): at least part_units units
    # a part, and many_part_units a part beyond two parts
    cdef int p = parts_of(t, work, units, t.part_units)
    while p > 2 and units < p * t.many_part_units:
        p //= 2
    return p
