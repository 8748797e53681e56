"""Checks of ``torch.save`` streams before ``torch.load`` sees them, and :func:`load_torch_file`.

A ``torch.save`` stream (a ``.pt`` file, a training state, a cache, or a storage embedded in one of
NVIDIA's pickles) is read by :class:`~hrinv_nb.bounded_pickle.PickleScanner` first, which resolves
and calls nothing: zip records must be stored uncompressed, every storage's declared size must lie
within the bytes actually present, the legacy (non-zip) format's storage list must match its
records, and nesting is bounded. Only then does ``torch.load(weights_only=True)`` read it, and the
result's structure is bounded by :func:`~hrinv_nb.bounded_pickle.check_structure`. Every refusal
is a :class:`~hrinv_nb.errors.CheckpointError` naming the file; none suggests loading unsafely.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from .bounded_pickle import PickleScanner, _Global, brief, check_structure, file_error, is_int, reason
from .errors import CheckpointError, UnsafePickleError

PathLike = str | os.PathLike

MAX_ZIP_ENTRIES = 100_000

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PROTOCOL = 1001


def _storage_record(pid: Any, source: str, legacy: bool) -> tuple[str, int, int]:
    """(key, element count, element size) of a ``torch.save`` storage record; refuses anything else."""
    n = 6 if legacy else 5
    if not isinstance(pid, tuple) or len(pid) != n or pid[0] != "storage":
        raise file_error(source, f"unsupported torch.save record {brief(pid)}")
    cls, key, _location, numel = pid[1:5]
    if not isinstance(cls, _Global) or cls.module != "torch" or cls.name not in _STORAGE_DTYPES:
        raise file_error(source, f"unsupported storage type {brief(cls)}")
    if not isinstance(key, str) or len(key) > 200 or not is_int(numel) or not 0 <= numel < 2**62:
        raise file_error(source, f"bad storage record {brief(pid)}")
    if legacy and pid[5] is not None:
        view = pid[5]
        if (
            not isinstance(view, tuple)
            or len(view) != 3
            or not all(is_int(v) and v >= 0 for v in view[1:])
            or view[1] + view[2] > numel
        ):
            raise file_error(source, f"bad storage view {brief(view)}")
    return key, int(numel), torch._utils._element_size(_STORAGE_DTYPES[cls.name])


def _scan(f: Any, source: str, size: int) -> PickleScanner:
    """Scan the pickle at ``f``'s position; its value (a number, a list, or opaque) is ``.result``."""
    scanner = PickleScanner(f, source, size)
    try:
        scanner.result = scanner.load()
    except CheckpointError:
        raise
    except Exception as e:  # a malformed pickle raises many types
        raise file_error(source, f"not a readable torch.save stream: {reason(e)}") from e
    return scanner


def _check_globals(scanner: PickleScanner, source: str) -> None:
    """A storage-only stream may name the storage types and nothing else."""
    for g in scanner.globals:
        if g.module != "torch" or g.name not in _STORAGE_DTYPES:
            raise UnsafePickleError(g.module, g.name, source)


