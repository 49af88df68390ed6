"""Hardening, part 6: faults.

* Model files that are truncated, corrupted, not zip files, empty, directories, of the wrong
  shapes or dtypes, or that carry pickled objects are refused by ``fastnn.load`` with a
  ValueError naming the file, and nothing in them is ever unpickled.
* Saving onto a path that cannot be written (read-only folder, full disk, an interrupt while
  writing) leaves the old file intact and no temporary file behind.
* A divergence in fit (a NaN/inf loss, or weights that overflow in the last update) and a
  Ctrl-C in fit (KeyboardInterrupt in the epoch's native or Python loop, in the callback,
  or a real SIGINT) leave the model at its last finite, finished state: the weights and
  optimizer state of the last completed epoch, bit for bit, and a usable model.
"""

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import serialization

# the numpy backend's reference overflows on purpose in the divergence tests
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

COUNTS = {"files_refused": 0, "saves_failed": 0, "fits_interrupted": 0}


def trained_model(dtype="float32", optimizer="adam"):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 3)), rng.integers(0, 3, 64)
    model = fastnn.MLP(3, [5, 4], 3, activation="tanh", dtype=dtype, random_state=0)
    model.fit(X, y, epochs=2, optimizer=optimizer, random_state=0)
    return model


def params(model):
    return [(W.copy(), None if b is None else b.copy()) for W, b in model.parameters()]


def same_params(a, b):
    return all(np.array_equal(W1, W2) and ((b1 is None and b2 is None) or np.array_equal(b1, b2))
               for (W1, b1), (W2, b2) in zip(a, b))


def opt_arrays(model):
    opt = model.optimizer_state_
    return [None if s is None else (s[0].copy(), None if s[1] is None else s[1].copy())
            for states in opt["state"] for s in states]


def same_opt(a, b):
    return all((x is None and y is None) or (np.array_equal(x[0], y[0]) and (
        (x[1] is None and y[1] is None) or np.array_equal(x[1], y[1]))) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------
# load refuses bad files
# ---------------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    model = trained_model()
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return model, path, arrays


def refused(path, *words):
    """load(path) raises ValueError whose message names the file (and ``words``)."""
    COUNTS["files_refused"] += 1
    with pytest.raises(ValueError) as info:
        fastnn.load(path)
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message
    return message


def write_npz(path, arrays):
    np.savez(path, **arrays)
    return path


def test_a_saved_model_loads_back(saved):
    model, path, _ = saved
    back = fastnn.load(path)
    assert same_params(params(back), params(model))
    assert same_opt(opt_arrays(back), opt_arrays(model))
    assert back.optimizer_state_["t"] == model.optimizer_state_["t"]


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, -22, -1])
def test_truncated_files_are_refused(saved, tmp_path, keep):
    _, path, _ = saved
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else len(data) + keep
    bad = tmp_path / f"truncated-{n}.npz"
    bad.write_bytes(data[:n])
    refused(bad)


@pytest.mark.parametrize("where", [0.3, 0.6])
def test_corrupted_bytes_are_refused(saved, tmp_path, where):
    """Flipped bytes inside a stored member: its CRC no longer matches."""
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("W0.npy")
    # inside W0's data: past its local header and the .npy header
    start = info.header_offset + 30 + len(info.filename) + 128
    k = start + int((info.compress_size - 128) * where)
    data[k:k + 4] = bytes(b ^ 0xFF for b in data[k:k + 4])
    bad = tmp_path / "corrupted.npz"
    bad.write_bytes(bytes(data))
    refused(bad)


def test_not_a_zip_empty_and_directory_are_refused(tmp_path):
    text = tmp_path / "text.npz"
    text.write_text("this is not a model\n")
    refused(text)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    refused(empty)
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    refused(folder)
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as fh:
        np.save(fh, np.ones(3))  # a .npy, not an .npz
    refused(npy)
    other_zip = tmp_path / "other.npz"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "hello")
    refused(other_zip, "not a fastnn model file")
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "missing.npz")


