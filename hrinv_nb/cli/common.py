"""Shared pieces of the command-line tool: input listing, sharding, resume records, devices, errors.

Input listing: a file argument is taken as it is; a folder argument contributes the image files
directly inside it (not recursively; hidden files skipped), recognised by extension
(:data:`IMAGE_EXTENSIONS`). The list is deduplicated by resolved path and sorted numeric-aware
(``2.jpg`` before ``10.jpg``); shards and resume records refer to positions in that list.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import HrinvError
from ..files import atomic_write, natural_key

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".tga")
REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
TOY_G_S = DATA / "G_s.safetensors"
TOY_VGG = DATA / "vgg16_toy.safetensors"
TOY_STYLES = ("cartoon", "caricature", "anime")
EXIT_USAGE = 2


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and example block; option help states its default itself."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def subcommand(subparsers: Any, name: str, summary: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """Register one subcommand with the shared help layout (description, examples, epilog, defaults)."""
    return subparsers.add_parser(
        name, help=summary, description=description, epilog=epilog, formatter_class=HelpFormatter
    )


class CliError(HrinvError):
    """A bad command line or input (printed without a traceback; exit code 2)."""


def info(message: str, quiet: bool = False) -> None:
    """Print a status line to stderr (stdout stays for results), above any progress bar."""
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)  # does not break an active progress bar


# ----------------------------------------------------------------------------------------------
# Listing and sorting


def path_key(path: Path) -> tuple:
    """Natural sort key of a path: by folder, then by file name."""
    return (natural_key(str(path.parent)), natural_key(path.name))


def is_image_name(path: Path) -> bool:
    """Whether ``path`` has an image extension and is not hidden (atomic-write temporaries are hidden)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_files(
    paths: Sequence[str | os.PathLike], extensions: Iterable[str] = IMAGE_EXTENSIONS, what: str = "image"
) -> list[Path]:
    """Files named by ``paths`` (files as given; folders: their non-hidden files with ``extensions``, not
    recursive), deduplicated and naturally sorted. A missing path or a folder with no match is a :class:`CliError`."""
    exts = tuple(e.lower() for e in extensions)
    found: dict[Path, Path] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise CliError(f"input not found: {path}")
        if path.is_dir():
            inside = [
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")
            ]
            if not inside:
                raise CliError(
                    f"no {what} files in folder {path} (looked for {', '.join(exts)} directly inside it; "
                    "sub-folders are not searched)"
                )
            for p in inside:
                found.setdefault(p.resolve(), p)
        else:
            found.setdefault(path.resolve(), path)
    return sorted(found.values(), key=path_key)


def stems(paths: Sequence[Path], what: str = "input") -> list[str]:
    """The output stem of each path; two paths with one stem (``x/a.png``, ``y/a.jpg``) are a :class:`CliError`."""
    seen: dict[str, Path] = {}
    for path in paths:
        stem = path.stem
        if stem in seen:
            raise CliError(
                f"two {what}s would write the same outputs '{stem}.*': {seen[stem]} and {path}. "
                "Rename one of them, or run them separately with different --out folders"
            )
        seen[stem] = path
    return [p.stem for p in paths]


def check_image_header(path: Path) -> None:
    """Refuse early (before networks load) a file that Pillow does not recognise as an image."""
    from PIL import Image, UnidentifiedImageError

    from ..images import IMAGE_FORMATS

    if path.is_dir():
        raise CliError(f"{path}: is a folder inside a file list")
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            img.size  # noqa: B018  (the header is parsed on open)
    except UnidentifiedImageError as err:
        raise CliError(f"{path}: not a recognised image file (accepted: {', '.join(IMAGE_FORMATS)})") from err
    except OSError as err:
        raise CliError(f"{path}: cannot be read as an image ({err})") from err


# ----------------------------------------------------------------------------------------------
# Shards and devices


