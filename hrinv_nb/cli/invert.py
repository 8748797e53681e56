"""``hrinv invert``: project photos into a StyleGAN2 generator with the HRInversion objective, resumably.

Per image in ``--out``: ``<stem>.json`` (metrics and options), ``<stem>.png`` (the reconstruction),
``<stem>_aligned.png`` (with ``--align``), ``<stem>.webp`` (with ``--video``) and, written last,
``<stem>.npz`` (the authors' keys: ``w`` and ``noise_bufs/<name>``), whose presence marks the image
as done. ``metrics.jsonl`` is rebuilt from the per-image JSONs at the end of every run.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..losses import LOSS_NAMES, PerceptualLoss, perceptual_loss
from . import common
from .common import CliError, info

DEFAULT_STEPS = 1000  # the paper's
DEFAULT_TOY_STEPS = 300  # notebook 00's, on the 64² toy G_s
# Options an existing result must share with this run to be reused (others are recorded only).
RESUME_KEYS = ("generator", "loss", "steps", "noise", "align")
VGG_LOSSES = ("vgg16_conv", "vgg16_relu", "d_h")
VIDEO_MAX_FRAMES = 100
VIDEO_MAX_HEIGHT = 512

DESCRIPTION = """\
Project photos into the latent space of a StyleGAN2 generator (HRInversion: W+ and noise maps,
full-resolution VGG16-conv perceptual loss).

Inputs are image files or folders (the images directly inside a folder; sub-folders are not
searched), processed in numeric-aware name order (2.jpg before 10.jpg). Each image is centre-cropped
to a square and resized (LANCZOS) to the generator's resolution; with --align it is first aligned
and cropped like FFHQ (face landmarks, dlib). A run is resumable: images whose .npz, .png and .json
exist in --out are skipped, if their JSON records the same generator, loss, steps, --noise and
--align (a mismatch is an error: use another --out or --overwrite).

Examples:

  # the embedded toy world (64x64 toy G_s and toy VGG16, no downloads), in about a minute on a CPU
  hrinv invert photo.png --out out/

  # a real generator (NVIDIA .pkl, .safetensors or .pt) and the ImageNet VGG16 weights
  hrinv invert photos/ --out out/ --align --generator ffhq.pkl \\
      --vgg-weights vgg16-397923af.pth --steps 1000 --video

  # four GPUs on one machine split the folder (each takes every 4th image)
  torchrun --nproc_per_node=4 -m hrinv_nb.cli invert photos/ --out out/ --generator ffhq.pkl --shard auto
"""

EPILOG = """\
Outputs per image (in --out): <stem>.npz (w [1, num_ws, w_dim] and noise_bufs/<name>, written last:
it marks the image done), <stem>.png, <stem>.json (PSNR, SSIM, final loss, steps, seconds, source,
options), <stem>_aligned.png with --align, <stem>.webp with --video; metrics.jsonl (one line per image).

Two inputs with the same stem (x/a.png and y/a.jpg) are refused. --shard i/n takes the images whose
position in the sorted list is i modulo n; --shard auto reads RANK and WORLD_SIZE (torchrun) and, with
CUDA, runs on cuda:$LOCAL_RANK. Every process rewrites metrics.jsonl from the JSONs present when it
ends, so the last one to finish leaves the complete file.

