"""Measured quality of the toy world's generators (reported in data/README.md and data/quality.json).

    python -m hrinv_nb.toy_quality            # writes data/quality.json and figures/toy_world_generators.png

* Fidelity: Fréchet distance between n generator samples and n renders (independent z), in two
  substitute feature spaces — the toy identity embedder's and the toy VGG16's (global-average-pooled
  conv5_3 at its 32² pretraining size). Two independent render sets give the floor. These are
  *not* FID (no Inception network is involved).
* Consistency: for the same w, is G_t(w) retrieved against G_s(w) by the identity embedder?
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoints import load_networks
from .fid import frechet_distance
from .losses import imagenet_normalise, vgg16_trunk
from .networks import Generator
from .retrieval import id_retrieval
from .toy_identity import id_embedder_fn, load_id_embedder
from .toy_vgg import load_toy_vgg_path
from .toyworld import TARGET_STYLES, TOY_Z_DIM, render_z, sample_grid

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"


def vgg_pooled_features(trunk: torch.nn.Module, img: torch.Tensor, size: int = 32, batch: int = 128) -> torch.Tensor:
    """Global-average-pooled last-conv features of the toy VGG at ``size``² (images in [-1, 1])."""
    out = []
    with torch.no_grad():
        for i in range(0, img.shape[0], batch):
            x = F.interpolate(img[i : i + batch], size=(size, size), mode="area")
            out.append(trunk(imagenet_normalise(x)).mean(dim=(2, 3)))
    return torch.cat(out)


def generator_samples(G: Generator, n: int, seed: int, batch: int = 128) -> torch.Tensor:
    """``n`` samples of G (ψ = 1, const noise) from ``torch.Generator(seed)`` latents, clamped to [-1, 1]."""
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return torch.cat([G(z[i : i + batch], None, noise_mode="const").clamp(-1, 1) for i in range(0, n, batch)])


def renders(n: int, style: str, seed: int) -> torch.Tensor:
    """``n`` renders of random latents in ``style`` (the "real" distribution)."""
    z = torch.randn([n, TOY_Z_DIM], generator=torch.Generator().manual_seed(seed))
    return torch.cat([render_z(z[i : i + 256], style) for i in range(0, n, 256)])


def evaluate(n: int = 2000, n_consistency: int = 100, seed: int = 2024) -> dict:
    """Fidelity of every shipped generator and cross-generator identity consistency."""
    embed = id_embedder_fn(load_id_embedder())
    spaces = {"id_embedder": embed}
    try:
        trunk = vgg16_trunk(29, weights=load_toy_vgg_path())
        spaces["toy_vgg_conv5_pool"] = lambda x: vgg_pooled_features(trunk, x)
    except FileNotFoundError as e:
        print(f"toy VGG unavailable, its feature space is skipped: {e}", flush=True)
    gens = {"G_s": ("photo", load_networks(DATA / "G_s.safetensors").G)}
    for style in TARGET_STYLES:
        path = DATA / f"G_t_{style}.safetensors"
        if path.exists():
            gens[f"G_t_{style}"] = (style, load_networks(path).G)
    report: dict = {"n": n, "seed": seed, "fidelity": {}, "consistency": {}}
    for name, (style, G) in gens.items():
        fake = generator_samples(G, n, seed)
        real_a, real_b = renders(n, style, seed + 1), renders(n, style, seed + 2)
        entry = {}
        for space, fn in spaces.items():
            fa, fb, ff = fn(real_a), fn(real_b), fn(fake)
            entry[space] = {"generated_vs_renders": frechet_distance(ff, fa), "renders_vs_renders": frechet_distance(fb, fa)}
        report["fidelity"][name] = {"style": style, **entry}
        print(name, json.dumps(entry), flush=True)
    z = torch.randn([n_consistency, TOY_Z_DIM], generator=torch.Generator().manual_seed(seed + 3))
    G_s = gens["G_s"][1]
    with torch.no_grad():
        w = G_s.mapping(z, None)
        e_s = embed(G_s.synthesis(w, noise_mode="const").clamp(-1, 1))
    for name, (style, G) in gens.items():
        if name == "G_s":
            continue
        with torch.no_grad():
            e_t = embed(G.synthesis(w, noise_mode="const").clamp(-1, 1))
        report["consistency"][name] = id_retrieval(e_s, e_t, torch.arange(n_consistency))
    sample_grid({k: g for k, (_, g) in gens.items()}, n=8, seed=0, path=REPO / "figures" / "toy_world_generators.png")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = evaluate(n=args.n)
    (DATA / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["consistency"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
