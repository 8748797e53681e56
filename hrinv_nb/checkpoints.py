"""Load and save StyleGAN2-ADA networks: NVIDIA ``.pkl`` (safely), the project's ``.safetensors``, ``.pt``.

``load_networks(path)`` never executes code from a file. NVIDIA's snapshot pickles embed the
source of their modules (``torch_utils.persistence``); here a restricted unpickler maps the
persistence hook to an inert stub that records ``class_name``, ``state`` and ``_init_kwargs``, and
rejects every global outside a short allow-list with :class:`UnsafePickleError`.

The project's own format is a safetensors file with keys ``G.<state_dict name>`` and
``D.<state_dict name>`` and JSON constructor arguments in the metadata
(``generator_init_kwargs``, ``discriminator_init_kwargs``, ``num_ws``), the format of the parity
fixtures. ``save_networks`` writes it atomically.
"""

from __future__ import annotations

import collections
import copyreg
import io
import json
import os
import pickle
import warnings
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


class CheckpointError(ValueError):
    """A network file that cannot be turned into networks: bad format, keys or shapes."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle refers to a global outside the allow-list; it was not executed."""

    def __init__(self, module: str, name: str, path: str | None = None) -> None:
        where = f" in {path}" if path else ""
        super().__init__(
            f"refusing to load global '{module}.{name}'{where}: it is not on the allow-list of "
            f"StyleGAN2-ADA snapshot contents, and unpickling it could execute arbitrary code"
        )
        self.global_name = f"{module}.{name}"


@dataclass
class Networks:
    """The networks found in a checkpoint: ``G`` (always), ``D`` (``None`` when absent) and ``meta``."""

    G: Generator
    D: Discriminator | None
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- safe unpickling


class PersistentStub:
    """Inert stand-in for one of NVIDIA's persistent-class objects (its source is never run)."""

    def __init__(self, meta: dict[str, Any]) -> None:
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise CheckpointError(f"unsupported persistent object record: {type(meta).__name__}")
        self.class_name: str = str(meta.get("class_name"))
        self.version = meta.get("version")
        self.state: dict[str, Any] = meta.get("state") or {}

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return _plain(self.state.get("_init_kwargs") or {})

    @property
    def init_args(self) -> tuple[Any, ...]:
        return tuple(self.state.get("_init_args") or ())

    def __repr__(self) -> str:
        return f"PersistentStub({self.class_name})"


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __setstate__(self, state: Any) -> None:  # dict subclasses may carry an (empty) __dict__
        if isinstance(state, dict):
            self.__dict__.update(state)


def _load_storage_from_bytes(data: bytes) -> Any:
    """Safe replacement for ``torch.storage._load_from_bytes``: ``torch.load`` with weights_only."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        raise UnsafePickleError("torch._tensor", f"_rebuild_from_type_v2({new_type!r})")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


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
    if dtype.hasobject:
        raise UnsafePickleError("numpy", f"scalar(object dtype {dtype})")
    return np.frombuffer(data or b"", dtype=dtype, count=1)[0]


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and never runs embedded module source."""

    def __init__(self, file: Any, path: str | None = None) -> None:
        super().__init__(file)
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(module, name, self._path) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("<persistent_id>", repr(pid)[:80], self._path)


def _plain(obj: Any) -> Any:
    """Convert EasyDicts, OrderedDicts and numpy scalars inside kwargs to plain JSON-able values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _flatten_stub(stub: PersistentStub, prefix: str = "") -> dict[str, torch.Tensor]:
    """Walk ``state['_modules']`` recursively into a flat state dict (NVIDIA's names)."""
    out: dict[str, torch.Tensor] = {}
    state = stub.state
    non_persistent = set(state.get("_non_persistent_buffers_set") or ())
    for name, tensor in (state.get("_parameters") or {}).items():
        if tensor is not None:
            out[prefix + name] = tensor.detach()
    for name, tensor in (state.get("_buffers") or {}).items():
        if tensor is not None and name not in non_persistent:
            out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentStub):
            raise CheckpointError(f"submodule {prefix + name!r} is a {type(child).__name__}, not a network record")
        out.update(_flatten_stub(child, prefix + name + "."))
    return out


