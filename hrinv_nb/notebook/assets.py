"""Fail fast: every file and folder a notebook's parameters name, resolved and checked before any computation.

A notebook's configuration cell lists what its parameters point at, one :class:`Need` per parameter,
and calls :func:`resolve_assets` right after ``build_config``::

    assets = resolve_assets(
        {
            "G_s_path": Need(cfg.G_s_path, "the source generator G_s", toy="G_s.safetensors"),
            "content_dir": Need(cfg.content_dir, "content photos", kind="dir", empty="held-out renders", min_images=10),
            "lpips_weights": Need(cfg.lpips_weights, "torchvision VGG16 for LPIPS", optional=True),
        },
        notebook=cfg.notebook,
    )
    print(assets.summary())

A parameter's value is ``''`` (the embedded toy asset ``data/<toy>``, or, without one, what ``empty``
says: e.g. held-out renders instead of photos), ``'$VAR'`` / ``'${VAR}'`` (an environment variable
holding the path), a path (``~`` expanded; relative paths are tried against the working folder, then
the repository), or one of the ``off`` values the notebook allows (``'none'``, ``'skip'``, ...).

Everything is resolved first; then ONE :class:`MissingAssetsError` lists every required item that is
missing -- the parameter, the variable, what file goes there (:data:`VARIABLES` describes each
``HRINV_*`` variable) and where to put it -- so a preset with three missing files stops in the
configuration cell with all three, not hours later with the first. Optional assets (a metric the
notebook can report as unavailable: LPIPS weights, Inception weights, ...) never raise: a missing one
resolves to ``None`` and its reason is kept (:attr:`ResolvedAssets.reasons`) for the notebook to print
as ``unavailable: <reason>``. Folders must exist and hold at least ``min_images`` images; their
images are listed by :func:`image_files` in numeric order (``2.jpg`` before ``10.jpg``, as
CelebA-HQ's ``0.jpg … 29999.jpg`` need). Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import HrinvError
from ..files import from_env_reference, natural_key

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
PRETRAINED = DATA / "pretrained"  # a suggested place for real weights (any folder works)
# What the notebooks read from a folder (the formats the face and style data sets come in).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
README_DATA = "README.md, section 'Pointing the presets at the data sets'"

# Every HRINV_* variable a preset may name, and the file or folder it must point at. The README's
# table of variables says the same (tests/test_notebook_assets.py checks that both list every
# variable of the paper presets), so an error can say what goes where without the README at hand.
VARIABLES: dict[str, str] = {
    "HRINV_FFHQ_PKL": "NVIDIA's ffhq-res1024-mirror-stylegan2-noaug.pkl (the FFHQ StyleGAN2-ADA generator G_s)",
    "HRINV_G_T_CARTOON_PKL": "a cartoon (Disney) target generator G_t fine-tuned from the FFHQ generator",
    "HRINV_G_T_CARICATURE_PKL": "a caricature target generator G_t fine-tuned from the FFHQ generator",
    "HRINV_G_T_ANIME_PKL": "an anime target generator G_t fine-tuned from the FFHQ generator",
    "HRINV_STYLE_INR_PKL": "a Style-INR-GAN snapshot (FFHQ, or its DIV2K transfer for panoramas)",
    "HRINV_VGG16_WEIGHTS": "ImageNet VGG16 weights: timm vgg16.tv_in1k (safetensors/pth) or torchvision "
    "vgg16-397923af.pth",
    "HRINV_RESNET50_WEIGHTS": "timm ImageNet ResNet50 weights (resnet50 safetensors/pth)",
    "HRINV_DEIT_S16_WEIGHTS": "timm deit_small_patch16_224 weights",
    "HRINV_LPIPS_VGG16_PT": "NVIDIA's LPIPS TorchScript vgg16.pt (the LPIPS loss rows)",
    "HRINV_TORCHVISION_VGG16": "torchvision's vgg16-397923af.pth (the LPIPS metric)",
    "HRINV_ARCFACE_WEIGHTS": "ArcFace IR-SE-50 model_ir_se50.pth (TreB1eN's or pSp's file)",
    "HRINV_INCEPTION_WEIGHTS": "torch-fidelity's Inception weights weights-inception-2015-12-05-6726825d.pth",
    "HRINV_CELEBAHQ_DIR": "a folder of CelebA-HQ 1024² images named 0.jpg … 29999.jpg (CelebAMask-HQ's "
    "CelebA-HQ-img/), read in numeric order",
    "HRINV_DISNEY_DIR": "a folder of the cartoon (Disney) style data set's aligned face images",
    "HRINV_CARICATURE_DIR": "a folder of the caricature style data set's aligned face images",
    "HRINV_ANIME_DIR": "a folder of the anime style data set's aligned face images",
    "HRINV_CONTENT_IMAGE": "one aligned 1024² face photo (e.g. a CelebA-HQ image)",
    "HRINV_STYLE_IMAGE": "one style image (a painting or a cartoon, 1024²)",
    "HRINV_WIDE_IMAGE": "a non-square face photo",
    "HRINV_PANORAMA_IMAGE": "a panorama (DIV2K-like landscape)",
    "HRINV_DLIB_LANDMARKS": "dlib's shape_predictor_68_face_landmarks.dat (face alignment)",
}

Kind = Literal["file", "dir"]


class MissingAssetsError(HrinvError, FileNotFoundError):
    """Files or folders a notebook's parameters need are missing; the message lists every one.

    A :class:`~hrinv_nb.errors.HrinvError` and a ``FileNotFoundError``; ``problems`` holds one line
    per missing item (parameter, variable, what goes there and where).
    """

    def __init__(self, problems: Iterable[str], notebook: str | None = None) -> None:
        self.problems = list(problems)
        self.notebook = notebook
        where = f"{notebook}: " if notebook else ""
        count = len(self.problems)
        head = (
            f"{where}{count} asset{'s' if count != 1 else ''} missing; nothing has been computed and nothing "
            f"is downloaded. Fix {'each' if count != 1 else 'it'}, then run again:"
        )
        tail = "Every HRINV_* variable is listed in the README's table 'Variables of the paper presets'."
        super().__init__("\n".join([head, *(f"  - {p}" for p in self.problems), tail]))

    def __reduce__(self) -> tuple:
        return (type(self), (self.problems, self.notebook))


@dataclass(frozen=True)
class Need:
    """One parameter's asset: its ``value`` and how to check it.

    ``value``: ``''``, ``'$VAR'``, a path, or one of ``off``. ``what``: what the notebook uses it for
    (e.g. ``"the source generator G_s"``). ``kind``: ``'file'`` or ``'dir'`` (a folder of images,
    holding at least ``min_images``). ``toy``: the embedded asset ``data/<toy>`` that ``''`` means;
    without one, ``''`` means ``empty`` (e.g. ``"held-out renders"``: the notebook needs no file then),
    or a ``fallback`` locator (the library's own default, e.g. an environment variable or the torch hub
    cache) that returns a path or raises. ``optional``: a metric the notebook can report as unavailable
    (a missing file resolves to ``None`` with its reason, never an error). ``off``: values that switch
    the asset off (``None``, reason "switched off").
    """

    value: str
    what: str
    kind: Kind = "file"
    toy: str | None = None
    optional: bool = False
    off: tuple[str, ...] = ()
    empty: str | None = None
    fallback: Callable[[], Path] | None = None
    min_images: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise HrinvError(f"{self.what}: an asset parameter is a string, got {self.value!r}")
        if self.kind not in ("file", "dir"):
            raise HrinvError(f"{self.what}: kind must be 'file' or 'dir', got {self.kind!r}")
        if self.kind == "dir" and self.min_images < 1:
            raise HrinvError(f"{self.what}: min_images must be >= 1, got {self.min_images}")


class ResolvedAssets(dict):
    """``{parameter: Path or None}`` from :func:`resolve_assets`; ``reasons[parameter]`` says why a value is
    ``None`` (switched off, not given, or, for an optional asset, unavailable); ``unavailable`` holds the
    optional assets that were asked for but are missing, with their reasons."""

    def __init__(self, paths: Mapping[str, Path | None], reasons: Mapping[str, str], unavailable: Iterable[str]):
        super().__init__(paths)
        self.reasons = dict(reasons)
        self.unavailable = {name: self.reasons[name] for name in unavailable}

    def mark_unavailable(self, name: str, reason: str) -> None:
        """Record that the optional asset ``name`` turned out unusable (e.g. a first try of its metric failed)."""
        self[name] = None
        self.reasons[name] = reason
        self.unavailable[name] = reason

    def note(self, name: str) -> str:
        """The line a notebook prints for ``name``: its path, or ``unavailable: <reason>`` / the reason."""
        path = self[name]
        if path is not None:
            return str(path)
        reason = self.reasons.get(name, "not given")
        return f"unavailable: {reason}" if name in self.unavailable else reason

    def summary(self) -> str:
        """One line per parameter: ``name: path`` or why there is none."""
        return "\n".join(f"{name}: {self.note(name)}" for name in self)


def repo_path(value: str) -> Path:
    """``value`` as an absolute path: ``~`` expanded; a relative path that does not exist from the working
    folder is taken from the repository root (notebooks run with ``notebooks/`` as their working folder)."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = path.absolute() if path.exists() else REPO / path
    return path


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images directly inside ``folder`` (:data:`IMAGE_SUFFIXES`, any case; hidden files skipped) in
    numeric-aware order (:func:`hrinv_nb.files.natural_key`: ``2.jpg`` before ``10.jpg``)."""
    folder = Path(folder)
    found = [
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(found, key=lambda p: natural_key(p.name))


def _variable_of(value: str) -> str | None:
    return value[1:].strip("{}") if value.startswith("$") else None


def _where(name: str, need: Need, var: str | None) -> str:
    """What goes there (for a known variable) and where to put it (sentences)."""
    known = f"{var} must name {VARIABLES[var]}. " if var in VARIABLES else ""
    if need.kind == "dir":
        put = f"Point {var} at the folder" if var else "Give an existing folder"
        return f"{known}{put} (see {README_DATA}), or pass another folder as {name}."
    if var:
        return (
            f"{known}Put the file anywhere (e.g. {PRETRAINED}/) and set {var}=/path/to/it, or pass the path as {name}."
        )
    return f"Put the file at that path, or pass another path as {name}."


class _Missing(Exception):
    """One missing item (internal): its message line."""


def _check_folder(name: str, need: Need, path: Path, shown: str, var: str | None) -> None:
    if not path.exists():
        raise _Missing(f"{shown}: folder not found: {path}. {_where(name, need, var)}")
    if not path.is_dir():
        raise _Missing(f"{shown}: {path} is a file, not a folder of images. {_where(name, need, var)}")
    count = len(image_files(path))
    if count < need.min_images:
        kinds = "/".join(IMAGE_SUFFIXES)
        raise _Missing(
            f"{shown}: {path} holds {count} image{'s' if count != 1 else ''} ({kinds} directly inside it), "
            f"needs {need.min_images}. {_where(name, need, var)}"
        )


def _locate(name: str, need: Need) -> tuple[Path | None, str]:
    """``(path, '')``, or ``(None, reason)`` for a value that needs no file; raises :class:`_Missing`."""
    value = need.value
    shown = f"{name} = {value!r} ({need.what})"
    if value in need.off:
        return None, f"switched off ({name}={value!r})"
    if value == "":
        if need.toy is not None:
            path = DATA / need.toy
            ok = path.is_dir() if need.kind == "dir" else path.is_file()
            if not ok:
                raise _Missing(
                    f"{shown}: the embedded toy asset {path} is missing; rebuild it with the command in "
                    f"data/README.md, or pass a path as {name}."
                )
            return path, ""
        if need.fallback is not None:
            try:
                return Path(need.fallback()), ""
            except (FileNotFoundError, HrinvError, RuntimeError) as err:
                raise _Missing(f"{shown}: {str(err).strip()}") from err
        if need.empty is not None:
            return None, f"not given: {need.empty}"
        raise _Missing(f"{shown}: no path given and there is no embedded toy default. {_where(name, need, None)}")
    var = _variable_of(value)
    try:
        raw = from_env_reference(value, lambda v: v)
    except FileNotFoundError:
        raise _Missing(f"{shown}: the environment variable {var} is not set. {_where(name, need, var)}") from None
    path = repo_path(raw)
    if var:
        shown += f", {var}={raw!r}"
    if need.kind == "dir":
        _check_folder(name, need, path, shown, var)
    elif not path.exists():
        raise _Missing(f"{shown}: file not found: {path}. {_where(name, need, var)}")
    elif not path.is_file():
        raise _Missing(f"{shown}: {path} is a folder, not a file. {_where(name, need, var)}")
    return path, ""


def resolve_assets(needs: Mapping[str, Need], *, notebook: str | None = None) -> ResolvedAssets:
    """Resolve every :class:`Need` (keyed by its parameter name); raise ONE :class:`MissingAssetsError`
    listing every required item that is missing, else return the :class:`ResolvedAssets`.

    Optional items that are missing resolve to ``None``, with the reason in ``reasons`` and in
    ``unavailable``; switched-off values and ``''`` without a toy asset resolve to ``None`` too.
    """
    paths: dict[str, Path | None] = {}
    reasons: dict[str, str] = {}
    unavailable: list[str] = []
    problems: list[str] = []
    for name, need in needs.items():
        if not isinstance(need, Need):
            raise HrinvError(f"resolve_assets: {name} must be a Need, got {type(need).__name__}")
        try:
            path, reason = _locate(name, need)
        except _Missing as missing:
            if need.optional:
                paths[name], reasons[name] = None, str(missing)
                unavailable.append(name)
                continue
            problems.append(str(missing))
            continue
        paths[name] = path
        if path is None:
            reasons[name] = reason
    if problems:
        raise MissingAssetsError(problems, notebook)
    return ResolvedAssets(paths, reasons, unavailable)


def resolve_one(value: str, what: str, *, toy: str | None = None, kind: Kind = "file") -> Path:
    """One required asset (:func:`resolve_assets` with a single :class:`Need`): its path, or
    :class:`MissingAssetsError`. ``''`` without ``toy`` is an error here (there is nothing to fall back to)."""
    name = what
    resolved = resolve_assets({name: Need(value, what, kind=kind, toy=toy)})
    path = resolved[name]
    assert path is not None  # no off values, no empty meaning: a None would have raised
    return path


# Parameters that do not change a notebook's results (left out of the ``auto`` work folder's name).
NOT_RESULTS = ("work_dir", "figures_dir", "threads")


def work_folder(value: str, notebook: str, parameters: Mapping[str, object] | None = None) -> Path | None:
    """The folder where a notebook streams its long loops, from its ``work_dir`` parameter (created).

    ``''`` → ``None`` (nothing streamed, everything in memory). Otherwise ``<base>/<notebook>``, so that
    one ``-p work_dir`` given to the main job for several notebooks never mixes their runs: ``'auto'``
    takes ``runs/work`` in the repository as ``<base>`` (``runs/`` is not committed) and adds ``<key>``, a
    short hash of ``parameters`` (all but :data:`NOT_RESULTS`; none without them): a rerun with the same
    parameters finds its folder and resumes, other parameters get a folder of their own. Any other value is
    ``<base>`` itself (``$VAR`` and ``~`` expanded, relative paths from the repository root).
    """
    if value == "":
        return None
    if value == "auto":
        path = REPO / "runs" / "work" / notebook
        if parameters is not None:
            kept = {k: v for k, v in parameters.items() if k not in NOT_RESULTS}
            path = path / hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]
    else:
        raw = from_env_reference(value, lambda var: f"work_dir: the environment variable {var} is not set")
        base = Path(raw).expanduser()
        path = (base if base.is_absolute() else REPO / base) / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def world_of(*generators: Path | None) -> str:
    """Which world a run is on, from its generator files: ``'the toy world'`` when every one is an embedded
    asset under ``data/``, ``'real weights'`` when none is, ``'toy and real weights'`` for a mix."""
    given = [Path(p).resolve() for p in generators if p is not None]
    assert given, "world_of needs at least one generator path"
    data = DATA.resolve()
    toy = [p.parent == data for p in given]
    if all(toy):
        return "the toy world"
    return "real weights" if not any(toy) else "toy and real weights"


def torchvision_vgg16() -> Path:
    """The torchvision VGG16 file that :func:`hrinv_nb.metrics.lpips` reads when given none
    (``$HRINV_TORCHVISION_VGG16``, then the torch hub cache): a :class:`Need`'s ``fallback`` for an LPIPS
    metric parameter left ``''``. Without one it raises :class:`hrinv_nb.metrics.MetricUnavailable`."""
    from ..metrics import _torchvision_vgg16_path

    return _torchvision_vgg16_path(None)
