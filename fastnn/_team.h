/* A barrier for the threads of one OpenMP team in fastnn's training loop.
 *
 * One training step is two phases a few microseconds long (the batch's rows, then the
 * layers' units), with a barrier after each. OpenMP's own barrier sleeps in the kernel under
 * fastnn's default OMP_WAIT_POLICY=PASSIVE, and waking a thread costs tens of microseconds,
 * more than a small step. This one spins on a shared flag (a sense-reversing barrier), and
 * after some tens of microseconds of spinning yields the core at each check, so a thread that was
 * descheduled on a busy machine is not starved by its partner.
 */
#ifndef FASTNN_TEAM_H
#define FASTNN_TEAM_H

typedef struct {
    volatile long count;  /* threads arrived in this round */
    volatile long sense;  /* flips when the last one arrives */
} fnn_barrier;

#define FNN_SPINS_BEFORE_YIELD (1L << 12)

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#include <windows.h>
#define FNN_FETCH_INC(p) (_InterlockedIncrement(p))
#define FNN_LOAD(p) (_ReadWriteBarrier(), *(p))
#define FNN_STORE(p, v) do { _ReadWriteBarrier(); *(p) = (v); _ReadWriteBarrier(); } while (0)
#define FNN_PAUSE() YieldProcessor()
#define FNN_YIELD() SwitchToThread()
#else
#include <sched.h>
#define FNN_FETCH_INC(p) (__atomic_add_fetch((p), 1, __ATOMIC_ACQ_REL))
#define FNN_LOAD(p) (__atomic_load_n((p), __ATOMIC_ACQUIRE))
#define FNN_STORE(p, v) (__atomic_store_n((p), (v), __ATOMIC_RELEASE))
#if defined(__x86_64__) || defined(__i386__)
#define FNN_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define FNN_PAUSE() __asm__ __volatile__("yield")
#else
#define FNN_PAUSE() ((void)0)
#endif
#define FNN_YIELD() sched_yield()
#endif

static inline void fnn_barrier_init(fnn_barrier* b) {
    b->count = 0;
    b->sense = 0;
}

/* Wait until all n threads of the team have called this; *sense is the caller's own flag,
 * 0 before its first call. Everything written before the call is visible to every thread
 * after it. */
static inline void fnn_barrier_wait(fnn_barrier* b, int n, long* sense) {
    long s = !*sense, spins = 0;
    *sense = s;
    if (n <= 1) return;
    if (FNN_FETCH_INC(&b->count) == n) {
        b->count = 0;          /* nobody touches it until the flip below releases them */
        FNN_STORE(&b->sense, s);
    } else {
        while (FNN_LOAD(&b->sense) != s) {
            if (++spins < FNN_SPINS_BEFORE_YIELD) FNN_PAUSE(); else FNN_YIELD();
        }
    }
}

/* A partner: a thread of fastnn's own that runs its part of the jobs the calling thread posts,
 * for the lbfgs objective (Trainer.loss_grad). scipy's L-BFGS-B calls it every ~0.4 ms and
 * runs its own step on the calling thread in between: an OpenMP worker sleeps through that
 * gap under fastnn's OMP_WAIT_POLICY=PASSIVE, and waking it and its core took ~40 us of a
 * ~200 us call (digits, 64-128-10). A partner spins for FNN_PARTNER_SPIN seconds after each
 * job (yielding its core after the first tens of microseconds, as fnn_barrier_wait), then
 * sleeps on a condition variable until the next; the Trainer that started it stops it. POSIX threads only: elsewhere fnn_partner_start fails and the caller uses OpenMP. */
#define FNN_PARTNER_SPIN 2e-3

typedef void (*fnn_job)(void* arg, int tid);

#if !defined(_WIN32)
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    long posted;      /* jobs posted (atomic; written under lock) */
    long finished;    /* jobs finished (atomic) */
    long quit;        /* (atomic; written under lock) */
    fnn_job job;      /* the posted job: written before posted, read after */
    void* arg;
    int tid;          /* the part of each job this thread runs */
    pid_t pid;        /* the process that started it: a fork's copy has no thread */
} fnn_partner;

static double fnn_partner_clock(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void* fnn_partner_main(void* arg) {
    fnn_partner* p = (fnn_partner*)arg;
    long seen = 0, now;
    for (;;) {
        double since = fnn_partner_clock();
        long spins = 0;
        while ((now = FNN_LOAD(&p->posted)) == seen && !FNN_LOAD(&p->quit)) {
            /* after the first tens of microseconds, spin yielding the core: other work on
             * it (another process's) runs before this thread looks again */
            if (++spins < FNN_SPINS_BEFORE_YIELD) FNN_PAUSE(); else FNN_YIELD();
            if ((spins & 255) == 0 && fnn_partner_clock() - since > FNN_PARTNER_SPIN) {
                pthread_mutex_lock(&p->lock);
                while (p->posted == seen && !p->quit)
                    pthread_cond_wait(&p->wake, &p->lock);
                pthread_mutex_unlock(&p->lock);
            }
        }
        if (now == seen)
            return NULL;  /* quit, with no job pending */
        seen = now;
        p->job(p->arg, p->tid);
        FNN_STORE(&p->finished, seen);
    }
}

/* A partner running part ``tid`` of every job, or NULL if no thread could be started. */
static fnn_partner* fnn_partner_start(int tid) {
    fnn_partner* p = (fnn_partner*)calloc(1, sizeof(fnn_partner));
    sigset_t all, old;
    if (p == NULL)
        return NULL;
    p->tid = tid;
    p->pid = getpid();
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    sigfillset(&all);  /* signals stay with the process's other threads (Python's) */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int failed = pthread_create(&p->thread, NULL, fnn_partner_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (failed) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    return p;
}

/* Whether p's thread runs in this process (not in a fork's copy of it). */
static int fnn_partner_alive(const fnn_partner* p) {
    return p != NULL && p->pid == getpid();
}

static void fnn_partner_post(fnn_partner* p, fnn_job job, void* arg) {
    p->job = job;
    p->arg = arg;
    pthread_mutex_lock(&p->lock);
    FNN_STORE(&p->posted, p->posted + 1);
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

/* Until p has finished the job last posted. */
static void fnn_partner_wait(fnn_partner* p) {
    long spins = 0;
    while (FNN_LOAD(&p->finished) != FNN_LOAD(&p->posted))
        if (++spins < FNN_SPINS_BEFORE_YIELD) FNN_PAUSE(); else FNN_YIELD();
}

/* Stop p's thread (after the job last posted) and free p; in a fork's copy only free it. */
static void fnn_partner_stop(fnn_partner* p) {
    if (p == NULL)
        return;
    if (fnn_partner_alive(p)) {
        pthread_mutex_lock(&p->lock);
        FNN_STORE(&p->quit, 1);
        pthread_cond_signal(&p->wake);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
    }
    free(p);
}
#else
typedef struct { int unused; } fnn_partner;
static fnn_partner* fnn_partner_start(int tid) { (void)tid; return NULL; }
static int fnn_partner_alive(const fnn_partner* p) { (void)p; return 0; }
static void fnn_partner_post(fnn_partner* p, fnn_job job, void* arg) {
    (void)p; (void)job; (void)arg;
}
static void fnn_partner_wait(fnn_partner* p) { (void)p; }
static void fnn_partner_stop(fnn_partner* p) { (void)p; }
#endif

#endif