def read_pickle(path: PathLike) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (raises :class:`UnsafePickleError`)."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, str(path)).load()


# --------------------------------------------------------------------------- building networks


def _kwargs_from_stub(stub: PersistentStub, cls: type[torch.nn.Module]) -> dict[str, Any]:
    kwargs = dict(stub.init_kwargs)
    if stub.init_args:  # map positional constructor arguments to their names
        import inspect

        names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        kwargs.update(dict(zip(names, _plain(list(stub.init_args)))))
    return kwargs


def _short_list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _load_into(net: torch.nn.Module, sd: dict[str, torch.Tensor], what: str, source: str) -> None:
    """Load ``sd`` strictly, raising :class:`CheckpointError` that lists bad keys and shapes."""
    own = net.state_dict()
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
    if problems:
        raise CheckpointError(f"{what} in {source} does not match its constructor arguments: " + "; ".join(problems))
    sd = {k: (v.to(own[k].dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    net.load_state_dict(sd, strict=True)


def build_network(kind: str, kwargs: dict[str, Any], sd: dict[str, torch.Tensor], source: str,
                  class_name: str | None = None) -> torch.nn.Module:
    """Construct a ``kind`` ('generator' or 'discriminator') network from ``kwargs`` and load ``sd`` strictly."""
    registry = GENERATOR_CLASSES if kind == "generator" else DISCRIMINATOR_CLASSES
    class_name = class_name or ("Generator" if kind == "generator" else "Discriminator")
    if class_name not in registry:
        raise CheckpointError(f"{source}: unsupported {kind} class {class_name!r}; known: {sorted(registry)}")
    try:
        net = registry[class_name](**kwargs)
    except TypeError as e:
        raise CheckpointError(f"{source}: bad {kind} arguments {kwargs}: {e}") from e
    _load_into(net, sd, kind, source)
    return net


# --------------------------------------------------------------------------- per-format readers


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path} is empty")
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if head[:1] == b"\x80":
        return "torch" if path.suffix in (".pt", ".pth") else "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise CheckpointError(
        f"{path}: unknown network file format (not a pickle, a torch .pt/.pth zip or a safetensors file)"
    )


def _read_pickle_networks(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    data = read_pickle(path)
    if isinstance(data, PersistentStub):
        data = {"G_ema": data} if data.class_name in GENERATOR_CLASSES else {"D": data}
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a snapshot dict with 'G_ema', got {type(data).__name__}")
    g_stub = data.get("G_ema", data.get("G"))
    if not isinstance(g_stub, PersistentStub):
        raise CheckpointError(f"{path}: snapshot has no 'G_ema' or 'G' network (keys: {sorted(map(str, data))})")
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
    meta = {"snapshot_keys": sorted(map(str, data)), "training_set_kwargs": _plain(data.get("training_set_kwargs"))}
    return G, D, meta


def _read_safetensors_networks(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        keys = list(f.keys())
        g_sd = {k[2:]: f.get_tensor(k) for k in keys if k.startswith("G.")}
        d_sd = {k[2:]: f.get_tensor(k) for k in keys if k.startswith("D.")}
    if not g_sd:
        raise CheckpointError(f"{path}: no generator tensors (keys starting with 'G.')")
    if "generator_init_kwargs" not in meta:
        raise CheckpointError(f"{path}: metadata lacks 'generator_init_kwargs' (JSON constructor arguments)")
    G = build_network(
        "generator", json.loads(meta["generator_init_kwargs"]), g_sd, f"{path} [G]", meta.get("generator_class"),
    )
    D = None
    if d_sd:
        if "discriminator_init_kwargs" not in meta:
            raise CheckpointError(f"{path}: D.* tensors present but metadata lacks 'discriminator_init_kwargs'")
        D = build_network(
            "discriminator", json.loads(meta["discriminator_init_kwargs"]), d_sd, f"{path} [D]",
            meta.get("discriminator_class"),
        )
    meta["extra_keys"] = sorted(k for k in keys if not k.startswith(("G.", "D.")))
    return G, D, meta


def _read_torch_networks(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: not loadable with torch.load(weights_only=True): {e}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(obj).__name__}")
    meta = {k: v for k, v in obj.items() if isinstance(v, (str, int, float))}
    if isinstance(obj.get("G"), dict):
        g_sd, d_sd = obj["G"], obj.get("D") if isinstance(obj.get("D"), dict) else {}
    elif any(k.startswith("G.") for k in obj):
        g_sd = {k[2:]: v for k, v in obj.items() if k.startswith("G.") and torch.is_tensor(v)}
        d_sd = {k[2:]: v for k, v in obj.items() if k.startswith("D.") and torch.is_tensor(v)}
    else:
        g_sd, d_sd = {k: v for k, v in obj.items() if torch.is_tensor(v)}, {}
    g_kwargs = _json_or_dict(obj.get("generator_init_kwargs"))
    if g_kwargs is None:
        g_kwargs = infer_generator_kwargs(g_sd)
        meta["inferred_generator_kwargs"] = True
        warnings.warn(f"{path}: no generator_init_kwargs stored; inferred {g_kwargs} from tensor shapes", stacklevel=3)
    G = build_network("generator", g_kwargs, g_sd, f"{path} [G]")
    D = None
    if d_sd:
        d_kwargs = _json_or_dict(obj.get("discriminator_init_kwargs"))
        if d_kwargs is None:
            raise CheckpointError(f"{path}: D tensors present but no 'discriminator_init_kwargs'")
        D = build_network("discriminator", d_kwargs, d_sd, f"{path} [D]")
    return G, D, meta


def _json_or_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else dict(value)


def infer_generator_kwargs(sd: dict[str, torch.Tensor], conv_clamp: float | None = 256) -> dict[str, Any]:
    """Infer NVIDIA ``Generator`` arguments from a state dict's shapes (``conv_clamp`` is assumed)."""
    fcs = sorted(int(k.split(".")[1][2:]) for k in sd if k.startswith("mapping.fc") and k.endswith(".weight"))
    if not fcs or "synthesis.b4.const" not in sd:
        raise CheckpointError("state dict is not a StyleGAN2-ADA generator (no mapping.fc* or synthesis.b4.const)")
    resolutions = sorted({int(k.split(".")[1][1:]) for k in sd if k.startswith("synthesis.b")})
    channels = {r: sd[f"synthesis.b{r}.conv1.weight"].shape[0] for r in resolutions}
    channel_max = max(channels.values())
    channel_base = next(
        (b for b in (2**i for i in range(6, 20)) if all(min(b // r, channel_max) == c for r, c in channels.items())),
        None,
    )
    if channel_base is None:
        raise CheckpointError(f"cannot infer channel_base from channels {channels}")
    w_dim = sd[f"mapping.fc{fcs[-1]}.weight"].shape[0]
    c_dim = sd["mapping.embed.weight"].shape[1] if "mapping.embed.weight" in sd else 0
    embed = sd["mapping.embed.weight"].shape[0] if c_dim else 0
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
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"network file not found: {path}. {_WHERE_TO_PUT}")
    fmt = _sniff(path)
    reader = {"pickle": _read_pickle_networks, "safetensors": _read_safetensors_networks, "torch": _read_torch_networks}
    G, D, meta = reader[fmt](path)
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
    """Write G and/or D to the project's safetensors format, atomically; return the path.

    ``half=True`` stores float tensors as float16 (they are cast back to float32 on load).
    ``meta`` values are stored as strings (non-strings as JSON).
    """
    if G is None and D is None:
        raise ValueError("save_networks needs at least one of G or D")
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
    if G is not None:
        metadata["num_ws"] = str(G.num_ws)
    for k, v in (meta or {}).items():
        metadata[str(k)] = v if isinstance(v, str) else json.dumps(v)
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
