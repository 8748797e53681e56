"""Fréchet distances: real FID through torch-fidelity (Inception weights supplied locally), and the
same Fréchet computation in a substitute feature space for the toy world (never called "FID").

Streamed sets are scored from disk: :class:`InceptionFeatures` computes torch-fidelity's Inception
features of images read chunk by chunk (as 8-bit images, the way torch-fidelity reads PNG files) and
of a reference folder (read as torch-fidelity reads it), and :func:`fid_from_features` is
torch-fidelity's FID of two feature sets: the same number as :func:`inception_fid` on the folders,
with one chunk of images in memory instead of a folder of PNG copies. Inception weight files are
checked and read with ``weights_only`` (:func:`hrinv_nb.torch_files.load_torch_file`) before
torch-fidelity, which reads its weights with a full unpickler, sees a clean copy.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch

INCEPTION_ENV = "HRINV_INCEPTION_WEIGHTS"


def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}) of two feature sets [N, d] (float64).

    Tr (Σ_a Σ_b)^{1/2} is computed exactly as the nuclear norm of X_a X_bᵀ / √((N_a − 1)(N_b − 1))
    (X = centred features): the nonzero eigenvalues of Σ_a Σ_b are the squared singular values of
    X_a X_bᵀ. An SVD of an N_a × N_b matrix replaces ``sqrtm`` of a d × d one — fast and stable when
    the covariances are rank-deficient (fewer samples than dimensions).
    """
    a = np.asarray(feats_a.detach().cpu() if isinstance(feats_a, torch.Tensor) else feats_a, dtype=np.float64)
    b = np.asarray(feats_b.detach().cpu() if isinstance(feats_b, torch.Tensor) else feats_b, dtype=np.float64)
    assert a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[1], f"features {a.shape} vs {b.shape}"
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("need at least two samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    xa, xb = a - mu_a, b - mu_b
    na, nb = a.shape[0] - 1, b.shape[0] - 1
    tr_a, tr_b = float(np.sum(xa * xa)) / na, float(np.sum(xb * xb)) / nb
    tr_covmean = float(np.linalg.svd(xa @ xb.T, compute_uv=False).sum()) / np.sqrt(na * nb)
    return float(np.sum((mu_a - mu_b) ** 2) + tr_a + tr_b - 2 * tr_covmean)


def frechet_distance_sqrtm(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """The same distance with ``scipy.linalg.sqrtm`` of Σ_a Σ_b (the usual FID code; a reference)."""
    a = np.asarray(feats_a.detach().cpu() if isinstance(feats_a, torch.Tensor) else feats_a, dtype=np.float64)
    b = np.asarray(feats_b.detach().cpu() if isinstance(feats_b, torch.Tensor) else feats_b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        eps = np.eye(a.shape[1]) * 1e-6
        covmean = scipy.linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def feature_frechet(embed, images_a: torch.Tensor, images_b: torch.Tensor, batch_size: int = 64) -> float:
    """Fréchet distance between two image sets [N,3,H,W] in the feature space of ``embed``.

    In the toy world this is the substitute for FID; label it with the feature space used.
    """

    def feats(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([embed(x[i : i + batch_size]).flatten(1).cpu() for i in range(0, x.shape[0], batch_size)])

    return frechet_distance(feats(images_a), feats(images_b))


def torch_fidelity_missing() -> bool:
    """True when torch-fidelity (the ``fid`` extra) is not installed; checked before long runs that end in FID."""
    import importlib.util

    return importlib.util.find_spec("torch_fidelity") is None


def inception_fid(
    path_a: str | os.PathLike,
    path_b: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    cuda: bool | None = None,
) -> float:
    """Real FID between two image folders with torch-fidelity and a local Inception weight file.

    ``weights``: torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` (or set
    ``HRINV_INCEPTION_WEIGHTS``). Nothing is downloaded: without the file this raises.
    """
    try:
        import torch_fidelity
    except ImportError as e:
        raise ImportError("FID needs torch-fidelity: pip install 'hrinv_nb[fid]'") from e
    weights = weights or os.environ.get(INCEPTION_ENV)
    if weights is None or not Path(weights).is_file():
        raise FileNotFoundError(
            f"Inception weights not found ({weights}); put torch-fidelity's "
            f"weights-inception-2015-12-05-6726825d.pth somewhere local and pass weights=... or set {INCEPTION_ENV}"
        )
    with checked_weights_copy(weights) as clean:
        metrics = torch_fidelity.calculate_metrics(
            input1=str(path_a),
            input2=str(path_b),
            fid=True,
            verbose=False,
            cuda=torch.cuda.is_available() if cuda is None else cuda,
            feature_extractor_weights_path=str(clean),
            save_cpu_ram=True,  # no DataLoader worker processes
        )
    return float(metrics["frechet_inception_distance"])


@contextlib.contextmanager
def checked_weights_copy(weights: str | os.PathLike) -> Iterator[Path]:
    """A temporary copy of a state-dict file, written from its tensors after a safe read.

    ``weights`` is read by :func:`hrinv_nb.torch_files.load_torch_file` (checked, ``weights_only``) and must
    be a flat mapping of names to tensors; the copy is ``torch.save`` of exactly those tensors, so a
    library that loads weight files with a full unpickler (torch-fidelity) never reads the user's file.
    """
    from .errors import CheckpointError
    from .torch_files import load_torch_file

    state = load_torch_file(weights)
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise CheckpointError(f"{weights}: not a state dict (a mapping of names to tensors)")
    with tempfile.TemporaryDirectory(prefix="hrinv-weights-") as tmp:
        path = Path(tmp) / "weights.pth"
        torch.save({k: v.contiguous() for k, v in state.items()}, path)
        del state
        yield path


class InceptionFeatures:
    """torch-fidelity's Inception-v3 (``inception-v3-compat``, FID's 2048-d pool features) on ``device``.

    ``weights``: torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` (nothing is downloaded).
    :meth:`images` takes float images in [-1, 1] and quantises them to 8 bits as a PNG file would hold
    them (optionally resized to ``size``² first, as Table III's FID at 256²); :meth:`folder` reads a
    folder exactly as torch-fidelity does (its file listing and decoding). Features are float32 on the CPU.
    """

    FEATURE = "2048"

    def __init__(self, weights: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 64) -> None:
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise ImportError("FID needs torch-fidelity: pip install 'hrinv_nb[fid]'") from e
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"Inception weights not found: {path} (nothing is downloaded)")
        assert batch_size >= 1, batch_size
        self.weights, self.device, self.batch_size = path, torch.device(device), int(batch_size)
        with checked_weights_copy(path) as clean:
            model = FeatureExtractorInceptionV3(
                "inception-v3-compat", [self.FEATURE], feature_extractor_weights_path=str(clean)
            )
        self.model = model.to(self.device).eval().requires_grad_(False)

    def fingerprint(self) -> dict[str, Any]:
        """The weights file (name, size, modification time): what a resumed run must match."""
        stat = self.weights.stat()
        return {"inception": self.weights.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def uint8(self, images: torch.Tensor) -> torch.Tensor:
        """Features [B, 2048] of 8-bit images [B, 3, H, W] (``torch.uint8``), ``batch_size`` at a time."""
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3, (
            images.dtype,
            tuple(images.shape),
        )
        out = []
        with torch.no_grad():
            for i in range(0, images.shape[0], self.batch_size):
                (feats,) = self.model(images[i : i + self.batch_size].to(self.device))
                out.append(feats.to("cpu", torch.float32))
        return torch.cat(out)

    def images(self, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Features [B, 2048] of float images [B, 3, H, W] in [-1, 1], quantised like :func:`hrinv_nb.images.save_image`."""
        import torch.nn.functional as F

        from .images import to_uint8

        assert images.ndim == 4 and images.shape[1] == 3, tuple(images.shape)
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        u8 = torch.stack(
            [torch.from_numpy(to_uint8(images[i : i + 1])).permute(2, 0, 1) for i in range(images.shape[0])]
        )
        return self.uint8(u8.contiguous())

    def batches(self, batches: Iterable[torch.Tensor], size: int | None = None) -> torch.Tensor:
        """:meth:`images` of every batch in order ([M, 2048]): one batch of images in memory at a time."""
        out = [self.images(batch, size) for batch in batches]
        if not out:
            raise ValueError("InceptionFeatures.batches: no images")
        return torch.cat(out)

    def folder(self, folder: str | os.PathLike) -> torch.Tensor:
        """Features [M, 2048] of the images of ``folder`` as torch-fidelity reads it (its defaults: png, jpg
        and jpeg files, not recursive, sorted by name, decoded to 8-bit RGB), ``batch_size`` files at a time."""
        from torch_fidelity.datasets import ImagesPathDataset
        from torch_fidelity.defaults import DEFAULTS
        from torch_fidelity.utils import glob_samples_paths

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"FID reference folder not found: {folder}")
        files = glob_samples_paths(
            str(folder), DEFAULTS["samples_find_deep"], DEFAULTS["samples_find_ext"], DEFAULTS["samples_ext_lossy"],
            verbose=False,
        )  # fmt: skip
        if not files:
            raise FileNotFoundError(f"{folder}: no png/jpg/jpeg images for the FID reference")
        data = ImagesPathDataset(files)
        out = []
        for i in range(0, len(data), self.batch_size):
            out.append(self.uint8(torch.stack([data[j] for j in range(i, min(i + self.batch_size, len(data)))])))
        return torch.cat(out)


def fid_from_features(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """torch-fidelity's FID of two Inception feature sets [N, 2048] (its statistics and its formula)."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    assert feats_a.ndim == 2 and feats_b.ndim == 2 and feats_a.shape[1] == feats_b.shape[1], (
        tuple(feats_a.shape), tuple(feats_b.shape),
    )  # fmt: skip
    if feats_a.shape[0] < 2 or feats_b.shape[0] < 2:
        raise ValueError("FID needs at least two images per set")
    stats = [fid_features_to_statistics(f.detach().to("cpu", torch.float32)) for f in (feats_a, feats_b)]
    return float(fid_statistics_to_metric(stats[0], stats[1], verbose=False)[KEY_METRIC_FID])


def vgg_feature_embedder(
    weights: str | os.PathLike | None = None,
    layer: int = 29,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    size: int | None = None,
):
    """``embed(img [B,3,H,W] in [-1,1]) -> [B, C]``: global-average-pooled VGG16 features at ``layer``.

    The default (index 29, relu5_3, 512-d) plays the role of Inception's pool features in the toy
    world (with ``data/vgg16_toy.safetensors``); label any Fréchet distance in it "in VGG16 relu5_3 space".
    ``size``: resize inputs to size² first (bilinear, antialias), as FID resizes to Inception's 299²
    (the toy VGG was trained at 32²).
    """
    from .losses import imagenet_normalise, vgg16_trunk

    trunk = vgg16_trunk(layer, weights=weights).to(device).eval()

    def embed(img: torch.Tensor) -> torch.Tensor:
        assert img.ndim == 4 and img.shape[1] == 3, f"expected [B,3,H,W], got {tuple(img.shape)}"
        out = []
        with torch.no_grad():
            for i in range(0, img.shape[0], batch_size):
                x = img[i : i + batch_size].to(device, torch.float32)
                if size is not None and tuple(x.shape[-2:]) != (size, size):
                    x = torch.nn.functional.interpolate(
                        x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
                    )
                x = imagenet_normalise(x)
                out.append(trunk(x).mean(dim=(2, 3)).cpu())
        return torch.cat(out)

    return embed


def inception_fid_images(
    images: torch.Tensor,
    reference_dir: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    size: int | None = None,
) -> float:
    """Real FID (torch-fidelity, local Inception weights) between ``images`` [N,3,H,W] and a folder.

    The images are written as PNGs to a temporary folder (resized to ``size``² first when given, as
    for Table III's FID at 256²); the reference folder is used as it is.
    """
    import tempfile

    import torch.nn.functional as F

    from .images import save_image

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(images.shape[0]):
            img = images[i : i + 1]
            if size is not None and tuple(img.shape[-2:]) != (size, size):
                img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            save_image(img, Path(tmp) / f"{i:06d}.png")
        return inception_fid(tmp, reference_dir, weights=weights)
