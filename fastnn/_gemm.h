/* fastnn's own float32 matrix product for the training loop's small and mid-size products.
 *
 *     C (m x n) = alpha * A B + beta * C      (beta = 0: C is only written)
 *     P (m x n) += C                          (optionally, P not NULL)
 *
 * with B row-major (k x n, row stride ldb), C row-major (row stride ldc) and A's element
 * (i, p) at A[i * sai + p * sap], so A may be a matrix or a transposed view of one: the loop's
 * X W^T with W held transposed (A = X), dW^T = X^T dZ (A = X^T) and dX = dZ W (A = dZ) all
 * take this form, with no copy of either operand; SGD with momentum is v = mu v - lr dW
 * (C = v) then W += v (P = W), the latter while v is in registers. BLAS packs both operands into blocks first;
 * at these sizes that copy costs 20-35% of the product, and OpenBLAS's small-matrix kernels,
 * which skip it, exist for AVX-512 only: with its AVX2 kernels a 16 x 64 -> 128 step of the
 * digits fit runs ~3x slower.
 *
 * Register tiles of 4 rows of C by two vectors (32 columns with AVX-512, 16 with AVX2) walk
 * k with fused multiply-adds, B's row p loaded once for the 4 rows, A's entries broadcast.
 * Each entry of C sums its k products in the order p = 0..k-1 in one fused multiply-add
 * chain, wherever it sits in a tile: the result does not depend on m, n or how C is cut into
 * parts (1 and 2 threads give the same bits). It differs from BLAS's rounding (as BLAS's own
 * kernels differ between instruction sets).
 *
 * fnn_sgemm returns 0 where the CPU has neither AVX-512 nor AVX2 with FMA, or the compiler is
 * not GCC/Clang on x86-64: the caller then calls BLAS.
 */
#ifndef FASTNN_GEMM_H
#define FASTNN_GEMM_H

#include <stddef.h>
#include <math.h>

/* the units a panel of a frozen layer's packed W^T holds (see fnn_pgemv below) */
#define FNN_PANEL_UNITS 128

/* a frozen layer's panel (see fnn_pgemv below) by a plain loop: z (w) = x (1 x k) B (k x w),
 * each z_j one fused chain over p = 0..k-1 from zero (fmaf rounds once, as FMA does) */
