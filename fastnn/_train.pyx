# cython: language_level=3
"""The native training loop (see the design note below), and the helpers of fit and the
lbfgs solver: the shuffle of an epoch and the L2-penalised gradient."""

# # A ``Trainer`` holds one fit's state: raw pointers to the model's own weight arrays (updated
# in place), the optimizer state, and every workspace a mini-batch needs, all allocated once
# per fit by the caller (fastnn.training). ``run_epoch`` then runs whole epochs in C: gather
# the shuffled batch, forward (eq. 10), loss and its gradient (eq. 16-20), backward (section 3),
# update (eq. 21, momentum, Nesterov or Adam), with no Python and no allocation per step.
# The GIL is taken back every few batches only to let Ctrl-C through.
#
# One step is two phases, each cut into fixed parts that fastnn's threads share (_threads.h),
# with a barrier after each (a network of one hidden layer on dense rows splits its step by
# hidden units instead, with one barrier: see _units_steps):
#   rows:  for a block of the batch's rows: gather, forward through every layer, the loss
#          and dL/dZ of the output layer, and back through the layers dZ_l = dU_l * g'(Z_l),
#          dU_{l-1} = dZ_l W_l (all of it row by row: no other rows are needed);
#   units: for a block of one layer's units j: dW_j = dZ_j^T U_{l-1}, db_j, and the update
#          of W_j and b_j (a sum over all the batch's rows, hence the barrier before it).
# The parts depend on the shapes alone (_parts), never on the machine or on how many threads
# run them, so any thread count on any machine gives the same weights bit for bit.
#
# X is read where it lies (TrainState.xkind): a C array of the fit's dtype has its batch's rows
# copied, one of another float dtype or layout converted, as the rows phase gathers them; CSR
# rows (a sparse X) are never gathered: the first layer, held as W^T, adds a row of W^T per
# non-zero (eq. 10a) and its units phase adds x_ik dZ_i to the rows k of dW^T that the batch
# reaches (_sparse_units_pass). The update stays the one the dense copy of X would get: Adam
# steps every row (a row without data gradient has g = wd w, and its moments move it), reading
# the gradient only where the batch wrote it; SGD (momentum, Nesterov, weight decay) is a
# linear map (w, v) -> A (w, v) on such a row, so a row is caught up by A^n only when a batch
# next reads it, n the steps it missed, and every row at the end of run_epoch (lazy: exact,
# to rounding, at the cost of the batch's rows alone).
#
# ``loss_grad`` (the lbfgs solver's objective) is one such step over all N samples with no
# update. There each block of rows also computes its share of dW and db while its rows are
# in its core's cache (_partial_grads), and the units phase only adds the shares up in block
# order (_sum_partials). fastnn's threads spin a while after each call, so they are awake
# for the next call of an L-BFGS run after scipy's step in between.

cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from cython cimport floating
from libc.math cimport ceil, isfinite, sqrt, INFINITY, NAN
from libc.string cimport memcpy, memset

import numpy as np

from fastnn._inputs cimport csr_forward, csr_grad_t, gather_rows, index_t, readable
from fastnn._blas cimport hold_blas, product, product_nt, release_blas
from fastnn._layers cimport (IDENTITY, _ACTIVATION_CODES, activate_row, activate_rows, grad_db,
                             grad_dW, grad_dWT, grad_dX, linear_forward, linear_forward_t,
                             mul_grad_row, transpose)
from fastnn._losses cimport binary_cross_entropy_, cross_entropy_rows, poisson_, squared_error_
from fastnn._math cimport (fnn_adam_f, fnn_adam_d, fnn_adam_decay_f, fnn_adam_decay_d,
                           fnn_adam_l2_f, fnn_adam_l2_d,
                           fnn_add_f, fnn_add_d, fnn_add_scaled_f,
                           fnn_all_finite_f, fnn_all_finite_d,
                           fnn_add_scaled_d, fnn_colsum_f, fnn_colsum_d, fnn_lanes8,
                           fnn_momentum_f, fnn_momentum_d, fnn_sgd_f, fnn_sgd_d)
from fastnn._parallel cimport clock, limit, run
from fastnn._tuning cimport Tuning, parts, row_parts, tuned, unit_parts

cdef extern from "_barrier.h" nogil:
    ctypedef struct fnn_barrier:
        pass
    void fnn_barrier_init(fnn_barrier* b)
    void fnn_barrier_wait(fnn_barrier* b, int n, long* sense)

cnp.import_array()

cdef Tuning* tune = tuned()


# losses of the output layer (the notes pair them with the output maps)
cdef enum:
    LOSS_BCE = 0   # sigmoid output, eq. 17
    LOSS_CE = 1    # softmax output, eq. 18
    LOSS_SE = 2    # identity output, eq. 20 (times loss_scale: 1/2 for half of it)
    LOSS_POISSON = 3  # exponential output, half the Poisson deviance

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1

OPTIMIZER_CODES = {"sgd": OPT_SGD, "adam": OPT_ADAM}


cdef inline floating _adam_lr(floating* tag, TrainState* st, double lr, long long t) noexcept nogil:
    # Adam's step with the bias corrections: lr sqrt(1 - beta2^t) / (1 - beta1^t)
    return <floating>(lr * sqrt(1 - st.beta2 ** t) / (1 - st.beta1 ** t))


cdef void _update(floating* P, floating* G, floating* M1, floating* M2, Py_ssize_t n,
                  TrainState* st, double lr, double decay, long long t) noexcept nogil:
    # eq. 21 and its variants on one parameter array P with gradient G (the loops are in
    # _fastmath.h, built per instruction set)
    cdef floating wd = <floating>decay, lr_f = <floating>lr, lr_t
    if st.optimizer == OPT_ADAM:
        lr_t = _adam_lr(P, st, lr, t)  # (P: the dtype)
        if wd != 0:  # L2 penalty: g = dL/dP + wd P, in Adam's pass
            if floating is float:
                fnn_adam_l2_f(P, G, M1, M2, wd, <float>st.beta1, <float>st.beta2, lr_t,
                              <float>st.eps, n)
            else:
                fnn_adam_l2_d(P, G, M1, M2, wd, st.beta1, st.beta2, lr_t, st.eps, n)
        elif floating is float:
            fnn_adam_f(P, G, M1, M2, <float>st.beta1, <float>st.beta2, lr_t, <float>st.eps, n)
        else:
            fnn_adam_d(P, G, M1, M2, st.beta1, st.beta2, lr_t, st.eps, n)
        return
    if wd != 0:  # L2 penalty: g = dL/dP + wd P
        if floating is float:
            fnn_add_scaled_f(G, P, wd, n)
        else:
            fnn_add_scaled_d(G, P, wd, n)
    if M1 != NULL:
        if floating is float:
            fnn_momentum_f(P, G, M1, <float>st.momentum, lr_f, st.nesterov, n)
        else:
            fnn_momentum_d(P, G, M1, st.momentum, lr_f, st.nesterov, n)
    else:
        if floating is float:
            fnn_sgd_f(P, G, lr_f, n)
        else:
            fnn_sgd_d(P, G, lr_f, n)


cdef void _output_loss(floating* tag, TrainState* st, const Py_ssize_t* rows, Py_ssize_t B,
                       Py_ssize_t r0, Py_ssize_t r1, floating* out, floating* dout,
                       floating* losses, floating* scratch) noexcept nogil:
    # rows r0..r1 of the batch of the B samples ``rows``: their losses and dL/dU of the
    # output layer (out, dout: (B, d)); "mean" over the batch, times the sample weight
    cdef Py_ssize_t d = st.dims[st.n_layers], r
    cdef double* sw = <double*>st.sw
    cdef floating scale
    if st.loss == LOSS_CE:  # these rows at once
        cross_entropy_rows(out + r0 * d, <Py_ssize_t*>st.Y, rows + r0, sw, 1.0,
                            st.norm if st.grad_only else B, losses + r0, dout + r0 * d, r1 - r0,
                            d)
    else:
        for r in range(r0, r1):
            scale = <floating>((sw[rows[r]] if sw != NULL else 1.0) * st.loss_scale
                               / (st.norm if st.grad_only else B))
            if st.loss == LOSS_BCE:
                # eq. 17 on each of the d outputs (d > 1: multi-label), summed per sample
                losses[r] = <floating>binary_cross_entropy_(
                    out + r * d, <floating*>st.Y + rows[r] * d, scratch, dout + r * d, d, scale)
            elif st.loss == LOSS_SE:
                squared_error_(out + r * d, <floating*>st.Y + rows[r] * d, losses + r,
                               dout + r * d, 1, d, scale)
            else:
                poisson_(out + r * d, <floating*>st.Y + rows[r] * d, losses + r,
                         dout + r * d, 1, d, scale)
            if st.loss_scale != 1:
                losses[r] = <floating>(losses[r] * st.loss_scale)


cdef void _gather(floating* tag, TrainState* st, const Py_ssize_t* rows, Py_ssize_t r0,
                  Py_ssize_t r1, floating* Xb) noexcept nogil:
    # rows r0..r1 of the batch of the samples ``rows`` into Xb (B, n_in): copied from a C
    # array of the fit's dtype, converted from any other (X_ROWS)
    cdef Py_ssize_t n_in = st.dims[0], r
    if st.xkind == X_ROWS:
        gather_rows(Xb + r0 * n_in, st.X, st.x64, st.xs0, st.xs1, rows, r0, r1, n_in)
    else:
        for r in range(r0, r1):
            memcpy(Xb + r * n_in, <floating*>st.X + rows[r] * n_in, n_in * sizeof(floating))


