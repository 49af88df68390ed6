"""Saving and loading models (fastnn.serialization): ``model.save(path)`` / ``fastnn.load(path)``
(.npz, read with allow_pickle=False), atomic writes, clear errors for bad files, and pickling;
then model files as an attacker's files would have them, and as a user's file system has them."""

import io
import os
import pickle
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib

import numpy as np
import pytest

import fastnn
from fastnn import MLP, Linear, Sequential


def _data(rng, n_in=3, N=30, K=3):
    return rng.standard_normal((N, n_in)), rng.integers(0, K, N)


def _mlp(dtype, rng, fit=None):
    model = MLP(3, (5, 4), 3, activation="tanh", output="softmax", dtype=dtype, random_state=0)
    if fit is not None:
        X, y = _data(rng)
        model.fit(X, y, epochs=2, batch_size=8, random_state=0, **fit)
    return model


def _sequential(dtype, rng, fit=None):
    # the notes' section 3 problem 2 model: exp units and an output layer without bias
    model = Sequential([Linear(3, 4, "exp", dtype=dtype, random_state=0),
                        Linear(4, 1, bias=False, dtype=dtype, random_state=1)],
                       loss="squared_error")
    if fit is not None:
        X = 0.3 * rng.standard_normal((30, 3))
        model.fit(X, X.sum(axis=1), epochs=2, batch_size=8, random_state=0, **fit)
    return model


FITS = {"unfitted": None, "adam": dict(optimizer="adam", lr=0.01),
        "momentum": dict(momentum=0.9, nesterov=True, lr=0.01, weight_decay=0.01),
        "sgd": dict(lr=0.01)}
BUILDERS = {"mlp": _mlp, "sequential": _sequential}


def _assert_same_model(a, b):
    assert type(a) is type(b)
    assert a.loss_name == b.loss_name and a.dtype == b.dtype
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert la.activation == lb.activation
        assert lb.W.dtype == la.W.dtype and lb.W.flags.c_contiguous and lb.W.flags.writeable
        np.testing.assert_array_equal(la.W, lb.W)
        if la.b is None:
            assert lb.b is None
        else:
            np.testing.assert_array_equal(la.b, lb.b)
            assert lb.b.dtype == la.b.dtype


def _assert_same_optimizer(a, b):
    sa, sb = a.optimizer_state_, b.optimizer_state_
    if sa is None:
        assert sb is None
        return
    for key in ("optimizer", "momentum", "nesterov", "beta1", "beta2", "eps", "weight_decay", "t"):
        assert sa[key] == sb[key], key
    for states_a, states_b in zip(sa["state"], sb["state"]):
        for s, t in zip(states_a, states_b):
            if s is None:
                assert t is None
                continue
            np.testing.assert_array_equal(s[0], t[0])
            assert s[0].dtype == t[0].dtype
            if s[1] is None:
                assert t[1] is None
            else:
                np.testing.assert_array_equal(s[1], t[1])


@pytest.mark.parametrize("fit", list(FITS))
@pytest.mark.parametrize("kind", list(BUILDERS))
def test_round_trip_predicts_bit_identically(backend, dtype, kind, fit, rng, tmp_path):
    model = BUILDERS[kind](dtype, rng, FITS[fit])
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastnn.load(path)
    _assert_same_model(model, loaded)
    _assert_same_optimizer(model, loaded)
    if fit == "unfitted":
        assert loaded.optimizer_state_ is None
    X = rng.standard_normal((17, 3)).astype(dtype)
    for method in ("decision_function", "predict_proba", "predict"):
        a, b = getattr(model, method)(X), getattr(loaded, method)(X)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b, err_msg=method)
    if kind == "mlp":
        assert loaded.activation == "tanh"
    # the loaded arrays are the model's own, not views of the file
    loaded.layers[0].W[...] = 0
    np.testing.assert_array_equal(fastnn.load(path).layers[0].W, model.layers[0].W)


@pytest.mark.parametrize("fit", ["adam", "momentum"])
def test_loaded_optimizer_state_continues_training(backend, fit, rng, tmp_path):
    # save after 2 epochs, load, continue 2 more with warm_start: the same weights as
    # continuing the original model
    X, y = _data(rng)
    model = _mlp("float64", rng, FITS[fit])
    model.save(tmp_path / "m.npz")
    loaded = fastnn.load(tmp_path / "m.npz")
    for m in (model, loaded):
        m.fit(X, y, epochs=2, batch_size=8, random_state=1, warm_start=True, **FITS[fit])
    _assert_same_model(model, loaded)
    _assert_same_optimizer(model, loaded)
    assert loaded.optimizer_state_["t"] == 2 * 2 * 4  # 4 epochs of 4 batches


