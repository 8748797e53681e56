"""Load and save StyleGAN2-ADA networks: NVIDIA ``.pkl`` (safely), the project's ``.safetensors``, ``.pt``.

``load_networks(path)`` never executes code from a file. NVIDIA's snapshot pickles embed the
source of their modules (``torch_utils.persistence``); here a restricted unpickler maps the
persistence hook to an inert stub that records ``class_name``, ``state`` and ``_init_kwargs``, and
rejects every global outside a short allow-list with :class:`UnsafePickleError`.

The project's own format is a safetensors file with keys ``G.<state_dict name>`` and
``D.<state_dict name>`` and JSON constructor arguments in the metadata
(``generator_init_kwargs``, ``discriminator_init_kwargs``, ``num_ws``), the format of the parity
fixtures. ``save_networks`` writes it atomically.

Bounded work. A small hostile file must not cost much time or memory before it is refused:

- the unpickler is the pure-Python one with a per-opcode loop of our own: it counts opcodes, memo
  entries and open MARKs, tracks the nesting depth and the (shared-reference-expanded) size of every
  container it builds, and calls an allow-listed function only after checking its arguments
  (no global is ever called with a size that allocates: ``torch.Tensor``, ``numpy.ndarray`` are
  never called, and arrays are rebuilt only from bytes of the right length);
- every ``torch.save`` stream (a ``.pt`` file, a training state, the storages NVIDIA's pickles
  embed) is checked before ``torch.load(weights_only=True)`` sees it: records stored uncompressed,
  every storage's declared size within the bytes actually present, nesting bounded;
- whatever was unpickled is walked once, iteratively, before anything recursive touches it:
  depth, cycles and the expanded size are bounded;
- declared constructor arguments are checked against the file's tensors (number of mapping layers,
  block resolutions, channels, dimensions) before any module is built, and while it is built its
  tensor allocations may not exceed a small multiple of the elements the file holds;
- weights must be finite floating-point tensors.

Every refusal is a :class:`CheckpointError` (a :class:`hrinv_nb.errors.FileFormatError`) whose
message names the file and the reason; :class:`UnsafePickleError` is also a
``pickle.UnpicklingError``. A missing file is a ``FileNotFoundError`` that says where to put it.
"""

from __future__ import annotations

import collections
import copyreg
import functools
import io
import json
import math
import os
import pickle
import re
import reprlib
import struct
import tarfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
from safetensors.torch import save_file

from .errors import FileFormatError, HrinvError
from .files import atomic_write
from .inr import StyleINRGenerator
from .networks import Discriminator, Generator

PathLike = str | os.PathLike

GENERATOR_CLASSES: dict[str, type[torch.nn.Module]] = {"Generator": Generator, "StyleINRGenerator": StyleINRGenerator}
DISCRIMINATOR_CLASSES: dict[str, type[torch.nn.Module]] = {"Discriminator": Discriminator}

_WHERE_TO_PUT = (
    "Pass the path of a local file: NVIDIA's StyleGAN2-ADA snapshot (e.g. "
    "ffhq-res1024-mirror-stylegan2-noaug.pkl, placed for instance under data/pretrained/), "
    "a project .safetensors file (see data/README.md), or a .pt state dict. Nothing is downloaded."
)

# Limits. NVIDIA's largest snapshots (1024², G + D + G_ema + augment pipe) stay far below each.
MAX_PICKLE_OPCODES = 20_000_000  # opcodes executed per pickle
MAX_PICKLE_MEMO = 2_000_000  # memo entries per pickle
MAX_DEPTH = 100  # nesting depth of containers (NVIDIA snapshots: about 40)
MAX_EXPANDED_NODES = 1_000_000  # objects reachable counting every shared reference again
MAX_ZIP_ENTRIES = 100_000
MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit
# Constructor arguments: generous bounds on what a StyleGAN2-ADA network can declare.
MAX_RESOLUTION = 2**14
MAX_DIM = 2**16  # z_dim, w_dim, c_dim, channels, features
MAX_LAYERS = 256  # mapping layers
MAX_KWARGS_NODES = 2_000

# Keys save_networks writes itself (and load_networks reports); ``meta`` may not override them.
RESERVED_META_KEYS = frozenset({
    "generator_init_kwargs", "generator_class", "discriminator_init_kwargs", "discriminator_class", "num_ws",
    "format", "path", "extra_keys",
})


class CheckpointError(FileFormatError):
    """A network file that cannot be turned into networks: bad format, keys, shapes or values.

    The message names the file and the reason. A :class:`~hrinv_nb.errors.HrinvError` and a
    ``ValueError``.
    """


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
    """A pickle refers to a global (or a use of one) outside the allow-list; it was not executed.

    Both a :class:`CheckpointError` (so a :class:`~hrinv_nb.errors.HrinvError`) and a
    ``pickle.UnpicklingError``.
    """

    def __init__(self, module: str, name: str, path: str | None = None, detail: str | None = None) -> None:
        module, name = str(module)[:200], str(name)[:200]
        where = f" in {path}" if path else ""
        detail = detail or (
            "it is not on the allow-list of StyleGAN2-ADA snapshot contents, and unpickling it could execute "
            "arbitrary code"
        )
        super().__init__(f"refusing to load global '{module}.{name}'{where}: {detail}")
        self.global_name = f"{module}.{name}"
        self.module, self.name, self.path, self.detail = module, name, path, detail

    def __reduce__(self) -> tuple:
        return (type(self), (self.module, self.name, self.path, self.detail))


@dataclass
class Networks:
    """The networks found in a checkpoint: ``G`` (always), ``D`` (``None`` when absent) and ``meta``."""

    G: Generator
    D: Discriminator | None
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- messages

class _SafeRepr(reprlib.Repr):
    """``reprlib`` that never calls ``repr`` on an unknown (possibly huge or hostile) object."""

    def repr1(self, x: Any, level: int) -> str:
        for base in (dict, list, tuple, set, frozenset):
            if isinstance(x, base):
                return getattr(self, f"repr_{base.__name__}")(x, level)
        if isinstance(x, torch.Tensor):
            return f"<tensor {tuple(x.shape)} {x.dtype}>"
        if isinstance(x, (bytes, bytearray)):
            return f"<{len(x)} bytes>"
        if x is None or isinstance(x, (str, int, float, type, torch.dtype, torch.device, np.dtype, _Global,
                                       PersistentStub)) or callable(x):
            return super().repr1(x, level)
        return f"<{type(x).__name__}>"


_REPR = _SafeRepr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 4, 4, 4
_REPR.maxset = _REPR.maxfrozenset = 4
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40


def _brief(obj: Any) -> str:
    """A short repr of untrusted data (bounded work even for huge or shared structures)."""
    try:
        return _REPR.repr(obj)
    except Exception:  # a repr of hostile data may fail in any way
        return f"<{type(obj).__name__}>"


_TORCH_ADVICE = ("weights_only", "Weights only load failed", "still be loaded", "safe_globals", "allowlist",
                 "documentation of torch.load", "file an issue", "trusted source", "Alternatively",
                 "WeightsUnpickler error", "pytorch.org")


def _reason(err: BaseException) -> str:
    """The reason in ``err``, short, without torch's advice to load unsafely (or to allow-list globals)."""
    if isinstance(err, KeyError):  # str(KeyError) is the repr of an (untrusted) key
        text = f"missing key {_brief(err.args[0])}" if err.args else "missing key"
    elif isinstance(err, MemoryError):
        text = "ran out of memory while reading it"
    elif isinstance(err, RecursionError):
        text = "its structure is nested too deeply"
    else:
        try:
            text = str(err)
        except Exception:
            text = ""
    torch_refusal = "Weights only load failed" in text
    parts = re.split(r"(?<=[.!?:])\s+|\n+", text)
    text = " ".join(p.strip() for p in parts if p.strip() and not any(w in p for w in _TORCH_ADVICE))
    if torch_refusal:
        text = "torch's safe loader refused it" + (f": {text}" if text else "")
    text = text or type(err).__name__
    if len(text) > 600:
        text = text[:600] + " ..."
    return text if isinstance(err, HrinvError) or torch_refusal else f"{type(err).__name__}: {text}"


def _error(source: Any, message: str) -> CheckpointError:
    return CheckpointError(f"{source}: {message}")


# --------------------------------------------------------------------------- bounded unpickling


