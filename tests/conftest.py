"""Shared fixtures: the parity files (copied from NVIDIA-generated references) and small networks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "stylegan2_ada_tiny.safetensors"
EDGE = FIXTURES / "stylegan2_ada_edgecases32.safetensors"


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    # One thread by default: on a shared 2-core machine, 2 threads can run many times slower.
    torch.set_num_threads(int(os.environ.get("HRINV_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def tiny_tensors() -> dict[str, torch.Tensor]:
    return load_file(str(TINY))


@pytest.fixture(scope="session")
def edge_tensors() -> dict[str, torch.Tensor]:
    return load_file(str(EDGE))


@pytest.fixture(scope="session")
def arcface_weights(tmp_path_factory) -> Path:
    """One randomly initialised IR-SE-50 saved as a plain state dict (TreB1eN's ``model_ir_se50.pth``
    key names), shared by every test that reads ArcFace weights: the file is ~170 MB, written once."""
    from hrinv_nb.identity import IRSE50

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth"
    torch.save(IRSE50().state_dict(), path)
    return path


# A small generator configuration (32², 2 mapping layers) for tests that build their own G.
TINY_KWARGS = dict(
    z_dim=32,
    c_dim=0,
    w_dim=32,
    img_resolution=32,
    img_channels=3,
    mapping_kwargs={"num_layers": 2},
    synthesis_kwargs={"channel_base": 1024, "channel_max": 32, "num_fp16_res": 0, "conv_clamp": 256},
)


@pytest.fixture(scope="module")
def gens():
    """(G_s, G_t): the tiny parity generator and a copy whose synthesis weights are scaled by 1.1."""
    from hrinv_nb import load_networks

    G_s = load_networks(TINY).G
    G_t = load_networks(TINY).G
    with torch.no_grad():
        for p in G_t.synthesis.parameters():
            p.mul_(1.1)
    return G_s, G_t


def tiny_generator(noise_strength: float | None = None, torgb_scale: float = 0.15, seed: int = 0):
    """A default-initialised :data:`TINY_KWARGS` generator (seeded), its toRGB weights scaled by ``torgb_scale``
    (so its samples stay near the image range) and, when given, every noise strength set to ``noise_strength``
    (NVIDIA initialises them to 0, which makes the noise maps irrelevant)."""
    from hrinv_nb.networks import Generator

    torch.manual_seed(seed)
    G = Generator(**TINY_KWARGS)
    with torch.no_grad():
        for name, param in G.named_parameters():
            if "torgb.weight" in name:
                param.mul_(torgb_scale)
            if noise_strength is not None and name.endswith("noise_strength"):
                param.fill_(noise_strength)
    return G.eval()