def test_file_is_a_plain_npz_without_pickles(rng, tmp_path):
    model = _mlp("float32", rng, FITS["adam"])
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
        np.testing.assert_array_equal(data["W0"], model.layers[0].W)


def test_save_without_npz_suffix_writes_exactly_that_path(rng, tmp_path):
    model = _mlp("float64", rng)
    path = tmp_path / "my-model.bin"
    model.save(str(path))
    assert sorted(os.listdir(tmp_path)) == ["my-model.bin"]  # no "my-model.bin.npz"
    assert zipfile.is_zipfile(path)
    _assert_same_model(model, fastnn.load(str(path)))
    plain = tmp_path / "noext"
    model.save(plain)
    assert plain.exists() and not (tmp_path / "noext.npz").exists()
    _assert_same_model(model, fastnn.load(plain))


def test_save_overwrites(rng, tmp_path):
    path = tmp_path / "m.npz"
    _mlp("float64", rng).save(path)
    other = MLP(3, 2, 2, output="sigmoid", dtype="float32", random_state=9)
    other.save(path)
    _assert_same_model(other, fastnn.load(path))
    assert os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_save_is_atomic(rng, tmp_path, monkeypatch, error):
    path = tmp_path / "m.npz"
    old = _mlp("float64", rng)
    old.save(path)
    old_bytes = path.read_bytes()

    def failing_savez(*args, **kwargs):
        raise error

    monkeypatch.setattr(np, "savez", failing_savez)
    new = MLP(3, 7, 2, random_state=3)
    with pytest.raises(type(error)):
        new.save(path)
    assert path.read_bytes() == old_bytes  # the old file is intact
    assert os.listdir(tmp_path) == ["m.npz"]  # and no temporary file is left
    with pytest.raises(type(error)):
        new.save(tmp_path / "fresh.npz")
    assert os.listdir(tmp_path) == ["m.npz"]
    monkeypatch.undo()
    _assert_same_model(old, fastnn.load(path))


def test_save_atomic_when_writing_half_a_file(rng, tmp_path, monkeypatch):
    # a failure after some bytes were written: still the old file, no temporary
    path = tmp_path / "m.npz"
    old = _mlp("float64", rng)
    old.save(path)
    old_bytes = path.read_bytes()
    real_savez = np.savez

    def half_savez(file, **arrays):
        file.write(b"PK\x03\x04partial")
        raise OSError("no space left on device")

    monkeypatch.setattr(np, "savez", half_savez)
    with pytest.raises(OSError):
        MLP(3, 7, 2, random_state=3).save(path)
    monkeypatch.setattr(np, "savez", real_savez)
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["m.npz"]


# ---------------------------------------------------------------------------------------
# bad files
# ---------------------------------------------------------------------------------------


@pytest.fixture
def saved(rng, tmp_path):
    """(path, arrays) of a saved float32 MLP with Adam state."""
    path = tmp_path / "good.npz"
    _mlp("float32", rng, FITS["adam"]).save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return path, arrays


def _write(tmp_path, arrays, name="bad.npz", **changes):
    arrays = dict(arrays)
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path = tmp_path / name
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def test_object_arrays_are_refused(saved, tmp_path):
    _, arrays = saved
    path = _write(tmp_path, arrays, W0=np.array([{"evil": 1}, None], dtype=object))
    with pytest.raises(ValueError, match="bad.npz"):
        fastnn.load(path)
    # a pickle file is refused too, without being unpickled
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps(MLP(2, 2, 2)))
    with pytest.raises(ValueError, match="model.pkl"):
        fastnn.load(pkl)


@pytest.mark.parametrize("cut", [0, 10, 100, 0.5, -1, -30])
def test_truncated_file(saved, tmp_path, cut):
    path, _ = saved
    raw = path.read_bytes()
    n = int(len(raw) * cut) if isinstance(cut, float) else (cut if cut >= 0 else len(raw) + cut)
    bad = tmp_path / "cut.npz"
    bad.write_bytes(raw[:n])
    with pytest.raises(ValueError, match="cut.npz"):
        fastnn.load(bad)


@pytest.mark.parametrize("content", [b"hello world", b"\x93NUMPY garbage", b"PK\x03\x04junk"])
def test_not_a_zip_file(tmp_path, content):
    bad = tmp_path / "junk.npz"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="junk.npz"):
        fastnn.load(bad)


