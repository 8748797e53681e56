"""The restricted unpickler for NVIDIA's StyleGAN2-ADA snapshot pickles, and :func:`read_pickle`.

NVIDIA's ``network-snapshot-*.pkl`` files embed the source of their modules
(``torch_utils.persistence``). :class:`RestrictedUnpickler` never runs it: the persistence hook
becomes an inert :class:`~hrinv_nb.bounded_pickle.PersistentStub` that records ``class_name``,
``state`` and ``_init_kwargs``, and every global outside a short allow-list is refused with
:class:`~hrinv_nb.errors.UnsafePickleError`. An allow-listed function is called only after its
arguments are checked: ``torch.Tensor``, ``torch.nn.Parameter`` and ``numpy.ndarray`` are never
called (only passed as types), arrays are rebuilt only from bytes of the right length, and an
embedded tensor storage is checked as a ``torch.save`` stream before torch reads it. The limits on
work (opcodes, memo, depth, expanded size) are those of
:class:`~hrinv_nb.bounded_pickle.BoundedUnpickler`.
"""

from __future__ import annotations

import collections
import copyreg
import functools
import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

from .bounded_pickle import (
    BoundedUnpickler,
    PersistentStub,
    brief,
    check_structure,
    file_error,
    is_int,
    reason,
    with_path,
)
from .errors import CheckpointError, UnsafePickleError
from .torch_files import check_torch_stream

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- stand-ins and the allow-list


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __setstate__(self, state: Any) -> None:
        # An EasyDict keeps its items in the dict itself; an instance __dict__ (normally empty) is
        # dropped rather than allowed to shadow dict methods.
        return None


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    """Stand-in for ``numpy.core.multiarray.scalar``: a plain dtype and exactly its bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.fields is not None:
        raise UnsafePickleError("numpy", f"scalar({brief(dtype)})")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise CheckpointError(f"numpy scalar of {dtype} with {type(data).__name__} data of the wrong size")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: only the ``(text, 'latin1')`` form pickle uses for bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs", f"encode(<{type(text).__name__}>, {brief(encoding)})")
    return text.encode("latin1")


def _load_storage_from_bytes(data: bytes) -> Any:
    """Safe replacement for ``torch.storage._load_from_bytes``; the unpickler checks ``data`` first."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:  # pragma: no cover
    # Only a marker for the allow-list: RestrictedUnpickler._call implements it with checks.
    raise UnsafePickleError("torch._tensor", "_rebuild_from_type_v2")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """``(module, name)`` -> what a snapshot pickle's global resolves to: the object or a stand-in."""
    allowed: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentStub,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
    }
    for module in ("dnnlib.util", "dnnlib"):
        allowed[(module, "EasyDict")] = _EasyDict
    # Protocol 0-2 pickles name Python 2's modules (pickle's fix_imports maps them the same way) ...
    for builtins, copyreg_module in (("builtins", "copyreg"), ("__builtin__", "copy_reg")):
        allowed.update({(builtins, value.__name__): value for value in (set, frozenset, object, dict)})
        allowed[(copyreg_module, "_reconstructor")] = copyreg._reconstructor
    # ... and store bytes as _codecs.encode(text, 'latin1') (an empty one as bytes()).
    allowed[("_codecs", "encode")] = _latin1_bytes
    for builtins in ("__builtin__", "builtins"):
        allowed[(builtins, "bytes")] = bytes
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"):
        allowed[("torch._utils", name)] = getattr(torch._utils, name, None)  # the last: newer torch only
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "scalar")] = _numpy_scalar
        allowed[(module, "_reconstruct")] = _np_reconstruct
    for name in (
        "Tensor",
        "Size",
        "device",
        "float16",
        "float32",
        "float64",
        "bfloat16",
        "int64",
        "int32",
        "uint8",
        "bool",
    ):
        allowed[("torch", name)] = getattr(torch, name)
    return {k: v for k, v in allowed.items() if v is not None}


# --------------------------------------------------------------------------- the unpickler


def _one_of(x: Any, options: tuple) -> bool:
    """``x`` is one of ``options`` (identity: ``in`` would call a hostile object's ``__eq__``)."""
    return any(x is o for o in options)


def _empty_state(state: Any) -> bool:
    """Tensor / hook state that carries nothing (``None``, ``{}``, ``({}, None)`` ...)."""
    if isinstance(state, tuple):
        return len(state) == 2 and all(_empty_state(s) for s in state)
    return state is None or (isinstance(state, dict) and not state)


def _int_seq(x: Any, what: str, max_len: int = 32) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list)) or len(x) > max_len or not all(is_int(v) and 0 <= v < 2**62 for v in x):
        raise CheckpointError(f"bad {what}: {brief(x)}")
    return tuple(int(v) for v in x)