Weights are never downloaded. VGG16: --vgg-weights, else $HRINV_VGG16_WEIGHTS, else the torch hub cache
(vgg16-397923af.pth). Other losses: resnet50 $HRINV_RESNET50_WEIGHTS, deit_s16 $HRINV_DEIT_S16_WEIGHTS,
lpips_vgg $HRINV_LPIPS_VGG16_PT (NVIDIA's vgg16.pt). Without --generator the toy G_s (data/G_s.safetensors)
and the toy VGG16 (data/vgg16_toy.safetensors) are used.
"""


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """--device, --threads, --quiet, --debug: shared by every subcommand."""
    parser.add_argument(
        "--device", default="auto", help="auto | cpu | cuda | cuda:K; auto takes CUDA when present (default: auto)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default (default: 0)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or status lines (default: off)")
    parser.add_argument("--debug", action="store_true", help="show a traceback on errors (default: off)")


def add_projection_options(parser: argparse.ArgumentParser, *, toy_steps: int = DEFAULT_TOY_STEPS) -> None:
    """The projection options shared by invert and stylize."""
    parser.add_argument(
        "--generator",
        metavar="PKL|SAFETENSORS",
        default=None,
        help="source generator G_s: NVIDIA .pkl, the project's .safetensors or a .pt "
        "(default: the toy G_s, data/G_s.safetensors)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"projection steps per image (default: {DEFAULT_STEPS}; {toy_steps} on the toy G_s)",
    )
    parser.add_argument(
        "--loss",
        default="vgg16_conv",
        choices=[n for n in LOSS_NAMES],
        metavar="LOSS",
        help="perceptual loss: " + " | ".join(LOSS_NAMES) + " (default: vgg16_conv)",
    )
    parser.add_argument(
        "--vgg-weights",
        metavar="PATH",
        default=None,
        help="VGG16 weights for the vgg16_* losses (default: $HRINV_VGG16_WEIGHTS or the torch hub cache; "
        "the toy VGG16 data/vgg16_toy.safetensors on the toy G_s)",
    )
    parser.add_argument(
        "--lambda-scale",
        type=float,
        default=None,
        metavar="X",
        help="factor on every λ of the loss (default: 1024 / resolution for the 1024²-tuned tables: "
        "16 on the 64² toy G_s, 1 at 1024²)",
    )
    parser.add_argument(
        "--mse-weight", type=float, default=50.0, metavar="X", help="weight of the pixel MSE term (default: 50)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the noise maps and ε (default: 0)")
    parser.add_argument(
        "--align",
        action="store_true",
        help="align and crop each photo like FFHQ first (dlib landmarks; needs hrinv_nb.align) (default: off)",
    )
    parser.add_argument(
        "--landmarks",
        metavar="DAT",
        default=None,
        help="dlib shape_predictor_68_face_landmarks.dat for --align (default: found by hrinv_nb.align)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo images that already have results in --out (default: off)"
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``invert`` on the subcommand parsers."""
    parser = common.subcommand(
        subparsers, "invert", "project photos into a generator (W+ and noise maps), resumably", DESCRIPTION, EPILOG
    )
    parser.add_argument("paths", nargs="+", metavar="PATHS", help="image files and/or folders of images")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created; required)")
    add_projection_options(parser)
    parser.add_argument(
        "--noise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="optimise the noise maps too (HRInversion); --no-noise: W+ only (default: --noise)",
    )
    parser.add_argument(
        "--video",
        action="store_true",
        help=f"also write <stem>.webp: target | reconstruction over the optimisation (at most {VIDEO_MAX_FRAMES} frames) "
        "(default: off)",
    )
    parser.add_argument(
        "--shard",
        metavar="i/n|auto",
        default=None,
        help="process only images whose sorted index ≡ i (mod n); auto: $RANK/$WORLD_SIZE (default: all)",
    )
    add_common_options(parser)
    parser.set_defaults(func=run)
    return parser


# ----------------------------------------------------------------------------------------------
# Setup: generator, loss, options


@dataclass
class Projector:
    """A loaded generator and perceptual loss with the options every result records."""

    G: torch.nn.Module
    loss: PerceptualLoss
    device: torch.device
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return int(self.G.img_resolution)


def load_generator(path: str | None, device: torch.device, default: Path = common.TOY_G_S, what: str = "G_s"):
    """``(networks, path, is_toy)`` of ``--generator`` (None: the toy asset ``default``)."""
    from ..checkpoints import load_networks

    is_toy = path is None
    file = default if is_toy else Path(path).expanduser()
    if is_toy and not file.is_file():
        raise FileNotFoundError(
            f"embedded toy {what} {file} is missing; regenerate it with the command in data/README.md, "
            "or pass --generator"
        )
    return load_networks(file, device=device), file, is_toy


def build_loss(
    name: str,
    resolution: int,
    device: torch.device,
    *,
    vgg_weights: str | Path | None,
    D: torch.nn.Module | None = None,
    lambda_scale: float | None = None,
) -> tuple[PerceptualLoss, float]:
    """The perceptual loss ``name`` and its λ factor at ``resolution``² (default: the package's resolution-aware
    balance, ``perceptual_loss(lambda_scale="resolution")``: 1024 / resolution for the 1024²-tuned tables)."""
    if lambda_scale is not None and (lambda_scale <= 0 or not math.isfinite(lambda_scale)):
        raise CliError(f"--lambda-scale must be a finite number > 0, got {lambda_scale}")
    kwargs: dict[str, Any] = {"device": device, "lambda_scale": "resolution" if lambda_scale is None else lambda_scale}
    if name in VGG_LOSSES and vgg_weights is not None:
        kwargs["weights"] = vgg_weights
    if name == "discriminator":
        if D is None:
            raise CliError("--loss discriminator needs a generator file that also holds the discriminator D")
        kwargs["D"] = D
    loss = perceptual_loss(name, **kwargs)
    if lambda_scale is None:  # the factor the loss applies to an image of this size (only the shape is read)
        lambda_scale = loss.lambda_factor(torch.empty(1, 3, resolution, resolution, device="meta"))
    return loss, float(lambda_scale)


