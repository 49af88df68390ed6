"""Saving and loading models as .npz files (no pickle inside; loaded with allow_pickle=False).

``save`` writes a temporary file next to the target (a symlink's target, the link kept), syncs
it and renames it over the target, with the target's mode."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import secrets
import stat
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _validation as _v
from ._typing import OptState
from .layers import DTYPES, Linear
from .network import LOSSES, MLP, Sequential

__all__ = ["load", "save"]

FORMAT = 1


def save(model: Sequential, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` (.npz) atomically: a temporary file in the same folder,
    flushed to disk, then renamed over ``path``, so a failure leaves any old file intact.

    A symlink is written through: the file it points to is replaced and the link stays. The
    new file keeps the old one's mode (and owner and group, where this process may set them);
    a new file gets ``0o666 & ~umask``, as ``open`` gives. The temporary file is
    ``.{name}.fastnn-{host}-{pid}-{random}.tmp`` next to the target; a save killed before its
    rename leaves it behind, and the next save to the same target removes it once the process
    that wrote it is gone.

    Parameters
    ----------
    model : fastnn.Sequential
        Its architecture, dtype, weights and optimizer state are saved (no pickle).
    path : str or os.PathLike

    See Also
    --------
    load : the way back; ``Sequential.save`` calls this.
    """
    arrays = _arrays(model)
    target = os.path.realpath(os.fspath(path))  # through symlinks, to the file they name
    folder, name = os.path.split(target)
    _remove_stale_temporaries(folder, name)
    fd, tmp = _new_temporary(folder, name)
    try:
        with os.fdopen(fd, "wb") as fh:
            _keep_metadata(tmp, target)
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _arrays(model: Sequential) -> dict[str, Any]:
    """The members of the model's file, by name (no pickle: numbers and strings only)."""
    arrays: dict[str, Any] = {
        "format": np.array(FORMAT),
        "kind": np.array(type(model).__name__ if isinstance(model, MLP) else "Sequential"),
        "loss": np.array(model.loss_name),
        "dtype": np.array(model.dtype.name),
        "n_layers": np.array(len(model.layers)),
    }
    for l, layer in enumerate(model.layers):
        arrays[f"W{l}"] = layer.W
        arrays[f"activation{l}"] = np.array(layer.activation)
        if layer.b is not None:
            arrays[f"b{l}"] = layer.b
    opt = model.optimizer_state_
    if opt is not None:
        arrays["opt_name"] = np.array(opt["optimizer"])
        arrays["opt_hyper"] = np.array([opt["momentum"], float(opt["nesterov"]), opt["beta1"],
                                        opt["beta2"], opt["eps"], opt["weight_decay"]])
        arrays["opt_t"] = np.array(opt["t"])
        for k, states in enumerate(opt["state"]):
            for l, s in enumerate(states):
                if s is not None:
                    arrays[f"opt{k}_W{l}"] = s[0]
                    if s[1] is not None:
                        arrays[f"opt{k}_b{l}"] = s[1]
    return arrays


# ---------------------------------------------------------------------------------------
# the temporary file of a save
# ---------------------------------------------------------------------------------------

_TEMPORARY = re.compile(r"(?P<pid>[1-9][0-9]{0,9})-[0-9a-f]{16}\.tmp")


def _temporary_prefix(name: str) -> str:
    """``.{name}.fastnn-{host}-``: what a temporary file of the target ``name`` written on this
    machine starts with (the name shortened to 96 bytes, so that the whole stays within the
    255 bytes a file name may have)."""
    while len(os.fsencode(name)) > 96:
        name = name[:-1]
    host = re.sub(r"[^0-9A-Za-z_]", "_", platform.node())[:32] or "_"
    return f".{name}.fastnn-{host}-"


def _new_temporary(folder: str, name: str) -> tuple[int, str]:
    """A new file ``.{name}.fastnn-{host}-{pid}-{random}.tmp`` in ``folder``, open for writing,
    created with mode 0o666 so that the umask (and a default ACL) applies as for ``open``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    prefix = _temporary_prefix(name)
    for _ in range(100):
        tmp = os.path.join(folder, f"{prefix}{os.getpid()}-{secrets.token_hex(8)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a temporary file like {tmp!r}")


def _keep_metadata(tmp: str, target: str) -> None:
    """Give ``tmp`` the mode, owner and group of ``target`` if that exists (owner and group
    only as far as this process may: where it may not, they stay its own)."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return  # a new file: 0o666 & ~umask from _new_temporary
    if hasattr(os, "chown"):
        for uid, gid in ((st.st_uid, st.st_gid), (-1, st.st_gid)):
            try:
                os.chown(tmp, uid, gid)
                break
            except OSError:  # not permitted, or not supported by the file system
                continue
    os.chmod(tmp, stat.S_IMODE(st.st_mode))  # after chown, which may clear set-id bits


def _remove_stale_temporaries(folder: str, name: str) -> None:
    """Remove the temporary files of target ``name`` that a save on this machine left behind
    when it was killed: those whose writing process is gone. A live process's file is kept."""
    if os.name != "posix":
        return  # os.kill(pid, 0) would end the process on Windows
    prefix = _temporary_prefix(name)
    try:
        entries = [e for e in os.listdir(folder) if e.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry, len(prefix))
        if match is not None and not _process_alive(int(match["pid"])):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, entry))


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending anything)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; not a pid of ours
        return True
    return True


