"""Notebook parameters: validate the ``parameters`` cell and build a typed, read-only config.

Every notebook starts with a cell tagged ``parameters`` that holds plain ``name = literal`` lines only
(papermill injects overrides right after it). The next cell turns them into a :class:`NotebookConfig`::

    from hrinv_nb.notebook.config import build_config
    cfg = build_config("01_downsampling_artifacts", globals())

The parameters and their types come from the notebook's own ``parameters`` cell, read from
``notebooks/<notebook>.ipynb`` in the repository (the running copy may live anywhere). Each value
must have the type of its default: an ``int`` default takes ints only (not bools), a ``float``
default takes ints or floats, a ``str``/``bool``/``list``/``dict`` default the same type (list items
like the default's items when those share one type). A default of ``None``, or a parameter that
takes several types, is declared explicitly: ``build_config(name, globals(), weights=(str, type(None)))``.

Values must be plain JSON-like literals (str, int, float, bool, None, lists and str-keyed dicts of
those); floats, also inside lists, must be finite. Counts: every ``int`` parameter must be >= 1,
except ``threads`` (0 keeps torch's default), seeds (``seed``, ``*_seed``) and the names given in
``allow_zero`` (each notebook documents what 0 means there), which must be >= 0. Negative ints are
never accepted (a sentinel is a float, e.g. ``reg_weight = -1.0``).

Unknown names are refused: any name in the namespace that is neither a declared parameter, nor one
of IPython's own globals (``In``, ``_i3``, ...), nor a module, class or function imported by the
validation cell -- underscore names included. Under papermill, the injected-parameters cell is also
read back from IPython's input history (``In``): every line must assign a literal to a declared
parameter, so an injected statement that binds no name (``-p "__import__('os')...#" 1``) is caught.
The notebook fails on the first such problem with a :class:`ParameterError` naming it.
"""

from __future__ import annotations

import ast
import inspect
import json
import keyword
import math
import os
import re
import time
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import HrinvError

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
FIGURES = REPO / "figures"
NOTEBOOKS = REPO / "notebooks"

PRESETS = ("toy", "paper")
COMMON: dict[str, Any] = {"preset": str, "device": str, "seed": int, "threads": int, "figures_dir": str}
NOTEBOOK_NAME = re.compile(r"\d\d_[a-z0-9_]+")
INJECTED_HEADER = "# Parameters"  # first line of the cell papermill injects

# IPython's own globals in a kernel's namespace (seen with IPython 8-9 / ipykernel 6-7).
IPYTHON_GLOBALS = frozenset(
    {
        "In",
        "Out",
        "get_ipython",
        "exit",
        "quit",
        "open",
        "display",
        "_",
        "__",
        "___",
        "_i",
        "_ii",
        "_iii",
        "_ih",
        "_oh",
        "_dh",
        "_exit_code",
        "__name__",
        "__doc__",
        "__package__",
        "__loader__",
        "__spec__",
        "__builtin__",
        "__builtins__",
        "__session__",
    }
)
_IPYTHON_NUMBERED = re.compile(r"_i?\d+")  # _i3 (input 3), _5 (output 5)

TypeSpec = type | tuple


