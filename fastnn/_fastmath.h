/* Vectorisable exp, and the elementwise loops built on it, for fastnn's kernels.
 *
 * libm's exp/expf are calls the compiler cannot vectorise (without -ffast-math, which breaks
 * NaN/inf handling). These are the Cephes algorithms written branch-free, so loops calling
 * them vectorise: exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 in two parts,
 * Cody-Waite), exp(r) by a polynomial (float) or a Pade form (double), 2^n built from its bits
 * in two halves so that results down to the subnormal range come out right.
 * Accuracy: within 2 ulp of the correctly rounded exp for normal results; exp(+inf) = inf,
 * exp(-inf) = 0, exp(NaN) = NaN, overflow gives inf and underflow 0, as libm does.
 */
#ifndef FASTNN_FASTMATH_H
#define FASTNN_FASTMATH_H

#include <stdint.h>
#include <string.h>
#include <math.h>
#include <stddef.h>

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict  /* MSVC's C spells it this way */
#endif

static inline float fnn_pow2i_f(int32_t n) {
    /* 2^n for -126 <= n <= 127, from the exponent bits */
    uint32_t bits = (uint32_t)(n + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline double fnn_pow2i_d(int64_t n) {
    /* 2^n for -1022 <= n <= 1023 */
    uint64_t bits = (uint64_t)(n + 1023) << 52;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static inline float fnn_expf(float x) {
    const float hi = 88.72283935546875f;   /* exp overflows above */
    const float lo = -103.972084045410f;   /* exp underflows to 0 below */
    float c = x > hi ? hi : (x < lo ? lo : x);   /* NaN -> lo here; restored below */
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick (exact for |x / ln 2| < 2^22) */
    float fn = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = c - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    int32_t n = (int32_t)fn;
    int32_t n1 = n >> 1;
    float y = p * fnn_pow2i_f(n1) * fnn_pow2i_f(n - n1);
    y = x > hi ? INFINITY : y;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

static inline double fnn_exp(double x) {
    const double hi = 709.782712893383973096;   /* exp overflows above */
    const double lo = -745.133219101941108420;  /* exp underflows to 0 below */
    double c = x > hi ? hi : (x < lo ? lo : x);
    /* n = round(x / ln 2) by the 1.5 * 2^52 trick */
    double fn = (c * 1.4426950408889634073599 + 6755399441055744.0) - 6755399441055744.0;
    double r = c - fn * 6.93145751953125e-1;
    r = r - fn * 1.42860682030941723212e-6;
    double rr = r * r;
    double P = ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr
                + 9.99999999999999999910e-1) * r;
    double Q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
                + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
    double e = 1.0 + 2.0 * (P / (Q - P));
    int64_t n = (int64_t)fn;
    int64_t n1 = n >> 1;
    double y = e * fnn_pow2i_d(n1) * fnn_pow2i_d(n - n1);
    y = x > hi ? (double)INFINITY : y;
    y = x < lo ? 0.0 : y;
    return x != x ? x : y;
}

/* The loops below are compiled once per instruction set (AVX-512, AVX2, the baseline) and
 * the CPU picks one at load time (GCC's target_clones on x86-64 Linux); elsewhere they are
 * compiled for the baseline only. Results are the same on every path: no FMA contraction
 * (-ffp-contract=off) and sums in a fixed order of 8 float64 lanes. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(FNN_NO_CLONES)  /* (tests build single instruction sets with it) */
#define FNN_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), unused))
#elif defined(__GNUC__) || defined(__clang__)
#define FNN_CLONES __attribute__((unused))  /* each kernel module uses some of the loops */
#else
#define FNN_CLONES
#endif

/* the 8 float64 lanes of a sum, added in a fixed order */
static inline double fnn_lanes8(const double* lane) {
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
           ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

#define FNN_ELEMENTWISE(T, S, EXP)                                                          \
/* x = exp(x) in place */                                                                   \
FNN_CLONES static void fnn_exp_inplace_##S(T* restrict x, ptrdiff_t n) {                    \
    for (ptrdiff_t i = 0; i < n; i++) x[i] = EXP(x[i]);                                     \
}                                                                                           \
/* x = 1 / (1 + e^-x) in place (eq. 3), through e = e^-|x| so nothing overflows */          \
FNN_CLONES static void fnn_sigmoid_inplace_##S(T* restrict x, ptrdiff_t n) {                \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        T z = x[i];                                                                         \
        T e = EXP(z < 0 ? z : -z);                                                          \
        T s = (T)1 / ((T)1 + e);                                                            \
        x[i] = z >= 0 ? s : e * s;                                                          \
    }                                                                                       \
}                                                                                           \
/* max_k z_k (the softmax shift), in 8 lanes; n >= 1 */                                     \
static inline T fnn_max8_##S(const T* restrict z, ptrdiff_t n) {                            \
    T lane[8];                                                                              \
    for (int k = 0; k < 8; k++) lane[k] = z[0];                                             \
    ptrdiff_t i = 0;                                                                        \
    for (; i + 8 <= n; i += 8)                                                              \
        for (int k = 0; k < 8; k++) lane[k] = z[i + k] > lane[k] ? z[i + k] : lane[k];      \
    for (int k = 0; i < n; i++, k++) lane[k] = z[i] > lane[k] ? z[i] : lane[k];             \
    T m = lane[0];                                                                          \
    for (int k = 1; k < 8; k++) m = lane[k] > m ? lane[k] : m;                              \
    return m;                                                                               \
}                                                                                           \
/* sum_k x_k in float64, x_k in lane k % 8, the lanes added in a fixed order */             \
static inline double fnn_sum8_##S(const T* restrict x, ptrdiff_t n) {                       \
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                              \
    ptrdiff_t i = 0;                                                                        \
    for (; i + 8 <= n; i += 8)                                                              \
        for (int k = 0; k < 8; k++) lane[k] += x[i + k];                                    \
    for (int k = 0; i < n; i++, k++) lane[k] += x[i];                                       \
    return fnn_lanes8(lane);                                                                \
}                                                                                           \
/* out = exp(z - m); returns sum(out) (the softmax denominator over e^{z - m}, eq. 5) */     \
FNN_CLONES static double fnn_exp_shift_sum_##S(const T* restrict z, T m, T* restrict out,   \
                                              ptrdiff_t n) {                                \
    for (ptrdiff_t i = 0; i < n; i++) out[i] = EXP(z[i] - m);                               \
    return fnn_sum8_##S(out, n);                                                            \
}                                                                                           \
FNN_CLONES static T fnn_max_##S(const T* restrict z, ptrdiff_t n) {                         \
    return fnn_max8_##S(z, n);                                                              \
}                                                                                           \
/* eq. 18 on n rows of d logits (row i at Z + i d; its label Y[r], r = rows ? rows[i] : i):  \
 * loss_i = (m - z_y) + ln sum_k e^{z_k - m}, m = max_k z_k, and with dZ its gradient        \
 * dZ_i = s_i (softmax(z_i) - onehot(y)), s_i = (T)((sw ? sw[r] : c) / div) (section 3,      \
 * problem 1). The exps of all n rows in one vectorised pass through dZ; the sums of        \
 * fnn_exp_shift_sum, so the same bits as a row at a time. (losses holds m meanwhile.) */    \
