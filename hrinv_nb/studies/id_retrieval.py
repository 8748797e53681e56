"""Table III's main loop (notebook 12), streamed to a folder and resumable.

:func:`run_study` inverts N contents into G_s once (w-only W+, Eq. 5), then, per target style,
stylises every content with ``n_styles`` gallery codes of G_t by layer swapping and lerp, and the
first ``lso_styles`` styles of every content by lerp + LSO (Eq. 8), and scores each set by ID
retrieval, Fréchet distances in named feature spaces and, given Inception weights, the real FID.

Memory depends on the batch sizes, not on N or the number of pairs: every image is streamed to
``work_dir`` as it is produced (:func:`hrinv_nb.projector.project_stream`,
:func:`hrinv_nb.gallery.stylize_pairs` with ``out_dir``) and the scores are computed by reading the
images back ``read_batch`` at a time (only the features, [M, d], are kept). The folder::

    work_dir/manifest.json, chunks/, items/   one record per finished style (its scores and examples)
    work_dir/projection/                      the inversions
    work_dir/<style>/layer_swap|lerp|lerp_lso/  the stylised pairs

A rerun with the same inputs and ``work_dir`` skips every finished style (G_t is not even loaded) and
resumes an unfinished one at its last finished batch; any other input or setting stops it before
any computation with :class:`hrinv_nb.stream.ResumeMismatchError` naming what differs.

Besides the set scores, every style keeps per-pair records (``StudyResult.pairs``): for each method and
for the style's G_t samples themselves (the code of the content weight 0: no content at all, the
do-nothing control of ID retrieval), each pair's content, gallery style, retrieval hit and retrieval
margin (:func:`retrieval_per_pair`), so that a notebook can compute standard errors clustered by content.

Two shortcuts keep the work at what the scores need, with the same numbers: a layer-swapped image
does not depend on the style code (w_s is kept, G_m is fixed per target style), so one image per
content is rendered and counted once per style, as every pair; and "lerp (LSO pairs)" is the
mixed image that LSO starts from (G_m(w_m) of the same pairs), read from the LSO folder.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import HrinvError
from ..fid import InceptionFeatures, fid_from_features, frechet_distance
from ..gallery import StreamedStylized, pair_indices, style_codes, stylize_pairs
from ..metrics import psnr_per_sample
from ..networks import Generator
from ..projector import StreamedProjection, project_stream
from ..retrieval import embed_batches, id_retrieval
from ..stream import ImageSource, StreamFileError, fingerprint, iter_batches, iter_chunks, npz_writer, open_store

METHODS = ("layer swap", "lerp", "lerp (LSO pairs)", "lerp + LSO")
NO_CONTENT = "G_t sample (no content)"
"""The per-pair records' do-nothing control: the gallery style's own G_t image, paired with every content."""
KIND = "id_retrieval_study_v2"  # v2: per-pair records (folders of the first version, without them, are refused)
_STYLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
OnChunk = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FeatureSpace:
    """A named feature space: ``embed(img [B, 3, H, W] in [-1, 1]) -> [B, d]``.

    ``key``: a plain description of what defines the space (weights file, input size) that a resumed
    run must match; the function itself is not fingerprinted.
    """

    name: str
    embed: Callable[[torch.Tensor], torch.Tensor]
    key: Any

    def fingerprint(self) -> dict[str, Any]:
        return {"space": self.name, "key": self.key}


@dataclass(frozen=True)
class StyleInputs:
    """One target style: its name (a folder name), how to load G_t and what defines it (``key``), the
    reference images of its Fréchet distances (a tensor or an :class:`~hrinv_nb.stream.ImageSource`),
    an optional second reference set (the floor), and the real FID's reference folder."""

    name: str
    load_G_t: Callable[[], Generator]
    key: Any
    reference: torch.Tensor | ImageSource
    floor: torch.Tensor | ImageSource | None = None
    reference_dir: str | os.PathLike | None = None

    def fingerprint(self) -> dict[str, Any]:
        folder = None if self.reference_dir is None else folder_fingerprint(self.reference_dir)
        return {
            "style": self.name,
            "G_t": self.key,
            "reference": fingerprint(self.reference),
            "floor": fingerprint(self.floor),
            "reference_dir": folder,
        }