static inline void fnn_pgemv_plain(ptrdiff_t k, ptrdiff_t w, const float* x, const float* B,
                                   float* z) {
    for (ptrdiff_t j = 0; j < w; j++) z[j] = 0.0f;
    for (ptrdiff_t p = 0; p < k; p++)
        for (ptrdiff_t j = 0; j < w; j++) z[j] = fmaf(x[p], B[p * w + j], z[j]);
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(FNN_NO_GEMM)
#include <immintrin.h>
#define FNN_HAVE_GEMM 1

/* One tile: rows 0..MR-1 of A and C (already offset) by two vectors of columns, those under
 * the masks m0, m1 (the _full tiles ignore them: plain loads and stores, which AVX2's masked
 * stores are much slower than). The accumulators are named variables (cR0, cR1 for row R):
 * GCC keeps an array of vectors on the stack, with a store per step. FNN_ROWS_<MR>(X)
 * expands X(R) for R = 0..MR-1; the V_ macros are the instruction set's, defined below. */
#define FNN_ROWS_1(X) X(0)
#define FNN_ROWS_4(X) X(0) X(1) X(2) X(3)
#define FNN_ROWS_6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define FNN_ROWS_8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

#define FNN_ZERO_ROW(R) V_T c##R##0 = V_ZERO(), c##R##1 = V_ZERO();
#define FNN_FMA_ROW(R) {                                                                    \
        V_T a = V_SET1(A[R * sai + p * sap]);                                               \
        c##R##0 = V_FMADD(a, b0, c##R##0);                                                  \
        c##R##1 = V_FMADD(a, b1, c##R##1); }
#define FNN_STORE_ROW(R) { /* c = alpha s (+ beta c) */                                     \
        float* Cr = C + R * ldc;                                                            \
        V_T s0 = V_MUL(al, c##R##0), s1 = V_MUL(al, c##R##1);                               \
        if (beta != 0.0f) {                                                                 \
            s0 = V_ADD(s0, V_MUL(be, V_LOAD(Cr, m0)));                                      \
            s1 = V_ADD(s1, V_MUL(be, V_LOAD(Cr + V_W, m1)));                                \
        }                                                                                   \
        V_STORE(Cr, m0, s0);                                                                \
        V_STORE(Cr + V_W, m1, s1);                                                          \
        if (P) { /* p += c: SGD's step by its momentum velocity, fused */                   \
            float* Pr = P + R * ldp;                                                        \
            V_STORE(Pr, m0, V_ADD(V_LOAD(Pr, m0), s0));                                     \
            V_STORE(Pr + V_W, m1, V_ADD(V_LOAD(Pr + V_W, m1), s1));                         \
        } }

#define FNN_K_LOOP(MR)                                                                      \
    for (ptrdiff_t p = 0; p < k; p++) { /* c_ij += a_ip b_pj, p in order */                 \
        V_T b0 = V_LOAD(B + p * ldb, m0);                                                   \
        V_T b1 = V_LOAD(B + p * ldb + V_W, m1);                                             \
        FNN_ROWS_##MR(FNN_FMA_ROW)                                                          \
    }

/* (a tile of the cache-blocked product below: with ``on``, its chains go on from the
 * partial sums C holds, those of the k before this block, instead of from zero; alpha 1,
 * beta 0, no P. The loop is written out for each start: 5% faster at 4096 x 784 -> 256
 * than one loop after a choice of start) */
#define FNN_LOAD_ROW(R) V_T c##R##0 = V_LOAD(C + R * ldc, m0),                               \
                            c##R##1 = V_LOAD(C + R * ldc + V_W, m1);
#define FNN_PUT_ROW(R) { V_STORE(C + R * ldc, m0, c##R##0);                                 \
                         V_STORE(C + R * ldc + V_W, m1, c##R##1); }
#define FNN_TILE_ON(NAME, TARGET, MR, MASK)                                                 \
__attribute__((target(TARGET))) static inline void NAME(                                   \
        ptrdiff_t k, const float* A, ptrdiff_t sai, ptrdiff_t sap, const float* B,          \
        ptrdiff_t ldb, int on, float* C, ptrdiff_t ldc, MASK m0, MASK m1) {                 \
    (void)m0; (void)m1;                                                                     \
    if (on) {                                                                               \
        FNN_ROWS_##MR(FNN_LOAD_ROW) FNN_K_LOOP(MR) FNN_ROWS_##MR(FNN_PUT_ROW)               \
    } else {                                                                                \
        FNN_ROWS_##MR(FNN_ZERO_ROW) FNN_K_LOOP(MR) FNN_ROWS_##MR(FNN_PUT_ROW)               \
    }                                                                                       \
}

#define FNN_TILE(NAME, TARGET, MR, MASK)                                                    \
__attribute__((target(TARGET))) static inline void NAME(                                   \
        ptrdiff_t k, float alpha, const float* A, ptrdiff_t sai, ptrdiff_t sap,             \
        const float* B, ptrdiff_t ldb, float beta, float* C, ptrdiff_t ldc, float* P,       \
        ptrdiff_t ldp, MASK m0, MASK m1) {                                                  \
    (void)m0; (void)m1;                                                                     \
    FNN_ROWS_##MR(FNN_ZERO_ROW)                                                             \
    FNN_K_LOOP(MR)                                                                          \
    V_T al = V_SET1(alpha), be = V_SET1(beta);                                              \
    FNN_ROWS_##MR(FNN_STORE_ROW)                                                            \
}

/* AVX-512: 16 floats a vector */
#define V_T __m512
#define V_W 16
#define V_ZERO _mm512_setzero_ps
#define V_SET1 _mm512_set1_ps
#define V_FMADD _mm512_fmadd_ps
#define V_MUL _mm512_mul_ps
#define V_ADD _mm512_add_ps
#define V_LOAD(p, m) _mm512_loadu_ps(p)
#define V_STORE(p, m, v) _mm512_storeu_ps(p, v)
FNN_TILE(fnn_tile512_8_full, "avx512f", 8, __mmask16)
FNN_TILE(fnn_tile512_4_full, "avx512f", 4, __mmask16)
FNN_TILE(fnn_tile512_1_full, "avx512f", 1, __mmask16)
#undef V_LOAD
#undef V_STORE
#define V_LOAD(p, m) _mm512_maskz_loadu_ps(m, p)
#define V_STORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)
FNN_TILE(fnn_tile512_8, "avx512f", 8, __mmask16)
FNN_TILE(fnn_tile512_4, "avx512f", 4, __mmask16)
FNN_TILE(fnn_tile512_1, "avx512f", 1, __mmask16)
#undef V_T
#undef V_W
#undef V_ZERO
#undef V_SET1
#undef V_FMADD
#undef V_MUL
#undef V_ADD
#undef V_LOAD
#undef V_STORE

/* AVX2 with FMA: 8 floats a vector */
#define V_T __m256
#define V_W 8
#define V_ZERO _mm256_setzero_ps
#define V_SET1 _mm256_set1_ps
#define V_FMADD _mm256_fmadd_ps
#define V_MUL _mm256_mul_ps
#define V_ADD _mm256_add_ps
#define V_LOAD(p, m) _mm256_loadu_ps(p)
#define V_STORE(p, m, v) _mm256_storeu_ps(p, v)
FNN_TILE(fnn_tile256_6_full, "avx2,fma", 6, __m256i)
FNN_TILE(fnn_tile256_4_full, "avx2,fma", 4, __m256i)
FNN_TILE(fnn_tile256_1_full, "avx2,fma", 1, __m256i)
FNN_TILE_ON(fnn_on256_6_full, "avx2,fma", 6, __m256i)
FNN_TILE_ON(fnn_on256_4_full, "avx2,fma", 4, __m256i)
FNN_TILE_ON(fnn_on256_1_full, "avx2,fma", 1, __m256i)
#undef V_LOAD
#undef V_STORE
#define V_LOAD(p, m) _mm256_maskload_ps(p, m)
#define V_STORE(p, m, v) _mm256_maskstore_ps(p, m, v)
FNN_TILE(fnn_tile256_6, "avx2,fma", 6, __m256i)
FNN_TILE(fnn_tile256_4, "avx2,fma", 4, __m256i)
FNN_TILE(fnn_tile256_1, "avx2,fma", 1, __m256i)
FNN_TILE_ON(fnn_on256_6, "avx2,fma", 6, __m256i)
FNN_TILE_ON(fnn_on256_4, "avx2,fma", 4, __m256i)
FNN_TILE_ON(fnn_on256_1, "avx2,fma", 1, __m256i)
#undef V_T
#undef V_W
#undef V_ZERO
#undef V_SET1
#undef V_FMADD
#undef V_MUL
#undef V_ADD
#undef V_LOAD
#undef V_STORE

/* the rows of one panel of columns (FNN_PANEL8: tiles of 8 rows first, for AVX-512's 32
 * registers; FNN_PANEL6: of 6, for AVX2's 16) */
#define FNN_TILE_AT(T, i)                                                                   \
    T(k, alpha, A + (i) * sai, sai, sap, B + j0, ldb, beta, C + (i) * ldc + j0, ldc,        \
      P ? P + (i) * ldp + j0 : P, ldp, m0, m1);
/* rows i..END-1 by AT(tile, row): tiles of 4 rows, then single rows; ROWS6 tiles of 6
 * first (8 rows left: two tiles of 4, not 6 + 1 + 1) */
#define FNN_ROWS4(AT, END, T4, T1)                                                          \
    for (; i + 4 <= END; i += 4) AT(T4, i)                                                  \
    for (; i < END; i++) AT(T1, i)
#define FNN_ROWS6(AT, END, T6, T4, T1)                                                      \
    for (; i + 6 <= END && END - i != 8; i += 6) AT(T6, i)                                  \
    FNN_ROWS4(AT, END, T4, T1)
#define FNN_PANEL8(T8, T4, T1)                                                              \
    for (; i + 8 <= m; i += 8) FNN_TILE_AT(T8, i)                                           \
    FNN_ROWS4(FNN_TILE_AT, m, T4, T1)
#define FNN_PANEL6(T6, T4, T1) FNN_ROWS6(FNN_TILE_AT, m, T6, T4, T1)

__attribute__((target("avx512f"))) static void fnn_sgemm_avx512(
        ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float* A, ptrdiff_t sai,
        ptrdiff_t sap, const float* B, ptrdiff_t ldb, float beta, float* C, ptrdiff_t ldc,
        float* P, ptrdiff_t ldp) {
    for (ptrdiff_t j0 = 0; j0 < n; j0 += 32) {  /* a panel of 32 columns of B and C */
        ptrdiff_t w = n - j0 < 32 ? n - j0 : 32, i = 0;
        __mmask16 m0 = (__mmask16)(w >= 16 ? 0xFFFFu : (1u << w) - 1);
        __mmask16 m1 = (__mmask16)(w >= 32 ? 0xFFFFu : w > 16 ? (1u << (w - 16)) - 1 : 0u);
        if (w == 32) {
            FNN_PANEL8(fnn_tile512_8_full, fnn_tile512_4_full, fnn_tile512_1_full)
        } else {
            FNN_PANEL8(fnn_tile512_8, fnn_tile512_4, fnn_tile512_1)
        }
    }
}

__attribute__((target("avx2,fma"))) static void fnn_sgemm_avx2(
        ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha, const float* A, ptrdiff_t sai,
        ptrdiff_t sap, const float* B, ptrdiff_t ldb, float beta, float* C, ptrdiff_t ldc,
        float* P, ptrdiff_t ldp) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (ptrdiff_t j0 = 0; j0 < n; j0 += 16) {  /* a panel of 16 columns of B and C */
        ptrdiff_t w = n - j0 < 16 ? n - j0 : 16, i = 0;
        /* the lanes below w (and below w - 8) are loaded and stored: mask lanes all ones */
        __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)w), lane);
        __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)w - 8), lane);
        if (w == 16) {
            FNN_PANEL6(fnn_tile256_6_full, fnn_tile256_4_full, fnn_tile256_1_full)
        } else {
            FNN_PANEL6(fnn_tile256_6, fnn_tile256_4, fnn_tile256_1)
        }
    }
}

