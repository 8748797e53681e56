"""Measured quality of the toy world's generators (reported in data/README.md and data/quality.json).

    python -m hrinv_nb.toy.quality            # writes data/quality.json and figures/toy_world_generators.png
    python -m hrinv_nb.toy.quality --assets DIR --out q.json --figure grid.png   # other generator files

The render features of the "real" sets depend only on the renderer and the feature networks; they
are cached in ``data/_work/`` (keyed by the renderer fingerprint and the networks' file hashes).

* Fidelity: Fréchet distance between n generator samples and n renders (independent z), in two
  substitute feature spaces — the toy identity embedder's and the toy VGG16's (global-average-pooled
  conv5_3 at its 32² pretraining size). Two independent render sets give the floor. These are
  *not* FID (no Inception network is involved).
* Consistency: for the same w, is G_t(w) retrieved against G_s(w) by the identity embedder?
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoints import load_networks
from ..fid import frechet_distance
from ..losses import imagenet_normalise, vgg16_trunk
from ..networks import Generator
from ..retrieval import id_retrieval
from ..torch_files import load_torch_file
from .identity import id_embedder_fn, load_id_embedder
from .vgg import load_toy_vgg_path, renderer_fingerprint
from .world import TARGET_STYLES, TOY_Z_DIM, render_z, sample_grid

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
WORK = DATA / "_work"


def _file_hash(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:10]


def cached_render_features(space: str, net_file: Path, fn, n: int, style: str, seed: int) -> torch.Tensor:
    """``fn`` features of ``renders(n, style, seed)``, cached in data/_work/ (renderer + network keyed)."""
    path = WORK / f"quality_{space}_{style}_n{n}_s{seed}_r{renderer_fingerprint()}_w{_file_hash(net_file)}.pt"
    if path.is_file():
        return load_torch_file(path, map_location=None)
    feats = fn(renders(n, style, seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(feats, path)
    return feats


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


def evaluate(
    n: int = 2000,
    n_consistency: int = 100,
    seed: int = 2024,
    assets: Path = DATA,
    figure: Path | None = REPO / "figures" / "toy_world_generators.png",
) -> dict:
    """Fidelity of every generator in ``assets`` and cross-generator identity consistency."""
    from .identity import ID_EMBEDDER_PATH

    embed = id_embedder_fn(load_id_embedder())
    spaces = {"id_embedder": (embed, Path(ID_EMBEDDER_PATH))}
    try:
        vgg_path = load_toy_vgg_path()
        trunk = vgg16_trunk(29, weights=vgg_path)
        spaces["toy_vgg_conv5_pool"] = (lambda x: vgg_pooled_features(trunk, x), vgg_path)
    except FileNotFoundError as e:
        print(f"toy VGG unavailable, its feature space is skipped: {e}", flush=True)
    assets = Path(assets)
    gens = {"G_s": ("photo", load_networks(assets / "G_s.safetensors").G)}
    files = {"G_s": assets / "G_s.safetensors"}
    for style in TARGET_STYLES:
        path = assets / f"G_t_{style}.safetensors"
        if path.exists():
            gens[f"G_t_{style}"] = (style, load_networks(path).G)
            files[f"G_t_{style}"] = path
    report: dict = {"n": n, "seed": seed, "fidelity": {}, "consistency": {}}
    for name, (style, G) in gens.items():
        fake_path = WORK / f"quality_fake_{name}_g{_file_hash(files[name])}_n{n}_s{seed}.pt"
        cached = load_torch_file(fake_path, map_location=None) if fake_path.is_file() else {}
        fake = None
        entry = {}
        for space, (fn, net_file) in spaces.items():
            fa = cached_render_features(space, net_file, fn, n, style, seed + 1)
            fb = cached_render_features(space, net_file, fn, n, style, seed + 2)
            key = f"{space}_w{_file_hash(net_file)}"
            if key not in cached:
                fake = generator_samples(G, n, seed) if fake is None else fake
                cached[key] = fn(fake)
                WORK.mkdir(parents=True, exist_ok=True)
                torch.save(cached, fake_path)
            ff = cached[key]
            entry[space] = {
                "generated_vs_renders": frechet_distance(ff, fa),
                "renders_vs_renders": frechet_distance(fb, fa),
            }
        report["fidelity"][name] = {"style": style, **entry}
        print(name, json.dumps(entry), flush=True)
    z = torch.randn([n_consistency, TOY_Z_DIM], generator=torch.Generator().manual_seed(seed + 3))
    G_s = gens["G_s"][1]
    with torch.no_grad():
        w = G_s.mapping(z, None)
        e_s = embed(G_s.synthesis(w, noise_mode="const").clamp(-1, 1))
    for name, (_style, G) in gens.items():
        if name == "G_s":
            continue
        with torch.no_grad():
            e_t = embed(G.synthesis(w, noise_mode="const").clamp(-1, 1))
        report["consistency"][name] = id_retrieval(e_s, e_t, torch.arange(n_consistency))
    if figure is not None:
        sample_grid({k: g for k, (_, g) in gens.items()}, n=8, seed=0, path=figure)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--assets", type=Path, default=DATA, help="folder holding G_s / G_t_* .safetensors")
    parser.add_argument("--out", type=Path, default=DATA / "quality.json")
    parser.add_argument("--figure", type=Path, default=REPO / "figures" / "toy_world_generators.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = evaluate(n=args.n, assets=args.assets, figure=args.figure)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["consistency"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
