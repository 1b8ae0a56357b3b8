"""Read a PyTorch state dict (``.pth``) into NumPy arrays without PyTorch and without running its pickle.

A ``.pth`` file is a pickle, and loading a pickle can run any code it names. This reader gives
the pickle machine exactly four names, each mapped to a harmless stand-in of ours:
``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the ``torch.*Storage``
types (as persistent ids). Any other global is refused with :class:`UnsafeWeightsError` before
anything is built, so a crafted file cannot call ``os.system`` or anything else.

Both layouts PyTorch writes are read: the legacy stream (before torch 1.6: a magic-number
pickle, a protocol pickle, a system-info pickle, the state-dict pickle, the storage keys, then
each storage as an 8-byte little-endian element count and its raw bytes) and the zip archive of
torch >= 1.6 (``archive/data.pkl`` and ``archive/data/<key>``).

Example:
    >>> state = read_state_dict("efficientnet-lite0-57934424.pth")      # doctest: +SKIP
    >>> state["_conv_stem.weight"].shape                                   # doctest: +SKIP
    (32, 3, 3, 3)
"""
from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from kerasclf.errors import ModelError

__all__ = ["UnsafeWeightsError", "read_state_dict", "STORAGE_DTYPES"]

#: the ``torch.*Storage`` types a state dict may name, and their NumPy dtypes (little-endian)
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"), "DoubleStorage": np.dtype("<f8"), "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"), "LongStorage": np.dtype("<i8"), "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"), "CharStorage": np.dtype("i1"), "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class UnsafeWeightsError(ModelError):
    """A weights file asks its unpickler for something other than tensors (a global we do not allow)."""


@dataclass(frozen=True)
class _Storage:
    """A storage named by a persistent id: its type, key and element count; bytes come later."""
    dtype: np.dtype
    key: str
    size: int


@dataclass(frozen=True)
class _TensorRef:
    """What ``_rebuild_tensor_v2`` would build: a view of a storage (offset, shape, strides)."""
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_ignored: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only its name (and so its dtype) is used."""

    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


class _TensorsOnly(pickle.Unpickler):
    """An unpickler that knows four globals, all stand-ins; anything else is an error."""

    def __init__(self, file: BinaryIO, source: str):
        super().__init__(file)
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeWeightsError(
            f"{self.source} asks to load '{module}.{name}', which is not a tensor; refused without running it "
            f"(a state dict needs only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and "
            f"torch.*Storage): use weights from a source you trust")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UnsafeWeightsError(f"{self.source}: unexpected persistent id {str(pid)[:80]!r}; not a tensor storage")
        _, kind, key, _location, size = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise ModelError(f"{self.source}: storage views (legacy view metadata) are not supported; "
                             f"re-save the state dict with a recent PyTorch")
        storage = self.storages.setdefault(str(key), _Storage(kind.dtype, str(key), int(size)))
        return storage


def _load_pickle(data: BinaryIO, source: str) -> tuple[Any, dict[str, _Storage]]:
    unpickler = _TensorsOnly(data, source)
    try:
        obj = unpickler.load()
    except UnsafeWeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise ModelError(f"{source} is not a readable PyTorch state dict ({type(exc).__name__}: {exc})") from None
    return obj, unpickler.storages


def _plain(data: BinaryIO, source: str) -> Any:
    """One of the legacy header pickles: plain values only (no globals at all)."""
    obj, storages = _load_pickle(data, source)
    if storages:
        raise ModelError(f"{source}: unexpected storage in a legacy header pickle")
    return obj


def _tensor(ref: _TensorRef, buffers: dict[str, np.ndarray], source: str) -> np.ndarray:
    flat = buffers.get(ref.storage.key)
    if flat is None:
        raise ModelError(f"{source}: storage {ref.storage.key} has no data")
    if not ref.shape:
        return flat[ref.offset].copy()
    itemsize = flat.dtype.itemsize
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride)) if all(ref.shape) else ref.offset
    if ref.offset < 0 or last >= max(flat.size, 1) and all(ref.shape):
        raise ModelError(f"{source}: a tensor reaches past the end of storage {ref.storage.key}")
    view = np.lib.stride_tricks.as_strided(flat[ref.offset:], shape=ref.shape,
                                           strides=tuple(s * itemsize for s in ref.stride), writeable=False)
    return np.array(view)  # a contiguous copy: nothing aliases the file's buffer


def _legacy_buffers(f: BinaryIO, storages: dict[str, _Storage], source: str) -> dict[str, np.ndarray]:
    keys = _plain(f, source)
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise ModelError(f"{source}: the storage key list does not match the state dict")
    buffers = {}
    for key in map(str, keys):
        storage = storages[key]
        head = f.read(8)
        count = int.from_bytes(head, "little") if len(head) == 8 else -1
        if count != storage.size:
            raise ModelError(f"{source}: storage {key} holds {count} elements, expected {storage.size}")
        raw = f.read(count * storage.dtype.itemsize)
        if len(raw) != count * storage.dtype.itemsize:
            raise ModelError(f"{source} is truncated (storage {key})")
        buffers[key] = np.frombuffer(raw, dtype=storage.dtype)
    return buffers


def _read_legacy(f: BinaryIO, source: str) -> tuple[Any, dict[str, np.ndarray]]:
    magic = _plain(f, source)
    if magic != _LEGACY_MAGIC:
        raise ModelError(f"{source} is not a PyTorch state dict (no legacy magic number, not a zip)")
    _plain(f, source)  # protocol version
    _plain(f, source)  # system info (endianness, type sizes)
    state, storages = _load_pickle(f, source)
    return state, _legacy_buffers(f, storages, source)


def _read_zip(path: Path, source: str) -> tuple[Any, dict[str, np.ndarray]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ModelError(f"{source}: a zip without exactly one data.pkl is not a PyTorch state dict")
        prefix = pkl[0][: -len("data.pkl")]
        state, storages = _load_pickle(io.BytesIO(zf.read(pkl[0])), source)
        buffers = {}
        for key, storage in storages.items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise ModelError(f"{source}: storage {key} is missing from the archive")
            raw = zf.read(entry)
            buffers[key] = np.frombuffer(raw[: storage.size * storage.dtype.itemsize], dtype=storage.dtype)
    return state, buffers


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict file as ``{name: np.ndarray}``, in the file's order.

    Nothing in the file runs: only the globals a state dict needs are known to the unpickler,
    each replaced by a stand-in of ours. Tensors come back as NumPy arrays with PyTorch's layout
    (convolution kernels ``(out, in, kh, kw)``).

    Raises:
        UnsafeWeightsError: the pickle asks for any other global (``os.system``, ``builtins.eval`` ...).
        ModelError: the file is not a state dict, is truncated or holds something other than tensors.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} not found")
    if zipfile.is_zipfile(path):
        state, buffers = _read_zip(path, source)
    else:
        with path.open("rb") as f:
            state, buffers = _read_legacy(f, source)
    if not isinstance(state, dict):
        raise ModelError(f"{source} holds a {type(state).__name__}, not a state dict")
    out = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise ModelError(f"{source}: entry '{name}' is not a tensor")
        out[str(name)] = _tensor(value, buffers, source)
    return out
