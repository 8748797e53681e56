"""Load and save StyleGAN2-ADA networks: NVIDIA ``.pkl`` (safely), the project's ``.safetensors``, ``.pt``.

``load_networks(path)`` never executes code from a file. The format is sniffed from the bytes:
NVIDIA's snapshot pickles are read by :func:`hrinv_nb.safe_pickle.read_pickle` (a restricted,
bounded unpickler: each network becomes an inert stub with its ``class_name``, ``state`` and
``_init_kwargs``), ``.pt`` files by :func:`hrinv_nb.torch_files.load_torch_file`
(``torch.load(weights_only=True)`` after checks of the stream).

The project's own format is a safetensors file with keys ``G.<state_dict name>`` and
``D.<state_dict name>`` and JSON constructor arguments in the metadata
(``generator_init_kwargs``, ``discriminator_init_kwargs``, ``num_ws``), the format of the parity
fixtures. ``save_networks`` writes it atomically.

Before a network is built from a file, its weights must be finite floating-point tensors, its
constructor arguments small JSON-like data, and the declared structure (number of mapping layers,
block resolutions, channels, dimensions) must match the file's tensors; while it is built, its
tensor allocations may not exceed a small multiple of the elements the file holds. So a small
hostile file costs little time or memory before it is refused.

Every refusal is a :class:`~hrinv_nb.errors.CheckpointError` (a
:class:`~hrinv_nb.errors.FileFormatError`) whose message names the file and the reason;
:class:`~hrinv_nb.errors.UnsafePickleError` is also a ``pickle.UnpicklingError``. A missing file is
a ``FileNotFoundError`` that says where to put it.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .bounded_pickle import PersistentStub, brief, file_error, is_int, reason, with_path
from .errors import CheckpointError, HrinvError
from .files import atomic_write
from .inr import StyleINRGenerator
from .networks import Discriminator, Generator
from .plain_data import to_plain
from .safe_pickle import read_pickle
from .torch_files import load_torch_file

PathLike = str | os.PathLike

GENERATOR_CLASSES: dict[str, type[torch.nn.Module]] = {"Generator": Generator, "StyleINRGenerator": StyleINRGenerator}
DISCRIMINATOR_CLASSES: dict[str, type[torch.nn.Module]] = {"Discriminator": Discriminator}

_WHERE_TO_PUT = (
    "Pass the path of a local file: NVIDIA's StyleGAN2-ADA snapshot (e.g. "
    "ffhq-res1024-mirror-stylegan2-noaug.pkl, placed for instance under data/pretrained/), "
    "a project .safetensors file (see data/README.md), or a .pt state dict. Nothing is downloaded."
)


# Limits on what a file may declare: generous bounds for a StyleGAN2-ADA network.
MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit
MAX_RESOLUTION = 2**14
MAX_DIM = 2**16  # z_dim, w_dim, c_dim, channels, features
MAX_LAYERS = 256  # mapping layers
MAX_KWARGS_NODES = 2_000

# Keys save_networks writes itself (and load_networks reports); ``meta`` may not override them.
RESERVED_META_KEYS = frozenset(
    {
        "generator_init_kwargs",
        "generator_class",
        "discriminator_init_kwargs",
        "discriminator_class",
        "num_ws",
        "format",
        "path",
        "extra_keys",
    }
)


@dataclass
class Networks:
    """The networks found in a checkpoint: ``G`` (always), ``D`` (``None`` when absent) and ``meta``."""

    G: Generator
    D: Discriminator | None
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- kwargs and state dicts


def _check_kwargs(kwargs: Any, source: str, what: str) -> dict[str, Any]:
    """Constructor arguments must be small JSON-like data: str keys, finite numbers, short lists."""
    if not isinstance(kwargs, dict):
        raise file_error(source, f"{what} are a {type(kwargs).__name__}, not a dict")
    budget = [MAX_KWARGS_NODES]

    def walk(x: Any, where: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0 or depth > 6:
            raise file_error(source, f"{what} are too large or too deeply nested")
        if x is None or isinstance(x, (bool, str)):
            if isinstance(x, str) and len(x) > 1000:
                raise file_error(source, f"{what}: {where} is a string of {len(x)} characters")
            return
        if isinstance(x, int):
            if abs(x) > 2**31:
                raise file_error(source, f"{what}: {where} = {brief(x)} is out of range")
            return
        if isinstance(x, float):
            if not math.isfinite(x):
                raise file_error(source, f"{what}: {where} = {x} is not finite")
            return
        if isinstance(x, (list, tuple)):
            if len(x) > 64:
                raise file_error(source, f"{what}: {where} is a list of {len(x)} items")
            for i, v in enumerate(x):
                walk(v, f"{where}[{i}]", depth + 1)
            return
        if isinstance(x, dict):
            for k, v in x.items():
                if not isinstance(k, str):
                    raise file_error(source, f"{what}: {where} has a non-string key {brief(k)}")
                walk(v, f"{where}.{k}" if where else k, depth + 1)
            return
        raise file_error(source, f"{what}: {where} is a {type(x).__name__}")

    walk(kwargs, "", 0)
    return kwargs


def _arg_int(
    kw: dict,
    key: str,
    source: str,
    what: str,
    default: Any = ...,
    lo: int = 0,
    hi: int = MAX_DIM,
    pow2: bool = False,
    optional: bool = False,
) -> int | None:
    if key not in kw:
        if default is ...:
            raise file_error(source, f"{what} lack {key!r}")
        return default
    value = kw[key]
    if value is None and optional:
        return None
    if not is_int(value) or not lo <= value <= hi or (pow2 and value & (value - 1)):
        shape = "a power of two " if pow2 else "an integer "
        raise file_error(source, f"{what}: {key} = {brief(value)} must be {shape}in [{lo}, {hi}]")
    return int(value)


def _arg_dict(kw: dict, key: str, source: str, what: str) -> dict:
    value = kw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise file_error(source, f"{what}: {key} is a {type(value).__name__}, not a dict")
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


def _channel_args(kw: dict, source: str, what: str) -> tuple[int, int]:
    """``(channel_base, channel_max)`` of a synthesis network or discriminator; ``num_fp16_res`` checked."""
    base = _arg_int(kw, "channel_base", source, what, default=32768, lo=1, hi=2**30)
    cmax = _arg_int(kw, "channel_max", source, what, default=512, lo=1)
    _arg_int(kw, "num_fp16_res", source, what, default=0, hi=64)
    return base, cmax


def _check_indices(
    sd: dict[str, torch.Tensor], pattern: str, declared: set[int], source: str, claim: str, held: str
) -> None:
    """The numbers ``pattern`` finds in ``sd``'s keys must be ``declared`` (``claim``: what declares them)."""
    have = _indices(sd, pattern)
    if have != declared:
        raise file_error(source, f"{claim}, but the file holds {held} {_fmt_set(have)}")