class _BoundedReader:
    """A file's ``read``/``readline`` that never ask for more than the bytes left in the file.

    ``BufferedReader.read(n)`` allocates ``n`` bytes up front, so a pickle declaring a 4 GiB string in
    a 100-byte file would otherwise allocate 4 GiB.
    """

    def __init__(self, f: Any, size: int | None) -> None:
        self._f = f
        self._pos = f.tell() if size is not None else 0
        self._size = size

    def _left(self, n: int) -> int:
        if self._size is None:
            return n
        left = max(self._size - self._pos, 0)
        return left if n is None or n < 0 else min(n, left)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(self._left(n))
        self._pos += len(data)
        return data

    def readinto(self, buf: Any) -> int:  # pragma: no cover - the pure unpickler uses read()
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        data = self._f.readline(self._left(-1)) if self._size is not None else self._f.readline()
        self._pos += len(data)
        return data


def _stream_size(f: Any) -> int | None:
    """Total size of a seekable stream (its end offset), or ``None``."""
    try:
        return os.fstat(f.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        pos = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(pos)
        return end
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


_P = pickle  # opcode constants
_OPS_FROM_MARK = {_P.TUPLE[0], _P.LIST[0], _P.DICT[0], _P.FROZENSET[0]}


class _BoundedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: every opcode passes through us
    """Unpickler with limits on opcodes, memo, nesting depth and expanded size; a policy decides the rest.

    Subclasses define the policy: :meth:`find_class`, :meth:`persistent_load`, :meth:`_call`
    (REDUCE, INST, OBJ), :meth:`_new` (NEWOBJ, NEWOBJ_EX), :meth:`_build` (BUILD) and
    :meth:`_container_ok` (which objects APPEND/SETITEM/ADDITEMS may modify).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: Any, path: str | None = None, size: int | None = None) -> None:
        if size is None:
            size = _stream_size(file)
        reader = _BoundedReader(file, size)
        super().__init__(reader)
        self._path = path
        # id(obj) -> (depth, expanded size, obj): obj is held so that ids are never reused meanwhile.
        self._info: dict[int, tuple[int, int, Any]] = {}

    # ----------------------------------------------------------------- limits

    def _fail(self, message: str) -> CheckpointError:
        return _error(self._path or "<pickle>", message)

    def _note(self, obj: Any, inputs: Any) -> None:
        """Record that ``obj`` now (also) contains ``inputs``; refuse too deep or too large structures."""
        if not inputs or not isinstance(obj, _CONTAINERS):
            # An empty container adds nothing (and may be a shared singleton such as ()); a tensor,
            # array or dtype is a leaf whatever it was built from.
            return
        info = self._info
        depth, size = 0, 0
        for item in inputs:
            rec = info.get(id(item))
            if rec is None:
                size += 1
            else:
                if rec[0] > depth:
                    depth = rec[0]
                size += rec[1]
        old = info.get(id(obj))
        if old is not None and old[2] is obj:
            depth, size = max(depth + 1, old[0]), old[1] + size
        else:
            depth, size = depth + 1, size + 1
        if depth > MAX_DEPTH:
            raise self._fail(f"pickle nests containers more than {MAX_DEPTH} levels deep")
        if size > MAX_EXPANDED_NODES:
            raise self._fail(
                f"pickle builds a structure of more than {MAX_EXPANDED_NODES} objects "
                "(counting shared references; a 'billion laughs' expansion)"
            )
        info[id(obj)] = (depth, size, obj)

    def load(self) -> Any:
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch, memo = self.read, self.dispatch, self.memo
        ops = 0
        try:
            while True:
                key = read(1)
                if not key:
                    raise self._fail("the pickle ends before its STOP opcode (truncated file?)")
                ops += 1
                if ops > MAX_PICKLE_OPCODES:
                    raise self._fail(f"pickle has more than {MAX_PICKLE_OPCODES} opcodes")
                handler = dispatch.get(key[0])
                if handler is None:
                    raise self._fail(f"invalid pickle opcode {key!r} at opcode {ops}")
                handler(self)
                if len(memo) > MAX_PICKLE_MEMO:
                    raise self._fail(f"pickle memo has more than {MAX_PICKLE_MEMO} entries")
                if len(self.metastack) > MAX_DEPTH:
                    raise self._fail(f"pickle opens more than {MAX_DEPTH} nested MARKs")
        except pickle._Stop as stop:
            return stop.value

    # ----------------------------------------------------------------- policy (overridden)

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(module, name, self._path)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("<persistent_id>", _brief(pid), self._path)

    def _call(self, func: Any, args: tuple) -> Any:
        raise NotImplementedError

    def _new(self, cls: Any, args: tuple, kwargs: dict) -> Any:
        raise NotImplementedError

    def _build(self, inst: Any, state: Any) -> None:
        raise NotImplementedError

    def _container_ok(self, obj: Any, kind: type) -> bool:
        return type(obj) is kind if kind is not dict else isinstance(obj, dict)

    def _container(self, obj: Any, kind: type, op: str) -> Any:
        if not self._container_ok(obj, kind):
            raise self._fail(f"pickle opcode {op} applied to a {type(obj).__name__}")
        return obj

    # ----------------------------------------------------------------- opcodes

    def _op_tuple(self) -> None:
        items = self.pop_mark()
        obj = tuple(items)
        self.append(obj)
        self._note(obj, items)

    def _op_tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            raise self._fail("pickle stack underflow")
        items = self.stack[-n:]
        obj = tuple(items)
        self.stack[-n:] = [obj]
        self._note(obj, items)

    def _op_list(self) -> None:
        items = self.pop_mark()
        self.append(items)
        self._note(items, items)

    def _op_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise self._fail("DICT with an odd number of items")
        obj = {items[i]: items[i + 1] for i in range(0, len(items), 2)}
        self.append(obj)
        self._note(obj, items)

    def _op_frozenset(self) -> None:
        items = self.pop_mark()
        obj = frozenset(items)
        self.append(obj)
        self._note(obj, items)

    def _op_append(self) -> None:
        value = self.stack.pop()
        target = self._container(self.stack[-1], list, "APPEND")
        target.append(value)
        self._note(target, (value,))

    def _op_appends(self) -> None:
        items = self.pop_mark()
        target = self._container(self.stack[-1], list, "APPENDS")
        target.extend(items)
        self._note(target, items)

    def _op_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        target = self._container(self.stack[-1], dict, "SETITEM")
        target[key] = value
        self._note(target, (key, value))

    def _op_setitems(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise self._fail("SETITEMS with an odd number of items")
        target = self._container(self.stack[-1], dict, "SETITEMS")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]
        self._note(target, items)

    def _op_additems(self) -> None:
        items = self.pop_mark()
        target = self._container(self.stack[-1], set, "ADDITEMS")
        target.update(items)
        self._note(target, items)

    def _op_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if type(args) is not tuple:
            raise self._fail(f"REDUCE arguments are a {type(args).__name__}, not a tuple")
        obj = self._call(func, args)
        self.stack[-1] = obj
        self._note(obj, args)

    def _op_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(args) is not tuple:
            raise self._fail("NEWOBJ arguments are not a tuple")
        obj = self._new(cls, args, {})
        self.append(obj)
        self._note(obj, args)

    def _op_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if type(args) is not tuple or type(kwargs) is not dict:
            raise self._fail("NEWOBJ_EX arguments are not a tuple and a dict")
        obj = self._new(cls, args, kwargs)
        self.append(obj)
        self._note(obj, (*args, *kwargs.values()))

    def _instantiate(self, klass: Any, args: list) -> None:
        if args or not isinstance(klass, type):
            obj = self._call(klass, tuple(args))
        else:
            obj = self._new(klass, (), {})
        self.append(obj)
        self._note(obj, args)

    def _op_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        self._build(inst, state)
        self._note(inst, (state,))

    def _op_binpersid(self) -> None:
        pid = self.stack.pop()
        obj = self.persistent_load(pid)
        self.append(obj)
        self._note(obj, (pid,))

    dispatch[_P.TUPLE[0]] = _op_tuple
    dispatch[_P.TUPLE1[0]] = lambda self: self._op_tuple_n(1)
    dispatch[_P.TUPLE2[0]] = lambda self: self._op_tuple_n(2)
    dispatch[_P.TUPLE3[0]] = lambda self: self._op_tuple_n(3)
    dispatch[_P.LIST[0]] = _op_list
    dispatch[_P.DICT[0]] = _op_dict
    dispatch[_P.FROZENSET[0]] = _op_frozenset
    dispatch[_P.APPEND[0]] = _op_append
    dispatch[_P.APPENDS[0]] = _op_appends
    dispatch[_P.SETITEM[0]] = _op_setitem
    dispatch[_P.SETITEMS[0]] = _op_setitems
    dispatch[_P.ADDITEMS[0]] = _op_additems
    dispatch[_P.REDUCE[0]] = _op_reduce
    dispatch[_P.NEWOBJ[0]] = _op_newobj
    dispatch[_P.NEWOBJ_EX[0]] = _op_newobj_ex
    dispatch[_P.BUILD[0]] = _op_build
    dispatch[_P.BINPERSID[0]] = _op_binpersid
    # INST and OBJ reach _instantiate through the base class's handlers.


# --------------------------------------------------------------------------- the snapshot policy


class PersistentStub:
    """Inert stand-in for one of NVIDIA's persistent-class objects (its source is never run)."""

    def __init__(self, meta: dict[str, Any]) -> None:
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise CheckpointError(f"unsupported persistent object record: {type(meta).__name__}")
        class_name, state = meta.get("class_name"), meta.get("state")
        if not isinstance(class_name, str) or len(class_name) > 200:
            raise CheckpointError(f"persistent object record with a bad class_name ({type(class_name).__name__})")
        if state is not None and not isinstance(state, dict):
            raise CheckpointError(f"persistent object {class_name!r} has a {type(state).__name__} state, not a dict")
        self.class_name: str = class_name
        self.version = meta.get("version")
        self.state: dict[str, Any] = state if state is not None else {}

    @property
    def init_kwargs(self) -> dict[str, Any]:
        kwargs = self.state.get("_init_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise CheckpointError(f"{self.class_name}: _init_kwargs is a {type(kwargs).__name__}, not a dict")
        return _plain(kwargs)

    @property
    def init_args(self) -> tuple[Any, ...]:
        args = self.state.get("_init_args") or ()
        if not isinstance(args, (tuple, list)):
            raise CheckpointError(f"{self.class_name}: _init_args is a {type(args).__name__}, not a tuple")
        return tuple(args)

    def __repr__(self) -> str:
        return f"PersistentStub({self.class_name})"


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __setstate__(self, state: Any) -> None:
        # An EasyDict keeps its items in the dict itself; an instance __dict__ (normally empty) is
        # dropped rather than allowed to shadow dict methods.
        return None


_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8,
}


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentStub,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("dnnlib", "EasyDict"): _EasyDict,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("builtins", "object"): object,
        ("builtins", "dict"): dict,
        # Protocol 0-2 pickles name Python 2's modules (pickle's fix_imports maps them the same way).
        ("__builtin__", "set"): set,
        ("__builtin__", "frozenset"): frozenset,
        ("__builtin__", "object"): object,
        ("__builtin__", "dict"): dict,
        ("copy_reg", "_reconstructor"): copyreg._reconstructor,
        # ... and store bytes as _codecs.encode(text, 'latin1') (an empty one as bytes()).
        ("_codecs", "encode"): _latin1_bytes,
        ("__builtin__", "bytes"): bytes,
        ("builtins", "bytes"): bytes,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
    }
    if hasattr(torch._utils, "_rebuild_parameter_with_state"):
        allowed[("torch._utils", "_rebuild_parameter_with_state")] = torch._utils._rebuild_parameter_with_state
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "scalar")] = _numpy_scalar
        allowed[(mod, "_reconstruct")] = _np_reconstruct
    for name in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
        allowed[("torch", name)] = getattr(torch, name)
    return {k: v for k, v in allowed.items() if v is not None}


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.fields is not None:
        raise UnsafePickleError("numpy", f"scalar({_brief(dtype)})")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise CheckpointError(f"numpy scalar of {dtype} with {type(data).__name__} data of the wrong size")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: only the ``(text, 'latin1')`` form pickle uses for bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs", f"encode(<{type(text).__name__}>, {_brief(encoding)})")
    return text.encode("latin1")


