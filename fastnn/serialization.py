"""Saving and loading models as .npz files (a zip of one .npy file per array; no pickle).

``save`` writes a temporary file next to the target (a symlink's target, the link kept), syncs
it and renames it over the target, with the target's mode. ``load`` reads the zip itself: only
the members a model has, each member's .npy header (shape, dtype) checked against the
architecture before its data is read, and no member inflated past its declared size."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import re
import secrets
import stat
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import _validation as _v
from ._typing import OptState
from .layers import DTYPES, Linear
from .losses import LOSSES
from .updates import state_problem

if TYPE_CHECKING:
    from .network import Sequential

__all__ = ["ModelFile", "read", "save"]

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
    read : the way back (``fastnn.load`` builds the model from it); ``Sequential.save``
        calls this.
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
        "kind": np.array(model._file_kind),
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


class ModelFile(NamedTuple):
    """What a model file holds, read and checked: the kind of model ("MLP" or
    "Sequential"), its loss, its layers, and its optimizer state (a fit's
    ``optimizer_state_``, or None)."""

    kind: str
    loss: str
    layers: list[Linear]
    optimizer_state: dict[str, Any] | None


def read(path: str | os.PathLike[str]) -> ModelFile:
    """Read a model file written by ``save``: only the members a model has, each member's
    header (shape, dtype) checked against the architecture before its data is read, with
    ``allow_pickle=False`` semantics (``fastnn.load`` builds the model from what it returns).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    ModelFile

    Raises
    ------
    ValueError
        The file is not a fastnn model, is truncated, holds members a model does not have or
        arrays of the wrong shape or dtype, or an optimizer state that cannot be continued.
    FileNotFoundError
        There is no such file.
    """
    path = os.fspath(path)
    with _model_file(path) as members:
        data = {key: members.scalar(key) for key in _SCALARS if key in members}
        if _integer(data, "format", path, 0, 2**31) != FORMAT:
            raise ValueError(f"{path}: unsupported format {data['format']!r}")
        dtype = np.dtype(_text(data, "dtype", path, DTYPES))
        loss = _text(data, "loss", path, tuple(LOSSES))
        kind = _text(data, "kind", path, ("MLP", "Sequential"))
        n_layers = _integer(data, "n_layers", path, 1, 64)
        members.refuse_others(_model_keys(n_layers, "opt_name" in members))
        # the architecture from the headers alone, then the data of exactly those arrays
        shapes = _layer_shapes(members, n_layers, dtype, path)
        for l in range(n_layers):
            data[f"activation{l}"] = members.scalar(f"activation{l}")
        for key, (l, shape) in shapes.items():
            if key not in members:
                continue
            head = members.header(key)
            if head.shape != shape or _native(head.dtype) != dtype:  # (optimizer state)
                raise ValueError(f"{path}: optimizer state of layer {l} does not match its "
                                 f"weights ({key} has shape {head.shape} of {head.dtype}, the "
                                 f"weights {shape} of {dtype})")
            data[key] = members.read(key)
        if "opt_hyper" in members:
            head = members.header("opt_hyper")
            if head.shape != (6,) or _native(head.dtype) != np.float64:
                raise ValueError(f"{path}: bad optimizer settings (opt_hyper of shape "
                                 f"{head.shape} and dtype {head.dtype}, not (6,) float64)")
            data["opt_hyper"] = members.read("opt_hyper")
    layers: list[Linear] = []
    for l in range(n_layers):
        act = _text(data, f"activation{l}", path, _v.ACTIVATIONS)
        layers.append(Linear.from_arrays(data[f"W{l}"], data.get(f"b{l}"), act, dtype=dtype))
    optimizer = _optimizer_state(data, layers, path) if "opt_name" in data else None
    return ModelFile(kind, loss, layers, optimizer)


# ---------------------------------------------------------------------------------------
# reading a model file: only the members a model has, each checked before it is read
# ---------------------------------------------------------------------------------------

_SCALARS = ("format", "dtype", "loss", "kind", "n_layers", "opt_name", "opt_t")
_SCALAR_BYTES = 1024  # the most a scalar member (a number, a name) may hold
_MAX_INFLATION = 100  # a compressed member may inflate to 100 times its size, or to ...
_SMALL_MEMBER = 1 << 20  # ... 1 MiB (save writes members uncompressed, as np.savez does)
_CHUNK = 1 << 20  # bytes read at a time


def _model_keys(n_layers: int, optimizer: bool) -> set[str]:
    """The names of the arrays a model of ``n_layers`` layers may have in its file."""
    keys = {"format", "dtype", "loss", "kind", "n_layers"}
    for l in range(n_layers):
        keys |= {f"W{l}", f"b{l}", f"activation{l}"}
        if optimizer:
            keys |= {f"opt{k}_{A}{l}" for k in range(2) for A in "Wb"}
    if optimizer:
        keys |= {"opt_name", "opt_hyper", "opt_t"}
    return keys


def _native(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """``dtype`` in this machine's byte order: a file written on a machine of the other byte
    order holds the same numbers, which are read by value (converted)."""
    return dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype


def _layer_shapes(members: _Members, n_layers: int, dtype: np.dtype[Any], path: str
                  ) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Every weight array a model file may hold (W, b, optimizer state), each with its layer
    and the shape it must have, from the weights' headers (checked: 2-D, chained, of
    ``dtype``, each bias one per unit); nothing of the data is read."""
    shapes: dict[str, tuple[int, tuple[int, ...]]] = {}
    n_out = 0
    for l in range(n_layers):
        W = members.header(f"W{l}")
        b = members.header(f"b{l}") if f"b{l}" in members else None
        for name, head in ((f"W{l}", W), (f"b{l}", b)):
            if head is not None and _native(head.dtype) != dtype:
                raise ValueError(f"{path}: {name} has dtype {head.dtype}, the model {dtype}")
        if len(W.shape) != 2 or 0 in W.shape or (b is not None and b.shape != W.shape[:1]):
            raise ValueError(f"{path}: layer {l} has weights of shapes {W.shape}, "
                             f"{None if b is None else b.shape}")
        if l and W.shape[1] != n_out:
            raise ValueError(f"{path}: layer {l} takes {W.shape[1]} inputs, layer {l - 1} "
                             f"gives {n_out}")
        n_out = W.shape[0]
        for prefix in ("", "opt0_", "opt1_"):
            shapes[f"{prefix}W{l}"] = (l, W.shape)
            shapes[f"{prefix}b{l}"] = (l, W.shape[:1])
    return shapes


