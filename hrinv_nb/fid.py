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
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}) of two feature sets [N, d] (float64)."""
    a = np.asarray(feats_a.detach().cpu() if isinstance(feats_a, torch.Tensor) else feats_a, dtype=np.float64)
    b = np.asarray(feats_b.detach().cpu() if isinstance(feats_b, torch.Tensor) else feats_b, dtype=np.float64)
    assert a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[1], f"features {a.shape} vs {b.shape}"
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("need at least two samples per set")
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


def inception_fid(path_a: str | os.PathLike, path_b: str | os.PathLike, weights: str | os.PathLike | None = None,
                  cuda: bool | None = None) -> float:
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
        input1=str(path_a), input2=str(path_b), fid=True, verbose=False,
        cuda=torch.cuda.is_available() if cuda is None else cuda,
        feature_extractor_weights_path=str(weights),
    )
    return float(metrics["frechet_inception_distance"])