@dataclass(frozen=True)
class StudySettings:
    """The protocol: ``n_styles`` gallery styles per content (seed ``seed + 100·k`` for style k),
    LSO on the first ``lso_styles`` of them, the step counts, λ_reg, the projection and LSO losses
    (modules or names), the retrieval ``threshold``, the sizes of the real FID and how images are
    stored (``npz``: float, exact; ``png``: 8-bit, about 1/8 of the disk)."""

    n_styles: int
    lso_styles: int
    proj_steps: int
    lso_steps: int
    reg_weight: float
    projection_loss: Any = "vgg16_conv"
    lso_loss: Any = "d_h"
    seed: int = 0
    threshold: float = 1.5
    fid_sizes: tuple[int, ...] = ()
    image_format: str = "npz"

    def fingerprint(self) -> dict[str, Any]:
        return {f: fingerprint(getattr(self, f)) for f in self.__dataclass_fields__}


@dataclass
class StudyResult:
    """The scores per style (``results[style][method]``: ``top1``, ``n``, ``top1_thresh``, ``frechet
    <space>``, ``FID <size>``; ``results[style]['floor']``), the per-pair records (``pairs[style][method]``,
    methods :data:`METHODS` and :data:`NO_CONTENT`: lists ``content``, ``style``, ``hit``, ``margin``),
    the projection's PSNR and ID retrieval, example images per style, and which styles this call
    computed (the others were read back)."""

    chance: float
    projection_psnr_db: float
    projection_id_top1: float
    results: dict[str, dict[str, dict[str, float]]]
    examples: dict[str, dict[str, torch.Tensor]]
    spaces: list[str]
    computed: list[str]
    seconds: dict[str, float]
    folder: Path
    projection: StreamedProjection = field(repr=False)
    pairs: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)

    def numbers(self) -> dict[str, Any]:
        """The plain numbers (for a figure's JSON record)."""
        return {
            "chance": self.chance,
            "projection_psnr_db": self.projection_psnr_db,
            "projection_id_top1": self.projection_id_top1,
            "results": self.results,
            "pairs": self.pairs,
        }


def folder_fingerprint(folder: str | os.PathLike) -> dict[str, Any]:
    """Names, sizes and modification times of the files of ``folder`` (not recursive): what a resume must match."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"not a folder: {path}")
    files = sorted(p for p in path.iterdir() if p.is_file())
    return {"folder": str(path), "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]}


def retrieval_per_pair(content_emb: torch.Tensor, emb: torch.Tensor, labels: torch.Tensor) -> dict[str, list[float]]:
    """Per stylised image: ``hit`` (1.0 when its nearest content is its own, else 0.0) and ``margin``,
    the squared distance to the nearest *other* content minus the squared distance to its own (> 0
    exactly when it is retrieved; ties aside): ID retrieval's per-pair, continuous form.

    ``content_emb`` [N, d], ``emb`` [M, d], ``labels`` [M] (content indices); N ≥ 2.
    """
    assert content_emb.ndim == 2 and emb.ndim == 2 and content_emb.shape[1] == emb.shape[1], (
        f"{tuple(content_emb.shape)} vs {tuple(emb.shape)}"
    )
    labels = torch.as_tensor(labels).long().reshape(-1).cpu()
    assert labels.shape[0] == emb.shape[0] and content_emb.shape[0] >= 2, (labels.shape, content_emb.shape)
    d = torch.cdist(emb.double().cpu(), content_emb.double().cpu()).square()
    own = d.gather(1, labels[:, None]).squeeze(1)
    others = d.scatter(1, labels[:, None], float("inf")).min(dim=1).values
    hit = d.argmin(dim=1) == labels
    return {"hit": hit.double().tolist(), "margin": (others - own).tolist()}


def features(
    batches: Iterable[torch.Tensor], extractors: Mapping[str, Callable[[torch.Tensor], torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """Every extractor's features [M, d] of the images of ``batches``, in one pass (one batch in memory)."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in extractors}
    with torch.no_grad():
        for batch in batches:
            for name, extract in extractors.items():
                out[name].append(embed_batches(extract, [batch]))
            del batch
    if not all(out.values()):
        raise HrinvError("no images to score")
    return {name: torch.cat(parts) for name, parts in out.items()}