def make_projector(args: argparse.Namespace, device: torch.device, *, noise: bool) -> Projector:
    """Load ``--generator`` and the loss; fill in the defaults that depend on them (steps, VGG weights, λ scale)."""
    nets, path, is_toy = load_generator(args.generator, device)
    vgg = args.vgg_weights
    if vgg is None and is_toy and args.loss in VGG_LOSSES:
        vgg = common.TOY_VGG
    steps = args.steps if args.steps is not None else (DEFAULT_TOY_STEPS if is_toy else DEFAULT_STEPS)
    if steps < 1:
        raise CliError(f"--steps must be >= 1, got {steps}")
    G = nets.G
    if G.c_dim > 0:
        raise CliError(f"{path}: a conditional generator (c_dim={G.c_dim}) is not supported by the CLI")
    loss, scale = build_loss(
        args.loss, int(G.img_resolution), device, vgg_weights=vgg, D=nets.D, lambda_scale=args.lambda_scale
    )
    options = {
        "generator": common.generator_id(path),
        "loss": args.loss,
        "steps": int(steps),
        "noise": bool(noise),
        "align": bool(args.align),
        "mse_weight": float(args.mse_weight),
        "seed": int(args.seed),
        "lambda_scale": scale,
        "vgg_weights": str(Path(vgg).resolve()) if vgg is not None else None,
        "resolution": int(G.img_resolution),
    }
    return Projector(G=G, loss=loss, device=device, options=options)


# ----------------------------------------------------------------------------------------------
# One image


def output_paths(out: Path, stem: str) -> dict[str, Path]:
    """The files of one image in ``out``."""
    return {
        "npz": out / f"{stem}.npz",
        "png": out / f"{stem}.png",
        "json": out / f"{stem}.json",
        "aligned": out / f"{stem}_aligned.png",
        "video": out / f"{stem}.webp",
    }


def is_done(paths: dict[str, Path]) -> bool:
    """Whether an image's results are complete (the .npz is written last)."""
    return all(paths[k].is_file() for k in ("npz", "png", "json"))


def prepare_target(source: Path, paths: dict[str, Path], resolution: int, *, align: bool, landmarks: str | None):
    """The target [1, 3, R, R] in [-1, 1]: ``source`` (aligned first with ``align``), cropped and resized to R."""
    from ..images import load_image

    if align:
        try:
            from ..align import align_file
        except ImportError as err:
            raise CliError(
                f"--align needs the face-alignment module hrinv_nb.align and its dependencies (dlib): {err}"
            ) from err
        aligned = align_file(source, paths["aligned"], size=resolution, predictor_path=landmarks)
        return load_image(aligned, size=resolution)
    return load_image(source, size=resolution)