FNN_CLONES static void fnn_cross_entropy_rows_##S(                                          \
        const T* restrict Z, const ptrdiff_t* restrict Y, const ptrdiff_t* restrict rows,   \
        const double* restrict sw, double c, double div, T* restrict losses,                \
        T* restrict dZ, ptrdiff_t n, ptrdiff_t d) {                                         \
    if (dZ == NULL) {                                                                       \
        for (ptrdiff_t i = 0; i < n; i++) {                                                 \
            const T* z = Z + i * d;                                                         \
            T m = fnn_max8_##S(z, d);                                                       \
            double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                      \
            for (ptrdiff_t k = 0; k < d; k++) lane[k & 7] += EXP(z[k] - m);                 \
            double s = fnn_lanes8(lane);                                                    \
            T zy = z[Y[rows ? rows[i] : i]];                                                \
            losses[i] = (T)((double)(m - zy) + log(s));                                     \
        }                                                                                   \
        return;                                                                             \
    }                                                                                       \
    for (ptrdiff_t i = 0; i < n; i++) {  /* z - m */                                        \
        const T* z = Z + i * d;                                                             \
        T m = fnn_max8_##S(z, d);                                                           \
        for (ptrdiff_t k = 0; k < d; k++) dZ[i * d + k] = z[k] - m;                         \
        losses[i] = m;                                                                      \
    }                                                                                       \
    for (ptrdiff_t j = 0; j < n * d; j++) dZ[j] = EXP(dZ[j]);                               \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        ptrdiff_t r = rows ? rows[i] : i, y = Y[r];                                         \
        T* e = dZ + i * d;                                                                  \
        double s = fnn_sum8_##S(e, d);                                                      \
        T scale = (T)((sw ? sw[r] : c) / div);                                              \
        T a = (T)(scale / s);                                                               \
        for (ptrdiff_t k = 0; k < d; k++) e[k] = a * e[k];                                  \
        e[y] = e[y] - scale;                                                                \
        losses[i] = (T)((double)(losses[i] - Z[i * d + y]) + log(s));                       \
    }                                                                                       \
}                                                                                           \
/* x = a * x in place */                                                                    \
FNN_CLONES static void fnn_scale_##S(T* restrict x, T a, ptrdiff_t n) {                     \
    for (ptrdiff_t i = 0; i < n; i++) x[i] = a * x[i];                                      \
}

