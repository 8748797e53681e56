"""Fréchet distances: real FID through torch-fidelity (Inception weights supplied locally), and the
same Fréchet computation in a substitute feature space for the toy world (never called "FID").
"""

from __future__ import annotations

import os
from pathlib import Path

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
    metrics = torch_fidelity.calculate_metrics(
        input1=str(path_a),
        input2=str(path_b),
        fid=True,
        verbose=False,
        cuda=torch.cuda.is_available() if cuda is None else cuda,
        feature_extractor_weights_path=str(weights),
    )
    return float(metrics["frechet_inception_distance"])


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
