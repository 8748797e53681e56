"""Measured properties of the toy world (issue 13): noise, sharpness, styles, perceptual nets, Style-INR.

    python -m hrinv_nb.toy.quality                 # writes data/quality.json and figures/toy_world_*.png
    python -m hrinv_nb.toy.quality --assets DIR --out q.json --figures-dir figs --n-frechet 200 --invert-steps 50

Every measurement is a function of networks passed in (no global state, every seed explicit through a
``torch.Generator``), resolution-generic, and is reported beside the value the issue quotes for the old
64² world (``TODAY``) and its target (``TARGETS``). :func:`evaluate` runs the sections on the assets of
a folder; a section whose asset is missing (or fails) records ``"unavailable: <reason>"`` instead of
crashing. Conventions:

* PSNR in dB on images clamped to [-1, 1] (peak-to-peak 2), float (no uint8 rounding), the mean of the
  per-sample values (``inf`` for identical images).
* Bands are radial, in units of Nyquist (:mod:`hrinv_nb.spectral`); "the power above c" of a difference is
  its mean squared value carried by the bins above c × Nyquist (Parseval), pooled over the samples.
* Identity distances are Euclidean distances between the toy embedder's unit-norm embeddings.
* Fréchet distances are in the toy VGG16's global-average-pooled conv5_3 features at its 32² pretraining
  size (not FID: no Inception network is involved); the floor is two independent render sets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..files import atomic_write
from ..networks import Generator
from ..spectral import radial_frequency, residual_band_power

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
FIGURES = REPO / "figures"
PRETRAIN_SIZE = 32  # the toy perceptual nets' pretraining side (hrinv_nb.toy.vgg.PRETRAIN_SIZE)
PAPER_IMAGE_SIDE, PAPER_PRETRAIN_SIDE = 1024, 224
EARLY_ROWS = 5  # LSO's "early rows 0-4"
SCHEMA = "hrinv_nb.toy.quality/2"

Embed = Callable[[torch.Tensor], torch.Tensor]

# The old 64² world, as issue 13 quotes it (Fréchet distances and retrieval from the old data/quality.json).
TODAY: dict[str, Any] = {
    "noise.psnr_between_draws_db": 67.9,
    "noise.high_band_share": None,
    "noise.identity_distance_ratio": None,
    "noise.max_strength": 8e-4,
    "sharpness.ratio": 0.10,
    "styles.band_ratio": {"cartoon": 0.13, "caricature": 0.07, "anime": 0.12},
    "styles.classifier_share": None,
    "styles.identity_top1": {"cartoon": 0.95, "caricature": 0.75, "anime": 0.79},
    "styles.frechet_toy_vgg": {"cartoon": 8.39, "caricature": 7.09, "anime": 2.78},
    "styles.frechet_floor": 0.005,
    "perceptual.scale_gap": 2.0,
    "perceptual.early_rows_reach": 0.25,
    "inr.psnr_vs_G_s_db": 17.0,
    "inr.wide_inversion_psnr_db": None,
}
# (low, high) bounds; None = unbounded on that side; a missing key: shown, not judged.
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "noise.psnr_between_draws_db": (20.0, 35.0),
    "noise.high_band_share": (0.70, None),
    "noise.identity_distance_ratio": (None, 0.10),
    "sharpness.ratio": (0.5, 2.0),
    "styles.band_ratio": (0.5, None),
    "styles.classifier_share": (0.95, None),
    "styles.identity_top1": (0.80, None),
    "inr.psnr_vs_G_s_db": (30.0, None),
    "inr.wide_inversion_psnr_db": (25.0, None),
}
LABELS: dict[str, str] = {
    "noise.psnr_between_draws_db": "G_s, same w, two noise draws: PSNR (dB)",
    "noise.high_band_share": "their difference: power share above 0.25 Nyquist",
    "noise.identity_distance_ratio": "their identity distance / between identities",
    "noise.max_strength": "largest learned noise strength",
    "sharpness.ratio": "G_s power above 0.5 Nyquist / photo renders'",
    "styles.band_ratio": "G_t(w) - G_s(w) high band / style render - photo render",
    "styles.classifier_share": "G_t samples classified as their style",
    "styles.identity_top1": "identity: G_t(w) retrieves G_s(w), top-1 of n",
    "styles.frechet_toy_vgg": "toy-VGG Fréchet distance, G_t vs its renders",
    "styles.frechet_floor": "its floor (renders vs renders)",
    "perceptual.scale_gap": "image side / pretraining side",
    "perceptual.early_rows_reach": "resolution reached by rows 0-4 / image side",
    "inr.psnr_vs_G_s_db": "Style-INR vs G_s, same w and noise: PSNR (dB)",
    "inr.wide_inversion_psnr_db": "R x 3R photo render, optim(w, n): PSNR (dB)",
}


# ----------------------------------------------------------------------------------------------
# Image measures


def psnr_db(img: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over samples of the PSNR (dB) of [B,3,H,W] images clamped to [-1, 1] (peak 2); ``inf`` if identical."""
    assert img.ndim == 4 and img.shape == target.shape, f"{tuple(img.shape)} vs {tuple(target.shape)}"
    a, b = img.detach().double().clamp(-1, 1), target.detach().double().to(img.device).clamp(-1, 1)
    mse = (a - b).square().mean(dim=(1, 2, 3))
    values = torch.where(mse > 0, 10 * torch.log10(4.0 / mse.clamp_min(1e-300)), torch.full_like(mse, math.inf))
    return float(values.mean())