/* The optimizer updates of the training loop (eq. 21 and its variants), one array at a time.
 * g = G (+ wd P, the L2 penalty, added by the caller). */
#define FNN_UPDATES(T, S, SQRT)                                                             \
/* eq. 21: P -= lr g */                                                                     \
FNN_CLONES static void fnn_sgd_##S(T* restrict P, const T* restrict G, T lr, ptrdiff_t n) {  \
    for (ptrdiff_t i = 0; i < n; i++) P[i] = P[i] - lr * G[i];                              \
}                                                                                           \
/* v = mu v - lr g; P += v, or P += mu v - lr g (Nesterov) */                              \
FNN_CLONES static void fnn_momentum_##S(T* restrict P, const T* restrict G, T* restrict V,   \
                                        T mu, T lr, int nesterov, ptrdiff_t n) {            \
    if (nesterov) {                                                                         \
        for (ptrdiff_t i = 0; i < n; i++) {                                                 \
            T v = mu * V[i] - lr * G[i];                                                    \
            V[i] = v;                                                                       \
            P[i] = P[i] + (mu * v - lr * G[i]);                                             \
        }                                                                                   \
    } else {                                                                                \
        for (ptrdiff_t i = 0; i < n; i++) {                                                 \
            T v = mu * V[i] - lr * G[i];                                                    \
            V[i] = v;                                                                       \
            P[i] = P[i] + v;                                                                \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
/* Adam: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; P -= lr_t m / (sqrt(v) + eps) */   \
FNN_CLONES static void fnn_adam_##S(T* restrict P, const T* restrict G, T* restrict M,       \
                                    T* restrict V, T b1, T b2, T lr_t, T eps, ptrdiff_t n) { \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        T g = G[i];                                                                         \
        M[i] = b1 * M[i] + (1 - b1) * g;                                                    \
        V[i] = b2 * V[i] + (1 - b2) * g * g;                                                \
        P[i] = P[i] - lr_t * M[i] / (SQRT(V[i]) + eps);                                     \
    }                                                                                       \
}                                                                                           \
/* fnn_adam on g = G + wd P (the L2 penalty's gradient added as fnn_add_scaled adds it, the \
 * same numbers, in the same pass; G is not written) */                                     \
FNN_CLONES static void fnn_adam_l2_##S(T* restrict P, const T* restrict G, T* restrict M,    \
                                       T* restrict V, T wd, T b1, T b2, T lr_t, T eps,      \
                                       ptrdiff_t n) {                                       \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        T g = G[i] + wd * P[i];                                                             \
        M[i] = b1 * M[i] + (1 - b1) * g;                                                    \
        V[i] = b2 * V[i] + (1 - b2) * g * g;                                                \
        P[i] = P[i] - lr_t * M[i] / (SQRT(V[i]) + eps);                                     \
    }                                                                                       \
}                                                                                           \
/* G += wd P (the L2 penalty's gradient) */                                                 \
FNN_CLONES static void fnn_add_scaled_##S(T* restrict G, const T* restrict P, T wd,          \
                                          ptrdiff_t n) {                                    \
    for (ptrdiff_t i = 0; i < n; i++) G[i] = G[i] + wd * P[i];                              \
}                                                                                           \
/* fnn_adam with g = wd P alone: the step of a parameter whose data gradient is zero (a    \
 * sparse first layer's row that the batch's non-zeros did not reach); the dense gradient   \
 * there is 0 + wd P, the same numbers */                                                   \