class ParameterError(HrinvError):
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
        raise ParameterError(
            f"device={device!r} is not a device name (use 'auto', 'cpu', 'cuda', 'cuda:1', ...)"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(
            f"device={device!r} asked for CUDA, but torch sees no GPU here; use device='auto' or 'cpu'"
        )
    return dev


def _type_name(spec: TypeSpec) -> str:
    if isinstance(spec, tuple):
        return " or ".join(_type_name(s) for s in spec)
    return "None" if spec is type(None) else spec.__name__


def check_plain(name: str, value: Any) -> Any:
    """``value`` if it is a plain JSON-like literal (finite floats, str dict keys), else :class:`ParameterError`."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError(f"parameter {name}={value!r} must be a finite number")
        return value
    if isinstance(value, list):
        return [check_plain(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ParameterError(f"parameter {name} has the key {key!r}; dict keys must be strings")
        return {k: check_plain(f"{name}[{k!r}]", v) for k, v in value.items()}
    raise ParameterError(
        f"parameter {name}={value!r} is a {type(value).__name__}; values must be plain literals "
        f"(str, int, float, bool, None, or lists / dicts of those)"
    )


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


def _like_default(name: str, value: Any, default: Any) -> Any:
    """``value`` checked against (and ints coerced to) the type of ``default``, recursively for lists."""
    if default is None:
        raise ParameterError(f"parameter {name} defaults to None: declare its type(s) in build_config({name}=...)")
    if isinstance(default, list):
        value = _check_type(name, value, list)
        kinds = {type(d) for d in default}
        if len(kinds) == 1 and default[0] is not None:
            return [_like_default(f"{name}[{i}]", v, default[0]) for i, v in enumerate(value)]
        return value
    return _check_type(name, value, type(default))


def _minimum(name: str, allow_zero: Iterable[str]) -> int:
    """The smallest value an int parameter takes: 0 for threads, seeds and ``allow_zero``, else 1."""
    return 0 if name == "threads" or name == "seed" or name.endswith("_seed") or name in allow_zero else 1


def read_parameters_cell(path: str | os.PathLike) -> dict[str, Any]:
    """Names and default values of the ``parameters``-tagged cell of the notebook file ``path``.

    Raises :class:`ParameterError` if there is no such cell or it holds anything but ``name = literal``.
    """
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            return _plain_assignments(source, f"{path.name}: the parameters cell")
    raise ParameterError(f"{path}: no code cell tagged 'parameters'")


def _plain_assignments(source: str, where: str) -> dict[str, Any]:
    """``{name: value}`` of a cell that may hold only ``name = literal`` statements."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ParameterError(f"{where} is not valid Python: {err}") from err
    values: dict[str, Any] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ParameterError(f"{where} may hold only `name = literal` lines, not: {ast.unparse(node)[:200]}")
        name = node.targets[0].id
        try:
            value = ast.literal_eval(node.value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
            raise ParameterError(f"{where}: {name} = {ast.unparse(node.value)[:200]} is not a literal") from err
        values[name] = check_plain(name, value)
    return values


def build_config_options(path: str | os.PathLike) -> tuple[set[str], set[str]]:
    """``(allow_zero, declared)`` of the ``build_config(...)`` call in the notebook file ``path``.

    Lets the main job apply the notebook's own count rule and leave explicitly typed parameters to it.
    """
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if "build_config(" not in source:
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "build_config":
                allow_zero: set[str] = set()
                declared: set[str] = set()
                for kw in node.keywords:
                    if kw.arg == "allow_zero":
                        allow_zero = set(ast.literal_eval(kw.value))
                    elif kw.arg is not None:
                        declared.add(kw.arg)
                return allow_zero, declared
    return set(), set()


def notebook_file(notebook: str) -> Path:
    """``notebooks/<notebook>.ipynb`` of the repository, for a name ``NN_name``."""
    if not NOTEBOOK_NAME.fullmatch(notebook):
        raise ParameterError(
            f"notebook name {notebook!r} is not of the form NN_name (e.g. '01_downsampling_artifacts')"
        )
    path = NOTEBOOKS / f"{notebook}.ipynb"
    if not path.is_file():
        raise ParameterError(f"{notebook}: no notebook {path} to read the parameters cell from")
    return path


def is_parameter_name(name: object) -> bool:
    """A name papermill may inject: a Python identifier that is not a keyword."""
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


def _is_kernel_global(name: str, value: Any) -> bool:
    """IPython's own names, and the modules / classes / functions a validation cell imports."""
    if name in IPYTHON_GLOBALS or _IPYTHON_NUMBERED.fullmatch(name):
        return True
    return isinstance(value, types.ModuleType) or inspect.isclass(value) or callable(value)


def injected_cells(namespace: Mapping[str, Any]) -> list[str]:
    """Sources of the papermill-injected parameter cells run so far (from IPython's ``In``; none outside IPython)."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return []
    return [src for src in history if isinstance(src, str) and src.lstrip().startswith(INJECTED_HEADER)]


def validate_parameters(
    notebook: str,
    defaults: Mapping[str, Any],
    namespace: Mapping[str, Any],
    *,
    allow_zero: Iterable[str] = (),
    declared: Mapping[str, TypeSpec] | None = None,
) -> dict[str, Any]:
    """Check ``namespace`` against the parameters cell's ``defaults``; return the typed values.

    ``declared`` gives explicit types for parameters whose type the default cannot tell (a ``None``
    default, several types). Raises :class:`ParameterError` on the first unknown name, missing
    parameter, non-literal or wrongly typed value, non-finite float or out-of-range count.
    """
    declared = dict(declared or {})
    allow_zero = set(allow_zero)
    missing_common = sorted(set(COMMON) - set(defaults))
    if missing_common:
        raise ParameterError(
            f"{notebook}: the parameters cell does not define the common parameter(s) {missing_common}"
        )
    for extra, what in (
        (set(declared) - set(defaults), "declares types for"),
        (allow_zero - set(defaults), "allows 0 for"),
    ):
        if extra:
            raise ParameterError(
                f"{notebook}: build_config {what} {sorted(extra)}, which the parameters cell does not define"
            )
    allowed = sorted(defaults)
    for source in injected_cells(namespace):
        for name in _plain_assignments(source, f"{notebook}: the injected parameters cell"):
            if name not in defaults:
                raise ParameterError(f"{notebook}: unknown injected parameter {name!r}; this notebook takes {allowed}")
    unknown = sorted(k for k, v in namespace.items() if k not in defaults and not _is_kernel_global(k, v))
    if unknown:
        raise ParameterError(f"{notebook}: unknown parameter(s) {unknown}; this notebook takes {allowed}")
    missing = sorted(set(defaults) - set(namespace))
    if missing:
        raise ParameterError(f"{notebook}: the parameters cell does not define {missing}")
    values: dict[str, Any] = {}
    for name, default in defaults.items():
        value = check_plain(name, namespace[name])
        if name in declared:
            value = _check_type(name, value, declared[name])
        else:
            value = _like_default(name, value, default)
        if isinstance(value, int) and not isinstance(value, bool):
            low = _minimum(name, allow_zero)
            if value < low:
                raise ParameterError(f"{notebook}: parameter {name}={value} must be >= {low}")
        values[name] = value
    if values["preset"] not in PRESETS:
        raise ParameterError(f"preset={values['preset']!r} must be one of {PRESETS}")
    return values


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


def build_config(
    notebook: str, namespace: Mapping[str, Any], *, allow_zero: Iterable[str] = (), **declared: TypeSpec
) -> NotebookConfig:
    """Validate a notebook's parameters in ``namespace`` (its ``globals()``) and return its config.

    The parameters and their types come from the ``parameters`` cell of ``notebooks/<notebook>.ipynb``
    (see the module docstring for the rules); ``declared`` types only the parameters whose default
    cannot tell, and ``allow_zero`` names the counts for which 0 means something. Sets the torch
    thread count when ``threads > 0`` and creates the figures folder.
    """
    defaults = read_parameters_cell(notebook_file(notebook))
    values = validate_parameters(notebook, defaults, namespace, allow_zero=allow_zero, declared=declared)
    device = resolve_device(values["device"])
    if values["threads"] > 0:
        torch.set_num_threads(values["threads"])
    figures_dir = Path(values["figures_dir"]).expanduser() if values["figures_dir"] else FIGURES
    figures_dir.mkdir(parents=True, exist_ok=True)
    return NotebookConfig(notebook=notebook, values=values, device=device, figures_dir=figures_dir)


def asset_path(value: str, toy_name: str | None = None, *, what: str = "asset") -> Path:
    """Resolve an asset parameter: ``''`` → ``data/<toy_name>``; ``'$VAR'`` → that environment variable; else a path.

    One asset at a time; a notebook's configuration cell checks all of its assets at once with
    :func:`hrinv_nb.notebook.assets.resolve_assets` (this is the same resolution). Raises
    :class:`~hrinv_nb.notebook.assets.MissingAssetsError` (a ``FileNotFoundError``) naming the file,
    the variable and where to put it; nothing is downloaded.
    """
    from .assets import resolve_one

    if value == "" and toy_name is None:
        raise ParameterError(f"{what}: no path given and there is no embedded toy default; pass a local file")
    return resolve_one(value, what, toy=toy_name)
