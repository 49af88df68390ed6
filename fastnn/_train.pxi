# Included by _kernels.pyx: the native training loop.
#
# A ``Trainer`` holds one fit's state: raw pointers to the model's own weight arrays (updated
# in place), the optimizer state, and every workspace a mini-batch needs, all allocated once
# per fit by the caller (fastnn.training). ``run_epoch`` then runs whole epochs in C: gather
# the shuffled batch, forward (eq. 10), loss and its gradient (eq. 16-20), backward (section 3),
# update (eq. 21, momentum, Nesterov or Adam), with no Python and no allocation per step.
# The GIL is taken back every few batches only to let Ctrl-C through. ``loss_grad`` runs the
# same forward, loss and backward over the whole training set, without an update: the
# objective and gradient of the estimators' lbfgs solver (fastnn.estimators).

from cpython.exc cimport PyErr_CheckSignals
from libc.math cimport isfinite

# losses of the output layer (the notes pair them with the output maps)
cdef enum:
    LOSS_BCE = 0   # sigmoid output, eq. 17
    LOSS_CE = 1    # softmax output, eq. 18
    LOSS_SE = 2    # identity output, eq. 20

LOSS_CODES = {"binary_cross_entropy": LOSS_BCE, "cross_entropy": LOSS_CE,
              "squared_error": LOSS_SE}

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1

OPTIMIZER_CODES = {"sgd": OPT_SGD, "adam": OPT_ADAM}

cdef enum:
    MAX_LAYERS = 64
    SIGNAL_CHECK_BATCHES = 32


cdef struct TrainState:
    int n_layers
    int loss
    int optimizer
    bint nesterov
    double momentum
    double beta1
    double beta2
    double eps
    double weight_decay
    long long t                     # Adam's step count
    Py_ssize_t B                    # the batch size
    Py_ssize_t dims[MAX_LAYERS + 1]  # dims[0] = n_in, dims[l + 1] = layer l's width
    int acts[MAX_LAYERS]
    void* W[MAX_LAYERS]             # the model's weights, (dims[l+1], dims[l])
    void* b[MAX_LAYERS]             # the model's biases or NULL
    void* gW[MAX_LAYERS]            # gradients
    void* gb[MAX_LAYERS]
    void* mW[MAX_LAYERS]            # momentum velocity / Adam first moment (or NULL)
    void* mb[MAX_LAYERS]
    void* vW[MAX_LAYERS]            # Adam second moment (or NULL)
    void* vb[MAX_LAYERS]
    void* U[MAX_LAYERS]             # layer outputs, (B, dims[l+1])
    void* dU[MAX_LAYERS]            # dL/dU, overwritten by dL/dZ
    void* X                         # the training inputs (N, n_in)
    void* Y                         # targets: intp labels (CE) or (N, d) values
    void* sw                        # sample weights (N,) in float64, or NULL
    void* Xb                        # the gathered batch (B, n_in)
    void* losses                    # per-sample losses of the batch (B,)
    void* scratch                   # per-output losses of one sample (dims[L],)
    double* acc                     # float64 scratch, max width


cdef void _update(floating* P, floating* G, floating* M1, floating* M2, Py_ssize_t n,
                  TrainState* st, double lr, double decay) noexcept nogil:
    # eq. 21 and its variants on one parameter array P with gradient G (the loops are in
    # _fastmath.h, built per instruction set)
    cdef floating wd = <floating>decay, lr_f = <floating>lr, lr_t
    if wd != 0:  # L2 penalty: g = dL/dP + wd P
        if floating is float:
            fnn_add_scaled_f(G, P, wd, n)
        else:
            fnn_add_scaled_d(G, P, wd, n)
    if st.optimizer == OPT_ADAM:
        lr_t = <floating>(lr * sqrt(1 - st.beta2 ** st.t) / (1 - st.beta1 ** st.t))
        if floating is float:
            fnn_adam_f(P, G, M1, M2, <float>st.beta1, <float>st.beta2, lr_t, <float>st.eps, n)
        else:
            fnn_adam_d(P, G, M1, M2, st.beta1, st.beta2, lr_t, st.eps, n)
    elif M1 != NULL:
        if floating is float:
            fnn_momentum_f(P, G, M1, <float>st.momentum, lr_f, st.nesterov, n)
        else:
            fnn_momentum_d(P, G, M1, st.momentum, lr_f, st.nesterov, n)
    else:
        if floating is float:
            fnn_sgd_f(P, G, lr_f, n)
        else:
            fnn_sgd_d(P, G, lr_f, n)


