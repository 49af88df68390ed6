# The native training loop's state (_train.pyx), for fastnn._testing's hooks.

cimport numpy as cnp

cdef enum:
    MAX_LAYERS = 64

cdef enum:  # how the loop reads X (TrainState.xkind)
    X_C = 0      # a C-contiguous array of the fit's dtype: rows copied as gathered
    X_ROWS = 1   # a float32/float64 array of any layout: rows converted as gathered
    X_CSR = 2    # CSR rows: the first layer reads the batch's non-zeros in place


cdef struct TrainState:
    int n_layers
    int loss
    double loss_scale               # the loss kernel's loss and gradient times this
    int optimizer
    bint nesterov
    double momentum
    double beta1
    double beta2
    double eps
    double weight_decay
    long long t                     # Adam's step count
    Py_ssize_t B                    # the batch size
    bint team                       # the step is split into parts (_tuning.parts)
    double row_work                 # multiply-adds of a step per row (the rows phase's share)
    double widest                   # multiply-adds per row of the largest layer's product
    bint transposed                 # the first layer's W, gW and state held as W^T (K, M)
    bint grad_only                  # loss_grad: no update after the gradient
    double norm                     # loss_grad: the loss is sum_r w_r loss_r / norm
    bint disband                    # a thread of the team waited long: thread 0 goes on alone
    Py_ssize_t disband_from         # (by_units) the step after whose barrier it does, or -1
    Py_ssize_t disband_at           # (tests: thread 0 disbands the team after this step)
    double timed_from               # thread 0's clock at the barrier after the stretch's first
    double timed_to                 # step, and at its latest barrier since, timed_steps steps
    Py_ssize_t timed_steps          # later (0: the stretch was too short to time so)
    int unit_parts[MAX_LAYERS]      # blocks of layer l's units in the units phase
    Py_ssize_t dims[MAX_LAYERS + 1]  # dims[0] = n_in, dims[l + 1] = layer l's width
    int acts[MAX_LAYERS]
    void* W[MAX_LAYERS]             # the model's weights, (dims[l+1], dims[l])
    void* WT[MAX_LAYERS]            # loss_grad: a copy W^T of a small layer l > 0, or NULL
    void* b[MAX_LAYERS]             # the model's biases or NULL
    void* gW[MAX_LAYERS]            # gradients
    void* gb[MAX_LAYERS]
    void* mW[MAX_LAYERS]            # momentum velocity / Adam first moment (or NULL)
    void* mb[MAX_LAYERS]
    void* vW[MAX_LAYERS]            # Adam second moment (or NULL)
    void* vb[MAX_LAYERS]
    void* U[MAX_LAYERS]             # layer outputs, (B, dims[l+1])
    void* dU[MAX_LAYERS]            # dL/dU, overwritten by dL/dZ
    void* X                         # the training inputs (N, n_in) (X_C, X_ROWS)
    int xkind                       # X_C, X_ROWS or X_CSR
    bint x64                        # (X_ROWS) X is float64
    Py_ssize_t xs0                  # (X_ROWS) X's strides in elements: rows, columns
    Py_ssize_t xs1
    bint idx64                      # (X_CSR) int64 indices and indptr (else int32)
    void* Xdata                     # (X_CSR) the stored values (the fit's dtype)
    void* Xind                      # (X_CSR) their columns
    void* Xptr                      # (X_CSR) row i's values: Xptr[i] .. Xptr[i + 1] - 1
    bint lazy                       # (X_CSR) the first layer's SGD steps caught up lazily
    Py_ssize_t* stamp               # (X_CSR) per input k: the step whose dW^T_k gW[0] holds
    Py_ssize_t* current             # (X_CSR, lazy) per input k: the step W^T_k is current with
    Py_ssize_t* touched             # (X_CSR) the rows of gW[0] a step wrote, part q's from k0
    void* Y                         # targets: intp labels (CE) or (N, d) values
    void* sw                        # sample weights (N,) in float64, or NULL
    void* Xb                        # the gathered batch (B, n_in)
    void* losses                    # per-sample losses of the batch (B,)
    void* scratch                   # per-output losses of one sample, per part (parts, dims[L])
    double* acc                     # float64 scratch for db: layer l's at acc + acc_at[l]
    Py_ssize_t acc_at[MAX_LAYERS + 1]  # acc_at[n_layers] = the units of all layers
    # loss_grad with its rows in parts: each part's share of the gradient, summed after
    void* pW                        # part q's dW_l at pW + q * n_weights + w_at[l]
    double* pb                      # part q's db_l at pb + q * acc_at[n_layers] + acc_at[l]
    Py_ssize_t w_at[MAX_LAYERS + 1]  # w_at[n_layers] = n_weights
    # one hidden layer on dense rows: the step split by hidden units (_units_steps)
    bint by_units                   # unit_parts[0] parts; layer 0's part q: U[0] + B j0
    void* Xb3                       # three gathered batches (3, B, n_in), in turn
    void* pZ                        # the parts' shares of the output (2, parts, B, d)
    void* own                       # per thread: Z2 and dZ2 (B, d) each, losses (B,)