def test_a_plain_npy_file_is_not_a_model(tmp_path):
    bad = tmp_path / "array.npy"
    np.save(bad, np.ones(3))
    with pytest.raises(ValueError, match="array.npy"):
        fastnn.load(bad)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "nope.npz")


@pytest.mark.parametrize("key", ["format", "kind", "loss", "dtype", "n_layers", "W0", "W1",
                                 "activation2", "opt_t", "opt_hyper"])
def test_missing_keys(saved, tmp_path, key):
    _, arrays = saved
    with pytest.raises(ValueError, match=f"missing '{key}'"):
        fastnn.load(_write(tmp_path, arrays, **{key: None}))


def test_some_other_npz_is_not_a_model(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.ones(3), b=np.zeros(2))
    with pytest.raises(ValueError, match="not a fastnn model file"):
        fastnn.load(path)


@pytest.mark.parametrize("changes, match", [
    (dict(W0=np.zeros((5, 2), np.float32)), "layer 0"),          # wrong n_in
    (dict(W0=np.zeros(15, np.float32)), "layer 0"),               # 1-D
    (dict(b0=np.zeros(4, np.float32)), "layer 0"),               # wrong n_out
    (dict(W1=np.zeros((4, 6), np.float32)), "layer 1"),          # does not chain
    (dict(opt0_W1=np.zeros((2, 2), np.float32)), "optimizer state of layer 1"),
    (dict(opt1_b2=np.zeros(7, np.float32)), "optimizer state of layer 2"),
    (dict(opt0_b0=None), "optimizer state cannot be used: .*layer 0"),
    (dict(opt_hyper=np.zeros(3)), "optimizer"),
])
def test_wrong_shapes(saved, tmp_path, changes, match):
    _, arrays = saved
    with pytest.raises(ValueError, match=match):
        fastnn.load(_write(tmp_path, arrays, **changes))


@pytest.mark.parametrize("changes, match", [
    (dict(W0=np.zeros((5, 3), np.float64)), "W0 has dtype float64"),
    (dict(b1=np.zeros(4, np.int32)), "b1 has dtype int32"),
    (dict(W2=np.zeros((3, 4), np.float16)), "W2"),
    (dict(dtype=np.array("float64")), "float64"),
    (dict(dtype=np.array("int8")), "dtype"),
    (dict(opt1_W0=np.zeros((5, 3), np.float64)), "optimizer state of layer 0"),
    (dict(loss=np.array("hinge")), "loss"),
    (dict(kind=np.array("CNN")), "kind"),
    (dict(activation1=np.array("softplus")), "activation1"),
    (dict(opt_name=np.array("rmsprop")), "opt_name"),
    (dict(n_layers=np.array(2.5)), "n_layers"),
    (dict(n_layers=np.array(0)), "n_layers"),
    (dict(n_layers=np.array(4)), "missing 'W3'"),
    (dict(format=np.array(2)), "format"),
])
def test_wrong_dtypes_and_values(saved, tmp_path, changes, match):
    _, arrays = saved
    with pytest.raises(ValueError, match=match):
        fastnn.load(_write(tmp_path, arrays, **changes))


@pytest.mark.parametrize("changes", [
    pytest.param(dict(format=np.array("one")), id="format-str"),
    pytest.param(dict(opt_t=np.array([1, 2])), id="opt_t-array"),
    pytest.param(dict(opt_t=np.array("many")), id="opt_t-str"),
])
def test_bad_scalar_fields_name_the_file_and_field(saved, tmp_path, changes):
    _, arrays = saved
    key = next(iter(changes))
    with pytest.raises(ValueError, match=f"bad.npz.*{key}"):
        fastnn.load(_write(tmp_path, arrays, **changes))


# ---------------------------------------------------------------------------------------
# pickle
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize("fit", ["unfitted", "adam"])
def test_pickle_round_trip(backend, dtype, kind, fit, rng):
    model = BUILDERS[kind](dtype, rng, FITS[fit])
    clone = pickle.loads(pickle.dumps(model))
    _assert_same_model(model, clone)
    _assert_same_optimizer(model, clone)
    X = rng.standard_normal((9, 3)).astype(dtype)
    for method in ("decision_function", "predict_proba", "predict"):
        np.testing.assert_array_equal(getattr(model, method)(X), getattr(clone, method)(X))
    # the clone has its own lock and its own arrays, and can fit again
    assert clone._fit_lock is not model._fit_lock
    assert not np.shares_memory(clone.layers[0].W, model.layers[0].W)
    before = [l.W.copy() for l in model.layers]
    if kind == "mlp":
        Xf, yf = _data(rng)
    else:
        Xf = 0.3 * rng.standard_normal((30, 3))
        yf = Xf.sum(axis=1)
    loss0 = clone.loss(Xf, yf)
    clone.fit(Xf, yf, epochs=5, batch_size=8, lr=0.01, optimizer="adam", random_state=0,
              warm_start=True)
    assert clone.loss(Xf, yf) < loss0
    for W, layer in zip(before, model.layers):  # the original is untouched
        np.testing.assert_array_equal(W, layer.W)


