"""``hrinv stylize``: cross-domain stylisation of contents (photos or projections) with styles of G_t.

Every (content, style) pair goes through :func:`hrinv_nb.gallery.stylize_pairs` (the package's one
stylisation path; method names through :func:`hrinv_nb.blending.mix`). Photos are first projected
w-only into G_s (contents) or G_t (styles) by ``hrinv invert``'s code, into cache folders that a
re-run reuses. Outputs per pair in ``--out``: ``<content>__<style>.png``, ``.json`` and, last,
``.npz`` (the final code ``w``), so a killed run resumes at the first unfinished pair.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..blending import MIXING_METHODS
from . import common, invert
from .common import CliError, info

PAIR_RESUME_KEYS = (
    "generator",
    "target_generator",
    "method",
    "steps",
    "loss",
    "lso_steps",
    "reg_weight",
    "swap_res",
    "style_seed",
)
SAMPLES = re.compile(r"samples:(\d+)")
DEFAULT_STYLES = "samples:4"
DEFAULT_TOY_STEPS = 150  # notebook 07's w-only projection steps on the toy G_s

DESCRIPTION = """\
Stylise content photos with a target-style generator G_t: model blending of G_s and G_t (Eq. 6, 7)
and, for lerp_lso, Local Style Optimisation (Eq. 8) of the early W+ rows towards the content.

CONTENTS are image files, .npz projections (from 'hrinv invert'; their w is used) or folders of
either (not searched recursively). Images are projected w-only into G_s first, into
--contents-cache (reused by later runs). STYLES are images (projected w-only into G_t, into
--styles-cache), .npz codes in G_t, folders of either, or samples:N (N codes sampled from G_t with
--style-seed). Every content is paired with every style. --align aligns the content photos only
(style images are taken as they are). The LSO target is G_s(w_s), as in the authors' code.

