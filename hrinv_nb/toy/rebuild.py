"""The one command line of the toy world's rebuild scripts (``python -m hrinv_nb.toy.vgg``, ``.identity``).

Configurator style (as nanoGPT's): each flag (``--steps``, ``--n-ids``, ...) is a keyword parameter of the
training function, with that parameter's default and the type of its default, checked against the
annotation; the signature is the one source of the settings and their defaults. Every script also takes
``--out`` (where the asset goes), ``--threads`` and ``--no-cache`` (``work_dir=None``), records the command
in the provenance, writes the provenance JSON next to the asset and prints one part of it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write

__all__ = ["rebuild_main", "rebuild_parser"]

TrainFn = Callable[..., dict[str, Any]]  # train_fn(out_path, **options) -> provenance dict


def _flag_type(train_fn: TrainFn, name: str) -> tuple[type, Any]:
    """The type and default of ``train_fn``'s parameter ``name`` (an int, float or str default that agrees
    with the parameter's annotation)."""
    param = inspect.signature(train_fn).parameters[name]
    default = param.default
    kind = type(default)
    assert kind in (int, float, str), f"{train_fn.__name__}({name}=...) needs an int, float or str default"
    assert param.annotation in (kind, kind.__name__), (
        f"{train_fn.__name__}({name}: {param.annotation}) disagrees with its default {default!r}"
    )
    return kind, default


def rebuild_parser(
    train_fn: TrainFn, prog: str, description: str, out_default: Path, options: Sequence[str]
) -> argparse.ArgumentParser:
    """``--out``, one flag per name in ``options`` (from ``train_fn``'s signature), ``--threads``, ``--no-cache``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out", type=Path, default=out_default)
    for name in options:
        kind, default = _flag_type(train_fn, name)
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=default)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-cache", action="store_true", help="do not read/write data/_work/")
    return parser


def rebuild_main(
    train_fn: TrainFn, argv: Sequence[str] | None, *, out_default: Path, options: Sequence[str], report: str
) -> dict[str, Any]:
    """Parse ``argv`` (``None``: ``sys.argv[1:]``), train, write ``<out>.json`` and print its ``report`` entry.

    The command is ``python -m <train_fn's module>``, described by the first line of that module's docstring.
    ``train_fn`` is called as ``train_fn(out, **options, work_dir=...)``: its own ``work_dir`` default, or
    ``None`` with ``--no-cache``. Returns the provenance dict, with the ``command`` that was run.
    """
    module = sys.modules[train_fn.__module__]
    spec = getattr(module, "__spec__", None)  # run as ``python -m``, the module is __main__: its spec keeps the name
    prog = f"python -m {spec.name if spec is not None else train_fn.__module__}"
    description = (module.__doc__ or "").split("\n")[0]
    args = rebuild_parser(train_fn, prog, description, out_default, options).parse_args(argv)
    torch.set_num_threads(args.threads)
    work_dir = inspect.signature(train_fn).parameters["work_dir"].default
    provenance = train_fn(
        args.out, **{name: getattr(args, name) for name in options}, work_dir=None if args.no_cache else work_dir
    )
    provenance["command"] = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
    text = json.dumps(provenance, indent=2) + "\n"
    atomic_write(args.out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
    print(json.dumps(provenance[report], indent=2))
    return provenance