def _field(data: Mapping[str, NDArray[Any]], key: str, path: str) -> NDArray[Any]:
    if key not in data:
        raise ValueError(f"{path}: not a fastnn model file (missing {key!r})")
    return data[key]


def _integer(data: Mapping[str, NDArray[Any]], key: str, path: str, low: int, high: int) -> int:
    value = _field(data, key, path)
    if value.dtype.kind not in "iu" or value.ndim != 0 or not low <= int(value) <= high:
        raise ValueError(f"{path}: {key!r} must be an integer in {low}..{high}, got {value!r}")
    return int(value)


def _text(data: Mapping[str, NDArray[Any]], key: str, path: str, allowed: Sequence[str]) -> str:
    value = _field(data, key, path)
    if value.dtype.kind != "U" or value.ndim != 0 or str(value) not in allowed:
        raise ValueError(f"{path}: {key!r} must be one of {allowed}, got {value!r}")
    return str(value)


def load(path: str | os.PathLike[str]) -> Sequential:
    """Read a model written by ``save`` (architecture, dtype, weights, optimizer state).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    MLP or Sequential
        The kind of model that was saved, with its optimizer state (for ``warm_start``).

    Raises
    ------
    ValueError
        The file is not a fastnn model, is truncated, or holds arrays of the wrong shape or
        dtype (it is read with ``allow_pickle=False``).
    FileNotFoundError
        There is no such file.

    Examples
    --------
    >>> import numpy as np, fastnn
    >>> net = fastnn.MLP(4, 8, 3, random_state=0)
    >>> net.save("model.npz")
    >>> same = fastnn.load("model.npz")
    >>> X = np.ones((2, 4), np.float32)
    >>> bool((same.predict_proba(X) == net.predict_proba(X)).all())
    True
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable fastnn model file ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile and other corruptions
        raise ValueError(f"{path}: not a readable fastnn model file ({exc})") from None
    if _integer(data, "format", path, 0, 2**31) != FORMAT:
        raise ValueError(f"{path}: unsupported format {data['format']!r}")
    dtype = np.dtype(_text(data, "dtype", path, DTYPES))
    loss = _text(data, "loss", path, LOSSES)
    kind = _text(data, "kind", path, ("MLP", "Sequential"))
    n_layers = _integer(data, "n_layers", path, 1, 64)
    layers: list[Linear] = []
    for l in range(n_layers):
        W = _field(data, f"W{l}", path)
        b = data.get(f"b{l}")
        for name, A in ((f"W{l}", W), (f"b{l}", b)):
            if A is not None and A.dtype != dtype:
                raise ValueError(f"{path}: {name} has dtype {A.dtype}, the model {dtype}")
        if W.ndim != 2 or 0 in W.shape or (b is not None and b.shape != (W.shape[0],)):
            raise ValueError(f"{path}: layer {l} has weights of shapes {W.shape}, "
                             f"{None if b is None else b.shape}")
        if l and W.shape[1] != layers[-1].n_out:
            raise ValueError(f"{path}: layer {l} takes {W.shape[1]} inputs, layer {l - 1} "
                             f"gives {layers[-1].n_out}")
        act = _text(data, f"activation{l}", path, _v.ACTIVATIONS)
        layers.append(Linear.from_arrays(W, b, act, dtype=dtype))
    model: Sequential
    if kind == "MLP":
        model = MLP.__new__(MLP)
        Sequential.__init__(model, layers, loss)
        model.activation = layers[0].activation if len(layers) > 1 else "relu"
    else:
        model = Sequential(layers, loss)
    if "opt_name" in data:
        model.optimizer_state_ = _optimizer_state(data, model, path)
    return model


def _optimizer_state(data: Mapping[str, NDArray[Any]], model: Sequential, path: str
                     ) -> dict[str, Any]:
    name = _text(data, "opt_name", path, ("sgd", "adam"))
    hyper = _field(data, "opt_hyper", path)
    if hyper.shape != (6,) or hyper.dtype != np.float64:
        raise ValueError(f"{path}: bad optimizer settings")
    momentum, nesterov, beta1, beta2, eps, weight_decay = (float(v) for v in hyper)
    state: OptState = ([], [])
    layer: Any  # a Linear, whose b is None exactly when the state's b is (checked below)
    for k in range(2):
        for l, layer in enumerate(model.layers):
            W = data.get(f"opt{k}_W{l}")
            b = data.get(f"opt{k}_b{l}")
            if W is None:
                state[k].append(None)
                continue
            if W.shape != layer.W.shape or W.dtype != layer.W.dtype or (
                    (b is None) != (layer.b is None)) or (
                    b is not None and (b.shape != layer.b.shape or b.dtype != layer.b.dtype)):
                raise ValueError(f"{path}: optimizer state of layer {l} does not match its weights")
            state[k].append((W.copy(), None if b is None else b.copy()))
    return {"optimizer": name, "momentum": momentum, "nesterov": bool(nesterov), "beta1": beta1,
            "beta2": beta2, "eps": eps, "weight_decay": weight_decay,
            "t": _integer(data, "opt_t", path, 0, 2**62), "state": state}