/* ---- C = A B^T, both operands read along rows (the layer's X W^T with W as stored) ----
 *
 * Each entry of C is a dot product of a row of A and a row of B (W's rows are the units'
 * weight vectors): register tiles of MR rows of A by NR rows of B accumulate MR x NR vectors
 * of partial sums along k with fused multiply-adds (the last k mod V_W entries masked), then
 * each vector is summed across its lanes. Every entry sums its products in the same order
 * wherever its tile sits: the result does not depend on m, n or how C is cut into parts.
 * W needs no copy or packing, so a model's weights serve its products as they are stored. */
#define FNN_NT_ACC(R, S) V_T c##R##S = V_ZERO();
#define FNN_NT_FMA(R, S) c##R##S = V_FMADD(a##R, b##S, c##R##S);
#define FNN_NT_LOADA(R) V_T a##R = V_LOADU(A + (R) * lda + p);
#define FNN_NT_LOADB(S) V_T b##S = V_LOADU(B + (S) * ldb + p);
#define FNN_NT_LOADA_TAIL(R) V_T a##R = V_LOADK(A + (R) * lda + p, mk);
#define FNN_NT_LOADB_TAIL(S) V_T b##S = V_LOADK(B + (S) * ldb + p, mk);
#define FNN_NT_STORE(R, S) C[(R) * ldc + (S)] = V_HSUM(c##R##S);

