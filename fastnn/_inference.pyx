# cython: language_level=3
"""A network's output in one call (eq. 10, then eq. 7, 3 or 5): decision_function and
predict_proba without a Python round trip per layer. Each layer runs the kernel of
fastnn.functional.linear; the hidden outputs live in two halves of one buffer by turns. An X
of another float dtype or layout than the layers' (float64 for a float32 model, Fortran
order, a memmap) is read where it lies: each part of the rows is converted as it starts, so
no copy of X is made and the results are the bits of its converted C copy."""

cimport numpy as cnp
from cython cimport floating
from libc.stdlib cimport malloc, free

from fastnn._inputs cimport gather_rows, readable
from fastnn._layers cimport (EXP, IDENTITY, SIGMOID, activate_flat, activation_code,
                             by_units, linear_forward, linear_forward_packed,
                             linear_forward_units, plain, share)
from fastnn._losses cimport softmax_rows
from fastnn._math cimport fnn_all_finite_d, fnn_all_finite_f
from fastnn._parallel cimport blocks_on
from fastnn._tuning cimport Tuning, row_parts, tuned

cnp.import_array()

cdef Tuning* tune = tuned()

cdef enum:
    MAX_LAYERS = 64

OUTPUT_CODES = {"identity": IDENTITY, "sigmoid": SIGMOID, "exp": EXP, "softmax": -1}
cdef dict _OUTPUT_CODES = OUTPUT_CODES


cdef void _network(const floating* X, floating** W, void** Wp, floating** b,
                   const Py_ssize_t* dims, const int* codes, int L, floating* buf,
                   Py_ssize_t half, floating* out, Py_ssize_t N, int output) noexcept nogil:
    # U_0 = X; U_l = g_l(U_{l-1} W_l^T + B_l) for l = 1..L (eq. 10), the hidden U_l in the two
    # halves of buf by turns; out = U_L (identity, eq. 7), sigmoid(U_L) (eq. 3), exp(U_L)
    # (the Poisson loss's mean) or softmax(U_L) row by row (eq. 5). The kernels of linear
    # (a frozen layer's: its packed W, see network), the activations and softmax.
    cdef const floating* inp = X
    cdef floating* U
    cdef int l
    for l in range(L):
        U = out if l == L - 1 and output != -1 else buf + (l % 2) * half
        if floating is float and Wp[l] != NULL:
            linear_forward_packed(inp, <float*>Wp[l], b[l], U, N, dims[l], dims[l + 1],
                                  codes[l])
        else:
            linear_forward(inp, W[l], b[l], U, N, dims[l], dims[l + 1], codes[l])
        inp = U
    if output == SIGMOID or output == EXP:  # eq. 3, or the Poisson loss's mean e^z
        activate_flat(out, out, N * dims[L], output)
    elif output == -1:
        softmax_rows(inp, out, N, dims[L], False)


cdef inline bint _finite(const floating* X, Py_ssize_t n) noexcept nogil:
    # no entry of X[:n] is inf or NaN (the check a model's predictions make first)
    if floating is float:
        return fnn_all_finite_f(X, n)
    else:
        return fnn_all_finite_d(X, n)


cdef struct Net:  # a network's output over parts of a batch's rows, for fastnn's threads
    bint single
    const void* X
    void** W
    void** b
    const Py_ssize_t* dims
    const int* codes
    void** Wp           # a frozen layer's W^T in panels (float32), else NULL
    int L
    void* buf           # small N: the hidden outputs, 2 N width entries (part q's rows at
                        # 2 r0 width); NULL: each part allocates its own (and its X's rows)
    Py_ssize_t width
    void* out
    Py_ssize_t N
    int output
    Py_ssize_t parts
    bint convert        # X is not a C array of the layers' dtype: each part converts its rows
    bint x64            # (convert) X is float64
    Py_ssize_t xs0      # (convert) X's strides in elements
    Py_ssize_t xs1
    bint check          # each part checks that its rows of X are finite before using them
    bint nonfinite      # (check) some part found a value that is not: the output is dropped
    bint failed         # a part's buffer could not be allocated


