/* fastnn's threads: the one place fastnn starts threads and shares work among them.
 *
 * A pool of worker threads of fastnn's own runs a job on T threads: the calling thread is
 * thread 0 and workers 1..T-1 run the same function with their own number, fn(arg, tid, T).
 * A job splits its work into parts fixed by the shapes it works on, and thread tid takes
 * parts tid, tid + T, ... (or the tid-th contiguous range), so the result never depends on T.
 * Threads of one job may meet at a barrier (fnn_barrier_wait).
 *
 * - How many threads: fnn_pool_limit(), which fastnn.set_num_threads and threadpoolctl's
 *   threadpool_limits set (fastnn registers a controller for it, see fastnn/_threads.py); at
 *   import it is OMP_NUM_THREADS if set, else the processors this process may run on.
 * - Quiet after a call: a worker spins FNN_SPIN_SECONDS after its last job (so the jobs of
 *   one fit or of back-to-back calls find it awake), yielding its core after its first few
 *   microseconds of spinning, then sleeps on a condition variable until the next job.
 * - One job at a time: a job posted while another runs (another Python thread's, or a
 *   job's own nested call) runs on its caller alone, with the same result.
 * - A job whose threads share its work among themselves as they come (fnn_pool_run with
 *   revocable set: _parallel's blocks) does not wait for a worker that has not started it
 *   when the caller is done: the caller takes the job back from that worker's mailbox (a
 *   worker asleep, or whose core another process holds, would cost its wake-up or a
 *   scheduler slice, ~50 us to ms, for no work).
 * - Where a worker runs: before waking sleeping workers, and before a job for a worker that
 *   ran its last job (or has spun since) on the caller's processor, the caller lets them run
 *   on the processors it may run on, its own excepted (Linux). Linux often queues a woken
 *   thread on its waker's processor, where it would wait behind the caller for the whole job
 *   while another processor idles: measured on a 2-core VM, a 4096-row predict_proba after
 *   a pause took 8.3 ms (one thread's time) in 4 calls of 12 instead of 4.5 ms. And a caller
 *   that moves onto a spinning worker's processor (after a pause, or a fresh worker placed
 *   beside it) stayed there for tens of ms: batch-1 predict_proba calls took 9-10 us
 *   instead of 4.7. A spinning worker notes its processor at each yield, where Linux may
 *   have moved it.
 * - Workers are named "fastnn-worker" (top -H, /proc/PID/task/TID/comm).
 * - fork: the child of a fork has none of the parent's workers; a handler run in the child
 *   forgets them, and the child starts its own on its first parallel job.
 * - Signals stay with the process's other threads: workers block them all.
 *
 * POSIX threads, or Win32 threads on Windows.
 */
#ifndef FASTNN_THREADS_H
#define FASTNN_THREADS_H

#include <stdlib.h>

#include "_barrier.h"

#define FNN_MAX_THREADS 64
#define FNN_SPIN_SECONDS 1e-3

/* ---- the pool ---------------------------------------------------------------------- */

typedef void (*fnn_job)(void* arg, int tid, int T);

