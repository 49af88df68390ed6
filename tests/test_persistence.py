"""Saving and loading models: ``model.save(path)`` / ``fastnn.load(path)`` (.npz, read with
allow_pickle=False), atomic writes, clear errors for bad files, and pickling."""

import os
import pickle
import zipfile

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