def test_pickle_while_fitting_lock_is_held(rng):
    # the lock is not part of the state: a model can be pickled at any time
    model = _mlp("float64", rng)
    with model._fit_lock:
        clone = pickle.loads(pickle.dumps(model))
    assert clone._fit_lock.acquire(blocking=False)
    clone._fit_lock.release()


# ---------------------------------------------------------------------------------------
# Model files as an attacker's files would have them (issue 13, item 6): ``load`` reads only
# the members a model has, each member's .npy header (shape, dtype) checked against the
# architecture before its data is read, and inflates no member past its declared size, so that
# no zip bomb is inflated: a member no model has, a header declaring a huge shape in a small
# file, a stream longer or shorter than declared, an oversized name or count, an unbounded
# compression method. ``bytes_inflated`` counts what zipfile hands out of the members.
# ---------------------------------------------------------------------------------------


# zip files written by hand: members whose directory entries and streams say what a test
# wants (zipfile can only write honest ones)


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _npy_header(shape, dtype):
    """The bytes of a .npy file's header declaring ``shape`` of ``dtype`` (as np.save writes
    them), without any data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str,
                                              "fortran_order": False, "shape": shape})
    return buf.getvalue()


class Member:
    """One zip member: ``raw`` as stored in the file, and what the directory claims."""

    def __init__(self, name, data=None, *, raw=None, method=zipfile.ZIP_STORED, crc=None,
                 file_size=None):
        self.name = name.encode()
        self.raw = data if raw is None else raw
        self.method = method
        self.crc = zlib.crc32(data) if crc is None else crc
        self.file_size = len(data) if file_size is None else file_size


def _write_zip(path, members):
    out = bytearray()
    central = bytearray()
    for m in members:
        offset = len(out)
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, m.method, 0, 0x21, m.crc,
                           len(m.raw), m.file_size, len(m.name), 0) + m.name + m.raw
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, m.method, 0, 0x21,
                               m.crc, len(m.raw), m.file_size, len(m.name), 0, 0, 0, 0, 0,
                               offset) + m.name
    out += central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                                 len(central), len(out), 0)
    path.write_bytes(bytes(out))
    return path


def _zeros_stream(head, n_zeros, tail=b""):
    """A raw deflate stream of ``head``, ``n_zeros`` zero bytes (a multiple of 16 MiB, or
    less) and ``tail``, and the CRC-32 of what it inflates to; built from one compressed block
    repeated (a full flush makes each block independent), so a GiB costs milliseconds."""
    block = min(n_zeros, 1 << 24)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(block)
    compressed = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.compress(tail) + c.flush()
    crc = zlib.crc32(head)
    for _ in range(n_zeros // block):
        crc = zlib.crc32(zeros, crc)
    return start + compressed * (n_zeros // block) + end, zlib.crc32(tail, crc)


def _members_of(model, tmp_path):
    """``model``'s file as a list of Members (its own, stored)."""
    path = tmp_path / "source.npz"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        members = [Member(info.filename, zf.read(info)) for info in zf.infolist()]
    os.unlink(path)
    return members


@pytest.fixture
def model_members(tmp_path):
    """A model with Adam state, and its file as a list of Members."""
    model = MLP(3, 5, 3, random_state=0)
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((20, 3)), rng.integers(0, 3, 20), epochs=1,
              optimizer="adam", random_state=0)
    return model, _members_of(model, tmp_path)


@pytest.fixture
def bytes_inflated(monkeypatch):
    """The number of bytes zipfile hands out of members (every read of a member's data)."""
    count = [0]
    real_read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        data = real_read(self, n)
        count[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    return count


def _replace(members, name, member):
    return [member if m.name == name.encode() else m for m in members]


# item 6: load reads only the members a model has, each checked before it is read


def test_honest_file_reads_each_member_once(model_members, tmp_path, bytes_inflated):
    model, members = model_members
    path = _write_zip(tmp_path / "m.npz", members)
    loaded = fastnn.load(path)
    np.testing.assert_array_equal(loaded.layers[0].W, model.layers[0].W)
    assert loaded.optimizer_state_["t"] == model.optimizer_state_["t"]
    # every member's .npy header read twice (checked, then skipped over) and its data once
    assert bytes_inflated[0] <= sum(len(m.raw) for m in members) + 300 * len(members)


def test_compressed_file_loads(model_members, tmp_path):
    # np.savez_compressed of the same arrays (deflated members) is a model file too
    model, members = model_members
    path = tmp_path / "c.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for m in members:
            zf.writestr(m.name.decode(), m.raw)
    loaded = fastnn.load(path)
    for a, b in zip(model.layers, loaded.layers):
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.b, b.b)