cdef double _forward_backward(floating* tag, TrainState* st, const floating* Xb,
                              const Py_ssize_t* rows, Py_ssize_t B, double norm) noexcept nogil:
    # forward, loss and backward on the B samples Xb (rows: their indices into Y and the sample
    # weights, or NULL for the rows 0..B-1): the gradient of sum_r w_r loss_r / norm into
    # st.gW, st.gb; returns sum_r w_r loss_r (w_r = 1 without sample weights)
    cdef int L = st.n_layers, l
    cdef Py_ssize_t d = st.dims[L], r, i
    cdef floating* out = <floating*>st.U[L - 1]
    cdef floating* dout = <floating*>st.dU[L - 1]
    cdef floating* losses = <floating*>st.losses
    cdef const floating* inp
    cdef double* sw = <double*>st.sw
    cdef double w, total = 0
    cdef floating scale
    # forward, eq. 10: U_l = g_l(U_{l-1} W_l^T + B_l)
    inp = Xb
    for l in range(L):
        _linear_forward(inp, <floating*>st.W[l], <floating*>st.b[l], <floating*>st.U[l],
                        B, st.dims[l], st.dims[l + 1], st.acts[l], True)
        inp = <floating*>st.U[l]
    # loss and dL/dU of the output layer: dU_r = (w_r / norm) d loss_r / dU_r
    for r in range(B):
        i = rows[r] if rows != NULL else r
        w = sw[i] if sw != NULL else 1.0
        scale = <floating>(w / norm)
        if st.loss == LOSS_CE:
            _cross_entropy_row(out + r * d, (<Py_ssize_t*>st.Y)[i], losses + r,
                               dout + r * d, d, scale)
        elif st.loss == LOSS_BCE:
            # eq. 17 on each of the d outputs (d > 1: multi-label), summed per sample
            losses[r] = <floating>_binary_cross_entropy(
                out + r * d, <floating*>st.Y + i * d, <floating*>st.scratch,
                dout + r * d, d, scale)
        else:
            _squared_error(out + r * d, <floating*>st.Y + i * d, losses + r,
                           dout + r * d, 1, d, scale)
        total += w * losses[r]
    # backward (section 3): dZ_l = dU_l * g'; dW_l = dZ_l^T U_{l-1}; db_l; dU_{l-1} = dZ_l W_l
    for l in range(L - 1, -1, -1):
        inp = <floating*>st.U[l - 1] if l > 0 else Xb
        _linear_backward(<floating*>st.dU[l], inp, <floating*>st.W[l], <floating*>st.U[l],
                         <floating*>st.dU[l], <floating*>st.dU[l - 1] if l > 0 else NULL,
                         <floating*>st.gW[l], <floating*>st.gb[l], st.acc,
                         B, st.dims[l], st.dims[l + 1], st.acts[l], True)
    return total


cdef double _train_batch(floating* tag, TrainState* st, const Py_ssize_t* rows, Py_ssize_t B,
                         double lr) noexcept nogil:
    # one SGD step on the samples ``rows``; returns the batch's summed (weighted) loss
    cdef int l
    cdef Py_ssize_t n_in = st.dims[0], r
    cdef floating* X = <floating*>st.X
    cdef floating* Xb = <floating*>st.Xb
    cdef double total
    # gather the batch (the shuffled rows)
    for r in range(B):
        memcpy(Xb + r * n_in, X + rows[r] * n_in, n_in * sizeof(floating))
    # the gradient of the batch's weighted "mean": sum_r w_r loss_r / B
    total = _forward_backward(tag, st, Xb, rows, B, <double>B)
    if not isfinite(total):  # diverged: no update
        return total
    # update, eq. 21 (weight decay on W only)
    st.t += 1
    for l in range(st.n_layers):
        _update(<floating*>st.W[l], <floating*>st.gW[l], <floating*>st.mW[l],
                <floating*>st.vW[l], st.dims[l] * st.dims[l + 1], st, lr, st.weight_decay)
        if st.b[l] != NULL:
            _update(<floating*>st.b[l], <floating*>st.gb[l], <floating*>st.mb[l],
                    <floating*>st.vb[l], st.dims[l + 1], st, lr, 0.0)
    return total


cdef double _train_batches(floating* tag, TrainState* st, const Py_ssize_t* perm,
                           Py_ssize_t start, Py_ssize_t stop, double lr) noexcept nogil:
    # the batches of perm[start:stop]; stops at the first non-finite batch loss
    cdef double total = 0, batch
    cdef Py_ssize_t s = start, B
    while s < stop:
        B = st.B if s + st.B <= stop else stop - s
        batch = _train_batch(tag, st, perm + s, B, lr)
        total += batch
        if not isfinite(batch):
            return total
        s += B
    return total


