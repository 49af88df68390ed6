# cython: language_level=3
"""fastnn's threads: the pool of _threads.h, one per process (fastnn/threads.py states the
policy). The other kernel modules run their parallel work through ``run`` and ``blocks``;
this module also exports the C functions threadpoolctl calls (fastnn_get_num_threads,
fastnn_set_num_threads, in _threads.h)."""

import os

cdef extern from "_threads.h" nogil:
    ctypedef void (*fnn_job)(void* arg, int tid, int T) noexcept nogil
    int FNN_MAX_THREADS
    enum: FNN_MAX_THREADS_ "FNN_MAX_THREADS"
    double FNN_SPIN_SECONDS
    void fnn_pool_init(int limit)
    int fnn_pool_limit()
    void fnn_pool_set_limit(int limit)
    int fnn_pool_run(fnn_job job, void* arg, int T)
    int fnn_pool_run_shared(fnn_job job, void* arg, int T, int revocable)
    double fnn_clock()
    struct fnn_pool_state "fnn_pool":
        int workers
        long forks
        long sleepers
        int met
    fnn_pool_state fnn_pool


cdef int run(job_fn job, void* arg, int T) noexcept nogil:
    return fnn_pool_run(<fnn_job>job, arg, T)


cdef extern from "_barrier.h" nogil:
    Py_ssize_t FNN_FETCH_ADD(Py_ssize_t* p, Py_ssize_t v)


cdef struct BlocksJob:
    block_fn fn
    void* ctx
    Py_ssize_t n
    int ranges  # the n blocks cut into this many contiguous ranges, one a thread
    Py_ssize_t next[FNN_MAX_THREADS_]  # range r's next block, claimed atomically


cdef void _blocks_job(void* arg, int tid, int T) noexcept nogil:
    # thread tid takes the blocks of range tid in order (its part of the data stays in its
    # core's cache from call to call), then any block another range has not started: a
    # thread that is late (asleep, or its core busy) never makes the others wait for its
    # share. Each block is computed the same whichever thread takes it.
    cdef BlocksJob* job = <BlocksJob*>arg
    cdef int k, r
    cdef Py_ssize_t i, end
    for k in range(job.ranges):
        r = (tid + k) % job.ranges
        end = (r + 1) * job.n // job.ranges
        i = FNN_FETCH_ADD(&job.next[r], 1)
        while i < end:
            job.fn(job.ctx, i, i + 1)
            i = FNN_FETCH_ADD(&job.next[r], 1)


cdef void blocks(block_fn fn, void* ctx, Py_ssize_t n) noexcept nogil:
    blocks_on(fn, ctx, n, FNN_MAX_THREADS)


cdef void blocks_on(block_fn fn, void* ctx, Py_ssize_t n, int T) noexcept nogil:
    cdef BlocksJob job
    cdef int r
    T = <int>min(n, T, fnn_pool_limit())
    if T <= 1:
        fn(ctx, 0, n)
        return
    job.fn, job.ctx, job.n, job.ranges = fn, ctx, n, T
    for r in range(T):
        job.next[r] = r * n // T
    # (a worker that comes late finds no block left: the caller does not wait for it)
    fnn_pool_run_shared(_blocks_job, &job, T, 1)


cdef double passed_over = -1.0  # when a call last found every worker asleep


cdef int awake() noexcept nogil:
    # a pool not started yet counts as awake: starting it costs once per process, and its
    # workers then spin after each job like any others. When all workers sleep, the first
    # call runs alone; a second within FNN_SPIN_SECONDS counts them awake (calls come in a
    # stream: waking them once pays, as they then spin between the calls). Only who helps
    # depends on this, never a result.
    global passed_over
    cdef double now
    if fnn_pool.workers == 0:
        return fnn_pool_limit() - 1
    if fnn_pool.sleepers < fnn_pool.workers:
        return fnn_pool.workers - <int>fnn_pool.sleepers
    now = fnn_clock()
    if now - passed_over < FNN_SPIN_SECONDS:
        return fnn_pool.workers
    passed_over = now
    return 0


cdef int limit() noexcept nogil:
    return fnn_pool_limit()


cdef double clock() noexcept nogil:
    return fnn_clock()


cdef int met_caller(bint reset) noexcept nogil:
    cdef int cpu = fnn_pool.met
    if reset:
        fnn_pool.met = -1
    return cpu


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
    """Let fastnn's parallel work use at most n threads (1..64; the caller checks n)."""
    fnn_pool_set_limit(n)


def pool_info():
    """(Tests, diagnostics) {"workers": threads started in this process, "sleepers": those
    asleep now, "forks": forks this process descends from since fastnn loaded,
    "spin_seconds": how long an idle worker spins before it sleeps}."""
    return {"workers": fnn_pool.workers, "sleepers": fnn_pool.sleepers,
            "forks": fnn_pool.forks, "spin_seconds": FNN_SPIN_SECONDS}