def _check_inputs(
    G_s: Generator,
    contents: torch.Tensor | ImageSource,
    styles: Sequence[StyleInputs],
    spaces: Sequence[FeatureSpace],
    settings: StudySettings,
    inception: InceptionFeatures | None,
) -> int:
    """Everything checkable before any work; returns N."""
    n = len(contents)
    first = contents[0:1]
    res = G_s.img_resolution
    assert first.ndim == 4 and tuple(first.shape) == (1, 3, res, res), (
        f"contents must be [N,3,{res},{res}] (or sliced like it), got {tuple(first.shape)}"
    )
    if n < 2:
        raise HrinvError(f"ID retrieval needs at least two contents, got {n}")
    if not styles:
        raise HrinvError("no target styles")
    names = [s.name for s in styles]
    bad = [s for s in names if not _STYLE_NAME.fullmatch(s) or s in ("projection", "chunks", "items")]
    if bad or len(set(names)) != len(names):
        raise HrinvError(f"style names must be distinct plain folder names, got {names}")
    space_names = [s.name for s in spaces]
    if not spaces or len(set(space_names)) != len(space_names):
        raise HrinvError(f"feature spaces need distinct names, got {space_names}")
    if not (1 <= settings.lso_styles <= settings.n_styles):
        raise HrinvError(f"lso_styles must be in 1..n_styles={settings.n_styles}, got {settings.lso_styles}")
    if settings.image_format not in ("npz", "png"):
        raise HrinvError(f"image_format must be 'npz' or 'png', got {settings.image_format!r}")
    if inception is not None:
        if not settings.fid_sizes:
            raise HrinvError("FID asked for (Inception weights given) but no fid_sizes")
        missing = [s.name for s in styles if s.reference_dir is None]
        if missing:
            raise HrinvError(f"FID needs a reference folder for every style; none for {missing}")
        for s in styles:
            if not Path(s.reference_dir).is_dir():
                raise FileNotFoundError(f"{s.name}: FID reference folder not found: {s.reference_dir}")
    return n


