# cython: language_level=3
"""fastnn's tuning thresholds, in one place.

Each is a size (multiply-adds of a product, elements of a pass, steps of a fit) at which the
cheaper of two strategies changes, measured on the machine named in BENCHMARKS.md;
``python bench/tune.py`` measures both sides of each again on the machine it runs on. None of
them changes a result's value except where noted ("rounding"): the kernels on either side
compute the same thing, and a training step's parts are fixed by the shapes and these values,
never by the number of threads. ``values()`` reads them; the checked build's
``fastnn._testing.tuning(...)`` moves them for a test that must reach both sides.
"""

cdef Tuning T
T.small_gemm = 4096
T.own_gemm = 1 << 25
T.own_nt_rows = 1 << 62
T.own_nt_units = 16
T.blas_small = 1 << 20
T.own_small = False
T.own_panels = 1 << 62
T.unit_rows = 32
T.parallel_elements = 1 << 18
T.split_gemv = 1 << 22
T.part_work = 1 << 17
T.wake_work = 1 << 22
T.part_rows = 16
T.part_units = 64
T.many_part_units = 256
T.part_read_rows = 1024
T.max_parts = 16
T.team_epoch = 1 << 23
T.probe_steps = 4
T.hold_steps = 16
T.max_hold_steps = 4096
T.probe_share = 0.03
T.off_core = 1e-3
T.mirror_weights = 1 << 17
T.mirror_steps = 4
T.signal_batches = 32
T.signal_work = 2.0 ** 31
T.sparse_transpose = 0.25

#: the values that differ where fastnn's own product runs its AVX2 kernels (a CPU without
#: AVX-512; set at import, _blas.pyx), measured on a 2-core AMD EPYC (Zen 3) VM: the panels'
#: product (in cache blocks) beats BLAS's product of W up to 1024 x 784 -> 256 (2.75 against
#: 3.09 ms), BLAS's wins from 2048 rows by 3-4% (4096: 10.47 against 10.73 ms). X W^T with W
#: as stored (4 x 2 tiles of dot products), own/BLAS on one thread (bench/tune.py): 784 ->
#: 256 0.76 at 32 rows, 0.98 at 48 and 64, 1.68 at 128; 256 -> 256 0.66 at 16, 1.05 at 32,
#: 0.87 at 48, 1.36 at 64, 1.19 at 128; 512 rows, 128 or 256 inputs, 8-64 units 1.07-1.73.
#: (AVX-512's 4 x 4 tiles are unmeasured here: no limit there, as before.)
AVX2 = {"own_panels": 1 << 28, "own_nt_rows": 32}

#: what each threshold trades (one line each)
NOTES = {
    "small_gemm": "multiply-adds below which a product's direct loops beat a BLAS call "
                  "(rounding: the loops sum in their own order)",
    "own_gemm": "multiply-adds up to which fastnn's float32 product (no packing) beats BLAS's "
                "packed kernels; above, BLAS's cache blocking wins (rounding)",
    "own_nt_rows": "rows of X up to which X W^T with W as stored (an unfrozen layer's "
                   "forward: dot products of rows, W read again for every 4 rows) runs on "
                   "fastnn's own product, within own_gemm; above, BLAS's packed kernels "
                   "(rounding)",
    "own_nt_units": "... and units (W's rows) up to which it runs there at any rows, so an "
                    "output layer sums every row in one order wherever the row sits (BLAS's "
                    "edge tiles round a batch's last rows otherwise); BLAS would be 7-16% "
                    "faster on that small product (policy; rounding)",
    "blas_small": "multiply-adds up to which BLAS's small-matrix kernels (no packing, AVX-512 "
                  "OpenBLAS) beat fastnn's own product (rounding)",
    "own_small": "whether fastnn's own product also takes the products up to blas_small: "
                 "where the BLAS loaded has no small-matrix kernels (set once at import)",
    "own_panels": "multiply-adds of a frozen layer's batch up to which fastnn's own product "
                  "over the panels freeze() packed beats BLAS's product of W, which packs W "
                  "again each call (rounding)",
    "unit_rows": "rows of a batch (inference) up to which its first layer's product is "
                 "shared among the threads by its units (blocks of 128, a frozen layer's "
                 "panels: each thread its units for all rows) rather than by rows (each "
                 "part all of W for its rows, one part below 2 part_rows rows)",
    "parallel_elements": "elements from which an elementwise pass that evaluates exp "
                         "(sigmoid, tanh, exp, softmax, cross-entropy) uses the threads",
    "split_gemv": "W's size (M K) from which one sample's layer splits W's rows among the "
                  "threads: a wake-up (0.5-80 us) against reading W on one core",
    "part_work": "multiply-adds a part of a training step gets at least (the parts, a power "
                 "of two, share a step among the threads: more parts, more threads used, "
                 "smaller products; rounding)",
    "wake_work": "multiply-adds from which a call wakes fastnn's sleeping threads to share its "
                 "parts (a wake-up costs 5-80 us); below, only threads still awake help",
    "part_rows": "rows (or units) a part of a training step gets at least (rounding)",
    "part_units": "hidden units a part of a one-hidden-layer network's step gets at least "
                  "(its step is split by hidden units: _train.pyx; rounding)",
    "many_part_units": "... and in a step split into more than two parts (a part's product "
                       "reads, and above blas_small packs, the whole batch: wider parts "
                       "share that cost; rounding)",
    "part_read_rows": "rows a part of a batch (inference, F.linear, a training step's rows "
                      "phase) gets at least beyond two parts when its largest product is "
                      "above blas_small: each part reads (BLAS: packs) every W again "
                      "(rounding)",
    "max_parts": "at most this many parts per phase of a training step (rounding)",
    "team_epoch": "multiply-adds of an epoch below which it runs on one thread: too little "
                  "work to wake the others",
    "probe_steps": "steps a fit times its team and one thread on, to run the faster",
    "hold_steps": "steps on the faster before timing the slower again (doubled up to "
                  "max_hold_steps while the same one wins)",
    "max_hold_steps": "the longest hold",
    "probe_share": "while the team is the faster, its hold is at least long enough that "
                   "timing one thread again costs at most this share of the hold's time",
    "off_core": "seconds: a team thread that waits this long at a barrier (and 4 times its own "
                "work since the last), or a team stretch that loses this much outside its "
                "steps, had a partner off its core (an OS time slice): one thread from there",
    "mirror_weights": "weights up to which the training loop holds a first layer as W^T "
                      "(its forward is then X W^T without packing W; two copies a fit)",
    "mirror_steps": "... when an epoch has at least this many steps",
    "signal_batches": "batches between two checks for Ctrl-C (at least)",
    "signal_work": "... or about this much work (multiply-adds, ~10 ms)",
    "sparse_transpose": "non-zeros of a sparse X per input (nnz / N_in) from which F.linear "
                        "and linear_backward copy W to W^T (a row a non-zero, read in order) "
                        "instead of reading W's columns in place (N_out scattered reads a "
                        "non-zero)",
}


cdef Tuning* tuned() noexcept nogil:
    return &T


def values():
    """The thresholds as a dict {name: value} (NOTES says what each trades)."""
    return dict(T)


def _set(name, value):
    """Move one threshold (the checked build's fastnn._testing.tuning uses this)."""
    global T
    if name not in NOTES:
        raise KeyError(f"no threshold {name!r}; there are {sorted(NOTES)}")
    current = dict(T)
    current[name] = value
    T = current
