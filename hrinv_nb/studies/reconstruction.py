"""Helpers for the reconstruction studies (Figs. 1, 6, 12, Table II): run loss variants, measure, summarise.

A *row* is one inversion setting (a loss, a loss-input size, w or w+n, noise regularisation) run
on a batch of targets with :func:`hrinv_nb.projector.project_batch`; :func:`measure` turns
its reconstructions into per-sample numbers (PSNR, SSIM, the high-frequency artifact energy, the
detail and sharpness ratios, optionally an LPIPS-style feature distance); :func:`paired` compares
two rows on the same targets (:mod:`hrinv_nb.studies.verdict` turns that into a verdict).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import metrics
from ..losses import PerceptualLoss
from ..projector import BatchProjectionResult, StreamedProjection, project_batch, project_stream
from .verdict import PairedDifference, paired_difference, standard_error


@dataclass
class StudyRow:
    """One inversion setting run on a batch: its reconstructions, per-sample measures and wall time."""

    label: str
    images: torch.Tensor | None  # None when streamed to a folder (read them from ``result``)
    measures: dict[str, list[float]]
    seconds: float
    result: BatchProjectionResult | StreamedProjection | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    cpu_seconds: float = float("nan")  # process CPU time: the cost on a free machine, whatever the contention

    def mean(self, key: str) -> float:
        return float(np.mean(self.measures[key]))

    def __len__(self) -> int:
        return len(next(iter(self.measures.values())))

    def image(self, index: int) -> torch.Tensor:
        """Reconstruction ``index`` [1, 3, H, W]: from memory, or read from the row's stream folder."""
        if self.images is not None:
            return self.images[index : index + 1]
        assert isinstance(self.result, StreamedProjection), f"{self.label}: no images in memory and no stream"
        return self.result.image(index).float()

    def sem(self, key: str) -> float:
        """Standard error of the mean over samples (0 for one sample)."""
        return standard_error(self.measures[key]) if len(self.measures[key]) > 1 else 0.0


def measure(
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    cutoff: float = 0.5,
    feature_weights: str | None = None,
) -> dict[str, list[float]]:
    """Per-sample PSNR, SSIM, hf artifact energy (residual power above ``cutoff``·Nyquist), detail ratio,
    sharpness ratio and, with ``feature_weights`` (a VGG16 trunk file), the LPIPS-style feature distance."""
    assert images.shape == targets.shape and images.ndim == 4, (tuple(images.shape), tuple(targets.shape))
    images = images.detach().float().clamp(-1, 1)
    targets = targets.detach().float().to(images.device)
    out = {
        "psnr": metrics.psnr_per_sample(images, targets),
        "ssim": metrics.ssim_per_sample(images, targets),
        "hf_energy": metrics.hf_artifact_energy_per_sample(images, targets, cutoff),
        "detail_ratio": [
            metrics.detail_ratio(images[i : i + 1], targets[i : i + 1], cutoff) for i in range(len(images))
        ],
        "sharpness_ratio": [metrics.sharpness_ratio(images[i : i + 1], targets[i : i + 1]) for i in range(len(images))],
    }
    if feature_weights is not None:
        out["feature_dist"] = [
            float(v) for v in metrics.vgg_feature_distance_per_sample(images, targets, weights=feature_weights)
        ]
    for key, values in out.items():
        assert all(math.isfinite(v) for v in values), f"{key}: non-finite values {values}"
    return out


class _Measure:
    """:func:`measure` with fixed options, as a picklable callable with a :meth:`fingerprint` (for resumes)."""

    def __init__(self, cutoff: float, feature_weights: str | None) -> None:
        self.cutoff, self.feature_weights = cutoff, feature_weights

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, list[float]]:
        return measure(images, targets, cutoff=self.cutoff, feature_weights=self.feature_weights)

    def fingerprint(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "feature_weights": self.feature_weights}