def run_study(
    G_s: Generator,
    contents: torch.Tensor | ImageSource,
    styles: Sequence[StyleInputs],
    identity: FeatureSpace,
    spaces: Sequence[FeatureSpace],
    settings: StudySettings,
    work_dir: str | os.PathLike,
    *,
    inception: InceptionFeatures | None = None,
    batch_size: int | None = None,
    read_batch: int = 16,
    progress: bool = True,
    on_chunk: OnChunk | None = None,
    log: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run (or resume) Table III's loop in ``work_dir`` and return its scores (see the module docstring).

    ``contents`` [N, 3, R, R] in [-1, 1] (R = G_s's resolution), or an :class:`~hrinv_nb.stream.ImageSource`
    such as :class:`~hrinv_nb.stream.ImageFiles` (read a batch at a time). ``identity`` ranks the
    retrieval; ``spaces`` are the Fréchet distances' feature spaces (``identity`` may be one of them).
    ``inception``: the real FID at ``settings.fid_sizes`` against each style's ``reference_dir``.
    ``batch_size``: images per batch of the projection, the renders and LSO (``None`` or 0: each one's
    memory default, :func:`hrinv_nb.memory.default_batch_size`; a resume keeps the folder's). ``read_batch``:
    images per batch when reading back. ``on_chunk(stage, start, stop)`` is called after every batch
    computed (stages ``projection``, ``<style>/<method folder>``, and ``styles`` after each finished style);
    ``log`` receives a line for the projection and one per style.
    """
    n = _check_inputs(G_s, contents, styles, spaces, settings, inception)
    s = settings
    work = Path(work_dir)
    params = {
        "G_s": G_s, "contents": contents, "styles": list(styles), "identity": identity, "spaces": list(spaces),
        "inception": inception, **{f: getattr(s, f) for f in s.__dataclass_fields__},  # a mismatch names the setting
    }  # fmt: skip
    store = open_store(work, KIND, params, len(styles), 1, lambda: 1)
    batch = batch_size or None

    def hook(stage: str) -> Callable[[int, int], None] | None:
        return None if on_chunk is None else (lambda a, b: on_chunk(stage, a, b))

    proj = project_stream(
        G_s, contents, work / "projection", batch_size=batch, loss=s.projection_loss, num_steps=s.proj_steps,
        seed=s.seed, optimize_noise=False, w_space="w+", progress=progress, image_format=s.image_format,
        on_chunk=hook("projection"),
    )  # fmt: skip
    content_emb = embed_batches(identity.embed, iter_batches(contents, read_batch))
    assert content_emb.shape[0] == n and torch.isfinite(content_emb).all()
    psnrs = []
    for start, recon in zip(range(0, n, read_batch), proj.iter_images(read_batch)):
        psnrs += psnr_per_sample(recon, contents[start : start + read_batch].to(recon))
    id_proj = id_retrieval(content_emb, embed_batches(identity.embed, proj.iter_images(read_batch)), torch.arange(n))
    if log is not None:
        log(
            f"projection: PSNR {np.mean(psnrs):.2f} dB, ID retrieval of the reconstructions {id_proj['top1']:.1%}"
            + (f" (computed {len(proj.computed)} batches)" if proj.computed else " (read back from the folder)")
        )

    results: dict[str, dict[str, dict[str, float]]] = {}
    pairs: dict[str, dict[str, dict[str, list[float]]]] = {}
    examples: dict[str, dict[str, torch.Tensor]] = {}
    computed, seconds = [], {}
    for k, (start, stop, record) in enumerate(iter_chunks(store)):
        style = styles[k]
        t0 = time.perf_counter()
        if record is None:
            row, per_pair, shown = _run_style(G_s, contents, proj, content_emb, style, k, identity, spaces, s, work,
                                              inception, batch, read_batch, progress, hook)  # fmt: skip
            labels = list(shown)
            files = [
                (store.item_path(k, "examples.npz"), npz_writer({f"e{i}": shown[x] for i, x in enumerate(labels)}))
            ]
            item = {
                "style": style.name, "row": row, "pairs": per_pair, "examples": labels,
                "seconds": time.perf_counter() - t0,
            }  # fmt: skip
            record = store.write_chunk(start, stop, files, [item])
            computed.append(style.name)
            if on_chunk is not None:
                on_chunk("styles", start, stop)
        item = record.items[0]
        results[style.name] = item["row"]
        pairs[style.name] = item["pairs"]
        examples[style.name] = _read_examples(store.item_path(k, "examples.npz"), item["examples"])
        seconds[style.name] = float(item["seconds"])
        if log is not None:
            row = results[style.name]
            log(
                f"{style.name}: " + ", ".join(f"{m} {row[m]['top1']:.1%}" for m in METHODS)
                + (f" ({seconds[style.name]:.0f} s)" if style.name in computed else " (read back from the folder)")
            )  # fmt: skip
    store.finish()
    return StudyResult(
        chance=1.0 / n,
        projection_psnr_db=float(np.mean(psnrs)),
        projection_id_top1=id_proj["top1"],
        results=results,
        examples=examples,
        spaces=[sp.name for sp in spaces],
        computed=computed,
        seconds=seconds,
        folder=work,
        projection=proj,
        pairs=pairs,
    )


def _read_examples(path: Path, labels: Sequence[str]) -> dict[str, torch.Tensor]:
    """The example images [1, 3, H, W] of a finished style, by label (read without pickle)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {label: torch.from_numpy(np.array(data[f"e{i}"])) for i, label in enumerate(labels)}
    except (OSError, KeyError, ValueError) as err:
        raise StreamFileError(f"{path}: not an examples file ({err})") from err


def _run_style(
    G_s: Generator,
    contents: torch.Tensor | ImageSource,
    proj: StreamedProjection,
    content_emb: torch.Tensor,
    style: StyleInputs,
    k: int,
    identity: FeatureSpace,
    spaces: Sequence[FeatureSpace],
    s: StudySettings,
    work: Path,
    inception: InceptionFeatures | None,
    batch: int | None,
    read_batch: int,
    progress: bool,
    hook: Callable[[str], Callable[[int, int], None] | None],
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[float]]], dict[str, torch.Tensor]]:
    """Stylise (streamed, resumable) and score one style; returns its row of scores, its per-pair records
    (see :class:`StudyResult`) and its example images."""
    n = proj.w.shape[0]
    w_s = proj.w.to(next(G_s.parameters()).device)  # (read from disk: on the CPU)
    G_t = style.load_G_t()
    w_t = style_codes(G_t, s.n_styles, seed=s.seed + 100 * k)
    folder = work / style.name
    common = dict(progress=progress, image_format=s.image_format)
    swap = stylize_pairs(
        G_s, G_t, w_s, w_t, "layer_swap", pairs=(torch.arange(n), torch.zeros(n, dtype=torch.long)),
        batch_size=batch, out_dir=folder / "layer_swap", on_chunk=hook(f"{style.name}/layer_swap"), **common,
    )  # fmt: skip
    lerp = stylize_pairs(
        G_s, G_t, w_s, w_t, "lerp", batch_size=batch, out_dir=folder / "lerp", on_chunk=hook(f"{style.name}/lerp"),
        **common,
    )  # fmt: skip
    ci, si = pair_indices(n, s.n_styles)
    lso_pairs = (ci[si < s.lso_styles], si[si < s.lso_styles])
    lso = stylize_pairs(
        G_s, G_t, w_s, w_t, "lerp_lso", contents=contents, pairs=lso_pairs, lso_batch_size=batch,
        lso_kwargs={"num_steps": s.lso_steps, "loss": s.lso_loss, "reg_weight": s.reg_weight, "seed": s.seed},
        out_dir=folder / "lerp_lso", on_chunk=hook(f"{style.name}/lerp_lso"), **common,
    )  # fmt: skip
    assert (
        isinstance(swap, StreamedStylized) and isinstance(lerp, StreamedStylized) and isinstance(lso, StreamedStylized)
    )

    extractors = {f"frechet {sp.name}": sp.embed for sp in spaces}
    fid_sizes = list(dict.fromkeys(s.fid_sizes)) if inception is not None else []
    generated: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"identity": identity.embed, **extractors}
    for size in fid_sizes:
        generated[f"FID {size}"] = lambda x, size=size: inception.images(x, size)

    per_pair: dict[str, dict[str, list[float]]] = {}

    def record(method: str, emb: torch.Tensor, labels: torch.Tensor, style_index: torch.Tensor) -> None:
        assert emb.shape[0] == labels.numel() == style_index.numel(), (emb.shape, labels.shape, style_index.shape)
        per_pair[method] = {
            "content": labels.long().tolist(),
            "style": style_index.long().tolist(),
            **retrieval_per_pair(content_emb, emb, labels),
        }

    def score(
        method: str, reader: Iterable[torch.Tensor], labels: torch.Tensor, style_index: torch.Tensor, repeat: int = 1
    ) -> dict[str, float]:
        feats = {name: f.repeat_interleave(repeat, dim=0) for name, f in features(reader, generated).items()}
        record(method, feats["identity"], labels, style_index)
        r = id_retrieval(content_emb, feats["identity"], labels, s.threshold)
        row = {"top1": r["top1"], "n": r["n"], "top1_thresh": r["top1_thresh"]}
        for sp in spaces:
            row[f"frechet {sp.name}"] = frechet_distance(feats[f"frechet {sp.name}"], reference[f"frechet {sp.name}"])
        for size in fid_sizes:
            row[f"FID {size}"] = fid_from_features(feats[f"FID {size}"], reference_inception)
        return row

    reference = features(iter_batches(style.reference, read_batch), extractors)
    reference_inception = inception.folder(style.reference_dir) if inception is not None else None
    row: dict[str, dict[str, float]] = {"floor": {f"frechet {sp.name}": float("nan") for sp in spaces}}
    if style.floor is not None:
        floor = features(iter_batches(style.floor, read_batch), extractors)
        row["floor"] = {name: frechet_distance(floor[name], reference[name]) for name in reference}
    row["layer swap"] = score("layer swap", swap.iter_images(read_batch), ci, si, s.n_styles)  # content-major
    row["lerp"] = score("lerp", lerp.iter_images(read_batch), lerp.content_index, lerp.style_index)
    row["lerp (LSO pairs)"] = score(
        "lerp (LSO pairs)", lso.iter_images(read_batch, "mixed"), lso.content_index, lso.style_index
    )
    row["lerp + LSO"] = score("lerp + LSO", lso.iter_images(read_batch), lso.content_index, lso.style_index)
    with torch.no_grad():  # the gallery's own images: each paired with every content (the no-content control)
        gallery = torch.cat(
            [G_t.synthesis(w_t[a : a + read_batch], noise_mode="const").cpu() for a in range(0, s.n_styles, read_batch)]
        )
    record(NO_CONTENT, embed_batches(identity.embed, iter_batches(gallery, read_batch))[si], ci, si)
    shown = {"content 1": contents[0:1].cpu(), "style 1": gallery[0:1]}
    if s.n_styles >= 2:
        shown["style 2"] = gallery[1:2]
    shown["layer swap"] = swap.image(0)
    shown["lerp, style 1"] = lerp.image(0)
    if s.n_styles >= 2:
        shown["lerp, style 2"] = lerp.image(1)
    shown["lerp + LSO, style 1"] = lso.image(0)
    json.dumps([row, per_pair])  # plain numbers only (NaN allowed)
    return row, per_pair, {label: img.float().contiguous() for label, img in shown.items()}


def file_key(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """A weight file's name, size and modification time (``None`` for none): a :class:`FeatureSpace` or
    :class:`StyleInputs` key, so that a resume notices a replaced file."""
    if path is None:
        return None
    stat = Path(path).stat()
    return {"file": Path(path).name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


__all__ = [
    "METHODS",
    "FeatureSpace",
    "StudyResult",
    "StudySettings",
    "StyleInputs",
    "NO_CONTENT",
    "features",
    "file_key",
    "folder_fingerprint",
    "retrieval_per_pair",
    "run_study",
]
