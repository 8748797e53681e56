"""Closed-form semantic directions (SeFa) for the direction constraints of Eq. 9.

The style-affine weights of every modulated conv layer (``b{r}.conv0/conv1.affine.weight``,
[C_in, w_dim]) and of the last ``torgb`` are transposed to [w_dim, C_in], concatenated into
A [w_dim, ΣC], column-normalised (which makes the equalised-lr gain irrelevant), and the
eigenvectors of A·Aᵀ are sorted by eigenvalue, largest first.
"""

from __future__ import annotations

import torch

from .networks import Generator


def affine_weight_matrix(G: Generator) -> torch.Tensor:
    """A [w_dim, ΣC]: the column-normalised, concatenated affine weights SeFa factorises."""
    synth = G.synthesis
    cols = []
    for r in synth.block_resolutions:
        block = getattr(synth, f"b{r}")
        for layer in ("conv0", "conv1"):
            if hasattr(block, layer):
                cols.append(getattr(block, layer).affine.weight.detach().t())
    last = getattr(synth, f"b{synth.block_resolutions[-1]}")
    if hasattr(last, "torgb"):
        cols.append(last.torgb.affine.weight.detach().t())
    a = torch.cat(cols, dim=1).to(torch.float64)
    assert a.shape[0] == G.w_dim, f"affine matrix {tuple(a.shape)} vs w_dim {G.w_dim}"
    return a / a.norm(dim=0, keepdim=True).clamp_min(1e-12)


def sefa_directions(G: Generator, return_eigenvalues: bool = False):
    """Unit eigenvectors of A·Aᵀ as rows [w_dim, w_dim], sorted by eigenvalue, largest first."""
    a = affine_weight_matrix(G)
    evals, evecs = torch.linalg.eigh(a @ a.t())
    order = torch.argsort(evals, descending=True)
    dirs = evecs[:, order].t().contiguous().to(torch.float32)
    assert dirs.shape == (G.w_dim, G.w_dim)
    if return_eigenvalues:
        return dirs, evals[order].to(torch.float32)
    return dirs