cdef void _rows_pass(floating* tag, TrainState* st, const Py_ssize_t* rows, Py_ssize_t B,
                     Py_ssize_t r0, Py_ssize_t r1, floating* scratch) noexcept nogil:
    # the rows phase for rows r0..r1 of the batch of the B samples ``rows``
    cdef int L = st.n_layers, l
    cdef Py_ssize_t n = r1 - r0, n_in = st.dims[0], K, M
    cdef floating* X = <floating*>st.X
    cdef floating* Xb = <floating*>st.Xb
    cdef floating* out = <floating*>st.U[L - 1]
    cdef floating* dout = <floating*>st.dU[L - 1]
    cdef floating* losses = <floating*>st.losses
    cdef const floating* inp
    cdef floating* dZ
    cdef int first = 0
    if n <= 0:
        return
    # gather the batch (the shuffled rows; loss_grad reads X in place), converting the rows
    # of an X of another dtype or layout; CSR rows: the first layer on their non-zeros
    if st.xkind == X_CSR:
        _csr_forward(tag, st, rows, r0, r1)
        first = 1
        inp = <floating*>st.U[0] + r0 * st.dims[1]
    elif Xb != X:
        _gather(tag, st, rows, r0, r1, Xb)
    # forward, eq. 10: U_l = g_l(U_{l-1} W_l^T + B_l)
    if first == 0:
        inp = Xb + r0 * n_in
    for l in range(first, L):
        M = st.dims[l + 1]
        if l == 0 and st.transposed:  # W^T (see Trainer)
            linear_forward_t(inp, <floating*>st.W[l], <floating*>st.b[l],
                              <floating*>st.U[l] + r0 * M, n, st.dims[l], M, st.acts[l])
        elif st.WT[l] != NULL:
            linear_forward_t(inp, <floating*>st.WT[l], <floating*>st.b[l],
                              <floating*>st.U[l] + r0 * M, n, st.dims[l], M, st.acts[l])
        else:
            linear_forward(inp, <floating*>st.W[l], <floating*>st.b[l],
                            <floating*>st.U[l] + r0 * M, n, st.dims[l], M, st.acts[l])
        inp = <floating*>st.U[l] + r0 * M
    _output_loss(tag, st, rows, B, r0, r1, out, dout, losses, scratch)
    # backward (section 3), these rows only: dZ_l = dU_l * g'(Z_l) in place, dU_{l-1} = dZ_l W_l
    for l in range(L - 1, -1, -1):
        K, M = st.dims[l], st.dims[l + 1]
        dZ = <floating*>st.dU[l] + r0 * M
        mul_grad_row(dZ, <floating*>st.U[l] + r0 * M, dZ, n * M, st.acts[l])
        if l > 0:
            grad_dX(dZ, <floating*>st.W[l], <floating*>st.dU[l - 1] + r0 * K, n, K, M)


cdef void _partial_grads(floating* tag, TrainState* st, int q, int R, Py_ssize_t r0,
                         Py_ssize_t r1) noexcept nogil:
    # loss_grad: the share of rows r0..r1 (part q of R) in dW_l = dZ_l^T U_{l-1} (dW^T for a
    # first layer held transposed) and db_l = sum_i dZ_l,i, computed while those rows are in
    # this core's cache; R == 1: straight into the gradient arrays, else into part q's
    # buffers (_sum_partials adds them up). The dW^T of CSR rows is formed by features in
    # the units phase instead (_sparse_grad_part).
    cdef int l
    cdef Py_ssize_t n = r1 - r0, K, M
    cdef floating* inp
    cdef floating* dZ
    cdef floating* dW
    cdef double* acc
    for l in range(st.n_layers):
        K, M = st.dims[l], st.dims[l + 1]
        inp = (<floating*>st.Xb if l == 0 else <floating*>st.U[l - 1]) + r0 * K
        dZ = <floating*>st.dU[l] + r0 * M
        if R == 1:
            dW = <floating*>st.gW[l]
        else:
            dW = <floating*>st.pW + q * st.w_at[st.n_layers] + st.w_at[l]
        if l == 0 and st.xkind == X_CSR:
            pass
        elif l == 0 and st.transposed:
            grad_dWT(dZ, inp, dW, n, K, M, 0, K, 1, 0)
        else:
            grad_dW(dZ, inp, dW, <floating*>NULL, NULL, n, K, M, 0, M)
        if st.gb[l] == NULL:
            continue
        if R == 1:
            grad_db(dZ, <floating*>st.gb[l], st.acc + st.acc_at[l], n, M, 0, M)
        else:
            acc = st.pb + q * st.acc_at[st.n_layers] + st.acc_at[l]
            memset(acc, 0, M * sizeof(double))
            if floating is float:
                fnn_colsum_f(dZ, acc, n, M, M)
            else:
                fnn_colsum_d(dZ, acc, n, M, M)


cdef void _sum_partials(floating* tag, TrainState* st, int l, int q, int P,
                        int R) noexcept nogil:
    # block q of P of layer l's gradient entries: the sum of the R parts' shares, in part
    # order (fixed: the same bits for any number of threads); CSR rows' first layer: its db
    # (its dW^T has no shares: _sparse_grad_part)
    cdef Py_ssize_t size = st.dims[l] * st.dims[l + 1], M = st.dims[l + 1]
    cdef Py_ssize_t a0 = q * size // P, a1 = (q + 1) * size // P, j0 = q * M // P
    cdef Py_ssize_t j1 = (q + 1) * M // P, j
    cdef floating* gW = <floating*>st.gW[l]
    cdef floating* part
    cdef double sb
    cdef int p
    for p in range(R if l > 0 or st.xkind != X_CSR else 0):
        part = <floating*>st.pW + p * st.w_at[st.n_layers] + st.w_at[l]
        if p == 0:
            memcpy(gW + a0, part + a0, (a1 - a0) * sizeof(floating))
        elif floating is float:
            fnn_add_f(gW + a0, part + a0, a1 - a0)
        else:
            fnn_add_d(gW + a0, part + a0, a1 - a0)
    if st.gb[l] != NULL:
        for j in range(j0, j1):
            sb = 0
            for p in range(R):
                sb += st.pb[p * st.acc_at[st.n_layers] + st.acc_at[l] + j]
            (<floating*>st.gb[l])[j] = <floating>sb


cdef double _batch_loss(floating* tag, TrainState* st, const Py_ssize_t* rows,
                        Py_ssize_t B, const floating* losses) noexcept nogil:
    # the batch's summed (weighted) loss, in a fixed order
    cdef double* sw = <double*>st.sw
    cdef double total = 0
    cdef Py_ssize_t r
    for r in range(B):
        total += (sw[rows[r]] if sw != NULL else 1.0) * losses[r]
    return total


# ---------------------------------------------------------------------------------------
# The first layer on CSR rows (see the design note)
# ---------------------------------------------------------------------------------------

cdef void _csr_forward(floating* tag, TrainState* st, const Py_ssize_t* rows, Py_ssize_t r0,
                       Py_ssize_t r1) noexcept nogil:
    # eq. 10a for the batch's rows r0..r1 from their non-zeros: u = g(sum_p x_p W^T[k_p] + b)
    cdef floating* U = <floating*>st.U[0] + r0 * st.dims[1]
    if st.idx64:
        csr_forward(<floating*>st.Xdata, <cnp.int64_t*>st.Xind, <cnp.int64_t*>st.Xptr, rows,
                    r0, r1, <floating*>st.W[0], True, st.dims[0], <floating*>st.b[0], U,
                    st.dims[1], st.acts[0])
    else:
        csr_forward(<floating*>st.Xdata, <cnp.int32_t*>st.Xind, <cnp.int32_t*>st.Xptr, rows,
                    r0, r1, <floating*>st.W[0], True, st.dims[0], <floating*>st.b[0], U,
                    st.dims[1], st.acts[0])


cdef void _csr_grad(floating* tag, TrainState* st, const Py_ssize_t* rows, Py_ssize_t n,
                    Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t* stamp, long long t,
                    Py_ssize_t* touched, Py_ssize_t* count) noexcept nogil:
    # rows k0..k1 of dW^T += x_ik dZ_i over the batch's non-zeros (csr_grad_t)
    if st.idx64:
        csr_grad_t(<floating*>st.Xdata, <cnp.int64_t*>st.Xind, <cnp.int64_t*>st.Xptr, rows, n,
                   <floating*>st.dU[0], <floating*>st.gW[0], st.dims[1], k0, k1, stamp, t,
                   touched, count)
    else:
        csr_grad_t(<floating*>st.Xdata, <cnp.int32_t*>st.Xind, <cnp.int32_t*>st.Xptr, rows, n,
                   <floating*>st.dU[0], <floating*>st.gW[0], st.dims[1], k0, k1, stamp, t,
                   touched, count)


cdef inline bint _decays(TrainState* st) noexcept nogil:
    # whether an SGD step moves a parameter without data gradient (weight decay, a velocity)
    return st.weight_decay != 0 or st.mW[0] != NULL


cdef void _step_matrix(TrainState* st, double lr, double* A) noexcept nogil:
    # one SGD step of _update on a parameter whose data gradient is 0 (g = wd w) is linear,
    # (w, v) -> (A0 w + A1 v, A2 w + A3 v), with a = lr wd:
    #   plain SGD: w' = w - a w;
    #   momentum:  v' = mu v - a w,  w' = w + v' = (1 - a) w + mu v;
    #   Nesterov:  v' = mu v - a w,  w' = w + mu v' - a w = (1 - a (1 + mu)) w + mu^2 v
    cdef double a = lr * st.weight_decay, mu = st.momentum
    A[2], A[3] = -a, mu
    if st.mW[0] == NULL:
        A[0], A[1], A[2], A[3] = 1 - a, 0, 0, 0
    elif st.nesterov:
        A[0], A[1] = 1 - a * (1 + mu), mu * mu
    else:
        A[0], A[1] = 1 - a, mu


cdef inline void _mul2(const double* A, const double* B, double* C) noexcept nogil:
    # C = A B, 2 x 2 row-major (C may be A or B)
    cdef double c0 = A[0] * B[0] + A[1] * B[2], c1 = A[0] * B[1] + A[1] * B[3]
    cdef double c2 = A[2] * B[0] + A[3] * B[2], c3 = A[2] * B[1] + A[3] * B[3]
    C[0], C[1], C[2], C[3] = c0, c1, c2, c3


cdef void _power(const double* A, Py_ssize_t n, double* P) noexcept nogil:
    # P = A^n by repeated squaring
    cdef double S[4]
    P[0], P[1], P[2], P[3] = 1, 0, 0, 1
    S[0], S[1], S[2], S[3] = A[0], A[1], A[2], A[3]
    while n > 0:
        if n & 1:
            _mul2(P, S, P)
        n >>= 1
        if n:
            _mul2(S, S, S)


cdef void _catch_up(floating* tag, TrainState* st, const double* A, Py_ssize_t k,
                    long long t, double* P, Py_ssize_t* n_of_P) noexcept nogil:
    # row k of W^T (and of the velocity) from step current[k] to step t: the n steps it
    # missed, (w, v) = A^n (w, v); P holds A^n for n = n_of_P (a cache: n repeats often)
    cdef Py_ssize_t M = st.dims[1], j, n = t - st.current[k]
    cdef floating* W = <floating*>st.W[0] + k * M
    cdef floating* V = <floating*>st.mW[0]
    cdef double w
    if n <= 0:
        return
    if n != n_of_P[0]:
        _power(A, n, P)
        n_of_P[0] = n
    if V == NULL:
        for j in range(M):
            W[j] = <floating>(P[0] * W[j])
    else:
        V += k * M
        for j in range(M):
            w = W[j]
            W[j] = <floating>(P[0] * w + P[1] * V[j])
            V[j] = <floating>(P[2] * w + P[3] * V[j])
    st.current[k] = t