class RestrictedUnpickler(BoundedUnpickler):
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
            raise UnsafePickleError(brief(module), brief(name), self._path) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("<persistent_id>", brief(pid), self._path)

    def _refuse(self, func: Any, use: str = "") -> UnsafePickleError:
        """Refuse a use of an allow-listed global (a call, NEWOBJ, BUILD) that snapshots never make."""
        name = self._names.get(id(func), f"<{type(func).__name__}>")
        module, _, attr = name.rpartition(".")
        detail = (
            f"StyleGAN2-ADA snapshots never use it this way ({use}); unpickling it could allocate "
            "unbounded memory or change objects it should not"
        )
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
            raise CheckpointError(f"{cls.__name__} built from {brief(args)}")
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
            raise self._refuse(copyreg._reconstructor, f"of {brief(cls)} on {brief(base)}")
        if state is not None and not isinstance(state, dict):
            raise CheckpointError(f"copyreg._reconstructor state is a {type(state).__name__}")
        return copyreg._reconstructor(cls, base, state)

    def _c_storage_bytes(self, data: Any) -> Any:
        if not isinstance(data, bytes):
            raise CheckpointError(f"embedded storage is a {type(data).__name__}, not bytes")
        source = f"{self._path or '<pickle>'} (an embedded tensor storage)"
        check_torch_stream(io.BytesIO(data), len(data), source, storage_only=True)
        try:
            storage = _load_storage_from_bytes(data)
        except Exception as e:
            raise file_error(source, f"torch could not read it: {reason(e)}") from e
        if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
            raise file_error(source, f"holds a {type(storage).__name__}, not a storage")
        return storage

    @staticmethod
    def _check_view(storage: Any, offset: Any, size: Any, stride: Any) -> tuple:
        if not isinstance(storage, torch.storage.TypedStorage):
            raise CheckpointError(f"tensor rebuilt from a {type(storage).__name__}, not a storage")
        size, stride = _int_seq(size, "tensor size"), _int_seq(stride, "tensor stride")
        if len(size) != len(stride) or not is_int(offset) or offset < 0:
            raise CheckpointError(f"bad tensor geometry: size {size}, stride {stride}, offset {brief(offset)}")
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

    def _c_rebuild_tensor_v2(
        self,
        storage: Any,
        offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any,
        backward_hooks: Any,
        metadata: Any = None,
    ) -> torch.Tensor:
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

    def _c_rebuild_parameter_with_state(
        self, data: Any, requires_grad: Any, backward_hooks: Any, state: Any
    ) -> torch.Tensor:
        if not _empty_state(state):
            raise self._refuse(torch._utils._rebuild_parameter_with_state, "with attribute state")
        return self._c_rebuild_parameter(data, requires_grad, backward_hooks)

    def _c_rebuild_from_type_v2(self, func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
        rebuilders = (torch._utils._rebuild_tensor, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter)
        if (
            not _one_of(func, rebuilders)
            or not _one_of(new_type, (torch.Tensor, torch.nn.Parameter))
            or type(args) is not tuple
        ):
            raise self._refuse(_rebuild_from_type_v2, f"with {brief(func)} -> {brief(new_type)}")
        if not _empty_state(state):
            raise self._refuse(_rebuild_from_type_v2, "with attribute state")
        ret = self._call(func, args)
        if type(ret) is not new_type:
            ret = ret.as_subclass(new_type)
        return ret

    def _c_size(self, seq: Any = ()) -> torch.Size:
        return torch.Size(_int_seq(seq, "torch.Size", max_len=64))

    def _c_device(self, *args: Any) -> torch.device:
        if not 1 <= len(args) <= 2 or not all((isinstance(a, str) and len(a) <= 32) or is_int(a) for a in args):
            raise CheckpointError(f"bad torch.device arguments {brief(args)}")
        return torch.device(*args)

    def _c_np_dtype(self, spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
        if not isinstance(spec, str) or len(spec) > 16 or not copy:
            raise self._refuse(np.dtype, f"of {brief(spec)}")
        dt = np.dtype(spec, bool(align), True)
        if dt.hasobject or dt.fields is not None or dt.itemsize > 64:
            raise self._refuse(np.dtype, f"of {brief(spec)}")
        return dt

    def _c_np_reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        shape = _int_seq(shape, "array shape")
        if subtype is not np.ndarray or math.prod(shape) != 0 or not isinstance(dtype, (bytes, str)) or len(dtype) > 8:
            raise self._refuse(_np_reconstruct, f"of {brief(subtype)} {shape}")
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
            raise self._refuse(np.ndarray, f"of dtype {brief(dtype)}")
        if not isinstance(data, (bytes, bytearray)) or len(data) != math.prod(shape) * dtype.itemsize:
            raise CheckpointError(f"numpy array {shape} of {dtype}: data of the wrong type or size")
        arr.__setstate__(state)

    def _build_dtype(self, dt: np.dtype, state: Any) -> None:
        if (
            not isinstance(state, tuple)
            or len(state) not in (8, 9)
            or any(s is not None for s in state[2:5])
            or (len(state) == 9 and state[8] is not None)
        ):
            raise self._refuse(np.dtype, "with a structured or subarray state")
        dt.__setstate__(state)
        if dt.hasobject or dt.fields is not None or dt.itemsize > 64:
            raise self._refuse(np.dtype, f"{dt}")


# --------------------------------------------------------------------------- reading a file


def read_pickle(path: PathLike) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (raises :class:`UnsafePickleError` /
    :class:`CheckpointError`, never runs code); the result's structure is bounded."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, str(path), os.fstat(f.fileno()).st_size).load()
    except CheckpointError as e:
        named = with_path(e, path)
        if named is e:
            raise
        raise named from e
    except Exception as e:  # a malformed pickle raises many types
        raise file_error(path, f"not a readable snapshot pickle: {reason(e)}") from e
    check_structure(obj, str(path))
    return obj
