"""Model files as an attacker's files would have them (issue 13, item 6): ``load`` reads only
the members a model has, each member's .npy header (shape, dtype) checked against the
architecture before its data is read, and inflates no member past its declared size, so that
no zip bomb is inflated: a member no model has, a header declaring a huge shape in a small
file, a stream longer or shorter than declared, an oversized name or count, an unbounded
compression method. ``bytes_inflated`` counts what zipfile hands out of the members."""

import io
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest

import fastnn
from fastnn import MLP

# ---------------------------------------------------------------------------------------
# zip files written by hand: members whose directory entries and streams say what a test
# wants (zipfile can only write honest ones)
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# item 6: load reads only the members a model has, each checked before it is read
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# item 1 (the file side): the optimizer state a warm start continues must be complete;
# item 3 (the file side): arrays of the other byte order are read by value
# ---------------------------------------------------------------------------------------


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