#if defined(_WIN32)
typedef SRWLOCK fnn_mutex;
typedef CONDITION_VARIABLE fnn_cond;
static void fnn_mutex_init(fnn_mutex* m) { InitializeSRWLock(m); }
static void fnn_mutex_lock(fnn_mutex* m) { AcquireSRWLockExclusive(m); }
static int fnn_mutex_trylock(fnn_mutex* m) { return TryAcquireSRWLockExclusive(m) ? 0 : 1; }
static void fnn_mutex_unlock(fnn_mutex* m) { ReleaseSRWLockExclusive(m); }
static void fnn_cond_init(fnn_cond* c) { InitializeConditionVariable(c); }
static void fnn_cond_wait(fnn_cond* c, fnn_mutex* m) { SleepConditionVariableSRW(c, m, INFINITE, 0); }
static void fnn_cond_broadcast(fnn_cond* c) { WakeAllConditionVariable(c); }
static double fnn_clock(void) {
    LARGE_INTEGER t, f;
    QueryPerformanceCounter(&t);
    QueryPerformanceFrequency(&f);
    return (double)t.QuadPart / (double)f.QuadPart;
}
#else
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* sched_getcpu, pthread_setaffinity_np */
#endif
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
typedef pthread_mutex_t fnn_mutex;
typedef pthread_cond_t fnn_cond;
static void fnn_mutex_init(fnn_mutex* m) { pthread_mutex_init(m, NULL); }
static void fnn_mutex_lock(fnn_mutex* m) { pthread_mutex_lock(m); }
static int fnn_mutex_trylock(fnn_mutex* m) { return pthread_mutex_trylock(m); }
static void fnn_mutex_unlock(fnn_mutex* m) { pthread_mutex_unlock(m); }
static void fnn_cond_init(fnn_cond* c) { pthread_cond_init(c, NULL); }
static void fnn_cond_wait(fnn_cond* c, fnn_mutex* m) { pthread_cond_wait(c, m); }
static void fnn_cond_broadcast(fnn_cond* c) { pthread_cond_broadcast(c); }
static double fnn_clock(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
#endif

typedef struct {               /* a worker's mailbox */
    volatile long posted;      /* jobs posted to it */
    volatile long state;       /* FNN_POSTED: a job waits for it; FNN_TAKEN: it runs it */
    fnn_job job;               /* its current job: written before posted, read after */
    void* arg;
    int T;
    volatile int cpu;          /* the processor it took its last job on, or spins on since
                                * (-1: not known) */
#if !defined(_WIN32)
    pthread_t thread;          /* the worker (set when it starts) */
#endif
} fnn_slot;

static struct {
    fnn_mutex busy;            /* held by the thread whose job the workers run */
    fnn_mutex sleep;           /* with wake: for the workers that stopped spinning */
    fnn_cond wake;
    volatile long finished;    /* workers done with the current job */
    volatile long sleepers;    /* workers asleep or about to sleep */
    fnn_slot slot[FNN_MAX_THREADS];  /* slot[w] for worker w (1..workers) */
    int workers;               /* workers started: threads 1..workers */
    int limit;                 /* threads a job may use */
    long forks;                /* forks this process came from (tests, diagnostics) */
    volatile int met;          /* (tests) the caller's processor at the latest job that found
                                * a worker there and moved it off; -1: none */
} fnn_pool;

enum { FNN_IDLE = 0, FNN_POSTED = 1, FNN_TAKEN = 2 };

static void fnn_pool_reset(void) {
    int w;
    fnn_mutex_init(&fnn_pool.busy);
    fnn_mutex_init(&fnn_pool.sleep);
    fnn_cond_init(&fnn_pool.wake);
    fnn_pool.finished = fnn_pool.sleepers = 0;
    for (w = 0; w < FNN_MAX_THREADS; w++) {
        fnn_pool.slot[w].posted = fnn_pool.slot[w].state = FNN_IDLE;
        fnn_pool.slot[w].cpu = -1;
    }
    fnn_pool.workers = 0;
    fnn_pool.met = -1;
}

#if !defined(_WIN32)
static void fnn_pool_after_fork(void) {  /* in the child: the workers stayed in the parent */
    fnn_pool_reset();
    fnn_pool.forks += 1;
}
#endif

/* Called once, when the extension loads. */
static void fnn_pool_init(int limit) {
    fnn_pool_reset();
    fnn_pool.limit = limit < 1 ? 1 : (limit > FNN_MAX_THREADS ? FNN_MAX_THREADS : limit);
#if !defined(_WIN32)
    pthread_atfork(NULL, NULL, fnn_pool_after_fork);
#endif
}

static int fnn_pool_limit(void) { return fnn_pool.limit; }

static void fnn_pool_set_limit(int limit) {
    fnn_pool.limit = limit < 1 ? 1 : (limit > FNN_MAX_THREADS ? FNN_MAX_THREADS : limit);
}

static int fnn_current_cpu(void) {  /* the processor this thread runs on, -1: not known */
#if defined(__linux__)
    return sched_getcpu();
#else
    return -1;
#endif
}

static void fnn_worker_loop(fnn_slot* slot) {
    long seen = 0;
    for (;;) {
        long spins = 0;
        double since = fnn_clock();
        while (FNN_LOAD(&slot->posted) == seen) {
            if (++spins < FNN_SPINS_BEFORE_YIELD) {
                FNN_PAUSE();
            } else {  /* Linux may move it at a yield: where it spins is where it is now */
                FNN_YIELD();
                slot->cpu = fnn_current_cpu();
            }
            if ((spins & 255) == 0 && fnn_clock() - since > FNN_SPIN_SECONDS) {
                fnn_mutex_lock(&fnn_pool.sleep);
                FNN_FETCH_INC(&fnn_pool.sleepers);
                while (FNN_LOAD(&slot->posted) == seen)
                    fnn_cond_wait(&fnn_pool.wake, &fnn_pool.sleep);
                FNN_FETCH_DEC(&fnn_pool.sleepers);
                fnn_mutex_unlock(&fnn_pool.sleep);
            }
        }
        seen = FNN_LOAD(&slot->posted);
        if (!FNN_CAS(&slot->state, FNN_POSTED, FNN_TAKEN))
            continue;  /* the caller took the job back: nothing was left for this thread */
        slot->cpu = fnn_current_cpu();
        slot->job(slot->arg, (int)(slot - fnn_pool.slot), slot->T);
        FNN_STORE(&slot->state, FNN_IDLE);
        FNN_FETCH_INC(&fnn_pool.finished);
    }
}

#if defined(_WIN32)
static DWORD WINAPI fnn_worker_main(LPVOID arg) {
    fnn_worker_loop((fnn_slot*)arg);
    return 0;
}

static int fnn_worker_spawn(fnn_slot* slot) {
    HANDLE h = CreateThread(NULL, 0, fnn_worker_main, slot, 0, NULL);
    if (h == NULL) return 1;
    CloseHandle(h);
    return 0;
}
#else
static void* fnn_worker_main(void* arg) {
    fnn_worker_loop((fnn_slot*)arg);
    return NULL;
}

static int fnn_worker_spawn(fnn_slot* slot) {
    pthread_t thread;
    pthread_attr_t attr;
    sigset_t all, old;
    int failed;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);  /* signals stay with the process's other threads (Python's) */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    failed = pthread_create(&thread, &attr, fnn_worker_main, slot);
    if (!failed) {
        slot->thread = thread;
#if defined(__linux__)
        pthread_setname_np(thread, "fastnn-worker");  /* as top -H and /proc show it */
#endif
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return failed;
}
#endif

/* threadpoolctl's handles on the limit (fastnn/threads.py registers them) */
#if defined(_WIN32)
#define FNN_EXPORT __declspec(dllexport)
#else
#define FNN_EXPORT __attribute__((visibility("default")))
#endif
FNN_EXPORT int fastnn_get_num_threads(void) { return fnn_pool_limit(); }
FNN_EXPORT void fastnn_set_num_threads(int n) { fnn_pool_set_limit(n); }

/* Before waking sleeping workers, or posting a job to a worker that took its last one on
 * the caller's processor: let workers 1..T-1 run on any processor the caller may run on but
 * the caller's own. A woken thread is otherwise often queued on its waker's processor
 * (Linux's wake-affine placement), and a caller may move onto a spinning worker's: there
 * the worker waits behind the caller for the whole job while the other processor idles,
 * and the job runs on one thread, at half speed. */
static void fnn_keep_off_caller(int T, int cpu) {  /* cpu: the caller's processor */
#if defined(__linux__)
    cpu_set_t mask;
    int w;
    if (cpu < 0 || cpu >= CPU_SETSIZE
            || pthread_getaffinity_np(pthread_self(), sizeof mask, &mask) != 0
            || !CPU_ISSET(cpu, &mask) || CPU_COUNT(&mask) < 2)
        return;
    CPU_CLR(cpu, &mask);
    for (w = 1; w < T; w++) {
        pthread_setaffinity_np(fnn_pool.slot[w].thread, sizeof mask, &mask);
        fnn_pool.slot[w].cpu = -1;  /* moved: where is known again at its next job or yield */
    }
#else
    (void)T;
    (void)cpu;
#endif
}

/* Run job(arg, tid, T) for tid = 0..T-1, thread 0 being the caller; returns the T it ran
 * with: min(T, the limit, the workers that could be started) when the pool is free, 1 (the
 * caller alone) when another job holds it. ``revocable``: the job's threads take its work
 * as they come, so that the caller's job(arg, 0, T) returns with all of it done once no
 * other thread is in it; the workers that have not started it by then never do. */
static int fnn_pool_run_shared(fnn_job job, void* arg, int T, int revocable) {
    long spins = 0, revoked = 0;
    int w, here, beside = 0;
    if (T > fnn_pool.limit) T = fnn_pool.limit;
    if (T <= 1 || fnn_mutex_trylock(&fnn_pool.busy) != 0) {
        job(arg, 0, 1);
        return 1;
    }
    for (w = fnn_pool.workers + 1; w < T; w++) {  /* start the workers this job lacks */
        fnn_pool.slot[w].posted = fnn_pool.slot[w].state = FNN_IDLE;
        fnn_pool.slot[w].cpu = -1;
        if (fnn_worker_spawn(&fnn_pool.slot[w]) != 0) { T = w; break; }
        fnn_pool.workers = w;
    }
    here = fnn_current_cpu();  /* a worker on this processor would wait behind the caller */
    for (w = 1; w < T && here >= 0; w++)
        beside |= fnn_pool.slot[w].cpu == here;
    if (beside) {
        fnn_pool.met = here;
        fnn_keep_off_caller(T, here);
    }
    FNN_STORE(&fnn_pool.finished, 0);
    for (w = 1; w < T; w++) {
        fnn_slot* slot = &fnn_pool.slot[w];
        slot->job = job;
        slot->arg = arg;
        slot->T = T;
        FNN_STORE(&slot->state, FNN_POSTED);
        FNN_STORE(&slot->posted, slot->posted + 1);
    }
    if (FNN_LOAD(&fnn_pool.sleepers) > 0) {
        if (!beside)
            fnn_keep_off_caller(T, here);
        fnn_mutex_lock(&fnn_pool.sleep);
        fnn_cond_broadcast(&fnn_pool.wake);
        fnn_mutex_unlock(&fnn_pool.sleep);
    }
    job(arg, 0, T);
    if (revocable)
        for (w = 1; w < T; w++)
            revoked += FNN_CAS(&fnn_pool.slot[w].state, FNN_POSTED, FNN_IDLE);
    while (FNN_LOAD(&fnn_pool.finished) < T - 1 - revoked) {
        if (++spins < FNN_SPINS_BEFORE_YIELD) FNN_PAUSE(); else FNN_YIELD();
    }
    fnn_mutex_unlock(&fnn_pool.busy);
    return T;
}

static int fnn_pool_run(fnn_job job, void* arg, int T) {
    return fnn_pool_run_shared(job, arg, T, 0);
}

#endif