@dataclass(frozen=True)
class Shard:
    """Process the items whose index ≡ ``index`` (mod ``count``); ``local_rank`` picks the GPU under torchrun."""

    index: int = 0
    count: int = 1
    local_rank: int | None = None

    def select(self, n: int) -> list[int]:
        """The indices of this shard among ``n`` items."""
        return [i for i in range(n) if i % self.count == self.index]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise CliError(f"--shard auto: the environment variable {name}={value!r} is not an integer") from None


def parse_shard(spec: str | None) -> Shard:
    """``None`` -> 0/1; ``'i/n'`` with 0 ≤ i < n; ``'auto'`` -> ``$RANK/$WORLD_SIZE`` (torchrun; 0/1 when unset)."""
    if spec is None:
        return Shard()
    if spec == "auto":
        rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
        if rank is None or world is None:
            return Shard(0, 1, _env_int("LOCAL_RANK"))
        if world < 1 or not 0 <= rank < world:
            raise CliError(f"--shard auto: RANK={rank} is not in [0, WORLD_SIZE={world})")
        return Shard(rank, world, _env_int("LOCAL_RANK"))
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if match is None:
        raise CliError(f"bad --shard {spec!r}: expected i/n with 0 <= i < n (e.g. 0/4), or 'auto' under torchrun")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise CliError(f"bad --shard {spec!r}: need 0 <= i < n and n >= 1")
    return Shard(index, count)


def resolve_device(spec: str, shard: Shard | None = None) -> torch.device:
    """``auto`` (CUDA when present, on ``cuda:$LOCAL_RANK`` under torchrun), ``cpu``, ``cuda`` or ``cuda:k``."""
    local = shard.local_rank if shard is not None else None
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{local}" if local is not None else "cuda")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as err:
        raise CliError(f"--device {spec!r} is not a device name (auto, cpu, cuda, cuda:1, ...)") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CliError(f"--device {spec} asked for CUDA, but torch sees no GPU here; use --device auto or cpu")
        if device.index is None and local is not None:
            device = torch.device(f"cuda:{local}")
    return device


def set_threads(threads: int) -> None:
    """``threads > 0``: torch's CPU intra-op threads; 0 keeps torch's default."""
    if threads < 0:
        raise CliError(f"--threads must be >= 0, got {threads}")
    if threads > 0:
        torch.set_num_threads(threads)


def pair_seed(seed: int, *names: str) -> int:
    """A deterministic 63-bit seed from ``seed`` and names (independent of order of processing)."""
    return (int(seed) * 1_000_003 + zlib.crc32("\0".join(names).encode())) % (2**63 - 1)


# ----------------------------------------------------------------------------------------------
# Records (per-item JSON) and resume


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_json(path: Path) -> dict[str, Any]:
    """A record written by :func:`write_json`; an unreadable one is a :class:`CliError` naming it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CliError(f"{path}: unreadable record ({err}); delete it or pass --overwrite") from err
    if not isinstance(data, dict):
        raise CliError(f"{path}: not a record (a JSON object expected); delete it or pass --overwrite")
    return data


def check_record(
    record_path: Path, record: dict[str, Any], expected: dict[str, Any], must_match: Sequence[str]
) -> None:
    """Refuse to resume onto results made with other options (``must_match`` keys of ``record['options']``)."""
    options = record.get("options", {})
    diffs = [
        f"{k}: {options.get(k)!r} there, {expected.get(k)!r} now"
        for k in must_match
        if options.get(k) != expected.get(k)
    ]
    if diffs:
        raise CliError(
            f"{record_path} was made with other options ({'; '.join(diffs)}). Use another --out folder, "
            "or pass --overwrite to redo it"
        )


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """One JSON object per line, atomically."""
    text = "".join(json.dumps(r, sort_keys=False, default=str) + "\n" for r in records)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def generator_id(path: Path) -> str:
    """How a generator is named in records: its absolute path."""
    return str(path.expanduser().resolve())