def _check_torch_legacy(f: Any, size: int, source: str, storage_only: bool) -> None:
    """The legacy format: magic, protocol, system info and main pickles, the key list, then each storage."""
    start = f.tell()
    magic = _scan(f, source, size).result
    if magic != _TORCH_MAGIC:
        raise file_error(source, "not a torch.save file (bad magic number)")
    if _scan(f, source, size).result != _TORCH_LEGACY_PROTOCOL:
        raise file_error(source, "unsupported legacy torch.save protocol version")
    _scan(f, source, size)  # system info
    main = _scan(f, source, size)
    keys = _scan(f, source, size).result
    if storage_only:
        _check_globals(main, source)
    declared: dict[str, tuple[int, int]] = {}
    for pid in main.pids:
        key, numel, elsize = _storage_record(pid, source, legacy=True)
        if declared.setdefault(key, (numel, elsize)) != (numel, elsize):
            raise file_error(source, f"storage {key!r} declared with two sizes")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or set(keys) != set(declared):
        raise file_error(source, "the storage key list does not match the storage records")
    for key in keys:  # each: int64 element count, then the bytes
        header = f.read(8)
        if len(header) != 8:
            raise file_error(source, f"truncated before the data of storage {key!r}")
        numel, elsize = declared[key]
        nbytes = numel * elsize
        (count,) = struct.unpack("<q", header)
        if count != numel or f.tell() + nbytes > size:
            raise file_error(source, f"storage {key!r}: declared {numel} elements; the file holds others or fewer")
        f.seek(nbytes, io.SEEK_CUR)
    if not storage_only and start == 0:
        f.seek(0)
        try:
            with tarfile.open(fileobj=f, mode="r:"):
                raise file_error(source, "is also a tar archive (an ambiguous, refused torch.save format)")
        except tarfile.TarError:
            pass


def _check_torch_zip(f: Any, size: int, source: str, storage_only: bool) -> None:
    """The zip format: stored records within the file, one ``data.pkl`` whose storages the records hold."""
    try:
        zf = zipfile.ZipFile(f)
        infos = zf.infolist()
    except Exception as e:
        raise file_error(source, f"not a readable zip archive: {reason(e)}") from e
    if len(infos) > MAX_ZIP_ENTRIES:
        raise file_error(source, f"zip archive with more than {MAX_ZIP_ENTRIES} entries")
    records: dict[str, int] = {}
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise file_error(
                source,
                f"zip record {info.filename!r} is compressed (torch.save stores records "
                "uncompressed; a compressed record could be a decompression bomb)",
            )
        if info.header_offset + info.file_size > size:
            raise file_error(source, f"zip record {info.filename!r} reaches beyond the end of the file")
        records[info.filename] = info.file_size
    pkls = [i for i in infos if i.filename.endswith("data.pkl") and i.filename.count("/") == 1]
    if len(pkls) != 1:
        raise file_error(source, "zip archive without exactly one <name>/data.pkl (not a torch.save file)")
    prefix = pkls[0].filename[: -len("data.pkl")]
    with zf.open(pkls[0]) as pf:
        scanner = _scan(pf, source, pkls[0].file_size)
    if storage_only:
        _check_globals(scanner, source)
    for pid in scanner.pids:
        key, numel, elsize = _storage_record(pid, source, legacy=False)
        nbytes = numel * elsize
        have = records.get(f"{prefix}data/{key}")
        if have is None or have < nbytes:
            raise file_error(source, f"storage {key!r} declares {nbytes} bytes; the archive holds {have or 0}")


def check_torch_stream(f: Any, size: int, source: str, storage_only: bool = False) -> None:
    """Check a ``torch.save`` stream (zip or legacy) before ``torch.load`` allocates anything for it."""
    start = f.tell()
    head = f.read(4)
    f.seek(start)
    if head == b"PK\x03\x04":
        _check_torch_zip(f, size, source, storage_only)
    else:
        _check_torch_legacy(f, size, source, storage_only)
    f.seek(start)


def load_torch_file(path: PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` after checking the file; every refusal a :class:`CheckpointError`.

    For ``torch.save`` files read from disk (training states, caches, weight files a user supplies):
    the file must hold only tensors, dicts, lists, tuples, numbers and strings. Declared storage sizes are checked against
    the bytes present before torch allocates, the nesting and expanded size of the result are
    bounded, and the error never suggests loading unsafely.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise file_error(path, "is empty")
            check_torch_stream(f, size, str(path))
        obj = torch.load(path, map_location=map_location, weights_only=True)
        check_structure(obj, str(path))
    except CheckpointError:
        raise
    except Exception as e:  # torch.load raises many types on bad bytes
        raise file_error(path, f"cannot be read safely as a torch.save file: {reason(e)}") from e
    return obj