cdef void _catch_up_rows(floating* tag, index_t* itag, TrainState* st,
                         const Py_ssize_t* rows, Py_ssize_t n, Py_ssize_t k0, Py_ssize_t k1,
                         double lr, long long t) noexcept nogil:
    # the rows k0..k1 of W^T that the CSR rows ``rows`` read, brought to step t
    cdef const index_t* ind = <const index_t*>st.Xind
    cdef const index_t* ptr = <const index_t*>st.Xptr
    cdef Py_ssize_t r, p, k, n_of_P = 0
    cdef double A[4]
    cdef double P[4]
    _step_matrix(st, lr, A)
    for r in range(n):
        for p in range(ptr[rows[r]], ptr[rows[r] + 1]):
            k = ind[p]
            if k0 <= k < k1:
                _catch_up(tag, st, A, k, t, P, &n_of_P)


cdef void _lazy_flush(floating* tag, TrainState* st, double lr) noexcept nogil:
    # every row of W^T brought to step st.t (the end of run_epoch)
    cdef Py_ssize_t k, n_of_P = 0
    cdef double A[4]
    cdef double P[4]
    if not (st.lazy and _decays(st)):
        return
    _step_matrix(st, lr, A)
    for k in range(st.dims[0]):
        _catch_up(tag, st, A, k, st.t, P, &n_of_P)


cdef void _sparse_units_pass(floating* tag, TrainState* st, const Py_ssize_t* rows,
                             Py_ssize_t B, int q, int P, double lr, long long t,
                             const Py_ssize_t* next_rows, Py_ssize_t next_B) noexcept nogil:
    # part q of P of the first layer's units phase on CSR rows: for the input features k of
    # block q (rows of W^T), dW^T_k = sum_i x_ik dZ_i where the batch has non-zeros, then
    # eq. 21 on rows k0..k1 of W^T (see the design note) and on block q of b
    cdef Py_ssize_t K = st.dims[0], M = st.dims[1], k0 = q * K // P, k1 = (q + 1) * K // P
    cdef Py_ssize_t j0 = q * M // P, j1 = (q + 1) * M // P, count = 0, i, k, e
    cdef Py_ssize_t* touched = st.touched + k0
    cdef floating* W = <floating*>st.W[0]
    cdef floating* G = <floating*>st.gW[0]
    cdef floating* mW = <floating*>st.mW[0]
    cdef floating* vW = <floating*>st.vW[0]
    cdef floating* mb = <floating*>st.mb[0]
    cdef floating* vb = <floating*>st.vb[0]
    cdef floating lr_t
    _csr_grad(tag, st, rows, B, k0, k1, st.stamp, t, touched, &count)
    if st.lazy:
        # SGD. The rows the batch reached are current with step t - 1 (caught up when this
        # batch was the next one): step t on them
        for i in range(count):
            k = touched[i]
            _update(W + k * M, G + k * M, mW + k * M if mW != NULL else NULL, NULL, M, st, lr,
                    st.weight_decay, t)
            st.current[k] = t
        # the next batch's rows caught up to step t, so that its forward reads them current
        if next_B > 0 and _decays(st):
            if st.idx64:
                _catch_up_rows(tag, <cnp.int64_t*>NULL, st, next_rows, next_B, k0, k1, lr, t)
            else:
                _catch_up_rows(tag, <cnp.int32_t*>NULL, st, next_rows, next_B, k0, k1, lr, t)
    else:
        # Adam: every row steps (g = wd w where the batch has no non-zero: the dense copy's
        # gradient there, and the moments keep moving W); G read only where it was written
        lr_t = _adam_lr(W, st, lr, t)
        k = k0
        while k < k1:
            e = k
            while e < k1 and st.stamp[e] != t:
                e += 1
            if e > k:  # rows k..e-1: no data gradient
                if floating is float:
                    fnn_adam_decay_f(W + k * M, mW + k * M, vW + k * M, <float>st.weight_decay,
                                     <float>st.beta1, <float>st.beta2, lr_t, <float>st.eps,
                                     (e - k) * M)
                else:
                    fnn_adam_decay_d(W + k * M, mW + k * M, vW + k * M, st.weight_decay,
                                     st.beta1, st.beta2, lr_t, st.eps, (e - k) * M)
            if e < k1:  # row e: the batch's gradient
                _update(W + e * M, G + e * M, mW + e * M, vW + e * M, M, st, lr,
                        st.weight_decay, t)
                e += 1
            k = e
    if st.gb[0] != NULL:
        grad_db(<floating*>st.dU[0], <floating*>st.gb[0], st.acc + st.acc_at[0], B, M, j0, j1)
    if st.b[0] != NULL and j1 > j0:
        _update(<floating*>st.b[0] + j0, <floating*>st.gb[0] + j0,
                mb + j0 if mb != NULL else NULL, vb + j0 if vb != NULL else NULL,
                j1 - j0, st, lr, 0.0, t)


cdef void _sparse_grad_part(floating* tag, TrainState* st, const Py_ssize_t* rows,
                            Py_ssize_t B, int q, int P, int R) noexcept nogil:
    # loss_grad, part q of P of the first layer's gradient on CSR rows: dW^T_k for the input
    # features k of block q (zero where no row has a non-zero), and block q of db from the
    # rows parts' shares (R > 1; R == 1: _partial_grads wrote it)
    cdef Py_ssize_t K = st.dims[0], M = st.dims[1], k0 = q * K // P, k1 = (q + 1) * K // P
    memset(<floating*>st.gW[0] + k0 * M, 0, (k1 - k0) * M * sizeof(floating))
    _csr_grad(tag, st, rows, B, k0, k1, NULL, 0, NULL, NULL)
    if R > 1:
        _sum_partials(tag, st, 0, q, P, R)