def _check_dim(sd: dict[str, torch.Tensor], key: str, dim: int, value: int, arg: str, source: str, what: str) -> None:
    """Dimension ``dim`` of ``sd[key]`` (when present) must be the declared ``value`` of ``arg``."""
    t = sd.get(key)
    s = tuple(t.shape) if t is not None else None
    if s is not None and (len(s) <= dim or s[dim] != value):
        raise file_error(source, f"{what} declare {arg} = {value}, but the file's {key} has shape {s}")


def _check_declared_sizes(kind: str, kwargs: dict, sd: dict[str, torch.Tensor], source: str) -> None:
    """Check the constructor's structural arguments against the file's tensors, before building anything."""
    what = f"{kind} arguments"
    res = _arg_int(kwargs, "img_resolution", source, what, lo=4, hi=MAX_RESOLUTION, pow2=True)
    c_dim = _arg_int(kwargs, "c_dim", source, what, default=0)
    img_channels = _arg_int(kwargs, "img_channels", source, what, lo=1)
    mapping = _arg_dict(kwargs, "mapping_kwargs", source, what)
    blocks = {2**i for i in range(2, int(res).bit_length())}
    if kind == "generator":
        z_dim = _arg_int(kwargs, "z_dim", source, what)
        if z_dim == 0 and c_dim == 0:
            raise file_error(source, f"{what}: z_dim = 0 and c_dim = 0 leave the mapping network without an input")
        w_dim = _arg_int(kwargs, "w_dim", source, what, lo=1)
        base, cmax = _channel_args(_arg_dict(kwargs, "synthesis_kwargs", source, what), source, what)
        layers = _arg_int(mapping, "num_layers", source, what, default=8, lo=1, hi=MAX_LAYERS)
        _check_indices(
            sd,
            r"synthesis\.b(\d+)\.",
            blocks,
            source,
            f"{what} declare img_resolution = {res} (synthesis blocks {_fmt_set(blocks)})",
            "synthesis blocks",
        )
        _check_indices(
            sd,
            r"mapping\.fc(\d+)\.",
            set(range(layers)),
            source,
            f"{what} declare {layers} mapping layers",
            "mapping.fc",
        )
        for r in sorted(blocks):
            _check_dim(sd, f"synthesis.b{r}.conv1.weight", 0, min(base // r, cmax), f"{r}x{r} channels", source, what)
            _check_dim(sd, f"synthesis.b{r}.conv1.affine.weight", 1, w_dim, "w_dim", source, what)
        _check_dim(sd, f"mapping.fc{layers - 1}.weight", 0, w_dim, "w_dim", source, what)
        _check_dim(sd, f"synthesis.b{res}.torgb.weight", 0, img_channels, "img_channels", source, what)
    else:
        base, cmax = _channel_args(kwargs, source, what)
        _arg_int(kwargs, "cmap_dim", source, what, default=None, optional=True)
        _check_indices(
            sd,
            r"b(\d+)\.",
            blocks,
            source,
            f"{what} declare img_resolution = {res} (blocks {_fmt_set(blocks)})",
            "blocks",
        )
        layers = _arg_int(mapping, "num_layers", source, what, default=8, lo=1, hi=MAX_LAYERS) if c_dim else 0
        _check_indices(
            sd,
            r"mapping\.fc(\d+)\.",
            set(range(layers)),
            source,
            f"{what} declare {layers} label-mapping layers",
            "mapping.fc",
        )
        for r in sorted(blocks - {4}):
            _check_dim(sd, f"b{r}.conv0.weight", 0, min(base // r, cmax), f"{r}x{r} channels", source, what)
        _check_dim(sd, f"b{res}.fromrgb.weight", 1, img_channels, "img_channels", source, what)


def _check_weights(sd: dict[str, Any], source: str) -> None:
    """Every entry must be a dense, finite, floating-point CPU tensor under a string key."""
    for key, t in sd.items():
        if not isinstance(key, str):
            raise file_error(source, f"non-string key {brief(key)}")
        if not isinstance(t, torch.Tensor):
            raise file_error(source, f"{key!r} is a {type(t).__name__}, not a tensor")
        if t.layout != torch.strided or t.device.type != "cpu" or t.is_quantized:
            raise file_error(source, f"tensor {key!r} is not a dense CPU tensor ({t.layout}, {t.device})")
        if not t.is_floating_point():
            raise file_error(source, f"tensor {key!r} has dtype {t.dtype}; network weights must be floating point")
        values = t if t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) else t.float()
        bad = int((~torch.isfinite(values)).sum())
        if bad:
            raise file_error(source, f"tensor {key!r} holds {bad} non-finite values (NaN or inf)")


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
            dims = [d for d in size if is_int(d)] if isinstance(size, (list, tuple)) else []
            self.used += math.prod(max(int(d), 0) for d in dims)
            if self.used > self.budget:
                raise file_error(
                    self.source,
                    f"the {self.kind} arguments describe a network of more than "
                    f"{self.budget} parameter and buffer elements, far more than the file holds",
                )
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
        raise file_error(source, f"bad {kind} arguments {shown}: {reason(e)}") from e


def build_network(
    kind: str, kwargs: dict[str, Any], sd: dict[str, torch.Tensor], source: str, class_name: str | None = None
) -> torch.nn.Module:
    """Construct a ``kind`` ('generator' or 'discriminator') network from ``kwargs`` and load ``sd`` strictly.

    Before anything is built, the weights are checked (finite floating point) and the declared
    structure (mapping layers, block resolutions, channels, dimensions) against the file; while the
    network is built, its tensor allocations may not exceed a small multiple of what the file holds.
    """
    registry = GENERATOR_CLASSES if kind == "generator" else DISCRIMINATOR_CLASSES
    class_name = class_name or ("Generator" if kind == "generator" else "Discriminator")
    if not isinstance(class_name, str) or class_name not in registry:
        raise file_error(source, f"unsupported {kind} class {brief(class_name)}; known: {sorted(registry)}")
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
            raise file_error(path, "is empty")
        if _looks_like_safetensors(f, size):
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if _looks_like_pickle(head):
        return "torch" if path.suffix in (".pt", ".pth") else "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > size - 8:
        declared = struct.unpack("<Q", head[:8])[0]
        raise file_error(
            path, f"a safetensors file cut short? Its header declares {declared} bytes; the file has {size - 8}"
        )
    raise file_error(path, "unknown network file format (not a pickle, a torch .pt/.pth zip or a safetensors file)")


def _kwargs_from_stub(stub: PersistentStub, cls: type[torch.nn.Module]) -> dict[str, Any]:
    kwargs = dict(stub.init_kwargs)
    if stub.init_args:  # map positional constructor arguments to their names
        names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        kwargs.update(dict(zip(names, to_plain(list(stub.init_args)))))
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
                raise CheckpointError(f"{prefix or 'network'}: non-string {kind} name {brief(name)}")
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


def _build_from_stub(kind: str, stub: PersistentStub, source: str) -> Any:
    """Build ``kind`` (``"generator"``/``"discriminator"``) from a pickled network: its constructor arguments
    (positional ones named by the class's signature) and its flattened state."""
    registry, default = (
        (GENERATOR_CLASSES, Generator) if kind == "generator" else (DISCRIMINATOR_CLASSES, Discriminator)
    )
    kwargs = _kwargs_from_stub(stub, registry.get(stub.class_name, default))
    return build_network(kind, kwargs, _flatten_stub(stub), source, stub.class_name)


def _read_pickle_networks(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    data = read_pickle(path)
    if isinstance(data, PersistentStub):
        data = {"G_ema": data} if data.class_name in GENERATOR_CLASSES else {"D": data}
    if not isinstance(data, dict):
        raise file_error(path, f"expected a snapshot dict with 'G_ema', got {type(data).__name__}")
    snapshot_keys = sorted(brief(k) if not isinstance(k, str) else k for k in data)
    g_stub = data.get("G_ema", data.get("G"))
    if not isinstance(g_stub, PersistentStub):
        raise file_error(path, f"snapshot has no 'G_ema' or 'G' network (keys: {_short_list(snapshot_keys)})")
    d_stub = data.get("D") if isinstance(data.get("D"), PersistentStub) else None
    G = _build_from_stub("generator", g_stub, f"{path} [G_ema]")
    D = _build_from_stub("discriminator", d_stub, f"{path} [D]") if d_stub is not None else None
    meta = {"snapshot_keys": snapshot_keys, "training_set_kwargs": to_plain(data.get("training_set_kwargs"))}
    return G, D, meta


def _parse_json(text: str, path: Path | None, what: str) -> Any:
    """``json.loads(text)``; invalid JSON is a :class:`CheckpointError` naming ``path`` and ``what``."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise file_error(path, f"{what} is not valid JSON: {reason(e)}") from e


def _json_meta(meta: dict[str, str], key: str, path: Path) -> dict[str, Any]:
    """The JSON object stored under ``key`` in safetensors metadata, checked as constructor arguments."""
    value = _parse_json(meta[key], path, f"metadata {key!r}")
    if not isinstance(value, dict):
        raise file_error(path, f"metadata {key!r} is a JSON {type(value).__name__}, not an object")
    _check_kwargs(value, f"{path}", f"metadata {key!r}")
    return value


def _build_from_metadata(kind: str, sd: dict[str, torch.Tensor], meta: dict[str, str], path: Path, missing: str) -> Any:
    """Build ``kind`` (``"generator"``/``"discriminator"``) from its tensors and the ``<kind>_init_kwargs`` and
    ``<kind>_class`` metadata of a safetensors file; ``missing`` is the refusal when the arguments are absent."""
    key = f"{kind}_init_kwargs"
    if key not in meta:
        raise file_error(path, missing)
    return build_network(
        kind, _json_meta(meta, key, path), sd, f"{path} [{kind[0].upper()}]", meta.get(f"{kind}_class")
    )


def _read_safetensors_networks(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            keys = list(f.keys())
            g_sd = {k[2:]: f.get_tensor(k) for k in keys if k.startswith("G.")}
            d_sd = {k[2:]: f.get_tensor(k) for k in keys if k.startswith("D.")}
    except Exception as e:  # safetensors raises its own error types on bad bytes
        raise file_error(path, f"not a readable safetensors file: {reason(e)}") from e
    if not g_sd:
        raise file_error(path, "no generator tensors (keys starting with 'G.')")
    G = _build_from_metadata(
        "generator", g_sd, meta, path, "metadata lacks 'generator_init_kwargs' (JSON constructor arguments)"
    )
    D = None
    if d_sd:
        D = _build_from_metadata(
            "discriminator", d_sd, meta, path, "D.* tensors present but metadata lacks 'discriminator_init_kwargs'"
        )
    meta["extra_keys"] = sorted(k for k in keys if not k.startswith(("G.", "D.")))
    return G, D, meta


def _state_dict_of(value: Any, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(value, dict):
        raise file_error(path, f"{what} is a {type(value).__name__}, not a state dict")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise file_error(path, f"{what}: entry {brief(k)} is a {type(v).__name__}, not a tensor")
    return value


def _json_or_dict(value: Any, path: Path | None = None, key: str = "") -> dict[str, Any] | None:
    """Constructor arguments stored in a ``.pt`` file as a dict or a JSON string; ``None`` when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        value = _parse_json(value, path, f"{key!r}")
    if not isinstance(value, dict):
        raise file_error(path, f"{key!r} is a {type(value).__name__}, not a dict of constructor arguments")
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
        raise CheckpointError(f"cannot infer channel_base from channels {brief(channels)}")
    w_dim = sd[f"mapping.fc{fcs[-1]}.weight"].shape[0]
    embed_w = sd.get("mapping.embed.weight")
    c_dim = embed_w.shape[1] if embed_w is not None and embed_w.ndim == 2 else 0
    embed = embed_w.shape[0] if c_dim else 0
    return dict(
        z_dim=sd["mapping.fc0.weight"].shape[1] - embed,
        c_dim=c_dim,
        w_dim=w_dim,
        img_resolution=resolutions[-1],
        img_channels=sd[f"synthesis.b{resolutions[-1]}.torgb.weight"].shape[0],
        mapping_kwargs={"num_layers": len(fcs)},
        synthesis_kwargs={
            "channel_base": channel_base,
            "channel_max": channel_max,
            "num_fp16_res": 0,
            "conv_clamp": conv_clamp,
        },
    )


def _read_torch_networks(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    obj = load_torch_file(path, map_location="cpu")
    if not isinstance(obj, dict):
        raise file_error(path, f"expected a state dict, got {type(obj).__name__}")
    if not all(isinstance(k, str) for k in obj):
        raise file_error(path, "state dict with non-string keys")
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
            raise file_error(path, "D tensors present but no 'discriminator_init_kwargs'")
        D = build_network("discriminator", d_kwargs, d_sd, f"{path} [D]")
    return G, D, meta


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
        reader = {
            "pickle": _read_pickle_networks,
            "safetensors": _read_safetensors_networks,
            "torch": _read_torch_networks,
        }
        G, D, meta = reader[fmt](path)
    except CheckpointError as e:
        named = with_path(e, path)
        if named is e:
            raise
        raise named from e
    except Exception as e:  # whatever a hostile file provokes, the caller gets a CheckpointError
        raise file_error(path, f"cannot be loaded as networks: {reason(e)}") from e
    meta.update(
        format=fmt,
        path=str(path),
        num_ws=G.num_ws,
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