FNN_CLONES static void fnn_adam_decay_##S(T* restrict P, T* restrict M, T* restrict V, T wd, \
                                          T b1, T b2, T lr_t, T eps, ptrdiff_t n) {         \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        T g = wd * P[i];                                                                    \
        M[i] = b1 * M[i] + (1 - b1) * g;                                                    \
        V[i] = b2 * V[i] + (1 - b2) * g * g;                                                \
        P[i] = P[i] - lr_t * M[i] / (SQRT(V[i]) + eps);                                     \
    }                                                                                       \
}                                                                                           \
/* y += a x: a non-zero x_ik times a row of W^T (eq. 10a), or times dZ_i (dW^T_k) */         \
FNN_CLONES static void fnn_axpy_##S(T* restrict y, T a, const T* restrict x, ptrdiff_t n) {  \
    for (ptrdiff_t i = 0; i < n; i++) y[i] = y[i] + a * x[i];                               \
}

/* The cheap passes next to the products: bias + ReLU epilogue (eq. 10a), the ReLU mask of
 * backpropagation, the bias gradient's column sums (in float64 lanes, fixed order). */
#define FNN_PASSES(T, S)                                                                    \
/* U = max(0, U + b) (b may be NULL); NaN stays NaN */                                      \
FNN_CLONES static void fnn_bias_relu_##S(T* restrict U, const T* restrict b, ptrdiff_t n) {  \
    if (b) {                                                                                \
        for (ptrdiff_t i = 0; i < n; i++) { T z = U[i] + b[i]; U[i] = z < 0 ? 0 : z; }      \
    } else {                                                                                \
        for (ptrdiff_t i = 0; i < n; i++) { T z = U[i]; U[i] = z < 0 ? 0 : z; }             \
    }                                                                                       \
}                                                                                           \
/* U = U + b */                                                                             \
FNN_CLONES static void fnn_add_##S(T* restrict U, const T* restrict b, ptrdiff_t n) {        \
    for (ptrdiff_t i = 0; i < n; i++) U[i] = U[i] + b[i];                                   \
}                                                                                           \
/* dZ = dU * 1{U > 0} (dZ may be dU) */                                                     \
FNN_CLONES static void fnn_relu_mask_##S(const T* dU, const T* restrict U, T* dZ,            \
                                         ptrdiff_t n) {                                     \
    for (ptrdiff_t i = 0; i < n; i++) dZ[i] = dU[i] * (U[i] > 0 ? (T)1 : (T)0);             \
}                                                                                           \
/* acc_j += sum_i Z_ij over the N rows of Z (N, M; rows ld apart), row by row */            \
FNN_CLONES static void fnn_colsum_##S(const T* restrict Z, double* restrict acc,             \
                                      ptrdiff_t N, ptrdiff_t M, ptrdiff_t ld) {             \
    for (ptrdiff_t i = 0; i < N; i++)                                                       \
        for (ptrdiff_t j = 0; j < M; j++) acc[j] += Z[i * ld + j];                          \
}                                                                                           \
/* sum_k x_k^2 in float64 (the L2 penalty's ||W||^2), x_k^2 in lane k % 8, the lanes added  \
 * in a fixed order: the same bits on any machine, inf only once float64 overflows */       \