cdef class _Loop:
    cdef TrainState st
    cdef int typenum
    cdef Py_ssize_t N
    cdef Py_ssize_t chunk  # batches per call into C (between Ctrl-C checks)
    cdef list keep
    cdef list mirrors
    cdef list weights  # the model's W arrays
    cdef list copies  # loss_grad: (l, W_l, its W^T copy) for the small layers l > 0
    cdef object all_rows  # 0..N-1 (loss_grad)
    cdef double work_per_row  # multiply-adds of a step per sample
    cdef int max_parts  # the most parts of a step's phases (threads beyond it would idle)
    cdef public Py_ssize_t team_stretches, alone_stretches, disbanded  # (tests, diagnostics)
    # How many threads a stretch runs on: this fit's own choice (nothing is shared with other
    # fits). The weights do not depend on it (the parts are fixed), only the speed: a team
    # whose other thread shares its core with other work (another process, a busy host) can
    # be slower than one thread. So the fit keeps the latest time per step of each, from the
    # stretches it ran (probe_steps steps of each first: _tuning), runs the faster, and every
    # ``hold`` steps times the other again for probe_steps steps; the hold doubles (up to
    # max_hold_steps) while the same one stays faster, and starts again at hold_steps when
    # the other wins, also when the faster loses while running its hold; while the team is
    # the faster, the hold is at least long enough that timing one thread costs at most
    # probe_share of the time (_team_hold). A team that
    # disbands (see _train_steps), or whose stretch lost off_core outside its steps (_after),
    # counts as infinitely slow until it is tried again after ``retry`` steps: probe_steps,
    # doubled (up to max_hold_steps) at each disband in a row, and at least the steps one
    # thread takes in twice the time the team's stretch lost against it.
    cdef public double team_speed, alone_speed  # seconds per step, as last timed (0: not yet)
    cdef public Py_ssize_t since_probe, hold  # steps since the slower was timed; the hold
    cdef public Py_ssize_t retry  # the hold after the latest disband (0: none in a row)
    cdef bint probing  # the stretch running times the slower
    cdef bint warm  # a stretch has run: the first, which touches the workspaces first, is not timed
    cdef double partner_delay  # (tests: fastnn._testing.start_late) threads 1.. start late
    cdef bint one_step  # one batch per run_epoch (train_on_batch): the calls follow closely
    cdef list updated  # the arrays a step writes: weights, biases, optimizer state
    cdef list saved  # a guarded run_epoch's copies of them, (array, copy) pairs

    cdef _bind_X(self, X)
    cdef tuple _bind_layers(self, list W, list b, list acts, list state1, list state2, gW, gb,
                            bint first_transposed)
    cdef _plan_parts(self, X, bint own_grad, bint first_transposed)
    cdef _hold_mirrors(self, list W, list state1, list state2, bint first_transposed)
    cdef _allocate(self, X, cnp.ndarray Y, sample_weight, Py_ssize_t units,
                   Py_ssize_t weights)
    cdef void _start_lazy(self)
    cdef void _finish_lazy(self, bint single, double lr)
    cdef void _mirror(self, bint into_loop)
    cdef void _transpose(self, void* A, void* B, Py_ssize_t rows, Py_ssize_t cols)
    cdef int _team_size(self)
    cdef int _threads_for(self, Py_ssize_t* steps)
    cdef void _after(self, int threads, Py_ssize_t steps, double step_seconds,
                     double whole_seconds)
    cdef Py_ssize_t _team_hold(self, Py_ssize_t hold)
    cdef void _save(self)
    cdef bint _all_finite(self)
    cdef void _restore_saved(self)


cdef class EpochRunner(_Loop):
    pass


cdef class Objective(_Loop):
    cdef _prepare_loss_grad(self)