def _frame(target: torch.Tensor, image: torch.Tensor):
    """A PIL frame: target | image side by side, at most :data:`VIDEO_MAX_HEIGHT` px high."""
    from PIL import Image

    from ..images import to_uint8

    both = torch.cat([target[:1].detach().cpu(), image[:1].detach().clamp(-1, 1).cpu()], dim=3)
    pil = Image.fromarray(to_uint8(both))
    if pil.height > VIDEO_MAX_HEIGHT:
        pil = pil.resize((pil.width * VIDEO_MAX_HEIGHT // pil.height, VIDEO_MAX_HEIGHT), Image.LANCZOS)
    return pil


def save_video(path: Path, frames: list, seconds: float = 4.0) -> Path:
    """An animated, looping WebP of ``frames`` (Pillow), written atomically."""
    from ..files import atomic_write

    duration = max(20, int(1000 * seconds / max(1, len(frames))))

    def write(tmp: str) -> None:
        frames[0].save(
            tmp, format="WEBP", save_all=True, append_images=frames[1:], duration=duration, loop=0, quality=80
        )

    return atomic_write(path, write)


def invert_one(
    projector: Projector,
    source: Path,
    stem: str,
    out: Path,
    *,
    landmarks: str | None = None,
    video: bool = False,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Project ``source`` and write its files (the .npz last); returns the record written to ``<stem>.json``."""
    from .. import metrics
    from ..images import save_image
    from ..projector import project, save_projection

    o = projector.options
    paths = output_paths(out, stem)
    target = prepare_target(source, paths, projector.resolution, align=o["align"], landmarks=landmarks)
    target = target.to(projector.device)
    frames: list = []
    every = max(1, math.ceil(o["steps"] / VIDEO_MAX_FRAMES))

    def callback(step: int, _w: torch.Tensor, image: torch.Tensor) -> None:
        if step % every == 0:
            frames.append(_frame(target, image))

    start = time.perf_counter()
    result = project(
        projector.G,
        target,
        loss=projector.loss,
        num_steps=o["steps"],
        optimize_noise=o["noise"],
        mse_weight=o["mse_weight"],
        seed=o["seed"],
        progress=progress,
        callback=callback if video else None,
    )
    seconds = time.perf_counter() - start
    image = result.image.detach()
    wanted = {"aligned": bool(o["align"]), "video": bool(video)}
    record = {
        "stem": stem,
        "source": str(source.resolve()),
        "psnr": metrics.psnr(image.cpu(), target.cpu()),
        "ssim": metrics.ssim(image.cpu(), target.cpu()),
        "final_loss": result.history["loss"][-1],
        "final_mse": result.history["mse"][-1],
        "steps": o["steps"],
        "seconds": round(seconds, 3),
        "device": str(projector.device),
        "files": {k: p.name for k, p in paths.items() if k not in ("aligned", "video") or wanted[k]},
        "options": dict(o),
        **(extra or {}),
    }
    save_image(image, paths["png"])
    common.write_json(paths["json"], record)
    if video:
        frames.append(_frame(target, image))
        save_video(paths["video"], frames)
    save_projection(paths["npz"], result.w, result.noise)  # last: marks the image done
    return record


# ----------------------------------------------------------------------------------------------
# Many images


def invert_all(
    projector: Projector,
    sources: Sequence[Path],
    stems: Sequence[str],
    out: Path,
    *,
    landmarks: str | None = None,
    video: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    what: str = "image",
) -> dict[str, Path]:
    """Invert every ``sources[i]`` to ``out/<stems[i]>.*`` unless done; returns stem -> .npz path.

    A finished result is reused when its record has the same :data:`RESUME_KEYS` options, and refused
    (:class:`CliError`) otherwise, unless ``overwrite``.
    """
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path] = {}
    bar = tqdm(list(zip(sources, stems)), desc=f"{what}s", unit=what, disable=quiet, position=0)
    for source, stem in bar:
        paths = output_paths(out, stem)
        if is_done(paths) and not overwrite:
            common.check_record(paths["json"], common.read_json(paths["json"]), projector.options, RESUME_KEYS)
            info(f"skip {source}: done ({paths['npz']})", quiet)
            done[stem] = paths["npz"]
            continue
        bar.set_postfix_str(source.name)
        record = invert_one(projector, source, stem, out, landmarks=landmarks, video=video, progress=not quiet)
        info(f"{source} -> {paths['npz']}  PSNR {record['psnr']:.2f} dB, {record['seconds']:.1f} s", quiet)
        done[stem] = paths["npz"]
    bar.close()
    return done


def rebuild_metrics(out: Path, stems: Sequence[str]) -> tuple[Path, int]:
    """Rewrite ``out/metrics.jsonl`` from the finished images among ``stems`` (in that order)."""
    records = []
    for stem in stems:
        paths = output_paths(out, stem)
        if is_done(paths):
            records.append(common.read_json(paths["json"]))
    return common.write_jsonl(out / "metrics.jsonl", records), len(records)


def check_out_folder(out: Path, inputs: Sequence[str]) -> None:
    """Refuse an --out that is one of the input folders (its outputs would become inputs next time)."""
    resolved = out.expanduser().resolve()
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir() and path.resolve() == resolved:
            raise CliError(f"--out {out} is also an input folder; choose another output folder")
    if resolved.exists() and not resolved.is_dir():
        raise CliError(f"--out {out} exists and is not a folder")


def run(args: argparse.Namespace) -> int:
    """``hrinv invert``."""
    shard = common.parse_shard(args.shard)
    out = Path(args.out).expanduser()
    check_out_folder(out, args.paths)
    sources = common.list_files(args.paths)
    stems = common.stems(sources)
    mine = shard.select(len(sources))
    for i in mine:
        common.check_image_header(sources[i])
    if args.video:
        from PIL import features

        if not features.check("webp"):
            raise CliError("--video needs Pillow with WebP support (PIL.features.check('webp') is False)")
    common.set_threads(args.threads)
    device = common.resolve_device(args.device, shard)
    projector = make_projector(args, device, noise=args.noise)
    o = projector.options
    info(
        f"hrinv invert: {len(mine)} of {len(sources)} images (shard {shard}) -> {out}; "
        f"{Path(o['generator']).name} at {o['resolution']}², loss {o['loss']} (λ x{o['lambda_scale']:g}), "
        f"{o['steps']} steps, noise {'on' if o['noise'] else 'off'}, on {device}",
        args.quiet,
    )
    invert_all(
        projector,
        [sources[i] for i in mine],
        [stems[i] for i in mine],
        out,
        landmarks=args.landmarks,
        video=args.video,
        overwrite=args.overwrite,
        quiet=args.quiet,
    )
    path, count = rebuild_metrics(out, stems)
    info(f"{path}: {count} of {len(sources)} images done", args.quiet)
    return 0