class _Header(NamedTuple):
    """What a member's .npy header declares, and where its data starts in the member."""
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype[Any]
    offset: int


class _Members:
    """The .npy members of an open model file (a zip of one .npy file per array), by name.

    Nothing is inflated that is not asked for: ``header`` reads a member's .npy header
    (shape, dtype) and checks it against the zip directory and the file's size; ``read``
    then reads exactly the data that header declares, and refuses a member whose stream
    holds more. A member that would inflate past its size on disk is refused unread."""

    def __init__(self, zf: zipfile.ZipFile, path: str, file_size: int) -> None:
        self.zf, self.path, self.file_size = zf, path, file_size
        self.infos: dict[str, zipfile.ZipInfo] = {}
        self.headers: dict[str, _Header] = {}
        for info in zf.infolist():
            key = info.filename[:-4]
            if not info.filename.endswith(".npy") or key in self.infos:
                raise ValueError(f"{path}: not a fastnn model file (member {info.filename!r} "
                                 f"is {'twice there' if key in self.infos else 'no .npy file'};"
                                 " a model file holds one .npy file per array)")
            self.infos[key] = info

    def __contains__(self, key: str) -> bool:
        return key in self.infos

    def refuse_others(self, keys: set[str]) -> None:
        """Refuse the file if it has a member not named in ``keys`` (without reading it)."""
        others = sorted(set(self.infos) - keys)
        if others:
            raise ValueError(f"{self.path}: member {self.infos[others[0]].filename!r} is no "
                             "part of the model this file describes; refused unread")

    def scalar(self, key: str) -> NDArray[Any]:
        """A member that must hold one value (a number or a name)."""
        head = self.header(key)
        if head.shape != () or head.dtype.itemsize > _SCALAR_BYTES:
            raise ValueError(f"{self.path}: {key!r} must be a single value, got shape "
                             f"{head.shape} of {head.dtype}")
        return self.read(key)

    def header(self, key: str) -> _Header:
        """The .npy header of member ``key``, checked against the zip directory (no data
        read): its data must be the member's size, and that size within the file."""
        if key in self.headers:
            return self.headers[key]
        if key not in self.infos:
            raise ValueError(f"{self.path}: not a fastnn model file (missing {key!r})")
        info = self.infos[key]
        name = info.filename
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED,
                                                              zipfile.ZIP_DEFLATED):
            raise ValueError(f"{self.path}: member {name!r} is encrypted or compressed by a "
                             "method other than deflate; refused unread")
        stored = info.compress_type == zipfile.ZIP_STORED
        if info.header_offset + info.compress_size > self.file_size or (
                info.file_size != info.compress_size if stored
                else info.file_size > max(_SMALL_MEMBER, _MAX_INFLATION * info.compress_size)):
            raise ValueError(f"{self.path}: member {name!r} would inflate {info.compress_size} "
                             f"bytes into {info.file_size}; refused unread")
        try:
            with self.zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
                offset = fh.tell()
        except Exception as exc:  # zipfile, zlib and numpy raise many kinds for damaged data
            raise ValueError(f"{self.path}: member {name!r} is not a readable .npy array "
                             f"({exc})") from None
        if dtype.hasobject:
            raise ValueError(f"{self.path}: member {name!r} holds Python objects (dtype "
                             f"{dtype}); a model file is read without unpickling anything")
        size = offset + math.prod(shape) * dtype.itemsize
        if size != info.file_size:
            raise ValueError(f"{self.path}: member {name!r} declares shape {shape} of {dtype} "
                             f"({size} bytes with its header) but holds {info.file_size} bytes;"
                             " refused unread")
        self.headers[key] = _Header(shape, fortran_order, dtype, offset)
        return self.headers[key]

    def read(self, key: str) -> NDArray[Any]:
        """Member ``key``'s array: exactly the bytes its header declares, read in chunks (a
        stream that would inflate past them is refused after one byte more)."""
        head = self.header(key)
        info = copy.copy(self.infos[key])
        info.file_size += 1  # so that zipfile lets a stream longer than declared show it
        flat = np.empty(math.prod(head.shape), head.dtype)
        buffer = flat.view(np.uint8).data
        got = 0
        try:
            with self.zf.open(info) as fh:
                fh.read(head.offset)
                while got < len(buffer):
                    chunk = fh.read(min(_CHUNK, len(buffer) - got))
                    if not chunk:
                        break
                    buffer[got:got + len(chunk)] = chunk
                    got += len(chunk)
                longer = fh.read(1) != b""
        except Exception as exc:  # zipfile, zlib and numpy raise many kinds for damaged data
            # (a stream longer than declared fails zipfile's CRC check of one byte more)
            raise ValueError(f"{self.path}: member {info.filename!r} is damaged: its data is "
                             f"not what its header and the zip directory declare ({exc})"
                             ) from None
        if got != len(buffer) or longer:
            raise ValueError(f"{self.path}: member {info.filename!r} holds "
                             f"{'more' if longer else 'less'} data than its header declares "
                             f"({info.file_size - 1} bytes)")
        return flat.reshape(head.shape, order="F" if head.fortran_order else "C")