/* a tile's vectors of partial sums c_RS along k (declared here, summed across lanes after) */
#define FNN_NT_SUMS(ROWS, COLS, FOR_PAIRS, MASK, MASKOF)                                    \
    FOR_PAIRS(FNN_NT_ACC)                                                                   \
    ptrdiff_t p = 0;                                                                        \
    for (; p + V_W <= k; p += V_W) {                                                        \
        ROWS(FNN_NT_LOADA) COLS(FNN_NT_LOADB) FOR_PAIRS(FNN_NT_FMA)                         \
    }                                                                                       \
    if (p < k) { /* the last k mod V_W entries: the other lanes load zeros */               \
        MASK mk = MASKOF(k - p);                                                            \
        ROWS(FNN_NT_LOADA_TAIL) COLS(FNN_NT_LOADB_TAIL) FOR_PAIRS(FNN_NT_FMA)               \
    }

#define FNN_NT_TILE(NAME, TARGET, ROWS, COLS, FOR_PAIRS, MASK, MASKOF)                      \
__attribute__((target(TARGET))) static inline void NAME(                                   \
        ptrdiff_t k, const float* A, ptrdiff_t lda, const float* B, ptrdiff_t ldb,          \
        float* C, ptrdiff_t ldc) {                                                          \
    FNN_NT_SUMS(ROWS, COLS, FOR_PAIRS, MASK, MASKOF)                                        \
    FOR_PAIRS(FNN_NT_STORE)                                                                 \
}

#define FNN_R1(X) X(0)
#define FNN_R4(X) X(0) X(1) X(2) X(3)
#define FNN_C1(X) X(0)
#define FNN_C2(X) X(0) X(1)
#define FNN_C4(X) X(0) X(1) X(2) X(3)
#define FNN_P11(X) X(0, 0)
#define FNN_P12(X) X(0, 0) X(0, 1)
#define FNN_P14(X) X(0, 0) X(0, 1) X(0, 2) X(0, 3)
#define FNN_P41(X) X(0, 0) X(1, 0) X(2, 0) X(3, 0)
#define FNN_P42(X) FNN_P41(X) X(0, 1) X(1, 1) X(2, 1) X(3, 1)
#define FNN_P44(X) FNN_P42(X) X(0, 2) X(1, 2) X(2, 2) X(3, 2) X(0, 3) X(1, 3) X(2, 3) X(3, 3)

/* AVX-512: 16 floats a vector, tiles of 4 x 4. A vector's 16 partial sums meet in one fixed
 * tree, written out (the order of _mm512_reduce_add_ps is the compiler's: GCC's is this one,
 * Clang's unspecified): lane l + lane l+8, then the 8 sums l + l+4, then l + l+2, then the
 * two left. The 4 x 4 tile sums its 16 vectors in that tree together, a step of the tree for
 * several vectors an instruction (fnn_nt512_44); the other tiles one vector at a time. */