Examples:

  # toy world: two photos x four cartoon styles sampled from the toy G_t, lerp + LSO
  hrinv stylize a.png b.png --styles samples:4 --out styl/

  # real weights: projections from 'hrinv invert', style images, another method
  hrinv stylize inv/*.npz --styles styles/ --out styl/ --generator ffhq.pkl \\
      --target-generator cartoon.pkl --vgg-weights vgg16-397923af.pth --method swap_g_and_w
"""

EPILOG = """\
Outputs per pair (in --out): <content>__<style>.png (the stylised image at G's resolution),
<content>__<style>.json (sources, method, γ schedule, options) and <content>__<style>.npz (the final
W+ code, written last: it marks the pair done). 'hrinv evaluate' reads the content stem back from the
part of the file name before '__'. A pair is skipped when its files exist and its JSON records the
same generators, method, steps, loss, LSO steps, λ_reg, swap block and style seed (a mismatch is an
error: use another --out or --overwrite). --shard i/n splits the contents (sorted position mod n).
Each pair's LSO starts from its own seeded initial offset, so results do not depend on batching,
sharding or resuming. Without --generator / --target-generator the toy G_s and the toy G_t of
--style-set are used (64x64, no downloads).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``stylize`` on the subcommand parsers."""
    parser = common.subcommand(
        subparsers,
        "stylize",
        "stylise contents with a target-style generator (blending + LSO), resumably",
        DESCRIPTION,
        EPILOG,
    )
    parser.add_argument("contents", nargs="+", metavar="CONTENTS", help="content images, .npz projections or folders")
    parser.add_argument(
        "--styles",
        nargs="+",
        default=[DEFAULT_STYLES],
        metavar="STYLES",
        help=f"style images, .npz codes, folders, or samples:N (default: {DEFAULT_STYLES})",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created; required)")
    invert.add_projection_options(parser, toy_steps=DEFAULT_TOY_STEPS)
    parser.add_argument(
        "--target-generator",
        metavar="PKL|SAFETENSORS",
        default=None,
        help="target-style generator G_t, fine-tuned from G_s (default: the toy G_t of --style-set)",
    )
    parser.add_argument(
        "--style-set",
        choices=common.TOY_STYLES,
        default="cartoon",
        help="which toy G_t (data/G_t_<set>.safetensors) without --target-generator (default: cartoon)",
    )
    parser.add_argument(
        "--method", choices=MIXING_METHODS, default="lerp_lso", help="mixing method of Fig. 2 (default: lerp_lso)"
    )
    parser.add_argument("--lso-steps", type=int, default=50, metavar="N", help="LSO steps for lerp_lso (default: 50)")
    parser.add_argument(
        "--reg-weight",
        type=float,
        default=None,
        metavar="X",
        help="LSO λ_reg (default: 0.01·(resolution/1024)², the paper's 0.01 at 1024²)",
    )
    parser.add_argument(
        "--swap-res",
        type=int,
        default=None,
        metavar="R",
        help="first block taken from G_t by layer_swap / swap_g_and_w (default: the paper's, b128 at 1024²)",
    )
    parser.add_argument("--style-seed", type=int, default=0, help="seed of the samples:N style codes (default: 0)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="pairs stylised per batch (default: 8)")
    parser.add_argument(
        "--contents-cache", metavar="DIR", default=None, help="projections of content photos (default: OUT/contents)"
    )
    parser.add_argument(
        "--styles-cache", metavar="DIR", default=None, help="projections of style photos (default: OUT/styles)"
    )
    parser.add_argument(
        "--shard", metavar="i/n|auto", default=None, help="only contents whose sorted index ≡ i (mod n) (default: all)"
    )
    add_common = invert.add_common_options
    add_common(parser)
    parser.set_defaults(func=run)
    return parser


# ----------------------------------------------------------------------------------------------
# Inputs


@dataclass
class Item:
    """A content or style: its output stem and where its code comes from (an image, a .npz or a sample)."""

    stem: str
    source: str
    path: Path | None = None
    sample: int | None = None

    @property
    def is_image(self) -> bool:
        return self.path is not None and self.path.suffix.lower() != ".npz"


def list_items(specs: Sequence[str], what: str, allow_samples: bool, style_seed: int = 0) -> list[Item]:
    """Images, .npz files and folders of them (and ``samples:N`` where allowed), naturally sorted."""
    items: list[Item] = []
    paths: list[str] = []
    for spec in specs:
        match = SAMPLES.fullmatch(spec)
        if match and allow_samples:
            n = int(match[1])
            if n < 1:
                raise CliError(f"{spec}: need at least one sample")
            items += [Item(f"sample{k:03d}", f"samples(seed={style_seed})[{k}]", sample=k) for k in range(n)]
        elif spec.startswith("samples:"):
            raise CliError(f"bad {what} {spec!r}: " + ("expected samples:N" if allow_samples else "not allowed here"))
        else:
            paths.append(spec)
    if paths:
        files = common.list_files(paths, (*common.IMAGE_EXTENSIONS, ".npz"), what=f"{what} image or .npz")
        items += [Item(p.stem, str(p.resolve()), path=p) for p in files]
    common.stems([Path(i.stem) for i in items], what)  # refuses collisions
    for item in items:
        if item.is_image:
            common.check_image_header(item.path)
    return items


def pair_paths(out: Path, content: str, style: str) -> dict[str, Path]:
    """The files of one stylised pair."""
    name = f"{content}__{style}"
    return {"png": out / f"{name}.png", "json": out / f"{name}.json", "npz": out / f"{name}.npz"}


def pair_done(paths: dict[str, Path]) -> bool:
    """A pair is done when its .png, .json and .npz (written last) exist."""
    return all(p.is_file() for p in paths.values())


def _codes(
    items: Sequence[Item],
    projector: invert.Projector,
    cache: Path,
    args: argparse.Namespace,
    what: str,
    G_samples=None,
) -> torch.Tensor:
    """W+ codes [len(items), num_ws, w_dim] of ``items``: loaded, projected (w-only, cached) or sampled."""
    from ..gallery import gallery_from_samples
    from ..projector import load_projection

    images = [it for it in items if it.is_image]
    if images:
        invert.invert_all(
            projector,
            [it.path for it in images],
            [it.stem for it in images],
            cache,
            landmarks=args.landmarks,
            overwrite=args.overwrite,
            quiet=args.quiet,
            what=what,
        )
    samples = [it.sample for it in items if it.sample is not None]
    sampled = gallery_from_samples(G_samples, max(samples) + 1, seed=args.style_seed).w.cpu() if samples else None
    G = projector.G
    codes = []
    for it in items:
        if it.sample is not None:
            w = sampled[it.sample : it.sample + 1]
        else:
            w, _ = load_projection(cache / f"{it.stem}.npz" if it.is_image else it.path)
            w = w.cpu()
        if tuple(w.shape[1:]) != (G.num_ws, G.w_dim):
            raise CliError(
                f"{it.source}: the code has shape {tuple(w.shape[1:])}, but the generator takes "
                f"[{G.num_ws}, {G.w_dim}] (a projection into another generator?)"
            )
        codes.append(w)
    return torch.cat(codes)


# ----------------------------------------------------------------------------------------------
# Run


def _target_generator(args: argparse.Namespace, device: torch.device):
    if args.target_generator is None and args.generator is not None:
        raise CliError("--generator needs --target-generator (a G_t fine-tuned from that G_s)")
    default = common.DATA / f"G_t_{args.style_set}.safetensors"
    nets, path, _ = invert.load_generator(args.target_generator, device, default=default, what="G_t")
    return nets.G, path


def run(args: argparse.Namespace) -> int:
    """``hrinv stylize``."""
    from ..blending import default_swap_res
    from ..gallery import lso_initial_variables, stylize_pairs
    from ..images import save_image
    from ..losses import perceptual_loss
    from ..lso import decoded_target, resolution_reg_weight
    from ..projector import save_projection

    shard = common.parse_shard(args.shard)
    out = Path(args.out).expanduser()
    invert.check_out_folder(out, [*args.contents, *args.styles])
    if args.batch_size < 1 or args.lso_steps < 1:
        raise CliError("--batch-size and --lso-steps must be >= 1")
    contents = list_items(args.contents, "content", allow_samples=False)
    styles = list_items(args.styles, "style", allow_samples=True, style_seed=args.style_seed)
    mine = [contents[i] for i in shard.select(len(contents))]
    common.set_threads(args.threads)
    device = common.resolve_device(args.device, shard)
    if args.steps is None and args.generator is None:
        args.steps = DEFAULT_TOY_STEPS
    projector = invert.make_projector(args, device, noise=False)
    G_s = projector.G
    G_t, t_path = _target_generator(args, device)
    res = int(G_s.img_resolution)
    swap_res = args.swap_res if args.swap_res is not None else default_swap_res(G_s)
    reg_weight = args.reg_weight if args.reg_weight is not None else resolution_reg_weight(res)
    options = {
        **projector.options,
        "target_generator": common.generator_id(t_path),
        "method": args.method,
        "lso_steps": int(args.lso_steps) if args.method == "lerp_lso" else 0,
        "reg_weight": float(reg_weight) if args.method == "lerp_lso" else None,
        "swap_res": int(swap_res) if args.method in ("layer_swap", "swap_g_and_w") else None,
        "style_seed": int(args.style_seed) if any(s.sample is not None for s in styles) else None,
    }
    pending: list[tuple[int, int]] = []
    for c, content in enumerate(mine):
        for s, style in enumerate(styles):
            paths = pair_paths(out, content.stem, style.stem)
            if pair_done(paths) and not args.overwrite:
                common.check_record(paths["json"], common.read_json(paths["json"]), options, PAIR_RESUME_KEYS)
            else:
                pending.append((c, s))
    total = len(mine) * len(styles)
    info(
        f"hrinv stylize: {len(mine)} contents x {len(styles)} styles (shard {shard}), {total - len(pending)} pairs done, "
        f"{len(pending)} to do -> {out}; method {args.method}, {t_path.name}, on {device}",
        args.quiet,
    )
    if not pending:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    needed_c = sorted({c for c, _ in pending})
    needed_s = sorted({s for _, s in pending})
    w_s = torch.zeros(len(mine), G_s.num_ws, G_s.w_dim)
    w_s[needed_c] = _codes(
        [mine[c] for c in needed_c], projector, _cache(args.contents_cache, out, "contents"), args, "content"
    )
    t_projector = invert.Projector(
        G=G_t,
        loss=projector.loss,
        device=device,
        options={**projector.options, "generator": options["target_generator"], "align": False},
    )
    w_t = torch.zeros(len(styles), G_t.num_ws, G_t.w_dim)
    w_t[needed_s] = _codes(
        [styles[s] for s in needed_s],
        t_projector,
        _cache(args.styles_cache, out, "styles"),
        args,
        "style",
        G_samples=G_t,
    )
    w_s, w_t = w_s.to(device), w_t.to(device)
    targets = None
    if args.method == "lerp_lso":  # the authors' LSO target G_s(w_s), quantised like a saved image
        targets = torch.zeros(len(mine), 3, res, res, device=device)
        for c in needed_c:
            targets[c : c + 1] = decoded_target(G_s, w_s[c : c + 1])
    lso_kwargs: dict[str, Any] = {}
    if args.method == "lerp_lso":
        d_h = perceptual_loss("d_h", weights=projector.options["vgg_weights"], device=device)
        lso_kwargs = {"num_steps": args.lso_steps, "reg_weight": reg_weight, "loss": d_h, "seed": args.seed}

    batches = [pending[i : i + args.batch_size] for i in range(0, len(pending), args.batch_size)]
    for batch in tqdm(batches, desc="pairs", unit="batch", disable=args.quiet):
        ci = torch.tensor([c for c, _ in batch])
        si = torch.tensor([s for _, s in batch])
        kw = dict(lso_kwargs)
        if kw:
            kw["init"] = torch.cat(
                [
                    lso_initial_variables(
                        1, G_s.w_dim, {**lso_kwargs, "seed": common.pair_seed(args.seed, mine[c].stem, styles[s].stem)}
                    )
                    for c, s in batch
                ]
            ).to(device)
        result = stylize_pairs(
            G_s,
            G_t,
            w_s,
            w_t,
            args.method,
            pairs=(ci, si),
            contents=targets,
            swap_res=swap_res,
            lso_kwargs=kw,
            batch_size=args.batch_size,
            progress=False,
        )
        for k, (c, s) in enumerate(batch):
            paths = pair_paths(out, mine[c].stem, styles[s].stem)
            record = {
                "content": mine[c].stem,
                "style": styles[s].stem,
                "content_source": mine[c].source,
                "style_source": styles[s].source,
                "method": args.method,
                "gamma": {str(r): g for r, g in result.schedule.items()},
                "options": options,
            }
            save_image(result.images[k : k + 1], paths["png"])
            common.write_json(paths["json"], record)
            save_projection(paths["npz"], result.w[k : k + 1])
        info(f"stylised {len(batch)} pairs (last: {paths['png'].name})", args.quiet)
    info(f"{out}: {total} pairs of shard {shard} done", args.quiet)
    return 0


def _cache(value: str | None, out: Path, name: str) -> Path:
    return Path(value).expanduser() if value else out / name
