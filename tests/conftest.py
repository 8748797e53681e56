"""Shared fixtures: the parity files (copied from NVIDIA-generated references) and small networks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "stylegan2_ada_tiny.safetensors"
EDGE = FIXTURES / "stylegan2_ada_edgecases32.safetensors"


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_tensors() -> dict[str, torch.Tensor]:
    return load_file(str(TINY))


@pytest.fixture(scope="session")
def edge_tensors() -> dict[str, torch.Tensor]:
    return load_file(str(EDGE))