FNN_CLONES static double fnn_sum_squares_##S(const T* restrict x, ptrdiff_t n) {             \
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                              \
    ptrdiff_t i = 0;                                                                        \
    for (; i + 8 <= n; i += 8)                                                              \
        for (int k = 0; k < 8; k++) lane[k] += (double)x[i + k] * (double)x[i + k];         \
    for (int k = 0; i < n; i++, k++) lane[k] += (double)x[i] * (double)x[i];                \
    return fnn_lanes8(lane);                                                                \
}

/* whether no element is inf or NaN: an exponent of all ones, tested on the bits so the loop
 * vectorises (-fno-trapping-math or not) */
#define FNN_FINITE(T, S, U, EXPONENT)                                                       \
FNN_CLONES static int fnn_all_finite_##S(const T* restrict x, ptrdiff_t n) {                 \
    U bad = 0;                                                                              \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        U u;                                                                                \
        memcpy(&u, x + i, sizeof u);                                                        \
        bad |= (U)((u & EXPONENT) == EXPONENT);                                             \
    }                                                                                       \
    return !bad;                                                                            \
}

FNN_FINITE(float, f, uint32_t, 0x7f800000u)
FNN_FINITE(double, d, uint64_t, 0x7ff0000000000000ull)

/* ... and none below 0 (-0.0 is not): an optimizer's second moments */
#define FNN_FINITE_NONNEG(T, S, U, EXPONENT, SIGN)                                          \
FNN_CLONES static int fnn_all_finite_nonneg_##S(const T* restrict x, ptrdiff_t n) {          \
    U bad = 0;                                                                              \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        U u;                                                                                \
        memcpy(&u, x + i, sizeof u);                                                        \
        /* (& rather than &&: no branch, so the loop vectorises) */                         \
        bad |= (U)((u & EXPONENT) == EXPONENT)                                              \
               | (U)(((u & SIGN) != 0) & ((u & ~SIGN) != 0));                               \
    }                                                                                       \
    return !bad;                                                                            \
}

FNN_FINITE_NONNEG(float, f, uint32_t, 0x7f800000u, 0x80000000u)
FNN_FINITE_NONNEG(double, d, uint64_t, 0x7ff0000000000000ull, 0x8000000000000000ull)

/* A layer's product before its activation, sample by sample as for one sample (eq. 1a):
 * z_ij = sum_k W_jk x_ik + b_j for the N rows x_i of X (N, K), K >= 1, and the rows
 * j0 <= j < j1 of a row-major W (M, K), into Z (N, M); b may be NULL. With t_k = W_jk x_ik:
 *   K >= L: the first K - r terms (r = K mod L) go in L lanes, lane l summing the t_k with
 *           k = l (mod L) in increasing k; the lanes meet in a fixed pairwise tree; the last r
 *           terms are added one by one: z_ij = ((tree + t_{K-r}) + ... + t_{K-1}) + b_j;
 *   K < L:  z_ij = ((b_j + t_0) + t_1) + ... + t_{K-1} (0 for b_j without bias), the order of
 *           the direct loops that small products took before.
 * One row of W at a time: W streams in one sequential pass (the fastest way to read it from
 * L2) and the out-of-order core overlaps consecutive sums. A sum's order depends on nothing
 * else, so any split of the rows among threads gives the same bits, a batch's row those of
 * its sample alone, and every instruction-set clone the same (plain C, no FMA contraction).
 * The lanes are built per instruction set; short rows run inline in the caller (scalar: a
 * call would cost more than they do). */