def _load_storage_from_bytes(data: bytes) -> Any:
    """Safe replacement for ``torch.storage._load_from_bytes``; the unpickler checks ``data`` first."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:  # pragma: no cover
    # Only a marker for the allow-list: RestrictedUnpickler._call implements it with checks.
    raise UnsafePickleError("torch._tensor", "_rebuild_from_type_v2")


def _one_of(x: Any, options: tuple) -> bool:
    """``x`` is one of ``options`` (identity: ``in`` would call a hostile object's ``__eq__``)."""
    return any(x is o for o in options)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _empty_state(state: Any) -> bool:
    """Tensor / hook state that carries nothing (``None``, ``{}``, ``({}, None)`` ...)."""
    if isinstance(state, tuple):
        return len(state) == 2 and all(_empty_state(s) for s in state)
    return state is None or (isinstance(state, dict) and not state)


def _int_seq(x: Any, what: str, max_len: int = 32) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list)) or len(x) > max_len or not all(_is_int(v) and 0 <= v < 2**62 for v in x):
        raise CheckpointError(f"bad {what}: {_brief(x)}")
    return tuple(int(v) for v in x)


class RestrictedUnpickler(_BoundedUnpickler):
    """Unpickler that resolves only allow-listed globals and never runs embedded module source.

    Allow-listed functions are called only with checked arguments; ``torch.Tensor``,
    ``torch.nn.Parameter``, ``numpy.ndarray`` are never called (they are only passed as types).
    """

    def __init__(self, file: Any, path: str | None = None, size: int | None = None) -> None:
        super().__init__(file, path, size)
        self._allowed = _allowed_globals()
        self._names = {id(v): f"{m}.{n}" for (m, n), v in self._allowed.items()}
        self._calls = self._call_table()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(module, name, self._path) from None
        except TypeError:  # unhashable module/name from a hostile STACK_GLOBAL
            raise UnsafePickleError(_brief(module), _brief(name), self._path) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("<persistent_id>", _brief(pid), self._path)

    def _refuse(self, func: Any, use: str = "") -> UnsafePickleError:
        """Refuse a use of an allow-listed global (a call, NEWOBJ, BUILD) that snapshots never make."""
        name = self._names.get(id(func), f"<{type(func).__name__}>")
        module, _, attr = name.rpartition(".")
        detail = (f"StyleGAN2-ADA snapshots never use it this way ({use}); unpickling it could allocate "
                  "unbounded memory or change objects it should not")
        return UnsafePickleError(module or "<object>", attr, self._path, detail)

    # ----------------------------------------------------------------- calls

    def _call_table(self) -> dict[int, tuple[Any, Any]]:
        t = torch._utils
        table = {
            PersistentStub: self._c_stub,
            _EasyDict: functools.partial(self._c_container, _EasyDict, (list, tuple, dict)),
            collections.OrderedDict: functools.partial(self._c_container, collections.OrderedDict, (list, tuple, dict)),
            dict: functools.partial(self._c_container, dict, (list, tuple, dict)),
            set: functools.partial(self._c_container, set, (list, tuple, set, frozenset)),
            frozenset: functools.partial(self._c_container, frozenset, (list, tuple, set, frozenset)),
            copyreg._reconstructor: self._c_reconstructor,
            _load_storage_from_bytes: self._c_storage_bytes,
            t._rebuild_tensor: self._c_rebuild_tensor,
            t._rebuild_tensor_v2: self._c_rebuild_tensor_v2,
            t._rebuild_parameter: self._c_rebuild_parameter,
            _rebuild_from_type_v2: self._c_rebuild_from_type_v2,
            torch.Size: self._c_size,
            torch.device: self._c_device,
            np.dtype: self._c_np_dtype,
            _numpy_scalar: _numpy_scalar,
            _latin1_bytes: _latin1_bytes,
            bytes: self._c_empty_bytes,
            _np_reconstruct: self._c_np_reconstruct,
        }
        if hasattr(t, "_rebuild_parameter_with_state"):
            table[t._rebuild_parameter_with_state] = self._c_rebuild_parameter_with_state
        return {id(k): (k, v) for k, v in table.items()}

    def _call(self, func: Any, args: tuple) -> Any:
        entry = self._calls.get(id(func))
        if entry is None or entry[0] is not func:
            raise self._refuse(func, "called")
        return entry[1](*args)

    def _c_stub(self, *args: Any) -> PersistentStub:
        if len(args) != 1:
            raise CheckpointError("persistent object record with the wrong number of arguments")
        return PersistentStub(args[0])

    @staticmethod
    def _c_container(cls: type, accepted: tuple[type, ...], *args: Any) -> Any:
        """``dict()``, ``OrderedDict(items)``, ``set(list)`` ...: at most one plain container argument."""
        if len(args) > 1 or (args and not isinstance(args[0], accepted)):
            raise CheckpointError(f"{cls.__name__} built from {_brief(args)}")
        return cls(*args)

    @staticmethod
    def _c_empty_bytes(*args: Any) -> bytes:
        if args:
            raise CheckpointError("bytes() called with arguments")
        return b""

    def _new(self, cls: Any, args: tuple, kwargs: dict) -> Any:
        if _one_of(cls, (_EasyDict, collections.OrderedDict, dict, set, frozenset)) and not args and not kwargs:
            return cls.__new__(cls)
        raise self._refuse(cls, "NEWOBJ")

    def _c_reconstructor(self, cls: Any, base: Any, state: Any = None) -> Any:
        if not _one_of(cls, (_EasyDict, collections.OrderedDict, dict)) or base is not dict:
            raise self._refuse(copyreg._reconstructor, f"of {_brief(cls)} on {_brief(base)}")
        if state is not None and not isinstance(state, dict):
            raise CheckpointError(f"copyreg._reconstructor state is a {type(state).__name__}")
        return copyreg._reconstructor(cls, base, state)

    def _c_storage_bytes(self, data: Any) -> Any:
        if not isinstance(data, bytes):
            raise CheckpointError(f"embedded storage is a {type(data).__name__}, not bytes")
        source = f"{self._path or '<pickle>'} (an embedded tensor storage)"
        _check_torch_stream(io.BytesIO(data), len(data), source, storage_only=True)
        try:
            storage = _load_storage_from_bytes(data)
        except Exception as e:
            raise _error(source, f"torch could not read it: {_reason(e)}") from e
        if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
            raise _error(source, f"holds a {type(storage).__name__}, not a storage")
        return storage

    @staticmethod
    def _check_view(storage: Any, offset: Any, size: Any, stride: Any) -> tuple:
        if not isinstance(storage, torch.storage.TypedStorage):
            raise CheckpointError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
        size, stride = _int_seq(size, "tensor size"), _int_seq(stride, "tensor stride")
        if len(size) != len(stride) or not _is_int(offset) or offset < 0:
            raise CheckpointError(f"bad tensor geometry: size {size}, stride {stride}, offset {_brief(offset)}")
        if math.prod(size) > 0:
            last = int(offset) + sum((n - 1) * s for n, s in zip(size, stride))
            elements = storage._untyped_storage.nbytes() // torch._utils._element_size(storage.dtype)
            if last >= elements:
                raise CheckpointError(
                    f"tensor of size {size}, stride {stride}, offset {offset} reaches beyond its storage "
                    f"of {elements} elements"
                )
        return int(offset), size, stride

    @staticmethod
    def _check_hooks(hooks: Any) -> None:
        if not (hooks is None or (isinstance(hooks, dict) and not hooks)):
            raise CheckpointError("tensor with backward hooks (only an empty hook dict is allowed)")

    def _c_rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
        offset, size, stride = self._check_view(storage, offset, size, stride)
        return torch._utils._rebuild_tensor(storage, offset, size, stride)

    def _c_rebuild_tensor_v2(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                             backward_hooks: Any, metadata: Any = None) -> torch.Tensor:
        offset, size, stride = self._check_view(storage, offset, size, stride)
        self._check_hooks(backward_hooks)
        if not isinstance(requires_grad, bool) or not _empty_state(metadata):
            raise CheckpointError("tensor with a bad requires_grad flag or extra metadata")
        return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, collections.OrderedDict())

    def _c_rebuild_parameter(self, data: Any, requires_grad: Any, backward_hooks: Any) -> torch.Tensor:
        if not isinstance(data, torch.Tensor) or not isinstance(requires_grad, bool):
            raise CheckpointError(f"parameter rebuilt from a {type(data).__name__}")
        self._check_hooks(backward_hooks)
        return torch._utils._rebuild_parameter(data, requires_grad, collections.OrderedDict())

    def _c_rebuild_parameter_with_state(self, data: Any, requires_grad: Any, backward_hooks: Any,
                                        state: Any) -> torch.Tensor:
        if not _empty_state(state):
            raise self._refuse(torch._utils._rebuild_parameter_with_state, "with attribute state")
        return self._c_rebuild_parameter(data, requires_grad, backward_hooks)

    def _c_rebuild_from_type_v2(self, func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
        rebuilders = (torch._utils._rebuild_tensor, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter)
        if (not _one_of(func, rebuilders) or not _one_of(new_type, (torch.Tensor, torch.nn.Parameter))
                or type(args) is not tuple):
            raise self._refuse(_rebuild_from_type_v2, f"with {_brief(func)} -> {_brief(new_type)}")
        if not _empty_state(state):
            raise self._refuse(_rebuild_from_type_v2, "with attribute state")
        ret = self._call(func, args)
        if type(ret) is not new_type:
            ret = ret.as_subclass(new_type)
        return ret

    def _c_size(self, seq: Any = ()) -> torch.Size:
        return torch.Size(_int_seq(seq, "torch.Size", max_len=64))

    def _c_device(self, *args: Any) -> torch.device:
        if not 1 <= len(args) <= 2 or not all((isinstance(a, str) and len(a) <= 32) or _is_int(a) for a in args):
            raise CheckpointError(f"bad torch.device arguments {_brief(args)}")
        return torch.device(*args)

    def _c_np_dtype(self, spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
        if not isinstance(spec, str) or len(spec) > 16 or not copy:
            raise self._refuse(np.dtype, f"of {_brief(spec)}")
        dt = np.dtype(spec, bool(align), True)
        if dt.hasobject or dt.fields is not None or dt.itemsize > 64:
            raise self._refuse(np.dtype, f"of {_brief(spec)}")
        return dt

    def _c_np_reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        shape = _int_seq(shape, "array shape")
        if subtype is not np.ndarray or math.prod(shape) != 0 or not isinstance(dtype, (bytes, str)) or len(dtype) > 8:
            raise self._refuse(_np_reconstruct, f"of {_brief(subtype)} {shape}")
        return _np_reconstruct(np.ndarray, shape, dtype)

    # ----------------------------------------------------------------- BUILD

    def _build(self, inst: Any, state: Any) -> None:
        if type(inst) is np.ndarray:
            self._build_array(inst, state)
        elif type(inst) is np.dtype or isinstance(inst, np.dtype):
            self._build_dtype(inst, state)
        elif isinstance(inst, _EasyDict) and (state is None or isinstance(state, (dict, tuple))):
            inst.__setstate__(state)
        elif _empty_state(state) and isinstance(inst, (dict, list, set, torch.Tensor)):
            return
        else:
            raise self._refuse(type(inst), f"BUILD of a {type(inst).__name__}")

    def _build_array(self, arr: np.ndarray, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointError("numpy array with a bad pickled state")
        shape, dtype, _fortran, data = state[-4:]
        shape = _int_seq(shape, "array shape")
        if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.fields is not None:
            raise self._refuse(np.ndarray, f"of dtype {_brief(dtype)}")
        if not isinstance(data, (bytes, bytearray)) or len(data) != math.prod(shape) * dtype.itemsize:
            raise CheckpointError(f"numpy array {shape} of {dtype}: data of the wrong type or size")
        arr.__setstate__(state)

    def _build_dtype(self, dt: np.dtype, state: Any) -> None:
        if (not isinstance(state, tuple) or len(state) not in (8, 9) or any(s is not None for s in state[2:5])
                or (len(state) == 9 and state[8] is not None)):
            raise self._refuse(np.dtype, "with a structured or subarray state")
        dt.__setstate__(state)
        if dt.hasobject or dt.fields is not None or dt.itemsize > 64:
            raise self._refuse(np.dtype, f"{dt}")


# --------------------------------------------------------------------------- torch.save streams


class _Global:
    """A global named by a pickle that is only scanned (never resolved)."""

    __slots__ = ("module", "name")

    def __init__(self, module: Any, name: Any) -> None:
        self.module, self.name = str(module)[:200], str(name)[:200]

    def __repr__(self) -> str:
        return f"{self.module}.{self.name}"


class _Opaque:
    """What a scanned pickle's calls produce: nothing; accepts the container opcodes."""

    __slots__ = ()

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass

    def update(self, items: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class _Scanner(_BoundedUnpickler):
    """Reads a pickle's structure without resolving any global or calling anything.

    Records the globals named and the persistent ids (storage records of ``torch.save``).
    """

    def __init__(self, file: Any, path: str, size: int | None = None) -> None:
        super().__init__(file, path, size)
        self.globals: list[_Global] = []
        self.pids: list[Any] = []

    def find_class(self, module: Any, name: Any) -> _Global:
        g = _Global(module, name)
        self.globals.append(g)
        return g

    def persistent_load(self, pid: Any) -> _Opaque:
        self.pids.append(pid)
        return _Opaque()

    def _call(self, func: Any, args: tuple) -> _Opaque:
        return _Opaque()

    def _new(self, cls: Any, args: tuple, kwargs: dict) -> _Opaque:
        return _Opaque()

    def _build(self, inst: Any, state: Any) -> None:
        return None

    def _container_ok(self, obj: Any, kind: type) -> bool:
        return isinstance(obj, _Opaque) or super()._container_ok(obj, kind)


_CONTAINERS = (dict, list, tuple, set, frozenset, PersistentStub, _Opaque)
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PROTOCOL = 1001


def _storage_record(pid: Any, source: str, legacy: bool) -> tuple[str, int, int]:
    """(key, element count, element size) of a ``torch.save`` storage record; refuses anything else."""
    n = 6 if legacy else 5
    if not isinstance(pid, tuple) or len(pid) != n or pid[0] != "storage":
        raise _error(source, f"unsupported torch.save record {_brief(pid)}")
    cls, key, _location, numel = pid[1:5]
    if not isinstance(cls, _Global) or cls.module != "torch" or cls.name not in _STORAGE_DTYPES:
        raise _error(source, f"unsupported storage type {_brief(cls)}")
    if not isinstance(key, str) or len(key) > 200 or not _is_int(numel) or not 0 <= numel < 2**62:
        raise _error(source, f"bad storage record {_brief(pid)}")
    if legacy and pid[5] is not None:
        view = pid[5]
        if (not isinstance(view, tuple) or len(view) != 3 or not all(_is_int(v) and v >= 0 for v in view[1:])
                or view[1] + view[2] > numel):
            raise _error(source, f"bad storage view {_brief(view)}")
    return key, int(numel), torch._utils._element_size(_STORAGE_DTYPES[cls.name])


def _scan(f: Any, source: str, size: int) -> _Scanner:
    scanner = _Scanner(f, source, size)
    try:
        scanner.result = scanner.load()
    except CheckpointError:
        raise
    except Exception as e:  # a malformed pickle raises many types
        raise _error(source, f"not a readable torch.save stream: {_reason(e)}") from e
    return scanner


def _check_globals(scanner: _Scanner, source: str) -> None:
    for g in scanner.globals:
        if g.module != "torch" or g.name not in _STORAGE_DTYPES:
            raise UnsafePickleError(g.module, g.name, source)


def _check_torch_legacy(f: Any, size: int, source: str, storage_only: bool) -> None:
    start = f.tell()
    magic = _scan(f, source, size).result
    if magic != _TORCH_MAGIC:
        raise _error(source, "not a torch.save file (bad magic number)")
    if _scan(f, source, size).result != _TORCH_LEGACY_PROTOCOL:
        raise _error(source, "unsupported legacy torch.save protocol version")
    _scan(f, source, size)  # system info
    main = _scan(f, source, size)
    keys = _scan(f, source, size).result
    if storage_only:
        _check_globals(main, source)
    declared: dict[str, tuple[int, int]] = {}
    for pid in main.pids:
        key, numel, elsize = _storage_record(pid, source, legacy=True)
        if declared.setdefault(key, (numel, elsize)) != (numel, elsize):
            raise _error(source, f"storage {key!r} declared with two sizes")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or set(keys) != set(declared):
        raise _error(source, "the storage key list does not match the storage records")
    for key in keys:  # each: int64 element count, then the bytes
        header = f.read(8)
        if len(header) != 8:
            raise _error(source, f"truncated before the data of storage {key!r}")
        numel, elsize = declared[key]
        nbytes = numel * elsize
        (count,) = struct.unpack("<q", header)
        if count != numel or f.tell() + nbytes > size:
            raise _error(source, f"storage {key!r}: declared {numel} elements; the file holds others or fewer")
        f.seek(nbytes, io.SEEK_CUR)
    if not storage_only and start == 0:
        f.seek(0)
        try:
            with tarfile.open(fileobj=f, mode="r:"):
                raise _error(source, "is also a tar archive (an ambiguous, refused torch.save format)")
        except tarfile.TarError:
            pass


def _check_torch_zip(f: Any, size: int, source: str, storage_only: bool) -> None:
    try:
        zf = zipfile.ZipFile(f)
        infos = zf.infolist()
    except Exception as e:
        raise _error(source, f"not a readable zip archive: {_reason(e)}") from e
    if len(infos) > MAX_ZIP_ENTRIES:
        raise _error(source, f"zip archive with more than {MAX_ZIP_ENTRIES} entries")
    records: dict[str, int] = {}
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise _error(source, f"zip record {info.filename!r} is compressed (torch.save stores records "
                                 "uncompressed; a compressed record could be a decompression bomb)")
        if info.header_offset + info.file_size > size:
            raise _error(source, f"zip record {info.filename!r} reaches beyond the end of the file")
        records[info.filename] = info.file_size
    pkls = [i for i in infos if i.filename.endswith("data.pkl") and i.filename.count("/") == 1]
    if len(pkls) != 1:
        raise _error(source, "zip archive without exactly one <name>/data.pkl (not a torch.save file)")
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
            raise _error(source, f"storage {key!r} declares {nbytes} bytes; the archive holds {have or 0}")


def _check_torch_stream(f: Any, size: int, source: str, storage_only: bool = False) -> None:
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

    For the project's own ``torch.save`` files (training states, caches): the file must hold only
    tensors, dicts, lists, tuples, numbers and strings. Declared storage sizes are checked against
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
                raise _error(path, "is empty")
            _check_torch_stream(f, size, str(path))
        obj = torch.load(path, map_location=map_location, weights_only=True)
        _check_structure(obj, str(path))
    except CheckpointError:
        raise
    except Exception as e:  # torch.load raises many types on bad bytes
        raise _error(path, f"cannot be read safely as a torch.save file: {_reason(e)}") from e
    return obj


# --------------------------------------------------------------------------- structure checks


def _children(obj: Any) -> Any:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return obj
    if isinstance(obj, PersistentStub):
        return (obj.state,)
    return None


def _check_structure(root: Any, source: str, max_nodes: int = MAX_EXPANDED_NODES, max_depth: int = MAX_DEPTH) -> None:
    """Walk ``root`` iteratively: refuse cycles, nesting deeper than ``max_depth`` and more than
    ``max_nodes`` objects counting each shared reference again (so recursive code after this is safe)."""
    visited = 0
    on_path: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(root, 0, False)]
    while stack:
        obj, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(obj))
            continue
        visited += 1
        if visited > max_nodes:
            raise _error(source, f"its contents expand to more than {max_nodes} objects "
                                 "(counting shared references; a 'billion laughs' structure)")
        children = _children(obj)
        if children is None:
            continue
        if id(obj) in on_path:
            raise _error(source, f"self-referential structure (a {type(obj).__name__} contains itself)")
        if depth >= max_depth:
            raise _error(source, f"structure nested more than {max_depth} levels deep")
        on_path.add(id(obj))
        stack.append((obj, depth, True))
        stack.extend((c, depth + 1, False) for c in children)


def read_pickle(path: PathLike) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (raises :class:`UnsafePickleError` /
    :class:`CheckpointError`, never runs code); the result's structure is bounded."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, str(path), os.fstat(f.fileno()).st_size).load()
    except CheckpointError as e:
        named = _with_path(e, path)
        if named is e:
            raise
        raise named from e
    except Exception as e:  # a malformed pickle raises many types
        raise _error(path, f"not a readable snapshot pickle: {_reason(e)}") from e
    _check_structure(obj, str(path))
    return obj


def _with_path(err: CheckpointError, path: Any) -> CheckpointError:
    """``err`` itself if it names ``path``, else a copy that does."""
    if str(path) in str(err):
        return err
    if isinstance(err, UnsafePickleError):
        new: CheckpointError = UnsafePickleError(err.module, err.name, str(path), err.detail)
    else:
        new = CheckpointError(f"{path}: {err}")
    return new


# --------------------------------------------------------------------------- kwargs and state dicts


def _plain(obj: Any) -> Any:
    """Convert EasyDicts, OrderedDicts and numpy scalars inside kwargs to plain JSON-able values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _check_kwargs(kwargs: Any, source: str, what: str) -> dict[str, Any]:
    """Constructor arguments must be small JSON-like data: str keys, finite numbers, short lists."""
    if not isinstance(kwargs, dict):
        raise _error(source, f"{what} are a {type(kwargs).__name__}, not a dict")
    budget = [MAX_KWARGS_NODES]

    def walk(x: Any, where: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0 or depth > 6:
            raise _error(source, f"{what} are too large or too deeply nested")
        if x is None or isinstance(x, (bool, str)):
            if isinstance(x, str) and len(x) > 1000:
                raise _error(source, f"{what}: {where} is a string of {len(x)} characters")
            return
        if isinstance(x, int):
            if abs(x) > 2**31:
                raise _error(source, f"{what}: {where} = {_brief(x)} is out of range")
            return
        if isinstance(x, float):
            if not math.isfinite(x):
                raise _error(source, f"{what}: {where} = {x} is not finite")
            return
        if isinstance(x, (list, tuple)):
            if len(x) > 64:
                raise _error(source, f"{what}: {where} is a list of {len(x)} items")
            for i, v in enumerate(x):
                walk(v, f"{where}[{i}]", depth + 1)
            return
        if isinstance(x, dict):
            for k, v in x.items():
                if not isinstance(k, str):
                    raise _error(source, f"{what}: {where} has a non-string key {_brief(k)}")
                walk(v, f"{where}.{k}" if where else k, depth + 1)
            return
        raise _error(source, f"{what}: {where} is a {type(x).__name__}")

    walk(kwargs, "", 0)
    return kwargs


def _arg_int(kw: dict, key: str, source: str, what: str, default: Any = ..., lo: int = 0, hi: int = MAX_DIM,
             pow2: bool = False, optional: bool = False) -> int | None:
    if key not in kw:
        if default is ...:
            raise _error(source, f"{what} lack {key!r}")
        return default
    value = kw[key]
    if value is None and optional:
        return None
    if not _is_int(value) or not lo <= value <= hi or (pow2 and value & (value - 1)):
        shape = "a power of two " if pow2 else "an integer "
        raise _error(source, f"{what}: {key} = {_brief(value)} must be {shape}in [{lo}, {hi}]")
    return int(value)


def _arg_dict(kw: dict, key: str, source: str, what: str) -> dict:
    value = kw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _error(source, f"{what}: {key} is a {type(value).__name__}, not a dict")
    return value


def _indices(sd: dict[str, torch.Tensor], pattern: str) -> set[int]:
    rx = re.compile(pattern)
    out = set()
    for k in sd:
        m = rx.match(k)
        if m and len(m.group(1)) <= 6:
            out.add(int(m.group(1)))
    return out


def _fmt_set(values: set[int]) -> str:
    return "{" + ", ".join(map(str, sorted(values)[:12])) + (", ...}" if len(values) > 12 else "}")


def _check_declared_sizes(kind: str, kwargs: dict, sd: dict[str, torch.Tensor], source: str) -> None:
    """Check the constructor's structural arguments against the file's tensors, before building anything."""
    what = f"{kind} arguments"

    def shape(key: str) -> tuple[int, ...] | None:
        t = sd.get(key)
        return tuple(t.shape) if t is not None else None

    def expect(key: str, dim: int, value: int, arg: str) -> None:
        s = shape(key)
        if s is not None and (len(s) <= dim or s[dim] != value):
            raise _error(source, f"{what} declare {arg} = {value}, but the file's {key} has shape {s}")

    res = _arg_int(kwargs, "img_resolution", source, what, lo=4, hi=MAX_RESOLUTION, pow2=True)
    c_dim = _arg_int(kwargs, "c_dim", source, what, default=0)
    img_channels = _arg_int(kwargs, "img_channels", source, what, lo=1)
    mapping = _arg_dict(kwargs, "mapping_kwargs", source, what)
    log2 = int(res).bit_length() - 1
    if kind == "generator":
        z_dim = _arg_int(kwargs, "z_dim", source, what)
        if z_dim == 0 and c_dim == 0:
            raise _error(source, f"{what}: z_dim = 0 and c_dim = 0 leave the mapping network without an input")
        w_dim = _arg_int(kwargs, "w_dim", source, what, lo=1)
        synthesis = _arg_dict(kwargs, "synthesis_kwargs", source, what)
        base = _arg_int(synthesis, "channel_base", source, what, default=32768, lo=1, hi=2**30)
        cmax = _arg_int(synthesis, "channel_max", source, what, default=512, lo=1)
        _arg_int(synthesis, "num_fp16_res", source, what, default=0, hi=64)
        layers = _arg_int(mapping, "num_layers", source, what, default=8, lo=1, hi=MAX_LAYERS)
        blocks = {2**i for i in range(2, log2 + 1)}
        have = _indices(sd, r"synthesis\.b(\d+)\.")
        if have != blocks:
            raise _error(source, f"{what} declare img_resolution = {res} (synthesis blocks {_fmt_set(blocks)}), "
                                 f"but the file holds synthesis blocks {_fmt_set(have)}")
        fcs = _indices(sd, r"mapping\.fc(\d+)\.")
        if fcs != set(range(layers)):
            raise _error(source, f"{what} declare {layers} mapping layers, but the file holds mapping.fc "
                                 f"{_fmt_set(fcs)}")
        for r in sorted(blocks):
            expect(f"synthesis.b{r}.conv1.weight", 0, min(base // r, cmax), f"{r}x{r} channels")
            expect(f"synthesis.b{r}.conv1.affine.weight", 1, w_dim, "w_dim")
        expect(f"mapping.fc{layers - 1}.weight", 0, w_dim, "w_dim")
        expect(f"synthesis.b{res}.torgb.weight", 0, img_channels, "img_channels")
    else:
        base = _arg_int(kwargs, "channel_base", source, what, default=32768, lo=1, hi=2**30)
        cmax = _arg_int(kwargs, "channel_max", source, what, default=512, lo=1)
        _arg_int(kwargs, "num_fp16_res", source, what, default=0, hi=64)
        _arg_int(kwargs, "cmap_dim", source, what, default=None, optional=True)
        blocks = {2**i for i in range(2, log2 + 1)}
        have = _indices(sd, r"b(\d+)\.")
        if have != blocks:
            raise _error(source, f"{what} declare img_resolution = {res} (blocks {_fmt_set(blocks)}), "
                                 f"but the file holds blocks {_fmt_set(have)}")
        fcs = _indices(sd, r"mapping\.fc(\d+)\.")
        layers = _arg_int(mapping, "num_layers", source, what, default=8, lo=1, hi=MAX_LAYERS) if c_dim else 0
        if fcs != set(range(layers)):
            raise _error(source, f"{what} declare {layers} label-mapping layers, but the file holds "
                                 f"mapping.fc {_fmt_set(fcs)}")
        for r in sorted(blocks - {4}):
            expect(f"b{r}.conv0.weight", 0, min(base // r, cmax), f"{r}x{r} channels")
        expect(f"b{res}.fromrgb.weight", 1, img_channels, "img_channels")


def _check_weights(sd: dict[str, Any], source: str) -> None:
    """Every entry must be a dense, finite, floating-point CPU tensor under a string key."""
    for key, t in sd.items():
        if not isinstance(key, str):
            raise _error(source, f"non-string key {_brief(key)}")
        if not isinstance(t, torch.Tensor):
            raise _error(source, f"{key!r} is a {type(t).__name__}, not a tensor")
        if t.layout != torch.strided or t.device.type != "cpu" or t.is_quantized:
            raise _error(source, f"tensor {key!r} is not a dense CPU tensor ({t.layout}, {t.device})")
        if not t.is_floating_point():
            raise _error(source, f"tensor {key!r} has dtype {t.dtype}; network weights must be floating point")
        values = t if t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) else t.float()
        bad = int((~torch.isfinite(values)).sum())
        if bad:
            raise _error(source, f"tensor {key!r} holds {bad} non-finite values (NaN or inf)")


def _short_list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _state_problems(own: dict[str, Any], sd: dict[str, torch.Tensor]) -> list[str]:
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mismatched = [
        f"{k}: file {tuple(sd[k].shape)} vs network {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(sd))
        if tuple(own[k].shape) != tuple(sd[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys [{_short_list(missing)}]")
    if unexpected:
        problems.append(f"unexpected keys [{_short_list(unexpected)}]")
    if mismatched:
        problems.append(f"shape mismatches [{_short_list(mismatched)}]")
    return problems


def _load_into(net: torch.nn.Module, sd: dict[str, torch.Tensor], what: str, source: str) -> None:
    """Load ``sd`` strictly, raising :class:`CheckpointError` that lists bad keys and shapes."""
    own = net.state_dict()
    problems = _state_problems(own, sd)
    if problems:
        raise CheckpointError(f"{what} in {source} does not match its constructor arguments: " + "; ".join(problems))
    sd = {k: (v.to(own[k].dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    net.load_state_dict(sd, strict=True)


class _AllocationBudget(torch.overrides.TorchFunctionMode):
    """Refuses tensor factory calls (``randn``, ``zeros``, ``full`` ...) beyond a total element budget.

    Active while a network is constructed from a file's arguments: a network whose parameters and
    buffers need far more elements than the file holds cannot match it, so it is refused before the
    allocation instead of after it.
    """

    _FACTORIES = frozenset({torch.randn, torch.rand, torch.zeros, torch.ones, torch.full, torch.empty})

    def __init__(self, budget: int, source: str, kind: str) -> None:
        super().__init__()
        self.budget, self.used, self.source, self.kind = budget, 0, source, kind

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in self._FACTORIES:
            size = kwargs.get("size", args[0] if args and isinstance(args[0], (list, tuple)) else args)
            dims = [d for d in size if _is_int(d)] if isinstance(size, (list, tuple)) else []
            self.used += math.prod(max(int(d), 0) for d in dims)
            if self.used > self.budget:
                raise _error(self.source, f"the {self.kind} arguments describe a network of more than "
                                          f"{self.budget} parameter and buffer elements, far more than the file holds")
        return func(*args, **kwargs)


def _construct(cls: type[torch.nn.Module], kwargs: dict, kind: str, source: str, budget: int) -> torch.nn.Module:
    try:
        with _AllocationBudget(budget, source, kind):
            return cls(**kwargs)
    except CheckpointError:
        raise
    except Exception as e:  # constructors assert, divide by zero, raise TypeError ...
        shown = json.dumps(kwargs, sort_keys=True)
        shown = shown if len(shown) <= 400 else shown[:400] + " ..."
        raise _error(source, f"bad {kind} arguments {shown}: {_reason(e)}") from e


def build_network(kind: str, kwargs: dict[str, Any], sd: dict[str, torch.Tensor], source: str,
                  class_name: str | None = None) -> torch.nn.Module:
    """Construct a ``kind`` ('generator' or 'discriminator') network from ``kwargs`` and load ``sd`` strictly.

    Before anything is built, the weights are checked (finite floating point) and the declared
    structure (mapping layers, block resolutions, channels, dimensions) against the file; while the
    network is built, its tensor allocations may not exceed a small multiple of what the file holds.
    """
    registry = GENERATOR_CLASSES if kind == "generator" else DISCRIMINATOR_CLASSES
    class_name = class_name or ("Generator" if kind == "generator" else "Discriminator")
    if not isinstance(class_name, str) or class_name not in registry:
        raise _error(source, f"unsupported {kind} class {_brief(class_name)}; known: {sorted(registry)}")
    _check_weights(sd, source)
    kwargs = _check_kwargs(kwargs, source, f"{kind} arguments")
    _check_declared_sizes(kind, kwargs, sd, source)
    # A network matching the file allocates about what the file holds; StyleINRGenerator builds its
    # synthesis network twice (Generator's, then its own), so allow 3x, plus slack for filters.
    budget = 3 * sum(t.numel() for t in sd.values()) + 2**20
    net = _construct(registry[class_name], kwargs, kind, source, budget)
    _load_into(net, sd, kind, source)
    return net


# --------------------------------------------------------------------------- per-format readers


def _looks_like_safetensors(f: Any, size: int) -> bool:
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        return False
    (n,) = struct.unpack("<Q", head)
    if not 2 <= n <= min(size - 8, MAX_SAFETENSORS_HEADER):
        return False
    first = f.read(1)
    if first != b"{":
        return False
    try:
        header = json.loads(first + f.read(n - 1))
    except (ValueError, RecursionError, UnicodeDecodeError):
        return False
    return isinstance(header, dict)


def _looks_like_pickle(head: bytes) -> bool:
    if head[:1] == b"\x80":  # PROTO opcode: protocol 2..5
        return len(head) >= 2 and 2 <= head[1] <= 5
    return head[:1] in (b"(", b"}", b"]", b")", b"c")  # protocol 0/1: MARK, empty dict/list/tuple, GLOBAL


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(16)
        if not head:
            raise _error(path, "is empty")
        if _looks_like_safetensors(f, size):
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if _looks_like_pickle(head):
        return "torch" if path.suffix in (".pt", ".pth") else "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > size - 8:
        declared = struct.unpack("<Q", head[:8])[0]
        raise _error(path, f"a safetensors file cut short? Its header declares {declared} bytes; the file has {size - 8}")
    raise _error(path, "unknown network file format (not a pickle, a torch .pt/.pth zip or a safetensors file)")


def _kwargs_from_stub(stub: PersistentStub, cls: type[torch.nn.Module]) -> dict[str, Any]:
    kwargs = dict(stub.init_kwargs)
    if stub.init_args:  # map positional constructor arguments to their names
        import inspect

        names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        kwargs.update(dict(zip(names, _plain(list(stub.init_args)))))
    return kwargs


def _flatten_stub(stub: PersistentStub, prefix: str = "") -> dict[str, torch.Tensor]:
    """Walk ``state['_modules']`` recursively into a flat state dict (NVIDIA's names)."""
    out: dict[str, torch.Tensor] = {}
    state = stub.state

    def entries(name: str) -> dict:
        value = state.get(name) or {}
        if not isinstance(value, dict):
            raise CheckpointError(f"{prefix or 'network'}: {name} is a {type(value).__name__}, not a dict")
        return value

    non_persistent = state.get("_non_persistent_buffers_set") or ()
    if not isinstance(non_persistent, (set, frozenset, list, tuple)):
        raise CheckpointError(f"{prefix or 'network'}: bad _non_persistent_buffers_set")
    non_persistent = {n for n in non_persistent if isinstance(n, str)}
    for kind in ("_parameters", "_buffers"):
        for name, tensor in entries(kind).items():
            if not isinstance(name, str):
                raise CheckpointError(f"{prefix or 'network'}: non-string {kind} name {_brief(name)}")
            if tensor is None or (kind == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"{prefix + name!r} is a {type(tensor).__name__}, not a tensor")
            out[prefix + name] = tensor.detach()
    for name, child in entries("_modules").items():
        if child is None:
            continue
        if not isinstance(name, str) or not isinstance(child, PersistentStub):
            raise CheckpointError(f"submodule {prefix + str(name)!r} is a {type(child).__name__}, not a network record")
        out.update(_flatten_stub(child, prefix + name + "."))
    return out


def _read_pickle_networks(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    data = read_pickle(path)
    if isinstance(data, PersistentStub):
        data = {"G_ema": data} if data.class_name in GENERATOR_CLASSES else {"D": data}
    if not isinstance(data, dict):
        raise _error(path, f"expected a snapshot dict with 'G_ema', got {type(data).__name__}")
    snapshot_keys = sorted(_brief(k) if not isinstance(k, str) else k for k in data)
    g_stub = data.get("G_ema", data.get("G"))
    if not isinstance(g_stub, PersistentStub):
        raise _error(path, f"snapshot has no 'G_ema' or 'G' network (keys: {_short_list(snapshot_keys)})")
    d_stub = data.get("D") if isinstance(data.get("D"), PersistentStub) else None
    G = build_network(
        "generator", _kwargs_from_stub(g_stub, GENERATOR_CLASSES.get(g_stub.class_name, Generator)),
        _flatten_stub(g_stub), f"{path} [G_ema]", g_stub.class_name,
    )
    D = None
    if d_stub is not None:
        D = build_network(
            "discriminator", _kwargs_from_stub(d_stub, DISCRIMINATOR_CLASSES.get(d_stub.class_name, Discriminator)),
            _flatten_stub(d_stub), f"{path} [D]", d_stub.class_name,
        )
    meta = {"snapshot_keys": snapshot_keys, "training_set_kwargs": _plain(data.get("training_set_kwargs"))}
    return G, D, meta


def _json_meta(meta: dict[str, str], key: str, path: Path) -> dict[str, Any]:
    text = meta[key]
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _error(path, f"metadata {key!r} is not valid JSON: {_reason(e)}") from e
    if not isinstance(value, dict):
        raise _error(path, f"metadata {key!r} is a JSON {type(value).__name__}, not an object")
    _check_kwargs(value, f"{path}", f"metadata {key!r}")
    return value


def _read_safetensors_networks(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            keys = list(f.keys())
            g_sd = {k[2:]: f.get_tensor(k) for k in keys if k.startswith("G.")}
            d_sd = {k[2:]: f.get_tensor(k) for k in keys if k.startswith("D.")}
    except Exception as e:  # safetensors raises its own error types on bad bytes
        raise _error(path, f"not a readable safetensors file: {_reason(e)}") from e
    if not g_sd:
        raise _error(path, "no generator tensors (keys starting with 'G.')")
    if "generator_init_kwargs" not in meta:
        raise _error(path, "metadata lacks 'generator_init_kwargs' (JSON constructor arguments)")
    G = build_network(
        "generator", _json_meta(meta, "generator_init_kwargs", path), g_sd, f"{path} [G]", meta.get("generator_class"),
    )
    D = None
    if d_sd:
        if "discriminator_init_kwargs" not in meta:
            raise _error(path, "D.* tensors present but metadata lacks 'discriminator_init_kwargs'")
        D = build_network(
            "discriminator", _json_meta(meta, "discriminator_init_kwargs", path), d_sd, f"{path} [D]",
            meta.get("discriminator_class"),
        )
    meta["extra_keys"] = sorted(k for k in keys if not k.startswith(("G.", "D.")))
    return G, D, meta


def _state_dict_of(value: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(value, dict):
        raise _error(path, f"{what} is a {type(value).__name__}, not a state dict")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise _error(path, f"{what}: entry {_brief(k)} is a {type(v).__name__}, not a tensor")
    return value


def _read_torch_networks(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    obj = load_torch_file(path, map_location="cpu")
    if not isinstance(obj, dict):
        raise _error(path, f"expected a state dict, got {type(obj).__name__}")
    if not all(isinstance(k, str) for k in obj):
        raise _error(path, "state dict with non-string keys")
    meta = {k: v for k, v in obj.items() if isinstance(v, (str, int, float))}
    if isinstance(obj.get("G"), dict):
        g_sd = _state_dict_of(obj["G"], path, "'G'")
        d_sd = _state_dict_of(obj["D"], path, "'D'") if isinstance(obj.get("D"), dict) else {}
    elif any(k.startswith("G.") for k in obj):
        g_sd = {k[2:]: v for k, v in obj.items() if k.startswith("G.") and torch.is_tensor(v)}
        d_sd = {k[2:]: v for k, v in obj.items() if k.startswith("D.") and torch.is_tensor(v)}
    else:
        g_sd, d_sd = {k: v for k, v in obj.items() if torch.is_tensor(v)}, {}
    g_kwargs = _json_or_dict(obj.get("generator_init_kwargs"), path, "generator_init_kwargs")
    if g_kwargs is None:
        g_kwargs = infer_generator_kwargs(g_sd)
        meta["inferred_generator_kwargs"] = True
        warnings.warn(f"{path}: no generator_init_kwargs stored; inferred {g_kwargs} from tensor shapes", stacklevel=3)
    G = build_network("generator", g_kwargs, g_sd, f"{path} [G]")
    D = None
    if d_sd:
        d_kwargs = _json_or_dict(obj.get("discriminator_init_kwargs"), path, "discriminator_init_kwargs")
        if d_kwargs is None:
            raise _error(path, "D tensors present but no 'discriminator_init_kwargs'")
        D = build_network("discriminator", d_kwargs, d_sd, f"{path} [D]")
    return G, D, meta


def _json_or_dict(value: Any, path: Path | None = None, key: str = "") -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as e:
            raise _error(path, f"{key!r} is not valid JSON: {_reason(e)}") from e
    if not isinstance(value, dict):
        raise _error(path, f"{key!r} is a {type(value).__name__}, not a dict of constructor arguments")
    return dict(value)


def infer_generator_kwargs(sd: dict[str, torch.Tensor], conv_clamp: float | None = 256) -> dict[str, Any]:
    """Infer NVIDIA ``Generator`` arguments from a state dict's shapes (``conv_clamp`` is assumed)."""
    fcs = sorted(_indices(sd, r"mapping\.fc(\d+)\.weight$"))
    if not fcs or "synthesis.b4.const" not in sd:
        raise CheckpointError("state dict is not a StyleGAN2-ADA generator (no mapping.fc* or synthesis.b4.const)")
    resolutions = sorted(r for r in _indices(sd, r"synthesis\.b(\d+)\.") if r)
    needed = ["mapping.fc0.weight", f"mapping.fc{fcs[-1]}.weight", f"synthesis.b{resolutions[-1]}.torgb.weight"]
    needed += [f"synthesis.b{r}.conv1.weight" for r in resolutions]
    lacking = [k for k in needed if k not in sd or sd[k].ndim < 2]
    if lacking:
        raise CheckpointError(f"cannot infer generator arguments: missing or bad tensors [{_short_list(lacking)}]")
    channels = {r: sd[f"synthesis.b{r}.conv1.weight"].shape[0] for r in resolutions}
    channel_max = max(channels.values())
    channel_base = next(
        (b for b in (2**i for i in range(6, 20)) if all(min(b // r, channel_max) == c for r, c in channels.items())),
        None,
    )
    if channel_base is None:
        raise CheckpointError(f"cannot infer channel_base from channels {_brief(channels)}")
    w_dim = sd[f"mapping.fc{fcs[-1]}.weight"].shape[0]
    embed_w = sd.get("mapping.embed.weight")
    c_dim = embed_w.shape[1] if embed_w is not None and embed_w.ndim == 2 else 0
    embed = embed_w.shape[0] if c_dim else 0
    return dict(
        z_dim=sd["mapping.fc0.weight"].shape[1] - embed, c_dim=c_dim, w_dim=w_dim,
        img_resolution=resolutions[-1], img_channels=sd[f"synthesis.b{resolutions[-1]}.torgb.weight"].shape[0],
        mapping_kwargs={"num_layers": len(fcs)},
        synthesis_kwargs={"channel_base": channel_base, "channel_max": channel_max, "num_fp16_res": 0,
                          "conv_clamp": conv_clamp},
    )


# --------------------------------------------------------------------------- public API


def load_networks(path: PathLike, device: str | torch.device = "cpu") -> Networks:
    """Load G (and D when present) from an NVIDIA ``.pkl``, a project ``.safetensors`` or a ``.pt``.

    The networks are returned in eval mode with ``requires_grad=False``, in float32 on ``device``.
    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` (naming the file and
    the reason) for everything else about the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network file not found: {path}. {_WHERE_TO_PUT}")
    try:
        fmt = _sniff(path)
        reader = {"pickle": _read_pickle_networks, "safetensors": _read_safetensors_networks,
                  "torch": _read_torch_networks}
        G, D, meta = reader[fmt](path)
    except CheckpointError as e:
        named = _with_path(e, path)
        if named is e:
            raise
        raise named from e
    except Exception as e:  # whatever a hostile file provokes, the caller gets a CheckpointError
        raise _error(path, f"cannot be loaded as networks: {_reason(e)}") from e
    meta.update(
        format=fmt, path=str(path), num_ws=G.num_ws,
        generator_init_kwargs=getattr(G, "init_kwargs", None),
        discriminator_init_kwargs=getattr(D, "init_kwargs", None) if D is not None else None,
    )
    for net in (G, D):
        if net is not None:
            net.eval().requires_grad_(False).to(device)
    return Networks(G=G, D=D, meta=meta)


def save_networks(
    path: PathLike,
    G: Generator | None = None,
    D: Discriminator | None = None,
    meta: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write G (and optionally D) to the project's safetensors format, atomically; return the path.

    ``G`` is required: :func:`load_networks` always returns a generator, so a file holding only a
    discriminator could never be loaded (saving one raises :class:`~hrinv_nb.errors.HrinvError`).
    ``half=True`` stores float tensors as float16 (they are cast back to float32 on load).
    ``meta`` values are stored as strings (non-strings as JSON); its keys may not be the ones the
    saver writes itself (:data:`RESERVED_META_KEYS`).
    """
    if G is None:
        raise HrinvError(
            "save_networks needs G: a network file always holds a generator (load_networks returns G, and "
            "a file with only D could not be loaded); pass the discriminator together with its generator"
        )
    reserved = sorted(str(k) for k in (meta or {}) if str(k) in RESERVED_META_KEYS)
    if reserved:
        raise HrinvError(
            f"save_networks: meta keys {reserved} are written by the saver itself (constructor arguments, "
            f"classes, num_ws) or reported by load_networks; choose other names"
        )
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    for prefix, net, key in (("G.", G, "generator"), ("D.", D, "discriminator")):
        if net is None:
            continue
        if not hasattr(net, "init_kwargs"):
            raise TypeError(f"{key} has no init_kwargs; only hrinv_nb networks can be saved")
        for name, t in net.state_dict().items():
            t = t.detach().to("cpu")
            if half and t.is_floating_point():
                t = t.to(torch.float16)
            tensors[prefix + name] = t.contiguous().clone()
        metadata[f"{key}_init_kwargs"] = json.dumps(net.init_kwargs)
        metadata[f"{key}_class"] = type(net).__name__
    metadata["num_ws"] = str(G.num_ws)
    for k, v in (meta or {}).items():
        metadata[str(k)] = v if isinstance(v, str) else json.dumps(v)
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