cdef void _units_pass(floating* tag, TrainState* st, Py_ssize_t B, int l, int q, int P,
                      double lr, long long t) noexcept nogil:
    # part q of P of the units phase of layer l: dW_j = dZ_j^T U_{l-1} and db_j for the
    # units j of block q, then the update of eq. 21 on those rows of W and entries of b
    # (weight decay on W only). The first layer's W is held transposed, W^T (K, M): its
    # part q is rows k of block q of W^T (input features), dW^T_k = U_{-1,k}^T dZ.
    cdef Py_ssize_t K = st.dims[l], M = st.dims[l + 1], a0, a1
    cdef Py_ssize_t j0 = q * M // P, j1 = (q + 1) * M // P
    cdef floating* inp = <floating*>st.U[l - 1] if l > 0 else <floating*>st.Xb
    cdef floating* dZ = <floating*>st.dU[l]
    cdef floating* mW = <floating*>st.mW[l]
    cdef floating* vW = <floating*>st.vW[l]
    cdef floating* mb = <floating*>st.mb[l]
    cdef floating* vb = <floating*>st.vb[l]
    # plain SGD and SGD with (non-Nesterov) momentum, without weight decay, are updated by
    # the product itself: W += -lr dW, or v = mu v - lr dW then W += v (the same arithmetic
    # as _update, with no gradient array written and read back)
    cdef bint fused = st.optimizer == OPT_SGD and not st.nesterov and st.weight_decay == 0
    cdef floating* C = <floating*>st.gW[l]  # where the product goes
    cdef floating alpha = 1, beta = 0
    if fused:
        C = mW if mW != NULL else <floating*>st.W[l]
        alpha, beta = <floating>-lr, <floating>(st.momentum if mW != NULL else 1)
    # with momentum, W += v rides along with the product where fastnn's own computes it
    cdef floating* P_add = <floating*>st.W[l] if fused and mW != NULL else NULL
    cdef bint added
    if l == 0 and st.transposed:
        a0, a1 = q * K // P * M, (q + 1) * K // P * M
        added = grad_dWT(dZ, inp, C, B, K, M, q * K // P, (q + 1) * K // P, alpha, beta, P_add)
        if st.gb[l] != NULL:
            grad_db(dZ, <floating*>st.gb[l], st.acc + st.acc_at[l], B, M, j0, j1)
    else:
        a0, a1 = j0 * K, j1 * K
        added = grad_dW(dZ, inp, C, <floating*>st.gb[l], st.acc + st.acc_at[l], B, K, M, j0,
                         j1, alpha, beta, P_add)
    if fused:
        if P_add != NULL and not added and a1 > a0:
            if floating is float:
                fnn_add_f(<floating*>st.W[l] + a0, mW + a0, a1 - a0)
            else:
                fnn_add_d(<floating*>st.W[l] + a0, mW + a0, a1 - a0)
    elif a1 > a0:
        _update(<floating*>st.W[l] + a0, <floating*>st.gW[l] + a0,
                mW + a0 if mW != NULL else NULL, vW + a0 if vW != NULL else NULL,
                a1 - a0, st, lr, st.weight_decay, t)
    if st.b[l] != NULL and j1 > j0:
        _update(<floating*>st.b[l] + j0, <floating*>st.gb[l] + j0,
                mb + j0 if mb != NULL else NULL, vb + j0 if vb != NULL else NULL,
                j1 - j0, st, lr, 0.0, t)


cdef inline void _time_step(TrainState* st, Py_ssize_t done) noexcept nogil:
    # thread 0 at a barrier that ends ``done`` steps after the one ending the stretch's first
    # step: a stretch's speed is timed from there (_train_batches)
    if done == 0:
        st.timed_from = clock()
    else:
        st.timed_to, st.timed_steps = clock(), done


cdef inline void _long_wait(fnn_barrier* barrier, int T, long* sense, double* mark,
                            int* slow) noexcept nogil:
    # the barrier; ``slow`` counts this thread's long waits in a row: a wait longer than it
    # worked since its last barrier (mark) and over 5 us, the sign of a partner that does not
    # get its core, counts one; a wait over off_core and 4 times that work (a partner taken
    # off its core for an OS time slice) counts two, which disbands the team at once
    cdef double arrive, wait, work
    if T <= 1:
        return  # alone: no barrier, no clock
    arrive = clock()
    fnn_barrier_wait(barrier, T, sense)
    wait, work = clock() - arrive, arrive - mark[0]
    mark[0] = arrive + wait
    if wait > tune.off_core and wait > 4 * work:
        slow[0] += 2
    elif wait > 5e-6 and wait > work:
        slow[0] += 1
    else:
        slow[0] = 0


cdef void _train_steps(floating* tag, TrainState* st, const Py_ssize_t* perm,
                       Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n, double lr, int tid,
                       int T, fnn_barrier* barrier, double* result) noexcept nogil:
    # thread tid of T: its parts of the steps on the batches of perm[start:stop] (of the n of
    # the epoch: a sparse X's next batch is read ahead). Every thread
    # sums the same losses in the same order, so all stop after the same non-finite batch
    # loss; thread 0 stores the summed loss in result and the step count in st.t (the others
    # read st.t before their first barrier, thread 0 writes it after its last).
    # A thread that waited long at two barriers in a row (its partner shares a core with
    # other work) disbands the team: it raises st.disband before a step's second barrier,
    # every thread reads it after that barrier, and thread 0 runs the rest of the stretch
    # alone (all the parts: the same results).
    cdef int L = st.n_layers, l, P, R, q, part, slow = 0
    cdef Py_ssize_t s = start, B, steps = 0, next_B
    cdef long sense = 0
    cdef long long t = st.t
    cdef double total = result[0], batch, mark = clock()
    cdef floating* scratch
    while s < stop:
        B = st.B if s + st.B <= stop else stop - s
        # the rows phase: fixed blocks of rows, block p on thread p % T (loss_grad: with
        # their shares of the gradient)
        R = row_parts(tune, B * st.row_work, B, st.widest) if st.team else 1
        q = tid
        while q < R:
            scratch = <floating*>st.scratch + q * st.dims[L]
            _rows_pass(tag, st, perm + s, B, q * B // R, (q + 1) * B // R, scratch)
            if st.grad_only:
                _partial_grads(tag, st, q, R, q * B // R, (q + 1) * B // R)
            q += T
        _long_wait(barrier, T, &sense, &mark, &slow)
        batch = _batch_loss(tag, st, perm + s, B, <floating*>st.losses)
        total += batch
        if not isfinite(batch):
            break
        t += 1
        # the units phase: the blocks of every layer, numbered across layers, round-robin
        next_B = min(st.B, n - s - B) if s + B < n else 0
        part = 0
        for l in range(L - 1, -1, -1):
            P = st.unit_parts[l]
            for q in range(P):
                if part % T == tid:
                    if l == 0 and st.xkind == X_CSR:
                        if not st.grad_only:
                            _sparse_units_pass(tag, st, perm + s, B, q, P, lr, t,
                                               perm + s + B, next_B)
                        else:
                            _sparse_grad_part(tag, st, perm + s, B, q, P, R)
                    elif not st.grad_only:
                        _units_pass(tag, st, B, l, q, P, lr, t)
                    elif R > 1:
                        _sum_partials(tag, st, l, q, P, R)
                part += 1
        steps += 1
        if T > 1 and (slow >= 2 or (tid == 0 and steps == st.disband_at)):
            st.disband = True
        _long_wait(barrier, T, &sense, &mark, &slow)
        if tid == 0:
            _time_step(st, steps - 1)
        s += B
        if T > 1 and st.disband:
            if tid != 0:
                return
            T = 1
    if tid == 0:
        result[0] = total
        st.t = t


# ---------------------------------------------------------------------------------------
# One hidden layer on dense rows: the step split by hidden units
# ---------------------------------------------------------------------------------------
# The notes' network (eq. 10, one hidden layer) on dense rows splits its whole step by the
# hidden layer's units instead of by rows then units: part q of P owns hidden units j0..j1,
# that is rows j0..j1 of W1, entries j0..j1 of b1 and columns j0..j1 of W2, and part 0 owns
# b2; the loop holds each part's W2_q (d, j1 - j0) whole, and W1_q^T (K, j1 - j0) whole where
# it holds the first layer transposed (_Loop._mirror), so a part's arrays share no cache line
# with another's but at their ends. A thread runs the same parts step after step
# (part q on thread q % T), so the weights it updates are the ones it reads next, in its own
# core's cache, and no thread reads another's hidden units: the only data that crosses
# threads are the gathered batch and each part's share of the output, Z2_q (B x d). One
# barrier a step:
#   A (part q): Z1_q = X W1_q^T + b1_q, U1_q = g1(Z1_q) (eq. 10), the share
#      Z2_q = U1_q W2_q^T (part 0: + b2); and each thread gathers its rows of the next batch;
#   B (every thread, the same arithmetic): Z2 = sum_q Z2_q in part order, U2 = g2(Z2), the
#      loss and dZ2 (a few numbers a row); then (part q) dU1_q = dZ2 W2_q, dZ1_q =
#      dU1_q * g1'(Z1_q), dW2_q = dZ2^T U1_q, dW1_q = dZ1_q^T X, db1_q (part 0: db2), and
#      the update of eq. 21 on what part q owns.
# The gathered batches rotate through three buffers (a thread gathers batch k + 1 while
# another may still read batch k - 1), the output shares through two; a part's U1_q and
# dZ1_q are (B, j1 - j0) blocks of U[0] and dU[0] at B j0. Measured on the 2-core machine
# of BENCHMARKS.md (two threads, float32): the digits fit's 64-128-10 steps of 32 rows
# 6.4 -> 5.1 us, (512, 784-512-10) 3.3 -> 2.5 ms, (1024, 1024-1024-10) 14.9 -> 10.8 ms.

cdef inline void _unit_block(TrainState* st, int q, Py_ssize_t* j0,
                             Py_ssize_t* j1) noexcept nogil:
    # part q's hidden units j0..j1
    j0[0] = q * st.dims[1] // st.unit_parts[0]
    j1[0] = (q + 1) * st.dims[1] // st.unit_parts[0]


cdef inline Py_ssize_t _own_size(TrainState* st) noexcept nogil:
    # a thread's Z2, dZ2 (B, d) and losses (B,), to a whole number of 64-byte lines
    return ((2 * st.dims[2] + 1) * st.B + 15) // 16 * 16


cdef inline void _gather_share(floating* tag, TrainState* st, const Py_ssize_t* rows,
                               Py_ssize_t B, floating* Xb, int tid, int T) noexcept nogil:
    # thread tid of T: its rows of the batch of the B samples ``rows`` into Xb (B, n_in)
    _gather(tag, st, rows, tid * B // T, (tid + 1) * B // T, Xb)


cdef inline floating* _in_place(floating* tag, TrainState* st, const Py_ssize_t* rows,
                                Py_ssize_t n) noexcept nogil:
    # the n samples ``rows`` where X holds them in that order: consecutive rows of a C array
    # of the fit's dtype (an epoch without shuffling); else NULL (their batches are gathered)
    cdef Py_ssize_t r
    if st.xkind != X_C:
        return NULL
    for r in range(1, n):
        if rows[r] != rows[0] + r:
            return NULL
    return <floating*>st.X + rows[0] * st.dims[0]


cdef void _units_forward(floating* tag, TrainState* st, const floating* Xb, Py_ssize_t B,
                         int q, floating* Z2q) noexcept nogil:
    # phase A of part q: U1_q = g1(X W1_q^T + b1_q), Z2_q = U1_q W2_q^T (+ b2 in part 0)
    cdef Py_ssize_t K = st.dims[0], d = st.dims[2], j0, j1, m
    _unit_block(st, q, &j0, &j1)
    m = j1 - j0
    cdef floating* U1 = <floating*>st.U[0] + st.B * j0
    cdef floating* b1 = <floating*>st.b[0]
    if st.transposed:  # W_q^T (K, m), whole at K j0 (see _Loop._mirror)
        product(False, B, m, K, 1, Xb, K, <floating*>st.W[0] + K * j0, m, 0, U1, m)
    else:
        product_nt(B, m, K, Xb, K, <floating*>st.W[0] + j0 * K, K, U1, m)
    activate_rows(U1, b1 + j0 if b1 != NULL else NULL, B, m, st.acts[0])
    product_nt(B, d, m, U1, m, <floating*>st.W[1] + d * j0, m, Z2q, d)
    if q == 0 and st.b[1] != NULL:
        activate_rows(Z2q, <floating*>st.b[1], B, d, IDENTITY)


cdef void _block_step(floating* tag, TrainState* st, int l, Py_ssize_t at, Py_ssize_t rows,
                      Py_ssize_t cols, Py_ssize_t ld, const floating* A, Py_ssize_t lda,
                      const floating* Bm, Py_ssize_t ldb, Py_ssize_t B, double lr,
                      long long t) noexcept nogil:
    # the block of layer l's W (rows x cols at W + at, row stride ld): its gradient A^T Bm
    # (A (B, rows), Bm (B, cols)) and the update of eq. 21; plain SGD and momentum SGD are
    # fused into the product as in _units_pass
    cdef bint fused = st.optimizer == OPT_SGD and not st.nesterov and st.weight_decay == 0
    cdef floating* W = <floating*>st.W[l] + at
    cdef floating* G = <floating*>st.gW[l] + at
    cdef floating* mW = <floating*>st.mW[l] + at if st.mW[l] != NULL else NULL
    cdef floating* vW = <floating*>st.vW[l] + at if st.vW[l] != NULL else NULL
    cdef floating* C = G
    cdef floating alpha = 1, beta = 0
    cdef bint added
    cdef Py_ssize_t i, n = cols
    if fused:
        C = mW if mW != NULL else W
        alpha, beta = <floating>-lr, <floating>(st.momentum if mW != NULL else 1)
    added = product(True, rows, cols, B, alpha, A, lda, Bm, ldb, beta, C, ld,
                    W if fused and mW != NULL else NULL)
    if fused and (mW == NULL or added):
        return
    if ld == cols:  # contiguous rows: one pass
        n, rows = rows * cols, 1
    for i in range(rows):
        if fused:  # W += v
            if floating is float:
                fnn_add_f(W + i * ld, mW + i * ld, n)
            else:
                fnn_add_d(W + i * ld, mW + i * ld, n)
        else:
            _update(W + i * ld, G + i * ld, mW + i * ld if mW != NULL else NULL,
                    vW + i * ld if vW != NULL else NULL, n, st, lr, st.weight_decay, t)


cdef void _bias_step(floating* tag, TrainState* st, int l, Py_ssize_t j0, const floating* dZ,
                     Py_ssize_t B, Py_ssize_t m, double lr, long long t) noexcept nogil:
    # entries j0..j0 + m of layer l's b: db = sum_i dZ_i (dZ (B, m)) and eq. 21
    if st.b[l] == NULL:
        return
    grad_db(dZ, <floating*>st.gb[l] + j0, st.acc + st.acc_at[l] + j0, B, m, 0, m)
    _update(<floating*>st.b[l] + j0, <floating*>st.gb[l] + j0,
            <floating*>st.mb[l] + j0 if st.mb[l] != NULL else NULL,
            <floating*>st.vb[l] + j0 if st.vb[l] != NULL else NULL, m, st, lr, 0.0, t)


cdef void _units_backward(floating* tag, TrainState* st, const floating* Xb, Py_ssize_t B,
                          int q, const floating* dZ2, double lr, long long t) noexcept nogil:
    # phase B of part q (after the loss): its gradients and updates
    cdef Py_ssize_t K = st.dims[0], d = st.dims[2], j0, j1, m
    _unit_block(st, q, &j0, &j1)
    m = j1 - j0
    cdef floating* U1 = <floating*>st.U[0] + st.B * j0
    cdef floating* dZ1 = <floating*>st.dU[0] + st.B * j0
    # dU1_q = dZ2 W2_q (W2_q before its update), dZ1_q = dU1_q * g1'(Z1_q)
    product(False, B, m, d, 1, dZ2, d, <floating*>st.W[1] + d * j0, m, 0, dZ1, m)
    mul_grad_row(dZ1, U1, dZ1, B * m, st.acts[0])
    # the output layer's columns j0..j1, W2_q (d, m) whole: dW2_q = dZ2^T U1_q; b2 (part 0's)
    _block_step(tag, st, 1, d * j0, d, m, m, dZ2, d, U1, m, B, lr, t)
    if q == 0:
        _bias_step(tag, st, 1, 0, dZ2, B, d, lr, t)
    # the hidden layer's units j0..j1: dW1_q = dZ1_q^T X (W_q^T: X^T dZ1_q)
    if st.transposed:
        _block_step(tag, st, 0, K * j0, K, m, m, Xb, K, dZ1, m, B, lr, t)
    else:
        _block_step(tag, st, 0, j0 * K, m, K, K, dZ1, m, Xb, K, B, lr, t)
    _bias_step(tag, st, 0, j0, dZ1, B, m, lr, t)


cdef void _units_steps(floating* tag, TrainState* st, const Py_ssize_t* perm,
                       Py_ssize_t start, Py_ssize_t stop, double lr, int tid, int T,
                       fnn_barrier* barrier, double* result) noexcept nogil:
    # thread tid of T: its parts of the steps on the batches of perm[start:stop] (see above
    # and _train_steps: the same loss sum, disbanding and results)
    cdef int P = st.unit_parts[0], q, slow = 0
    cdef Py_ssize_t s = start, B, k = 0, d = st.dims[2], size_x = st.B * st.dims[0]
    cdef Py_ssize_t size_z = P * st.B * d
    cdef long sense = 0
    cdef long long t = st.t
    cdef double total = result[0], batch, mark = clock()
    cdef floating* Xb
    cdef floating* pZ
    cdef floating* Z2 = <floating*>st.own + tid * _own_size(st)
    cdef floating* dZ2 = Z2 + st.B * d
    cdef floating* losses = dZ2 + st.B * d
    cdef floating* scratch = <floating*>st.scratch + tid * d
    # the stretch's batches read where X holds them, or each gathered during the step before
    cdef floating* Xs = _in_place(tag, st, perm + start, stop - start)
    if Xs == NULL:
        _gather_share(tag, st, perm + s, min(st.B, stop - s), <floating*>st.Xb3, tid, T)
    _long_wait(barrier, T, &sense, &mark, &slow)
    while s < stop:
        B = st.B if s + st.B <= stop else stop - s
        Xb = Xs + (s - start) * st.dims[0] if Xs != NULL \
            else <floating*>st.Xb3 + (k % 3) * size_x
        pZ = <floating*>st.pZ + (k % 2) * size_z
        # phase A
        q = tid
        while q < P:
            _units_forward(tag, st, Xb, B, q, pZ + q * st.B * d)
            q += T
        if s + B < stop and Xs == NULL:
            _gather_share(tag, st, perm + s + B, min(st.B, stop - s - B),
                          <floating*>st.Xb3 + ((k + 1) % 3) * size_x, tid, T)
        if T > 1 and st.disband_from < 0 and (slow >= 2 or (tid == 0 and k == st.disband_at)):
            st.disband_from = k
        _long_wait(barrier, T, &sense, &mark, &slow)
        if tid == 0 and k > 0:
            _time_step(st, k - 1)
        if T > 1 and 0 <= st.disband_from <= k:  # thread 0 goes on alone from here
            if tid != 0:
                return
            st.disband, T = True, 1
        # phase B: the output, its loss and dZ2 (every thread), then the parts'
        memcpy(Z2, pZ, B * d * sizeof(floating))
        for q in range(1, P):
            if floating is float:
                fnn_add_f(Z2, pZ + q * st.B * d, B * d)
            else:
                fnn_add_d(Z2, pZ + q * st.B * d, B * d)
        activate_row(Z2, <floating*>NULL, B * d, st.acts[1])
        _output_loss(tag, st, perm + s, B, 0, B, Z2, dZ2, losses, scratch)
        mul_grad_row(dZ2, Z2, dZ2, B * d, st.acts[1])
        batch = _batch_loss(tag, st, perm + s, B, losses)
        total += batch
        if not isfinite(batch):
            break
        t += 1
        q = tid
        while q < P:
            _units_backward(tag, st, Xb, B, q, dZ2, lr, t)
            q += T
        k += 1
        s += B
    if tid == 0:
        result[0] = total
        st.t = t


cdef struct StepsJob:  # the steps on the batches of perm[start:stop], for their threads
    TrainState* st
    const Py_ssize_t* perm
    Py_ssize_t start
    Py_ssize_t stop
    Py_ssize_t n  # the epoch's length (perm[:n])
    double lr
    bint single  # float32
    fnn_barrier barrier
    double total
    double delay  # (tests) seconds threads 1.. wait before their parts
    fnn_barrier start_line  # all the threads of a team have started ...
    double began  # ... at this clock (a stretch's time: see _train_batches)


cdef void _steps_job(void* arg, int tid, int T) noexcept nogil:
    # thread tid of T: its parts of the steps (see _train_steps)
    cdef StepsJob* job = <StepsJob*>arg
    cdef double until
    cdef long sense = 0
    if tid > 0:  # BLAS held once for its products here (the caller holds it for thread 0)
        hold_blas()
    if T > 1:
        fnn_barrier_wait(&job.start_line, T, &sense)
        if tid == 0:
            job.began = clock()
    if tid > 0 and job.delay > 0:
        until = clock() + job.delay
        while clock() < until:
            pass
    if job.st.by_units:
        if job.single:
            _units_steps(<float*>NULL, job.st, job.perm, job.start, job.stop, job.lr, tid, T,
                         &job.barrier, &job.total)
        else:
            _units_steps(<double*>NULL, job.st, job.perm, job.start, job.stop, job.lr, tid, T,
                         &job.barrier, &job.total)
    elif job.single:
        _train_steps(<float*>NULL, job.st, job.perm, job.start, job.stop, job.n, job.lr, tid,
                     T, &job.barrier, &job.total)
    else:
        _train_steps(<double*>NULL, job.st, job.perm, job.start, job.stop, job.n, job.lr, tid,
                     T, &job.barrier, &job.total)
    if tid > 0:
        release_blas()


cdef double _train_batches(TrainState* st, bint single, const Py_ssize_t* perm,
                           Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n, double lr,
                           double total, int threads, double* step_seconds,
                           double* whole_seconds, double delay=0) noexcept nogil:
    # the steps on the batches of perm[start:stop] (of an epoch's n), on up to ``threads`` of
    # fastnn's threads; returns ``total`` plus their summed (weighted) losses, one batch at a
    # time (the same sum however an epoch is cut into stretches), non-finite after a
    # diverging batch. ``step_seconds``: the time a step took, over the steps after the
    # stretch's first where there are any (_time_step), else over all from when a team's
    # threads had all started. Neither waking a worker that slept (while one thread ran the
    # stretch before) nor a first step is the stretch's speed: a first step moves the
    # weights' lines to the cores that update them now (a team's after a stretch on one
    # thread; both ways). In a digits fit (64-128-10, 32 rows, 2 cores) a 4-step team
    # stretch after one thread's took 14.7 us a step whole, 13.4 after its first step (one
    # thread's: 19.9 and 19.3): a probe timed whole is biased against the one it times.
    # ``whole_seconds``: the stretch's time whole, from the call to the return (see _after)
    cdef StepsJob job
    cdef Py_ssize_t steps = (stop - start + st.B - 1) // st.B
    job.st, job.perm, job.start, job.stop, job.lr = st, perm, start, stop, lr
    job.n = n
    job.single, job.total, job.delay = single, total, delay
    fnn_barrier_init(&job.barrier)
    fnn_barrier_init(&job.start_line)
    st.disband, st.disband_from, st.timed_steps = False, -1, 0
    hold_blas()  # (once for the stretch's products)
    cdef double called = clock()
    job.began = called
    run(_steps_job, &job, threads)
    whole_seconds[0] = clock() - called
    if st.timed_steps > 0:
        step_seconds[0] = (st.timed_to - st.timed_from) / st.timed_steps
    else:
        step_seconds[0] = (called + whole_seconds[0] - job.began) / max(steps, 1)
    release_blas()
    return job.total


cdef class _Loop:
    """One fit's native state (see the design note at the top), built from one spec object
    (fastnn.backends.TrainSpec): the model's arrays, the loss, the optimizer and its state,
    the data. Every array in it is C-contiguous, of one float dtype (labels: intp; sample
    weights: float64) and is kept alive here; the weights are the model's own arrays,
    updated in place. X may also be a float32/float64 array of any layout (aligned, native
    byte order: converted as gathered) or CSR rows of the fit's dtype (the first layer then
    held as W^T); see the design note. ``grad_weights``/``grad_biases`` (the objective's):
    arrays of W's and b's shapes for the gradient (e.g. views into one flat buffer); with
    ``first_transposed`` the first of weights and grad_weights are W^T (n_in, width)."""

    def __cinit__(self, spec):
        cdef list W = list(spec.weights), b = list(spec.biases)
        cdef list state1 = list(spec.state[0]) or [None] * len(W)
        cdef list state2 = list(spec.state[1]) or [None] * len(W)
        X = spec.X
        gW = None if spec.grad_weights is None else list(spec.grad_weights)
        gb = None if spec.grad_biases is None else list(spec.grad_biases)
        cdef bint first_transposed = spec.first_transposed
        cdef int L = len(W)
        cdef TrainState* st = &self.st
        if L > MAX_LAYERS:
            raise ValueError(f"at most {MAX_LAYERS} layers are supported, got {L}")
        self.typenum = cnp.PyArray_TYPE(<cnp.ndarray>W[0])
        self.N = X.shape[0]
        cdef Py_ssize_t B = min(<Py_ssize_t>spec.batch_size, self.N)
        st.n_layers, st.loss, st.loss_scale = L, spec.loss.kernel, spec.loss.scale
        st.optimizer, st.t, st.B = OPTIMIZER_CODES[spec.optimizer], spec.t, B
        st.nesterov, st.momentum, st.beta1, st.beta2 = (spec.nesterov, spec.momentum,
                                                        spec.beta1, spec.beta2)
        st.eps, st.weight_decay = spec.eps, spec.weight_decay
        st.dims[0] = X.shape[1]
        self.keep = [X, spec.Y, spec.sample_weight]
        self._bind_X(X)
        self.weights = W
        units, weights = self._bind_layers(W, b, [_ACTIVATION_CODES[a] for a in spec.activations],
                                           state1, state2, gW, gb, first_transposed)
        self.one_step = spec.one_step
        self._plan_parts(X, gW is None, first_transposed)
        self._hold_mirrors(W, state1, state2, first_transposed)
        self.updated = [A for pair in zip(W, b) for A in pair if A is not None] + [
            A for states in (state1, state2) for s in states if s is not None
            for A in s if A is not None]
        self.chunk = max(tune.signal_batches, int(tune.signal_work / (B * self.work_per_row + 1)))
        self._allocate(X, spec.Y, spec.sample_weight, units, weights)
        self.team_stretches = self.alone_stretches = self.disbanded = 0
        self.team_speed = self.alone_speed = 0
        self.warm = False
        self.since_probe, self.hold, self.probing, self.retry = 0, tune.hold_steps, False, 0
        st.disband_at = -1

    cdef tuple _bind_layers(self, list W, list b, list acts, list state1, list state2, gW, gb,
                            bint first_transposed):
        # each layer's arrays into the state: W, b, their gradients (the objective's, or
        # zeros), the batch's U and dU, the optimizer's state; returns (units, weights), the
        # units of all layers and the weights a part's share of the gradient holds
        cdef TrainState* st = &self.st
        cdef Py_ssize_t B = st.B
        cdef bint sparse = st.xkind == X_CSR
        cdef int l
        dtype = W[0].dtype
        keep = self.keep
        units = weights = 0
        for l in range(st.n_layers):
            st.dims[l + 1] = W[l].shape[1 if l == 0 and first_transposed else 0]
            st.acc_at[l], st.w_at[l] = units, weights
            units += st.dims[l + 1]
            if not (sparse and l == 0):  # (CSR rows: no parts' shares of dW^T, see loss_grad)
                weights += W[l].size
            st.acts[l] = acts[l]
            gWl = np.zeros_like(W[l]) if gW is None else gW[l]
            U, dU = np.empty((B, st.dims[l + 1]), dtype), np.empty((B, st.dims[l + 1]), dtype)
            keep += [W[l], gWl, U, dU]
            st.W[l] = <void*>cnp.PyArray_DATA(W[l])
            st.gW[l] = <void*>cnp.PyArray_DATA(gWl)
            st.U[l] = <void*>cnp.PyArray_DATA(U)
            st.dU[l] = <void*>cnp.PyArray_DATA(dU)
            st.b[l] = st.gb[l] = st.mW[l] = st.mb[l] = st.vW[l] = st.vb[l] = st.WT[l] = NULL
            if b[l] is not None:
                gbl = np.zeros_like(b[l]) if gb is None else gb[l]
                keep += [b[l], gbl]
                st.b[l] = <void*>cnp.PyArray_DATA(b[l])
                st.gb[l] = <void*>cnp.PyArray_DATA(gbl)
            # optimizer state: per layer a (W-state, b-state) pair or None
            if state1[l] is not None:
                keep.append(state1[l])
                st.mW[l] = <void*>cnp.PyArray_DATA(state1[l][0])
                if state1[l][1] is not None:
                    st.mb[l] = <void*>cnp.PyArray_DATA(state1[l][1])
            if state2[l] is not None:
                keep.append(state2[l])
                st.vW[l] = <void*>cnp.PyArray_DATA(state2[l][0])
                if state2[l][1] is not None:
                    st.vb[l] = <void*>cnp.PyArray_DATA(state2[l][1])
        return units, weights

    cdef _plan_parts(self, X, bint own_grad, bint first_transposed):
        # the parts of a step, by the shapes alone (see _tuning.parts): the rows phase's, a
        # power of two of blocks of the batch's rows, and per layer the units phase's; and
        # whether the first layer is held transposed. ``own_grad``: the gradient lives in the
        # loop (a fit), not in the objective's arrays
        cdef TrainState* st = &self.st
        cdef Py_ssize_t B = st.B
        cdef int L = st.n_layers, l
        cdef bint sparse = st.xkind == X_CSR
        work = [B * st.dims[l] * st.dims[l + 1] for l in range(L)]
        # CSR rows: the first layer's products cost their non-zeros, its update (Adam, every
        # row) K M, or (SGD, lazy) the rows the batch reaches
        st.lazy = sparse and st.optimizer == OPT_SGD and own_grad
        update0 = work[0]
        if sparse:
            work[0] = max(1, X.nnz * B // self.N) * st.dims[1]
            update0 = work[0] if st.lazy or not own_grad else st.dims[0] * st.dims[1]
        self.work_per_row = (3 * sum(work) + update0 - work[0]) / B
        st.row_work = 2 * sum(work) / B  # forward and dU, about two thirds of a step
        # (a row part reads every layer's W: fewer, larger parts where W is large)
        st.widest = max(work) / B
        R = row_parts(tune, B * st.row_work, B, st.widest)
        # a small first layer lives here transposed, W^T (n_in, dims[1]), with its optimizer
        # state (see _linear_forward_t). run_epoch copies them in from the model's arrays and
        # back out, so between epochs the model's own arrays hold the weights. It pays for,
        # in an epoch of MIRROR_STEPS steps or more: a small product (BLAS's small-matrix
        # kernels, 2.7x at 16 x 64->128 per part), and a layer of up to MIRROR_WEIGHTS weights
        # (OpenBLAS's packing: 'nn' is 27% faster than 'nt' at 64 x 784->128 per part, 18% at
        # 128 x 784->256; the two copies, ~0.25 ns a weight each, take 50 us at 784 x 128).
        # Large layers gain 3-8% a step, less than transposing them costs (ms at 1024 x 1024).
        # (a loop that takes one batch per call, train_on_batch's, would copy in and out on
        # every step: 7 us of a 15 us step at 32 x 64->100)
        # (CSR rows: always, W^T is what a non-zero reads)
        # (an epoch of fewer steps, an estimator's partial_fit of one batch, would copy in and
        # out for a step or two: 3 transposes of 64 x 128 with Adam, ~40% of its 16-row step)
        st.transposed = first_transposed or sparse or own_grad and not self.one_step and (
            (self.N + B - 1) // B >= tune.mirror_steps and (
                work[0] // R <= tune.blas_small
                or st.dims[0] * st.dims[1] <= tune.mirror_weights))
        self.max_parts = R
        for l in range(L):
            # the first layer held transposed splits its inputs (rows of W^T), others units
            st.unit_parts[l] = parts(tune, update0 if l == 0 else work[l],
                                     st.dims[l] if l == 0 and st.transposed else st.dims[l + 1])
            self.max_parts = max(self.max_parts, st.unit_parts[l])
        # one hidden layer on dense rows (not loss_grad's): the step split by hidden units
        by_units = unit_parts(tune, work[0], st.dims[1])
        st.by_units = (L == 2 and not sparse and own_grad and not first_transposed
                       and by_units > 1)
        if st.by_units:
            st.unit_parts[0] = self.max_parts = by_units
        st.team = self.max_parts > 1
        st.grad_only, st.norm = False, 0

    cdef _hold_mirrors(self, list W, list state1, list state2, bint first_transposed):
        # the arrays the loop holds in its own layout during an epoch (see _mirror): the
        # first layer's W^T and its optimizer state when held transposed, and (a step split
        # by units) each part's columns of the output layer's W whole too, W_q (d, j1 - j0)
        # at d j0, and its first layer's W_q^T whole: _units_steps
        cdef TrainState* st = &self.st
        cdef void** slots[3]
        cdef int l
        self.mirrors = []  # (the model's array (M, K), the loop's copy, parts, first layer)
        for l in range(2 if st.by_units else 1):
            slots[0], slots[1], slots[2] = &st.W[l], &st.mW[l], &st.vW[l]
            for i, arr in enumerate((W[l], state1[l] and state1[l][0],
                                     state2[l] and state2[l][0])):
                if arr is not None and (l == 1 or st.transposed and not first_transposed):
                    mirror = np.empty(arr.size, W[0].dtype)
                    self.mirrors.append((arr, mirror, st.unit_parts[0] if st.by_units else 1,
                                         l == 0))
                    slots[i][0] = cnp.PyArray_DATA(mirror)
        self.keep.append(self.mirrors)

    cdef _allocate(self, X, cnp.ndarray Y, sample_weight, Py_ssize_t units,
                   Py_ssize_t weights):
        # the step's workspaces: the gathered batch (CSR rows: none, the first layer reads
        # their non-zeros), a step split by units' three batches and partial outputs, the
        # losses, the parts' scratch rows, the float64 bias sums; CSR rows' stamps
        cdef TrainState* st = &self.st
        cdef Py_ssize_t B = st.B
        cdef int L = st.n_layers
        cdef bint sparse = st.xkind == X_CSR
        dtype = self.weights[0].dtype
        keep = self.keep
        Xb = None if sparse else np.empty((B, X.shape[1]), dtype)
        st.Xb3 = st.pZ = st.own = NULL
        if st.by_units:  # (see _units_steps)
            Xb3 = np.empty((3, B, X.shape[1]), dtype)
            Xb = Xb3[0]
            pZ = np.empty((2, self.max_parts, B, st.dims[L]), dtype)
            own = np.empty((self.max_parts, _own_size(&self.st)), dtype)
            keep += [Xb3, pZ, own]
            st.Xb3, st.pZ, st.own = (cnp.PyArray_DATA(Xb3), cnp.PyArray_DATA(pZ),
                                     cnp.PyArray_DATA(own))
        losses = np.empty(B, dtype)
        scratch = np.empty((tune.max_parts, st.dims[L]), dtype)
        acc = np.empty(units, np.float64)
        st.acc_at[L], st.w_at[L] = units, weights
        st.pW, st.pb = NULL, NULL
        keep += [Xb, losses, scratch, acc]
        st.Y = cnp.PyArray_DATA(Y)
        st.sw = cnp.PyArray_DATA(<cnp.ndarray>sample_weight) if sample_weight is not None else NULL
        st.Xb = cnp.PyArray_DATA(Xb) if Xb is not None else NULL
        st.scratch = cnp.PyArray_DATA(scratch)
        st.losses = cnp.PyArray_DATA(losses)
        st.acc = <double*>cnp.PyArray_DATA(acc)
        st.stamp = st.current = st.touched = NULL
        if sparse:  # per input feature: the stamps, (lazy) the steps, a step's rows
            rows_of = np.empty((3 if st.lazy else 2, st.dims[0]), np.intp)
            keep.append(rows_of)
            st.stamp = <Py_ssize_t*>cnp.PyArray_DATA(rows_of)
            st.touched = st.stamp + st.dims[0]
            if st.lazy:
                st.current = st.touched + st.dims[0]

    cdef _bind_X(self, X):
        # how the loop reads X (TrainState.xkind) and where
        cdef TrainState* st = &self.st
        cdef cnp.ndarray a, data, indices, indptr
        cdef Py_ssize_t size
        if isinstance(X, np.ndarray):
            a = <cnp.ndarray>X
            if not readable(a) or a.shape[1] != st.dims[0]:
                raise ValueError("X must be a 2-D float32 or float64 array with the loop's "
                                 "columns, aligned, in native byte order")
            size = cnp.PyArray_ITEMSIZE(a)
            st.x64 = cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT64
            st.xs0, st.xs1 = a.strides[0] // size, a.strides[1] // size
            # a C array of the fit's dtype has its rows copied, any other converted
            st.xkind = X_C if cnp.PyArray_TYPE(a) == self.typenum and st.xs1 == 1 \
                and st.xs0 == st.dims[0] else X_ROWS
            st.X = cnp.PyArray_DATA(a)
            st.Xdata = st.Xind = st.Xptr = NULL
        else:  # CSR rows (fastnn._validation.sparse_rows)
            data, indices, indptr = X.data, X.indices, X.indptr
            if (cnp.PyArray_TYPE(data) != self.typenum or X.shape[1] != st.dims[0]
                    or indices.dtype != indptr.dtype
                    or indices.dtype not in (np.int32, np.int64)
                    or not (data.flags.c_contiguous and indices.flags.c_contiguous
                            and indptr.flags.c_contiguous)):
                raise ValueError("X must be CSR rows of the fit's dtype (see "
                                 "fastnn._validation.sparse_rows)")
            st.xkind = X_CSR
            st.idx64 = indices.dtype == np.int64
            st.Xdata, st.Xind = cnp.PyArray_DATA(data), cnp.PyArray_DATA(indices)
            st.Xptr, st.X = cnp.PyArray_DATA(indptr), NULL
            X = (X, data, indices, indptr)  # (the arrays the pointers are into, kept alive)
        self.keep[0] = X

    cdef void _start_lazy(self):
        # CSR rows, before an epoch: no row of gW[0] stamped, (lazy) every row of W^T
        # current (run_epoch ends with them all caught up)
        cdef TrainState* st = &self.st
        cdef Py_ssize_t k
        if st.xkind != X_CSR:
            return
        for k in range(st.dims[0]):
            st.stamp[k] = -1
            if st.current != NULL:
                st.current[k] = st.t

    cdef void _finish_lazy(self, bint single, double lr):
        # CSR rows, after an epoch (or an exception leaving it): the rows of W^T a lazy
        # update left behind, caught up (see _sparse_units_pass)
        if single:
            _lazy_flush(<float*>NULL, &self.st, lr)
        else:
            _lazy_flush(<double*>NULL, &self.st, lr)

    cdef void _mirror(self, bint into_loop):
        # copy arrays between the model's layout and the loop's: the first layer's W (M, K)
        # as W^T (K, M); a step split by units (P parts) holds each part's W_q^T (K, j1 - j0)
        # of the first layer whole, at K j0, and each part's columns of the output layer's
        # W (d, M), W_q (d, j1 - j0), whole at d j0
        cdef cnp.ndarray a, b
        cdef Py_ssize_t rows, cols, i, j0, j1, size
        cdef int q, P
        cdef bint first
        cdef char* A
        cdef char* held
        for a, b, P, first in self.mirrors:
            A, held, size = <char*>cnp.PyArray_DATA(a), <char*>cnp.PyArray_DATA(b), a.itemsize
            rows, cols = a.shape[0], a.shape[1]
            for q in range(P):
                if first:  # by rows of W (M, K)
                    j0, j1 = q * rows // P, (q + 1) * rows // P
                    if into_loop:
                        self._transpose(A + j0 * cols * size, held + j0 * cols * size,
                                        j1 - j0, cols)
                    else:
                        self._transpose(held + j0 * cols * size, A + j0 * cols * size, cols,
                                        j1 - j0)
                    continue
                j0, j1 = q * cols // P, (q + 1) * cols // P  # by columns of W (d, M)
                for i in range(rows):
                    if into_loop:
                        memcpy(held + (rows * j0 + i * (j1 - j0)) * size,
                               A + (i * cols + j0) * size, (j1 - j0) * size)
                    else:
                        memcpy(A + (i * cols + j0) * size,
                               held + (rows * j0 + i * (j1 - j0)) * size, (j1 - j0) * size)

    cdef void _transpose(self, void* A, void* B, Py_ssize_t rows, Py_ssize_t cols):
        # B (cols, rows) = A (rows, cols)^T, of the fit's dtype
        if self.typenum == cnp.NPY_FLOAT32:
            transpose(<float*>A, <float*>B, rows, cols)
        else:
            transpose(<double*>A, <double*>B, rows, cols)

    @property
    def transposed(self):
        """(Tests, diagnostics) whether the first layer is held transposed in an epoch."""
        return bool(self.st.transposed)

    @property
    def by_units(self):
        """(Tests, diagnostics) how many parts of hidden units a step is split into when it
        is split by units alone (one hidden layer, dense rows: see _units_steps), else 0."""
        return self.st.unit_parts[0] if self.st.by_units else 0

    @property
    def t(self):
        """Optimizer steps taken (Adam's bias correction uses it)."""
        return self.st.t

    @t.setter
    def t(self, long long value):
        self.st.t = value

    def bind(self, X, cnp.ndarray Y, sample_weight):
        """Go on with new data of the same shapes (train_on_batch: one batch after another
        through one loop and its workspaces): X (a dense array, or CSR rows if the loop was
        built on CSR rows), Y and sample_weight (float64 or None) as the spec's were, of the
        same shapes and dtypes; the caller has checked their values."""
        old_Y, old_sw = self.keep[1], self.keep[2]
        if (X.shape[0] != self.N or len(X.shape) != 2
                or isinstance(X, np.ndarray) != (self.st.xkind != X_CSR)
                or Y.dtype != old_Y.dtype or (<object>Y).shape != old_Y.shape
                or not Y.flags.c_contiguous or (sample_weight is None) != (old_sw is None)
                or (sample_weight is not None and (sample_weight.dtype != np.float64
                                                   or sample_weight.shape != (self.N,)
                                                   or not sample_weight.flags.c_contiguous))):
            raise ValueError("bind needs data of the shapes and dtypes the loop was built for")
        self._bind_X(X)
        self.keep[1], self.keep[2] = Y, sample_weight
        self.st.Y = cnp.PyArray_DATA(Y)
        self.st.sw = cnp.PyArray_DATA(<cnp.ndarray>sample_weight) \
            if sample_weight is not None else NULL

    cdef int _team_size(self):
        # the threads a step's parts may run on (the parts themselves do not depend on it)
        return <int>min(self.max_parts, limit()) if self.st.team else 1

    cdef int _threads_for(self, Py_ssize_t* steps):
        # the threads for the next stretch, and at most how many steps it takes (see team_speed)
        cdef int team = self._team_size(), faster
        self.probing = False
        if team <= 1:
            return 1
        if self.team_speed == 0 or self.alone_speed == 0:  # time each first
            steps[0] = min(steps[0], tune.probe_steps)
            return team if self.team_speed == 0 else 1
        faster = team if self.team_speed <= self.alone_speed else 1
        if self.since_probe >= self.hold:  # time the slower again
            self.probing = True
            steps[0] = min(steps[0], tune.probe_steps)
            return 1 if faster > 1 else team
        steps[0] = min(steps[0], self.hold - self.since_probe)
        return faster

    cdef void _after(self, int threads, Py_ssize_t steps, double step_seconds,
                     double whole_seconds):
        # record a stretch of ``steps`` steps on ``threads`` threads, timed at
        # ``step_seconds`` a step, ``whole_seconds`` whole (_train_batches)
        cdef bint team_was_faster = self.team_speed <= self.alone_speed
        cdef double retry, alone, lost = whole_seconds - steps * step_seconds
        # a team stretch that lost more than off_core, and more than its timed steps took,
        # outside them (its partner's start, its first step, its end) had a partner off its
        # core (as when a BLAS's threads spin after a call: a digits fit's 4-step stretches
        # took 7-12 ms, not 0.2, for 110 ms after a NumPy product): a disband too
        cdef bint lost_core = threads > 1 and lost > max(tune.off_core, steps * step_seconds)
        cdef bint disbanded = threads > 1 and (self.st.disband or lost_core)
        if threads <= 1:
            self.alone_stretches += 1
        elif disbanded:
            self.disbanded += 1
        else:
            self.team_stretches += 1
        if self._team_size() <= 1:
            return
        if not self.warm:
            # the loop's first stretch (a team's, 4 steps) is its cold start: first touches of
            # its workspaces (page faults), a fresh worker's caches, and its team may disband
            # on them. Timed, it made a (512, 784-512-10) fit of 4-step calls run its next 16
            # calls alone (4.1-4.7 against the team's 2.2-2.5 ms a step) in 2 of 4 tries;
            # the next stretch times the team again, unless this one lost its partner's core
            self.warm = True
            if not lost_core:
                return
        if disbanded:
            # a partner that did not get its core, maybe for a moment (another process, the
            # host): one thread from here, the team tried again soon, later at each disband
            # in a row, and not before one thread has run twice as long as the team lost
            # against it in this stretch, so that tries of a team whose partner stays off its
            # core cost at most a third of the time (the NumPy case above: a digits fit took
            # 113-135 ms with the team tried again after 4, 8, 16, ... steps, 31-41 ms so,
            # 27-31 on one thread). (The hold it had won would have kept the fit on one
            # thread for up to max_hold_steps steps, at half speed on 2 cores.)
            self.team_speed = INFINITY
            retry = 2 * self.retry if self.retry else tune.probe_steps
            alone = self.alone_speed if self.alone_speed > 0 else threads * step_seconds
            if alone > 0:
                retry = max(retry, ceil(2 * (whole_seconds / alone - steps)))
            self.retry = <Py_ssize_t>min(retry, <double>tune.max_hold_steps)
            self.since_probe, self.hold = 0, self.retry
            return
        if threads > 1:
            self.team_speed, self.retry = step_seconds, 0
        else:
            self.alone_speed = step_seconds
        if (self.team_speed <= self.alone_speed) != team_was_faster:
            # the other is faster now (timed again, or the faster timed slower while
            # running its hold): run it for hold_steps, then time this one again
            self.since_probe, self.hold = 0, self._team_hold(tune.hold_steps)
        elif self.probing:
            self.since_probe, self.hold = 0, self._team_hold(2 * self.hold)
        else:
            self.since_probe += steps

    cdef Py_ssize_t _team_hold(self, Py_ssize_t hold):
        # the hold on the faster (at most max_hold_steps); while the team is the faster, at
        # least the steps that make timing one thread again (probe_steps steps at alone_speed
        # instead of team_speed) cost at most probe_share of the time. A team twice as fast
        # as one thread (a (512, 784-512-10) step on 2 cores: 5.2 against 10.2 ms) was timed
        # alone after 16, 32, 64, ... steps: a whole 4-step fit call at half speed in 2 of
        # the benchmark's 21 samples. (Not while one thread is the faster: a team slowed by
        # another process's threads gets its cores back soon, and is timed again soon.)
        cdef double bound = 0
        if 0 < self.team_speed < self.alone_speed:
            bound = ceil(tune.probe_steps * (self.alone_speed / self.team_speed - 1)
                         / tune.probe_share)
        return <Py_ssize_t>min(max(<double>hold, bound), <double>tune.max_hold_steps)

    cdef void _save(self):
        # copy every array a step writes (guarded steps: restored if the step diverges)
        cdef cnp.ndarray a, c
        if self.saved is None:
            self.saved = [(a, np.empty_like(a)) for a in self.updated]
        for a, c in self.saved:
            memcpy(cnp.PyArray_DATA(c), cnp.PyArray_DATA(a), cnp.PyArray_NBYTES(a))

    cdef bint _all_finite(self):
        cdef cnp.ndarray a
        for a in self.updated:
            if self.typenum == cnp.NPY_FLOAT32:
                if not fnn_all_finite_f(<float*>cnp.PyArray_DATA(a), cnp.PyArray_SIZE(a)):
                    return False
            elif not fnn_all_finite_d(<double*>cnp.PyArray_DATA(a), cnp.PyArray_SIZE(a)):
                return False
        return True

    cdef void _restore_saved(self):
        cdef cnp.ndarray a, c
        for a, c in self.saved:
            memcpy(cnp.PyArray_DATA(a), cnp.PyArray_DATA(c), cnp.PyArray_NBYTES(a))


cdef class EpochRunner(_Loop):
    """Mini-batch epochs of one fit in native code: ``run_epoch`` (see the design note)."""

    def run_epoch(self, cnp.ndarray perm, double lr, bint reload=True, bint guard=False,
                  object progress=None):
        """Train on the samples in the order ``perm`` (intp, a permutation of 0..N-1) in
        mini-batches; return the summed (weighted) loss, or a non-finite number as soon as
        one batch diverges (the weights then hold that batch's inputs' last update).
        ``reload=False``: the model's arrays are as the previous call left them (nothing
        wrote them since), so a first layer held transposed is not copied in again.
        ``guard``: the arrays are copied first, and put back when the loss or any updated
        array is not finite (the result is then NaN or the non-finite loss), or when an
        exception (Ctrl-C, one from ``progress``) leaves the epoch. ``progress``: a
        callable, called with the samples done so far after each stretch of batches (where
        the loop checks for Ctrl-C, every few milliseconds of work)."""
        cdef Py_ssize_t n = perm.shape[0], start = 0, stop, steps
        cdef const Py_ssize_t* p = <Py_ssize_t*>cnp.PyArray_DATA(perm)
        cdef double total = 0, part, seconds, whole
        cdef int threads
        cdef bint single = self.typenum == cnp.NPY_FLOAT32
        if guard:
            self._save()
        if reload:
            self._mirror(True)
        self._start_lazy()
        try:
            while start < n:
                steps = self.chunk
                threads = self._threads_for(&steps)
                stop = min(start + self.st.B * steps, n)
                # an epoch too short to pay for waking the team (a few small batches) runs on
                # one thread; train_on_batch's steps follow each other within the time the
                # team stays awake, and its timing (_threads_for) decides
                if not self.one_step and min(n - start, self.st.B * self.chunk) \
                        * self.work_per_row < tune.team_epoch:
                    if threads > 1:
                        self.probing = False  # (no probe of the team: the next stretch's)
                    threads = 1
                with nogil:
                    part = _train_batches(&self.st, single, p, start, stop, n, lr, total,
                                          threads, &seconds, &whole)
                self._after(threads, (stop - start + self.st.B - 1) // self.st.B, seconds,
                            whole)
                total = part
                if not isfinite(part):
                    break
                PyErr_CheckSignals()
                if progress is not None:
                    progress(stop)
                start = stop
        except BaseException:
            self._finish_lazy(single, lr)
            self._mirror(False)
            if guard:
                self._restore_saved()
            raise
        self._finish_lazy(single, lr)
        self._mirror(False)
        if guard and not (isfinite(total) and self._all_finite()):
            self._restore_saved()
            return total if not isfinite(total) else NAN
        return total


cdef class Objective(_Loop):
    """The full-batch loss and its gradient (the lbfgs solver's objective): ``loss_grad``;
    the spec's batch_size holds all N rows."""

    cdef _prepare_loss_grad(self):
        cdef TrainState* st = &self.st
        cdef Py_ssize_t R = row_parts(tune, self.N * st.row_work, self.N, st.widest) \
            if st.team else 1
        cdef cnp.ndarray pW, pb
        self.all_rows = np.arange(self.N, dtype=np.intp)
        # the forward of a small layer l > 0 through a copy of W^T, made per call: a
        # gemm('n', 'n') (BLAS's small-matrix kernels refuse X W^T, which packs W)
        self.copies = [(l, W, np.empty((W.shape[1], W.shape[0]), W.dtype))
                       for l, W in enumerate(self.weights)
                       if l > 0 and W.size <= tune.mirror_weights]
        if R > 1:  # each part's share of the gradient (see _partial_grads)
            pW = np.empty(R * st.w_at[st.n_layers], self.weights[0].dtype)
            pb = np.empty(R * st.acc_at[st.n_layers], np.float64)
            self.keep += [pW, pb]
            st.pW, st.pb = cnp.PyArray_DATA(pW), <double*>cnp.PyArray_DATA(pb)

    def loss_grad(self, double norm):
        """Forward, loss and backward over all N training samples as one batch (the Trainer
        must be built with batch_size >= N), no update: the gradient of sum_i w_i loss_i / norm
        into the gradient arrays; returns sum_i w_i loss_i (w_i = 1 without sample weights).
        The objective and gradient of the estimators' lbfgs solver."""
        cdef double total = 0
        cdef long long t = self.st.t
        cdef Py_ssize_t steps = 1
        cdef int threads = self._threads_for(&steps)
        cdef const Py_ssize_t* rows
        cdef void* Xb
        cdef bint single = self.typenum == cnp.NPY_FLOAT32
        cdef double delay = self.partner_delay, seconds, whole
        if self.st.B != self.N:
            raise ValueError(f"loss_grad needs batch_size >= N ({self.N}), got {self.st.B}")
        if self.st.xkind == X_ROWS:
            raise ValueError("loss_grad reads X in place: a C array of the fit's dtype, or CSR "
                             "rows")
        if self.all_rows is None:
            self._prepare_loss_grad()
        rows = <Py_ssize_t*>cnp.PyArray_DATA(self.all_rows)
        self.st.grad_only, self.st.norm = True, norm
        Xb = self.st.Xb
        self.st.Xb = self.st.X  # all rows in order: the batch is X itself
        for l, W, WT in self.copies:  # (C-contiguous, of the fit's dtype)
            self._transpose(cnp.PyArray_DATA(<cnp.ndarray>W), cnp.PyArray_DATA(<cnp.ndarray>WT),
                            W.shape[0], W.shape[1])
            self.st.WT[<int>l] = cnp.PyArray_DATA(WT)
        try:
            with nogil:
                total = _train_batches(&self.st, single, rows, 0, self.N, self.N, 0.0, 0.0,
                                       threads, &seconds, &whole, delay)
            self._after(threads, 1, seconds, whole)
        finally:
            self.st.grad_only, self.st.norm, self.st.t = False, 0, t
            self.st.Xb = Xb
            for l, W, WT in self.copies:
                self.st.WT[<int>l] = NULL
        return total


# ---------------------------------------------------------------------------------------
# Helpers of fit and of the lbfgs solver
# ---------------------------------------------------------------------------------------

cdef double _penalized(const floating* grad, const floating* theta, double* g, Py_ssize_t n,
                       Py_ssize_t size, double a) noexcept nogil:
    # g = grad + a theta on entries 0..n-1, g = grad after; returns sum_i<n theta_i^2
    # (8 lanes, in a fixed order)
    cdef double lane[8]
    cdef double w
    cdef Py_ssize_t i
    for i in range(8):
        lane[i] = 0
    for i in range(n):
        w = theta[i]
        g[i] = grad[i] + a * w
        lane[i & 7] += w * w
    for i in range(n, size):
        g[i] = grad[i]
    return fnn_lanes8(lane)


def penalized_gradient(cnp.ndarray grad, cnp.ndarray theta, Py_ssize_t n, double a):
    """(g, s) for the lbfgs solver: g the float64 gradient ``grad`` plus the L2 penalty's
    ``a`` theta on its first ``n`` entries (the weights), s = sum of their squares (in
    float64: inf only once float64 overflows, or for an inf weight). ``grad``, ``theta``:
    1-D, C-contiguous, of one float dtype, 0 <= n <= size."""
    cdef Py_ssize_t size = grad.shape[0]
    cdef cnp.ndarray g = np.empty(size, np.float64)
    cdef double s
    if cnp.PyArray_TYPE(grad) == cnp.NPY_FLOAT32:
        with nogil:
            s = _penalized(<float*>cnp.PyArray_DATA(grad), <float*>cnp.PyArray_DATA(theta),
                           <double*>cnp.PyArray_DATA(g), n, size, a)
    else:
        with nogil:
            s = _penalized(<double*>cnp.PyArray_DATA(grad), <double*>cnp.PyArray_DATA(theta),
                           <double*>cnp.PyArray_DATA(g), n, size, a)
    return g, s


def shuffle(cnp.ndarray perm, unsigned long long seed):
    """Shuffle the intp array ``perm`` in place: Fisher-Yates, drawing from the splitmix64
    stream of ``seed`` (the order of the samples in a training epoch, on both backends)."""
    cdef Py_ssize_t* p = <Py_ssize_t*>cnp.PyArray_DATA(perm)
    cdef Py_ssize_t i = perm.shape[0] - 1, j, tmp
    cdef unsigned long long z, x = seed
    with nogil:
        while i > 0:
            x = x + 0x9E3779B97F4A7C15ULL  # splitmix64
            z = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
            z = z ^ (z >> 31)
            # j uniform in 0..i: the high 32 bits scaled (Lemire), or the remainder
            if i < <Py_ssize_t>0xFFFFFFFFLL:
                j = <Py_ssize_t>(((z >> 32) * <unsigned long long>(i + 1)) >> 32)
            else:
                j = <Py_ssize_t>(z % <unsigned long long>(i + 1))
            tmp = p[i]
            p[i] = p[j]
            p[j] = tmp
            i -= 1