/* lanes l0 .. l0 + L/2 - 1 of a row at p (a T*) as one vector */
#define FNN_HALF(S, p) (*(const fnn_uhalf_##S*)(p))
#define FNN_GEMV(T, S, L)                                                                   \
typedef T fnn_half_##S __attribute__((vector_size(L / 2 * sizeof(T))));                     \
/* (the same, at any address of a T: an unaligned load) */                                 \
typedef T fnn_uhalf_##S __attribute__((vector_size(L / 2 * sizeof(T)), aligned(sizeof(T)),  \
                                       may_alias));                                        \
static inline T fnn_dot_##S(const T* restrict w, const T* restrict x, ptrdiff_t K) {        \
    /* sum_k w_k x_k for K >= L, in the order above */                                     \
    T a[L] = {0};                                                                           \
    ptrdiff_t k = 0;                                                                        \
    for (; k + L <= K; k += L)  /* a_l += w_k x_k, k = l (mod L) */                         \
        for (int l = 0; l < L; l++) a[l] += w[k + l] * x[k + l];                            \
    /* the tree: a_l += a_{l+8} (L = 16), a_l += a_{l+4}, then (a_0 + a_2) + (a_1 + a_3) */ \
    if (L == 16)                                                                            \
        for (int l = 0; l < 8; l++) a[l] = a[l] + a[l + 8];                                 \
    for (int l = 0; l < 4; l++) a[l] = a[l] + a[l + 4];                                     \
    T s = (a[0] + a[2]) + (a[1] + a[3]);                                                    \
    for (; k < K; k++) s += w[k] * x[k];  /* the last K mod L terms, in order */            \
    return s;                                                                               \
}                                                                                           \
__attribute__((always_inline)) static inline void fnn_dot4_##S(                             \
        const T* restrict w, const T* restrict x, ptrdiff_t K,                              \
                                T* restrict out) {                                          \
    /* fnn_dot of four consecutive rows w, w + K, w + 2K, w + 3K with x: four independent  \
     * chains of sums (one alone waits on each add's latency), each in fnn_dot's order */  \
    T a0[L], a1[L], a2[L], a3[L];                                                           \
    const T *w0 = w, *w1 = w + K, *w2 = w + 2 * K, *w3 = w + 3 * K;                         \
    ptrdiff_t k = 0;                                                                        \
    /* lanes 0..L/2-1 and L/2..L-1 of each row as two 32-byte vectors (GCC/clang vector    \
     * extension): left to itself, the compiler vectorized the float64 loop across the    \
     * four rows, through shuffles (3-4x slower than NumPy's matrix-vector product) */      \
    fnn_half_##S l0 = {0}, h0 = {0}, l1 = {0}, h1 = {0}, l2 = {0}, h2 = {0}, l3 = {0},     \
                 h3 = {0};                                                                  \
    for (; k + L <= K; k += L) {                                                            \
        fnn_half_##S xl = FNN_HALF(S, x + k), xh = FNN_HALF(S, x + k + L / 2);             \
        l0 += FNN_HALF(S, w0 + k) * xl; h0 += FNN_HALF(S, w0 + k + L / 2) * xh;           \
        l1 += FNN_HALF(S, w1 + k) * xl; h1 += FNN_HALF(S, w1 + k + L / 2) * xh;           \
        l2 += FNN_HALF(S, w2 + k) * xl; h2 += FNN_HALF(S, w2 + k + L / 2) * xh;           \
        l3 += FNN_HALF(S, w3 + k) * xl; h3 += FNN_HALF(S, w3 + k + L / 2) * xh;           \
    }                                                                                       \
    memcpy(a0, &l0, sizeof l0); memcpy(a0 + L / 2, &h0, sizeof h0);                         \
    memcpy(a1, &l1, sizeof l1); memcpy(a1 + L / 2, &h1, sizeof h1);                         \
    memcpy(a2, &l2, sizeof l2); memcpy(a2 + L / 2, &h2, sizeof h2);                         \
    memcpy(a3, &l3, sizeof l3); memcpy(a3 + L / 2, &h3, sizeof h3);                         \
    if (L == 16)                                                                            \
        for (int l = 0; l < 8; l++) {                                                       \
            a0[l] = a0[l] + a0[l + 8]; a1[l] = a1[l] + a1[l + 8];                           \
            a2[l] = a2[l] + a2[l + 8]; a3[l] = a3[l] + a3[l + 8];                           \
        }                                                                                   \
    for (int l = 0; l < 4; l++) {                                                           \
        a0[l] = a0[l] + a0[l + 4]; a1[l] = a1[l] + a1[l + 4];                               \
        a2[l] = a2[l] + a2[l + 4]; a3[l] = a3[l] + a3[l + 4];                               \
    }                                                                                       \
    T s0 = (a0[0] + a0[2]) + (a0[1] + a0[3]), s1 = (a1[0] + a1[2]) + (a1[1] + a1[3]);       \
    T s2 = (a2[0] + a2[2]) + (a2[1] + a2[3]), s3 = (a3[0] + a3[2]) + (a3[1] + a3[3]);       \
    for (; k < K; k++) {  /* the last K mod L terms, in order */                            \
        s0 += w0[k] * x[k]; s1 += w1[k] * x[k]; s2 += w2[k] * x[k]; s3 += w3[k] * x[k];     \
    }                                                                                       \
    out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;                                     \
}                                                                                           \
FNN_CLONES static void fnn_gemv_lanes_##S(const T* restrict W, const T* restrict X,         \
                                          const T* restrict b, T* restrict Z, ptrdiff_t N,  \
                                          ptrdiff_t M, ptrdiff_t j0, ptrdiff_t j1,          \
                                          ptrdiff_t K) {                                    \
    T s[4];                                                                                 \
    for (ptrdiff_t i = 0; i < N; i++) {  /* K >= L */                                       \
        ptrdiff_t j = j0;                                                                   \
        for (; j + 4 <= j1; j += 4) {                                                       \
            fnn_dot4_##S(W + j * K, X + i * K, K, s);                                       \
            for (int r = 0; r < 4; r++)                                                     \
                Z[i * M + j + r] = b ? s[r] + b[j + r] : s[r];                              \
        }                                                                                   \
        for (; j < j1; j++) {                                                               \
            T d = fnn_dot_##S(W + j * K, X + i * K, K);                                     \
            Z[i * M + j] = b ? d + b[j] : d;                                                \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
static inline void fnn_gemv_##S(const T* restrict W, const T* restrict X,                   \
                                const T* restrict b, T* restrict Z, ptrdiff_t N,            \
                                ptrdiff_t M, ptrdiff_t j0, ptrdiff_t j1, ptrdiff_t K) {     \
    if (K >= L) {                                                                           \
        fnn_gemv_lanes_##S(W, X, b, Z, N, M, j0, j1, K);                                    \
        return;                                                                             \
    }                                                                                       \
    for (ptrdiff_t i = 0; i < N; i++)  /* short rows, inline: a call costs more than they */\
        for (ptrdiff_t j = j0; j < j1; j++) {                                               \
            T s = b ? b[j] : 0;                                                             \
            for (ptrdiff_t k = 0; k < K; k++) s += W[j * K + k] * X[i * K + k];             \
            Z[i * M + j] = s;                                                               \
        }                                                                                   \
}

FNN_ELEMENTWISE(float, f, fnn_expf)
FNN_ELEMENTWISE(double, d, fnn_exp)
FNN_PASSES(float, f)
FNN_PASSES(double, d)
FNN_UPDATES(float, f, sqrtf)
FNN_UPDATES(double, d, sqrt)
FNN_GEMV(float, f, 16)
FNN_GEMV(double, d, 8)

#endif
