/* fastnn's spin-wait primitives and the barrier for the threads of one job (stateless:
 * any module may include it; the pool itself is _threads.h, in fastnn._parallel only).
 */
#ifndef FASTNN_BARRIER_H
#define FASTNN_BARRIER_H

#include <stdlib.h>

#define FNN_SPINS_BEFORE_YIELD 64  /* ~2 us of PAUSE, then yield at each look */

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#include <windows.h>
#define FNN_FETCH_INC(p) (_InterlockedIncrement(p))
#define FNN_FETCH_DEC(p) (_InterlockedDecrement(p))
#define FNN_FETCH_ADD(p, v) (_InterlockedExchangeAdd64((volatile long long*)(p), (v)))
#define FNN_CAS(p, from, to) (_InterlockedCompareExchange((p), (to), (from)) == (from))
#define FNN_LOAD(p) (_ReadWriteBarrier(), *(p))
#define FNN_STORE(p, v) do { _ReadWriteBarrier(); *(p) = (v); _ReadWriteBarrier(); } while (0)
#define FNN_PAUSE() YieldProcessor()
#define FNN_YIELD() SwitchToThread()
#define FNN_TRY_LOCK(p) (_InterlockedExchange((p), 1) == 0)
#define FNN_UNLOCK(p) (_InterlockedExchange((p), 0))
#else
#include <sched.h>
#define FNN_FETCH_INC(p) (__atomic_add_fetch((p), 1, __ATOMIC_SEQ_CST))
#define FNN_FETCH_DEC(p) (__atomic_sub_fetch((p), 1, __ATOMIC_SEQ_CST))
#define FNN_FETCH_ADD(p, v) (__atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST))  /* the old value */
#define FNN_CAS(p, from, to) \
    ({ long fnn_expected_ = (from); \
       __atomic_compare_exchange_n((p), &fnn_expected_, (to), 0, __ATOMIC_SEQ_CST, \
                                   __ATOMIC_SEQ_CST); })
#define FNN_LOAD(p) (__atomic_load_n((p), __ATOMIC_SEQ_CST))
#define FNN_STORE(p, v) (__atomic_store_n((p), (v), __ATOMIC_SEQ_CST))
#define FNN_TRY_LOCK(p) (__atomic_exchange_n((p), 1, __ATOMIC_ACQUIRE) == 0)
#define FNN_UNLOCK(p) (__atomic_store_n((p), 0, __ATOMIC_RELEASE))
#if defined(__x86_64__) || defined(__i386__)
#define FNN_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define FNN_PAUSE() __asm__ __volatile__("yield")
#else
#define FNN_PAUSE() ((void)0)
#endif
#define FNN_YIELD() sched_yield()
#endif

/* ---- a barrier for the threads of one job ------------------------------------------- */

typedef struct {
    volatile long count;  /* threads arrived in this round */
    volatile long sense;  /* flips when the last one arrives */
} fnn_barrier;

static inline void fnn_barrier_init(fnn_barrier* b) {
    b->count = 0;
    b->sense = 0;
}

/* A spin lock for short critical sections (a few loads and stores). */
static inline void fnn_lock(volatile long* lock) {
    long spins = 0;
    while (!FNN_TRY_LOCK(lock)) {
        if (++spins < FNN_SPINS_BEFORE_YIELD) FNN_PAUSE(); else FNN_YIELD();
    }
}

static inline void fnn_unlock(volatile long* lock) { FNN_UNLOCK(lock); }

/* Wait until all n threads of the job have called this; *sense is the caller's own flag,
 * 0 before its first call. Everything written before the call is visible to every thread
 * after it. It spins (a step's phase lasts microseconds), yielding the core after a while so
 * that a thread descheduled on a busy machine is not starved by its partner. */
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