__attribute__((target("avx512f"))) static inline float fnn_hsum512(__m512 v) {
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(
        _mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));                  /* l + l+8 */
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));                     /* l + l+2 */
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}
__attribute__((target("avx512f"))) static inline __m512 fnn_tree8_512(__m512 x, __m512 y) {
    /* the tree's first step for two vectors: lanes 0-7 x_l + x_l+8, lanes 8-15 y's */
    return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 2, 3, 2)));
}
__attribute__((target("avx512f"))) static inline __m512 fnn_tree4_512(__m512 a, __m512 b) {
    /* its second step for four: of each 8 sums of a (then b), l + l+4, 4 to a 128-bit quad */
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}
#define V_T __m512
#define V_W 16
#define V_ZERO _mm512_setzero_ps
#define V_FMADD _mm512_fmadd_ps
#define V_LOADU _mm512_loadu_ps
#define V_LOADK(ptr, m) _mm512_maskz_loadu_ps(m, ptr)
#define V_HSUM fnn_hsum512
#define FNN_MASK512(n) ((__mmask16)((n) >= 16 ? 0xFFFFu : (1u << (n)) - 1))
__attribute__((target("avx512f"))) static inline void fnn_nt512_44(
        ptrdiff_t k, const float* A, ptrdiff_t lda, const float* B, ptrdiff_t ldb,
        float* C, ptrdiff_t ldc) {
    FNN_NT_SUMS(FNN_R4, FNN_C4, FNN_P44, __mmask16, FNN_MASK512)
    /* gS: quad R holds the 4 sums l + l+4 of c_RS (column S of the tile) */
    __m512 g0 = fnn_tree4_512(fnn_tree8_512(c00, c10), fnn_tree8_512(c20, c30));
    __m512 g1 = fnn_tree4_512(fnn_tree8_512(c01, c11), fnn_tree8_512(c21, c31));
    __m512 g2 = fnn_tree4_512(fnn_tree8_512(c02, c12), fnn_tree8_512(c22, c32));
    __m512 g3 = fnn_tree4_512(fnn_tree8_512(c03, c13), fnn_tree8_512(c23, c33));
    /* in each quad: l + l+2 (of g0, g1, then of g2, g3), then the pair's sum: quad R of f
     * is row R of the tile, columns 0..3 */
    __m512 t01 = _mm512_add_ps(_mm512_shuffle_ps(g0, g1, _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_ps(g0, g1, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 t23 = _mm512_add_ps(_mm512_shuffle_ps(g2, g3, _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_ps(g2, g3, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 f = _mm512_add_ps(_mm512_shuffle_ps(t01, t23, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_ps(t01, t23, _MM_SHUFFLE(3, 1, 3, 1)));
    _mm_storeu_ps(C, _mm512_castps512_ps128(f));
    _mm_storeu_ps(C + ldc, _mm512_extractf32x4_ps(f, 1));
    _mm_storeu_ps(C + 2 * ldc, _mm512_extractf32x4_ps(f, 2));
    _mm_storeu_ps(C + 3 * ldc, _mm512_extractf32x4_ps(f, 3));
}
FNN_NT_TILE(fnn_nt512_41, "avx512f", FNN_R4, FNN_C1, FNN_P41, __mmask16, FNN_MASK512)
FNN_NT_TILE(fnn_nt512_14, "avx512f", FNN_R1, FNN_C4, FNN_P14, __mmask16, FNN_MASK512)
FNN_NT_TILE(fnn_nt512_11, "avx512f", FNN_R1, FNN_C1, FNN_P11, __mmask16, FNN_MASK512)
#undef V_T
#undef V_W
#undef V_ZERO
#undef V_FMADD
#undef V_LOADU
#undef V_LOADK
#undef V_HSUM

/* AVX2 with FMA: 8 floats a vector, tiles of 4 x 2. A vector's 8 partial sums meet in the
 * tree l + l+4, then l + l+2, then the two left: one vector at a time (fnn_hsum256), or the
 * 4 x 2 tile's 8 vectors together (fnn_nt256_42) */
__attribute__((target("avx2,fma"))) static inline float fnn_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
__attribute__((target("avx2,fma"))) static inline __m256i fnn_mask256(ptrdiff_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#define V_T __m256
#define V_W 8
#define V_ZERO _mm256_setzero_ps
#define V_FMADD _mm256_fmadd_ps
#define V_LOADU _mm256_loadu_ps
#define V_LOADK(ptr, m) _mm256_maskload_ps(ptr, m)
#define V_HSUM fnn_hsum256
__attribute__((target("avx2,fma"))) static inline __m256 fnn_tree4_256(__m256 x, __m256 y) {
    /* the tree's first step for two vectors: lanes 0-3 x_l + x_l+4, lanes 4-7 y's */
    return _mm256_add_ps(_mm256_permute2f128_ps(x, y, 0x20), _mm256_permute2f128_ps(x, y, 0x31));
}
__attribute__((target("avx2,fma"))) static inline __m256 fnn_tree2_256(__m256 a, __m256 b) {
    /* in each 128-bit half: a's l + l+2 for l = 0, 1, then b's */
    return _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}
__attribute__((target("avx2,fma"))) static inline void fnn_nt256_42(
        ptrdiff_t k, const float* A, ptrdiff_t lda, const float* B, ptrdiff_t ldb,
        float* C, ptrdiff_t ldc) {
    FNN_NT_SUMS(FNN_R4, FNN_C2, FNN_P42, __m256i, fnn_mask256)
    /* t0: low half row 0's two entries' l + l+2 (column 0, then 1), high half row 1's; t1:
     * rows 2 and 3. Then the pairs' sums: f's low half holds row 0 then row 2, its high
     * half row 1 then row 3 */
    __m256 t0 = fnn_tree2_256(fnn_tree4_256(c00, c10), fnn_tree4_256(c01, c11));
    __m256 t1 = fnn_tree2_256(fnn_tree4_256(c20, c30), fnn_tree4_256(c21, c31));
    __m256 f = _mm256_add_ps(_mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 1, 3, 1)));
    __m128 lo = _mm256_castps256_ps128(f), hi = _mm256_extractf128_ps(f, 1);
    _mm_storel_pi((__m64*)C, lo);
    _mm_storel_pi((__m64*)(C + ldc), hi);
    _mm_storeh_pi((__m64*)(C + 2 * ldc), lo);
    _mm_storeh_pi((__m64*)(C + 3 * ldc), hi);
}
FNN_NT_TILE(fnn_nt256_41, "avx2,fma", FNN_R4, FNN_C1, FNN_P41, __m256i, fnn_mask256)
FNN_NT_TILE(fnn_nt256_12, "avx2,fma", FNN_R1, FNN_C2, FNN_P12, __m256i, fnn_mask256)
FNN_NT_TILE(fnn_nt256_11, "avx2,fma", FNN_R1, FNN_C1, FNN_P11, __m256i, fnn_mask256)
#undef V_T
#undef V_W
#undef V_ZERO
#undef V_FMADD
#undef V_LOADU
#undef V_LOADK
#undef V_HSUM

/* C (m x n, row stride ldc) = A (m x k) B^T, B (n x k) row-major: tiles of MR x NR, then the
 * rows and columns left */
#define FNN_NT_BODY(MR, NR, TILE, TILE_R1, TILE_1C, TILE_11)                                \
    ptrdiff_t i = 0, j;                                                                     \
    for (; i + MR <= m; i += MR) {                                                          \
        for (j = 0; j + NR <= n; j += NR)                                                   \
            TILE(k, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc);              \
        for (; j < n; j++)                                                                  \
            TILE_R1(k, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc);           \
    }                                                                                       \
    for (; i < m; i++) {                                                                    \
        for (j = 0; j + NR <= n; j += NR)                                                   \
            TILE_1C(k, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc);           \
        for (; j < n; j++)                                                                  \
            TILE_11(k, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc);           \
    }

__attribute__((target("avx512f"))) static void fnn_sgemm_nt_avx512(
        ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float* A, ptrdiff_t lda, const float* B,
        ptrdiff_t ldb, float* C, ptrdiff_t ldc) {
    FNN_NT_BODY(4, 4, fnn_nt512_44, fnn_nt512_41, fnn_nt512_14, fnn_nt512_11)
}

__attribute__((target("avx2,fma"))) static void fnn_sgemm_nt_avx2(
        ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float* A, ptrdiff_t lda, const float* B,
        ptrdiff_t ldb, float* C, ptrdiff_t ldc) {
    FNN_NT_BODY(4, 2, fnn_nt256_42, fnn_nt256_41, fnn_nt256_12, fnn_nt256_11)
}

/* C = A B (alpha 1, beta 0, no P) for a large product, in cache blocks: about FNN_KC
 * entries of k at a time (B's rows p0..p0+kc of a 16-column stripe, <= 16 KB, stay in L1
 * while the tiles of FNN_MC rows of A pass over them; those rows' kc entries, <= 144 KB,
 * stay in L2 for all the stripes). A tile's chains start from zero in the first block and
 * go on from the sums C holds in the next (float32 stores and loads are exact): each entry
 * is the one fused chain over p = 0..k-1 that fnn_sgemm computes, the same bits. The
 * unblocked loop reads A's rows once per 16 columns from wherever they are (at 256 x 784 ->
 * 128, a part of a frozen layer's batch, that is L3: BLAS's product of W was faster), and
 * a stripe's k rows of B once per tile of rows (at 16 x 784 -> 128, a part of batch 32,
 * from L3: 9% of the batch's time). */
#ifndef FNN_KC
#define FNN_KC 256
#endif
#ifndef FNN_MC
#define FNN_MC 144
#endif
#define FNN_ON_AT(T, i)                                                                     \
    T(kc, A + (i) * sai + p0 * sap, sai, sap, B + p0 * ldb + j0, ldb, p0 > 0,               \
      C + (i) * ldc + j0, ldc, m0, m1);
#define FNN_ON_PANEL(T6, T4, T1) i = i0; FNN_ROWS6(FNN_ON_AT, i1, T6, T4, T1)

__attribute__((target("avx2,fma"))) static void fnn_sgemm_blocked_avx2(
        ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float* A, ptrdiff_t sai, ptrdiff_t sap,
        const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc) {
    ptrdiff_t blocks = (k + FNN_KC - 1) / FNN_KC, step = (k + blocks - 1) / blocks;
    for (ptrdiff_t p0 = 0; p0 < k; p0 += step) {  /* k in blocks of about equal size */
        ptrdiff_t kc = k - p0 < step ? k - p0 : step;
        for (ptrdiff_t i0 = 0; i0 < m; i0 += FNN_MC) {
            ptrdiff_t i1 = m - i0 < FNN_MC ? m : i0 + FNN_MC, i;
            for (ptrdiff_t j0 = 0; j0 < n; j0 += 16) {
                ptrdiff_t w = n - j0 < 16 ? n - j0 : 16;
                __m256i m0 = fnn_mask256(w), m1 = fnn_mask256(w - 8);  /* (see above) */
                if (w == 16) {
                    FNN_ON_PANEL(fnn_on256_6_full, fnn_on256_4_full, fnn_on256_1_full)
                } else {
                    FNN_ON_PANEL(fnn_on256_6, fnn_on256_4, fnn_on256_1)
                }
            }
        }
    }
}

static int fnn_sgemm_cpu = -1;  /* 2: AVX-512, 1: AVX2 + FMA, 0: neither (set once) */
static int fnn_sgemm_isa = -1;  /* the path in use: the CPU's, or lower (tests) */

static inline int fnn_sgemm_level(void) {
    if (fnn_sgemm_isa < 0) {  /* a race here writes the same values */
        __builtin_cpu_init();
        fnn_sgemm_cpu = __builtin_cpu_supports("avx512f") ? 2
            : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
        fnn_sgemm_isa = fnn_sgemm_cpu;
    }
    return fnn_sgemm_isa;
}

/* (tests) use the path of ``level`` or the CPU's best below it; returns the one in use */
static inline int fnn_sgemm_use(int level) {
    fnn_sgemm_level();
    fnn_sgemm_isa = level < fnn_sgemm_cpu ? (level < 0 ? 0 : level) : fnn_sgemm_cpu;
    return fnn_sgemm_isa;
}

static inline int fnn_sgemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                            const float* A, ptrdiff_t sai, ptrdiff_t sap, const float* B,
                            ptrdiff_t ldb, float beta, float* C, ptrdiff_t ldc, float* P,
                            ptrdiff_t ldp) {
    switch (fnn_sgemm_level()) {
    case 2: fnn_sgemm_avx512(m, n, k, alpha, A, sai, sap, B, ldb, beta, C, ldc, P, ldp); return 1;
    case 1:
        if (alpha == 1.0f && beta == 0.0f && P == NULL
                && (m * k > FNN_MC * FNN_KC || (m > 6 && k > FNN_KC)))
            fnn_sgemm_blocked_avx2(m, n, k, A, sai, sap, B, ldb, C, ldc);
        else
            fnn_sgemm_avx2(m, n, k, alpha, A, sai, sap, B, ldb, beta, C, ldc, P, ldp);
        return 1;
    default: return 0;
    }
}

/* C = A B^T by fastnn's product (see above); returns 0 where the CPU lacks it */
static inline int fnn_sgemm_nt(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float* A,
                               ptrdiff_t lda, const float* B, ptrdiff_t ldb, float* C,
                               ptrdiff_t ldc) {
    switch (fnn_sgemm_level()) {
    case 2: fnn_sgemm_nt_avx512(m, n, k, A, lda, B, ldb, C, ldc); return 1;
    case 1: fnn_sgemm_nt_avx2(m, n, k, A, lda, B, ldb, C, ldc); return 1;
    default: return 0;
    }
}


/* ---- one sample through a layer whose W is packed in panels (a frozen model's) ----------
 *
 *     z (w) = x (1 x k) Wp_panel (k x w)        (x W^T for the panel's w units)
 *
 * A frozen layer holds W^T (k x M) cut into panels of FNN_PANEL_UNITS units, a panel's k
 * rows of its width w contiguous: one stream, which a core reads at its L2 cache's bandwidth
 * (401 KB in 1.8 us on the machine of BENCHMARKS.md, against 2.7-2.9 us for the same bytes as
 * rows of W read beside x, in any order of the rows tried, and for a panel's columns read
 * out of the whole W^T). Each z_j is one fused multiply-add chain over p = 0..k-1 from zero:
 * the bits fnn_sgemm gives the same row with the same panel. */

#define FNN_PG_ACC(R) V_T c##R = V_ZERO();
#define FNN_PG_FMA(R) c##R = V_FMADD(V_LOAD(Bp + p * w + (R) * V_W, m##R), xp, c##R);
#define FNN_PG_STORE(R) V_STORE(zp + (R) * V_W, m##R, c##R);
#define FNN_PG_BODY(COLS) /* the columns of Bp (row stride w) into zp, those under m0.. */ \
    COLS(FNN_PG_ACC)                                                                        \
    for (ptrdiff_t p = 0; p < k; p++) { /* z += x_p B[p, :], p in order */                  \
        V_T xp = V_SET1(x[p]);                                                              \
        COLS(FNN_PG_FMA)                                                                    \
    }                                                                                       \
    COLS(FNN_PG_STORE)
#define FNN_COLS_8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

#define V_T __m512
#define V_W 16
#define V_ZERO _mm512_setzero_ps
#define V_SET1 _mm512_set1_ps
#define V_FMADD _mm512_fmadd_ps
#define V_LOAD(p, m) _mm512_maskz_loadu_ps(m, p)
#define V_STORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)
__attribute__((target("avx512f"))) static void fnn_pgemv_avx512(
        ptrdiff_t k, ptrdiff_t w, const float* x, const float* B, float* z) {
    /* w <= 128: 8 vectors, those past w masked off */
#define FNN_PG_MASK(r) (__mmask16)(w - 16 * (r) >= 16 ? 0xFFFFu                               \
                                  : w - 16 * (r) <= 0 ? 0u : (1u << (w - 16 * (r))) - 1)
    __mmask16 m0 = FNN_PG_MASK(0), m1 = FNN_PG_MASK(1), m2 = FNN_PG_MASK(2),
              m3 = FNN_PG_MASK(3), m4 = FNN_PG_MASK(4), m5 = FNN_PG_MASK(5),
              m6 = FNN_PG_MASK(6), m7 = FNN_PG_MASK(7);
#undef FNN_PG_MASK
    const float* Bp = B;
    float* zp = z;
    FNN_PG_BODY(FNN_COLS_8)
}
#undef V_T
#undef V_W
#undef V_ZERO
#undef V_SET1
#undef V_FMADD
#undef V_LOAD
#undef V_STORE

#define V_T __m256
#define V_W 8
#define V_ZERO _mm256_setzero_ps
#define V_SET1 _mm256_set1_ps
#define V_FMADD _mm256_fmadd_ps
#define V_LOAD(p, m) _mm256_maskload_ps(p, m)
#define V_STORE(p, m, v) _mm256_maskstore_ps(p, m, v)
__attribute__((target("avx2,fma"))) static void fnn_pgemv_avx2(
        ptrdiff_t k, ptrdiff_t w, const float* x, const float* B, float* z) {
    /* w <= 128: two halves of 8 vectors (16 registers hold no more), each a pass over k */
    for (ptrdiff_t h = 0; h < w; h += 64) {
        ptrdiff_t width = w - h;
        __m256i m0 = fnn_mask256(width), m1 = fnn_mask256(width - 8),
                m2 = fnn_mask256(width - 16), m3 = fnn_mask256(width - 24),
                m4 = fnn_mask256(width - 32), m5 = fnn_mask256(width - 40),
                m6 = fnn_mask256(width - 48), m7 = fnn_mask256(width - 56);
        const float* Bp = B + h;
        float* zp = z + h;
        FNN_PG_BODY(FNN_COLS_8)
    }
}
#undef V_T
#undef V_W
#undef V_ZERO
#undef V_SET1
#undef V_FMADD
#undef V_LOAD
#undef V_STORE

/* z (w) = x Wp_panel: the panel's units, on the CPU's path; elsewhere a plain loop of the
 * same fused chains */
static inline void fnn_pgemv(ptrdiff_t k, ptrdiff_t w, const float* x, const float* B,
                             float* z) {
    switch (fnn_sgemm_level()) {
    case 2: fnn_pgemv_avx512(k, w, x, B, z); return;
    case 1: fnn_pgemv_avx2(k, w, x, B, z); return;
    default: fnn_pgemv_plain(k, w, x, B, z);
    }
}

#else
#define FNN_HAVE_GEMM 0
static inline int fnn_sgemm_level(void) { return 0; }
static inline int fnn_sgemm_use(int level) { (void)level; return 0; }
static inline int fnn_sgemm(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                            const float* A, ptrdiff_t sai, ptrdiff_t sap, const float* B,
                            ptrdiff_t ldb, float beta, float* C, ptrdiff_t ldc, float* P,
                            ptrdiff_t ldp) {
    (void)m; (void)n; (void)k; (void)alpha; (void)A; (void)sai; (void)sap; (void)B;
    (void)ldb; (void)beta; (void)C; (void)ldc; (void)P; (void)ldp;
    return 0;
}
static inline int fnn_sgemm_nt(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float* A,
                               ptrdiff_t lda, const float* B, ptrdiff_t ldb, float* C,
                               ptrdiff_t ldc) {
    (void)m; (void)n; (void)k; (void)A; (void)lda; (void)B; (void)ldb; (void)C; (void)ldc;
    return 0;
}
static inline void fnn_pgemv(ptrdiff_t k, ptrdiff_t w, const float* x, const float* B,
                             float* z) {
    fnn_pgemv_plain(k, w, x, B, z);
}
#endif

#endif