cdef void _net_part(floating* tag, Net* n, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    # parts q0..q1, each on its own (rows q N / parts .. (q + 1) N / parts) through every
    # layer: a part's products are the same whichever thread takes it with which others.
    # A part's hidden outputs (and X's rows, converted) live in memory of its own, so only
    # the parts in flight hold any (1/16 of the rows each, for a large N)
    cdef Py_ssize_t q, r0, r1, rows, K = n.dims[0]
    cdef const floating* X
    cdef floating* hidden
    cdef floating* mem = NULL
    for q in range(q0, q1):
        r0, r1 = q * n.N // n.parts, (q + 1) * n.N // n.parts
        rows = r1 - r0
        X = <const floating*>n.X + r0 * K
        if n.check:  # (in the part, on the threads: a pass over X before the call cost
            # 0.1-0.35 ms of a 4 ms batch of 4096 rows on one thread)
            if n.nonfinite or not _finite(X, rows * K):
                n.nonfinite = True
                return
        hidden = <floating*>n.buf + 2 * r0 * n.width
        if n.buf == NULL:
            mem = <floating*>malloc((2 * rows * n.width + (rows * K if n.convert else 0))
                                    * sizeof(floating))
            if mem == NULL:
                n.failed = True
                return
            hidden = mem
        if n.convert:  # this part's rows, converted to a C array of the layers' dtype
            gather_rows(mem + 2 * rows * n.width, n.X, n.x64, n.xs0, n.xs1, NULL, r0, r1, K)
            X = mem + 2 * rows * n.width
        _network(X, <floating**>n.W, n.Wp, <floating**>n.b, n.dims, n.codes, n.L, hidden,
                 rows * n.width, <floating*>n.out + r0 * n.dims[n.L], rows, n.output)
        free(mem)
        mem = NULL


cdef void _net_blocks(void* ctx, Py_ssize_t q0, Py_ssize_t q1) noexcept nogil:
    if (<Net*>ctx).single:
        _net_part(<float*>NULL, <Net*>ctx, q0, q1)
    else:
        _net_part(<double*>NULL, <Net*>ctx, q0, q1)


cdef bint _by_units(floating* buf, Net* n, Py_ssize_t half) noexcept nogil:
    # a small batch (_layers.by_units): its first layer's units shared by the threads
    # (linear_forward_units), then the rest of the network on all rows at once (the later
    # layers' products are of the whole batch, not of its parts)
    cdef floating* U0 = <floating*>n.out if n.L == 1 and n.output != -1 else buf + half
    if n.check and not _finite(<const floating*>n.X, n.N * n.dims[0]):
        return False
    linear_forward_units(<const floating*>n.X, <const floating*>n.W[0],
                         <const float*>n.Wp[0], <const floating*>n.b[0], U0, n.N, n.dims[0],
                         n.dims[1], n.codes[0])
    # U_1 in buf's second half: the next layer's output goes to its first (eq. 10 on)
    _network(<const floating*>U0, <floating**>n.W + 1, n.Wp + 1, <floating**>n.b + 1,
             n.dims + 1, n.codes + 1, n.L - 1, buf, half, <floating*>n.out, n.N, n.output)
    return True


cdef object _frozen(object layer, object w):
    # a frozen layer's packed W^T (Linear.freeze): its ``_packed`` (W, panels) while W is
    # still that very array, read-only (so nothing wrote it since), and the panels have
    # W's size; else None (the layer computes from W)
    pk = getattr(layer, "_packed", None)
    if type(pk) is not tuple or len(<tuple>pk) != 2 or (<tuple>pk)[0] is not w:
        return None
    wp = (<tuple>pk)[1]
    if not plain(wp, 1, cnp.NPY_FLOAT32) \
            or cnp.PyArray_SIZE(<cnp.ndarray>wp) != cnp.PyArray_SIZE(<cnp.ndarray>w):
        return None
    return wp


def network(object X, object layers, object output, bint finite=False):
    """The output map of a stack of layers on X (N, n_in): g_out(g_L(... g_1(X W_1^T + B_1)
    ...)) with g_out "identity", "sigmoid" or "softmax"; ``layers``: a list of objects with
    ``W``, ``b`` and ``activation`` (fastnn.Linear). Each layer runs ``linear``'s kernel,
    or a frozen float32 layer (Linear.freeze) the product of its W^T packed in panels.
    A batch's rows are cut into parts by the shapes (_tuning.parts), each part taken through
    every layer while its rows are in cache, and fastnn's threads share the parts; a small
    batch (up to unit_rows rows) whose first layer has more than 128 units shares that
    layer's units instead. The same result on any number of threads.

    Like ``linear``, this is a fast path: it returns the new (N, n_out) array when X and every
    layer are the common case (the layers' arrays C-contiguous of one float dtype, non-empty
    chained shapes, known activations; X a 2-D float32 or float64 array, aligned, in native
    byte order, of any strides: converted a part of its rows at a time unless it is a C
    array of the layers' dtype) and None otherwise; the caller then takes the general path.
    With ``finite``, the common case is also narrower: X a C array of the layers' dtype whose
    every value is finite (the check a model's predictions make first, in the same call:
    each part checks its rows before it uses them, and a value that is not finite anywhere
    drops the whole output).
    """
    if not readable(X) or type(layers) is not list:
        return None
    cdef int L = len(layers), l, out_code
    if L == 0 or L > MAX_LAYERS:  # deeper networks take the per-layer path
        return None
    first = getattr(layers[0], "W", None)
    if not cnp.PyArray_CheckExact(first):
        return None
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>first)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        return None
    if finite and not plain(X, 2, typenum):
        return None
    code = _OUTPUT_CODES.get(output) if type(output) is str else None
    if code is None:
        return None
    out_code = code
    cdef void* W[MAX_LAYERS]
    cdef void* b[MAX_LAYERS]
    cdef int codes[MAX_LAYERS]
    cdef void* Wp[MAX_LAYERS]
    cdef Py_ssize_t dims[MAX_LAYERS + 1]
    cdef Py_ssize_t N = (<cnp.ndarray>X).shape[0], width = 0
    dims[0] = (<cnp.ndarray>X).shape[1]
    if N == 0 or dims[0] == 0 or N > 0x7FFFFFFF or dims[0] > 0x7FFFFFFF:
        return None
    arrays = [None] * (2 * L)  # alive while the GIL is released, whatever other threads do
    for l in range(L):
        layer = layers[l]
        w, bias, act = layer.W, layer.b, layer.activation
        if not plain(w, 2, typenum) or (<cnp.ndarray>w).shape[1] != dims[l]:
            return None
        dims[l + 1] = (<cnp.ndarray>w).shape[0]
        if dims[l + 1] == 0 or dims[l + 1] > 0x7FFFFFFF:
            return None
        if bias is not None and not (plain(bias, 1, typenum)
                                     and (<cnp.ndarray>bias).shape[0] == dims[l + 1]):
            return None
        code = activation_code(act)
        if code < 0:
            return None
        arrays[2 * l] = w
        arrays[2 * l + 1] = bias
        W[l] = cnp.PyArray_DATA(<cnp.ndarray>w)
        Wp[l] = NULL
        # a frozen layer: its packed W^T (held here, as w is), for one sample and for a batch
        # of up to own_panels multiply-adds in this layer (beyond, BLAS's product of W)
        if typenum == cnp.NPY_FLOAT32 and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>w) and (
                N == 1 or <double>N * dims[l] * dims[l + 1] <= <double>tune.own_panels):
            wp = _frozen(layer, w)
            if wp is not None:
                arrays.append(wp)
                Wp[l] = cnp.PyArray_DATA(<cnp.ndarray>wp)
        b[l] = cnp.PyArray_DATA(<cnp.ndarray>bias) if bias is not None else NULL
        codes[l] = code
        width = max(width, dims[l + 1])
    cdef cnp.npy_intp odims[2]
    odims[0] = N
    odims[1] = dims[L]
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(2, odims, typenum, 0)
    # the hidden layers' outputs: two halves of N * width, on the stack when small (else each
    # part allocates its own)
    cdef double small[1024]
    cdef Net net
    cdef double work, widest
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(<cnp.ndarray>X)
    net.single, net.X, net.W, net.b = typenum == cnp.NPY_FLOAT32, cnp.PyArray_DATA(
        <cnp.ndarray>X), W, b
    net.dims, net.codes, net.Wp, net.L, net.width = dims, codes, Wp, L, width
    net.out, net.N, net.output = cnp.PyArray_DATA(out), N, out_code
    net.convert = not plain(X, 2, typenum)
    net.x64 = cnp.PyArray_TYPE(<cnp.ndarray>X) == cnp.NPY_FLOAT64
    net.xs0 = (<cnp.ndarray>X).strides[0] // itemsize
    net.xs1 = (<cnp.ndarray>X).strides[1] // itemsize
    net.check, net.nonfinite, net.failed = finite, False, False
    net.buf = small if not net.convert and 2 * N * width * cnp.PyArray_ITEMSIZE(out) \
        <= <Py_ssize_t>sizeof(small) else NULL
    cdef void* mem = NULL
    if by_units(N, dims[0], dims[1]) and not net.convert:
        if net.buf == NULL:
            mem = net.buf = malloc(2 * N * width * cnp.PyArray_ITEMSIZE(out))
            if mem == NULL:
                raise MemoryError("no memory for the batch's hidden outputs")
        with nogil:
            if net.single:
                net.nonfinite = not _by_units(<float*>net.buf, &net, N * width)
            else:
                net.nonfinite = not _by_units(<double*>net.buf, &net, N * width)
        free(mem)
        return None if net.nonfinite else out
    work = widest = 0
    for l in range(L):
        work += N * dims[l] * dims[l + 1]
        if Wp[l] == NULL:  # (a frozen layer's panels are read by each part, not packed)
            widest = max(widest, dims[l] * dims[l + 1])
    net.parts = row_parts(tune, work, N, widest)
    with nogil:
        blocks_on(_net_blocks, &net, net.parts, share(work) if net.parts > 1 else 1)
    if net.nonfinite:
        return None
    if net.failed:
        raise MemoryError("no memory for a part of the rows' hidden outputs")
    return out
