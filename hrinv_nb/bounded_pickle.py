"""Reading untrusted pickles with bounded work, and the inert values read in place of code.

:class:`BoundedUnpickler` is the pure-Python unpickler with an opcode loop of its own: it counts
opcodes, memo entries and open MARKs, tracks the nesting depth and the (shared-reference-expanded)
size of every container it builds, and leaves to a subclass what globals, calls, persistent ids and
BUILD mean. :class:`PickleScanner` is the subclass that resolves and calls nothing: it records the
globals a pickle names and its persistent ids, so a stream can be checked before a real loader sees it.

In place of code a reader builds inert values: :class:`PersistentStub` (one of NVIDIA's
``torch_utils.persistence`` objects: class name and state), a scanned global (its name only) and
an opaque placeholder. :func:`check_structure` walks whatever was read once, iteratively, bounding
depth, cycles and expanded size before anything recursive touches it. :func:`brief` and
:func:`reason` describe untrusted values and errors in messages without calling their ``repr``.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import re
import reprlib
import struct
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, HrinvError, UnsafePickleError
from .plain_data import to_plain

# Limits. NVIDIA's largest snapshots (1024², G + D + G_ema + augment pipe) stay far below each.
MAX_PICKLE_OPCODES = 20_000_000  # opcodes executed per pickle
MAX_PICKLE_MEMO = 2_000_000  # memo entries per pickle
MAX_DEPTH = 100  # nesting depth of containers (NVIDIA snapshots: about 40)
MAX_EXPANDED_NODES = 1_000_000  # objects reachable counting every shared reference again


# --------------------------------------------------------------------------- inert values


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
        return to_plain(kwargs)

    @property
    def init_args(self) -> tuple[Any, ...]:
        args = self.state.get("_init_args") or ()
        if not isinstance(args, (tuple, list)):
            raise CheckpointError(f"{self.class_name}: _init_args is a {type(args).__name__}, not a tuple")
        return tuple(args)

    def __repr__(self) -> str:
        return f"PersistentStub({self.class_name})"


# What the unpickler's size and depth limits count: the containers it builds.
_CONTAINERS = (dict, list, tuple, set, frozenset, PersistentStub, _Opaque)


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
        if (
            x is None
            or isinstance(x, (str, int, float, type, torch.dtype, torch.device, np.dtype, _Global, PersistentStub))
            or callable(x)
        ):
            return super().repr1(x, level)
        return f"<{type(x).__name__}>"


_REPR = _SafeRepr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 4, 4, 4
_REPR.maxset = _REPR.maxfrozenset = 4
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40


def brief(obj: Any) -> str:
    """A short repr of untrusted data (bounded work even for huge or shared structures)."""
    try:
        return _REPR.repr(obj)
    except Exception:  # a repr of hostile data may fail in any way
        return f"<{type(obj).__name__}>"


_TORCH_ADVICE = (
    "weights_only",
    "Weights only load failed",
    "still be loaded",
    "safe_globals",
    "allowlist",
    "documentation of torch.load",
    "file an issue",
    "trusted source",
    "Alternatively",
    "WeightsUnpickler error",
    "pytorch.org",
)


def reason(err: BaseException) -> str:
    """The reason in ``err``, short, without torch's advice to load unsafely (or to allow-list globals)."""
    if isinstance(err, KeyError):  # str(KeyError) is the repr of an (untrusted) key
        text = f"missing key {brief(err.args[0])}" if err.args else "missing key"
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


def file_error(source: Any, message: str) -> CheckpointError:
    """A :class:`CheckpointError` whose message is ``"<source>: <message>"``."""
    return CheckpointError(f"{source}: {message}")


def with_path(err: CheckpointError, path: Any) -> CheckpointError:
    """``err`` itself if it names ``path``, else a copy that does."""
    if str(path) in str(err):
        return err
    if isinstance(err, UnsafePickleError):
        new: CheckpointError = UnsafePickleError(err.module, err.name, str(path), err.detail)
    else:
        new = CheckpointError(f"{path}: {err}")
    return new


def is_int(x: Any) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


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


class BoundedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: every opcode passes through us
    """Unpickler with limits on opcodes, memo, nesting depth and expanded size; a policy decides the rest.

    Subclasses define the policy: :meth:`find_class`, :meth:`persistent_load`, :meth:`_call`
    (REDUCE, INST, OBJ), :meth:`_new` (NEWOBJ, NEWOBJ_EX), :meth:`_build` (BUILD) and
    :meth:`_container_ok` (which objects APPEND/SETITEM/ADDITEMS may modify). The opcode table
    ``dispatch`` is set just after the class (:func:`_dispatch_table`).
    """

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
        return file_error(self._path or "<pickle>", message)

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
        raise UnsafePickleError("<persistent_id>", brief(pid), self._path)

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

    def _add_to_top(self, kind: type, op: str, items: Any) -> None:
        """APPEND(S), SETITEM(S), ADDITEMS: add ``items`` (keys and values alternating for a dict) to
        the container on top of the stack."""
        if kind is dict and len(items) % 2:
            raise self._fail(f"{op} with an odd number of items")
        target = self._container(self.stack[-1], kind, op)
        if kind is dict:
            for i in range(0, len(items), 2):
                target[items[i]] = items[i + 1]
        elif kind is list:
            target.extend(items)
        else:
            target.update(items)
        self._note(target, items)

    def _op_append(self) -> None:
        self._add_to_top(list, "APPEND", (self.stack.pop(),))

    def _op_appends(self) -> None:
        self._add_to_top(list, "APPENDS", self.pop_mark())

    def _op_setitem(self) -> None:
        value = self.stack.pop()
        self._add_to_top(dict, "SETITEM", (self.stack.pop(), value))

    def _op_setitems(self) -> None:
        self._add_to_top(dict, "SETITEMS", self.pop_mark())

    def _op_additems(self) -> None:
        self._add_to_top(set, "ADDITEMS", self.pop_mark())

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

    def _op_bytearray8(self) -> None:
        """BYTEARRAY8, reading the bytes before building the array: pickle's own handler allocates the
        declared length first, so 15 bytes declaring 1 GiB would allocate (and zero) 1 GiB."""
        (size,) = struct.unpack("<Q", self.read(8))
        data = self.read(size)  # the bounded reader never returns more than the file holds
        if len(data) != size:
            raise self._fail(f"truncated pickle: BYTEARRAY8 declares {size} bytes, only {len(data)} follow")
        self.append(bytearray(data))

    def _op_binpersid(self) -> None:
        pid = self.stack.pop()
        obj = self.persistent_load(pid)
        self.append(obj)
        self._note(obj, (pid,))


# The opcodes BoundedUnpickler handles itself, each by its method ``_op_<name in lower case>``; INST
# and OBJ reach its ``_instantiate`` through the base class's handlers.
_OWN_OPCODES = (
    "TUPLE",
    "LIST",
    "DICT",
    "FROZENSET",
    "APPEND",
    "APPENDS",
    "SETITEM",
    "SETITEMS",
    "ADDITEMS",
    "REDUCE",
    "NEWOBJ",
    "NEWOBJ_EX",
    "BUILD",
    "BINPERSID",
    "BYTEARRAY8",
)


def _dispatch_table(cls: type[BoundedUnpickler]) -> dict[int, Any]:
    """``pickle``'s pure-Python handlers, with ``cls``'s own for :data:`_OWN_OPCODES` and TUPLE1-3."""
    table = dict(pickle._Unpickler.dispatch)
    for name in _OWN_OPCODES:
        table[getattr(pickle, name)[0]] = getattr(cls, f"_op_{name.lower()}")
    for n in (1, 2, 3):
        table[getattr(pickle, f"TUPLE{n}")[0]] = functools.partial(cls._op_tuple_n, n=n)
    return table


BoundedUnpickler.dispatch = _dispatch_table(BoundedUnpickler)


class PickleScanner(BoundedUnpickler):
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


# --------------------------------------------------------------------------- structure checks


def _children(obj: Any) -> Any:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return obj
    if isinstance(obj, PersistentStub):
        return (obj.state,)
    return None


def check_structure(root: Any, source: str, max_nodes: int = MAX_EXPANDED_NODES, max_depth: int = MAX_DEPTH) -> None:
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
            raise file_error(
                source,
                f"its contents expand to more than {max_nodes} objects "
                "(counting shared references; a 'billion laughs' structure)",
            )
        children = _children(obj)
        if children is None:
            continue
        if id(obj) in on_path:
            raise file_error(source, f"self-referential structure (a {type(obj).__name__} contains itself)")
        if depth >= max_depth:
            raise file_error(source, f"structure nested more than {max_depth} levels deep")
        on_path.add(id(obj))
        stack.append((obj, depth, True))
        stack.extend((c, depth + 1, False) for c in children)
