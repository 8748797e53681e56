"""Batch sizes from the free memory of a device.

Measured peak cost per item at 256² (issue 18, CPU runs of the real-format presets): a projection
(Eq. 1, W+ and noise maps) about 0.9 GiB per image, an LSO problem (Eq. 8) about 0.8 GiB; rendering
without gradients is far cheaper. The cost scales with the number of pixels. :func:`default_batch_size`
turns a free-memory figure into a batch size (always >= 1); :func:`free_memory_bytes` reads that
figure: CUDA's ``mem_get_info`` on a GPU, the available RAM (psutil, else ``/proc/meminfo``) on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

GIB = 1 << 30
REFERENCE_SIDE = 256  # the measured per-item costs are for 256² images
PER_ITEM_GIB = {"projection": 0.9, "lso": 0.8, "render": 0.1}
DEFAULT_FRACTION = 0.7  # of the free memory: leave room for the networks, the allocator and other processes
FALLBACK_FREE_BYTES = 4 * GIB  # when the free memory cannot be read


def _pixels(resolution: int | Sequence[int]) -> int:
    """H·W of ``resolution`` (a side ``R`` for R², or ``(H, W)``)."""
    if isinstance(resolution, int):
        sides = (resolution, resolution)
    else:
        sides = tuple(int(s) for s in resolution)
    if len(sides) != 2 or min(sides) < 1:
        raise ValueError(f"resolution must be a positive side or (H, W), got {resolution!r}")
    return sides[0] * sides[1]


def per_item_bytes(kind: str, resolution: int | Sequence[int]) -> int:
    """Estimated peak memory of one item of ``kind`` (``projection`` | ``lso`` | ``render``) at ``resolution``."""
    if kind not in PER_ITEM_GIB:
        raise ValueError(f"kind must be one of {sorted(PER_ITEM_GIB)}, got {kind!r}")
    return math.ceil(PER_ITEM_GIB[kind] * GIB * _pixels(resolution) / REFERENCE_SIDE**2)


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes, or ``None`` where it cannot be read."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_memory_bytes(device: str | torch.device = "cpu") -> int:
    """Free memory of ``device`` in bytes: CUDA's free memory, or the available RAM on a CPU.

    Falls back to :data:`FALLBACK_FREE_BYTES` where the figure cannot be read (never raises).
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        except (RuntimeError, AssertionError):
            return FALLBACK_FREE_BYTES
    if device.type != "cpu":
        return FALLBACK_FREE_BYTES
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError):
        pass
    available = _meminfo_available()
    return FALLBACK_FREE_BYTES if available is None else available


def default_batch_size(
    kind: str,
    resolution: int | Sequence[int],
    device: str | torch.device = "cpu",
    *,
    free_bytes: int | None = None,
    fraction: float = DEFAULT_FRACTION,
) -> int:
    """The largest batch whose estimated peak fits ``fraction`` of the free memory; at least 1.

    ``free_bytes`` replaces the reading of ``device``'s free memory (the function is then pure).
    """
    if not (0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    free = free_memory_bytes(device) if free_bytes is None else int(free_bytes)
    return max(1, int(free * fraction) // per_item_bytes(kind, resolution))


def resolve_batch_size(
    batch_size: int | None, kind: str, resolution: int | Sequence[int], device: str | torch.device = "cpu"
) -> int:
    """``batch_size`` checked (a positive int), or :func:`default_batch_size` when it is ``None`` or 0."""
    if batch_size is None or batch_size == 0:
        return default_batch_size(kind, resolution, device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(
            f"batch_size must be a positive integer (or None/0 for the memory default), got {batch_size!r}"
        )
    return batch_size
