"""Cross-domain study helpers: content loading and inversion, and the measures of what LSO keeps and
restores. (Content × style pairs are mixed and optimised by :func:`hrinv_nb.gallery.stylize_pairs`.)

* :func:`invert_contents` — w-only W+ projection (Eq. 5) of N content images into G_s in memory-sized
  batches (:func:`hrinv_nb.projector.project_batch`: B independent problems, sum loss), optionally
  streamed to a folder and resumable (:func:`hrinv_nb.projector.project_stream`).
* :func:`masked_residual` — mean |a − b| inside a (soft) mask, per sample; :func:`dilate_mask` grows
  a mask so that a background measure ignores the head's edge.
* :func:`gram_style_distance` — a texture/style distance (Gram matrices of toy-VGG conv features).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..gallery import StreamedStylized, Stylized
from ..losses import PerceptualLoss, hooked_features, imagenet_normalise, vgg16_trunk
from ..lso import EARLY_ROWS  # noqa: F401  (re-exported for the notebooks)
from ..networks import Generator
from ..projector import StreamedProjection, project_batch, project_stream
from ..stream import ImageSource

GRAM_LAYERS = (2, 7, 14)  # conv1_2, conv2_2, conv3_3: low-level texture statistics


@dataclass
class Inversions:
    """``w`` [N, num_ws, w_dim] w-only W+ codes in G_s; ``images`` [N, 3, H, W] = G_s(w) (``None`` when
    streamed: ``stream`` reads them from its folder); ``batched``: in batches or a loop."""

    w: torch.Tensor
    images: torch.Tensor | None
    batched: bool
    stream: StreamedProjection | None = None

    def __len__(self) -> int:
        return int(self.w.shape[0])

    def image(self, index: int) -> torch.Tensor:
        """Reconstruction ``index`` [1, 3, H, W], from memory or from the stream's folder."""
        if self.images is not None:
            return self.images[index : index + 1]
        assert self.stream is not None, "neither images nor a stream"
        return self.stream.image(index).float()

    def iter_images(self, batch: int = 16) -> Iterator[torch.Tensor]:
        """The reconstructions in order, ``batch`` at a time ([b, 3, H, W]; at most ``batch`` read from disk)."""
        for start in range(0, len(self), batch):
            yield torch.cat([self.image(i) for i in range(start, min(start + batch, len(self)))])


def invert_contents(
    G: Generator,
    contents: torch.Tensor | ImageSource,
    *,
    loss: PerceptualLoss | str,
    num_steps: int,
    seed: int = 0,
    progress: bool = True,
    batch_size: int | None = None,
    out_dir: str | os.PathLike | None = None,
) -> Inversions:
    """w-only W+ projections (Eq. 5: no noise maps) of ``contents`` [N, 3, H, W] into ``G``.

    Uses :func:`hrinv_nb.projector.project_batch` (independent per-sample problems) in batches of
    ``batch_size`` (``None``: the memory default). With ``out_dir`` the codes and reconstructions are
    streamed to that folder (:func:`hrinv_nb.projector.project_stream`, resumable) and not kept in memory;
    ``contents`` may then be any :class:`hrinv_nb.stream.ImageSource` (e.g. ``ImageFiles``: one batch of
    images in memory). Without ``out_dir`` an ImageSource is read whole.
    """
    if out_dir is None and not isinstance(contents, torch.Tensor):
        contents = contents[0 : len(contents)]
    first = contents[0:1]
    assert first.ndim == 4 and first.shape[1] == 3, f"contents must be [N,3,H,W], got {tuple(first.shape)}"
    options = dict(loss=loss, num_steps=num_steps, optimize_noise=False, seed=seed, progress=progress)
    if out_dir is not None:
        stream = project_stream(G, contents, out_dir, batch_size=batch_size, **options)
        assert stream.w.shape == (len(contents), G.num_ws, G.w_dim) and torch.isfinite(stream.w).all()
        return Inversions(w=stream.w, images=None, batched=True, stream=stream)
    res = project_batch(G, contents, batch_size=batch_size, **options)
    w, images, batched = res.w, res.images, True
    assert w.shape == (contents.shape[0], G.num_ws, G.w_dim) and torch.isfinite(w).all()
    return Inversions(w=w.detach(), images=images.detach(), batched=batched)