def test_fortran_order_member_loads(model_members, tmp_path):
    model, members = model_members
    W0 = np.asfortranarray(model.layers[0].W)
    members = _replace(members, "W0.npy", Member("W0.npy", _npy(W0)))
    loaded = fastnn.load(_write_zip(tmp_path / "f.npz", members))
    np.testing.assert_array_equal(loaded.layers[0].W, model.layers[0].W)
    assert loaded.layers[0].W.flags.c_contiguous


def test_unknown_gib_member_is_refused_unread(model_members, tmp_path, bytes_inflated):
    # the file: a model and, under a key no model has, 1 GiB of zeros in ~1 MB
    _, members = model_members
    raw, crc = _zeros_stream(_npy_header((1 << 28,), "<f4"), 1 << 30)
    header_size = len(_npy_header((1 << 28,), "<f4"))
    bomb = Member("payload.npy", raw=raw, method=zipfile.ZIP_DEFLATED, crc=crc,
                  file_size=header_size + (1 << 30))
    path = _write_zip(tmp_path / "big.npz", members + [bomb])
    assert path.stat().st_size < 2 << 20
    with pytest.raises(ValueError, match=r"big\.npz.*'payload\.npy'.*no part of the model"):
        fastnn.load(path)
    assert bytes_inflated[0] < 4096  # the scalar fields, no more


@pytest.mark.parametrize("name, array", [
    ("extra.npy", np.ones(3)),
    ("W2.npy", np.ones((3, 3), np.float32)),  # a third layer of a two-layer model
    ("opt2_W0.npy", np.ones((5, 3), np.float32)),
    ("notes.txt", b"hello"),
    ("W0.npy", None),  # the same name twice
])
def test_members_no_model_has_are_refused(model_members, tmp_path, name, array):
    _, members = model_members
    if array is None:
        extra = next(m for m in members if m.name == name.encode())
    else:
        extra = Member(name, array if isinstance(array, bytes) else _npy(array))
    path = _write_zip(tmp_path / "extra.npz", members + [extra])
    with pytest.raises(ValueError, match=rf"extra\.npz.*{name.replace('.', r'[.]')}"):
        fastnn.load(path)


def test_optimizer_members_without_an_optimizer_are_refused(model_members, tmp_path):
    _, members = model_members
    members = [m for m in members if m.name != b"opt_name.npy"]
    with pytest.raises(ValueError, match=r"'opt\w*\.npy'.*no part of the model"):
        fastnn.load(_write_zip(tmp_path / "m.npz", members))


def test_huge_shape_in_a_small_file_is_refused_unread(model_members, tmp_path, bytes_inflated):
    # W0 declares (65536, 8192) float32, 2 GiB, and its stream does inflate to that size;
    # the zip directory says so too: refused because 2 GiB cannot come out of ~2 MB of file
    _, members = model_members
    head = _npy_header((1 << 16, 1 << 13), "<f4")
    raw, crc = _zeros_stream(head, 1 << 31)
    bomb = Member("W0.npy", raw=raw, method=zipfile.ZIP_DEFLATED, crc=crc,
                  file_size=len(head) + (1 << 31))
    path = _write_zip(tmp_path / "bomb.npz", _replace(members, "W0.npy", bomb))
    with pytest.raises(ValueError, match=r"bomb\.npz.*'W0\.npy'.*refused unread"):
        fastnn.load(path)
    assert bytes_inflated[0] < 4096


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_header_declaring_more_than_the_member_holds(model_members, tmp_path, method,
                                                     bytes_inflated):
    # W0's header says (65536, 8192) float32, the member holds 15 floats and says so
    _, members = model_members
    data = _npy_header((1 << 16, 1 << 13), "<f4") + bytes(60)
    raw = data if method == zipfile.ZIP_STORED else zlib.compress(data)[2:-4]
    bomb = Member("W0.npy", raw=raw, method=method, crc=zlib.crc32(data), file_size=len(data))
    path = _write_zip(tmp_path / "liar.npz", _replace(members, "W0.npy", bomb))
    with pytest.raises(ValueError, match=r"liar\.npz.*'W0\.npy' declares shape \(65536, 8192\)"):
        fastnn.load(path)
    assert bytes_inflated[0] < 4096


