"""Streamed, resumable outputs of long batched runs (projection, LSO, stylisation).

A run over N items in batches of ``b`` writes, for every batch (a *chunk*) as soon as it is done, its
per-item files (codes ``.npz``, images ``.npz`` or ``.png``) and then a chunk record
``chunks/<start>-<stop>.json`` (the items' metrics and whatever the run needs to continue: random
generator states, history sums). Every file is written atomically (:func:`hrinv_nb.files.atomic_write_all`),
the record last, so a chunk either has a record (complete) or is redone. The folder's ``manifest.json``
holds the run's kind, N, the batch size and a fingerprint of every parameter: a rerun with the same
folder and the same parameters skips the completed chunks; with other parameters it stops with
:class:`ResumeMismatchError` naming what differs (never a silent mix). :meth:`StreamStore.finish`
writes ``metrics.jsonl`` (one JSON line per item, in order).

Memory then depends on the batch size, not on N: results are read back from the folder
(:func:`load_image_npz`, :meth:`StreamStore.records`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from .errors import FileFormatError, HrinvError
from .files import Writer, atomic_write, atomic_write_all

MANIFEST = "manifest.json"
CHUNKS = "chunks"
ITEMS = "items"
METRICS = "metrics.jsonl"
FORMAT_VERSION = 1
MAX_RECORD_BYTES = 64 << 20  # a chunk record or manifest larger than this is refused unread


class ResumeMismatchError(HrinvError):
    """The output folder holds a run made with other parameters (or of another kind)."""


class StreamFileError(FileFormatError):
    """A manifest, chunk record or streamed item that cannot be read."""


# ----------------------------------------------------------------------------------------------
# Parameter fingerprints


def _sha256_tensor(t: torch.Tensor) -> str:
    t = t.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return False


def fingerprint(value: Any) -> Any:
    """A JSON-able description of ``value`` that changes when the value does.

    Plain values are kept; tensors and arrays become a SHA-256 of dtype, shape and bytes; a module
    the SHA-256 of its class, its state dict and the plain public attributes of every submodule
    (e.g. a loss's λ table); other objects their type and ``repr``.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return {"tensor": _sha256_tensor(value)}
    if isinstance(value, np.ndarray):
        return {"array": _sha256_tensor(torch.from_numpy(np.ascontiguousarray(value)))}
    if isinstance(value, (list, tuple)):
        return [fingerprint(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): fingerprint(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, nn.Module):
        digest = hashlib.sha256(type(value).__qualname__.encode())
        for name, tensor in value.state_dict().items():
            digest.update(name.encode())
            digest.update(_sha256_tensor(tensor).encode())
        for name, module in value.named_modules():
            attrs = {k: v for k, v in vars(module).items() if not k.startswith("_") and _plain(v)}
            digest.update(
                f"{name}:{type(module).__qualname__}:{json.dumps(fingerprint(attrs), sort_keys=True)}".encode()
            )
        return {"module": type(value).__qualname__, "sha256": digest.hexdigest()}
    if isinstance(value, torch.device):
        return str(value)
    if callable(value) and hasattr(value, "__qualname__"):
        return {"callable": f"{getattr(value, '__module__', '')}.{value.__qualname__}"}
    if hasattr(value, "fingerprint") and callable(value.fingerprint):
        return {"object": type(value).__qualname__, "fingerprint": fingerprint(value.fingerprint())}
    return {"object": type(value).__qualname__, "repr": repr(value)}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------------------------------------
# Small readers and writers


def _read_json(path: Path) -> Any:
    """A JSON file of at most :data:`MAX_RECORD_BYTES` (a :class:`StreamFileError` otherwise)."""
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise StreamFileError(f"{path}: larger than {MAX_RECORD_BYTES} bytes; refused")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StreamFileError(f"{path}: not a readable JSON file ({err})") from err


def json_writer(value: Any) -> Writer:
    """A writer for :func:`hrinv_nb.files.atomic_write` of ``value`` as JSON."""
    text = json.dumps(value, indent=1)
    return lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8")


def npz_writer(arrays: Mapping[str, torch.Tensor | np.ndarray]) -> Writer:
    """A writer of float arrays as ``.npz`` (no pickle) for :func:`hrinv_nb.files.atomic_write`."""
    plain = {
        k: (v.detach().to("cpu").numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in arrays.items()
    }

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a name
            np.savez(handle, **plain)

    return write


def load_image_npz(path: str | os.PathLike) -> torch.Tensor:
    """The float image ``[1, 3, H, W]`` of a streamed ``.npz`` (key ``image``), read without pickle."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            image = np.array(data["image"])
    except (OSError, KeyError, ValueError) as err:
        raise StreamFileError(f"{path}: not a streamed image .npz ({err})") from err
    if image.ndim != 4 or image.shape[:2] != (1, 3) or image.dtype.kind != "f":
        raise StreamFileError(f"{path}: image must be float [1, 3, H, W], got {image.dtype} {image.shape}")
    return torch.from_numpy(image)


def encode_generator(generator: torch.Generator) -> str:
    """A ``torch.Generator``'s state as base64 text (to continue its stream after a restart)."""
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii")


def restore_generator(generator: torch.Generator, state: str) -> None:
    """Set ``generator`` to a state from :func:`encode_generator`."""
    raw = np.frombuffer(base64.b64decode(state.encode("ascii"), validate=True), dtype=np.uint8)
    generator.set_state(torch.from_numpy(raw.copy()))


# ----------------------------------------------------------------------------------------------
# The store


@dataclass
class ChunkRecord:
    """A completed chunk: items ``start .. stop-1``, their per-item dicts and the run's ``extra`` state."""

    start: int
    stop: int
    items: list[dict[str, Any]]
    extra: dict[str, Any]


def chunk_bounds(n_items: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of consecutive chunks of at most ``batch_size`` items."""
    assert n_items >= 1 and batch_size >= 1, (n_items, batch_size)
    return [(s, min(s + batch_size, n_items)) for s in range(0, n_items, batch_size)]


class StreamStore:
    """An output folder of one streamed run; open it with :func:`open_store`."""

    def __init__(self, folder: Path, kind: str, n_items: int, batch_size: int) -> None:
        self.folder, self.kind, self.n_items, self.batch_size = folder, kind, n_items, batch_size

    @property
    def bounds(self) -> list[tuple[int, int]]:
        return chunk_bounds(self.n_items, self.batch_size)

    def _record_path(self, start: int, stop: int) -> Path:
        return self.folder / CHUNKS / f"{start:08d}-{stop:08d}.json"

    def item_path(self, index: int, suffix: str) -> Path:
        """``items/<index>_<suffix>`` (e.g. ``suffix='w.npz'``)."""
        assert 0 <= index < self.n_items, (index, self.n_items)
        return self.folder / ITEMS / f"{index:06d}_{suffix}"

    def completed(self) -> dict[int, ChunkRecord]:
        """The completed chunks by start index (each checked against the batch size and N)."""
        out: dict[int, ChunkRecord] = {}
        for start, stop in self.bounds:
            path = self._record_path(start, stop)
            if not path.exists():
                continue
            data = _read_json(path)
            items = data.get("items") if isinstance(data, dict) else None
            if not isinstance(items, list) or len(items) != stop - start or data.get("start") != start:
                raise StreamFileError(f"{path}: not a chunk record of items {start}..{stop - 1}")
            out[start] = ChunkRecord(start, stop, items, dict(data.get("extra") or {}))
        return out

    def write_chunk(
        self,
        start: int,
        stop: int,
        files: Sequence[tuple[Path, Writer]],
        items: Sequence[Mapping[str, Any]],
        extra: Mapping[str, Any] | None = None,
    ) -> ChunkRecord:
        """Write a chunk's item ``files`` and then its record (atomically, the record last)."""
        assert (start, stop) in self.bounds, f"({start}, {stop}) is not a chunk of {self.bounds}"
        assert len(items) == stop - start, (len(items), start, stop)
        record = {"start": start, "stop": stop, "items": [dict(i) for i in items], "extra": dict(extra or {})}
        atomic_write_all([*files, (self._record_path(start, stop), json_writer(record))])
        return ChunkRecord(start, stop, record["items"], record["extra"])

    def records(self) -> list[dict[str, Any]]:
        """Every item's dict in order (all chunks must be complete)."""
        done = self.completed()
        missing = [b for b in self.bounds if b[0] not in done]
        if missing:
            raise StreamFileError(f"{self.folder}: chunks {missing} are not complete")
        return [item for start, _ in self.bounds for item in done[start].items]

    def finish(self) -> Path:
        """Write ``metrics.jsonl`` (one line per item, in order) atomically; return its path."""
        lines = "".join(json.dumps(item, sort_keys=True) + "\n" for item in self.records())
        return atomic_write(self.folder / METRICS, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))


def open_store(
    folder: str | os.PathLike,
    kind: str,
    params: Mapping[str, Any],
    n_items: int,
    batch_size: int | None,
    default_batch_size: Callable[[], int],
) -> StreamStore:
    """Create, or reopen for a resume, the output folder of a run of ``kind`` over ``n_items`` items.

    ``params`` (every argument that shapes the results) are fingerprinted into the manifest. A folder
    with a manifest must match kind, N and every fingerprint, else :class:`ResumeMismatchError`.
    ``batch_size=None`` takes the manifest's batch size (resume) or ``default_batch_size()`` (new run);
    an explicit batch size must match the manifest's (batching can change the results' last bits).
    """
    folder = Path(folder)
    if n_items < 1:
        raise HrinvError(f"nothing to run: {n_items} items")
    prints = {str(k): fingerprint(v) for k, v in params.items()}
    digest = hashlib.sha256(_canonical({"kind": kind, "n_items": n_items, "params": prints}).encode()).hexdigest()
    manifest_path = folder / MANIFEST
    if manifest_path.exists():
        manifest = _read_json(manifest_path)
        if not isinstance(manifest, dict):
            raise StreamFileError(f"{manifest_path}: not a manifest")
        old = manifest.get("params") if isinstance(manifest.get("params"), dict) else {}
        problems = []
        if manifest.get("kind") != kind:
            problems.append(f"kind {manifest.get('kind')!r} != {kind!r}")
        if manifest.get("n_items") != n_items:
            problems.append(f"n_items {manifest.get('n_items')} != {n_items}")
        changed = sorted(k for k in set(old) | set(prints) if _canonical(old.get(k)) != _canonical(prints.get(k)))
        if changed:
            problems.append(f"parameters that differ: {', '.join(changed)}")
        recorded = manifest.get("batch_size")
        if batch_size is not None and batch_size != recorded:
            problems.append(f"batch_size {recorded} != {batch_size}")
        if problems or (manifest.get("sha256") != digest):
            raise ResumeMismatchError(
                f"{folder} holds a {manifest.get('kind')} run with other parameters ({'; '.join(problems) or 'hash'}): "
                "rerun with the same parameters to resume it, or give another (or an empty) output folder"
            )
        if not isinstance(recorded, int) or recorded < 1:
            raise StreamFileError(f"{manifest_path}: invalid batch_size {recorded!r}")
        return StreamStore(folder, kind, n_items, recorded)
    size = default_batch_size() if batch_size is None else batch_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise HrinvError(f"batch_size must be a positive integer, got {size!r}")
    manifest = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "n_items": n_items,
        "batch_size": size,
        "sha256": digest,
        "params": prints,
    }
    atomic_write(manifest_path, json_writer(manifest))
    return StreamStore(folder, kind, n_items, size)


def iter_chunks(store: StreamStore) -> Iterator[tuple[int, int, ChunkRecord | None]]:
    """``(start, stop, record or None)`` for every chunk of ``store``: ``None`` where it still has to run."""
    done = store.completed()
    for start, stop in store.bounds:
        yield start, stop, done.get(start)


class ImageFiles:
    """Image files loaded a slice at a time (``files[a:b]`` -> ``[b-a, 3, size, size]`` in [-1, 1]).

    A stand-in for a target tensor in the streamed runs: only the current chunk's images are in memory.
    Its :meth:`fingerprint` (names, sizes and modification times of the files, and ``size``) enters the
    run's manifest.
    """

    def __init__(self, files: Sequence[str | os.PathLike], size: int, min_short_side: int | None = None) -> None:
        """``min_short_side``: :func:`hrinv_nb.images.load_image`'s (default: its own)."""
        self.files = [Path(f) for f in files]
        self.size = int(size)
        self.options = {} if min_short_side is None else {"min_short_side": int(min_short_side)}
        if not self.files:
            raise HrinvError("ImageFiles needs at least one file")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: slice) -> torch.Tensor:
        from .images import load_image

        assert isinstance(index, slice), "ImageFiles is read a slice at a time"
        chosen = self.files[index]
        assert chosen, f"empty slice {index}"
        return torch.cat([load_image(p, size=self.size, **self.options) for p in chosen])

    def fingerprint(self) -> dict[str, Any]:
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self.files]
        return {"size": self.size, "files": stats, **self.options}


@runtime_checkable
class ImageSource(Protocol):
    """Images read a slice at a time: ``len(source)`` images, ``source[a:b]`` -> [b-a, 3, H, W] in [-1, 1].

    A tensor is one; so is :class:`ImageFiles` (only the slice asked for is loaded).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice) -> torch.Tensor: ...


def image_rows(images: torch.Tensor | ImageSource, index: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """``images[index]`` [len(index), 3, H, W] of a tensor or an :class:`ImageSource` (each distinct row read once)."""
    index = torch.as_tensor(index).long().reshape(-1).cpu()
    if isinstance(images, torch.Tensor):
        return images[index.to(images.device)]
    distinct, inverse = torch.unique(index, return_inverse=True)
    rows = torch.cat([images[i : i + 1] for i in distinct.tolist()])
    return rows[inverse]


def iter_batches(images: torch.Tensor | ImageSource, batch: int) -> Iterator[torch.Tensor]:
    """``images`` in order, ``batch`` at a time ([b, 3, H, W] each; an :class:`ImageSource` is read slice by slice)."""
    assert batch >= 1, batch
    for start in range(0, len(images), batch):
        yield images[start : start + batch]