def pair_image(result: Stylized | StreamedStylized, index: int, key: str = "image") -> torch.Tensor:
    """Pair ``index``'s ``image`` (the method's output) or ``mixed`` (before LSO) [1, 3, H, W] of a
    stylisation held in memory or streamed to a folder (:func:`hrinv_nb.gallery.stylize_pairs`)."""
    assert key in ("image", "mixed"), key
    if isinstance(result, StreamedStylized):
        return result.image(index, key).float()
    images = result.images if key == "image" else result.mixed
    return images[index : index + 1]


def iter_pair_images(
    result: Stylized | StreamedStylized, batch: int = 16
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """``(start, stop, mixed, image)`` for the pairs of a stylisation in order, ``batch`` at a time: the
    images before and after LSO ([stop - start, 3, H, W] each), from memory or read from the stream's
    folder (then at most ``batch`` pairs are in memory)."""
    assert batch >= 1, batch
    n = len(result)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        if isinstance(result, StreamedStylized):
            mixed = torch.cat([pair_image(result, i, "mixed") for i in range(start, stop)])
            image = torch.cat([pair_image(result, i, "image") for i in range(start, stop)])
        else:
            mixed, image = result.mixed[start:stop], result.images[start:stop]
        yield start, stop, mixed, image


def pair_codes(result: Stylized | StreamedStylized) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w, w_mixed)`` [P, num_ws, w_dim] each: the codes after and before LSO of every pair."""
    if isinstance(result, StreamedStylized):
        return result.load_w("w"), result.load_w("w_mixed")
    return result.w, result.w_mixed


def dilate_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a soft mask [B, 1, H, W] by ``pixels`` (max-pooling); 0 returns it unchanged."""
    assert mask.ndim == 4 and mask.shape[1] == 1, f"mask must be [B,1,H,W], got {tuple(mask.shape)}"
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask, kernel_size=2 * pixels + 1, stride=1, padding=pixels)


