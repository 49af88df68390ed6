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

#endif