def run_row(
    label: str,
    G: nn.Module,
    targets: torch.Tensor,
    loss: PerceptualLoss | str,
    *,
    cutoff: float = 0.5,
    feature_weights: str | None = None,
    batch_size: int | None = None,
    out_dir: str | os.PathLike | None = None,
    **project_kwargs: Any,
) -> StudyRow:
    """Invert ``targets`` with ``project_batch(G, targets, loss=loss, batch_size=batch_size, **project_kwargs)``
    and measure the result.

    ``batch_size`` ``None``: the memory default (:func:`hrinv_nb.memory.default_batch_size`). With
    ``out_dir`` the row streams (:func:`hrinv_nb.projector.project_stream`: measured chunk by chunk,
    resumable); the row's ``images`` are then ``None`` and ``result`` reads them from the folder.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    if out_dir is None:
        result = project_batch(G, targets, loss=loss, batch_size=batch_size, **project_kwargs)
        assert torch.isfinite(result.images).all() and torch.isfinite(result.w).all(), f"{label}: non-finite result"
        images = result.images.detach().cpu()
        measures = measure(result.images, targets, cutoff=cutoff, feature_weights=feature_weights)
    else:
        result = project_stream(
            G, targets, out_dir, loss=loss, batch_size=batch_size, measure=_Measure(cutoff, feature_weights),
            **project_kwargs,
        )  # fmt: skip
        assert torch.isfinite(result.w).all(), f"{label}: non-finite result"
        images = None
        keys = [k for k in result.records[0] if k not in ("index", "name", "projection", "image", "mse")]
        measures = {k: [float(r[k]) for r in result.records] for k in keys}
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    settings = {k: v for k, v in project_kwargs.items() if isinstance(v, (int, float, str, bool))}
    settings["loss"] = loss if isinstance(loss, str) else getattr(loss, "name", type(loss).__name__)
    return StudyRow(label, images, measures, seconds, result, settings, cpu_seconds)


def add_highband_split(row: StudyRow, targets: torch.Tensor, cutoff: float) -> StudyRow:
    """Add the per-sample high-band split of :func:`hrinv_nb.studies.mechanisms.highband_split` to ``row``'s
    measures (``hf_matched``, ``hf_spurious``, ``hf_missing``, ``hf_spurious_ratio``) and return ``row``.

    ``targets`` are the row's targets in order (a tensor, or anything indexable by slices of one, such as
    streamed image files); images are read one at a time, so a streamed row works too.
    """
    from .mechanisms import highband_split

    assert len(targets) == len(row), f"{row.label}: {len(targets)} targets for {len(row)} reconstructions"
    out: dict[str, list[float]] = {"hf_matched": [], "hf_spurious": [], "hf_missing": [], "hf_spurious_ratio": []}
    for i in range(len(row)):
        img = row.image(i).float().clamp(-1, 1)
        split = highband_split(img, targets[i : i + 1].to(img.device).float(), cutoff)
        for key in out:
            out[key].append(float(split[key.removeprefix("hf_")][0]))
    for key, values in out.items():
        assert all(math.isfinite(v) for v in values), f"{row.label} {key}: non-finite values {values}"
    row.measures.update(out)
    return row


def feature_distance_per_sample(net: PerceptualLoss, row: StudyRow, targets: torch.Tensor) -> list[float]:
    """LPIPS-style distance of each reconstruction of ``row`` to its target on the features of ``net``.

    At every layer of ``net.features``: unit-normalise each position's feature vector across channels,
    sum the squared difference over channels, average over positions; then sum the layers with equal
    weights (LPIPS without its learned heads). Uncalibrated; meant for a network that no loss of the
    study optimises, so the metric is independent of the losses it ranks. Images are read one at a time.
    """
    assert len(targets) == len(row), f"{row.label}: {len(targets)} targets for {len(row)} reconstructions"
    out = []
    with torch.no_grad():
        for i in range(len(row)):
            img = row.image(i).float().clamp(-1, 1)
            tgt = targets[i : i + 1].to(img.device).float()
            assert img.shape == tgt.shape and img.ndim == 4, (tuple(img.shape), tuple(tgt.shape))
            fa, fb = net.features(img), net.features(tgt)
            total = 0.0
            for key in fa:
                a = fa[key] / (fa[key].square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                b = fb[key] / (fb[key].square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                total += float((a - b).square().sum(dim=1).mean())
            out.append(total)
    assert all(math.isfinite(v) for v in out), f"{row.label}: non-finite feature distances {out}"
    return out


def row_dir(work_dir: str | os.PathLike | None, label: str) -> Path | None:
    """The stream folder of the row ``label`` under ``work_dir`` (``None`` without one: the row stays in
    memory): ``label`` with every run of characters other than letters, digits, ``+`` and ``-`` as ``_``."""
    if work_dir is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9+-]+", "_", label).strip("_")
    assert slug, f"row label {label!r} gives no folder name"
    return Path(work_dir) / slug


def paired(a: StudyRow, b: StudyRow, key: str) -> PairedDifference:
    """``b − a`` of measure ``key`` over the shared samples (:func:`hrinv_nb.studies.verdict.paired_difference`)."""
    return paired_difference(a.measures[key], b.measures[key])


def busiest_box(img: torch.Tensor, size: int) -> tuple[int, int, int, int]:
    """``(top, left, size, size)`` of the square window of ``img`` ([1,3,H,W] or [3,H,W]) with the most
    gradient energy: where fine detail (hair, texture) is, for close-up crops."""
    x = img[0] if img.ndim == 4 else img
    assert x.ndim == 3 and size <= min(x.shape[1:]), (tuple(x.shape), size)
    g = x.detach().float().mean(0)
    energy = torch.zeros_like(g)
    energy[1:, :] += (g[1:, :] - g[:-1, :]).square()
    energy[:, 1:] += (g[:, 1:] - g[:, :-1]).square()
    window = F.avg_pool2d(energy[None, None], size, stride=1)[0, 0]
    flat = int(torch.argmax(window))
    top, left = divmod(flat, window.shape[1])
    return top, left, size, size


def summary_rows(rows: Sequence[StudyRow], keys: Sequence[str], fmt: str = "{:.3g}") -> list[list[str]]:
    """Table rows ``[label, 'mean ± sem' per key, seconds]`` for :func:`hrinv_nb.notebook.report.show_table`."""
    table = []
    for row in rows:
        cells = [row.label]
        for key in keys:
            if key in row.measures:
                cells.append(f"{fmt.format(row.mean(key))} ± {fmt.format(row.sem(key))}")
            else:
                cells.append("–")
        cells.append(f"{row.seconds:.0f}")
        table.append(cells)
    return table


def numbers_of(rows: Sequence[StudyRow]) -> dict[str, dict[str, Any]]:
    """Means, standard errors and per-sample values of every row (for the figure JSON)."""
    return {
        row.label: {
            **{f"{k}_mean": row.mean(k) for k in row.measures},
            **{f"{k}_sem": row.sem(k) for k in row.measures},
            "per_sample": row.measures,
            "seconds": round(row.seconds, 1),
            "cpu_seconds": round(row.cpu_seconds, 1),
            "settings": row.settings,
        }
        for row in rows
    }


def bar_with_errors(
    ax: Any,
    rows: Sequence[StudyRow],
    key: str,
    *,
    ylabel: str,
    colors: Mapping[str, str] | None = None,
    reference: float | None = None,
) -> None:
    """Bars of ``key``'s mean per row with ±1 standard error; an optional horizontal reference line."""
    labels = [r.label for r in rows]
    x = np.arange(len(rows))
    ax.bar(
        x,
        [r.mean(key) for r in rows],
        yerr=[r.sem(key) for r in rows],
        capsize=3,
        color=[(colors or {}).get(label, "C0") for label in labels],
    )
    if reference is not None:
        ax.axhline(reference, color="k", lw=0.8, ls="--")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)