def masked_residual(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |a − b| (over channels) weighted by ``weight`` [B or 1, 1, H, W] in [0, 1] -> [B].

    Images are [B, 3, H, W] in [-1, 1]; the result is in [0, 2]. Pass ``1 − mask`` for the background.
    """
    assert a.shape == b.shape and a.ndim == 4, (tuple(a.shape), tuple(b.shape))
    assert weight.ndim == 4 and weight.shape[1] == 1 and weight.shape[0] in (1, a.shape[0]), tuple(weight.shape)
    weight = weight.to(a).expand(a.shape[0], 1, *a.shape[2:])
    diff = (a - b).abs().mean(dim=1, keepdim=True)
    total = weight.sum(dim=(1, 2, 3))
    assert (total > 0).all(), "the mask selects no pixel"
    return (diff * weight).sum(dim=(1, 2, 3)) / total


class GramStyleDistance:
    """Gatys-style texture distance: Σ_l ‖Gram(φ_l(a)) − Gram(φ_l(b))‖² over toy-VGG conv layers (per sample).

    Gram(φ) = φ φᵀ / (C·H·W) of the ImageNet-normalised image; layers default to conv1_2, conv2_2, conv3_3.
    A *style* measure: insensitive to where things are, sensitive to colours and textures.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None,
        layers: tuple[int, ...] = GRAM_LAYERS,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        """``weights``: a VGG16 file (the toy VGG in the toy world); ``seed`` instead builds a random trunk."""
        self.layers = tuple(layers)
        self.trunk = vgg16_trunk(max(self.layers), weights=weights, seed=seed).to(device).eval()
        self.device = torch.device(device)

    def grams(self, img: torch.Tensor) -> dict[int, torch.Tensor]:
        assert img.ndim == 4 and img.shape[1] == 3, tuple(img.shape)
        with torch.no_grad():
            feats = hooked_features(
                self.trunk,
                {k: self.trunk[k] for k in self.layers},
                imagenet_normalise(img.to(self.device, torch.float32)),
            )
        out = {}
        for k, f in feats.items():
            b, c, h, w = f.shape
            flat = f.reshape(b, c, h * w)
            out[k] = flat @ flat.transpose(1, 2) / (c * h * w)
        return out

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-sample distances [B] (``b`` may have batch 1 and is broadcast)."""
        ga, gb = self.grams(a), self.grams(b)
        return sum((ga[k] - gb[k].expand_as(ga[k])).square().sum(dim=(1, 2)) for k in self.layers).cpu()


def pixel_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error [B] of images in [-1, 1] (``b`` may have batch 1)."""
    assert a.ndim == 4 and b.ndim == 4 and a.shape[1:] == b.shape[1:], (tuple(a.shape), tuple(b.shape))
    return (a - b.expand_as(a)).square().mean(dim=(1, 2, 3)).detach().cpu()


def ellipse_mask(n: int, size: tuple[int, int], axes: tuple[float, float] = (0.32, 0.42)) -> torch.Tensor:
    """A centred elliptical "head" mask [n, 1, H, W] (semi-axes as fractions of W and H): the stated
    stand-in for real photos, which come without the renderer's mask."""
    h, w = size
    yy, xx = torch.meshgrid(torch.linspace(-0.5, 0.5, h), torch.linspace(-0.5, 0.5, w), indexing="ij")
    inside = (xx / axes[0]) ** 2 + (yy / axes[1]) ** 2 <= 1.0
    return inside.float().expand(n, 1, h, w).clone()


def load_contents(content_dir: str, n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` content images [n, 3, size, size] with head masks [n, 1, size, size] and a label of their origin.

    ``content_dir == ''``: held-out photo renders ``render_from_seed(seed, n)`` and the renderer's head
    masks (use seeds >= 1000). Otherwise the first ``n`` images of that folder in numeric order
    (:func:`hrinv_nb.notebook.assets.image_files`), centre-cropped and resized, with :func:`ellipse_mask`
    as the mask (``'$VAR'`` names an environment variable).
    """

    from ..images import load_image
    from ..notebook.assets import image_files, resolve_one
    from ..toy.render import render_from_seed

    assert n >= 1, n
    if not content_dir:
        imgs, masks = render_from_seed(seed, n, style="photo", size=(size, size), return_mask=True)
        return imgs, masks, f"photo renders (seed {seed}), renderer head masks"
    folder = resolve_one(content_dir, "content_dir", kind="dir")
    files = image_files(folder)[:n]  # numeric order: 2.jpg before 10.jpg (CelebA-HQ's 0.jpg ... 29999.jpg)
    if len(files) < n:
        raise FileNotFoundError(f"{folder}: found {len(files)} images, need {n}")
    imgs = torch.cat([load_image(p, size=size) for p in files])
    return imgs, ellipse_mask(n, (size, size)), f"{n} images from {folder}, elliptical stand-in masks"


def identity_embedder(value: str, device: str | torch.device = "cpu"):
    """An identity ``embed(img) -> [B, D]`` from a notebook parameter, or ``None``.

    ``''``: the toy identity embedder (data/id_embedder_toy.safetensors); ``'none'``: no identity
    measure; anything else: ArcFace IR-SE-50 weights (a path or ``$VAR``).
    """
    from ..notebook.config import asset_path

    if value == "none":
        return None
    if value == "":
        from ..toy.identity import id_embedder_fn, load_id_embedder

        return id_embedder_fn(
            load_id_embedder(asset_path("", "id_embedder_toy.safetensors", what="identity embedder"), device=device)
        )
    from ..identity import arcface_embedder, load_arcface

    return arcface_embedder(load_arcface(asset_path(value, None, what="ArcFace weights"), device=device))


def lso_measures(
    result, targets: torch.Tensor, *, embed=None, gram: GramStyleDistance | None = None
) -> dict[str, list[float]]:
    """Per-sample measures of an LSO result (batch B) against its content ``targets`` [B, 3, H, W].

    ``id_before``/``id_after``: identity distance content↔mixed / content↔LSO (with ``embed``);
    ``mse_to_mixed``: pixel MSE LSO↔mixed (style kept, lower = closer); ``gram_to_mixed``: Gram style
    distance LSO↔mixed (with ``gram``); ``offset_norm``: ‖w − w_m‖ over the rows.
    """
    from ..retrieval import identity_distance

    img, mixed = result.image, result.mixed_image
    assert img.shape == mixed.shape and targets.shape == img.shape, (tuple(img.shape), tuple(targets.shape))
    out = {
        "mse_to_mixed": pixel_mse(img, mixed).tolist(),
        "offset_norm": result.offset.flatten(1).norm(dim=1).cpu().tolist(),
    }
    if gram is not None:
        out["gram_to_mixed"] = gram(img, mixed).tolist()
    if embed is not None:
        out["id_before"] = identity_distance(embed, targets.cpu(), mixed.cpu()).tolist()
        out["id_after"] = identity_distance(embed, targets.cpu(), img.cpu()).tolist()
    return out


def summarise(values: dict[str, list[float]]) -> dict[str, float]:
    """Mean of every per-sample list (NaN-free), keyed like the input."""
    return {k: float(torch.tensor(v, dtype=torch.float64).mean()) for k, v in values.items() if len(v)}


# --- Controls and per-pair effects for the pre-registered claims of notebooks 07 and 08 -----------------


def other_content_index(content_index: torch.Tensor, n_contents: int, shift: int = 1) -> torch.Tensor:
    """Per pair, another content ``(c + shift) mod n_contents`` [P]: the wrong identity of a control.

    An identity gain measured against this content instead of the pair's own says whether a method
    brings the image closer to *its* content or to any face.
    """
    ci = torch.as_tensor(content_index).long().reshape(-1)
    assert n_contents >= 2, f"a control content needs at least two contents, got {n_contents}"
    assert shift % n_contents > 0, f"shift {shift} maps every content onto itself"
    assert int(ci.min()) >= 0 and int(ci.max()) < n_contents, "content index out of range"
    return (ci + shift) % n_contents


def identity_gain(embed, reference: torch.Tensor, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per-sample identity distance ``reference↔before − reference↔after`` [B] (> 0: ``after`` is closer).

    The distance is :func:`hrinv_nb.retrieval.identity_distance`: the squared L2 distance between
    unit-norm embeddings, 0 (same identity) to 4 (opposite); the gain therefore lies in [-4, 4].
    """
    from ..retrieval import identity_distance

    assert reference.shape == before.shape == after.shape and reference.ndim == 4, (
        tuple(reference.shape),
        tuple(before.shape),
        tuple(after.shape),
    )
    ref = reference.cpu()
    return (identity_distance(embed, ref, before.cpu()) - identity_distance(embed, ref, after.cpu())).detach().cpu()


def style_gap_share(
    gram: GramStyleDistance, images: torch.Tensor, mixed: torch.Tensor, contents: torch.Tensor
) -> torch.Tensor:
    """Per-sample ``Gram(images, mixed) / Gram(contents, mixed)`` [B]: the style change ``images`` make
    away from the mixed image, as a share of the content↔mixed style gap (0: the mixed image's style
    kept; about 1: as far from it as the unstylised content)."""
    assert images.shape == mixed.shape == contents.shape and images.ndim == 4, (
        tuple(images.shape),
        tuple(mixed.shape),
        tuple(contents.shape),
    )
    gap = gram(contents, mixed)
    assert (gap > 0).all(), "a content has the mixed image's exact style: the share is undefined"
    return gram(images, mixed) / gap


def scaled_gamma(G: Generator, factor: float) -> dict[int, float]:
    """The paper's γ schedule (:func:`hrinv_nb.blending.paper_gamma`) times ``factor`` ∈ [0, 1]: a lerp
    with more weight on G_s and w_s (``factor`` 0.5: half-way towards the content's own reconstruction)."""
    from ..blending import paper_gamma

    assert 0.0 <= factor <= 1.0, f"factor must lie in [0, 1], got {factor}"
    return {r: float(g) * factor for r, g in paper_gamma(G).items()}


def region_change(images: torch.Tensor, mixed: torch.Tensor, background: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample mean |images − mixed| outside (``background``) and inside (``head``) a mask [B, 1, H, W]
    of background weights in [0, 1], and ``background_share`` = background / (background + head), the
    share of a method's change that falls on the background (0.5: as much there as on the head)."""
    bg = masked_residual(images, mixed, background).cpu()
    head = masked_residual(images, mixed, 1 - background).cpu()
    share = bg / (bg + head).clamp_min(1e-12)
    return {"background": bg, "head": head, "background_share": share}
