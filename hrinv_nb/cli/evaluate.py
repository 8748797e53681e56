"""``hrinv evaluate``: score a folder of stylised images (ours or another method's) by ID retrieval and FID.

ID retrieval (Table III): every stylised image is embedded with a face-identity network and assigned
the nearest content embedding; top-1 is the fraction assigned to their own source. The source of
``<content_stem>__<anything>.<ext>`` is the content whose stem is the longest prefix before a ``__``
(or given by ``--pairs FILE.csv``). FID between the stylised folder and a reference folder at each
``--fid-resolutions`` size uses torch-fidelity with local Inception weights, or is reported unavailable.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import common, invert
from .common import CliError, info

PSP_SIZE = 256
PSP_BOX = (35, 223, 32, 220)  # rows 35:223, columns 32:220 of a 256² image (pSp / e4e IDLoss)
LOAD_BATCH = 32

DESCRIPTION = """\
Score stylised images: ID retrieval (is each stylised image's nearest content its own source?) and
FID against a reference folder. Works on any method's outputs (HRInversion, StarGANv2, DualStyleGAN...)
as long as the file names (or a --pairs CSV) say which content each stylised image comes from.

Naming convention: a stylised file <content_stem>__<anything>.<ext> comes from the content whose
file stem is <content_stem> (the longest content stem followed by '__'), as 'hrinv stylize' writes
them. Only images directly inside the folders are read.

Examples:

  # the toy world: toy identity embedder, FID reported unavailable without Inception weights
  hrinv evaluate --contents photos/ --stylized styl/

  # the paper's measures: ArcFace IR-SE-50 with pSp's crop, FID at 256² and 1024² against FFHQ
  hrinv evaluate --contents photos/ --stylized starganv2_out/ --pairs pairs.csv \\
      --arcface model_ir_se50.pth --crop psp --inception weights-inception-2015-12-05-6726825d.pth \\
      --reference ffhq_cartoon/ --fid-resolutions 256 1024 --out starganv2.json
"""

EPILOG = """\
--pairs FILE: a CSV with columns 'stylized,content' (a header row with those names is optional);
each value is a file name, a stem or a path; stylised images not listed are ignored.

Identity: with --arcface (or $HRINV_ARCFACE_WEIGHTS) TreB1eN's model_ir_se50.pth, the authors'
preprocessing (whole image resized to 112x112); --crop psp first resizes to 256x256 and keeps rows
35:223, columns 32:220 (the face region pSp / e4e crop), then pools to 112x112. Without ArcFace
weights the toy identity embedder (data/id_embedder_toy.safetensors) is used, and a note says so.

FID: torch-fidelity (pip install 'hrinv_nb[fid]') with --inception or $HRINV_INCEPTION_WEIGHTS
(weights-inception-2015-12-05-6726825d.pth); both sets are resized (bilinear, antialias) to each
resolution first. Without them FID is reported as unavailable, never an error. Nothing is downloaded.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``evaluate`` on the subcommand parsers."""
    parser = common.subcommand(
        subparsers, "evaluate", "score stylised images by ID retrieval and FID", DESCRIPTION, EPILOG
    )
    parser.add_argument("--contents", required=True, metavar="DIR", help="folder of content images (required)")
    parser.add_argument("--stylized", required=True, metavar="DIR", help="folder of stylised images (required)")
    parser.add_argument(
        "--pairs", metavar="FILE", default=None, help="CSV stylized,content (default: names <content>__*)"
    )
    arcface_help = "ArcFace IR-SE-50 model_ir_se50.pth (default: $HRINV_ARCFACE_WEIGHTS, else the toy embedder)"
    parser.add_argument("--arcface", metavar="PTH", help=arcface_help)
    parser.add_argument(
        "--crop",
        choices=("none", "psp"),
        default="none",
        help="face crop before ArcFace: none (the authors') | psp (pSp/e4e's) (default: none)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=1.5,
        metavar="X",
        help="top1_thresh also fails matches farther than this squared distance (default: 1.5)",
    )
    parser.add_argument(
        "--fid-resolutions",
        type=int,
        nargs="+",
        default=[256, 1024],
        metavar="R",
        help="image sizes at which FID is computed (default: 256 1024)",
    )
    inception_help = "torch-fidelity Inception weights (default: $HRINV_INCEPTION_WEIGHTS; else FID is unavailable)"
    parser.add_argument("--inception", metavar="PATH", help=inception_help)
    parser.add_argument(
        "--reference", metavar="DIR", default=None, help="FID reference folder (default: the --contents folder)"
    )
    parser.add_argument(
        "--out", metavar="FILE.json", help="where to write the results (default: STYLIZED/evaluation.json)"
    )
    invert.add_common_options(parser)
    parser.set_defaults(func=run)
    return parser


# ----------------------------------------------------------------------------------------------
# Matching stylised files to contents


def content_of(name: str, content_stems: Sequence[str]) -> str | None:
    """The content stem of a stylised file stem ``<content>__<rest>`` (the longest matching stem), or None."""
    best = None
    for stem in content_stems:
        if name.startswith(stem + "__") and (best is None or len(stem) > len(best)):
            best = stem
    return best


def read_pairs(path: Path, stylized: Sequence[Path], content_stems: Sequence[str]) -> list[tuple[Path, str]]:
    """(stylised file, content stem) from a CSV ``stylized,content``; values are names, stems or paths."""
    by_name = {p.name: p for p in stylized} | {p.stem: p for p in stylized}
    known = set(content_stems)
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CliError(f"--pairs {path}: cannot be read as CSV ({err})") from err
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["stylized", "content"]:
        rows = rows[1:]
    out = []
    for line, row in enumerate(rows, 1):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 2:
            raise CliError(f"--pairs {path}, row {line}: expected 'stylized,content', got {row}")
        s_key, c_key = Path(row[0].strip()).name, Path(row[1].strip())
        image = by_name.get(s_key) or by_name.get(Path(s_key).stem)
        if image is None:
            raise CliError(f"--pairs {path}, row {line}: no stylised image {row[0]!r} in the --stylized folder")
        stem = c_key.stem if c_key.stem in known else c_key.name
        if stem not in known:
            raise CliError(f"--pairs {path}, row {line}: no content {row[1]!r} in the --contents folder")
        out.append((image, stem))
    if not out:
        raise CliError(f"--pairs {path}: no pairs listed")
    return out


def match_by_name(stylized: Sequence[Path], content_stems: Sequence[str]) -> tuple[list[tuple[Path, str]], list[Path]]:
    """(stylised file, content stem) for every ``<content>__*`` file, and the files that match no content."""
    matched, unmatched = [], []
    for path in stylized:
        stem = content_of(path.stem, content_stems)
        if stem is None:
            unmatched.append(path)
        else:
            matched.append((path, stem))
    return matched, unmatched


# ----------------------------------------------------------------------------------------------
# Embedders


def psp_crop(img: torch.Tensor) -> torch.Tensor:
    """pSp / e4e's ID-loss crop: resize to 256² (bilinear, antialias), keep rows 35:223 and columns 32:220, pool to 112²."""
    import torch.nn.functional as F

    if tuple(img.shape[-2:]) != (PSP_SIZE, PSP_SIZE):
        img = F.interpolate(img, size=(PSP_SIZE, PSP_SIZE), mode="bilinear", align_corners=False, antialias=True)
    top, bottom, left, right = PSP_BOX
    return F.adaptive_avg_pool2d(img[:, :, top:bottom, left:right], (112, 112))


def load_embedder(
    arcface: str | None, crop: str, device: torch.device, quiet: bool
) -> tuple[Callable[[torch.Tensor], torch.Tensor], str, int | None]:
    """``(embed, description, load size)``: ArcFace IR-SE-50 when weights are given, else the toy embedder."""
    from ..identity import ARCFACE_ENV, arcface_embedder, load_arcface

    weights = arcface or os.environ.get(ARCFACE_ENV)
    if weights:
        model = load_arcface(weights, device=device)
        base = arcface_embedder(model)
        if crop == "psp":
            return (lambda x: base(psp_crop(x))), f"ArcFace IR-SE-50 ({weights}), pSp crop", None
        return base, f"ArcFace IR-SE-50 ({weights}), whole image", None
    if crop != "none":
        raise CliError("--crop psp applies to ArcFace faces; give --arcface (or set HRINV_ARCFACE_WEIGHTS)")
    from ..toy.identity import EMBED_SIZE, id_embedder_fn, load_id_embedder

    info(
        "note: no ArcFace weights (--arcface or $HRINV_ARCFACE_WEIGHTS): using the toy identity embedder, "
        "meaningful only on toy-world renders",
        quiet,
    )
    return id_embedder_fn(load_id_embedder(device=device)), "toy identity embedder (not ArcFace)", EMBED_SIZE


def embed_files(embed: Callable[[torch.Tensor], torch.Tensor], files: Sequence[Path], size: int | None) -> torch.Tensor:
    """Embeddings [N, d] of image files, loaded (centre-cropped square, resized to ``size`` when given) in batches."""
    from ..images import load_image

    out = []
    for i in range(0, len(files), LOAD_BATCH):
        batch = [load_image(p, size=size) for p in files[i : i + LOAD_BATCH]]
        shapes = {tuple(b.shape) for b in batch}
        if len(shapes) > 1:  # mixed sizes: embed one by one (each embedder resizes itself)
            out += [embed(b) for b in batch]
        else:
            out.append(embed(torch.cat(batch)))
    return torch.cat(out).float()


# ----------------------------------------------------------------------------------------------
# FID


def fid_scores(
    stylized: Sequence[Path], reference: Path, resolutions: Sequence[int], weights: str | None
) -> dict[str, Any]:
    """FID per resolution, or ``{"available": False, "reason": ...}`` without torch-fidelity / Inception weights."""
    from ..fid import INCEPTION_ENV, inception_fid

    weights = weights or os.environ.get(INCEPTION_ENV)
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return {"available": False, "reason": "torch-fidelity is not installed (pip install 'hrinv_nb[fid]')"}
    if not weights or not Path(weights).expanduser().is_file():
        return {
            "available": False,
            "reason": f"no Inception weights ({weights or 'none given'}): pass --inception or set {INCEPTION_ENV}",
        }
    refs = common.list_files([reference], what="reference image")
    if len(stylized) < 2 or len(refs) < 2:
        return {"available": False, "reason": "FID needs at least two images in each set"}
    scores: dict[str, Any] = {"available": True, "reference": str(reference), "n_stylized": len(stylized)}
    scores["n_reference"] = len(refs)
    with tempfile.TemporaryDirectory() as tmp:
        for res in resolutions:
            a, b = Path(tmp) / f"a{res}", Path(tmp) / f"b{res}"
            _resized_copies(stylized, a, res)
            _resized_copies(refs, b, res)
            scores[str(res)] = inception_fid(a, b, weights=weights)
    return scores


def _resized_copies(files: Sequence[Path], folder: Path, size: int) -> None:
    """PNG copies of ``files`` in ``folder``, centre-cropped square and resized to size² (bilinear, antialias)."""
    import torch.nn.functional as F

    from ..images import load_image, save_image

    folder.mkdir(parents=True)
    for i, path in enumerate(files):
        img = load_image(path)
        if tuple(img.shape[-2:]) != (size, size):
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        save_image(img.clamp(-1, 1), folder / f"{i:06d}.png")


# ----------------------------------------------------------------------------------------------
# Run


def _folder(value: str, option: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise CliError(f"{option} folder not found: {path}")
    if not path.is_dir():
        raise CliError(f"{option} {path} is not a folder")
    return path


def format_table(results: dict[str, Any]) -> str:
    """The results as a small text table."""
    r = results["id_retrieval"]
    rows = [
        ("identity embedder", results["embedder"]),
        ("contents / stylised", f"{r['num_contents']} / {r['n']}"),
        ("ID retrieval top-1", f"{r['top1']:.3f}  (chance {r['chance']:.3f})"),
        ("top-1 within threshold", f"{r['top1_thresh']:.3f}  (squared distance <= {results['threshold']:g})"),
        ("mean nearest distance", f"{r['mean_min_dist']:.3f}"),
    ]
    fid = results["fid"]
    if fid.get("available"):
        rows += [(f"FID @ {res}²", f"{fid[str(res)]:.2f}") for res in results["fid_resolutions"]]
    else:
        rows.append(("FID", f"unavailable: {fid['reason']}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    """``hrinv evaluate``."""
    from ..retrieval import id_retrieval

    contents_dir = _folder(args.contents, "--contents")
    stylized_dir = _folder(args.stylized, "--stylized")
    reference = _folder(args.reference, "--reference") if args.reference else contents_dir
    if any(r < 1 for r in args.fid_resolutions):
        raise CliError(f"--fid-resolutions must be positive, got {args.fid_resolutions}")
    if not math.isfinite(args.threshold):
        raise CliError(f"--threshold must be finite, got {args.threshold}")
    contents = common.list_files([contents_dir], what="content image")
    content_stems = common.stems(contents, "content")
    stylized = common.list_files([stylized_dir], what="stylised image")
    if args.pairs:
        pairs_path = Path(args.pairs).expanduser()
        if not pairs_path.is_file():
            raise CliError(f"--pairs file not found: {pairs_path}")
        matched, unmatched = read_pairs(pairs_path, stylized, content_stems), []
    else:
        matched, unmatched = match_by_name(stylized, content_stems)
        if not matched:
            raise CliError(
                f"no file in {stylized_dir} is named <content_stem>__*.<ext> for a content of {contents_dir} "
                "(e.g. a content photo7.png and a stylised photo7__cartoon.png); or give --pairs FILE.csv"
            )
    if unmatched:
        info(
            f"note: {len(unmatched)} stylised files match no content and are ignored (e.g. {unmatched[0].name})",
            args.quiet,
        )
    common.set_threads(args.threads)
    device = common.resolve_device(args.device)
    embed, embedder, size = load_embedder(args.arcface, args.crop, device, args.quiet)
    info(f"embedding {len(contents)} contents and {len(matched)} stylised images ({embedder})", args.quiet)
    content_emb = embed_files(embed, contents, size)
    stylized_emb = embed_files(embed, [p for p, _ in matched], size)
    index = {stem: i for i, stem in enumerate(content_stems)}
    labels = torch.tensor([index[stem] for _, stem in matched])
    retrieval = id_retrieval(content_emb, stylized_emb, labels, threshold=args.threshold)
    d = torch.cdist(stylized_emb.double(), content_emb.double()).square()
    nearest = d.argmin(dim=1)
    per_image = [
        {
            "stylized": p.name,
            "content": stem,
            "nearest": content_stems[int(nearest[k])],
            "hit": bool(int(nearest[k]) == index[stem]),
            "distance_to_own": float(d[k, index[stem]]),
        }
        for k, (p, stem) in enumerate(matched)
    ]
    fid = fid_scores([p for p, _ in matched], reference, args.fid_resolutions, args.inception)
    results = {
        "contents": str(contents_dir.resolve()),
        "stylized": str(stylized_dir.resolve()),
        "pairs": str(Path(args.pairs).resolve()) if args.pairs else None,
        "embedder": embedder,
        "crop": args.crop,
        "threshold": args.threshold,
        "id_retrieval": retrieval,
        "fid_resolutions": list(args.fid_resolutions),
        "fid": fid,
        "unmatched": [p.name for p in unmatched],
        "per_image": per_image,
    }
    out = Path(args.out).expanduser() if args.out else stylized_dir / "evaluation.json"
    common.write_json(out, results)
    print(format_table(results))
    info(f"wrote {out}", args.quiet)
    sys.stdout.flush()
    return 0