cdef class Trainer:
    """One fit's native state (see the comment at the top of _train.pxi).

    Every array passed in is C-contiguous, of one float dtype (labels: intp; sample weights:
    float64) and is kept alive here; ``W``/``b`` are the model's own arrays, updated in place.
    ``gW``/``gb``: arrays of W's and b's shapes for the gradients (e.g. views into one flat
    buffer), instead of new ones.
    """
    cdef TrainState st
    cdef int typenum
    cdef Py_ssize_t N
    cdef list keep

    def __cinit__(self, list W, list b, list acts, int loss, int optimizer, list state1,
                  list state2, cnp.ndarray X, cnp.ndarray Y, object sample_weight,
                  Py_ssize_t batch_size, double momentum=0.0, bint nesterov=False,
                  double beta1=0.9, double beta2=0.999, double eps=1e-8,
                  double weight_decay=0.0, long long t=0, list gW=None, list gb=None):
        cdef int L = len(W), l
        cdef TrainState* st = &self.st
        if L > MAX_LAYERS:
            raise ValueError(f"at most {MAX_LAYERS} layers are supported, got {L}")
        self.typenum = cnp.PyArray_TYPE(X)
        self.N = X.shape[0]
        dtype = X.dtype
        B = min(batch_size, self.N)
        st.n_layers, st.loss, st.optimizer = L, loss, optimizer
        st.nesterov, st.momentum, st.beta1, st.beta2 = nesterov, momentum, beta1, beta2
        st.eps, st.weight_decay, st.t, st.B = eps, weight_decay, t, B
        st.dims[0] = X.shape[1]
        keep = [X, Y, sample_weight]
        widest = X.shape[1]
        for l in range(L):
            st.dims[l + 1] = W[l].shape[0]
            widest = max(widest, W[l].shape[0])
            st.acts[l] = acts[l]
            gWl = np.zeros_like(W[l]) if gW is None else gW[l]
            U, dU = np.empty((B, W[l].shape[0]), dtype), np.empty((B, W[l].shape[0]), dtype)
            keep += [W[l], gWl, U, dU]
            st.W[l] = <void*>cnp.PyArray_DATA(W[l])
            st.gW[l] = <void*>cnp.PyArray_DATA(gWl)
            st.U[l] = <void*>cnp.PyArray_DATA(U)
            st.dU[l] = <void*>cnp.PyArray_DATA(dU)
            st.b[l] = st.gb[l] = st.mW[l] = st.mb[l] = st.vW[l] = st.vb[l] = NULL
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
        Xb = np.empty((B, X.shape[1]), dtype)
        losses = np.empty(B, dtype)
        scratch = np.empty(st.dims[L], dtype)
        acc = np.empty(widest, np.float64)
        keep += [Xb, losses, scratch, acc]
        st.X = cnp.PyArray_DATA(X)
        st.Y = cnp.PyArray_DATA(Y)
        st.sw = cnp.PyArray_DATA(<cnp.ndarray>sample_weight) if sample_weight is not None else NULL
        st.Xb = cnp.PyArray_DATA(Xb)
        st.scratch = cnp.PyArray_DATA(scratch)
        st.losses = cnp.PyArray_DATA(losses)
        st.acc = <double*>cnp.PyArray_DATA(acc)
        self.keep = keep

    @property
    def t(self):
        """Optimizer steps taken (Adam's bias correction uses it)."""
        return self.st.t

    def run_epoch(self, cnp.ndarray perm, double lr):
        """Train on the samples in the order ``perm`` (intp, a permutation of 0..N-1) in
        mini-batches; return the summed (weighted) loss, or a non-finite number as soon as
        one batch diverges (the weights then hold that batch's inputs' last update)."""
        cdef Py_ssize_t n = perm.shape[0], start = 0, stop
        cdef Py_ssize_t chunk = self.st.B * SIGNAL_CHECK_BATCHES
        cdef const Py_ssize_t* p = <Py_ssize_t*>cnp.PyArray_DATA(perm)
        cdef double total = 0, part
        while start < n:
            stop = start + chunk if start + chunk < n else n
            if self.typenum == cnp.NPY_FLOAT32:
                with nogil:
                    part = _train_batches(<float*>NULL, &self.st, p, start, stop, lr)
            else:
                with nogil:
                    part = _train_batches(<double*>NULL, &self.st, p, start, stop, lr)
            total += part
            if not isfinite(part):
                return total
            PyErr_CheckSignals()
            start = stop
        return total

    def loss_grad(self, double norm):
        """Forward, loss and backward over all N training samples as one batch (X itself, no
        gather; the Trainer must be built with batch_size >= N), no update: the gradient of
        sum_i w_i loss_i / norm into the gradient arrays; returns sum_i w_i loss_i (w_i = 1
        without sample weights)."""
        cdef double total
        if self.st.B != self.N:
            raise ValueError(f"loss_grad needs batch_size >= N ({self.N}), got {self.st.B}")
        if self.typenum == cnp.NPY_FLOAT32:
            with nogil:
                total = _forward_backward(<float*>NULL, &self.st, <float*>self.st.X, NULL,
                                          self.N, norm)
        else:
            with nogil:
                total = _forward_backward(<double*>NULL, &self.st, <double*>self.st.X, NULL,
                                          self.N, norm)
        return total