def scaled_loss(
    name: str,
    *,
    image_size: int,
    downsample_size: int = -1,
    lambda_scale: str = "resolution",
    weights: str | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    downsampled_table: str = "256",
) -> PerceptualLoss:
    """``perceptual_loss(name, ...)`` whose λ table is rescaled to the actual loss-input size.

    ``downsampled_table`` is the λ table of a down-sampled loss input (``downsample_size > 0``):
    ``"256"``, the table the authors' configurations give for a 256² input (what
    :func:`hrinv_nb.losses.perceptual_loss` picks by default), or ``"1024"``, the full-resolution table
    kept at every input size, as the authors' public ``VGG16ConvLoss(downsample_size=256)`` does (its
    VGG16 conv loss is then 1/24.98 of ours on the same images). The authors' configurations never set a
    down-sampled size, so which of the two their Table II rows used is open; a full-resolution input
    always uses "1024". ``lambda_scale='resolution'`` is the package's balance (see
    :func:`hrinv_nb.losses.perceptual_loss`): λ times :func:`hrinv_nb.losses.resolution_lambda_scale`
    of the table in use at the side the loss actually sees (``downsample_size``, else the image's);
    at the paper's sizes (1024², 256² with its own table) the factor is exactly 1. ``'paper'`` keeps
    the table's λ unchanged. ``image_size`` is only checked (the loss reads the size at each call).
    """
    from ..losses import perceptual_loss

    if lambda_scale not in ("resolution", "paper"):
        raise ValueError(f"lambda_scale must be 'resolution' or 'paper', got {lambda_scale!r}")
    if downsampled_table not in ("256", "1024"):
        raise ValueError(f"downsampled_table must be '256' or '1024', got {downsampled_table!r}")
    if image_size <= 0:
        raise ValueError(f"image_size must be > 0, got {image_size}")
    table = downsampled_table if downsample_size > 0 else "1024"
    factor: float | str = "resolution" if lambda_scale == "resolution" else 1.0
    kwargs: dict[str, Any] = (
        {"weights": weights} if name in ("vgg16_conv", "vgg16_relu", "resnet50", "deit_s16") else {}
    )
    if name in ("vgg16_conv", "vgg16_relu", "vgg16_conv_random", "resnet50", "resnet50_random"):
        kwargs["table"] = table  # these networks have a "256" and a "1024" table
    return perceptual_loss(
        name, downsample_size=downsample_size, device=device, seed=seed, lambda_scale=factor, **kwargs
    )
