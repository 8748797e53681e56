"""SeFa directions on the parity generator; ID retrieval with a known answer."""

from __future__ import annotations

import torch
from conftest import TINY
from torch import nn

import hrinv_nb
from hrinv_nb.directions import sefa_directions
from hrinv_nb.retrieval import id_retrieval


def test_sefa_orthonormal_and_sorted():
    G = hrinv_nb.load_networks(TINY).G
    dirs, evals = sefa_directions(G, return_eigenvalues=True)
    assert dirs.shape == (G.w_dim, G.w_dim)
    torch.testing.assert_close(dirs @ dirs.t(), torch.eye(G.w_dim), atol=1e-4, rtol=0)
    assert torch.all(evals[:-1] >= evals[1:]) and evals[0] > evals[-1]
    # the top direction maximises the projected energy of the normalised affine weights
    from hrinv_nb.directions import affine_weight_matrix

    a = affine_weight_matrix(G).float()
    energy = (dirs @ a).square().sum(1)
    assert energy[0] >= energy.max() - 1e-3 and energy[0] > energy[-1]


def test_id_retrieval_known_answer_with_random_embedder():
    torch.manual_seed(0)
    embedder = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(32))

    def embed(x):
        with torch.no_grad():
            e = embedder(x)
        return e / e.norm(dim=1, keepdim=True)

    gen = torch.Generator().manual_seed(0)
    contents = torch.rand(20, 3, 16, 16, generator=gen) * 2 - 1
    labels = torch.arange(20).repeat_interleave(3)
    stylised = contents[labels] + 0.02 * torch.randn(60, 3, 16, 16, generator=gen)  # planted identities
    res = id_retrieval(embed(contents), embed(stylised), labels)
    assert res["top1"] == 1.0 and res["chance"] == 1 / 20 and res["n"] == 60
    wrong = id_retrieval(embed(contents), embed(stylised), labels.roll(3))
    assert wrong["top1"] == 0.0
    far = id_retrieval(embed(contents), embed(stylised), labels, threshold=-1.0)
    assert far["top1_thresh"] == 0.0 and far["top1"] == 1.0
