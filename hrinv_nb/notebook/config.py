"""Notebook parameters: validate the ``parameters`` cell and build a typed, read-only config.

Every notebook starts with a cell tagged ``parameters`` that holds plain values only (papermill
injects overrides right after it). The next cell turns them into a :class:`NotebookConfig`::

    from hrinv_nb.notebook.config import build_config
    cfg = build_config("01_downsampling_artifacts", globals(),
                       num_steps=int, losses=list, vgg_weights=str)

The common parameters ``preset``, ``device``, ``seed``, ``threads`` and ``figures_dir`` are always
declared. An undeclared public name in the namespace (an unknown ``-p`` override, say) or a value of
the wrong type raises :class:`ParameterError` naming it and listing what the notebook takes.
"""

from __future__ import annotations

import inspect
import os
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
FIGURES = REPO / "figures"

PRESETS = ("toy", "paper")
COMMON: dict[str, Any] = {"preset": str, "device": str, "seed": int, "threads": int, "figures_dir": str}
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open", "display"}

TypeSpec = Union[type, tuple]


class ParameterError(ValueError):
    """A notebook parameter is unknown or has a bad value."""


def resolve_device(device: str) -> torch.device:
    """``'auto'`` picks CUDA when available, then MPS, else the CPU; other strings must name a usable device."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ParameterError(f"device={device!r} is not a device name (use 'auto', 'cpu', 'cuda', 'cuda:1', ...)") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device={device!r} asked for CUDA, but torch sees no GPU here; use device='auto' or 'cpu'")
    return dev


def _type_name(spec: TypeSpec) -> str:
    if isinstance(spec, tuple):
        return " or ".join(_type_name(s) for s in spec)
    return "None" if spec is type(None) else spec.__name__


def _check_type(name: str, value: Any, spec: TypeSpec) -> Any:
    allowed = spec if isinstance(spec, tuple) else (spec,)
    for t in allowed:
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t is int and isinstance(value, bool):
            continue
        if t is type(None) and value is None:
            return None
        if t is not type(None) and isinstance(value, t):
            return value
    raise ParameterError(f"parameter {name}={value!r} must be {_type_name(spec)}, not {type(value).__name__}")


def _is_parameter_like(name: str, value: Any) -> bool:
    if name.startswith("_") or name in _IPYTHON_NAMES:
        return False
    if isinstance(value, types.ModuleType) or inspect.isclass(value) or callable(value):
        return False
    return True


@dataclass(frozen=True)
class NotebookConfig:
    """A notebook's validated parameters: attribute access, plus the resolved device and output folder."""

    notebook: str
    values: Mapping[str, Any]
    device: torch.device
    figures_dir: Path
    started: float = field(default_factory=time.perf_counter)

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "values")
        if name in values:
            return values[name]
        raise AttributeError(f"{self.notebook} has no parameter {name!r}; it takes {sorted(values)}")

    def as_dict(self) -> dict[str, Any]:
        """The parameters as plain JSON-able values (the device as requested, e.g. 'auto')."""
        return dict(self.values)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded with ``seed + offset`` (explicit seeds everywhere)."""
        return torch.Generator().manual_seed(int(self.values["seed"]) + offset)


def build_config(notebook: str, namespace: Mapping[str, Any], **declared: TypeSpec) -> NotebookConfig:
    """Validate the ``parameters`` cell's names in ``namespace`` against ``declared`` types.

    ``declared`` maps each notebook-specific parameter to a type (or a tuple of types; ``float``
    accepts ints). The common parameters are added automatically. Sets the torch thread count when
    ``threads > 0`` and returns the config; raises :class:`ParameterError` on anything unknown or wrong.
    """
    spec: dict[str, TypeSpec] = {**COMMON, **declared}
    present = {k: v for k, v in namespace.items() if _is_parameter_like(k, v)}
    unknown = sorted(set(present) - set(spec))
    if unknown:
        raise ParameterError(
            f"{notebook}: unknown parameter(s) {unknown}; this notebook takes {sorted(spec)}"
        )
    missing = sorted(set(spec) - set(present))
    if missing:
        raise ParameterError(f"{notebook}: the parameters cell does not define {missing}")
    values = {name: _check_type(name, present[name], spec[name]) for name in spec}
    if values["preset"] not in PRESETS:
        raise ParameterError(f"preset={values['preset']!r} must be one of {PRESETS}")
    if values["seed"] < 0:
        raise ParameterError(f"seed={values['seed']} must be >= 0")
    if values["threads"] < 0:
        raise ParameterError(f"threads={values['threads']} must be >= 0 (0 keeps torch's default)")
    for name, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name.startswith(("num_", "n_")) and value < 0:
            raise ParameterError(f"{name}={value} must be >= 0")
    device = resolve_device(values["device"])
    if values["threads"] > 0:
        torch.set_num_threads(values["threads"])
    figures_dir = Path(values["figures_dir"]).expanduser() if values["figures_dir"] else FIGURES
    figures_dir.mkdir(parents=True, exist_ok=True)
    return NotebookConfig(notebook=notebook, values=values, device=device, figures_dir=figures_dir)


def asset_path(value: str, toy_name: str | None = None, *, what: str = "asset") -> Path:
    """Resolve an asset parameter: ``''`` → ``data/<toy_name>``; ``'$VAR'`` → that environment variable; else a path.

    Raises ``FileNotFoundError`` naming the file, the variable and where to put it; nothing is downloaded.
    """
    if value == "":
        if toy_name is None:
            raise ParameterError(f"{what}: no path given and there is no embedded toy default; pass a local file")
        path = DATA / toy_name
        if not path.is_file():
            raise FileNotFoundError(
                f"embedded toy asset {path} is missing; regenerate it with the command in data/README.md"
            )
        return path
    if value.startswith("$"):
        var = value[1:].strip("{}")
        if not os.environ.get(var):
            raise FileNotFoundError(
                f"{what}: the environment variable {var} is not set; download the file yourself (nothing is "
                f"downloaded here), put it anywhere (e.g. {DATA / 'pretrained'}), and set {var}=/path/to/file, "
                f"or pass the path as a parameter"
            )
        value = os.environ[var]
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.exists():
        path = REPO / path
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file not found: {path} (put it there, or pass another path; nothing is downloaded)")
    return path