def band_share(diff: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of the power of ``diff`` [B,C,H,W] (DC included) in the bins above ``cutoff`` × Nyquist, pooled; NaN if 0."""
    assert diff.ndim == 4, tuple(diff.shape)
    zero = torch.zeros_like(diff)
    total = float(residual_band_power(diff, zero, -1.0).sum())
    return float(residual_band_power(diff, zero, cutoff).sum()) / total if total > 0 else math.nan


def band_power_of_difference(a: torch.Tensor, b: torch.Tensor, cutoff: float = 0.25) -> float:
    """Mean (over samples and channels) power of ``a − b`` above ``cutoff`` × Nyquist."""
    return float(residual_band_power(a, b, cutoff).mean())


def own_band_power(img: torch.Tensor, cutoff: float = 0.5) -> float:
    """Mean power of the images themselves (each channel's mean removed) above ``cutoff`` × Nyquist."""
    assert img.ndim == 4, tuple(img.shape)
    x = img.detach().double()
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return float(residual_band_power(x, torch.zeros_like(x), cutoff).mean())


def radial_spectrum(img: torch.Tensor, n_bins: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power of [B,C,H,W] images (channel means removed): (bin centres / Nyquist, power) [n_bins].

    Bins cover 0 … √2 × Nyquist; the power per bin is the mean over its fft bins, samples and channels.
    """
    assert img.ndim == 4, tuple(img.shape)
    x = img.detach().double()
    x = x - x.mean(dim=(2, 3), keepdim=True)
    h, w = x.shape[-2:]
    power = (torch.fft.fft2(x).abs().square() / float(h * w) ** 2).mean(dim=(0, 1))
    freq = radial_frequency(h, w, x.device)
    edges = torch.linspace(0, math.sqrt(2) + 1e-9, n_bins + 1, dtype=torch.float64)
    index = torch.bucketize(freq.flatten(), edges[1:-1])
    total = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, power.flatten())
    count = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(power.flatten()))
    return (edges[:-1] + edges[1:]) / 2, total / count.clamp_min(1)


def frechet_features(
    trunk: torch.nn.Module, img: torch.Tensor, size: int = PRETRAIN_SIZE, batch: int = 128
) -> torch.Tensor:
    """Global-average-pooled features of a VGG trunk on ``img`` area-resized to ``size``² ([B, C])."""
    from ..losses import imagenet_normalise

    out = []
    with torch.no_grad():
        for i in range(0, img.shape[0], batch):
            x = F.interpolate(img[i : i + batch].float(), size=(size, size), mode="area")
            out.append(trunk(imagenet_normalise(x)).mean(dim=(2, 3)).cpu())
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# Generators with explicit noise


def draw_noise(G: Generator, batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Fresh N(0, 1) maps [batch, 1, r, r] for every noise input of ``G`` (by buffer name)."""
    from .world import draw_generator_noise

    return draw_generator_noise(G, batch, generator)


def synthesize(G: Generator, w: torch.Tensor, noise: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
    """G.synthesis(w) on per-sample noise maps, no gradients, clamped to [-1, 1]: [B, 3, R, R]."""
    from .training import synthesize_with_noise

    assert w.ndim == 3 and w.shape[1:] == (G.num_ws, G.w_dim), (
        f"w must be [B,{G.num_ws},{G.w_dim}], got {tuple(w.shape)}"
    )
    with torch.no_grad():
        img = synthesize_with_noise(G, w, dict(noise) if noise is not None else None).clamp(-1, 1)
    assert img.shape == (w.shape[0], 3, G.img_resolution, G.img_resolution), tuple(img.shape)
    return img


def mapped(G: Generator, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(z [n, z_dim], w [n, num_ws, w_dim]) from ``torch.Generator(seed)``, ψ = 1."""
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return z, G.mapping(z, None)


def noise_draws(G: Generator, w: torch.Tensor, n_draws: int, seed: int) -> torch.Tensor:
    """G(w, n_k) for ``n_draws`` independent draws of all noise maps: [n_draws, B, 3, R, R] (drawn on the
    CPU from ``seed``, so the same on every device, then moved to w's)."""
    g = torch.Generator().manual_seed(seed)

    def draw() -> dict[str, torch.Tensor]:
        return {k: v.to(w.device) for k, v in draw_noise(G, w.shape[0], g).items()}

    return torch.stack([synthesize(G, w, draw()) for _ in range(n_draws)])


def learned_noise_strengths(G: Generator) -> dict[str, float]:
    """Every synthesis layer's learned noise strength, by layer name."""
    return {
        name: float(module.noise_strength.detach())
        for name, module in G.synthesis.named_modules()
        if isinstance(getattr(module, "noise_strength", None), torch.Tensor)
    }


# ----------------------------------------------------------------------------------------------
# Sections


def _timed(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    start = time.perf_counter()
    out = fn()
    return {**out, "seconds": round(time.perf_counter() - start, 2)}


def measure_noise(G: Generator, embed: Embed | None, n: int = 64, seed: int = 1300) -> dict[str, Any]:
    """Same w, two independent draws of every noise map: PSNR, high-band share, identity distance ratio, strengths."""

    def run() -> dict[str, Any]:
        _, w = mapped(G, n, seed)
        a, b = noise_draws(G, w, 2, seed + 1)
        out: dict[str, Any] = {
            "n": n,
            "seed": seed,
            "psnr_between_draws_db": psnr_db(a, b),
            "high_band_share": band_share(a - b, 0.25),
            "noise_strengths": learned_noise_strengths(G),
        }
        out["max_strength"] = max(map(abs, out["noise_strengths"].values()), default=0.0)
        if embed is None:
            out["identity_distance_ratio"] = "unavailable: no identity embedder"
        else:
            ea, eb = embed(a), embed(b)
            assert ea.shape[0] == n and ea.shape == eb.shape, (tuple(ea.shape), tuple(eb.shape))
            same = (ea - eb).norm(dim=1).mean()
            pair = torch.cdist(ea.double(), ea.double())
            between = pair[~torch.eye(n, dtype=torch.bool)].mean()
            out["identity_distance_same_w"] = float(same)
            out["identity_distance_between_w"] = float(between)
            out["identity_distance_ratio"] = float(same / between)
        return out

    return _timed(run)


def measure_sharpness(G: Generator, n: int = 64, seed: int = 1400, cutoff: float = 0.5) -> dict[str, Any]:
    """Power above ``cutoff`` × Nyquist of G samples (fresh noise) over that of photo renders of the same z."""
    from .world import render_z

    def run() -> dict[str, Any]:
        z, w = mapped(G, n, seed)
        fake = synthesize(G, w, draw_noise(G, n, torch.Generator().manual_seed(seed + 1)))
        real = render_z(z, "photo", size=(G.img_resolution, G.img_resolution))
        p_fake, p_real = own_band_power(fake, cutoff), own_band_power(real, cutoff)
        return {
            "n": n,
            "seed": seed,
            "cutoff": cutoff,
            "power_G": p_fake,
            "power_renders": p_real,
            "ratio": p_fake / p_real,
        }

    return _timed(run)


def style_band_ratio(
    G_s: Generator, G_t: Generator, style: str, n: int = 64, seed: int = 1500, cutoff: float = 0.25
) -> dict[str, Any]:
    """High-band power of G_t(w) − G_s(w) (same w, same noise) over that of render(style) − render(photo), same z."""
    from .world import render_z

    z, w = mapped(G_s, n, seed)
    noise = draw_noise(G_s, n, torch.Generator().manual_seed(seed + 1))
    gen = band_power_of_difference(synthesize(G_t, w, noise), synthesize(G_s, w, noise), cutoff)
    size = (G_s.img_resolution, G_s.img_resolution)
    ren = band_power_of_difference(render_z(z, style, size=size), render_z(z, "photo", size=size), cutoff)
    return {"n": n, "seed": seed, "cutoff": cutoff, "generators": gen, "renders": ren, "ratio": gen / ren}


def style_consistency(
    G_s: Generator,
    G_t: Generator,
    style: str,
    embed: Embed | None,
    classify: Callable[[torch.Tensor], torch.Tensor] | None,
    n: int = 100,
    seed: int = 1600,
) -> dict[str, Any]:
    """The style classifier's share of G_t(w) assigned to ``style``, and top-1 identity retrieval of G_s(w) among n."""
    from ..retrieval import id_retrieval
    from .render import STYLES

    _, w = mapped(G_s, n, seed)
    noise = draw_noise(G_s, n, torch.Generator().manual_seed(seed + 1))
    img_t = synthesize(G_t, w, noise)
    out: dict[str, Any] = {"n": n, "seed": seed}
    if classify is None:
        out["classifier_share"] = "unavailable: no style classifier"
    else:
        pred = classify(img_t).argmax(dim=1)
        out["classifier_share"] = float((pred == STYLES.index(style)).double().mean())
        out["classifier_counts"] = {s: int((pred == i).sum()) for i, s in enumerate(STYLES)}
    if embed is None:
        out["identity_top1"] = "unavailable: no identity embedder"
    else:
        r = id_retrieval(embed(synthesize(G_s, w, noise)), embed(img_t), torch.arange(n))
        out["identity_top1"], out["identity_chance"] = r["top1"], r["chance"]
    return out


def style_frechet(G_t: Generator, style: str, features: Embed, n: int = 500, seed: int = 1700) -> dict[str, Any]:
    """Fréchet distance of ``features`` of n G_t samples (fresh noise) vs n renders of ``style``; floor: two render sets."""
    from ..fid import frechet_distance
    from .world import render_z

    size = (G_t.img_resolution, G_t.img_resolution)
    _, w = mapped(G_t, n, seed)
    fake = features(synthesize(G_t, w, draw_noise(G_t, n, torch.Generator().manual_seed(seed + 1))))
    sets = []
    for k in (2, 3):
        z = torch.randn([n, G_t.z_dim], generator=torch.Generator().manual_seed(seed + k))
        sets.append(features(torch.cat([render_z(z[i : i + 64], style, size=size) for i in range(0, n, 64)])))
    return {
        "n": n,
        "seed": seed,
        "generated_vs_renders": frechet_distance(fake, sets[0]),
        "renders_vs_renders": frechet_distance(sets[1], sets[0]),
    }


def synthesis_layers(resolution: int) -> list[tuple[str, int]]:
    """(layer name, W+ row) of a StyleGAN2 synthesis network at ``resolution``², in order (b4: conv1, torgb; then conv0, conv1, torgb).

    Block k reads rows idx … idx + num_conv (its torgb reads the row after its convs, shared with the next block's conv0).
    """
    assert resolution >= 4 and resolution & (resolution - 1) == 0, resolution
    layers, row = [], 0
    res = 4
    while res <= resolution:
        convs = ["conv1"] if res == 4 else ["conv0", "conv1"]
        for conv in convs:
            layers.append((f"b{res}.{conv}", row))
            row += 1
        layers.append((f"b{res}.torgb", row))
        res *= 2
    return layers


def rows_to_blocks(resolution: int) -> dict[str, Any]:
    """Which synthesis layers each W+ row drives at ``resolution``², and how far the early rows 0-4 reach."""
    layers = synthesis_layers(resolution)
    num_ws = layers[-1][1] + 1
    rows: dict[int, list[str]] = {r: [] for r in range(num_ws)}
    for name, r in layers:
        rows[r].append(name)
    # Rows 0-4's torgb output is not the image's texture; what they reach is the highest block whose convs they drive.
    reach = max(int(name[1:].split(".")[0]) for name, r in layers if r < EARLY_ROWS and "conv" in name)
    return {
        "resolution": resolution,
        "num_ws": num_ws,
        "rows": {str(r): names for r, names in rows.items()},
        "early_rows": list(range(EARLY_ROWS)),
        "early_rows_share": EARLY_ROWS / num_ws,
        "early_rows_reach_block": reach,
        "early_rows_reach": reach / resolution,
    }


PROVENANCE_KEYS = ("accuracy", "r2_mean", "top1_min", "size", "steps", "training_seconds")


def numbers_in(record: Any, prefix: str = "") -> dict[str, float]:
    """The numbers of a provenance record whose dotted key names a pretraining result (:data:`PROVENANCE_KEYS`)."""
    if isinstance(record, dict):
        out: dict[str, float] = {}
        for k, v in record.items():
            out.update(numbers_in(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    last = prefix.rsplit(".", 1)[-1]
    result = any(t in prefix for t in PROVENANCE_KEYS[:3]) or last in PROVENANCE_KEYS[3:]
    wanted = result and "before_folding" not in prefix and "per_style" not in prefix
    if wanted and isinstance(record, (int, float)) and not isinstance(record, bool):
        return {prefix: record}
    return {}


def provenance_accuracies(data: Path = DATA) -> dict[str, Any]:
    """Held-out pretraining numbers of the perceptual / identity nets, read from their provenance JSON in ``data``."""
    out: dict[str, Any] = {}
    for path in sorted(Path(data).glob("*.json")):
        if not any(tag in path.stem for tag in ("vgg", "resnet", "id_embedder", "identity")):
            continue
        try:
            out[path.stem] = numbers_in(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            out[path.stem] = f"unavailable: {err}"
    return out


def measure_perceptual(resolution: int, data: Path = DATA, pretrain_size: int = PRETRAIN_SIZE) -> dict[str, Any]:
    """Scale gap (image side / pretraining side, and the paper's), W+ rows ↔ blocks (toy and paper), provenance."""
    return _timed(
        lambda: {
            "image_side": resolution,
            "pretrain_side": pretrain_size,
            "scale_gap": resolution / pretrain_size,
            "paper_scale_gap": PAPER_IMAGE_SIDE / PAPER_PRETRAIN_SIDE,
            "rows": rows_to_blocks(resolution),
            "paper_rows": {k: v for k, v in rows_to_blocks(PAPER_IMAGE_SIDE).items() if k != "rows"},
            "pretraining": provenance_accuracies(data),
        }
    )


def measure_inr_fidelity(G_inr: Generator, G_s: Generator, n: int = 16, seed: int = 1800) -> dict[str, Any]:
    """PSNR of the Style-INR model's native-size output against G_s for the same w and noise maps."""

    def run() -> dict[str, Any]:
        _, w = mapped(G_s, n, seed)
        noise = draw_noise(G_s, n, torch.Generator().manual_seed(seed + 1))
        ref = synthesize(G_s, w, noise)
        with torch.no_grad():
            out = G_inr.synthesis(w, noise_mode="const", noise=noise).clamp(-1, 1)
        assert out.shape == ref.shape, (tuple(out.shape), tuple(ref.shape))
        return {"n": n, "seed": seed, "psnr_vs_G_s_db": psnr_db(out, ref)}

    return _timed(run)


def seeded_render(seed: int, size: tuple[int, int], style: str = "photo") -> torch.Tensor:
    """One render of a seeded identity and nuisance (``torch.Generator(seed)``, identity first): [1, 3, H, W]."""
    from .render import render, sample_identity, sample_nuisance

    g = torch.Generator().manual_seed(seed)
    identity = sample_identity(1, g)
    img = render(identity, sample_nuisance(1, g), style=style, size=size)
    assert img.shape == (1, 3, *size), tuple(img.shape)
    return img


def wide_render(resolution: int, seed: int, aspect: int = 3) -> torch.Tensor:
    """One photo render of ``resolution`` × ``aspect``·``resolution`` (seeded): [1, 3, R, aR]."""
    return seeded_render(seed, (resolution, aspect * resolution))


def inr_wide_output(G_inr: Generator, z: torch.Tensor, aspect: int = 3) -> torch.Tensor:
    """The Style-INR model's R × aspect·R output for latents z (const noise): [B, 3, R, aR]."""
    r = G_inr.img_resolution
    with torch.no_grad():
        return G_inr.synthesis(G_inr.mapping(z, None), noise_mode="const", shape=(r, aspect * r)).clamp(-1, 1)


def measure_inr_inversion(
    G_inr: Generator, vgg_weights: Path, steps: int = 200, seed: int = 1900, aspect: int = 3
) -> dict[str, Any]:
    """optim(w, n) inversion of one R × 3R photo render into the Style-INR model (toy-VGG conv loss + MSE)."""
    from ..losses import perceptual_loss
    from ..style_transfer import invert_nonsquare

    def run() -> dict[str, Any]:
        target = wide_render(G_inr.img_resolution, seed, aspect)
        loss = perceptual_loss("vgg16_conv", weights=vgg_weights)
        result = invert_nonsquare(
            G_inr, target, loss=loss, num_steps=steps, optimize_noise=True, seed=seed, progress=False
        )
        return {
            "size": list(target.shape[-2:]),
            "steps": steps,
            "seed": seed,
            "loss": "vgg16_conv (toy VGG16) + 50 x MSE, W+, noise maps optimised",
            "wide_inversion_psnr_db": psnr_db(result.image, target),
        }

    return _timed(run)


# ----------------------------------------------------------------------------------------------
# Assets, evaluation and the summary


def _sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


@dataclass
class Assets:
    """The networks found in a data folder; ``missing`` names each absent one with the reason."""

    data: Path
    G_s: Generator | None = None
    G_t: dict[str, Generator] = field(default_factory=dict)
    G_inr: Generator | None = None
    embed: Embed | None = None
    classify: Callable[[torch.Tensor], torch.Tensor] | None = None
    vgg_weights: Path | None = None
    vgg_trunk: torch.nn.Module | None = None
    files: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def _try(assets: Assets, name: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except Exception as err:  # a missing or unreadable asset is a result, never a crash
        assets.missing[name] = f"unavailable: {type(err).__name__}: {err}"
        return None


def load_assets(data: Path = DATA) -> Assets:
    """Every toy-world network in ``data`` that exists and loads (safe loaders only); the rest in ``missing``."""
    from ..checkpoints import load_networks
    from .identity import id_embedder_fn, load_id_embedder
    from .render import STYLES

    data = Path(data)
    assets = Assets(data=data)

    def gen(stem: str) -> Generator:
        path = data / f"{stem}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        assets.files[stem] = _sha(path)
        return load_networks(path).G.eval().requires_grad_(False)

    assets.G_s = _try(assets, "G_s", lambda: gen("G_s"))
    for style in STYLES[1:]:
        G = _try(assets, f"G_t_{style}", lambda s=style: gen(f"G_t_{s}"))
        if G is not None:
            assets.G_t[style] = G
    assets.G_inr = _try(assets, "G_s_inr", lambda: gen("G_s_inr"))
    path = data / "id_embedder_toy.safetensors"
    model = _try(assets, "id_embedder", lambda: load_id_embedder(path))
    assets.embed = id_embedder_fn(model) if model is not None else None
    vgg = data / "vgg16_toy.safetensors"
    if vgg.is_file():
        from ..losses import vgg16_trunk
        from .vgg import style_classifier

        assets.vgg_weights = vgg
        assets.files["vgg16_toy"] = _sha(vgg)
        assets.vgg_trunk = _try(assets, "vgg16_toy", lambda: vgg16_trunk(29, weights=vgg))
        assets.classify = _try(assets, "style_classifier", lambda: style_classifier(path=vgg))
    else:
        assets.missing["vgg16_toy"] = f"unavailable: {vgg} not found"
    return assets


@dataclass(frozen=True)
class Sizes:
    """Sample sizes and step counts of :func:`evaluate` (the defaults are main()'s)."""

    noise: int = 64
    sharpness: int = 64
    band: int = 64
    consistency: int = 100
    frechet: int = 500
    inr: int = 16
    invert_steps: int = 200


def _section(fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | str:
    try:
        return fn()
    except Exception as err:  # recorded: one broken section never hides the others
        return f"unavailable: {type(err).__name__}: {err}"


def _need(assets: Assets, *names: str) -> None:
    for name in names:
        if name in assets.missing:
            raise LookupError(f"{name} {assets.missing[name]}")


def evaluate(
    assets: Assets, sizes: Sizes = Sizes(), seed: int = 13, sections: Sequence[str] | None = None
) -> dict[str, Any]:
    """Measure the ``sections`` (default all: noise, sharpness, styles, perceptual, inr) on ``assets``; never raises."""
    sections = tuple(sections or ("noise", "sharpness", "styles", "perceptual", "inr"))
    G_s = assets.G_s
    out: dict[str, Any] = {}
    if "noise" in sections:
        out["noise"] = _section(
            lambda: (_need(assets, "G_s"), measure_noise(G_s, assets.embed, sizes.noise, seed * 100 + 1))[1]
        )
    if "sharpness" in sections:
        out["sharpness"] = _section(
            lambda: (_need(assets, "G_s"), measure_sharpness(G_s, sizes.sharpness, seed * 100 + 2))[1]
        )
    if "styles" in sections:
        styles: dict[str, Any] = {}
        from .render import STYLES

        for style in STYLES[1:]:

            def one(style: str = style) -> dict[str, Any]:
                _need(assets, "G_s", f"G_t_{style}")
                G_t = assets.G_t[style]
                start = time.perf_counter()
                entry: dict[str, Any] = {"band": style_band_ratio(G_s, G_t, style, sizes.band, seed * 100 + 3)}
                entry["band_ratio"] = entry["band"]["ratio"]
                entry.update(
                    style_consistency(G_s, G_t, style, assets.embed, assets.classify, sizes.consistency, seed * 100 + 4)
                )
                if assets.vgg_trunk is None or sizes.frechet < 2:
                    entry["frechet"] = f"unavailable: {assets.missing.get('vgg16_toy', 'n_frechet < 2')}"
                else:
                    trunk = assets.vgg_trunk
                    entry["frechet"] = _section(
                        lambda: style_frechet(
                            G_t, style, lambda x: frechet_features(trunk, x), sizes.frechet, seed * 100 + 5
                        )
                    )
                entry["seconds"] = round(time.perf_counter() - start, 2)
                return entry

            styles[style] = _section(one)
        out["styles"] = styles
    if "perceptual" in sections:
        out["perceptual"] = _section(
            lambda: (_need(assets, "G_s"), measure_perceptual(G_s.img_resolution, assets.data))[1]
        )
    if "inr" in sections:
        inr: dict[str, Any] = {}
        inr["fidelity"] = _section(
            lambda: (
                _need(assets, "G_s", "G_s_inr"),
                measure_inr_fidelity(assets.G_inr, G_s, sizes.inr, seed * 100 + 6),
            )[1]
        )
        if sizes.invert_steps > 0:
            inr["wide_inversion"] = _section(
                lambda: (
                    _need(assets, "G_s_inr", "vgg16_toy"),
                    measure_inr_inversion(assets.G_inr, assets.vgg_weights, sizes.invert_steps, seed * 100 + 7),
                )[1]
            )
        else:
            inr["wide_inversion"] = "unavailable: not run (invert_steps = 0)"
        out["inr"] = inr
    return out


def _get(tree: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(tree, dict):
            return tree if isinstance(tree, str) else None
        tree = tree.get(key)
    return tree


def summary_rows(sections: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per headline number: key, label, style, value (or "unavailable: …"), target, today, met."""
    from .render import STYLES

    picks: list[tuple[str, str | None, Any]] = [
        ("noise.psnr_between_draws_db", None, _get(sections, "noise", "psnr_between_draws_db")),
        ("noise.high_band_share", None, _get(sections, "noise", "high_band_share")),
        ("noise.identity_distance_ratio", None, _get(sections, "noise", "identity_distance_ratio")),
        ("noise.max_strength", None, _get(sections, "noise", "max_strength")),
        ("sharpness.ratio", None, _get(sections, "sharpness", "ratio")),
    ]
    for style in STYLES[1:]:
        picks += [
            ("styles.band_ratio", style, _get(sections, "styles", style, "band_ratio")),
            ("styles.classifier_share", style, _get(sections, "styles", style, "classifier_share")),
            ("styles.identity_top1", style, _get(sections, "styles", style, "identity_top1")),
            ("styles.frechet_toy_vgg", style, _get(sections, "styles", style, "frechet", "generated_vs_renders")),
            ("styles.frechet_floor", style, _get(sections, "styles", style, "frechet", "renders_vs_renders")),
        ]
    picks += [
        ("perceptual.scale_gap", None, _get(sections, "perceptual", "scale_gap")),
        ("perceptual.early_rows_reach", None, _get(sections, "perceptual", "rows", "early_rows_reach")),
        ("inr.psnr_vs_G_s_db", None, _get(sections, "inr", "fidelity", "psnr_vs_G_s_db")),
        ("inr.wide_inversion_psnr_db", None, _get(sections, "inr", "wide_inversion", "wide_inversion_psnr_db")),
    ]
    rows = []
    for key, style, value in picks:
        today = TODAY.get(key)
        today = today.get(style) if isinstance(today, dict) else today
        bounds = TARGETS.get(key)
        met = None
        if bounds is not None and isinstance(value, (int, float)) and not math.isnan(value):
            lo, hi = bounds
            met = (lo is None or value >= lo) and (hi is None or value <= hi)
        if value is None:
            value = "unavailable"
        rows.append(
            {
                "key": key,
                "label": LABELS[key],
                "style": style,
                "value": value,
                "target": target_text(key),
                "today": today,
                "met": met,
            }
        )
    return rows


def target_text(key: str) -> str:
    """The target of ``key`` as text ('20–35', '≥ 0.5', '< 0.1', '–')."""
    lo, hi = TARGETS.get(key, (None, None))
    if lo is not None and hi is not None:
        return f"{lo:g}–{hi:g}"
    if lo is not None:
        return f"≥ {lo:g}"
    if hi is not None:
        return f"< {hi:g}"
    return {"perceptual.scale_gap": "≈ 4.6 (paper)", "perceptual.early_rows_reach": "1/64 (paper)"}.get(key, "–")


def summary_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) for :func:`hrinv_nb.notebook.report.show_table`."""

    def fmt(v: Any) -> Any:
        if isinstance(v, float):
            return f"{v:.3g}" if math.isfinite(v) else str(v)
        if isinstance(v, str) and v.startswith("unavailable"):
            return v[:60]
        return "–" if v is None else v

    body = [
        [
            r["label"] + (f" ({r['style']})" if r["style"] else ""),
            fmt(r["value"]),
            r["target"],
            fmt(r["today"]),
            {True: "yes", False: "NO", None: "–"}[r["met"]],
            r.get("source", "–"),
        ]
        for r in rows
    ]
    return ["measure", "now", "target", "today (64² world)", "met", "source"], body


def stored_summary(path: Path | None, assets: Assets) -> tuple[list[dict[str, Any]] | None, str]:
    """The summary rows of a quality record at ``path`` if it was measured on these assets (same G_s), and why (not)."""
    if path is None:
        return None, "no stored record asked for"
    path = Path(path)
    if not path.is_file():
        return None, f"{path} not found: live numbers only (python -m hrinv_nb.toy.quality writes it)"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"{path} unreadable ({err}): live numbers only"
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        return None, f"{path} is not a {SCHEMA} record: live numbers only"
    if record.get("assets", {}).get("G_s") != f"sha1:{assets.files.get('G_s')}":
        return None, f"{path} was measured on another G_s: live numbers only"
    return list(record["summary"]), f"{path} ({record.get('written', '?')})"


def merged_summary(
    stored: Sequence[Mapping[str, Any]] | None, live: Sequence[Mapping[str, Any]], n_live: int | None = None
) -> list[dict[str, Any]]:
    """Stored rows (``source`` 'quality.json'), each unavailable one replaced by its live row (``source`` 'live')."""
    live_by_key = {(r["key"], r["style"]): r for r in live}
    tag = "live" if n_live is None else f"live, n={n_live}"
    if stored is None:
        return [{**r, "source": tag if not _unavailable(r["value"]) else "–"} for r in live]
    out = []
    for row in stored:
        other = live_by_key.get((row["key"], row["style"]))
        if _unavailable(row["value"]) and other is not None and not _unavailable(other["value"]):
            out.append({**other, "source": tag})
        else:
            out.append({**row, "source": "quality.json" if not _unavailable(row["value"]) else "–"})
    return out


def _unavailable(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.startswith("unavailable"))


def json_safe(value: Any) -> Any:
    """A JSON-able copy: tensors → lists, non-finite floats → 'inf' / '-inf' / 'nan', tuples → lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return json_safe(value.detach().cpu().tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def build_report(
    assets: Assets, sections: Mapping[str, Any], sizes: Sizes, seed: int, seconds: float
) -> dict[str, Any]:
    """The data/quality.json record: schema, software, assets, sizes, sections, summary rows."""
    return json_safe(
        {
            "schema": SCHEMA,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": "python -m hrinv_nb.toy.quality",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "seed": seed,
            "sizes": sizes.__dict__,
            "resolution": assets.G_s.img_resolution if assets.G_s is not None else None,
            "assets": {**{k: f"sha1:{v}" for k, v in assets.files.items()}, **assets.missing},
            "sections": dict(sections),
            "summary": summary_rows(sections),
            "seconds": round(seconds, 1),
        }
    )


# ----------------------------------------------------------------------------------------------
# Figures (each returns a matplotlib Figure)


def generators_figure(assets: Assets, n: int = 6, seed: int = 0):
    """Columns: n latents; rows: each style's render beside its generator (G_s for photo, G_t otherwise), same z and noise."""
    from ..notebook.plots import image_grid
    from .render import STYLES
    from .world import render_z

    assert assets.G_s is not None, "generators_figure needs G_s"
    z, w = mapped(assets.G_s, n, seed)
    noise = draw_noise(assets.G_s, n, torch.Generator().manual_seed(seed + 1))
    size = (assets.G_s.img_resolution,) * 2
    rows, labels = [], []
    for style in STYLES:
        G = assets.G_s if style == "photo" else assets.G_t.get(style)
        rows.append(list(render_z(z, style, size=size)))
        labels.append(f"render {style}")
        if G is not None:
            rows.append(list(synthesize(G, w, noise)))
            labels.append("G_s" if style == "photo" else f"G_t {style}")
    return image_grid(rows, row_labels=labels, scale=1.3, title="The same z: renders and generators (one noise draw)")


def noise_figure(G: Generator, n_w: int = 2, n_draws: int = 4, seed: int = 0, gain: float = 4.0):
    """Per w: G(w, n_k) for ``n_draws`` draws, then (draw k − draw 0) × gain; returns (figure, draws [K, n_w, 3, R, R])."""
    from ..notebook.plots import image_grid

    _, w = mapped(G, n_w, seed)
    draws = noise_draws(G, w, n_draws, seed + 1)
    rows, labels = [], []
    for i in range(n_w):
        rows.append([draws[k, i] for k in range(n_draws)])
        labels.append(f"w{i}: draws")
        rows.append([None] + [((draws[k, i] - draws[0, i]) * gain).clamp(-1, 1) for k in range(1, n_draws)])
        labels.append(f"(k − 0)×{gain:g}")
    title = f"G_s: the same w under {n_draws} draws of every noise map, and the differences to draw 0"
    return image_grid(
        rows, row_labels=labels, col_labels=[f"draw {k}" for k in range(n_draws)], scale=1.6, title=title
    ), draws


def spectrum_figure(curves: Mapping[str, tuple[torch.Tensor, torch.Tensor]], title: str = "Radial power spectra"):
    """Log power against frequency / Nyquist for each named (freq, power) curve, with 0.25 and 0.5 Nyquist marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, (freq, power) in curves.items():
        keep = power > 0
        ax.semilogy(freq[keep].numpy(), power[keep].numpy(), label=name)
    for c in (0.25, 0.5, 1.0):
        ax.axvline(c, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("radial frequency / Nyquist")
    ax.set_ylabel("power per bin")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def inr_wide_figure(G_inr: Generator, seed: int = 0, aspect: int = 3):
    """The Style-INR model's R × 3R output of a latent beside the photo render of the same latent at R × 3R."""
    from ..notebook.plots import image_grid
    from .world import render_z

    r = G_inr.img_resolution
    z = torch.randn([1, G_inr.z_dim], generator=torch.Generator().manual_seed(seed))
    render = render_z(z, "photo", size=(r, aspect * r))
    wide = inr_wide_output(G_inr, z, aspect)
    return image_grid(
        [[render[0]], [wide[0]]],
        row_labels=[f"render {r}x{aspect * r}", f"Style-INR {r}x{aspect * r}"],
        scale=1.8,
        title="A wide output: the render and the Style-INR model, same z",
    )


def scale_figure(img: torch.Tensor, pretrain_size: int = PRETRAIN_SIZE):
    """One [1,3,R,R] image at its side R beside its area-downsampled pretraining-size copy, drawn to scale."""
    import matplotlib.pyplot as plt

    from ..notebook.plots import to_numpy_image

    assert img.ndim == 4 and img.shape[:2] == (1, 3), tuple(img.shape)
    r = img.shape[-1]
    small = F.interpolate(img.float(), size=(pretrain_size, pretrain_size), mode="area")
    fig = plt.figure(figsize=(6.5, 3.8))
    ax = fig.add_axes((0.02, 0.04, 0.6, 0.72))
    ax.imshow(to_numpy_image(img), extent=(0, r, r, 0), interpolation="nearest")
    ax.set_title(f"loss input {r}²", fontsize=8)
    ax.axis("off")
    ax2 = fig.add_axes((0.68, 0.04, 0.6 * pretrain_size / r, 0.72 * pretrain_size / r))
    ax2.imshow(to_numpy_image(small), interpolation="nearest")
    ax2.set_title(f"pretraining {pretrain_size}²", fontsize=8)
    ax2.axis("off")
    fig.text(
        0.5,
        0.93,
        f"Scale gap {r / pretrain_size:g}× (paper: {PAPER_IMAGE_SIDE}² seen by a net pretrained at {PAPER_PRETRAIN_SIDE}²: "
        f"{PAPER_IMAGE_SIDE / PAPER_PRETRAIN_SIDE:.1f}×)",
        ha="center",
        fontsize=9,
    )
    return fig


def rows_figure(resolutions: Sequence[int] = (128, PAPER_IMAGE_SIDE)):
    """W+ row × synthesis layer (filled: the row drives the layer), rows 0-4 highlighted, for each resolution."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(resolutions), figsize=(5.2 * len(resolutions), 4.2), squeeze=False)
    for ax, res in zip(axes[0], resolutions):
        layers = synthesis_layers(res)
        num_ws = layers[-1][1] + 1
        grid = np.zeros((num_ws, len(layers)))
        for j, (_, r) in enumerate(layers):
            grid[r, j] = 1.0
        grid[:EARLY_ROWS] *= 2
        ax.imshow(grid, cmap="Blues", vmin=0, vmax=2, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(layers)), [n for n, _ in layers], rotation=90, fontsize=6)
        ax.set_yticks(range(num_ws), [str(r) for r in range(num_ws)], fontsize=6)
        ax.set_ylabel("W+ row")
        info = rows_to_blocks(res)
        ax.set_title(
            f"{res}²: rows 0–4 of {num_ws} reach b{info['early_rows_reach_block']} = 1/{res // info['early_rows_reach_block']} of the side",
            fontsize=8,
        )
    fig.tight_layout()
    return fig


def save_png(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    plt.close(fig)
    return path


def world_figures(assets: Assets, seed: int = 0, n_spectrum: int = 32) -> dict[str, Any]:
    """The figures of the world that its assets allow, by name (generators, noise, spectrum, inr_wide, scale, rows)."""
    from .world import render_z

    figs: dict[str, Any] = {"rows": rows_figure((assets.G_s.img_resolution if assets.G_s else 128, PAPER_IMAGE_SIDE))}
    if assets.G_s is not None:
        G = assets.G_s
        r = G.img_resolution
        figs["generators"] = generators_figure(assets, seed=seed)
        figs["noise"] = noise_figure(G, seed=seed)[0]
        z, w = mapped(G, n_spectrum, seed + 2)
        curves = {
            "G_s (fresh noise)": radial_spectrum(
                synthesize(G, w, draw_noise(G, n_spectrum, torch.Generator().manual_seed(seed + 3)))
            ),
            "photo renders": radial_spectrum(render_z(z, "photo", size=(r, r))),
        }
        figs["spectrum"] = spectrum_figure(curves, f"G_s against photo renders of the same z ({n_spectrum} each, {r}²)")
        figs["scale"] = scale_figure(seeded_render(seed + 4, (r, r)))
    if assets.G_inr is not None:
        figs["inr_wide"] = inr_wide_figure(assets.G_inr, seed=seed)
    return figs


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the world in ``--assets``, write ``--out`` (atomically) and ``<figures-dir>/toy_world_*.png``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=Path, default=DATA, help="folder holding the networks and their JSON")
    parser.add_argument("--out", type=Path, default=DATA / "quality.json")
    parser.add_argument("--figures-dir", default=str(FIGURES), help="'' skips the figures")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=13)
    defaults = Sizes()
    for name, value in defaults.__dict__.items():
        flag = "--invert-steps" if name == "invert_steps" else f"--n-{name}"
        parser.add_argument(flag, type=int, default=value, dest=name, help=f"default {value}")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    assets = load_assets(args.assets)
    sizes = Sizes(**{name: getattr(args, name) for name in defaults.__dict__})
    sections = evaluate(assets, sizes, seed=args.seed)
    record = build_report(assets, sections, sizes, args.seed, time.perf_counter() - start)
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    if args.figures_dir:
        import matplotlib

        matplotlib.use("Agg")
        for name, fig in world_figures(assets).items():
            save_png(fig, Path(args.figures_dir) / f"toy_world_{name}.png")
    header, body = summary_table(record["summary"])
    print(" | ".join(header))
    for row in body:
        print(" | ".join(str(v) for v in row))
    print(f"wrote {args.out} in {record['seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