@contextlib.contextmanager
def _model_file(path: str) -> Iterator[_Members]:
    """The members of the zip file at ``path``; a file that is not a zip is a ValueError."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise
    except OSError as exc:  # a folder, no permission
        raise ValueError(f"{path}: not a readable fastnn model file ({exc})") from None
    with fh:
        try:
            zf = zipfile.ZipFile(fh)
        except Exception as exc:  # zipfile.BadZipFile, and other kinds for corrupt files
            raise ValueError(f"{path}: not a readable fastnn model file ({exc})") from None
        with zf:
            yield _Members(zf, path, os.fstat(fh.fileno()).st_size)


def _optimizer_state(data: Mapping[str, NDArray[Any]], layers: list[Linear], path: str
                     ) -> dict[str, Any]:
    name = _text(data, "opt_name", path, ("sgd", "adam"))
    hyper = _field(data, "opt_hyper", path)
    momentum, nesterov, beta1, beta2, eps, weight_decay = (float(v) for v in hyper)
    state: OptState = ([], [])
    layer: Any  # a Linear, whose b is None exactly when the state's b is (checked below)
    for k in range(2):
        for l, layer in enumerate(layers):
            W = data.get(f"opt{k}_W{l}")
            b = data.get(f"opt{k}_b{l}")
            if W is None:
                state[k].append(None)
                continue
            state[k].append((np.array(W, layer.W.dtype),  # copies in native order
                              None if b is None else np.array(b, layer.W.dtype)))
    # the native loop trusts the state a warm start continues: a file's must be complete
    problem = state_problem(state, [(layer.W, layer.b) for layer in layers], name, momentum)
    if problem is not None:
        raise ValueError(f"{path}: the optimizer state cannot be used: {problem}")
    return {"optimizer": name, "momentum": momentum, "nesterov": bool(nesterov), "beta1": beta1,
            "beta2": beta2, "eps": eps, "weight_decay": weight_decay,
            "t": _integer(data, "opt_t", path, 0, 2**62), "state": state}