def test_a_declared_shape_bomb_is_refused_quickly(saved, tmp_path):
    """A member whose .npy header declares 10^13 elements: refused, no 80 TB allocation."""
    _, path, arrays = saved
    bad = tmp_path / "bomb.npz"
    np.savez(bad, **arrays)
    with zipfile.ZipFile(bad) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    W0 = members["W0.npy"]
    header_end = W0.index(b"\n") + 1
    header = W0[:header_end].decode("latin1")
    old_shape = header[header.index("'shape': ") + 9:header.index(")", header.index("'shape'")) + 1]
    new = header.replace(old_shape, "(10000000000000,)")
    # keep the header length (pad with spaces before the newline)
    new = new[:-1].ljust(len(header) - 1) + "\n" if len(new) <= len(header) else new
    members["W0.npy"] = new.encode("latin1") + W0[header_end:]
    with zipfile.ZipFile(bad, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    start = time.perf_counter()
    refused(bad)
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("field,value,words", [
    ("W0", lambda a: a["W0"][None], ["layer 0"]),                        # 3-D
    ("W0", lambda a: a["W0"][:, :0], ["layer 0"]),                       # empty
    ("b0", lambda a: a["b0"][:2], ["layer 0"]),                          # wrong length
    ("W1", lambda a: np.ones((4, 7), np.float32), ["layer 1"]),          # widths do not chain
    ("b1", lambda a: a["b1"].reshape(1, -1), ["layer 1"]),
    ("n_layers", lambda a: np.array(5), []),                             # missing layers
    ("n_layers", lambda a: np.array(0), ["n_layers"]),
    ("n_layers", lambda a: np.array([3, 3]), ["n_layers"]),
    ("format", lambda a: np.array([1, 1]), ["format"]),
    ("format", lambda a: np.array(2), ["format"]),
    ("opt_t", lambda a: np.array([1, 2]), ["opt_t"]),
    ("opt_t", lambda a: np.array(-5), ["opt_t"]),
    ("opt0_W0", lambda a: a["opt0_W0"][:1], ["optimizer state"]),
    ("opt_hyper", lambda a: a["opt_hyper"][:3], ["optimizer"]),
])
def test_wrong_shapes_are_refused(saved, tmp_path, field, value, words):
    _, _, arrays = saved
    bad = write_npz(tmp_path / "bad.npz", dict(arrays, **{field: value(arrays)}))
    refused(bad, *words)


@pytest.mark.parametrize("field,dtype", [
    ("W0", np.float64), ("W0", np.float16), ("W0", np.int32), ("W0", np.bool_),
    ("W0", np.complex64), ("W0", ">f8"), ("b0", np.float64), ("W1", np.int64),
    ("opt0_W0", np.float64), ("opt1_b1", np.float16), ("opt_hyper", np.float32),
    ("n_layers", np.float64), ("format", np.float64), ("dtype", "S7"), ("activation0", "S4"),
    ("loss", np.int64),
])
def test_wrong_dtypes_are_refused(saved, tmp_path, field, dtype):
    _, _, arrays = saved
    try:
        value = arrays[field].astype(dtype)
    except ValueError:  # a text field as a number
        value = np.zeros(arrays[field].shape, dtype)
    bad = write_npz(tmp_path / "bad.npz", dict(arrays, **{field: value}))
    refused(bad)


def test_the_other_byte_order_is_read_by_value(saved, tmp_path):
    # (a file from a machine of the other byte order: the same numbers)
    _, _, arrays = saved
    swapped = {k: v.astype(v.dtype.newbyteorder()) if v.dtype.kind == "f" else v
               for k, v in arrays.items()}
    model = fastnn.load(write_npz(tmp_path / "swapped.npz", swapped))
    np.testing.assert_array_equal(model.layers[0].W, arrays["W0"])
    assert model.layers[0].W.dtype.isnative


def test_text_fields_with_unknown_values_are_refused(saved, tmp_path):
    _, _, arrays = saved
    for field, value in (("dtype", "float16"), ("loss", "hinge"), ("kind", "Pipeline"),
                         ("activation0", "softplus"), ("opt_name", "lbfgs")):
        bad = write_npz(tmp_path / f"bad-{field}.npz", dict(arrays, **{field: np.array(value)}))
        refused(bad, field)


class _Marker:
    """Unpickling this creates a folder (os.mkdir): proof that something was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("field", ["W0", "b1", "format", "activation0", "opt0_W0", "extra"])
def test_pickled_objects_are_refused_and_never_unpickled(saved, tmp_path, field):
    _, _, arrays = saved
    marker = tmp_path / f"unpickled-{field}"
    evil = np.empty(1, dtype=object)
    evil[0] = _Marker(marker)
    bad = tmp_path / "pickled.npz"
    np.savez(bad, **dict(arrays, **{field: evil}))  # np.savez pickles object arrays
    with zipfile.ZipFile(bad) as zf:
        assert b"mkdir" in zf.read(f"{field}.npy")  # the payload is really in the file
    refused(bad)
    assert not marker.exists(), "load unpickled an object"


def test_a_plain_pickle_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    bad = tmp_path / "model.npz"
    bad.write_bytes(pickle.dumps({"W0": _Marker(marker)}))
    refused(bad)
    assert not marker.exists()


def test_fuzzed_files_are_refused_or_load_a_valid_model(saved, tmp_path):
    """400 mutations of a saved model (bytes flipped, overwritten, deleted, inserted, the
    file cut): load either raises ValueError naming the file or returns a working model;
    never another exception, never a crash."""
    _, path, _ = saved
    data = path.read_bytes()
    rng = np.random.default_rng(77)
    outcomes = {"refused": 0, "loaded": 0}
    bad = tmp_path / "fuzzed.npz"
    for i in range(400):
        buf = bytearray(data)
        kind = i % 5
        k = int(rng.integers(0, len(buf)))
        n = int(rng.integers(1, 16))
        if kind == 0:
            buf[k:k + n] = bytes(b ^ int(rng.integers(1, 256)) for b in buf[k:k + n])
        elif kind == 1:
            buf[k:k + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        elif kind == 2:
            del buf[k:k + n]
        elif kind == 3:
            buf[k:k] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        else:
            del buf[k:]
        bad.write_bytes(bytes(buf))
        try:
            model = fastnn.load(bad)
        except ValueError as exc:
            assert str(bad) in str(exc)
            outcomes["refused"] += 1
        else:
            outcomes["loaded"] += 1
            with np.errstate(all="ignore"):
                assert model.predict_proba(np.zeros((2, model.n_inputs))).shape[0] == 2
    COUNTS["files_refused"] += outcomes["refused"]
    assert outcomes["refused"] > 300, outcomes


# ---------------------------------------------------------------------------------------
# save never damages the old file
# ---------------------------------------------------------------------------------------

def leftovers(folder):
    """save's temporary files (.{target}.fastnn-{host}-{pid}-{random}.tmp)."""
    return sorted(p.name for p in folder.iterdir() if ".fastnn-" in p.name)


@pytest.fixture
def old_file(tmp_path):
    old = trained_model()
    path = tmp_path / "model.npz"
    old.save(path)
    new = trained_model(dtype="float64", optimizer="sgd")
    return path, path.read_bytes(), old, new


def assert_old_file_intact(path, data, old):
    assert path.read_bytes() == data
    back = fastnn.load(path)
    assert same_params(params(back), params(old))
    assert leftovers(path.parent) == []


def _can_write(folder):
    try:
        (folder / ".probe").write_bytes(b"x")
    except PermissionError:
        return False
    (folder / ".probe").unlink()
    return True


def test_saving_into_a_read_only_folder(old_file):
    path, data, old, new = old_file
    folder = path.parent
    os.chmod(folder, 0o555)
    try:
        if _can_write(folder):
            pytest.skip("running as root: a read-only mode does not stop writes")
        with pytest.raises(PermissionError):
            new.save(path)
    finally:
        os.chmod(folder, 0o755)
    COUNTS["saves_failed"] += 1
    assert_old_file_intact(path, data, old)


def test_saving_when_the_temporary_file_cannot_be_created(old_file, monkeypatch):
    """The read-only folder, simulated (works as root too): creating a file raises EACCES."""
    path, data, old, new = old_file
    real_open = os.open

    def refuse(file, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied (simulated)")
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(serialization.os, "open", refuse)
    with pytest.raises(PermissionError):
        new.save(path)
    COUNTS["saves_failed"] += 1
    assert_old_file_intact(path, data, old)


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_saving_onto_a_full_disk(old_file, monkeypatch, where):
    """ENOSPC while writing (after part of the data), at fsync, or at the rename."""
    path, data, old, new = old_file
    full = OSError(errno.ENOSPC, "No space left on device (simulated)")
    if where == "write":
        real_savez = np.savez

        def savez(fh, **arrays):
            fh.write(b"PK\x03\x04 partial data")
            raise full

        monkeypatch.setattr(serialization.np, "savez", savez)
        assert real_savez is not serialization.np.savez
    elif where == "fsync":
        def fsync(fd):
            raise full

        monkeypatch.setattr(serialization.os, "fsync", fsync)
    else:
        def replace(src, dst):
            raise full

        monkeypatch.setattr(serialization.os, "replace", replace)
    with pytest.raises(OSError) as info:
        new.save(path)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    COUNTS["saves_failed"] += 1
    assert_old_file_intact(path, data, old)


def test_an_interrupt_while_saving(old_file, monkeypatch):
    path, data, old, new = old_file

    def savez(fh, **arrays):
        fh.write(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(serialization.np, "savez", savez)
    with pytest.raises(KeyboardInterrupt):
        new.save(path)
    monkeypatch.undo()
    COUNTS["saves_failed"] += 1
    assert_old_file_intact(path, data, old)


def test_saving_onto_a_directory_or_into_a_missing_folder(tmp_path):
    model = trained_model()
    folder = tmp_path / "taken.npz"
    folder.mkdir()
    with pytest.raises(OSError):
        model.save(folder)
    assert folder.is_dir() and leftovers(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        model.save(tmp_path / "missing" / "model.npz")
    COUNTS["saves_failed"] += 2


def test_saving_onto_a_read_only_file_is_atomic(old_file):
    """A read-only *file* in a writable folder: the rename may replace it (as mv does) or
    the save may refuse; either way the file is a complete model, old or new."""
    path, data, old, new = old_file
    os.chmod(path, 0o444)
    try:
        new.save(path)
    except PermissionError:
        assert_old_file_intact(path, data, old)
    else:
        back = fastnn.load(path)
        assert same_params(params(back), params(new))
        assert leftovers(path.parent) == []
    finally:
        os.chmod(path, 0o644)


# ---------------------------------------------------------------------------------------
# Divergence and Ctrl-C in fit
# ---------------------------------------------------------------------------------------

RNG = np.random.default_rng(1)
FX = RNG.standard_normal((96, 4))
FY = RNG.integers(0, 3, 96)


def recording_fit(model, epochs, **kwargs):
    """fit with a callback that records (weights, optimizer state, t) after each finished
    epoch; returns (outcome exception or None, records)."""
    records = [(params(model), None, None)]
    user_callback = kwargs.pop("callback", None)

    def callback(epoch, history):
        records.append((params(model), opt_arrays(model), model.optimizer_state_["t"]))
        return user_callback(epoch, history) if user_callback else False

    try:
        model.fit(FX, FY, epochs=epochs, callback=callback, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - returned to the test
        return exc, records
    return None, records


def assert_finished_state(model, record):
    weights, opt, t = record
    assert same_params(params(model), weights), "weights are not those of the last finished epoch"
    for W, b in model.parameters():
        assert np.isfinite(W).all() and (b is None or np.isfinite(b).all())
    if opt is not None:
        assert same_opt(opt_arrays(model), opt), "optimizer state not of the last finished epoch"
        assert model.optimizer_state_["t"] == t
    # usable: predict and fit again
    assert np.isfinite(model.predict_proba(FX)).all()
    model.fit(FX, FY, epochs=1, random_state=0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_divergence_keeps_the_last_finished_epoch(backend, optimizer):
    """lr 0.01 for epochs 0 and 1, then 1e30: epoch 2's first update throws the weights to
    ~1e30 and its next batch's loss overflows; the model keeps the weights and optimizer state
    of the end of epoch 1, and history_ holds the two finished epochs."""
    model = fastnn.MLP(4, [8], 3, random_state=0)
    schedule = lambda epoch: 0.01 if epoch < 2 else 1e30  # noqa: E731
    exc, records = recording_fit(model, 5, lr_schedule=schedule, optimizer=optimizer,
                                 batch_size=8, random_state=3)
    COUNTS["fits_interrupted"] += 1
    assert isinstance(exc, FloatingPointError), exc
    assert "epoch 3 of 5" in str(exc)
    assert len(records) == 3  # initial + epochs 0 and 1
    assert model.history_ is not None and model.history_.epochs == 2
    assert_finished_state(model, records[-1])


def test_divergence_in_the_weights_only_keeps_the_last_finished_epoch(backend):
    """One batch per epoch: epoch 2's loss is computed with finite weights (finite), then its
    update (lr 1e35, gradients scaled by sample weights of 1e6) overflows the float32
    weights to inf; fit sees it on the weights and restores the end of epoch 1."""
    model = fastnn.MLP(4, [8], 3, random_state=0)
    schedule = lambda epoch: 1e-9 if epoch < 2 else 1e35  # noqa: E731
    exc, records = recording_fit(model, 4, lr_schedule=schedule, batch_size=96,
                                 sample_weight=np.full(96, 1e6), random_state=3)
    COUNTS["fits_interrupted"] += 1
    assert isinstance(exc, FloatingPointError), exc
    assert "epoch 3 of 4" in str(exc) and "weights" in str(exc), str(exc)
    assert len(records) == 3
    assert_finished_state(model, records[-1])


def test_divergence_leaves_a_model_with_a_finite_loss(backend):
    model = fastnn.MLP(4, [8], 3, random_state=0)
    schedule = lambda epoch: 0.01 if epoch < 2 else 1e35  # noqa: E731
    exc, records = recording_fit(model, 5, lr_schedule=schedule, batch_size=96,
                                 random_state=3)
    assert isinstance(exc, FloatingPointError), exc
    for W, b in model.parameters():
        assert np.isfinite(W).all() and np.isfinite(b).all()
    with np.errstate(all="ignore"):
        assert np.isfinite(model.loss(FX, FY)), "the kept model's loss is not finite"
        assert np.isfinite(model.predict_proba(FX)).all()
    # epoch 3 (lr 1e35) left finite weights of ~1e33 whose loss overflows, and epoch 4's first
    # loss was the first non-finite one: the model steps back to the end of epoch 2
    assert "epoch 4 of 5" in str(exc) and "from before epoch 3" in str(exc), str(exc)
    assert model.history_.epochs == 2
    assert_finished_state(model, records[2])


def test_ctrl_c_in_the_callback_keeps_the_finished_epoch(backend):
    """A KeyboardInterrupt from the callback of epoch 1 (0-based): epoch 1 has finished, so
    the model keeps its weights: those of a plain 2-epoch fit, bit for bit."""
    def interrupt(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    model = fastnn.MLP(4, [8], 3, random_state=0)
    exc, records = recording_fit(model, 5, callback=interrupt, optimizer="adam", random_state=2)
    COUNTS["fits_interrupted"] += 1
    assert isinstance(exc, KeyboardInterrupt)
    twin = fastnn.MLP(4, [8], 3, random_state=0)
    twin.fit(FX, FY, epochs=2, optimizer="adam", random_state=2)
    assert same_params(params(model), params(twin))
    assert model.optimizer_state_["t"] == twin.optimizer_state_["t"]
    assert_finished_state(model, records[-1])


class _InterruptingTrainer:
    """Wraps the native EpochRunner: its ``run_epoch`` for the epoch ``at`` runs the whole native
    epoch (the weights move) and then raises KeyboardInterrupt, as a Ctrl-C noticed at the
    end of the native loop would."""

    at = 2

    def __init__(self, *args, **kwargs):
        self._inner = _REAL_TRAINER(*args, **kwargs)
        self._epoch = 0

    @property
    def t(self):
        return self._inner.t

    def run_epoch(self, perm, lr, reload=True, **kwargs):
        total = self._inner.run_epoch(perm, lr, reload, **kwargs)
        self._epoch += 1
        if self._epoch == self.at + 1:
            raise KeyboardInterrupt
        return total


_REAL_TRAINER = fastnn._kernels.EpochRunner


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_ctrl_c_inside_an_epoch_restores_the_epoch_start(backend, monkeypatch, optimizer):
    """KeyboardInterrupt inside epoch 2's loop, after updates were applied: the model is put
    back to the end of epoch 1 (weights, optimizer state, step count). Native loop: a wrapped
    Trainer; Python loop (numpy backend): the 5th optimizer update of the epoch raises."""
    if backend == "cython":
        monkeypatch.setattr(fastnn._kernels, "EpochRunner", _InterruptingTrainer)
    else:
        import fastnn.updates as training  # (the numpy backend's steps update through it)
        real_update, calls = training.update, {"n": 0}
        n_params = 4  # W and b of two layers
        batches = len(range(0, 96, 16))

        def update(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2 * batches * n_params + 5 * n_params:  # in epoch 2, batch 5
                raise KeyboardInterrupt
            return real_update(*args, **kwargs)

        monkeypatch.setattr(training, "update", update)
    model = fastnn.MLP(4, [8], 3, random_state=0)
    exc, records = recording_fit(model, 5, batch_size=16, optimizer=optimizer, momentum=0.0,
                                 random_state=4)
    monkeypatch.undo()
    COUNTS["fits_interrupted"] += 1
    assert isinstance(exc, KeyboardInterrupt)
    assert len(records) == 3
    assert_finished_state(model, records[-1])


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
def test_a_real_sigint_during_a_long_fit(backend):
    """SIGINT sent to the main thread a third into epoch 1 of a fit whose epochs take ~0.3 s:
    KeyboardInterrupt comes out of fit and the model holds the weights of a finished epoch
    (bit for bit), finite, and works."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    rng = np.random.default_rng(5)
    n = 100_000 if backend == "cython" else 40_000  # epochs of ~0.3 s on 2 cores
    X = rng.standard_normal((n, 64)).astype(np.float32)
    y = rng.integers(0, 10, n)
    model = fastnn.MLP(64, [256, 128], 10, random_state=0)
    main = threading.main_thread().ident
    assert threading.get_ident() == main
    records, timers = [params(model)], []
    epoch_seconds = []

    def callback(epoch, history):
        records.append(params(model))
        epoch_seconds.append(history.seconds[-1])
        if epoch == 0:
            timer = threading.Timer(min(0.3, history.seconds[-1] / 3),
                                    signal.pthread_kill, (main, signal.SIGINT))
            timers.append(timer)
            timer.start()
        return False

    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=50, batch_size=32, lr=0.01, random_state=0, callback=callback)
        pytest.fail("the fit ended before the interrupt")  # pragma: no cover
    for t in timers:
        t.join()
    COUNTS["fits_interrupted"] += 1
    assert time.perf_counter() - start < 60
    # interrupted inside epoch 1 (its callback never ran): the weights of the end of epoch 0
    assert len(records) == 2, f"{len(records) - 1} epochs finished ({epoch_seconds} s)"
    matches = [i for i, r in enumerate(records) if same_params(params(model), r)]
    assert matches == [1], f"the weights equal those after epochs {matches}"
    for W, b in model.parameters():
        assert np.isfinite(W).all() and np.isfinite(b).all()
    assert model.predict(X[:10]).shape == (10,)
    model.fit(X[:100], y[:100], epochs=1)  # the fit lock was released


def test_ctrl_c_records_the_finished_epochs_in_history(backend):
    def interrupt(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    model = fastnn.MLP(4, [8], 3, random_state=0)
    exc, _ = recording_fit(model, 5, callback=interrupt, random_state=2)
    assert isinstance(exc, KeyboardInterrupt)
    assert model.history_ is not None and model.history_.epochs == 2


# ---------------------------------------------------------------------------------------
# fit on a model whose state was changed by hand (isolated: these crashed the process)
# ---------------------------------------------------------------------------------------

_PRELUDE = """
import json, sys
import numpy as np
import fastnn
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 8))
y = rng.integers(0, 3, 256)

def report(fn, **extra):
    try:
        fn()
    except Exception as exc:
        out = {"outcome": "raised", "type": type(exc).__name__, "message": str(exc)[:300]}
    else:
        out = {"outcome": "returned"}
    out.update({k: v() for k, v in extra.items()})
    print(json.dumps(out), flush=True)
"""

# (id, the scenario's code, what counts as correct: raised ValueError/TypeError, or returned
# with ``ok`` true)
_MUTATED = {
    "new_output_layer_warm_start": """
model = fastnn.MLP(8, [64], 3, random_state=0)
model.fit(X, y, epochs=2, optimizer="adam", random_state=0)
model.layers[-1] = fastnn.Linear(64, 10, random_state=1)  # a new head: 10 classes
y10 = rng.integers(0, 10, 256)
report(lambda: model.fit(X, y10, epochs=2, optimizer="adam", warm_start=True),
       ok=lambda: bool(all(np.isfinite(W).all() for W, _ in model.parameters())))
""",
    "inserted_layer_warm_start": """
model = fastnn.MLP(8, [64], 3, random_state=0)
model.fit(X, y, epochs=1, momentum=0.9, random_state=0)
model.layers.insert(1, fastnn.Linear(64, 64, "relu", random_state=2))
report(lambda: model.fit(X, y, epochs=1, momentum=0.9, warm_start=True),
       ok=lambda: bool(all(np.isfinite(W).all() for W, _ in model.parameters())))
""",
    "read_only_memmap_weights": """
import os, tempfile
model = fastnn.MLP(8, [64], 3, random_state=0)
path = os.path.join(tempfile.mkdtemp(), "W0.npy")
np.save(path, model.layers[0].W)
model.layers[0].W = np.load(path, mmap_mode="r")
before = np.load(path).copy()
report(lambda: model.fit(X, y, epochs=1),
       ok=lambda: bool(np.array_equal(np.load(path), before)))
""",
    "read_only_weights": """
model = fastnn.MLP(8, [64], 3, random_state=0)
W = model.layers[0].W
W.flags.writeable = False
before = W.copy()
report(lambda: model.fit(X, y, epochs=1), ok=lambda: bool(np.array_equal(W, before)))
""",
    "weights_of_the_wrong_shape": """
model = fastnn.MLP(8, [64], 3, random_state=0)
model.layers[1].W = np.zeros((3, 10), np.float32)  # takes 10 inputs; layer 0 gives 64
report(lambda: model.fit(X, y, epochs=3), ok=lambda: False)
""",
    "float64_weights_in_a_float32_model": """
model = fastnn.MLP(8, [64], 3, random_state=0)
twin = fastnn.MLP(8, [64], 3, random_state=0)
model.layers[1].W = model.layers[1].W.astype(np.float64)
def close():
    return bool(all(np.allclose(np.asarray(W1, np.float64), np.asarray(W2, np.float64),
                                rtol=1e-4, atol=1e-6)
                    for (W1, _), (W2, _) in zip(model.parameters(), twin.parameters())))
twin.fit(X, y, epochs=2, random_state=0)
report(lambda: model.fit(X, y, epochs=2, random_state=0), ok=close)
""",
    "fortran_ordered_weights": """
model = fastnn.MLP(8, [64], 3, random_state=0)
twin = fastnn.MLP(8, [64], 3, random_state=0)
model.layers[0].W = np.asfortranarray(model.layers[0].W)
twin.fit(X, y, epochs=2, random_state=0)
report(lambda: model.fit(X, y, epochs=2, random_state=0),
       ok=lambda: bool(all(np.allclose(W1, W2, rtol=1e-5, atol=1e-7) for (W1, _), (W2, _)
                           in zip(model.parameters(), twin.parameters()))))
""",
    "unknown_activation_set_by_hand": """
model = fastnn.MLP(8, [64], 3, random_state=0)
model.layers[0].activation = "softplus"
report(lambda: model.fit(X, y, epochs=1), ok=lambda: False)
""",
}

_WHY = {
    "new_output_layer_warm_start": "SIGSEGV: warm_start reuses optimizer_state_ arrays of the "
    "old head's shape (3, 64) for the new (10, 64) layer; the native Trainer writes past them",
    "inserted_layer_warm_start": "SIGSEGV: warm_start reuses optimizer_state_ arrays, now "
    "paired with layers of other shapes",
    "read_only_memmap_weights": "SIGSEGV: the Trainer updates W in place through its raw "
    "pointer, into a read-only memory map (predict works)",
    "read_only_weights": "the Trainer writes into a W marked read-only (flags.writeable False)",
    "weights_of_the_wrong_shape": "heap corruption (glibc abort with MALLOC_CHECK_=3, else a "
    "bogus 'diverged' FloatingPointError): the Trainer sizes layer 1 from layer 0's width (64) "
    "and reads/updates a (3, 10) array as (3, 64); forward raises a clear ValueError instead",
    "float64_weights_in_a_float32_model": "silent wrong training: the Trainer reads and "
    "updates a float64 W as float32",
    "fortran_ordered_weights": "silent wrong training: the Trainer treats a Fortran-ordered W "
    "as C-ordered",
    "unknown_activation_set_by_hand": "KeyError('softplus') escapes from fit (predict raises "
    "a ValueError naming the activation)",
}


def run_isolated(code):
    """Run ``code`` in a child interpreter (with glibc's heap checks on): a crash becomes an
    outcome instead of taking the test run down."""
    env = dict(os.environ, MALLOC_CHECK_="3")
    proc = subprocess.run([sys.executable, "-c", _PRELUDE + code], capture_output=True,
                          text=True, timeout=120, env=env)
    if proc.returncode < 0:
        return {"outcome": "crashed", "signal": signal.Signals(-proc.returncode).name}
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"outcome": "died", "returncode": proc.returncode, "stderr": proc.stderr[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scenario", list(_MUTATED))
def test_fit_on_a_model_changed_by_hand_never_crashes(scenario):
    """fit either raises ValueError/TypeError or trains correctly (``ok``); never crashes,
    corrupts memory, writes into read-only memory, or trains on misread weights."""
    result = run_isolated(_MUTATED[scenario])
    COUNTS["fits_interrupted"] += 1
    assert result["outcome"] in ("raised", "returned"), result
    if result["outcome"] == "raised":
        assert result["type"] in ("ValueError", "TypeError"), result
    else:
        assert result["ok"], result


# ---------------------------------------------------------------------------------------
# Counts in the terminal summary
# ---------------------------------------------------------------------------------------