def test_stored_member_claiming_past_the_end_of_the_file(model_members, tmp_path):
    _, members = model_members
    data = _npy_header((1 << 16, 1 << 13), "<f4") + bytes(60)
    bomb = Member("W0.npy", data, file_size=len(data) - 60 + (1 << 31))
    path = _write_zip(tmp_path / "short.npz", _replace(members, "W0.npy", bomb))
    with pytest.raises(ValueError, match=r"short\.npz.*'W0\.npy'"):
        fastnn.load(path)


@pytest.mark.parametrize("crc_of", ["declared", "one more byte"])
def test_stream_inflating_past_its_declared_size_is_refused(tmp_path, crc_of,
                                                            bytes_inflated):
    # W0's header and directory entry are honest, (50, 40) float32; its deflate stream goes
    # on for 1 GiB of zeros past that, with a CRC right for the declared part, or for one
    # byte more (what a reader that stops one byte late would check)
    members = _members_of(MLP(40, 50, 3, random_state=0), tmp_path)
    good = next(m for m in members if m.name == b"W0.npy")
    raw, _ = _zeros_stream(good.raw, 1 << 30)
    crc = good.crc if crc_of == "declared" else zlib.crc32(b"\0", good.crc)
    bomb = Member("W0.npy", raw=raw, method=zipfile.ZIP_DEFLATED, crc=crc,
                  file_size=len(good.raw))
    path = _write_zip(tmp_path / "long.npz", _replace(members, "W0.npy", bomb))
    message = "is damaged" if crc_of == "declared" else "holds more data"
    with pytest.raises(ValueError, match=rf"long\.npz.*'W0\.npy' {message}"):
        fastnn.load(path)
    assert bytes_inflated[0] < 1 << 20


@pytest.mark.parametrize("crc_of", ["declared", "stream"])
def test_stream_shorter_than_declared_is_refused(tmp_path, crc_of):
    members = _members_of(MLP(40, 50, 3, random_state=0), tmp_path)
    good = next(m for m in members if m.name == b"W0.npy")
    short = good.raw[:-8]
    bad = Member("W0.npy", raw=zlib.compress(short)[2:-4], method=zipfile.ZIP_DEFLATED,
                 crc=good.crc if crc_of == "declared" else zlib.crc32(short),
                 file_size=len(good.raw))
    message = "is damaged" if crc_of == "declared" else "holds less data"
    with pytest.raises(ValueError, match=rf"'W0\.npy' {message}"):
        fastnn.load(_write_zip(tmp_path / "m.npz", _replace(members, "W0.npy", bad)))


