# fastnn's threads for the other kernel modules (the pool: _threads.h, this module only).

ctypedef void (*job_fn)(void* arg, int tid, int T) noexcept nogil
ctypedef void (*block_fn)(void* ctx, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil

# job(arg, tid, T) on up to T threads, the caller being thread 0; returns the T it ran with
cdef int run(job_fn job, void* arg, int T) noexcept nogil
# fn(ctx, i0, i1) over blocks i0..i1 of n independent blocks, shared by the threads
cdef void blocks(block_fn fn, void* ctx, Py_ssize_t n) noexcept nogil
# blocks with at most T threads
cdef void blocks_on(block_fn fn, void* ctx, Py_ssize_t n, int T) noexcept nogil
# workers started and not asleep (still spinning after a recent job); all, before the first
# and when a call found them all asleep less than FNN_SPIN_SECONDS ago (a stream of calls)
cdef int awake() noexcept nogil
# the threads fastnn's parallel work may use
cdef int limit() noexcept nogil
# a monotonic clock, seconds
cdef double clock() noexcept nogil
# (tests) the caller's processor at the latest job that found a worker that ran its last job
# or spins there and moved it off (-1: none); ``reset`` forgets it
cdef int met_caller(bint reset) noexcept nogil