@pytest.mark.parametrize("size", [1 << 19, 1 << 28])
@pytest.mark.parametrize("key", ["loss", "activation0", "opt_t"])
def test_oversized_scalar_field_is_refused_unread(model_members, tmp_path, key, size,
                                                  bytes_inflated):
    # a name or a count declared as 512 kB or 256 MiB of characters / numbers, deflated to
    # 0.5 or 256 kB (the larger one more than 100 times its size)
    _, members = model_members
    dtype = "<U1" if key != "opt_t" else "<i8"
    head = _npy_header((size // np.dtype(dtype).itemsize,), dtype)
    raw, crc = _zeros_stream(head, size)
    bomb = Member(f"{key}.npy", raw=raw, method=zipfile.ZIP_DEFLATED, crc=crc,
                  file_size=len(head) + size)
    path = _write_zip(tmp_path / "m.npz", _replace(members, f"{key}.npy", bomb))
    with pytest.raises(ValueError, match=rf"m\.npz.*'{key}(\.npy)?'"):
        fastnn.load(path)
    assert bytes_inflated[0] < 4096


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_other_compression_methods_are_refused(model_members, tmp_path, method):
    # bzip2 and lzma members are inflated by zipfile without a bound on a read's output
    _, members = model_members
    path = tmp_path / "other.npz"
    with zipfile.ZipFile(path, "w", method) as zf:
        for m in members:
            zf.writestr(m.name.decode(), m.raw)
    with pytest.raises(ValueError, match=r"other\.npz.*compressed by a method other"):
        fastnn.load(path)


def test_object_scalar_is_refused_without_unpickling(model_members, tmp_path):
    _, members = model_members
    buf = io.BytesIO()
    np.save(buf, np.array(["cross_entropy"], dtype=object).reshape(()), allow_pickle=True)
    bad = Member("loss.npy", buf.getvalue())
    with pytest.raises(ValueError, match=r"'loss\.npy' holds Python objects"):
        fastnn.load(_write_zip(tmp_path / "m.npz", _replace(members, "loss.npy", bad)))


def test_bad_crc_is_a_value_error(model_members, tmp_path):
    _, members = model_members
    good = next(m for m in members if m.name == b"W0.npy")
    bad = Member("W0.npy", good.raw, crc=good.crc ^ 1)
    with pytest.raises(ValueError, match=r"'W0\.npy' is (damaged|not a readable .npy array)"):
        fastnn.load(_write_zip(tmp_path / "m.npz", _replace(members, "W0.npy", bad)))


# item 1 (the file side): the optimizer state a warm start continues must be complete;
# item 3 (the file side): arrays of the other byte order are read by value


@pytest.mark.parametrize("missing", [("opt1_W0", "opt1_b0", "opt1_W1", "opt1_b1"),
                                     ("opt1_W1",), ("opt0_b0",)])
def test_an_incomplete_optimizer_state_is_refused(model_members, tmp_path, missing):
    model, members = model_members
    kept = [m for m in members if m.name.decode().removesuffix(".npy") not in missing]
    path = _write_zip(tmp_path / "incomplete.npz", kept)
    with pytest.raises(ValueError, match="optimizer state cannot be used: (adam keeps|the first)"):
        fastnn.load(path)


def test_a_negative_second_moment_is_refused(model_members, tmp_path):
    model, members = model_members
    v = model.optimizer_state_["state"][1][0][0].copy()
    v[0, 0] = -1.0
    path = _write_zip(tmp_path / "negative.npz",
                      _replace(members, "opt1_W0.npy", Member("opt1_W0.npy", _npy(v))))
    with pytest.raises(ValueError, match="negative values"):
        fastnn.load(path)


def test_a_file_of_the_other_byte_order_loads_by_value(model_members, tmp_path):
    model, members = model_members
    swapped = []
    for m in members:
        array = np.load(io.BytesIO(m.raw), allow_pickle=False)
        if array.dtype.kind == "f":
            array = array.astype(array.dtype.newbyteorder())  # same values, other order
        swapped.append(Member(m.name.decode(), _npy(array)))
    loaded = fastnn.load(_write_zip(tmp_path / "swapped.npz", swapped))
    assert loaded.dtype == model.dtype and loaded.dtype.isnative
    X = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    for s, s0 in zip(loaded.optimizer_state_["state"][1], model.optimizer_state_["state"][1]):
        assert s[0].dtype.isnative
        np.testing.assert_array_equal(s[0], s0[0])
    rng = np.random.default_rng(2)
    loaded.fit(rng.standard_normal((20, 3)), rng.integers(0, 3, 20), epochs=1,
               optimizer="adam", warm_start=True)  # the state continues, no warning


# ---------------------------------------------------------------------------------------
# Model files as a user's file system has them (issue 13, items 7 and 8): ``save`` gives a
# new file the mode ``open`` would and keeps an existing file's mode, owner and group, writes
# through symlinks to their target, and the temporary file of a save killed with SIGKILL is
# removed by the next save to the same target once its process is gone.
# ---------------------------------------------------------------------------------------


# item 7: save keeps the file's mode (owner, group) and writes through symlinks


@pytest.fixture
def umask():
    """Set the process's umask for the test (restored after)."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
def test_new_file_gets_the_mode_open_gives(tmp_path, umask, mask):
    umask(mask)
    reference = tmp_path / "by-open"
    with open(reference, "wb"):
        pass
    MLP(3, 4, 2, random_state=0).save(tmp_path / "m.npz")
    assert _mode(tmp_path / "m.npz") == _mode(reference)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o444, 0o664, 0o600, 0o755])
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_existing_file_keeps_its_mode(tmp_path, umask, mode, mask):
    umask(mask)
    path = tmp_path / "m.npz"
    MLP(3, 4, 2, random_state=0).save(path)
    os.chmod(path, mode)
    other = MLP(3, 6, 2, random_state=1)
    other.save(path)
    assert _mode(path) == mode
    assert fastnn.load(path).layers[0].n_out == 6


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="changing a file's owner needs root")
def test_existing_file_keeps_its_owner_and_group(tmp_path):
    path = tmp_path / "m.npz"
    MLP(3, 4, 2, random_state=0).save(path)
    os.chown(path, 12345, 23456)
    os.chmod(path, 0o2640)  # set-group-id too: chown would clear it if done after chmod
    MLP(3, 6, 2, random_state=1).save(path)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 23456, 0o2640)


def test_save_writes_through_a_symlink(tmp_path):
    v1 = tmp_path / "v1.npz"
    MLP(3, 4, 2, random_state=0).save(v1)
    os.chmod(v1, 0o640)
    current = tmp_path / "current.npz"
    current.symlink_to("v1.npz")
    new = MLP(3, 6, 2, random_state=1)
    new.save(current)
    assert current.is_symlink() and os.readlink(current) == "v1.npz"
    assert fastnn.load(v1).layers[0].n_out == 6  # the target has the new model
    assert _mode(v1) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["current.npz", "v1.npz"]


def test_save_through_a_chain_of_links_into_another_folder(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "app").mkdir()
    target = tmp_path / "models" / "v2.npz"
    MLP(3, 4, 2, random_state=0).save(target)
    (tmp_path / "models" / "latest.npz").symlink_to("v2.npz")
    link = tmp_path / "app" / "model.npz"
    link.symlink_to(os.path.join("..", "models", "latest.npz"))
    MLP(3, 7, 2, random_state=1).save(link)
    assert link.is_symlink() and (tmp_path / "models" / "latest.npz").is_symlink()
    assert fastnn.load(target).layers[0].n_out == 7
    assert os.listdir(tmp_path / "app") == ["model.npz"]  # no temporary left anywhere
    assert sorted(os.listdir(tmp_path / "models")) == ["latest.npz", "v2.npz"]


def test_save_through_a_dangling_symlink_creates_its_target(tmp_path, umask):
    umask(0o022)
    link = tmp_path / "current.npz"
    link.symlink_to("v3.npz")
    MLP(3, 4, 2, random_state=0).save(link)
    assert link.is_symlink()
    assert _mode(tmp_path / "v3.npz") == 0o644
    assert fastnn.load(tmp_path / "v3.npz").layers[0].n_out == 4


# item 8: the temporary file of a save killed with SIGKILL is found and removed

_SAVING_FOREVER = textwrap.dedent("""
    import sys
    import fastnn
    model = fastnn.MLP(1000, 2000, 10, dtype="float64", random_state=0)  # a 16 MB file
    print("saving", flush=True)
    while True:
        model.save(sys.argv[1])
""")

_STUCK_IN_SAVE = textwrap.dedent("""
    import sys
    import numpy as np
    import fastnn
    real_savez = np.savez
    def savez_then_wait(file, **arrays):  # the file written, not yet renamed: wait there
        real_savez(file, **arrays)
        file.flush()
        print("written", flush=True)
        sys.stdin.read()
    np.savez = savez_then_wait
    fastnn.MLP(3, 4, 2, random_state=0).save(sys.argv[1])
""")


def _child(script, target):
    return subprocess.Popen([sys.executable, "-c", script, str(target)],
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE)


def _temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and the pid check are POSIX")
def test_temporaries_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    target = tmp_path / "m.npz"
    # kill -9 a process saving a 16 MB model again and again while its temporary file
    # exists, until a kill leaves one behind (most of a save's time is writing it)
    for _ in range(20):
        before = set(_temporaries(tmp_path))
        child = _child(_SAVING_FOREVER, target)
        assert child.stdout.readline() == b"saving\n"
        while not set(_temporaries(tmp_path)) - before:  # until this child's save writes
            assert child.poll() is None
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stdin.close()
        if _temporaries(tmp_path):
            break
    left = _temporaries(tmp_path)
    assert left and all(name.startswith(".m.npz.fastnn-") for name in left)
    # one of them made a dead process's temporary of another target: it must stay
    other = left[0].replace(".m.npz.", ".other.npz.", 1)
    os.rename(tmp_path / left[0], tmp_path / other)
    # a save stuck before its rename, in a live process: its temporary file is not touched
    # (that save itself removes the dead ones of m.npz)
    stuck = _child(_STUCK_IN_SAVE, target)
    try:
        assert stuck.stdout.readline() == b"written\n"
        live = [name for name in _temporaries(tmp_path) if f"-{stuck.pid}-" in name]
        assert len(live) == 1
        assert _temporaries(tmp_path) == sorted(live + [other])
        MLP(3, 5, 2, random_state=1).save(target)
        assert _temporaries(tmp_path) == sorted(live + [other])
        assert fastnn.load(target).layers[0].n_out == 5
    finally:
        stuck.kill()
        stuck.wait()
        stuck.stdout.close()
        stuck.stdin.close()
    # now it is gone: the next save removes its file
    MLP(3, 6, 2, random_state=1).save(target)
    assert _temporaries(tmp_path) == [other]
    MLP(3, 6, 2, random_state=1).save(tmp_path / "other.npz")
    assert _temporaries(tmp_path) == []
